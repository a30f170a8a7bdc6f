//! Cluster metadata beyond indices and templates: lifecycle policies (ILM
//! on Elasticsearch, ISM on OpenSearch), ingest pipelines, stored scripts,
//! data streams and persistent cluster settings.
//!
//! Each is read as `{name: body}` where `body` is what the matching `PUT`
//! takes back, so a restore is a loop of `PUT`s. Servers differ in what
//! they offer (osmem has none of the first three; managed services block
//! some): an endpoint the server does not have is [`Offered::No`], which
//! callers turn into a warning naming what was skipped, never a failure.

use bytes::Bytes;
use elasticsearch::http::Method;
use serde_json::{json, Map, Value};

use super::model::info::Flavor;
use super::{encode_segment, Cluster, ClusterError};

/// A kind of cluster metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraKind {
    /// `_ilm/policy` (Elasticsearch).
    IlmPolicies,
    /// `_plugins/_ism/policies` (OpenSearch).
    IsmPolicies,
    IngestPipelines,
    StoredScripts,
    DataStreams,
    ClusterSettings,
}

impl ExtraKind {
    pub fn describe(self) -> &'static str {
        match self {
            ExtraKind::IlmPolicies => "index lifecycle (ILM) policies",
            ExtraKind::IsmPolicies => "index state management (ISM) policies",
            ExtraKind::IngestPipelines => "ingest pipelines",
            ExtraKind::StoredScripts => "stored scripts",
            ExtraKind::DataStreams => "data streams",
            ExtraKind::ClusterSettings => "persistent cluster settings",
        }
    }

    /// The kinds a cluster of `flavor` may have, in restore order.
    pub fn for_flavor(flavor: Flavor) -> &'static [ExtraKind] {
        match flavor {
            Flavor::Elasticsearch => &[
                ExtraKind::IlmPolicies,
                ExtraKind::IngestPipelines,
                ExtraKind::StoredScripts,
                ExtraKind::DataStreams,
            ],
            Flavor::Opensearch => &[
                ExtraKind::IsmPolicies,
                ExtraKind::IngestPipelines,
                ExtraKind::StoredScripts,
                ExtraKind::DataStreams,
            ],
        }
    }
}

/// Whether a server offers an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Offered<T> {
    Yes(T),
    /// Not offered; the reason, for the warning.
    No(String),
}

/// Whether an error means "this server has no such endpoint" (or it is
/// blocked), rather than a failure of an endpoint that exists.
pub fn is_not_offered(error: &ClusterError) -> bool {
    match error {
        ClusterError::Http { status, types, .. } => {
            matches!(status, 404 | 405 | 410 | 501)
                || (*status == 400
                    && (types.is("unsupported_operation_exception") || is_not_offered_text(error)))
        }
        ClusterError::Forbidden { .. } => true,
        _ => false,
    }
}

/// Whether an error is the plain-string "no handler found for uri" a
/// server answers for an endpoint it does not have (no type to go by).
fn is_not_offered_text(error: &ClusterError) -> bool {
    matches!(error, ClusterError::Http { reason, types, .. }
        if types.primary().is_none() && reason.starts_with("no handler found"))
}

impl Cluster {
    /// Reads one kind of metadata as `{name: PUT body}`.
    pub async fn read_extra(
        &self,
        kind: ExtraKind,
    ) -> Result<Offered<Map<String, Value>>, ClusterError> {
        let path = match kind {
            ExtraKind::IlmPolicies => "_ilm/policy",
            ExtraKind::IsmPolicies => "_plugins/_ism/policies?size=10000",
            ExtraKind::IngestPipelines => "_ingest/pipeline",
            ExtraKind::StoredScripts => {
                "_cluster/state/metadata?filter_path=metadata.stored_scripts"
            }
            ExtraKind::DataStreams => "_data_stream",
            ExtraKind::ClusterSettings => "_cluster/settings",
        };
        let answer: Value = match self.call_json(Method::Get, path, None).await {
            Ok(v) => v,
            // Elasticsearch answers 404 for "no pipelines at all".
            Err(e)
                if kind == ExtraKind::IngestPipelines
                    && e.status() == Some(404)
                    && !is_not_offered_text(&e) =>
            {
                return Ok(Offered::Yes(Map::new()))
            }
            Err(e) if is_not_offered(&e) => return Ok(Offered::No(e.to_string())),
            Err(e) => return Err(e),
        };
        Ok(Offered::Yes(normalize(kind, answer)))
    }

    /// Puts one item back.
    pub async fn put_extra(
        &self,
        kind: ExtraKind,
        name: &str,
        body: &Value,
    ) -> Result<(), ClusterError> {
        let (method, path) = match kind {
            ExtraKind::IlmPolicies => {
                (Method::Put, format!("_ilm/policy/{}", encode_segment(name)))
            }
            ExtraKind::IsmPolicies => (
                Method::Put,
                format!("_plugins/_ism/policies/{}", encode_segment(name)),
            ),
            ExtraKind::IngestPipelines => (
                Method::Put,
                format!("_ingest/pipeline/{}", encode_segment(name)),
            ),
            ExtraKind::StoredScripts => (Method::Put, format!("_scripts/{}", encode_segment(name))),
            ExtraKind::DataStreams => (
                Method::Put,
                format!("_data_stream/{}", encode_segment(name)),
            ),
            ExtraKind::ClusterSettings => (Method::Put, "_cluster/settings".to_string()),
        };
        let body = match kind {
            ExtraKind::DataStreams => None,
            _ => Some(Bytes::from(body.to_string())),
        };
        self.call(method, &path, body).await.map(|_| ())
    }
}

/// Turns a `GET` answer into `{name: PUT body}`.
pub fn normalize(kind: ExtraKind, answer: Value) -> Map<String, Value> {
    let mut out = Map::new();
    match kind {
        // {name: {version, modified_date, policy, in_use_by}} -> {name: {policy}}
        ExtraKind::IlmPolicies => {
            for (name, item) in as_map(answer) {
                if let Some(policy) = item.get("policy") {
                    let mut policy = policy.clone();
                    if let Some(p) = policy.as_object_mut() {
                        p.remove("in_use_by");
                    }
                    out.insert(name, json!({ "policy": policy }));
                }
            }
        }
        // {"policies": [{"_id", "_seq_no", "_primary_term", "policy": {...}}]}
        ExtraKind::IsmPolicies => {
            for item in answer
                .get("policies")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let (Some(id), Some(policy)) =
                    (item.get("_id").and_then(Value::as_str), item.get("policy"))
                else {
                    continue;
                };
                let mut policy = policy.clone();
                if let Some(p) = policy.as_object_mut() {
                    for generated in [
                        "policy_id",
                        "last_updated_time",
                        "schema_version",
                        "error_notification_fallback",
                    ] {
                        p.remove(generated);
                    }
                }
                out.insert(id.to_string(), json!({ "policy": policy }));
            }
        }
        // {id: pipeline}: already PUT bodies.
        ExtraKind::IngestPipelines => out = as_map(answer),
        // {"metadata": {"stored_scripts": {id: {lang, source, options}}}}
        ExtraKind::StoredScripts => {
            let scripts = answer
                .pointer("/metadata/stored_scripts")
                .cloned()
                .unwrap_or(Value::Null);
            for (id, script) in as_map(scripts) {
                out.insert(id, json!({ "script": script }));
            }
        }
        // {"data_streams": [{"name", "template", ...}]}: the name is what a
        // restore creates (its template must exist, and is restored first).
        ExtraKind::DataStreams => {
            for item in answer
                .get("data_streams")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                if let Some(name) = item.get("name").and_then(Value::as_str) {
                    let template = item.get("template").cloned().unwrap_or(Value::Null);
                    out.insert(name.to_string(), json!({ "template": template }));
                }
            }
        }
        // {"persistent": {...}, "transient": {...}}: persistent only.
        ExtraKind::ClusterSettings => {
            let persistent = answer.get("persistent").cloned().unwrap_or(json!({}));
            if persistent.as_object().is_some_and(|p| !p.is_empty()) {
                out.insert("persistent".into(), json!({ "persistent": persistent }));
            }
        }
    }
    out
}

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Answers recorded from the Elasticsearch and OpenSearch documentation's
    // examples (osmem serves none of these endpoints).

    #[test]
    fn ilm_policies_keep_only_the_policy() {
        let answer = json!({"my_policy": {"version": 1, "modified_date": 82392349,
            "policy": {"phases": {"warm": {"min_age": "10d", "actions": {"forcemerge": {"max_num_segments": 1}}},
                                  "delete": {"min_age": "30d", "actions": {"delete": {"delete_searchable_snapshot": true}}}}},
            "in_use_by": {"indices": [], "data_streams": [], "composable_templates": []}}});
        let out = normalize(ExtraKind::IlmPolicies, answer);
        assert_eq!(
            out["my_policy"],
            json!({"policy": {"phases": {"warm": {"min_age": "10d", "actions": {"forcemerge": {"max_num_segments": 1}}},
            "delete": {"min_age": "30d", "actions": {"delete": {"delete_searchable_snapshot": true}}}}}})
        );
    }

    #[test]
    fn ism_policies_drop_generated_fields() {
        let answer = json!({"policies": [{"_id": "policy_1", "_seq_no": 7, "_primary_term": 1,
            "policy": {"policy_id": "policy_1", "description": "ingesting logs", "last_updated_time": 1577990761311_i64,
                       "schema_version": 1, "error_notification": null, "default_state": "ingest",
                       "states": [{"name": "ingest", "actions": [{"rollover": {"min_doc_count": 5}}], "transitions": []}]}}],
            "total_policies": 1});
        let out = normalize(ExtraKind::IsmPolicies, answer);
        assert_eq!(
            out["policy_1"],
            json!({"policy": {"description": "ingesting logs", "error_notification": null,
            "default_state": "ingest", "states": [{"name": "ingest", "actions": [{"rollover": {"min_doc_count": 5}}], "transitions": []}]}})
        );
    }

    #[test]
    fn pipelines_scripts_data_streams_and_settings() {
        let pipelines = json!({"my-pipeline-id": {"description": "describe pipeline", "version": 123,
            "processors": [{"set": {"field": "foo", "value": "bar"}}]}});
        assert_eq!(
            normalize(ExtraKind::IngestPipelines, pipelines.clone()),
            pipelines.as_object().unwrap().clone()
        );

        let scripts = json!({"metadata": {"stored_scripts": {"my-search-template": {"lang": "mustache",
            "source": "{\"query\":{\"match\":{\"message\":\"{{query_string}}\"}}}", "options": {"content_type": "application/json;charset=utf-8"}}}}});
        let out = normalize(ExtraKind::StoredScripts, scripts);
        assert_eq!(out["my-search-template"]["script"]["lang"], "mustache");

        let streams = json!({"data_streams": [{"name": "my-data-stream", "timestamp_field": {"name": "@timestamp"},
            "indices": [{"index_name": ".ds-my-data-stream-2099.03.07-000001", "index_uuid": "xCEhwsp8Tey0-FLNFYVwSg"}],
            "generation": 1, "status": "GREEN", "template": "my-index-template", "hidden": false}]});
        assert_eq!(
            normalize(ExtraKind::DataStreams, streams)["my-data-stream"],
            json!({"template": "my-index-template"})
        );

        let settings = json!({"persistent": {"indices": {"recovery": {"max_bytes_per_sec": "50mb"}}}, "transient": {"x": "y"}});
        assert_eq!(
            normalize(ExtraKind::ClusterSettings, settings)["persistent"],
            json!({"persistent": {"indices": {"recovery": {"max_bytes_per_sec": "50mb"}}}})
        );
        assert!(normalize(
            ExtraKind::ClusterSettings,
            json!({"persistent": {}, "transient": {}})
        )
        .is_empty());
    }

    #[test]
    fn missing_endpoints_are_not_failures() {
        let err = |status: u16, body: &str| {
            ClusterError::from_answer("GET", "/_ilm/policy", status, body)
        };
        assert!(is_not_offered(&err(
            400,
            r#"{"error":"no handler found for uri [/_ilm/policy] and method [GET]"}"#
        )));
        assert!(is_not_offered(&err(404, "x")));
        assert!(is_not_offered(&err(
            400,
            r#"{"error":{"type":"unsupported_operation_exception","reason":"data streams are not supported by osmem"},"status":400}"#
        )));
        assert!(!is_not_offered(&err(500, "boom")));
        assert!(!is_not_offered(&err(
            400,
            r#"{"error":{"type":"parse_exception","reason":"no handler found is not the type"},"status":400}"#
        )));
    }
}
