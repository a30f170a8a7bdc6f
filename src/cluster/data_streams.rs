//! Data streams: listing them with their backing indices, and creating,
//! checking and deleting one. Their definitions (`cluster/data_streams.json`)
//! are read and put back through [`super::extras`]; this module is what
//! dumping and restoring their documents needs.
//!
//! A data stream is read by searching its name (the search covers every
//! backing index) and written with `create` actions only; its mappings and
//! settings come from its index template, restored before it.

use elasticsearch::http::Method;
use serde::Deserialize;

use super::extras::is_not_offered;
use super::{encode_segment, Cluster, ClusterError};

/// A data stream as `GET /_data_stream` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataStream {
    pub name: String,
    /// Backing indices, oldest first; the last one is the write index.
    pub backing: Vec<String>,
    /// The index template it was created from.
    pub template: Option<String>,
}

#[derive(Deserialize)]
struct ListAnswer {
    #[serde(default)]
    data_streams: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    #[serde(default)]
    indices: Vec<Backing>,
    #[serde(default)]
    template: Option<String>,
}

#[derive(Deserialize)]
struct Backing {
    index_name: String,
}

/// Parses an answer of `GET /_data_stream` (Elasticsearch 7.9+, OpenSearch).
pub fn parse_list(body: &[u8]) -> Result<Vec<DataStream>, serde_json::Error> {
    let answer: ListAnswer = serde_json::from_slice(body)?;
    let mut list: Vec<DataStream> = answer
        .data_streams
        .into_iter()
        .map(|e| DataStream {
            name: e.name,
            backing: e.indices.into_iter().map(|b| b.index_name).collect(),
            template: e.template,
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(list)
}

impl Cluster {
    /// Every data stream, hidden ones included; none where the cluster has
    /// no data streams (Elasticsearch before 7.9, a service blocking the
    /// endpoint): the dump's warning about their definitions says so.
    pub async fn list_data_streams(&self) -> Result<Vec<DataStream>, ClusterError> {
        let mut path = "_data_stream/*?expand_wildcards=all";
        let (mut status, mut body) = self.request(Method::Get, path, None).await?;
        if status == 400 || status == 404 {
            // Servers without `expand_wildcards` here, or without `*`.
            path = "_data_stream";
            (status, body) = self.request(Method::Get, path, None).await?;
        }
        if !(200..300).contains(&status) {
            let error = self.status_error(Method::Get, path, status, &body);
            return if is_not_offered(&error) {
                Ok(Vec::new())
            } else {
                Err(error)
            };
        }
        parse_list(&body).map_err(|e| self.bad_response(Method::Get, path, e.to_string()))
    }

    /// Whether a data stream of that name exists.
    pub async fn data_stream_exists(&self, name: &str) -> Result<bool, ClusterError> {
        let path = format!("_data_stream/{}", encode_segment(name));
        let (status, body) = self.request(Method::Get, &path, None).await?;
        match status {
            404 => Ok(false),
            200..=299 => Ok(parse_list(&body)
                .map_err(|e| self.bad_response(Method::Get, &path, e.to_string()))?
                .iter()
                .any(|d| d.name == name)),
            _ => Err(self.status_error(Method::Get, &path, status, &body)),
        }
    }

    /// `PUT /_data_stream/{name}`: needs an index template with
    /// `data_stream` matching the name.
    pub async fn create_data_stream(&self, name: &str) -> Result<(), ClusterError> {
        let path = format!("_data_stream/{}", encode_segment(name));
        self.call(Method::Put, &path, None).await.map(|_| ())
    }

    /// `DELETE /_data_stream/{name}`: the stream and its backing indices.
    pub async fn delete_data_stream(&self, name: &str) -> Result<(), ClusterError> {
        let path = format!("_data_stream/{}", encode_segment(name));
        self.call(Method::Delete, &path, None).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example answer of Elasticsearch's "Get data stream API" page.
    #[test]
    fn lists_names_backing_indices_and_templates() {
        let body = br#"{"data_streams": [
          {"name": "my-data-stream", "timestamp_field": {"name": "@timestamp"},
           "indices": [
             {"index_name": ".ds-my-data-stream-2099.03.07-000001", "index_uuid": "Xpy6ACJNTjaqRjEHrkkNKw", "prefer_ilm": true, "managed_by": "Index Lifecycle Management"},
             {"index_name": ".ds-my-data-stream-2099.03.08-000002", "index_uuid": "PA_e1mZ5SgSd2VgmoUDl6A", "prefer_ilm": true, "managed_by": "Index Lifecycle Management"}],
           "generation": 2, "_meta": {"my-meta-field": "foo"}, "status": "GREEN",
           "next_generation_managed_by": "Index Lifecycle Management", "prefer_ilm": true,
           "template": "my-index-template", "ilm_policy": "my-lifecycle-policy",
           "hidden": false, "system": false, "allow_custom_routing": false, "replicated": false,
           "rollover_on_write": false},
          {"name": "a-stream", "timestamp_field": {"name": "@timestamp"},
           "indices": [{"index_name": ".ds-a-stream-2099.03.07-000001", "index_uuid": "x"}],
           "generation": 1, "status": "YELLOW", "template": "a-template"}]}"#;
        let list = parse_list(body).unwrap();
        assert_eq!(
            list,
            vec![
                DataStream {
                    name: "a-stream".into(),
                    backing: vec![".ds-a-stream-2099.03.07-000001".into()],
                    template: Some("a-template".into()),
                },
                DataStream {
                    name: "my-data-stream".into(),
                    backing: vec![
                        ".ds-my-data-stream-2099.03.07-000001".into(),
                        ".ds-my-data-stream-2099.03.08-000002".into()
                    ],
                    template: Some("my-index-template".into()),
                },
            ]
        );
        // OpenSearch's answer has the same shape; an empty list is fine.
        assert!(parse_list(br#"{"data_streams":[]}"#).unwrap().is_empty());
        assert!(parse_list(b"\"not a listing\"").is_err());
    }
}
