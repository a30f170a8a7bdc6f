//! A sliced scroll reader: the fallback where a cluster has no point in
//! time. A scroll page cannot be asked for twice: once the server has
//! answered, the context has moved on, so a lost answer means the slice
//! must be read again from its start ([`super::slice`] decides that).
//!
//! The next page is asked for as soon as an answer arrives, before that
//! answer is parsed and encoded, when its scroll id can be read off its
//! first bytes (Elasticsearch and OpenSearch both start the answer with
//! `{"_scroll_id":"…"`): the server works on the next page while the client
//! encodes this one. Nothing else changes: a failed request surfaces when
//! its answer is awaited, as it would have without the overlap.

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::page::{encode_page, Page};
use super::ReadError;
use crate::cluster::scroll::Slice;
use crate::cluster::{Cluster, ClusterError};

/// How long the server keeps a context between two pages.
pub const DEFAULT_KEEP_ALIVE: &str = "5m";

pub struct ScrollReader {
    cluster: Arc<Cluster>,
    index: String,
    slice: Slice,
    page_size: usize,
    scroll_id: Option<String>,
    finished: bool,
    query: Option<std::sync::Arc<str>>,
    /// The request for the next page, sent before this one was encoded.
    prefetch: Option<JoinHandle<Result<Bytes, ClusterError>>>,
}

impl ScrollReader {
    pub fn new(cluster: Arc<Cluster>, index: &str, slice: Slice, page_size: usize) -> Self {
        ScrollReader {
            cluster,
            index: index.to_string(),
            slice,
            page_size,
            scroll_id: None,
            finished: false,
            query: None,
            prefetch: None,
        }
    }

    /// Reads only the documents matching `query` (raw JSON).
    pub fn with_query(mut self, query: Option<std::sync::Arc<str>>) -> Self {
        self.query = query;
        self
    }

    /// Whether the scroll is open: from then on a failed request may have
    /// moved the context, and asking again could skip a page.
    pub fn is_open(&self) -> bool {
        self.scroll_id.is_some()
    }

    /// The next non-empty page, or `None` when the slice is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ReadError> {
        if self.finished {
            return Ok(None);
        }
        let body = match (self.prefetch.take(), &self.scroll_id) {
            (Some(pending), _) => pending.await.map_err(|e| ReadError::BadPage {
                index: self.index.clone(),
                reason: format!("the request for the page failed: {e}"),
            })??,
            (None, None) => {
                self.cluster
                    .open_scroll(
                        &self.index,
                        DEFAULT_KEEP_ALIVE,
                        self.page_size,
                        Some(self.slice),
                        self.query.as_deref(),
                    )
                    .await?
            }
            (None, Some(id)) => self.cluster.scroll_next(id, DEFAULT_KEEP_ALIVE).await?,
        };
        if let Some(id) = leading_scroll_id(&body) {
            let (cluster, id) = (self.cluster.clone(), id.to_string());
            self.prefetch = Some(tokio::spawn(async move {
                cluster.scroll_next(&id, DEFAULT_KEEP_ALIVE).await
            }));
        }
        let decoded = encode_page(&self.index, &body)?;
        if decoded.scroll_id.is_some() {
            self.scroll_id = decoded.scroll_id;
        }
        if decoded.page.docs == 0 {
            self.finished = true;
            return Ok(None);
        }
        if self.scroll_id.is_none() {
            return Err(ReadError::NoScrollId {
                index: self.index.clone(),
            });
        }
        Ok(Some(decoded.page))
    }

    /// Clears the scroll context, if one is open. Errors are ignored: the
    /// context expires by itself after the keep-alive.
    pub async fn close(&mut self) {
        // A request for a page after the last (or after a failure) is not
        // wanted; it must not reach the server after the context is cleared.
        if let Some(pending) = self.prefetch.take() {
            pending.abort();
            let _ = pending.await;
        }
        if let Some(id) = self.scroll_id.take() {
            if let Err(e) = self.cluster.clear_scroll(&id).await {
                tracing::debug!("clearing a scroll of {:?} failed: {e}", self.index);
            }
        }
    }
}

/// The scroll id at the very start of an answer (`{"_scroll_id":"…"`), if
/// it is there and holds no escape; `None` otherwise (the page is then
/// parsed before the next request, as always).
fn leading_scroll_id(body: &[u8]) -> Option<&str> {
    let rest = body.strip_prefix(b"{\"_scroll_id\":\"")?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[end] != b'"' || end == 0 {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scroll_id_only_off_the_start_of_an_answer() {
        assert_eq!(
            leading_scroll_id(
                br#"{"_scroll_id":"FGluY2x1ZGVfY29udGV4dF91dWlk==","took":1,"hits":{"hits":[]}}"#
            ),
            Some("FGluY2x1ZGVfY29udGV4dF91dWlk==")
        );
        // Elsewhere, escaped, empty or absent: no prefetch.
        assert_eq!(leading_scroll_id(br#"{"took":1,"_scroll_id":"abc"}"#), None);
        assert_eq!(leading_scroll_id(br#"{"_scroll_id":"a\"b"}"#), None);
        assert_eq!(leading_scroll_id(br#"{"_scroll_id":""}"#), None);
        assert_eq!(leading_scroll_id(br#"{"_scroll_id":"abc"#), None);
        assert_eq!(leading_scroll_id(b""), None);
    }
}
