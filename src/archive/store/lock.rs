//! Who may write a dump under an object-storage prefix: the dump lock,
//! and `--overwrite`'s removal of what the prefix holds.
//!
//! A folder is claimed by the checks and renames of [`super::swap`];
//! object storage has no rename and no atomic "is this prefix empty and
//! mine". Without a lock, two dumps into one prefix both list it empty and
//! write side by side until one loses the manifest's conditional create,
//! having overwritten the other's chunks. So a new dump first creates
//! [`LOCK_FILE`] with [`PutMode::Create`] ([`claim`]), before it writes
//! anything else: of two dumps, one creates it and the other is refused
//! having written nothing. The lock says who holds it ([`DumpLock`]), for
//! the refusal's message. A resumed dump takes it over ([`take_over`]),
//! `--overwrite` removes it with the rest ([`clear`]), and the dump deletes
//! it once its manifest is written ([`release`]).
//!
//! The lock is not part of the archive: no manifest lists it, readers
//! never look for it, and a prefix holding only a lock (and a partial
//! dump) has no manifest, which every reader refuses already.

use std::path::PathBuf;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{ArchiveStore, PutMode, StoreError};
use crate::archive::{ArchiveError, CHECKPOINT_FILE, MANIFEST_FILE};

/// The lock object, beside the archive's files.
pub const LOCK_FILE: &str = ".esark-dump.lock";

/// Objects deleted at once by [`clear`].
const DELETES_IN_FLIGHT: usize = 16;

/// What the lock object holds: enough to tell the user which dump holds
/// the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpLock {
    /// Random, new for every run that takes the lock.
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    /// RFC 3339.
    pub started_at: String,
}

impl DumpLock {
    /// The lock of this process's run, starting now.
    pub fn new() -> DumpLock {
        DumpLock {
            run_id: format!("{:016x}", fastrand::u64(..)),
            host: host_name(),
            pid: std::process::id(),
            started_at: crate::archive::manifest::now_rfc3339(),
        }
    }

    fn to_bytes(&self) -> Bytes {
        let mut bytes = serde_json::to_vec_pretty(self).expect("plain fields serialize");
        bytes.push(b'\n');
        Bytes::from(bytes)
    }

    /// `run R, pid P on host H, started T`, for messages.
    fn describe(&self) -> String {
        format!(
            "run {}, pid {} on host {}, started {}",
            self.run_id, self.pid, self.host, self.started_at
        )
    }
}

impl Default for DumpLock {
    fn default() -> DumpLock {
        DumpLock::new()
    }
}

/// The machine's name, for the lock's reader; `unknown` if it has none
/// we can read.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Claims the empty prefix of `store` for a new dump: creates the lock,
/// unless the prefix holds anything (a lock, an archive, a partial dump)
/// or another dump creates the lock first. A refused claim writes nothing.
pub async fn claim(store: &dyn ArchiveStore, lock: &DumpLock) -> Result<(), ArchiveError> {
    let keys: Vec<String> = store.list("").await?.into_iter().map(|o| o.key).collect();
    let has = |name: &str| keys.iter().any(|k| k == name);
    if has(LOCK_FILE) {
        return Err(locked(store).await);
    }
    if has(CHECKPOINT_FILE) && !has(MANIFEST_FILE) {
        return Err(ArchiveError::UnfinishedDump(store.locate("")));
    }
    if !keys.is_empty() {
        return Err(ArchiveError::NotEmpty(store.locate("")));
    }
    match store.put(LOCK_FILE, lock.to_bytes(), PutMode::Create).await {
        // Both listed the prefix empty; the other one created first.
        Err(StoreError::AlreadyExists { .. }) => Err(locked(store).await),
        other => Ok(other?),
    }
}

/// Takes the lock of an interrupted dump over, for its resumed run.
pub async fn take_over(store: &dyn ArchiveStore, lock: &DumpLock) -> Result<(), ArchiveError> {
    Ok(store
        .put(LOCK_FILE, lock.to_bytes(), PutMode::Overwrite)
        .await?)
}

/// Deletes the lock: the dump's manifest is written.
pub async fn release(store: &dyn ArchiveStore) -> Result<(), ArchiveError> {
    Ok(store.delete(LOCK_FILE).await?)
}

/// Deletes every object under the prefix of `store` (an archive, a partial
/// dump, a lock), the manifest first: a reader then finds no archive
/// rather than a manifest whose files are going. Returns how many objects
/// were deleted.
pub async fn clear(store: &dyn ArchiveStore) -> Result<usize, ArchiveError> {
    let objects = store.list("").await?;
    if objects.iter().any(|o| o.key == MANIFEST_FILE) {
        store.delete(MANIFEST_FILE).await?;
    }
    let count = objects.len();
    futures::stream::iter(objects.into_iter().filter(|o| o.key != MANIFEST_FILE))
        .map(|object| async move { store.delete(&object.key).await })
        .buffer_unordered(DELETES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(count)
}

/// The refusal of a prefix whose lock is taken, naming who took it.
async fn locked(store: &dyn ArchiveStore) -> ArchiveError {
    let holder = match store.get(LOCK_FILE).await {
        Ok(bytes) => serde_json::from_slice::<DumpLock>(&bytes)
            .map(|l| l.describe())
            .unwrap_or_else(|_| "unreadable lock".into()),
        Err(_) => "lock gone since".into(),
    };
    ArchiveError::Locked {
        path: store.locate(""),
        lock: PathBuf::from(LOCK_FILE),
        holder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::store::MemoryStore;

    #[tokio::test]
    async fn a_second_claim_is_refused_and_writes_nothing() {
        let store = MemoryStore::new();
        let first = DumpLock::new();
        claim(&store, &first).await.unwrap();
        let refused = claim(&store, &DumpLock::new()).await.unwrap_err();
        let message = refused.to_string();
        assert!(matches!(refused, ArchiveError::Locked { .. }), "{message}");
        assert!(message.contains(&first.run_id), "{message}");
        assert!(message.contains("--resume") && message.contains("--overwrite"));
        assert!(!message.contains('\n'));
        let keys: Vec<String> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, [LOCK_FILE]);
        let held: DumpLock = serde_json::from_slice(&store.get(LOCK_FILE).await.unwrap()).unwrap();
        assert_eq!(held, first);

        // A resumed run takes it over; the manifest written, it goes.
        let second = DumpLock::new();
        take_over(&store, &second).await.unwrap();
        let held: DumpLock = serde_json::from_slice(&store.get(LOCK_FILE).await.unwrap()).unwrap();
        assert_eq!(held, second);
        release(&store).await.unwrap();
        assert!(store.list("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_archive_or_a_partial_dump_is_refused_without_a_lock() {
        let store = MemoryStore::new();
        store
            .put(CHECKPOINT_FILE, Bytes::from_static(b"{}"), PutMode::Create)
            .await
            .unwrap();
        assert!(matches!(
            claim(&store, &DumpLock::new()).await,
            Err(ArchiveError::UnfinishedDump(_))
        ));
        store
            .put(MANIFEST_FILE, Bytes::from_static(b"{}"), PutMode::Create)
            .await
            .unwrap();
        assert!(matches!(
            claim(&store, &DumpLock::new()).await,
            Err(ArchiveError::NotEmpty(_))
        ));
        assert!(!store.exists(LOCK_FILE).await.unwrap());
    }

    #[tokio::test]
    async fn clear_removes_everything_under_the_prefix() {
        let store = MemoryStore::new();
        for key in [MANIFEST_FILE, LOCK_FILE, "indices/a/data-s000-00000.jsonl"] {
            store
                .put(key, Bytes::from_static(b"x"), PutMode::Create)
                .await
                .unwrap();
        }
        assert_eq!(clear(&store).await.unwrap(), 3);
        assert!(store.list("").await.unwrap().is_empty());
        claim(&store, &DumpLock::new()).await.unwrap();
    }
}
