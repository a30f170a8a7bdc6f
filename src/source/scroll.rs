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
//!
//! A slice is over once it has given as many documents as the answer's
//! exact `hits.total` (relation `eq`) says its snapshot holds, without the
//! request for an empty page that would otherwise end it: that request
//! was one of the seven a small index cost (the many-indices rows of
//! benches/). Totals of [`TRUSTED_TOTAL_BELOW`] and above are not trusted,
//! since some servers cap them there (osmem, in a scroll), and the slice
//! then ends on an empty page as before.

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::page::{encode_page, Page};
use super::ReadError;
use crate::cluster::scroll::Slice;
use crate::cluster::{Cluster, ClusterError};

/// How long the server keeps a context between two pages.
pub const DEFAULT_KEEP_ALIVE: &str = "5m";

/// `hits.total` is taken as the exact size of a slice only below this:
/// Elasticsearch counts exactly up to 10,000 by default (and says `gte`
/// above), and osmem caps the total of a scroll at 10,000 while saying
/// `eq`.
pub const TRUSTED_TOTAL_BELOW: u64 = 10_000;

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
    /// Documents this slice gave so far.
    read: u64,
    /// The exact number of documents of the slice's snapshot, when an
    /// answer said it ([`TRUSTED_TOTAL_BELOW`]).
    total: Option<u64>,
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
            read: 0,
            total: None,
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
        // The request for the next page goes out before this page is
        // encoded, unless this page may be the slice's last (its exact
        // total is known from an earlier page). On the first page the
        // total is not known yet: the request goes out after it is read.
        let asked = match self.total {
            Some(t) => {
                // This page may hold all that is left: then no request
                // ahead (if it does not, the next call asks).
                if t > self.read + self.page_size as u64 {
                    self.ask_ahead(&body);
                }
                true
            }
            None => false,
        };
        let decoded = encode_page(&self.index, &body)?;
        if decoded.scroll_id.is_some() {
            self.scroll_id = decoded.scroll_id;
        }
        if let Some(t) = decoded
            .page
            .exact_total
            .filter(|t| *t < TRUSTED_TOTAL_BELOW)
        {
            self.total = Some(t);
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
        self.read += decoded.page.docs;
        if self.total.is_some_and(|t| self.read >= t) {
            self.finished = true;
        } else if !asked {
            self.ask_ahead(&body);
        }
        Ok(Some(decoded.page))
    }

    /// Sends the request for the page after `body`, when its scroll id can
    /// be read off its start.
    fn ask_ahead(&mut self, body: &[u8]) {
        if let Some(id) = leading_scroll_id(body) {
            let (cluster, id) = (self.cluster.clone(), id.to_string());
            self.prefetch = Some(tokio::spawn(async move {
                cluster.scroll_next(&id, DEFAULT_KEEP_ALIVE).await
            }));
        }
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
