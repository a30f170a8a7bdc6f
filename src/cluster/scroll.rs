//! Scroll endpoints: open a (sliced) scroll, fetch the next page, clear.
//!
//! These return the raw response bytes: parsing is the reader's job, done by
//! borrowing from those bytes (see [`super::model::search`]).
//! <https://www.elastic.co/guide/en/elasticsearch/reference/current/paginate-search-results.html#scroll-search-results>

use bytes::Bytes;
use elasticsearch::http::Method;
use serde_json::json;

use super::{encode_segment, Cluster, ClusterError};

/// Which slice of a sliced scroll to read.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    pub id: u32,
    pub max: u32,
}

/// Serializes a search body, splicing in a query given as raw JSON (it may
/// hold numbers a `Value` would round).
pub(crate) fn with_query(body: serde_json::Value, query: Option<&str>) -> String {
    let mut text = body.to_string();
    if let Some(q) = query {
        text.pop();
        text.push_str(",\"query\":");
        text.push_str(q);
        text.push('}');
    }
    text
}

impl Cluster {
    /// Opens a scroll over `index` sorted by `_doc` (the cheapest order) and
    /// returns the first page.
    pub async fn open_scroll(
        &self,
        index: &str,
        keep_alive: &str,
        page_size: usize,
        slice: Option<Slice>,
        query: Option<&str>,
    ) -> Result<Bytes, ClusterError> {
        let path = format!(
            "{}/_search?scroll={keep_alive}&size={page_size}",
            encode_segment(index)
        );
        let mut body = json!({ "sort": ["_doc"] });
        if let Some(s) = slice.filter(|s| s.max > 1) {
            body["slice"] = json!({ "id": s.id, "max": s.max });
        }
        let body = with_query(body, query);
        // One attempt: the slice reader decides (a lost answer leaves an
        // open context behind, which expires by itself).
        self.call_once(Method::Post, &path, Some(Bytes::from(body)))
            .await
    }

    /// One search of `index` sorted by `_doc`, without a context: for an
    /// index listed with no more than `size` documents, whose answer then
    /// holds them all (the caller checks its `hits.total`). One attempt:
    /// the slice reader decides, as for the other pages.
    pub async fn search_whole(
        &self,
        index: &str,
        size: usize,
        query: Option<&str>,
    ) -> Result<Bytes, ClusterError> {
        let path = format!("{}/_search?size={size}", encode_segment(index));
        let body = with_query(json!({ "sort": ["_doc"] }), query);
        self.call_once(Method::Post, &path, Some(Bytes::from(body)))
            .await
    }

    /// Fetches the next page of a scroll.
    pub async fn scroll_next(
        &self,
        scroll_id: &str,
        keep_alive: &str,
    ) -> Result<Bytes, ClusterError> {
        let body = json!({ "scroll": keep_alive, "scroll_id": scroll_id });
        // One attempt: a scroll page asked for twice may skip one; the
        // slice reader decides.
        self.call_once(
            Method::Post,
            "_search/scroll",
            Some(Bytes::from(body.to_string())),
        )
        .await
    }

    /// Frees a scroll context. A context that is already gone is not an error.
    pub async fn clear_scroll(&self, scroll_id: &str) -> Result<(), ClusterError> {
        let body = json!({ "scroll_id": [scroll_id] });
        let (status, bytes) = self
            .request(
                Method::Delete,
                "_search/scroll",
                Some(Bytes::from(body.to_string())),
            )
            .await?;
        if (200..300).contains(&status) || status == 404 {
            Ok(())
        } else {
            Err(self.status_error(Method::Delete, "_search/scroll", status, &bytes))
        }
    }
}
