//! The state of a restore in progress, for `esark restore --resume`:
//! per index, the concrete index written, whether esark created it (and the
//! settings to put back), and the chunks acknowledged by the target.
//! Rewritten atomically after every acknowledged chunk; by default
//! `restore.state.json` in the archive folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::report::IndexReport;
use super::RestoreError;
use crate::archive::checkpoint::write_synced;
use crate::archive::writer::partial_path;
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
    path: PathBuf,
    /// Each update rewrites the file under the lock (once per chunk).
    state: Mutex<RestoreState>,
}

impl StateFile {
    /// A fresh state for a new restore into the cluster `uuid` at `url`.
    pub fn create(path: &Path, url: &str, uuid: &str) -> Result<StateFile, RestoreError> {
        let file = StateFile {
            path: path.into(),
            state: Mutex::new(RestoreState {
                format: STATE_FORMAT.into(),
                format_version: 1,
                target_url: url.into(),
                target_cluster_uuid: uuid.into(),
                indices: BTreeMap::new(),
            }),
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
            path: path.into(),
            state: Mutex::new(state),
        })
    }

    pub fn index(&self, name: &str) -> Option<IndexState> {
        self.lock().indices.get(name).cloned()
    }

    /// Applies `change` and writes the file (temporary file, fsync, rename).
    pub fn update(&self, change: impl FnOnce(&mut RestoreState)) -> Result<(), ArchiveError> {
        let mut state = self.lock();
        change(&mut state);
        let bytes = serde_json::to_vec_pretty(&*state)
            .map_err(|e| ArchiveError::io(&self.path, std::io::Error::other(e)))?;
        let tmp = partial_path(&self.path);
        write_synced(&tmp, &bytes).map_err(|e| ArchiveError::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| ArchiveError::io(&self.path, e))
    }

    /// Removes the file: the restore is complete.
    pub fn remove(&self) -> Result<(), ArchiveError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArchiveError::io(&self.path, e)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RestoreState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
