//! Template endpoints: legacy (`_template`), composable (`_index_template`)
//! and component (`_component_template`). Each is returned as one JSON
//! object mapping a template name to its body.

use elasticsearch::http::Method;
use serde_json::{Map, Value};

use super::{Cluster, ClusterError};

impl Cluster {
    /// `GET /_template`: already `{name: body}`.
    pub async fn legacy_templates(&self) -> Result<Map<String, Value>, ClusterError> {
        self.call_json(Method::Get, "_template", None).await
    }

    /// `GET /_index_template` -> `{name: index_template}`.
    pub async fn index_templates(&self) -> Result<Map<String, Value>, ClusterError> {
        self.named_list("_index_template", "index_templates", "index_template")
            .await
    }

    /// `GET /_component_template` -> `{name: component_template}`.
    pub async fn component_templates(&self) -> Result<Map<String, Value>, ClusterError> {
        self.named_list(
            "_component_template",
            "component_templates",
            "component_template",
        )
        .await
    }

    async fn named_list(
        &self,
        path: &str,
        list_key: &str,
        body_key: &str,
    ) -> Result<Map<String, Value>, ClusterError> {
        let answer: Value = self.call_json(Method::Get, path, None).await?;
        let items = answer
            .get(list_key)
            .and_then(Value::as_array)
            .ok_or_else(|| self.bad_response(Method::Get, path, format!("no {list_key:?} list")))?;
        let mut out = Map::new();
        for item in items {
            let name = item.get("name").and_then(Value::as_str);
            let body = item.get(body_key);
            match (name, body) {
                (Some(name), Some(body)) => {
                    out.insert(name.to_string(), body.clone());
                }
                _ => {
                    return Err(self.bad_response(
                        Method::Get,
                        path,
                        format!("an entry without \"name\" or {body_key:?}"),
                    ))
                }
            }
        }
        Ok(out)
    }
}
