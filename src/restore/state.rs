//! The state of a restore in progress, for `esark restore --resume`:
//! per index, the concrete index written, whether esark created it (and the
//! settings to put back), and the chunks acknowledged by the target.
//! Rewritten atomically after every acknowledged chunk; by default
//! `restore.state.json` in the archive folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::report::IndexReport;
use super::RestoreError;
use crate::archive::ArchiveError;

pub const STATE_FILE: &str = "restore.state.json";
const STATE_FORMAT: &str = "esark-restore-state";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreState {
    pub format: String,
    pub format_version: u32,
    pub target_url: String,
    pub target_cluster_uuid: String,
    pub indices: BTreeMap<String, IndexState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexState {
    pub target: String,
    pub concrete: String,
    /// Set when esark created the index: the settings to put back.
    pub restore_settings: Option<Value>,
    /// Acknowledged chunks: path -> (written, rejected).
    pub chunks: BTreeMap<PathBuf, (u64, u64)>,
    /// The final report, once the index is complete.
    pub done: Option<IndexReport>,
}

/// The state file of a running restore, shared by its tasks.
pub struct StateFile {
    file: crate::archive::state_file::StateFile<RestoreState>,
}

impl StateFile {
    /// A fresh state for a new restore into the cluster `uuid` at `url`.
    pub fn create(path: &Path, url: &str, uuid: &str) -> Result<StateFile, RestoreError> {
        let file = StateFile {
            file: crate::archive::state_file::StateFile::new(
                path,
                RestoreState {
                    format: STATE_FORMAT.into(),
                    format_version: 1,
                    target_url: url.into(),
                    target_cluster_uuid: uuid.into(),
                    indices: BTreeMap::new(),
                },
            ),
        };
        file.update(|_| {})?;
        Ok(file)
    }

    /// The state of an interrupted restore into the cluster `uuid`.
    pub fn resume(path: &Path, uuid: &str) -> Result<StateFile, RestoreError> {
        let bytes = std::fs::read(path).map_err(|e| {
            RestoreError::Resume(format!(
                "{}: {e}: no interrupted restore to continue",
                path.display()
            ))
        })?;
        let state: RestoreState =
            serde_json::from_slice(&bytes).map_err(|e| RestoreError::BadFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        if state.format != STATE_FORMAT || state.format_version != 1 {
            return Err(RestoreError::Resume(format!(
                "{}: not an esark restore state of a known version",
                path.display()
            )));
        }
        if state.target_cluster_uuid != uuid {
            return Err(RestoreError::Resume(format!(
                "{}: the interrupted restore went to cluster {} at {}, not to this one",
                path.display(),
                state.target_cluster_uuid,
                state.target_url
            )));
        }
        Ok(StateFile {
            file: crate::archive::state_file::StateFile::new(path, state),
        })
    }

    pub fn index(&self, name: &str) -> Option<IndexState> {
        self.file.snapshot().indices.get(name).cloned()
    }

    pub fn update(&self, change: impl FnOnce(&mut RestoreState)) -> Result<(), ArchiveError> {
        self.file.update(change)
    }

    /// Removes the file: the restore is complete.
    pub fn remove(&self) -> Result<(), ArchiveError> {
        self.file.remove()
    }
}
