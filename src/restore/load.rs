//! Loading one index's documents into the target: lines from archive
//! chunks, from a live cluster's readers or converted from a foreign dump's
//! files, through a [`BulkBuilder`], into the shared [`BulkIndexer`].
//!
//! From an archive, requests never span two chunks, so that a chunk can be
//! acknowledged (for `restore --resume`) once all its documents are written
//! or rejected; a chunk with an undelivered document is not acknowledged and
//! is sent again by a resumed run (indexing by id makes that idempotent).
//! Foreign files are not acknowledged: a resumed run loads an unfinished
//! index from a foreign dump again whole.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use tokio::task::JoinSet;

use crate::archive::ArchiveError;
use crate::job::{CancellationToken, IndexCounter};
use crate::plan::DataOrigin;
use crate::sink::bulk::{BulkBuilder, BulkIndexer, IndexStats, Pending, PushError};
use crate::source::archive::{ChunkError, ChunkFile, ChunkLines};
use crate::source::foreign::{ForeignError, ForeignFile, ForeignLines};
use crate::source::slice::spawn_slices_matching;
use crate::source::{ReadError, SliceEvent};
use crate::stream::{StreamError, StreamInput};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error(transparent)]
    Foreign(#[from] ForeignError),
    #[error("{}: line {line}: malformed data line: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        line: u64,
        reason: PushError,
    },
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The stream of `restore --input -` is incomplete or damaged.
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("interrupted")]
    Interrupted,
    /// A reader task of a copy's source panicked or was cancelled.
    #[error("{index}: reader task failed: {reason}")]
    ReaderFailed { index: String, reason: String },
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Progress that could not be recorded: the load stops early, as a
/// resumed run would not know what was done.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot record restore progress: {0}")]
    State(ArchiveError),
    /// The rejects of a chunk could not be made durable before the chunk
    /// was recorded as done.
    #[error(transparent)]
    Rejects(ArchiveError),
}

/// Limits of one bulk request.
#[derive(Debug, Clone, Copy)]
pub struct BulkSize {
    pub bytes: usize,
    pub docs: usize,
}

/// Called when every document of a chunk is written or rejected, with the
/// chunk's path and its written and rejected counts. `Err` (the progress
/// could not be recorded) fails the load.
pub type ChunkAck = Arc<dyn Fn(&Path, u64, u64) -> Result<(), RecordError> + Send + Sync>;

/// Called before the first document of a chunk is sent. `Err` stops the load.
pub type ChunkStart = Arc<dyn Fn(&Path) -> Result<(), RecordError> + Send + Sync>;

/// How chunks are tracked for `restore --resume` (archives only).
#[derive(Default)]
pub struct ChunkHooks {
    /// Chunks an earlier run acknowledged: skipped.
    pub done: HashSet<PathBuf>,
    /// Chunks an earlier run began: their documents may be on the target
    /// already, so their requests are marked as resends.
    pub begun: HashSet<PathBuf>,
    pub start: Option<ChunkStart>,
    pub ack: Option<ChunkAck>,
}

/// What a load read.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// Documents submitted.
    pub read: u64,
    /// Of those, documents sent again because their slice was restarted.
    pub resent: u64,
}

/// Where the documents go, and what is counted.
pub struct LoadTarget<'a> {
    pub indexer: &'a BulkIndexer,
    pub index: Arc<str>,
    pub stats: Arc<IndexStats>,
    /// The index's running totals: documents (and their bytes) handed to
    /// the indexer.
    pub counter: &'a IndexCounter,
}

/// Feeds every document of `origin` (minus the chunks in `chunks.done`) to
/// the indexer. Returns what was read once every request has ended
/// (written, rejected or failed: see `target.stats`).
pub async fn load(
    origin: &DataOrigin,
    source_index: &str,
    builder: BulkBuilder,
    target: LoadTarget<'_>,
    chunks: ChunkHooks,
    cancel: CancellationToken,
) -> Result<Loaded, LoadError> {
    let mut feeder = Feeder {
        builder,
        target,
        read: 0,
        resent: 0,
    };
    let result = match origin {
        DataOrigin::Chunks(files) => feeder.feed_chunks(files, chunks, cancel).await,
        DataOrigin::Foreign(files) => feeder.feed_foreign(files, cancel).await,
        DataOrigin::Stdin(input) => feeder.feed_stdin(input, cancel).await,
        DataOrigin::Cluster { .. } => feeder.feed_cluster(origin, source_index, cancel).await,
    };
    result.map(|()| Loaded {
        read: feeder.read,
        resent: feeder.resent,
    })
}

struct Feeder<'a> {
    builder: BulkBuilder,
    target: LoadTarget<'a>,
    read: u64,
    resent: u64,
}

impl Feeder<'_> {
    async fn push(
        &mut self,
        line: &[u8],
        stats: &Arc<IndexStats>,
        pending: &mut Pending,
    ) -> Result<(), PushError> {
        if let Some(request) = self.builder.push_line(line)? {
            self.submit(request, stats, pending).await;
        }
        self.read += 1;
        Ok(())
    }

    async fn flush(&mut self, stats: &Arc<IndexStats>, pending: &mut Pending) {
        if let Some(request) = self.builder.take() {
            self.submit(request, stats, pending).await;
        }
    }

    async fn submit(
        &mut self,
        request: crate::sink::bulk::BulkRequest,
        stats: &Arc<IndexStats>,
        pending: &mut Pending,
    ) {
        let (docs, bytes) = (request.docs() as u64, request.bytes() as u64);
        self.target
            .indexer
            .submit(&self.target.index, request, stats, pending)
            .await;
        self.target.counter.add(docs, bytes);
    }

    /// Reads chunk after chunk; each chunk's requests are awaited by a task
    /// of their own, which adds the chunk's counts to the index's and
    /// acknowledges it when nothing was left undelivered.
    async fn feed_chunks(
        &mut self,
        files: &[ChunkFile],
        hooks: ChunkHooks,
        cancel: CancellationToken,
    ) -> Result<(), LoadError> {
        let mut waiters = JoinSet::new();
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut result = Ok(());
        for file in files.iter().filter(|f| !hooks.done.contains(&f.path)) {
            if cancel.is_cancelled() {
                result = Err(LoadError::Interrupted);
                break;
            }
            // Progress that cannot be recorded stops the load early.
            if let Some(e) =
                std::iter::from_fn(|| waiters.try_join_next()).find_map(|r| r.ok().flatten())
            {
                result = Err(LoadError::Record(e));
                break;
            }
            if let Some(start) = &hooks.start {
                if let Err(e) = start(&file.path) {
                    result = Err(LoadError::Record(e));
                    break;
                }
            }
            self.builder.set_resend(hooks.begun.contains(&file.path));
            let stats = Arc::new(IndexStats::default());
            let mut pending = Pending::new();
            let mut lines = ChunkLines::new(vec![file.clone()]);
            let read = loop {
                match lines.next_line(&mut buf).await {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(LoadError::from(e)),
                }
                if cancel.is_cancelled() {
                    break Err(LoadError::Interrupted);
                }
                if let Err(reason) = self.push(&buf, &stats, &mut pending).await {
                    let (path, line) = lines.position();
                    break Err(LoadError::Malformed { path, line, reason });
                }
            };
            // What was read of a broken or interrupted chunk is still sent,
            // but the chunk is not acknowledged.
            let complete = read.is_ok();
            self.flush(&stats, &mut pending).await;
            let total = self.target.stats.clone();
            let ack = hooks.ack.clone().filter(|_| complete);
            let path = file.path.clone();
            waiters.spawn(async move {
                pending.wait().await;
                let (written, rejected, failed) = stats.snapshot();
                total.add(written, rejected, failed);
                match (ack, failed) {
                    (Some(ack), 0) => ack(&path, written, rejected).err(),
                    _ => None,
                }
            });
            if let Err(e) = read {
                result = Err(e);
                break;
            }
        }
        while let Some(acked) = waiters.join_next().await {
            if let Ok(Some(e)) = acked {
                if !matches!(result, Err(LoadError::Record(_))) {
                    result = Err(LoadError::Record(e));
                }
            }
        }
        result
    }

    /// Reads the documents of the stream on standard input until its
    /// trailer; a stream that ends without it, or counts differently, is an
    /// error once what was read is sent.
    async fn feed_stdin(
        &mut self,
        input: &StreamInput,
        cancel: CancellationToken,
    ) -> Result<(), LoadError> {
        let Some(mut input) = input.take() else {
            return Err(LoadError::Stream(StreamError::AlreadyRead));
        };
        let stats = self.target.stats.clone();
        let mut pending = Pending::new();
        let mut buf = Vec::with_capacity(64 * 1024);
        let result = loop {
            // A pipe may stay silent (a slow dump): the signal does not
            // wait for its next line.
            let next = tokio::select! {
                next = input.next_doc(&mut buf) => next,
                () = cancel.cancelled() => break Err(LoadError::Interrupted),
            };
            match next {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(LoadError::from(e)),
            }
            if let Err(reason) = self.push(&buf, &stats, &mut pending).await {
                break Err(LoadError::Malformed {
                    path: PathBuf::from("standard input"),
                    line: input.line(),
                    reason,
                });
            }
        };
        self.flush(&stats, &mut pending).await;
        pending.wait().await;
        result
    }

    /// Reads foreign files in order, converting each document to an
    /// archive line; counts go straight to the index's.
    async fn feed_foreign(
        &mut self,
        files: &[ForeignFile],
        cancel: CancellationToken,
    ) -> Result<(), LoadError> {
        let stats = self.target.stats.clone();
        let mut pending = Pending::new();
        let mut lines = ForeignLines::new(files.to_vec());
        let mut buf = Vec::with_capacity(64 * 1024);
        let result = loop {
            match lines.next_line(&mut buf).await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(LoadError::from(e)),
            }
            if cancel.is_cancelled() {
                break Err(LoadError::Interrupted);
            }
            if let Err(reason) = self.push(&buf, &stats, &mut pending).await {
                let (path, line) = lines.position();
                break Err(LoadError::Malformed { path, line, reason });
            }
        };
        // What was read before a broken line or Ctrl-C is still sent.
        self.flush(&stats, &mut pending).await;
        pending.wait().await;
        result
    }

    /// Reads a live index (`origin` is a [`DataOrigin::Cluster`]).
    async fn feed_cluster(
        &mut self,
        origin: &DataOrigin,
        index: &str,
        cancel: CancellationToken,
    ) -> Result<(), LoadError> {
        let DataOrigin::Cluster {
            cluster,
            slices,
            page_size,
            reader,
            query,
        } = origin
        else {
            return Ok(());
        };
        let (cluster, slices, page_size, reader, query) =
            (cluster.clone(), *slices, *page_size, *reader, query.clone());
        let stats = self.target.stats.clone();
        let mut pending = Pending::new();
        let (mut events, readers) =
            spawn_slices_matching(cluster, index, slices, page_size, reader, query, cancel);
        // Documents sent per slice since its (re)start: a restarted slice
        // sends them again (harmless: bulk indexing by id is idempotent).
        let mut per_slice = vec![0u64; slices as usize];
        let mut failed = None;
        'events: while let Some((slice, event)) = events.next().await {
            match event {
                SliceEvent::Restart => {
                    self.resent += std::mem::take(&mut per_slice[slice as usize]);
                    // From now on a document may be one the restarted slice
                    // delivered already: a data stream `create` answered 409
                    // is that delivery, not a reject. (Which documents were
                    // delivered is not known, so this holds for the rest of
                    // the index: a genuine conflict on a first delivery after
                    // a restart counts as written too.)
                    self.builder.set_resend(true);
                }
                SliceEvent::Page(page) => {
                    per_slice[slice as usize] += page.docs;
                    for line in page.lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        if let Err(reason) = self.push(line, &stats, &mut pending).await {
                            failed = Some(LoadError::Malformed {
                                path: index.into(),
                                line: 0,
                                reason,
                            });
                            break 'events;
                        }
                    }
                }
            }
        }
        drop(events);
        if failed.is_none() {
            self.flush(&stats, &mut pending).await;
        }
        pending.wait().await;
        for r in readers {
            match r.await {
                Ok(Ok(())) => {}
                Ok(Err(ReadError::Interrupted)) => {
                    failed.get_or_insert(LoadError::Interrupted);
                }
                Ok(Err(e)) => {
                    failed.get_or_insert(e.into());
                }
                Err(e) => {
                    failed.get_or_insert(LoadError::ReaderFailed {
                        index: index.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
