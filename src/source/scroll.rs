//! A sliced scroll reader: the fallback where a cluster has no point in
//! time. A scroll page cannot be asked for twice: once the server has
//! answered, the context has moved on, so a lost answer means the slice
//! must be read again from its start ([`super::slice`] decides that).

use std::sync::Arc;

use super::page::{encode_page, Page};
use super::ReadError;
use crate::cluster::scroll::Slice;
use crate::cluster::Cluster;

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
        let body = match &self.scroll_id {
            None => {
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
            Some(id) => self.cluster.scroll_next(id, DEFAULT_KEEP_ALIVE).await?,
        };
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
        if let Some(id) = self.scroll_id.take() {
            if let Err(e) = self.cluster.clear_scroll(&id).await {
                tracing::debug!("clearing a scroll of {:?} failed: {e}", self.index);
            }
        }
    }
}
