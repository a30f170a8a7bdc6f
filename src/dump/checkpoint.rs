//! The checkpoint of a dump in progress: `checkpoint.json` beside the
//! archive's files, rewritten atomically after every finished chunk and
//! removed once the manifest is written. `esark dump --resume` reads it:
//! finished indices and slices are kept, a point-in-time slice continues
//! from its recorded position, a scroll slice is read again.
//!
//! It is a private file of the tool, not part of the archive format: an
//! archive is what the manifest lists. It lives in the archive, so it is
//! read and written through the archive's store.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::archive::manifest::{DumpOptions, FileEntry, IndexEntry, SkippedIndex, SourceCluster};
use crate::archive::state_file::StateWriter;
use crate::archive::store::ArchiveStore;
use crate::archive::writer::ArchiveWriter;
use crate::archive::ArchiveError;
use crate::source::pit::PitPosition;
use crate::source::ReaderKind;

pub use crate::archive::CHECKPOINT_FILE;
const CHECKPOINT_FORMAT: &str = "esark-checkpoint";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: String,
    pub format_version: u32,
    pub created_at: String,
    pub source: SourceCluster,
    pub options: DumpOptions,
    pub reader: ReaderKind,
    pub indices: BTreeMap<String, IndexCheckpoint>,
    #[serde(default)]
    pub skipped: Vec<SkippedIndex>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexCheckpoint {
    /// Set once the index is complete.
    pub done: Option<IndexEntry>,
    /// Per slice, what is safely on disk.
    pub slices: BTreeMap<u32, SliceCheckpoint>,
    /// The slice count the index is read with.
    pub slice_count: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SliceCheckpoint {
    /// Finished chunks (fsynced and renamed into place).
    pub chunks: Vec<FileEntry>,
    /// Where a point-in-time slice continues after those chunks.
    pub position: Option<PitPosition>,
    pub done: bool,
}

impl SliceCheckpoint {
    pub fn docs(&self) -> u64 {
        self.chunks.iter().filter_map(|c| c.docs).sum()
    }
}

impl Checkpoint {
    pub fn new(
        created_at: String,
        source: SourceCluster,
        options: DumpOptions,
        reader: ReaderKind,
    ) -> Self {
        Checkpoint {
            format: CHECKPOINT_FORMAT.into(),
            format_version: 1,
            created_at,
            source,
            options,
            reader,
            indices: BTreeMap::new(),
            skipped: Vec::new(),
        }
    }

    /// Reads the checkpoint of the dump in `store`.
    pub async fn load(store: &dyn ArchiveStore) -> Result<Checkpoint, ArchiveError> {
        let path = store.locate(CHECKPOINT_FILE);
        let bytes = store.get(CHECKPOINT_FILE).await?;
        let cp: Checkpoint =
            serde_json::from_slice(&bytes).map_err(|e| ArchiveError::BadManifest {
                path: path.clone(),
                reason: format!("unreadable checkpoint: {e}"),
            })?;
        if cp.format != CHECKPOINT_FORMAT || cp.format_version != 1 {
            return Err(ArchiveError::BadManifest {
                path,
                reason: "not an esark checkpoint of a known version".into(),
            });
        }
        Ok(cp)
    }
}

/// The checkpoint of a running dump, shared by its writer tasks: updated
/// in memory after every finished chunk, written by its own task.
pub type Checkpointer = StateWriter<Checkpoint>;

/// The checkpoint of the dump writing `archive`, kept in its store.
pub fn checkpointer(archive: &ArchiveWriter, checkpoint: Checkpoint) -> Checkpointer {
    StateWriter::new(Arc::clone(archive.store()), CHECKPOINT_FILE, checkpoint)
}
