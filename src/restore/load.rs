//! Loading one index's documents into the target: lines from archive
//! chunks or from a live cluster's scroll, through a [`BulkBuilder`], into
//! the shared [`BulkIndexer`].

use std::sync::Arc;

use tokio::sync::watch;

use super::plan::DataOrigin;
use crate::progress::IndexProgress;
use crate::sink::bulk::{BulkBuilder, BulkIndexer, IndexStats, Pending};
use crate::source::archive::{ChunkError, ChunkLines};
use crate::source::slice::spawn_slices;
use crate::source::{ReadError, ReaderKind, SliceEvent};
use futures::StreamExt;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error("{}: line {line}: malformed data line: {reason}", path.display())]
    Malformed {
        path: std::path::PathBuf,
        line: u64,
        reason: String,
    },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("interrupted")]
    Interrupted,
}

/// Limits of one bulk request.
#[derive(Debug, Clone, Copy)]
pub struct BulkSize {
    pub bytes: usize,
    pub docs: usize,
}

/// Feeds every document of `origin` to the indexer, as requests for
/// `index`. Returns what was read once every request has ended (written,
/// rejected or failed: see `stats`).
#[allow(clippy::too_many_arguments)]
pub async fn load(
    origin: &DataOrigin,
    source_index: &str,
    builder: BulkBuilder,
    indexer: &BulkIndexer,
    stats: &Arc<IndexStats>,
    target_index: &Arc<str>,
    progress: &IndexProgress,
    cancel: watch::Receiver<bool>,
) -> Result<Loaded, LoadError> {
    let mut pending = Pending::new();
    let mut feeder = Feeder {
        builder,
        indexer,
        stats,
        target_index,
        pending: &mut pending,
        progress,
        read: 0,
        resent: 0,
    };
    let result = match origin {
        DataOrigin::Chunks(files) => {
            feeder
                .from_chunks(ChunkLines::new(files.clone()), cancel)
                .await
        }
        DataOrigin::Cluster {
            cluster,
            slices,
            page_size,
            reader,
        } => {
            feeder
                .from_cluster(
                    cluster.clone(),
                    source_index,
                    *slices,
                    *page_size,
                    *reader,
                    cancel,
                )
                .await
        }
    };
    let (read, resent) = (feeder.read, feeder.resent);
    if result.is_ok() {
        if let Some(last) = feeder.builder.finish() {
            indexer
                .submit(target_index, last, stats, &mut pending)
                .await;
        }
    }
    // Requests already sent finish (or give up) in every case, so that
    // their documents are counted and settings can be put back after.
    pending.wait().await;
    result.map(|()| Loaded { read, resent })
}

/// What a load read.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// Documents submitted.
    pub read: u64,
    /// Of those, documents sent again because their slice was restarted.
    pub resent: u64,
}

struct Feeder<'a> {
    builder: BulkBuilder,
    indexer: &'a BulkIndexer,
    stats: &'a Arc<IndexStats>,
    target_index: &'a Arc<str>,
    pending: &'a mut Pending,
    progress: &'a IndexProgress,
    read: u64,
    resent: u64,
}

impl Feeder<'_> {
    async fn push(&mut self, line: &[u8]) -> Result<(), String> {
        if let Some(request) = self.builder.push_line(line)? {
            let docs = request.docs() as u64;
            self.indexer
                .submit(self.target_index, request, self.stats, self.pending)
                .await;
            self.progress.inc(docs);
        }
        self.read += 1;
        Ok(())
    }

    async fn from_chunks(
        &mut self,
        mut lines: ChunkLines,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), LoadError> {
        let mut buf = Vec::with_capacity(64 * 1024);
        while lines.next_line(&mut buf).await? {
            if *cancel.borrow() {
                return Err(LoadError::Interrupted);
            }
            if let Err(reason) = self.push(&buf).await {
                let (path, line) = lines.position();
                return Err(LoadError::Malformed { path, line, reason });
            }
        }
        Ok(())
    }

    async fn from_cluster(
        &mut self,
        cluster: Arc<crate::cluster::Cluster>,
        index: &str,
        slices: u32,
        page_size: usize,
        reader: ReaderKind,
        cancel: watch::Receiver<bool>,
    ) -> Result<(), LoadError> {
        let (mut events, readers) = spawn_slices(cluster, index, slices, page_size, reader, cancel);
        // Documents sent per slice since its (re)start: a restarted slice
        // sends them again (harmless: bulk indexing by id is idempotent).
        let mut per_slice = vec![0u64; slices as usize];
        let mut failed = None;
        while let Some((slice, event)) = events.next().await {
            match event {
                SliceEvent::Restart => {
                    self.resent += std::mem::take(&mut per_slice[slice as usize]);
                }
                SliceEvent::Page(page) => {
                    per_slice[slice as usize] += page.docs;
                    for line in page.lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        if let Err(reason) = self.push(line).await {
                            failed = Some(LoadError::Malformed {
                                path: index.into(),
                                line: 0,
                                reason,
                            });
                            break;
                        }
                    }
                }
            }
            if failed.is_some() {
                break;
            }
        }
        drop(events);
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
                    failed.get_or_insert(LoadError::Malformed {
                        path: index.into(),
                        line: 0,
                        reason: format!("reader task failed: {e}"),
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
