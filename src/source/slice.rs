//! One slice of one index, read with recovery.
//!
//! The decision of what to do with a failed page is made by
//! [`recovery`] (pure), the doing by [`SliceReader::pump`]:
//! - asking again is safe for point-in-time pages (repeatable), for opening
//!   a scroll, and for a scroll page refused with 429 (not executed):
//!   retried in place with backoff;
//! - a scroll page lost after the server may have acted (connection error,
//!   5xx), or an expired context, cannot be asked for again: the slice is
//!   restarted from its start and the consumer is told
//!   ([`SliceEvent::Restart`]) to discard what it had of this slice, so no
//!   page is skipped and none is written twice;
//! - a cluster that refuses point-in-time sorting falls back to scroll.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::page::Page;
use super::pit::{PitPosition, PitReader};
use super::scroll::ScrollReader;
use super::ReadError;
use crate::cluster::scroll::Slice;
use crate::cluster::Cluster;
use crate::retry::{classify_status, RetryAction, RetryPolicy};

/// Restarts of one slice before giving up.
pub const MAX_RESTARTS: u32 = 5;

/// What a reader sends its consumer.
#[derive(Debug)]
pub enum SliceEvent {
    Page(Page),
    /// Everything received from this slice so far must be discarded: the
    /// slice is read again from its start.
    Restart,
}

/// Which API reads documents.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ReaderKind {
    /// Point in time on Elasticsearch 7.12+, scroll elsewhere. OpenSearch
    /// has point in time, but `_shard_doc` pagination there is not known to
    /// be as cheap as a scroll (on osmem it is 15 times slower, growing
    /// with the slice), so it is used there only when asked for.
    Auto,
    Pit,
    Scroll,
}

/// Where a resumed slice starts.
pub type ResumePoint = PitPosition;

/// What to do after a failed page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    RetryInPlace,
    Restart,
    FallBackToScroll,
    Fail,
}

/// Decides on a failed page. `pit`: read with a point in time; `open`: a
/// scroll context exists (its position may have moved); `pages`: pages
/// already returned by this reader.
pub fn recovery(error: &ReadError, pit: bool, open: bool, pages: u64) -> Recovery {
    match error {
        ReadError::Cluster(e) if e.is_context_missing() => Recovery::Restart,
        ReadError::Cluster(e) => match e.status() {
            Some(400) if pit && pages == 0 => Recovery::FallBackToScroll,
            Some(429) => Recovery::RetryInPlace,
            Some(status) if classify_status(status) == RetryAction::Retry => {
                if pit || !open {
                    Recovery::RetryInPlace
                } else {
                    Recovery::Restart
                }
            }
            Some(_) => Recovery::Fail,
            None if e.is_transport() => {
                if pit || !open {
                    Recovery::RetryInPlace
                } else {
                    Recovery::Restart
                }
            }
            None => Recovery::Fail,
        },
        // A page with failed shards or a timeout: a point-in-time page can be
        // asked for again; a scroll has moved on.
        ReadError::ShardFailures { .. }
        | ReadError::TimedOut { .. }
        | ReadError::BadPage { .. } => {
            if pit {
                Recovery::RetryInPlace
            } else {
                Recovery::Restart
            }
        }
        _ => Recovery::Fail,
    }
}

enum Inner {
    Scroll(ScrollReader),
    Pit(PitReader),
}

/// Reads one slice, recovering as [`recovery`] decides.
pub struct SliceReader {
    cluster: Arc<Cluster>,
    index: String,
    slice: Slice,
    page_size: usize,
    inner: Inner,
    policy: RetryPolicy,
    query: Option<Arc<str>>,
}

impl SliceReader {
    /// `resume` applies to point-in-time reading only; a scroll slice
    /// always starts at the beginning.
    pub fn new(
        cluster: Arc<Cluster>,
        index: &str,
        slice: Slice,
        page_size: usize,
        kind: ReaderKind,
        resume: Option<ResumePoint>,
    ) -> SliceReader {
        let pit = match kind {
            ReaderKind::Pit => true,
            ReaderKind::Scroll => false,
            ReaderKind::Auto => {
                cluster.flavor() == crate::cluster::model::info::Flavor::Elasticsearch
                    && cluster.has_pit()
            }
        };
        let inner = if pit {
            Inner::Pit(PitReader::new(
                cluster.clone(),
                index,
                slice,
                page_size,
                resume,
            ))
        } else {
            Inner::Scroll(ScrollReader::new(cluster.clone(), index, slice, page_size))
        };
        SliceReader {
            cluster,
            index: index.to_string(),
            slice,
            page_size,
            inner,
            policy: RetryPolicy::default(),
            query: None,
        }
    }

    /// Reads only the documents matching `query` (raw JSON).
    pub fn with_query(mut self, query: Option<Arc<str>>) -> SliceReader {
        self.inner = match self.inner {
            Inner::Pit(r) => Inner::Pit(r.with_query(query.clone())),
            Inner::Scroll(r) => Inner::Scroll(r.with_query(query.clone())),
        };
        self.query = query;
        self
    }

    /// Uses `policy` for in-place retries.
    pub fn with_policy(mut self, policy: RetryPolicy) -> SliceReader {
        self.policy = policy;
        self
    }

    /// Whether this slice reads with a point in time.
    pub fn is_pit(&self) -> bool {
        matches!(self.inner, Inner::Pit(_))
    }

    async fn next_page(&mut self) -> Result<Option<Page>, ReadError> {
        match &mut self.inner {
            Inner::Scroll(r) => r.next_page().await,
            Inner::Pit(r) => r.next_page().await,
        }
    }

    async fn close(&mut self) {
        match &mut self.inner {
            Inner::Scroll(r) => r.close().await,
            Inner::Pit(r) => r.close().await,
        }
    }

    /// The point in time in use, if any.
    pub fn pit_id(&self) -> Option<&str> {
        match &self.inner {
            Inner::Pit(r) => r.pit_id(),
            Inner::Scroll(_) => None,
        }
    }

    /// Sends pages into `tx` until the slice is exhausted, the receiver is
    /// gone (its side reports why), or `cancel` turns true. Contexts are
    /// closed at the end, except a point in time when the run is
    /// interrupted (a resumed run continues with it).
    pub async fn pump(
        mut self,
        tx: mpsc::Sender<SliceEvent>,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<(), ReadError> {
        let mut rng = fastrand::Rng::new();
        let mut attempt = 1;
        let mut restarts = 0;
        let mut sent = false;
        let result = loop {
            if *cancel.borrow() {
                break Err(ReadError::Interrupted);
            }
            let page = tokio::select! {
                page = self.next_page() => page,
                _ = cancel.changed() => break Err(ReadError::Interrupted),
            };
            let error = match page {
                Ok(Some(page)) => {
                    attempt = 1;
                    sent = true;
                    if tx.send(SliceEvent::Page(page)).await.is_err() {
                        break Ok(());
                    }
                    continue;
                }
                Ok(None) => break Ok(()),
                Err(e) => e,
            };
            let (pit, open, pages) = match &self.inner {
                Inner::Pit(r) => (true, true, r.pages()),
                Inner::Scroll(r) => (false, r.is_open(), 0),
            };
            match recovery(&error, pit, open, pages) {
                Recovery::RetryInPlace if attempt < self.policy.max_attempts => {
                    let delay = self.policy.delay(attempt, &mut rng);
                    tracing::warn!("index {:?}: {error}; asking again in {delay:?}", self.index);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Recovery::Restart | Recovery::FallBackToScroll if restarts < MAX_RESTARTS => {
                    let fall_back =
                        recovery(&error, pit, open, pages) == Recovery::FallBackToScroll;
                    tracing::warn!(
                        "index {:?} slice {}: {error}; reading the slice again from its start{}",
                        self.index,
                        self.slice.id,
                        if fall_back { " with scroll" } else { "" }
                    );
                    self.close().await;
                    let keep_pit = pit && !fall_back;
                    self.inner = if keep_pit {
                        Inner::Pit(
                            PitReader::new(
                                self.cluster.clone(),
                                &self.index,
                                self.slice,
                                self.page_size,
                                None,
                            )
                            .with_query(self.query.clone()),
                        )
                    } else {
                        Inner::Scroll(
                            ScrollReader::new(
                                self.cluster.clone(),
                                &self.index,
                                self.slice,
                                self.page_size,
                            )
                            .with_query(self.query.clone()),
                        )
                    };
                    restarts += u32::from(!fall_back || sent);
                    attempt = 1;
                    if sent && tx.send(SliceEvent::Restart).await.is_err() {
                        break Ok(());
                    }
                    sent = false;
                }
                Recovery::Restart => {
                    break Err(ReadError::TooManyRestarts {
                        index: self.index.clone(),
                        restarts,
                        last: error.to_string(),
                    })
                }
                _ => break Err(error),
            }
        };
        match (&result, &mut self.inner) {
            (Err(ReadError::Interrupted), Inner::Pit(r)) => r.keep_open(),
            _ => self.close().await,
        }
        result
    }
}

/// The merged events of every slice, and the reader tasks.
pub type SliceEvents = (
    futures::stream::BoxStream<'static, (u32, SliceEvent)>,
    Vec<tokio::task::JoinHandle<Result<(), ReadError>>>,
);

/// Starts one reader task per slice (reading only the documents matching
/// `query`, if any) and merges their events, each tagged with its slice id,
/// into one stream: for consumers that take every slice together (copy,
/// verify, pipes).
pub fn spawn_slices_matching(
    cluster: Arc<Cluster>,
    index: &str,
    slices: u32,
    page_size: usize,
    kind: ReaderKind,
    query: Option<Arc<str>>,
    cancel: watch::Receiver<bool>,
) -> SliceEvents {
    use futures::StreamExt;
    let mut streams = Vec::new();
    let mut handles = Vec::new();
    for id in 0..slices {
        let (tx, rx) = mpsc::channel::<SliceEvent>(crate::pipeline::CHANNEL_PAGES);
        let reader = SliceReader::new(
            cluster.clone(),
            index,
            Slice { id, max: slices },
            page_size,
            kind,
            None,
        )
        .with_query(query.clone());
        handles.push(tokio::spawn(reader.pump(tx, cancel.clone())));
        streams.push(
            futures::stream::unfold(rx, move |mut rx| async move {
                rx.recv().await.map(|event| ((id, event), rx))
            })
            .boxed(),
        );
    }
    (futures::stream::select_all(streams).boxed(), handles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterError;

    fn http(status: u16, reason: &str) -> ReadError {
        ReadError::Cluster(ClusterError::Http {
            url: "u".into(),
            method: "POST".into(),
            path: "/_search/scroll".into(),
            status,
            reason: reason.into(),
        })
    }

    fn reset() -> ReadError {
        ReadError::Cluster(ClusterError::Transport {
            url: "u".into(),
            method: "POST".into(),
            path: "/_search/scroll".into(),
            reason: "connection reset".into(),
        })
    }

    #[test]
    fn scroll_pages_lost_after_the_server_may_have_acted_restart_the_slice() {
        assert_eq!(recovery(&reset(), false, true, 3), Recovery::Restart);
        assert_eq!(recovery(&http(503, "x"), false, true, 3), Recovery::Restart);
        // Nothing opened yet, or a 429 (not executed): ask again.
        assert_eq!(recovery(&reset(), false, false, 0), Recovery::RetryInPlace);
        assert_eq!(
            recovery(&http(429, "x"), false, true, 3),
            Recovery::RetryInPlace
        );
        let missing = http(404, "search_phase_execution_exception: all shards failed (caused by search_context_missing_exception: No search context found for id [1])");
        assert_eq!(recovery(&missing, false, true, 3), Recovery::Restart);
        assert_eq!(recovery(&http(400, "bad"), false, true, 3), Recovery::Fail);
    }

    #[test]
    fn pit_pages_are_asked_for_again() {
        assert_eq!(recovery(&reset(), true, true, 3), Recovery::RetryInPlace);
        assert_eq!(
            recovery(&http(503, "x"), true, true, 3),
            Recovery::RetryInPlace
        );
        let shards = ReadError::ShardFailures {
            index: "i".into(),
            failed: 1,
            total: 2,
            reason: "r".into(),
        };
        assert_eq!(recovery(&shards, true, true, 3), Recovery::RetryInPlace);
        assert_eq!(recovery(&shards, false, true, 3), Recovery::Restart);
        let missing = http(404, "x (caused by search_context_missing_exception: gone)");
        assert_eq!(recovery(&missing, true, true, 3), Recovery::Restart);
        assert_eq!(
            recovery(&http(400, "no _shard_doc"), true, true, 0),
            Recovery::FallBackToScroll
        );
        assert_eq!(recovery(&http(400, "bad"), true, true, 2), Recovery::Fail);
    }
}
