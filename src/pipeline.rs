//! Task wiring for the data of one index.
//!
//! Per slice, one reader task ([`ScrollReader`]) and one writer task
//! ([`ChunkWriter`]) joined by a bounded `mpsc` channel of pages. Parsing a
//! page and compressing it happen on different tasks, so with two or more
//! slices both cores work. Memory is bounded by
//! `slices × (CHANNEL_PAGES + 2) × page size`, never by the index size.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::archive::compression::Compression;
use crate::archive::manifest::FileEntry;
use crate::archive::writer::ArchiveWriter;
use crate::archive::ArchiveError;
use crate::cluster::scroll::Slice;
use crate::cluster::Cluster;
use crate::progress::IndexProgress;
use crate::sink::ChunkWriter;
use crate::source::{Page, ScrollError, ScrollReader};

/// Pages buffered between a slice's reader and its writer. Two lets the
/// reader fetch the next page while the writer compresses the previous one;
/// more buys nothing once both stages are busy and costs memory.
pub const CHANNEL_PAGES: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Scroll(#[from] ScrollError),
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
}

/// Reads all documents of an index into chunks. Returns the chunk entries
/// (ordered by slice, then sequence) and the document count.
pub async fn dump_data(
    cluster: Arc<Cluster>,
    archive: ArchiveWriter,
    job: &DataJob,
    progress: IndexProgress,
    cancel: watch::Receiver<bool>,
) -> Result<(Vec<FileEntry>, u64), PipelineError> {
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for id in 0..job.slices {
        let (tx, rx) = mpsc::channel::<Page>(CHANNEL_PAGES);
        let reader = ScrollReader::new(
            cluster.clone(),
            &job.index,
            Slice {
                id,
                max: job.slices,
            },
            job.page_size,
        );
        readers.push(tokio::spawn(reader.pump(tx, cancel.clone())));
        let writer = ChunkWriter::new(
            archive.clone(),
            &job.folder,
            id,
            job.compression,
            job.level,
            job.file_size,
        );
        writers.push(tokio::spawn(write_slice(writer, rx, progress.clone())));
    }
    let panicked = |e: tokio::task::JoinError| PipelineError::Panicked {
        index: job.index.clone(),
        reason: e.to_string(),
    };
    let mut first_error = None;
    for r in readers {
        match r.await {
            Ok(Ok(())) => {}
            Ok(Err(ScrollError::Interrupted)) => {
                first_error.get_or_insert(PipelineError::Interrupted);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e.into());
            }
            Err(e) => {
                first_error.get_or_insert(panicked(e));
            }
        }
    }
    let mut files = Vec::new();
    let mut docs = 0;
    for w in writers {
        match w.await.map_err(panicked).and_then(|r| r) {
            Ok((f, d)) => {
                files.extend(f);
                docs += d;
            }
            Err(e) => {
                // A writer failure makes its reader stop quietly (the channel
                // closes), so the writer's error is the one to report.
                first_error = Some(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((files, docs)),
    }
}

/// Compresses pages into chunks until the reader closes the channel.
async fn write_slice(
    mut writer: ChunkWriter,
    mut rx: mpsc::Receiver<Page>,
    progress: IndexProgress,
) -> Result<(Vec<FileEntry>, u64), PipelineError> {
    let mut docs = 0;
    while let Some(page) = rx.recv().await {
        writer.push(&page.lines, page.docs).await?;
        docs += page.docs;
        progress.inc(page.docs);
    }
    Ok((writer.finish().await?, docs))
}
