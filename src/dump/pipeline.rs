//! Task wiring for the data of one index.
//!
//! Per slice, one reader task ([`SliceReader`]) and one writer task
//! ([`ChunkWriter`]) joined by a bounded `mpsc` channel of pages. Parsing a
//! page and compressing it happen on different tasks, so with two or more
//! slices both cores work. At most `--readers` slices read at once over all
//! indices (a shared semaphore), so memory is bounded by about
//! `readers × (CHANNEL_PAGES + 4) × page size`, never by the index size or
//! the number of indices and shards.
//!
//! After every finished chunk the writer records in the checkpoint what is
//! safely on disk and, for a point-in-time slice, where reading continues
//! (in memory: the checkpoint's own task writes it, see
//! [`crate::archive::state_file::StateWriter`]); a slice restart (a lost
//! scroll page, a resumed point in time that is gone) discards the slice's
//! chunks, those kept from an earlier run included.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::checkpoint::{Checkpointer, SliceCheckpoint};
use crate::archive::compression::Compression;
use crate::archive::manifest::FileEntry;
use crate::archive::writer::ArchiveWriter;
use crate::archive::ArchiveError;
use crate::cluster::scroll::Slice;
use crate::cluster::Cluster;
use crate::job::{CancellationToken, IndexCounter};
use crate::sink::ChunkWriter;
use crate::source::pit::PitPosition;
use crate::source::{ReadError, ReaderKind, SliceEvent, SliceReader};

pub use crate::source::slice::CHANNEL_PAGES;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("interrupted")]
    Interrupted,
    #[error("internal error: a task of index {index:?} panicked: {reason}")]
    Panicked { index: String, reason: String },
}

/// What to read and how to write it, for one index.
#[derive(Debug, Clone)]
pub struct DataJob {
    pub index: String,
    /// The index folder relative to the archive root.
    pub folder: String,
    pub slices: u32,
    pub page_size: usize,
    pub compression: Compression,
    pub level: i32,
    pub file_size: u64,
    pub reader: ReaderKind,
    /// Only documents matching this query (raw JSON).
    pub query: Option<Arc<str>>,
    /// Permits to read, shared by every index of the run (`--readers`): a
    /// slice waits for one before its first request.
    pub readers: Arc<tokio::sync::Semaphore>,
    /// Read a slice that starts from the beginning with one search first
    /// ([`crate::source::whole`]): for an index listed with no more
    /// documents than a page.
    pub whole_first: bool,
}

/// Records a slice's progress in the checkpoint.
#[derive(Clone)]
struct SliceHook {
    checkpointer: Arc<Checkpointer>,
    index: String,
    slice: u32,
}

impl SliceHook {
    fn record(&self, state: SliceCheckpoint) -> Result<(), ArchiveError> {
        self.checkpointer.update(|cp| {
            cp.indices
                .entry(self.index.clone())
                .or_default()
                .slices
                .insert(self.slice, state);
        })
    }
}

/// Reads all documents of an index into chunks, continuing from `resume`
/// (per slice, what an earlier run left). Returns the chunk entries
/// (ordered by slice, then sequence) and the document count.
pub async fn dump_data(
    cluster: Arc<Cluster>,
    archive: ArchiveWriter,
    job: &DataJob,
    counter: IndexCounter,
    checkpointer: Arc<Checkpointer>,
    resume: BTreeMap<u32, SliceCheckpoint>,
    cancel: CancellationToken,
) -> Result<(Vec<FileEntry>, u64), PipelineError> {
    let mut tasks = Vec::new();
    for id in 0..job.slices {
        let hook = SliceHook {
            checkpointer: checkpointer.clone(),
            index: job.index.clone(),
            slice: id,
        };
        let state = resume.get(&id).cloned().unwrap_or_default();
        let writer = ChunkWriter::new(
            archive.clone(),
            &job.folder,
            id,
            job.compression,
            job.level,
            job.file_size,
        );
        if state.done {
            let docs = state.docs();
            // Counted without bytes: those are of the run that read them.
            counter.add(docs, 0);
            tasks.push((
                None,
                tokio::spawn(async move { Ok((state.chunks, docs, None)) }),
            ));
            continue;
        }
        // A point-in-time slice continues where it stood; anything else is
        // read again whole, its chunks discarded.
        let position = state
            .position
            .clone()
            .filter(|_| job.reader.reads_with_pit(&cluster));
        let mut writer = writer.resume(state.chunks.clone());
        match &position {
            Some(_) => counter.add(state.docs(), 0),
            None => writer.discard().await?,
        }
        let reader = SliceReader::new(
            cluster.clone(),
            &job.index,
            Slice {
                id,
                max: job.slices,
            },
            job.page_size,
            job.reader,
            position.clone(),
        )
        .with_query(job.query.clone());
        let reader = match job.whole_first && position.is_none() {
            true => reader.whole_first(),
            false => reader,
        };
        let (tx, rx) = mpsc::channel::<SliceEvent>(CHANNEL_PAGES);
        let readers = job.readers.clone();
        let read_cancel = cancel.clone();
        let read = tokio::spawn(async move {
            // Never closed; an error would only mean reading unthrottled.
            let _permit = readers.acquire_owned().await;
            reader.pump(tx, read_cancel).await
        });
        let write = tokio::spawn(write_slice(writer, rx, counter.clone(), hook, position));
        tasks.push((Some(read), write));
    }
    let panicked = |e: tokio::task::JoinError| PipelineError::Panicked {
        index: job.index.clone(),
        reason: e.to_string(),
    };
    let mut first_error = None;
    let mut files = Vec::new();
    let mut docs = 0;
    for (id, (read, write)) in tasks.into_iter().enumerate() {
        let read_result = match read {
            None => Ok(()),
            Some(handle) => match handle.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(ReadError::Interrupted)) => Err(PipelineError::Interrupted),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(panicked(e)),
            },
        };
        match write.await.map_err(panicked).and_then(|r| r) {
            Ok((f, d, position)) => {
                if read_result.is_ok() {
                    let hook = SliceHook {
                        checkpointer: checkpointer.clone(),
                        index: job.index.clone(),
                        slice: id as u32,
                    };
                    hook.record(SliceCheckpoint {
                        chunks: f.clone(),
                        position,
                        done: true,
                    })?;
                }
                files.extend(f);
                docs += d;
            }
            // A writer failure makes its reader stop quietly (the channel
            // closes), so the writer's error is the one to report.
            Err(e) => {
                first_error = Some(e);
                continue;
            }
        }
        if let Err(e) = read_result {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((files, docs)),
    }
}

/// Compresses pages into chunks until the reader closes the channel,
/// recording each finished chunk in the checkpoint. Returns the chunks, the
/// document count and where a point-in-time slice stopped.
async fn write_slice(
    mut writer: ChunkWriter,
    mut rx: mpsc::Receiver<SliceEvent>,
    counter: IndexCounter,
    hook: SliceHook,
    start: Option<PitPosition>,
) -> Result<(Vec<FileEntry>, u64, Option<PitPosition>), PipelineError> {
    let mut docs: u64 = writer.finished().iter().filter_map(|f| f.docs).sum();
    // Bytes of the pages read by this run (counted on the index).
    let mut bytes: u64 = 0;
    // Where reading stood after the last page written; documents of the
    // first page that a resumed reader dropped (already in kept chunks).
    let mut skipped_before = start.as_ref().map_or(0, |s| s.skip);
    let mut last = start.clone();
    while let Some(event) = rx.recv().await {
        let page = match event {
            SliceEvent::Restart => {
                // Forgotten on disk before the files go: a crash in
                // between leaves a checkpoint without them, never one that
                // lists files that are gone.
                hook.record(SliceCheckpoint::default())?;
                hook.checkpointer.flush().await?;
                writer.discard().await?;
                counter.take_back(docs, bytes);
                docs = 0;
                bytes = 0;
                last = None;
                skipped_before = 0;
                continue;
            }
            SliceEvent::Page(page) => page,
        };
        let closed_before = writer.finished().len();
        writer.push(&page.lines, page.docs).await?;
        docs += page.docs;
        bytes += page.lines.len() as u64;
        counter.add(page.docs, page.lines.len() as u64);
        let here = page.pit_id.as_ref().map(|pit| PitPosition {
            pit_id: pit.clone(),
            cursor: page.cursor.clone(),
            skip: 0,
        });
        if writer.finished().len() != closed_before {
            // A chunk closed during this page. If another one is open, it
            // holds the end of this page: resume before the page and skip
            // what the closed chunks already hold.
            let position = match (writer.open_docs(), &here) {
                (Some(open), Some(h)) if open > 0 => Some(PitPosition {
                    pit_id: h.pit_id.clone(),
                    cursor: last.as_ref().and_then(|l| l.cursor.clone()),
                    skip: skipped_before + page.docs - open,
                }),
                _ => here.clone(),
            };
            hook.record(SliceCheckpoint {
                chunks: writer.finished().to_vec(),
                position,
                done: false,
            })?;
        }
        last = here;
        skipped_before = 0;
    }
    let files = writer.finish().await?;
    hook.record(SliceCheckpoint {
        chunks: files.clone(),
        position: last.clone(),
        done: false,
    })?;
    Ok((files, docs, last))
}
