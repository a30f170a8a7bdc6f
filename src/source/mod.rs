//! Reading documents: out of a cluster ([`slice::SliceReader`], over a
//! [`pit::PitReader`] or a [`scroll::ScrollReader`], or for a small index
//! one [`whole::WholeSearch`]) or out of an archive
//! ([`archive::ChunkLines`]).
//!
//! Cluster readers turn each answer into archive lines ([`page`]) without
//! parsing `_source`, in pages bounded in bytes as well as documents
//! ([`page_size`]). A slice reader owns recovery: it retries a page where
//! asking again is safe, and restarts the slice from its start (telling the
//! consumer with [`SliceEvent::Restart`]) where it is not.

pub mod archive;
pub mod foreign;
pub mod page;
pub mod page_size;
pub mod pit;
pub mod scan;
pub mod scroll;
pub mod slice;
pub mod whole;

use crate::cluster::ClusterError;

pub use page::Page;
pub use slice::{ReaderKind, ResumePoint, SliceEvent, SliceReader};

/// A reader of data lines from files: archive chunks
/// ([`archive::ChunkLines`]) or dumps of other tools
/// ([`foreign::lines::ForeignLines`]), for the passes that treat them alike
/// (validation before a restore, verify).
pub trait LineReader {
    /// Reads the next data line into `buf`; `false` at the end. `Err`
    /// names the file.
    fn read_line(
        &mut self,
        buf: &mut Vec<u8>,
    ) -> impl std::future::Future<Output = Result<bool, LineReadError>>;
    /// The file and line of the line last read.
    fn position(&self) -> (std::path::PathBuf, u64);
}

impl LineReader for archive::ChunkLines {
    async fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, LineReadError> {
        Ok(self.next_line(buf).await?)
    }
    fn position(&self) -> (std::path::PathBuf, u64) {
        archive::ChunkLines::position(self)
    }
}

impl LineReader for foreign::lines::ForeignLines {
    async fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, LineReadError> {
        Ok(self.next_line(buf).await?)
    }
    fn position(&self) -> (std::path::PathBuf, u64) {
        foreign::lines::ForeignLines::position(self)
    }
}

/// Why a [`LineReader`] could not read a line.
#[derive(Debug, thiserror::Error)]
pub enum LineReadError {
    #[error(transparent)]
    Chunk(#[from] archive::ChunkError),
    #[error(transparent)]
    Foreign(#[from] foreign::ForeignError),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
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
    #[error("index {index:?}: document {id} has no _source (disabled in the mapping?): the index cannot be dumped; leave it out with --exclude")]
    MissingSource { index: String, id: String },
    #[error("index {index:?}: unreadable search response: {reason}")]
    BadPage { index: String, reason: String },
    #[error("index {index:?}: the server returned a page without a scroll id")]
    NoScrollId { index: String },
    #[error(
        "index {index:?}: gave up after restarting a slice {restarts} times; last error: {last}"
    )]
    TooManyRestarts {
        index: String,
        restarts: u32,
        last: String,
    },
    #[error("interrupted")]
    Interrupted,
}
