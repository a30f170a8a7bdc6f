//! The data stream layer, for a server that has none: osmem answers `PUT
//! /_data_stream` with "not supported", so [`DataStreams`] (put in front
//! of it by [`crate::util::proxy::AuthProxy::start_data_streams`]) plays
//! the part of Elasticsearch's data stream API.
//!
//! A data stream `NAME` is kept as what Elasticsearch builds underneath:
//! a hidden backing index `.ds-NAME-000001`, created with the mappings and
//! settings of the index template (with `data_stream`) that matches `NAME`,
//! and reached through `NAME`, here a write alias, so searches, counts and
//! refreshes of `NAME` work unchanged. The emulation answers:
//!
//! - `GET /_data_stream`, `GET /_data_stream/*`, `GET /_data_stream/NAME`
//!   in Elasticsearch's shape (`name`, `indices[].index_name`, `template`);
//!   404 `index_not_found_exception` for an unknown name;
//! - `PUT /_data_stream/NAME`: 400 without a matching data stream template,
//!   400 `resource_already_exists_exception` if it exists;
//! - `DELETE /_data_stream/NAME`: the stream and its backing index;
//! - `_bulk`: an action other than `create` on a data stream fails the item
//!   as Elasticsearch does ("only write ops with an op_type of create are
//!   allowed in data streams"), as does a document without `@timestamp`.
//!   Requests without such items go upstream as they are.
//!
//! Everything else is relayed. Counters tell a test which writes it saw.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::{Layer, Next, Reply, Request, Response, Upstream};

/// The emulated data streams of one proxy.
#[derive(Default)]
pub struct DataStreams {
    /// Name -> (backing index, template name).
    streams: Mutex<BTreeMap<String, (String, String)>>,
    /// Bulk items with `create` on a data stream.
    creates: AtomicUsize,
    /// Bulk items refused (not `create`, or no `@timestamp`).
    refused: AtomicUsize,
}

/// An answer made here: status and JSON body.
pub type Answer = (u16, Value);

impl DataStreams {
    /// Answers a request that concerns data streams, or `None` to relay it.
    async fn intercept(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        upstream: &Upstream,
    ) -> Option<Answer> {
        let path = target.split('?').next().unwrap_or("/");
        let segments: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        match (
            method,
            segments
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice(),
        ) {
            ("GET", ["_data_stream"]) | ("GET", ["_data_stream", "*"]) => Some(self.list(None)),
            ("GET", ["_data_stream", name]) => Some(self.list(Some(name))),
            ("PUT", ["_data_stream", name]) => Some(self.create(name, upstream).await),
            ("DELETE", ["_data_stream", name]) => Some(self.delete(name, upstream).await),
            ("POST" | "PUT", ["_bulk"]) => self.check_bulk(None, body),
            ("POST" | "PUT", [index, "_bulk"]) => self.check_bulk(Some(index), body),
            _ => None,
        }
    }

    fn list(&self, only: Option<&str>) -> Answer {
        let streams = self.streams.lock().unwrap();
        let listed: Vec<Value> = streams
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
            .map(|(name, (backing, template))| {
                json!({"name": name, "timestamp_field": {"name": "@timestamp"},
                       "indices": [{"index_name": backing, "index_uuid": format!("uuid-{backing}")}],
                       "generation": 1, "status": "GREEN", "template": template,
                       "hidden": false, "system": false})
            })
            .collect();
        match only {
            Some(name) if listed.is_empty() => (404, not_found(name)),
            _ => (200, json!({ "data_streams": listed })),
        }
    }

    async fn create(&self, name: &str, upstream: &Upstream) -> Answer {
        if self.streams.lock().unwrap().contains_key(name) {
            let reason = format!("data_stream [{name}] already exists");
            return (
                400,
                error("resource_already_exists_exception", &reason, 400),
            );
        }
        let templates: Value = match upstream
            .request(reqwest::Method::GET, "/_index_template")
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let matching = templates["index_templates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["index_template"].get("data_stream").is_some())
            .filter(|t| {
                t["index_template"]["index_patterns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .any(|p| matches_pattern(p, name))
            })
            .max_by_key(|t| t["index_template"]["priority"].as_i64().unwrap_or(0))
            .cloned();
        let Some(template) = matching else {
            let reason =
                format!("no matching index template with data stream template found for [{name}]");
            return (400, error("illegal_argument_exception", &reason, 400));
        };
        let inner = &template["index_template"]["template"];
        let mut settings = inner["settings"].clone();
        if !settings.is_object() {
            settings = json!({});
        }
        settings["index.hidden"] = json!(true);
        let backing = format!(".ds-{name}-000001");
        let mut body = json!({
            "settings": settings,
            "aliases": {name: {"is_write_index": true}}
        });
        if inner["mappings"].is_object() {
            body["mappings"] = inner["mappings"].clone();
        }
        let created = upstream
            .request(reqwest::Method::PUT, &format!("/{backing}"))
            .json(&body)
            .send()
            .await
            .map(|r| r.status().as_u16());
        match created {
            Ok(200..=299) => {
                let template_name = template["name"].as_str().unwrap_or("").to_string();
                self.streams
                    .lock()
                    .unwrap()
                    .insert(name.to_string(), (backing, template_name));
                (200, json!({"acknowledged": true}))
            }
            other => (
                500,
                error(
                    "emulation_exception",
                    &format!("creating {backing}: {other:?}"),
                    500,
                ),
            ),
        }
    }

    async fn delete(&self, name: &str, upstream: &Upstream) -> Answer {
        let Some((backing, _)) = self.streams.lock().unwrap().remove(name) else {
            return (404, not_found(name));
        };
        let path = format!("/{backing}");
        let _ = upstream
            .request(reqwest::Method::DELETE, &path)
            .send()
            .await;
        (200, json!({"acknowledged": true}))
    }

    /// Fails a bulk request whose items would write a data stream with
    /// anything but `create`, or a document without `@timestamp`, item by
    /// item as Elasticsearch does; others pass.
    fn check_bulk(&self, path_index: Option<&str>, body: &[u8]) -> Option<Answer> {
        let streams = self.streams.lock().unwrap();
        if streams.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(body);
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let mut items = Vec::new();
        let mut refused = 0;
        let mut creates = 0;
        while let Some(action_line) = lines.next() {
            let action: Value = serde_json::from_str(action_line).ok()?;
            let (op, meta) = action.as_object()?.iter().next()?;
            let index = meta["_index"]
                .as_str()
                .or(path_index)
                .unwrap_or("")
                .to_string();
            let source = if op == "delete" { None } else { lines.next() };
            if !streams.contains_key(&index) {
                // A mixed request is not what esark sends: pass it on whole.
                return None;
            }
            let has_timestamp = source
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .is_some_and(|d| d.get("@timestamp").is_some());
            let reason = if op != "create" {
                Some("only write ops with an op_type of create are allowed in data streams")
            } else if !has_timestamp {
                Some("data stream timestamp field [@timestamp] is missing")
            } else {
                None
            };
            match reason {
                Some(reason) => {
                    refused += 1;
                    items.push(json!({op.as_str(): {"_index": index, "_id": meta["_id"],
                        "status": 400, "error": {"type": "illegal_argument_exception", "reason": reason}}}));
                }
                None => {
                    creates += 1;
                    items.push(Value::Null);
                }
            }
        }
        if refused == 0 {
            self.creates.fetch_add(creates, Ordering::SeqCst);
            return None;
        }
        self.refused.fetch_add(refused, Ordering::SeqCst);
        // Refuse the whole request item by item: what was acceptable is
        // reported as refused too (as if rejected for the same reason), so
        // nothing half-written hides the problem.
        let items: Vec<Value> = items
            .into_iter()
            .map(|i| {
                if i.is_null() {
                    json!({"create": {"status": 400, "error": {"type": "illegal_argument_exception",
                        "reason": "request refused: another item wrote a data stream wrongly"}}})
                } else {
                    i
                }
            })
            .collect();
        Some((200, json!({"took": 0, "errors": true, "items": items})))
    }

    /// Bulk items written into a data stream with `create`.
    pub fn creates(&self) -> usize {
        self.creates.load(Ordering::SeqCst)
    }

    /// Bulk items refused (not `create`, or without `@timestamp`).
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// The backing index of a data stream, if it exists.
    pub fn backing(&self, name: &str) -> Option<String> {
        self.streams
            .lock()
            .unwrap()
            .get(name)
            .map(|(b, _)| b.clone())
    }
}

impl Layer for DataStreams {
    fn handle<'a>(&'a self, req: Request, next: Next<'a>) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let upstream = next
                .upstream()
                .expect("data streams are emulated before a cluster");
            match self
                .intercept(&req.method, &req.target, &req.body, upstream)
                .await
            {
                Some((status, body)) => Reply::Answer(Response::json(status, &body)),
                None => next.run(req).await,
            }
        })
    }
}

/// An index pattern with `*` wildcards.
fn matches_pattern(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn error(kind: &str, reason: &str, status: u16) -> Value {
    json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
           "status": status})
}

fn not_found(name: &str) -> Value {
    json!({"error": {"root_cause": [{"type": "index_not_found_exception", "reason": format!("no such index [{name}]")}],
        "type": "index_not_found_exception", "reason": format!("no such index [{name}]"),
        "index": name, "resource.type": "index_or_alias", "resource.id": name}, "status": 404})
}
