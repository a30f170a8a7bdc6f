//! Point in time + `search_after`: a repeatable way to page through an
//! index. Unlike a scroll, asking for the same page twice gives the same
//! page, so a lost response can simply be asked for again.
//!
//! Elasticsearch (7.10+): `POST /{index}/_pit`, `DELETE /_pit`
//! (<https://www.elastic.co/guide/en/elasticsearch/reference/current/point-in-time-api.html>);
//! OpenSearch (2.4+): `POST /{index}/_search/point_in_time`,
//! `DELETE /_search/point_in_time`
//! (<https://opensearch.org/docs/latest/search-plugins/searching-data/point-in-time-api/>).
//! Pages are sorted by `_shard_doc`, the tiebreaker that is unique and
//! stable within a PIT.

use bytes::Bytes;
use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::model::info::Flavor;
use super::scroll::Slice;
use super::{encode_segment, Cluster, ClusterError};

impl Cluster {
    /// Whether this cluster offers point in time with `_shard_doc` sorting.
    pub fn has_pit(&self) -> bool {
        let info = self.info();
        let minor = info
            .version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse::<u32>().ok())
            .unwrap_or(0);
        match info.flavor {
            Flavor::Elasticsearch => info.major > 7 || (info.major == 7 && minor >= 12),
            Flavor::Opensearch => info.major > 2 || (info.major == 2 && minor >= 4),
        }
    }

    /// Opens a point in time on `index` and returns its id.
    pub async fn open_pit(&self, index: &str, keep_alive: &str) -> Result<String, ClusterError> {
        let path = match self.flavor() {
            Flavor::Elasticsearch => {
                format!("{}/_pit?keep_alive={keep_alive}", encode_segment(index))
            }
            Flavor::Opensearch => format!(
                "{}/_search/point_in_time?keep_alive={keep_alive}",
                encode_segment(index)
            ),
        };
        // One attempt: the slice reader retries the opening in place.
        let bytes = self.call_once(Method::Post, &path, None).await?;
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.bad_response(Method::Post, &path, e.to_string()))?;
        answer
            .get("id")
            .or_else(|| answer.get("pit_id"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.bad_response(Method::Post, &path, "no point-in-time id".into()))
    }

    /// One page after `search_after` (the raw JSON array of the last hit's
    /// sort values), or the first page.
    pub async fn pit_page(
        &self,
        pit_id: &str,
        keep_alive: &str,
        page_size: usize,
        slice: Option<Slice>,
        search_after: Option<&str>,
        query: Option<&str>,
    ) -> Result<Bytes, ClusterError> {
        let mut body = json!({
            "size": page_size,
            "pit": { "id": pit_id, "keep_alive": keep_alive },
            "sort": [{ "_shard_doc": "asc" }],
            "track_total_hits": false,
        });
        if let Some(s) = slice.filter(|s| s.max > 1) {
            body["slice"] = json!({ "id": s.id, "max": s.max });
        }
        let mut text = super::scroll::with_query(body, query);
        if let Some(after) = search_after {
            // Spliced as raw JSON: sort values may be integers beyond 2^53.
            text.pop();
            text.push_str(",\"search_after\":");
            text.push_str(after);
            text.push('}');
        }
        // One attempt: the slice reader retries pages in place.
        self.call_once(Method::Post, "_search", Some(Bytes::from(text)))
            .await
    }

    /// Closes a point in time; one already gone is not an error.
    pub async fn close_pit(&self, pit_id: &str) -> Result<(), ClusterError> {
        let (path, body) = match self.flavor() {
            Flavor::Elasticsearch => ("_pit", json!({ "id": pit_id })),
            Flavor::Opensearch => ("_search/point_in_time", json!({ "pit_id": [pit_id] })),
        };
        let (status, answer) = self
            .request(Method::Delete, path, Some(Bytes::from(body.to_string())))
            .await?;
        if (200..300).contains(&status) || status == 404 {
            Ok(())
        } else {
            Err(self.status_error(Method::Delete, path, status, &answer))
        }
    }
}
