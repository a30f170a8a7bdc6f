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

/// The three kinds of templates, in the order a restore creates them
/// (component templates are referenced by composable ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateKind {
    Component,
    Index,
    Legacy,
}

impl TemplateKind {
    fn endpoint(self) -> &'static str {
        match self {
            TemplateKind::Component => "_component_template",
            TemplateKind::Index => "_index_template",
            TemplateKind::Legacy => "_template",
        }
    }
}

/// What happened to a template put with `create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    /// `create` was asked and one of that name exists.
    Exists,
}

impl Cluster {
    /// `PUT /_{kind}/{name}`; with `create`, an existing template is left
    /// alone and reported as [`PutOutcome::Exists`].
    pub async fn put_template(
        &self,
        kind: TemplateKind,
        name: &str,
        body: &Value,
        create: bool,
    ) -> Result<PutOutcome, ClusterError> {
        let mut path = format!("{}/{}", kind.endpoint(), super::encode_segment(name));
        if create {
            path.push_str("?create=true");
        }
        let answer = self
            .send(
                Method::Put,
                &path,
                Some(bytes::Bytes::from(body.to_string())),
            )
            .await?;
        if (200..300).contains(&answer.status) {
            return Ok(PutOutcome::Written);
        }
        let error = self.status_error(Method::Put, &path, answer.status, &answer.body);
        // Elasticsearch says `illegal_argument_exception` ("... already
        // exists") for a template put with create=true; OpenSearch may say
        // `resource_already_exists_exception`.
        let exists = answer.status == 400
            && (error.is_type("resource_already_exists_exception")
                || (error.is_type("illegal_argument_exception")
                    && matches!(&error, ClusterError::Http { reason, .. } if reason.contains("already exists"))));
        match (create && exists, answer.resent) {
            // An earlier attempt, whose answer was lost, wrote it.
            (true, true) => Ok(PutOutcome::Written),
            (true, false) => Ok(PutOutcome::Exists),
            _ => Err(error),
        }
    }
}
