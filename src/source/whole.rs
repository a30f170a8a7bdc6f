//! Reading a small index in one search, without a context.
//!
//! An index whose listing (`_cat/indices`) counts no more documents than a
//! page holds is read with one plain search (`POST /{index}/_search?size=N`,
//! sorted by `_doc`): no scroll or point in time to open and clear, and no
//! `_count` beforehand, since the answer's own exact `hits.total` says
//! whether its hits are all the index held when the search ran. Of the four
//! requests a small index's documents cost with a scroll (`_count`, the
//! scroll's first page, clearing it, and the mapping) that leaves one (the
//! many-small-indices rows of benches/RESULTS.md).
//!
//! The listing may be out of date: when the answer's total is larger than
//! its hits, or not exact, the page is dropped unread and the slice is read
//! as any other ([`super::slice`] opens a scroll or a point in time). A
//! search holds no cursor, so a lost answer is asked for again in place.

use std::sync::Arc;

use super::page::{encode_page, Page};
use super::scroll::TRUSTED_TOTAL_BELOW;
use super::ReadError;
use crate::cluster::Cluster;

/// What the one search found.
#[derive(Debug)]
pub enum Whole {
    /// Every document of the index (none, possibly).
    All(Page),
    /// More than a page (the index grew since it was listed) or a total
    /// that is not exact: read it with a context.
    TooMany,
}

pub struct WholeSearch {
    cluster: Arc<Cluster>,
    index: String,
    page_size: usize,
    query: Option<Arc<str>>,
}

impl WholeSearch {
    pub fn new(cluster: Arc<Cluster>, index: &str, page_size: usize) -> WholeSearch {
        WholeSearch {
            cluster,
            index: index.to_string(),
            page_size,
            query: None,
        }
    }

    /// Reads only the documents matching `query` (raw JSON).
    pub fn with_query(mut self, query: Option<Arc<str>>) -> WholeSearch {
        self.query = query;
        self
    }

    pub async fn search(&self) -> Result<Whole, ReadError> {
        let body = self
            .cluster
            .search_whole(&self.index, self.page_size, self.query.as_deref())
            .await?;
        let decoded = encode_page(&self.index, &body)?;
        Ok(judge(decoded.page))
    }
}

/// Whether `page` holds the whole index: its total exact (and below the
/// cap some servers put on totals) and equal to its hits.
fn judge(page: Page) -> Whole {
    match page.exact_total {
        Some(total) if total < TRUSTED_TOTAL_BELOW && total == page.docs => Whole::All(page),
        _ => Whole::TooMany,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(docs: u64, exact_total: Option<u64>) -> Page {
        Page {
            lines: Vec::new(),
            docs,
            exact_total,
            ..Page::default()
        }
    }

    #[test]
    fn a_page_is_the_whole_index_only_when_its_exact_total_says_so() {
        assert!(matches!(judge(page(3, Some(3))), Whole::All(_)));
        assert!(matches!(judge(page(0, Some(0))), Whole::All(_)));
        // Grew since it was listed, or the total is a lower bound.
        assert!(matches!(judge(page(3, Some(4))), Whole::TooMany));
        assert!(matches!(judge(page(3, None)), Whole::TooMany));
        // At the cap a server may put on totals, not trusted.
        assert!(matches!(judge(page(10_000, Some(10_000))), Whole::TooMany));
    }
}
