//! A small JSON file that records progress (a dump's checkpoint, a
//! restore's state): rewritten whole on every update through a temporary
//! file, fsync and rename, so that a crash leaves either the previous
//! version or the new one, never a torn file.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use super::writer::partial_path;
use super::ArchiveError;

pub struct StateFile<T> {
    path: PathBuf,
    /// The state; each update rewrites the file while holding the lock, so
    /// writes never interleave. Updates are rare (once per finished chunk).
    state: Mutex<T>,
}

impl<T: Serialize + Clone> StateFile<T> {
    /// Holds `state` for `path`; nothing is written until the first update.
    pub fn new(path: &Path, state: T) -> StateFile<T> {
        StateFile {
            path: path.into(),
            state: Mutex::new(state),
        }
    }

    /// Applies `change` and writes the file.
    pub fn update(&self, change: impl FnOnce(&mut T)) -> Result<(), ArchiveError> {
        let mut state = self.lock();
        change(&mut state);
        let bytes = serde_json::to_vec_pretty(&*state)
            .map_err(|e| ArchiveError::io(&self.path, std::io::Error::other(e)))?;
        let tmp = partial_path(&self.path);
        write_synced(&tmp, &bytes).map_err(|e| ArchiveError::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| ArchiveError::io(&self.path, e))
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> T {
        self.lock().clone()
    }

    /// Removes the file: the work it tracked is complete.
    pub fn remove(&self) -> Result<(), ArchiveError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArchiveError::io(&self.path, e)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes `bytes` to `path`, owner-only, and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_replace_the_file_and_remove_deletes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = StateFile::new(&path, vec![1u32]);
        assert!(!path.exists());
        file.update(|v| v.push(2)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path)
                .unwrap()
                .split_whitespace()
                .collect::<String>(),
            "[1,2]"
        );
        assert!(!partial_path(&path).exists());
        assert_eq!(file.snapshot(), vec![1, 2]);
        file.remove().unwrap();
        file.remove().unwrap();
        assert!(!path.exists());
    }
}
