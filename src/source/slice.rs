//! One slice of one index, read with recovery.
//!
//! The decision of what to do with a failed page is made by
//! [`recovery`] (pure), the doing by [`SliceReader::pump`], which waits and
//! counts with the [`RetryPolicy`]'s [`Backoff`](crate::retry::Backoff),
//! like every other request path:
//! - asking again is safe for point-in-time pages (repeatable), for opening
//!   a scroll, and for a scroll page refused with 429 or 503 (the server
//!   refused to run it: overloaded, or no shard available, so no shard's
//!   cursor moved): retried in place with backoff;
//! - a scroll page lost after the server may have acted (connection error,
//!   500, 502, 504), or an expired context, cannot be asked for again: the
//!   slice is restarted from its start, after a backoff, and the consumer
//!   is told ([`SliceEvent::Restart`]) to discard everything it holds of
//!   this slice — pages of this run and chunks kept from an earlier,
//!   interrupted run alike — so no page is skipped and none is written
//!   twice;
//! - a cluster that refuses point-in-time sorting falls back to scroll,
//!   which is a restart too.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::page::Page;
use super::pit::{PitPosition, PitReader};
use super::scroll::ScrollReader;
use super::whole::{Whole, WholeSearch};
use super::ReadError;
use crate::cluster::scroll::Slice;
use crate::cluster::Cluster;
use crate::job::CancellationToken;
use crate::retry::{classify_status, RetryAction, RetryPolicy, Verdict};

/// Pages buffered between a slice's reader and its consumer (the chunk
/// writer of a dump, the bulk builder of a copy). One lets the reader fetch
/// the next page while the writer compresses the previous one. More buys
/// nothing: compressing a page (~2.5 ms at zstd 1) takes a fraction of
/// fetching one, so the channel is almost always empty, and a second slot
/// only added ~1.8 MB per slice to the peak memory.
pub const CHANNEL_PAGES: usize = 1;

/// Upper bound of `--slices auto`: past the number of cores, more slices
/// only add scroll contexts on the server.
pub const AUTO_SLICES_MAX: u32 = 4;

/// How many slices to read an index with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceCount {
    /// One per primary shard, at most [`AUTO_SLICES_MAX`].
    Auto,
    /// As given, but never more than the primary shards.
    Fixed(u32),
}

impl SliceCount {
    pub fn resolve(self, shards: u32) -> u32 {
        let shards = shards.max(1);
        match self {
            SliceCount::Auto => shards.min(AUTO_SLICES_MAX),
            SliceCount::Fixed(n) => n.clamp(1, shards),
        }
    }
}

impl std::fmt::Display for SliceCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SliceCount::Auto => f.write_str("auto"),
            SliceCount::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// Restarts of one slice before giving up.
pub const MAX_RESTARTS: u32 = 5;

/// What a reader sends its consumer.
#[derive(Debug)]
pub enum SliceEvent {
    Page(Page),
    /// Everything the consumer holds of this slice must be discarded
    /// (including what it kept from an earlier run it resumes): the slice
    /// is read again from its start.
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

impl ReaderKind {
    /// Whether slices of `cluster` are read with a point in time.
    pub fn reads_with_pit(self, cluster: &Cluster) -> bool {
        match self {
            ReaderKind::Pit => true,
            ReaderKind::Scroll => false,
            ReaderKind::Auto => {
                cluster.flavor() == crate::cluster::model::info::Flavor::Elasticsearch
                    && cluster.has_pit()
            }
        }
    }
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
            // Refused, not run: no cursor moved.
            Some(429 | 503) => Recovery::RetryInPlace,
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
    /// One search for the whole (small) index; `true` once it gave it.
    Whole(WholeSearch, bool),
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
    /// Started from a resume point: the consumer holds chunks of this
    /// slice from an earlier run.
    resumed: bool,
    /// Whether the slice is read with a point in time (after a whole
    /// search that found too many documents, too).
    pit: bool,
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
        let pit = kind.reads_with_pit(&cluster);
        let resumed = pit && resume.is_some();
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
            resumed,
            pit,
        }
    }

    /// Reads the index with one search first ([`WholeSearch`]): for an
    /// unsliced index listed with no more documents than a page holds,
    /// read from its start. When the search finds more, the slice is read
    /// as it would have been.
    pub fn whole_first(mut self) -> SliceReader {
        if self.slice.max <= 1 && !self.resumed {
            self.inner = Inner::Whole(
                WholeSearch::new(self.cluster.clone(), &self.index, self.page_size)
                    .with_query(self.query.clone()),
                false,
            );
        }
        self
    }

    /// Reads only the documents matching `query` (raw JSON).
    pub fn with_query(mut self, query: Option<Arc<str>>) -> SliceReader {
        self.inner = match self.inner {
            Inner::Pit(r) => Inner::Pit(r.with_query(query.clone())),
            Inner::Scroll(r) => Inner::Scroll(r.with_query(query.clone())),
            Inner::Whole(r, done) => Inner::Whole(r.with_query(query.clone()), done),
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
            Inner::Whole(_, true) => Ok(None),
            Inner::Whole(r, done) => match r.search().await? {
                Whole::All(page) => {
                    *done = true;
                    Ok((page.docs > 0).then_some(page))
                }
                Whole::TooMany => {
                    tracing::debug!(
                        "index {:?}: more documents than listed, read with a context",
                        self.index
                    );
                    self.reopen(self.pit);
                    Box::pin(self.next_page()).await
                }
            },
        }
    }

    async fn close(&mut self) {
        match &mut self.inner {
            Inner::Scroll(r) => r.close().await,
            Inner::Pit(r) => r.close().await,
            Inner::Whole(..) => {}
        }
    }

    /// The point in time in use, if any.
    pub fn pit_id(&self) -> Option<&str> {
        match &self.inner {
            Inner::Pit(r) => r.pit_id(),
            Inner::Scroll(_) | Inner::Whole(..) => None,
        }
    }

    /// Sends pages into `tx` until the slice is exhausted, the receiver is
    /// gone (its side reports why), or `cancel` is cancelled. Contexts are
    /// closed at the end, except a point in time when the run is
    /// interrupted (a resumed run continues with it).
    ///
    /// What to do with a failed page is [`recovery`]'s decision; the
    /// waits and the counting are the policy's
    /// [`Backoff`](crate::retry::Backoff): one for the page under way
    /// (asked again in place at most `max_attempts` times), one for the
    /// restarts of the slice (at most [`MAX_RESTARTS`]).
    pub async fn pump(
        mut self,
        tx: mpsc::Sender<SliceEvent>,
        cancel: CancellationToken,
    ) -> Result<(), ReadError> {
        let mut in_place = self.policy.backoff();
        let mut restarts = RetryPolicy {
            max_attempts: MAX_RESTARTS + 1,
            ..self.policy.clone()
        }
        .backoff();
        // Whether the consumer holds anything of this slice: pages sent in
        // this run, or chunks kept from the earlier run it resumes.
        let mut held = self.resumed;
        let result = loop {
            if cancel.is_cancelled() {
                break Err(ReadError::Interrupted);
            }
            let page = tokio::select! {
                page = self.next_page() => page,
                () = cancel.cancelled() => break Err(ReadError::Interrupted),
            };
            let error = match page {
                Ok(Some(page)) => {
                    in_place.reset();
                    held = true;
                    if tx.send(SliceEvent::Page(page)).await.is_err() {
                        break Ok(());
                    }
                    continue;
                }
                Ok(None) => break Ok(()),
                Err(e) => e,
            };
            // `reopen_pit`: how the slice is read again after a restart.
            let (pit, open, pages, reopen_pit) = match &self.inner {
                Inner::Pit(r) => (true, true, r.pages(), true),
                Inner::Scroll(r) => (false, r.is_open(), 0, false),
                // No context: asking again is safe, as for opening a scroll.
                Inner::Whole(..) => (false, false, 0, self.pit),
            };
            let retry = |what: &str| Verdict::Retry {
                after: None,
                why: format!(
                    "index {:?} slice {}: {error}; {what}",
                    self.index, self.slice.id
                ),
            };
            // `None`: fall back to scroll at once (not a restart).
            let delay = match recovery(&error, pit, open, pages) {
                Recovery::RetryInPlace => match in_place.next_delay(&retry("asking again")) {
                    Some(delay) => {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => continue,
                            () = cancel.cancelled() => break Err(ReadError::Interrupted),
                        }
                    }
                    None => break Err(error),
                },
                Recovery::Restart => {
                    match restarts.next_delay(&retry("reading the slice again from its start")) {
                        Some(delay) => Some(delay),
                        None => {
                            break Err(ReadError::TooManyRestarts {
                                index: self.index.clone(),
                                restarts: restarts.attempts() - 1,
                                last: error.to_string(),
                            })
                        }
                    }
                }
                Recovery::FallBackToScroll if restarts.attempts() <= MAX_RESTARTS => {
                    tracing::warn!(
                        "index {:?} slice {}: {error}; reading the slice again from its start with scroll",
                        self.index,
                        self.slice.id
                    );
                    None
                }
                Recovery::FallBackToScroll | Recovery::Fail => break Err(error),
            };
            self.close().await;
            self.reopen(reopen_pit && delay.is_some());
            in_place.reset();
            // Also when this run sent nothing yet: the consumer may hold
            // chunks of this slice from an earlier run.
            if held && tx.send(SliceEvent::Restart).await.is_err() {
                break Ok(());
            }
            held = false;
            if let Some(delay) = delay {
                // What made the slice fail may take a moment to pass (a
                // node restarting): do not hammer it.
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    () = cancel.cancelled() => break Err(ReadError::Interrupted),
                }
            }
        };
        match (&result, &mut self.inner) {
            (Err(ReadError::Interrupted), Inner::Pit(r)) => r.keep_open(),
            _ => self.close().await,
        }
        result
    }

    /// A fresh reader of the whole slice: with a new point in time when
    /// `pit`, else with scroll.
    fn reopen(&mut self, pit: bool) {
        self.inner = if pit {
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
    cancel: CancellationToken,
) -> SliceEvents {
    use futures::StreamExt;
    let mut streams = Vec::new();
    let mut handles = Vec::new();
    for id in 0..slices {
        let (tx, rx) = mpsc::channel::<SliceEvent>(CHANNEL_PAGES);
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

    /// An error answer of `status` whose error is of type `kind`, caused
    /// by `root` (literal Elasticsearch shapes).
    fn http_caused(status: u16, kind: &str, root: &str) -> ReadError {
        let body = format!(
            r#"{{"error":{{"root_cause":[{{"type":"{root}","reason":"r"}}],"type":"{kind}","reason":"x"}},"status":{status}}}"#
        );
        ReadError::Cluster(ClusterError::from_answer(
            "POST",
            "/_search/scroll",
            status,
            &body,
        ))
    }

    fn http(status: u16, kind: &str) -> ReadError {
        http_caused(status, kind, kind)
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
        for status in [500, 502, 504] {
            assert_eq!(
                recovery(&http(status, "x"), false, true, 3),
                Recovery::Restart
            );
        }
        // Refused, not run: ask again.
        assert_eq!(
            recovery(&http(503, "unavailable_shards_exception"), false, true, 3),
            Recovery::RetryInPlace
        );
        // Nothing opened yet, or a 429 (not executed): ask again.
        assert_eq!(recovery(&reset(), false, false, 0), Recovery::RetryInPlace);
        assert_eq!(
            recovery(&http(429, "x"), false, true, 3),
            Recovery::RetryInPlace
        );
        let missing = http_caused(
            404,
            "search_phase_execution_exception",
            "search_context_missing_exception",
        );
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
        let missing = http(404, "search_context_missing_exception");
        assert_eq!(recovery(&missing, true, true, 3), Recovery::Restart);
        assert_eq!(
            recovery(&http(400, "no _shard_doc"), true, true, 0),
            Recovery::FallBackToScroll
        );
        assert_eq!(recovery(&http(400, "bad"), true, true, 2), Recovery::Fail);
    }
}
