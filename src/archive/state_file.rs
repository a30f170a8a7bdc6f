//! Files that record progress (a dump's checkpoint, a restore's state),
//! written so that a crash never leaves a torn record behind.
//!
//! [`Journal`] is a local file of JSON lines, one per change (a restore's
//! state lives beside, not in, the archive it reads): appending a change
//! costs the same however much came before. [`StateWriter`] keeps a
//! whole JSON object in an archive, so it writes through the archive's
//! [`ArchiveStore`] (whole-object puts; for a local folder a temporary
//! file, fsync and rename), at most every [`MIN_WRITE_INTERVAL`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use serde::Serialize;

use super::store::local::partial_path;
use super::store::{ArchiveStore, PutMode};
use super::ArchiveError;

/// An append-only file of JSON lines (a restore's state): each change is
/// one line, appended and fdatasync'ed before the change is acted on, so
/// that recording one change costs the same whatever was recorded before.
/// A crash mid-write can leave only the last line torn, without its
/// newline: [`complete_lines`] leaves it out. [`Journal::rewrite`] replaces
/// the whole file (temporary file, fsync and rename): to start one, and
/// to compact one on resume.
pub struct Journal {
    path: PathBuf,
    /// Appends never interleave.
    lock: Mutex<()>,
}

impl Journal {
    /// Replaces the file at `path` with `lines`, one JSON value each.
    pub fn rewrite<L: Serialize>(
        path: &Path,
        lines: impl IntoIterator<Item = L>,
    ) -> Result<Journal, ArchiveError> {
        let mut bytes = Vec::new();
        for line in lines {
            serde_json::to_writer(&mut bytes, &line)
                .map_err(|e| ArchiveError::io(path, std::io::Error::other(e)))?;
            bytes.push(b'\n');
        }
        let tmp = partial_path(path);
        write_synced(&tmp, &bytes).map_err(|e| ArchiveError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| ArchiveError::io(path, e))?;
        Ok(Journal {
            path: path.into(),
            lock: Mutex::new(()),
        })
    }

    /// Appends `line` and waits until it is on disk. The file is opened
    /// for each line (never created: a journal that went away is an
    /// error, not a new, headless one).
    pub fn append<L: Serialize>(&self, line: &L) -> Result<(), ArchiveError> {
        use std::io::Write;
        let mut bytes = serde_json::to_vec(line)
            .map_err(|e| ArchiveError::io(&self.path, std::io::Error::other(e)))?;
        bytes.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| ArchiveError::io(&self.path, e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| ArchiveError::io(&self.path, e))
    }

    /// Removes the file: the work it tracked is complete.
    pub fn remove(&self) -> Result<(), ArchiveError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArchiveError::io(&self.path, e)),
        }
    }
}

/// The complete lines of a journal's bytes, without their newlines: a last
/// line without its newline (torn by a crash mid-write) is left out, and
/// so are empty lines.
pub fn complete_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let complete = match memchr::memrchr(b'\n', bytes) {
        Some(last) => &bytes[..last],
        None => &bytes[..0],
    };
    complete.split(|b| *b == b'\n').filter(|l| !l.is_empty())
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
mod journal_tests {
    use super::*;

    #[test]
    fn a_journal_appends_lines_rewrites_whole_and_leaves_a_torn_last_line_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let journal = Journal::rewrite(&path, [1u32, 2]).unwrap();
        journal.append(&3u32).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n2\n3\n");
        assert!(!partial_path(&path).exists());
        let lines: Vec<&[u8]> = complete_lines(b"1\n\n2\n3").collect();
        assert_eq!(lines, [&b"1"[..], b"2"]);
        assert_eq!(complete_lines(b"12").count(), 0);
        let journal = Journal::rewrite(&path, [7u32]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "7\n");
        journal.remove().unwrap();
        journal.remove().unwrap();
        // A journal that went away is not created again, headless.
        assert!(journal.append(&8u32).is_err());
        assert!(!path.exists());
    }
}

/// A state object in an archive's store, kept by an owner task, for states
/// updated on the hot path (a dump's checkpoint, after every finished
/// chunk).
///
/// [`StateWriter::update`] changes the state in memory and returns at
/// once; the owner task writes the newest state — one write for all the
/// updates that came while the previous write ran — with a whole-object
/// [`ArchiveStore::put`] (a local folder: temporary file, fsync and
/// rename, through tokio's blocking pool, so that no runtime thread waits
/// for a disk). [`StateWriter::flush`]
/// waits until every update made so far is on disk. A failed write fails
/// every later update and flush: a run never goes on believing it can be
/// resumed when it cannot.
pub struct StateWriter<T> {
    shared: std::sync::Arc<Shared<T>>,
    /// Written: the version of the state on disk, or why writing failed.
    written: tokio::sync::watch::Receiver<Written>,
    /// The owner task; aborted by [`StateWriter::remove`] and on drop.
    task: tokio::task::JoinHandle<()>,
}

struct Shared<T> {
    store: std::sync::Arc<dyn ArchiveStore>,
    key: String,
    /// How errors name the object.
    path: PathBuf,
    /// The state and its version (one more per update).
    state: Mutex<(T, u64)>,
    /// Wakes the owner task; a wake-up sent while it writes is kept.
    wake: tokio::sync::Notify,
    /// Cuts the owner task's rest short: a flush is waiting.
    urgent: tokio::sync::Notify,
}

/// Least time between two writes of a [`StateWriter`]'s state, unless a
/// flush waits. Each write serializes the whole state, which grows with
/// every index, and creates a file: a dump of 200 indices of 10 documents,
/// which finish faster than one write, rewrote its checkpoint after nearly
/// every index (in time quadratic in the number of indices); with this
/// rest, its user CPU went from 0.50-0.54 s to 0.16-0.27 s and its fsyncs
/// from 1,180 to 823 (3 runs each, osmem on the same machine). What
/// a crash loses in between is what it loses anyway while a write runs:
/// chunks finished but not yet recorded, which a resume reads again.
pub const MIN_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq)]
enum Written {
    Upto(u64),
    Failed(String),
}

impl<T: Serialize + Clone + Send + 'static> StateWriter<T> {
    /// Holds `state` for the object `key` of `store` and starts the owner
    /// task (call within a tokio runtime). Nothing is written until the
    /// first update.
    pub fn new(store: std::sync::Arc<dyn ArchiveStore>, key: &str, state: T) -> StateWriter<T> {
        let shared = std::sync::Arc::new(Shared {
            path: store.locate(key),
            store,
            key: key.to_string(),
            state: Mutex::new((state, 0)),
            wake: tokio::sync::Notify::new(),
            urgent: tokio::sync::Notify::new(),
        });
        let (tx, written) = tokio::sync::watch::channel(Written::Upto(0));
        let task = tokio::spawn(Self::own(shared.clone(), tx));
        StateWriter {
            shared,
            written,
            task,
        }
    }

    /// The owner task: writes the newest version after each wake-up, at
    /// most once per [`MIN_WRITE_INTERVAL`] unless a flush waits.
    async fn own(shared: std::sync::Arc<Shared<T>>, tx: tokio::sync::watch::Sender<Written>) {
        let mut on_disk = 0;
        loop {
            shared.wake.notified().await;
            let (bytes, version) = {
                let guard = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                (serde_json::to_vec_pretty(&guard.0), guard.1)
            };
            if version == on_disk {
                continue;
            }
            let outcome = match bytes {
                Ok(bytes) => shared
                    .store
                    .put(&shared.key, Bytes::from(bytes), PutMode::Overwrite)
                    .await
                    .map_err(|e| e.into_io()),
                Err(e) => Err(std::io::Error::other(e)),
            };
            match outcome {
                Ok(()) => {
                    on_disk = version;
                    let _ = tx.send(Written::Upto(version));
                    tokio::select! {
                        _ = tokio::time::sleep(MIN_WRITE_INTERVAL) => {}
                        _ = shared.urgent.notified() => {}
                    }
                }
                Err(e) => {
                    let _ = tx.send(Written::Failed(e.to_string()));
                    return;
                }
            }
        }
    }

    fn failed(&self) -> Option<ArchiveError> {
        match &*self.written.borrow() {
            Written::Failed(why) => Some(ArchiveError::io(
                &self.shared.path,
                std::io::Error::other(why.clone()),
            )),
            Written::Upto(_) => None,
        }
    }

    /// Applies `change` in memory and has the owner task write it; fails
    /// if an earlier write failed.
    pub fn update(&self, change: impl FnOnce(&mut T)) -> Result<(), ArchiveError> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        {
            let mut guard = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut guard.0);
            guard.1 += 1;
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Waits until every update made so far is on disk.
    pub async fn flush(&self) -> Result<(), ArchiveError> {
        let target = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1;
        self.shared.urgent.notify_one();
        let mut written = self.written.clone();
        let outcome = written
            .wait_for(|w| match w {
                Written::Upto(v) => *v >= target,
                Written::Failed(_) => true,
            })
            .await
            .map(|w| w.clone());
        match outcome {
            Ok(Written::Upto(_)) => Ok(()),
            Ok(Written::Failed(why)) => Err(ArchiveError::io(
                &self.shared.path,
                std::io::Error::other(why),
            )),
            Err(_) => Err(ArchiveError::io(
                &self.shared.path,
                std::io::Error::other("the state file's writer stopped"),
            )),
        }
    }

    /// A copy of the current state (with updates not yet on disk).
    pub fn snapshot(&self) -> T {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Stops writing and removes the file: the work it tracked is
    /// complete. Waits for a write under way, so that none lands after.
    pub async fn remove(&self) -> Result<(), ArchiveError> {
        self.flush().await?;
        self.task.abort();
        Ok(self.shared.store.delete(&self.shared.key).await?)
    }
}

impl<T> Drop for StateWriter<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    #[tokio::test]
    async fn updates_are_written_by_the_owner_and_flush_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.json");
        let store = std::sync::Arc::new(crate::archive::store::LocalStore::new(dir.path()));
        let file = StateWriter::new(store, "checkpoint.json", Vec::<u32>::new());
        for i in 0..100 {
            file.update(|v| v.push(i)).unwrap();
        }
        file.flush().await.unwrap();
        let on_disk: Vec<u32> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(on_disk, (0..100).collect::<Vec<_>>());
        assert_eq!(file.snapshot().len(), 100);
        assert!(!partial_path(&path).exists());
        file.remove().await.unwrap();
        assert!(!path.exists());
        // Nothing written after the removal.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_failed_write_fails_later_updates_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(crate::archive::store::LocalStore::new(
            dir.path().join("gone"),
        ));
        let file = StateWriter::new(store, "checkpoint.json", 0u32);
        file.update(|v| *v += 1).unwrap();
        let err = file.flush().await.unwrap_err();
        assert!(err.to_string().contains("checkpoint.json"), "{err}");
        assert!(file.update(|v| *v += 1).is_err());
        assert!(file.flush().await.is_err());
    }
}
