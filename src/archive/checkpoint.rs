//! The checkpoint of a dump in progress: `checkpoint.json` beside the
//! archive's files, rewritten atomically after every finished chunk and
//! removed once the manifest is written. `esark dump --resume` reads it:
//! finished indices and slices are kept, a point-in-time slice continues
//! from its recorded position, a scroll slice is read again.
//!
//! It is a private file of the tool, not part of the archive format: an
//! archive is what the manifest lists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::manifest::{DumpOptions, FileEntry, IndexEntry, SkippedIndex, SourceCluster};
use super::writer::partial_path;
use super::ArchiveError;
use crate::source::pit::PitPosition;
use crate::source::ReaderKind;

pub const CHECKPOINT_FILE: &str = "checkpoint.json";
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

    /// Reads the checkpoint of the dump in `root`.
    pub fn load(root: &Path) -> Result<Checkpoint, ArchiveError> {
        let path = root.join(CHECKPOINT_FILE);
        let bytes = std::fs::read(&path).map_err(|e| ArchiveError::io(&path, e))?;
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

/// The checkpoint of a running dump, shared by its writer tasks.
pub struct Checkpointer {
    path: PathBuf,
    /// The state; each update rewrites the file while holding the lock, so
    /// writes never interleave. Updates happen once per finished chunk.
    state: Mutex<Checkpoint>,
}

impl Checkpointer {
    pub fn new(root: &Path, checkpoint: Checkpoint) -> Checkpointer {
        Checkpointer {
            path: root.join(CHECKPOINT_FILE),
            state: Mutex::new(checkpoint),
        }
    }

    /// Applies `change` and writes the file (temporary file, fsync, rename).
    pub fn update(&self, change: impl FnOnce(&mut Checkpoint)) -> Result<(), ArchiveError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut state);
        let bytes = serde_json::to_vec_pretty(&*state)
            .map_err(|e| ArchiveError::io(&self.path, std::io::Error::other(e)))?;
        let tmp = partial_path(&self.path);
        write_synced(&tmp, &bytes).map_err(|e| ArchiveError::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| ArchiveError::io(&self.path, e))
    }

    pub fn snapshot(&self) -> Checkpoint {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Removes the file (the manifest now says the dump is complete).
    pub fn remove(&self) -> Result<(), ArchiveError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArchiveError::io(&self.path, e)),
        }
    }
}

/// Writes `bytes` to `path`, owner-only, and fsyncs it.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
