//! A sliced point-in-time reader: `search_after` the last hit's sort
//! values, sorted by `_shard_doc`. Asking for the same page twice gives the
//! same page, so failed requests are simply retried, and a dump can resume
//! from a recorded cursor while the point in time is alive.

use std::sync::Arc;

use super::page::{encode_page, Page};
use super::scroll::DEFAULT_KEEP_ALIVE;
use super::ReadError;
use crate::cluster::scroll::Slice;
use crate::cluster::Cluster;

/// Where a point-in-time slice continues.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PitPosition {
    pub pit_id: String,
    /// Raw JSON sort values of the last document read; `None` at the start.
    pub cursor: Option<String>,
    /// Documents of the page after `cursor` that were already written.
    pub skip: u64,
}

pub struct PitReader {
    cluster: Arc<Cluster>,
    index: String,
    slice: Slice,
    /// The most documents a page asks for.
    page_size: usize,
    /// What the next page asks for: `page_size`, or fewer after a heavy
    /// page ([`super::page_size::after_page`]).
    size: usize,
    pit_id: Option<String>,
    cursor: Option<String>,
    skip: u64,
    pages: u64,
    finished: bool,
    query: Option<Arc<str>>,
}

impl PitReader {
    /// A reader from the start, or from `resume`.
    pub fn new(
        cluster: Arc<Cluster>,
        index: &str,
        slice: Slice,
        page_size: usize,
        resume: Option<PitPosition>,
    ) -> Self {
        let resume = resume.unwrap_or_default();
        PitReader {
            cluster,
            index: index.to_string(),
            slice,
            page_size,
            size: page_size,
            pit_id: (!resume.pit_id.is_empty()).then_some(resume.pit_id),
            cursor: resume.cursor,
            skip: resume.skip,
            pages: 0,
            finished: false,
            query: None,
        }
    }

    /// Reads only the documents matching `query` (raw JSON).
    pub fn with_query(mut self, query: Option<Arc<str>>) -> Self {
        self.query = query;
        self
    }

    /// Pages returned so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The point in time in use.
    pub fn pit_id(&self) -> Option<&str> {
        self.pit_id.as_deref()
    }

    /// The next non-empty page, or `None` when the slice is exhausted.
    /// A failed call changes nothing: calling again asks for the same page.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ReadError> {
        if self.finished {
            return Ok(None);
        }
        let pit_id = match &self.pit_id {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .cluster
                    .open_pit(&self.index, DEFAULT_KEEP_ALIVE)
                    .await?;
                self.pit_id = Some(id.clone());
                id
            }
        };
        let body = self
            .cluster
            .pit_page(
                &pit_id,
                DEFAULT_KEEP_ALIVE,
                self.size,
                Some(self.slice),
                self.cursor.as_deref(),
                self.query.as_deref(),
            )
            .await?;
        let decoded = encode_page(&self.index, &body)?;
        if let Some(id) = decoded.pit_id {
            self.pit_id = Some(id);
        }
        let mut page = decoded.page;
        if page.docs == 0 {
            self.finished = true;
            return Ok(None);
        }
        if page.cursor.is_none() {
            return Err(ReadError::BadPage {
                index: self.index.clone(),
                reason: "a point-in-time page without sort values".into(),
            });
        }
        self.cursor = page.cursor.clone();
        page.pit_id = self.pit_id.clone();
        self.pages += 1;
        // Any size may follow a search_after position: the next page is
        // sized by this one's bytes per hit.
        self.size = super::page_size::after_page(self.page_size, body.len(), page.docs);
        if self.skip > 0 {
            let n = self.skip.min(page.docs);
            page.skip(n);
            self.skip -= n;
        }
        Ok(Some(page))
    }

    /// Closes the point in time. Errors are ignored: it expires by itself.
    pub async fn close(&mut self) {
        if let Some(id) = self.pit_id.take() {
            if let Err(e) = self.cluster.close_pit(&id).await {
                tracing::debug!("closing a point in time of {:?} failed: {e}", self.index);
            }
        }
    }

    /// Forgets the point in time without closing it (it is recorded in a
    /// checkpoint and a resumed run will use it).
    pub fn keep_open(&mut self) {
        self.pit_id = None;
    }
}
