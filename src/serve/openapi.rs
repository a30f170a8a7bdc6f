//! The API table ([`ROUTES`]): every route of the service with what the
//! OpenAPI document says of it. The router is built from the same table
//! ([`super::router`]), so the document cannot list a route that is not
//! served nor miss one that is (a test checks both ways).

use axum::http::Method;
use serde_json::{json, Map, Value};

/// Which handler serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Metrics,
    OpenApi,
    SubmitJob,
    ListJobs,
    GetJob,
    JobErrors,
    CancelJob,
    ResumeJob,
    /// Served by `archives::routes()`, merged into the router beside the
    /// job routes.
    Archives,
}

/// One route of the API.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub endpoint: Endpoint,
    pub summary: &'static str,
    /// Whether a bearer token is needed (when tokens are configured).
    pub secured: bool,
    /// Its answer on success, and what it holds.
    pub ok: (u16, &'static str),
}

/// Every route of the service.
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/v1/health",
        endpoint: Endpoint::Health,
        summary: "Whether the service answers",
        secured: false,
        ok: (200, "{\"status\": \"ok\"}"),
    },
    Route {
        method: Method::GET,
        path: "/metrics",
        endpoint: Endpoint::Metrics,
        summary: "Prometheus metrics: jobs by kind and status, documents, bytes and rejects moved (role viewer)",
        secured: true,
        ok: (200, "OpenMetrics text"),
    },
    Route {
        method: Method::GET,
        path: "/v1/openapi.json",
        endpoint: Endpoint::OpenApi,
        summary: "This document",
        secured: false,
        ok: (200, "OpenAPI 3 document"),
    },
    Route {
        method: Method::POST,
        path: "/v1/jobs",
        endpoint: Endpoint::SubmitJob,
        summary: "Submit a job: {\"kind\": \"export|import|verify|copy\", \"cluster\", \"archive\" (export, import, verify), \"target_cluster\" (copy), \"options\": {CLI long flag names with _}}; an Idempotency-Key header returns the job created earlier with the same key",
        secured: true,
        ok: (202, "the job (Location header: its URL)"),
    },
    Route {
        method: Method::GET,
        path: "/v1/jobs",
        endpoint: Endpoint::ListJobs,
        summary: "Jobs, newest first; ?status= and ?kind= filter (role viewer)",
        secured: true,
        ok: (200, "{\"jobs\": [job]}"),
    },
    Route {
        method: Method::GET,
        path: "/v1/jobs/{id}",
        endpoint: Endpoint::GetJob,
        summary: "A job: status, progress, error, report (role viewer)",
        secured: true,
        ok: (200, "the job"),
    },
    Route {
        method: Method::GET,
        path: "/v1/jobs/{id}/errors",
        endpoint: Endpoint::JobErrors,
        summary: "The documents the target rejected, as NDJSON lines {index, id, status, reason} (role viewer)",
        secured: true,
        ok: (200, "NDJSON"),
    },
    Route {
        method: Method::POST,
        path: "/v1/jobs/{id}/cancel",
        endpoint: Endpoint::CancelJob,
        summary: "Stop a queued or running job like Ctrl-C (own jobs; admin: any)",
        secured: true,
        ok: (202, "the job"),
    },
    Route {
        method: Method::POST,
        path: "/v1/jobs/{id}/resume",
        endpoint: Endpoint::ResumeJob,
        summary: "Continue an interrupted, failed or cancelled export or import from its checkpoint (own jobs; admin: any); 409 otherwise",
        secured: true,
        ok: (202, "the job"),
    },
    Route {
        method: Method::GET,
        path: "/v1/archives",
        endpoint: Endpoint::Archives,
        summary: "The archives of the service (role viewer)",
        secured: true,
        ok: (200, "{\"archives\": [...]}"),
    },
    Route {
        method: Method::GET,
        path: "/v1/archives/{name}",
        endpoint: Endpoint::Archives,
        summary: "An archive's manifest summary (role viewer)",
        secured: true,
        ok: (200, "the archive"),
    },
    Route {
        method: Method::GET,
        path: "/v1/archives/{name}/download",
        endpoint: Endpoint::Archives,
        summary: "An archive as a tar stream (role exporter)",
        secured: true,
        ok: (200, "application/x-tar"),
    },
    Route {
        method: Method::PUT,
        path: "/v1/archives/{name}",
        endpoint: Endpoint::Archives,
        summary: "Upload an archive as a tar stream (role restorer)",
        secured: true,
        ok: (201, "the archive"),
    },
];

/// The OpenAPI 3 document of [`ROUTES`].
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        let mut responses = json!({
            route.ok.0.to_string(): { "description": route.ok.1 },
            "400": { "$ref": "#/components/responses/Error" },
        });
        if route.secured {
            responses["401"] = json!({ "$ref": "#/components/responses/Error" });
            responses["403"] = json!({ "$ref": "#/components/responses/Error" });
        }
        let mut operation = json!({
            "summary": route.summary,
            "operationId": format!("{:?}", route.endpoint).to_lowercase() + "_" + route.method.as_str(),
            "responses": responses,
        });
        if !route.secured {
            operation["security"] = json!([]);
        }
        let parameters: Vec<Value> = ["id", "name"]
            .iter()
            .filter(|p| route.path.contains(&format!("{{{p}}}")))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !parameters.is_empty() {
            operation["parameters"] = json!(parameters);
        }
        entry[route.method.as_str().to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "esark serve",
            "version": crate::TOOL_VERSION,
            "description": "Export, import, verify and copy jobs over HTTP.",
        },
        "paths": paths,
        "security": [{ "bearer": [] }],
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" }
            },
            "responses": {
                "Error": {
                    "description": "{\"error\": {\"message\"}}",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": { "error": { "type": "object",
                            "properties": { "message": { "type": "string" } } } }
                    } } }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::serve::config::ServeConfig;
    use crate::serve::{router, AppState};

    /// The router on 127.0.0.1:0: its base URL.
    async fn serve_router(dir: &std::path::Path) -> String {
        let text = format!(
            "listen = \"127.0.0.1:0\"\nstate = \"{}\"\narchives = \"{}\"\n",
            dir.join("state").display(),
            dir.join("archives").display()
        );
        let config = ServeConfig::parse(&text, dir).unwrap();
        let app = router(AppState::new(config).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// Whether the router has `route` (axum's fallback answers 404 with an
    /// empty body, or 405 for another method of a known path; the API's own
    /// 404s have a JSON body).
    async fn served(base: &str, route: &Route) -> bool {
        let path = route.path.replace("{id}", "none").replace("{name}", "none");
        let method = reqwest::Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
        let response = reqwest::Client::new()
            .request(method, format!("{base}{path}"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        !(status == 405 || (status == 404 && body.is_empty()))
    }

    #[tokio::test]
    async fn the_document_lists_exactly_the_routes_of_the_table_and_the_router_serves_them() {
        let document = document();
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let table: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
            .collect();
        assert_eq!(documented, table);
        assert_eq!(table.len(), ROUTES.len(), "no route twice");

        let dir = tempfile::tempdir().unwrap();
        let base = serve_router(dir.path()).await;
        for route in ROUTES.iter().filter(|r| r.endpoint != Endpoint::Archives) {
            assert!(served(&base, route).await, "{route:?} is not served");
        }
        // And the check can fail: a path nobody serves.
        let unknown = Route {
            path: "/v1/nothing",
            ..ROUTES[0].clone()
        };
        assert!(!served(&base, &unknown).await);
    }

    /// The archive routes are served by `archives::routes()`, merged into
    /// [`router`] by the coordinator: this test is switched on then.
    #[tokio::test]
    async fn the_archive_routes_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let base = serve_router(dir.path()).await;
        for route in ROUTES.iter().filter(|r| r.endpoint == Endpoint::Archives) {
            assert!(served(&base, route).await, "{route:?} is not served");
        }
    }
}
