//! A sliced scroll reader.
//!
//! Reads until a page comes back empty: `hits.total` is never trusted
//! (osmem, like some proxies, caps it at 10,000 inside a scroll, and a tool
//! that stops there loses data silently). A page with failed shards or a
//! timed-out flag fails the slice: a partial page would be a silent loss.
//! The scroll context is cleared when the reader ends, on success or error.

use std::sync::Arc;

use crate::archive::line::push_line;
use crate::cluster::model::search::SearchResponse;
use crate::cluster::scroll::Slice;
use crate::cluster::{Cluster, ClusterError};

/// How long the server keeps a scroll context between two pages.
pub const DEFAULT_KEEP_ALIVE: &str = "5m";

#[derive(Debug, thiserror::Error)]
pub enum ScrollError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("index {index:?}: {failed} of {total} shards failed while reading: {reason}")]
    ShardFailures {
        index: String,
        failed: u64,
        total: u64,
        reason: String,
    },
    #[error("index {index:?}: the search timed out on the server; a partial page is not accepted")]
    TimedOut { index: String },
    #[error("index {index:?}: document {id} has no _source (disabled in the mapping?); it cannot be dumped")]
    MissingSource { index: String, id: String },
    #[error("index {index:?}: unreadable search response: {reason}")]
    BadPage { index: String, reason: String },
    #[error("index {index:?}: the server returned a page without a scroll id")]
    NoScrollId { index: String },
    #[error("interrupted")]
    Interrupted,
}

/// One page of documents, already encoded as archive lines.
#[derive(Debug, Default)]
pub struct Page {
    pub lines: Vec<u8>,
    pub docs: u64,
}

/// Reads one slice of one index.
pub struct ScrollReader {
    cluster: Arc<Cluster>,
    index: String,
    slice: Slice,
    page_size: usize,
    keep_alive: String,
    scroll_id: Option<String>,
    started: bool,
    finished: bool,
}

impl ScrollReader {
    pub fn new(cluster: Arc<Cluster>, index: &str, slice: Slice, page_size: usize) -> Self {
        ScrollReader {
            cluster,
            index: index.to_string(),
            slice,
            page_size,
            keep_alive: DEFAULT_KEEP_ALIVE.to_string(),
            scroll_id: None,
            started: false,
            finished: false,
        }
    }

    /// The next non-empty page, or `None` when the slice is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ScrollError> {
        if self.finished {
            return Ok(None);
        }
        let body = if !self.started {
            self.started = true;
            self.cluster
                .open_scroll(
                    &self.index,
                    &self.keep_alive,
                    self.page_size,
                    Some(self.slice),
                )
                .await?
        } else {
            let id = self
                .scroll_id
                .as_deref()
                .ok_or_else(|| ScrollError::NoScrollId {
                    index: self.index.clone(),
                })?;
            self.cluster.scroll_next(id, &self.keep_alive).await?
        };
        let (page, scroll_id) = encode_page(&self.index, &body)?;
        if let Some(id) = scroll_id {
            self.scroll_id = Some(id);
        }
        if page.docs == 0 {
            self.finished = true;
            return Ok(None);
        }
        if self.scroll_id.is_none() {
            return Err(ScrollError::NoScrollId {
                index: self.index.clone(),
            });
        }
        Ok(Some(page))
    }

    /// Sends pages into `tx` until the slice is exhausted, the receiver is
    /// gone (its side reports why), or `cancel` turns true. The scroll is
    /// cleared in every case.
    pub async fn pump(
        mut self,
        tx: tokio::sync::mpsc::Sender<Page>,
        mut cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ScrollError> {
        let result = loop {
            if *cancel.borrow() {
                break Err(ScrollError::Interrupted);
            }
            let page = tokio::select! {
                page = self.next_page() => page,
                _ = cancel.changed() => break Err(ScrollError::Interrupted),
            };
            match page {
                Ok(Some(page)) => {
                    if tx.send(page).await.is_err() {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.close().await;
        result
    }

    /// Clears the scroll context, if one is open. Errors are ignored: the
    /// context expires by itself after the keep-alive.
    async fn close(mut self) {
        if let Some(id) = self.scroll_id.take() {
            if let Err(e) = self.cluster.clear_scroll(&id).await {
                tracing::debug!("clearing a scroll of {:?} failed: {e}", self.index);
            }
        }
    }
}

/// Parses a search or scroll answer and encodes its hits as archive lines.
/// Returns the page and the scroll id the answer carried.
pub fn encode_page(index: &str, body: &[u8]) -> Result<(Page, Option<String>), ScrollError> {
    // One SIMD UTF-8 check of the whole page, then a parse that borrows
    // from the `str`: `from_slice` would validate every borrowed field again.
    let text = simdutf8::basic::from_utf8(body).map_err(|_| ScrollError::BadPage {
        index: index.to_string(),
        reason: "the response is not valid UTF-8".into(),
    })?;
    let response: SearchResponse =
        serde_json::from_str(text).map_err(|e| ScrollError::BadPage {
            index: index.to_string(),
            reason: e.to_string(),
        })?;
    if let Some(shards) = &response.shards {
        if shards.failed > 0 {
            let reason = shards
                .failures
                .as_ref()
                .and_then(|f| f.get(0))
                .and_then(|f| f.get("reason"))
                .map(|r| {
                    r.get("reason")
                        .and_then(|s| s.as_str())
                        .map(str::to_string)
                        .unwrap_or_else(|| r.to_string())
                })
                .unwrap_or_else(|| "no reason given".into());
            return Err(ScrollError::ShardFailures {
                index: index.to_string(),
                failed: shards.failed,
                total: shards.total,
                reason,
            });
        }
    }
    if response.timed_out {
        return Err(ScrollError::TimedOut {
            index: index.to_string(),
        });
    }
    let hits = &response.hits.hits;
    let total_len: usize = hits
        .iter()
        .map(|h| h.source.map_or(0, |s| s.get().len()) + h.id.get().len() + 48)
        .sum();
    let mut page = Page {
        lines: Vec::with_capacity(total_len),
        docs: 0,
    };
    for hit in hits {
        let source = hit.source.ok_or_else(|| ScrollError::MissingSource {
            index: index.to_string(),
            id: hit.id.get().to_string(),
        })?;
        push_line(&mut page.lines, hit.id, hit.routing, source);
        page.docs += 1;
    }
    Ok((page, response.scroll_id.map(|s| s.into_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_hits_and_ignores_capped_totals() {
        let body = r#"{"_scroll_id":"s1","_shards":{"failed":0,"successful":1,"total":1},"hits":{"total":{"value":10000,"relation":"eq"},"hits":[{"_id":"a","_source":{"x":18446744073709551616}},{"_id":"b","_routing":"r","_source":{"y":"é"}}]},"timed_out":false}"#;
        let (page, id) = encode_page("i", body.as_bytes()).unwrap();
        assert_eq!(id.as_deref(), Some("s1"));
        assert_eq!(page.docs, 2);
        assert_eq!(
            String::from_utf8(page.lines).unwrap(),
            "{\"_id\":\"a\",\"_source\":{\"x\":18446744073709551616}}\n{\"_id\":\"b\",\"_routing\":\"r\",\"_source\":{\"y\":\"é\"}}\n"
        );
    }

    #[test]
    fn shard_failures_fail_the_page() {
        let body = br#"{"_scroll_id":"s1","_shards":{"failed":1,"successful":1,"total":2,"failures":[{"shard":1,"reason":{"type":"x","reason":"node left"}}]},"hits":{"hits":[]}}"#;
        match encode_page("i", body) {
            Err(ScrollError::ShardFailures {
                failed: 1,
                total: 2,
                reason,
                ..
            }) => {
                assert_eq!(reason, "node left")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timed_out_and_missing_source_fail() {
        let t = br#"{"_scroll_id":"s","timed_out":true,"hits":{"hits":[]}}"#;
        assert!(matches!(
            encode_page("i", t),
            Err(ScrollError::TimedOut { .. })
        ));
        let m = br#"{"_scroll_id":"s","hits":{"hits":[{"_id":"a"}]}}"#;
        assert!(matches!(
            encode_page("i", m),
            Err(ScrollError::MissingSource { .. })
        ));
    }
}
