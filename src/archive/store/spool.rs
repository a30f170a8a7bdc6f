//! [`SpoolStore`]: a local copy of every object read whole, so that a
//! restore from object storage downloads each chunk once.
//!
//! A restore reads its data twice: the check before the first write, then
//! the load. From a local folder the second read is the page cache's; from
//! object storage it was a second download of the whole archive (twice the
//! egress, and in the benchmark 1.87x the folder's wall time). Wrapped in a
//! [`SpoolStore`], the first [`ArchiveStore::read`] of an object from its
//! start copies the bytes into a private file of the [`Spool`] as they
//! stream by; once that read reaches the end of the object, later reads of
//! it are served from the file. The copy holds the stored bytes, so an
//! encrypted archive stays encrypted on disk, and the load proves the
//! manifest's digest again on what it reads.
//!
//! A copy is kept only when it is whole: a read dropped before the end
//! (a check that stopped at a damaged line, a cancelled restore) leaves
//! nothing, and the next read goes to the object again. The spool takes at
//! most its budget ([`Spool::open`]: by default half the space free where
//! it lives), counted as bytes arrive; an object that does not fit is read
//! from the store each time.
//!
//! Small objects read whole with [`ArchiveStore::get`] (the manifest,
//! metadata files) are kept the same way, and [`ArchiveStore::head`] of an
//! object with a copy is answered from it: a metadata file checked (one
//! read) and then parsed costs one request instead of three, which on
//! object storage, at some 10 ms a request, is most of the time a restore
//! of many small indices takes. The folder is removed when the last handle on
//! the spool goes; one left by a killed process is removed by the next
//! spool opened beside it (its name carries the dead process's id).
//!
//! Writes to the spool file are plain blocking writes into the page cache,
//! made as the bytes arrive (at most one read buffer at a time).

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

use super::{
    ArchiveStore, LocalStore, ObjectMeta, ObjectReader, ObjectUpload, PutMode, StoreFuture,
};

/// The prefix of a spool folder's name: `esark-spool-PID-XXXXXX`.
const PREFIX: &str = "esark-spool-";

/// How much a restore may keep locally (`restore --spool-dir`,
/// `--spool-limit`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Where the spool folder is made; `None`: [`default_dir`], and no
    /// spool at all when that is in memory (tmpfs).
    pub dir: Option<PathBuf>,
    /// At most this many bytes; `None`: half the space free in `dir` when
    /// the spool is opened. `Some(0)` turns spooling off.
    pub limit: Option<u64>,
}

/// Errors opening a spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool folder {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
}

/// The folder a spool goes to by default: `$XDG_CACHE_HOME/esark/spool`,
/// else `$HOME/.cache/esark/spool`, else the system's temporary folder.
pub fn default_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_CACHE_HOME")
        .map(|d| d.join("esark/spool"))
        .or_else(|| var("HOME").map(|d| d.join(".cache/esark/spool")))
        .unwrap_or_else(std::env::temp_dir)
}

/// A private folder of whole copies, removed with the last handle.
#[derive(Debug)]
pub struct Spool {
    dir: tempfile::TempDir,
    /// Bytes that may still be taken.
    budget: AtomicU64,
    /// Names the next partial copy.
    next: AtomicU64,
    /// Whole copies by key, with their sizes.
    whole: Mutex<HashMap<String, (PathBuf, u64)>>,
    /// Reads served from a copy.
    served: AtomicU64,
}

impl Spool {
    /// A new spool under `config.dir`, or `None` when spooling is off
    /// (`--spool-limit 0`, no space free, or the default folder in memory).
    pub fn open(config: &SpoolConfig) -> Result<Option<Arc<Spool>>, SpoolError> {
        if config.limit == Some(0) {
            return Ok(None);
        }
        let parent = config.dir.clone().unwrap_or_else(default_dir);
        let io = |error| SpoolError::Io {
            path: parent.clone(),
            error,
        };
        create_private_dir(&parent).map_err(io)?;
        let space = filesystem(&parent).map_err(io)?;
        if config.dir.is_none() && space.in_memory {
            tracing::info!(
                "spool: {} is in memory (tmpfs); objects are downloaded for each read",
                parent.display()
            );
            return Ok(None);
        }
        prune_dead(&parent);
        let limit = config.limit.unwrap_or(space.free / 2);
        if limit == 0 {
            return Ok(None);
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .tempdir_in(&parent)
            .map_err(io)?;
        Ok(Some(Arc::new(Spool {
            dir,
            budget: AtomicU64::new(limit),
            next: AtomicU64::new(0),
            whole: Mutex::new(HashMap::new()),
            served: AtomicU64::new(0),
        })))
    }

    /// The spool's own folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes held in whole copies.
    pub fn held(&self) -> u64 {
        self.whole().values().map(|(_, size)| size).sum()
    }

    /// Reads served from a copy instead of the store.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    fn whole(&self) -> std::sync::MutexGuard<'_, HashMap<String, (PathBuf, u64)>> {
        self.whole.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The whole copy of `key` and its size, if there is one.
    fn copy_of(&self, key: &str) -> Option<(PathBuf, u64)> {
        self.whole().get(key).cloned()
    }

    /// Keeps `bytes`, an object read whole by [`ArchiveStore::get`], if the
    /// budget allows.
    fn keep_whole(self: &Arc<Self>, key: &str, bytes: &[u8]) {
        let mut copy = Tee::copy(key, self.clone());
        copy.keep(bytes);
        copy.finish();
    }

    fn take(&self, n: u64) -> bool {
        self.budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    fn give_back(&self, n: u64) {
        self.budget.fetch_add(n, Ordering::AcqRel);
    }
}

/// What [`filesystem`] tells of a folder.
struct Space {
    free: u64,
    in_memory: bool,
}

#[cfg(target_os = "linux")]
fn filesystem(dir: &Path) -> io::Result<Space> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: `path` is a valid C string and `fs` a zeroed struct that
    // statfs fills; nothing is kept past the call.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut fs) } != 0 {
        return Err(io::Error::last_os_error());
    }
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    let kind = fs.f_type as i64;
    Ok(Space {
        free: (fs.f_bavail as u64).saturating_mul(fs.f_bsize as u64),
        in_memory: kind == TMPFS_MAGIC || kind == RAMFS_MAGIC,
    })
}

#[cfg(not(target_os = "linux"))]
fn filesystem(_dir: &Path) -> io::Result<Space> {
    // No portable way to ask: a spool only where a limit is given.
    Ok(Space {
        free: 0,
        in_memory: false,
    })
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Removes the spool folders under `parent` whose process is gone (a
/// restore killed with -9 cannot remove its own).
fn prune_dead(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !alive(pid) {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(
                    "spool: removed {} (left by a killed run)",
                    entry.path().display()
                ),
                Err(e) => tracing::debug!("spool: {}: {e}", entry.path().display()),
            }
        }
    }
}

#[cfg(unix)]
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    // SAFETY: signal 0 checks only that the process exists.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn alive(_pid: u32) -> bool {
    true
}

/// `inner`, with every object read whole kept in `spool`.
#[derive(Debug)]
pub struct SpoolStore {
    inner: Arc<dyn ArchiveStore>,
    spool: Arc<Spool>,
}

impl SpoolStore {
    pub fn new(inner: Arc<dyn ArchiveStore>, spool: Arc<Spool>) -> SpoolStore {
        SpoolStore { inner, spool }
    }

    async fn read_copy(&self, key: &str, offset: u64) -> Option<ObjectReader> {
        let (path, size) = self.spool.copy_of(key)?;
        if offset > size {
            return None;
        }
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!("spool: {}: {e}", path.display());
                return None;
            }
        };
        if offset > 0 && file.seek(io::SeekFrom::Start(offset)).await.is_err() {
            return None;
        }
        self.spool.served.fetch_add(1, Ordering::Relaxed);
        Some(Box::new(file) as ObjectReader)
    }
}

impl ArchiveStore for SpoolStore {
    fn locate(&self, key: &str) -> PathBuf {
        self.inner.locate(key)
    }
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Bytes> {
        Box::pin(async move {
            if let Some((path, _)) = self.spool.copy_of(key) {
                if let Ok(bytes) = tokio::fs::read(&path).await {
                    self.spool.served.fetch_add(1, Ordering::Relaxed);
                    return Ok(Bytes::from(bytes));
                }
            }
            let bytes = self.inner.get(key).await?;
            self.spool.keep_whole(key, &bytes);
            Ok(bytes)
        })
    }
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes, mode: PutMode) -> StoreFuture<'a, ()> {
        self.inner.put(key, bytes, mode)
    }
    fn upload<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Box<dyn ObjectUpload>> {
        self.inner.upload(key)
    }
    fn read<'a>(&'a self, key: &'a str, offset: u64) -> StoreFuture<'a, ObjectReader> {
        Box::pin(async move {
            if let Some(copy) = self.read_copy(key, offset).await {
                return Ok(copy);
            }
            let stream = self.inner.read(key, offset).await?;
            if offset > 0 {
                return Ok(stream);
            }
            Ok(Box::new(Tee::new(stream, key, self.spool.clone())) as ObjectReader)
        })
    }
    fn head<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ObjectMeta> {
        Box::pin(async move {
            match self.spool.copy_of(key) {
                Some((_, size)) => Ok(ObjectMeta {
                    key: key.to_string(),
                    size,
                }),
                None => self.inner.head(key).await,
            }
        })
    }
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if let Some((path, size)) = self.spool.whole().remove(key) {
                let _ = std::fs::remove_file(path);
                self.spool.give_back(size);
            }
            self.inner.delete(key).await
        })
    }
    fn create_folder<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, ()> {
        self.inner.create_folder(prefix)
    }
    fn settle(&self) -> BoxFuture<'_, ()> {
        self.inner.settle()
    }
    fn as_local(&self) -> Option<&LocalStore> {
        self.inner.as_local()
    }
}

/// A read of an object from its start, copying what it passes on into a
/// partial file of the spool; made a whole copy at the end of the object.
struct Tee {
    inner: ObjectReader,
    key: String,
    spool: Arc<Spool>,
    /// The partial copy, while one is being made.
    copy: Option<(std::fs::File, PathBuf)>,
    /// Budget taken by the partial copy.
    taken: u64,
}

impl Tee {
    fn new(inner: ObjectReader, key: &str, spool: Arc<Spool>) -> Tee {
        let mut tee = Tee::copy(key, spool);
        tee.inner = inner;
        tee
    }

    /// A copy of `key` fed by [`Tee::keep`], with nothing to read from.
    fn copy(key: &str, spool: Arc<Spool>) -> Tee {
        let n = spool.next.fetch_add(1, Ordering::Relaxed);
        let path = spool.path().join(format!("{n}.partial"));
        let copy = std::fs::File::create(&path).map(|f| (f, path));
        if let Err(e) = &copy {
            tracing::debug!("spool: cannot copy {key}: {e}");
        }
        Tee {
            inner: Box::new(tokio::io::empty()),
            key: key.to_string(),
            spool,
            copy: copy.ok(),
            taken: 0,
        }
    }

    /// Stops copying: the partial file goes, its budget comes back.
    fn abandon(&mut self) {
        if let Some((file, path)) = self.copy.take() {
            drop(file);
            let _ = std::fs::remove_file(path);
        }
        self.spool.give_back(std::mem::take(&mut self.taken));
    }

    fn keep(&mut self, bytes: &[u8]) {
        let n = bytes.len() as u64;
        let Some((file, _)) = self.copy.as_mut() else {
            return;
        };
        if !self.spool.take(n) {
            tracing::debug!("spool: {} does not fit the spool's budget", self.key);
            return self.abandon();
        }
        self.taken += n;
        if let Err(e) = file.write_all(bytes) {
            tracing::debug!("spool: cannot copy {}: {e}", self.key);
            self.abandon();
        }
    }

    /// The end of the object: the partial copy becomes the whole one.
    fn finish(&mut self) {
        let Some((file, partial)) = self.copy.take() else {
            return;
        };
        drop(file);
        let whole = partial.with_extension("");
        if let Err(e) = std::fs::rename(&partial, &whole) {
            tracing::debug!("spool: cannot keep {}: {e}", self.key);
            let _ = std::fs::remove_file(&partial);
            return self.spool.give_back(std::mem::take(&mut self.taken));
        }
        let size = std::mem::take(&mut self.taken);
        let earlier = self.spool.whole().insert(self.key.clone(), (whole, size));
        // Two whole reads at once: the earlier copy goes.
        if let Some((path, size)) = earlier {
            let _ = std::fs::remove_file(path);
            self.spool.give_back(size);
        }
    }
}

impl AsyncRead for Tee {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    // The end of the object (or a zero-length buffer,
                    // which readers never pass).
                    if buf.remaining() > 0 {
                        self.finish();
                    }
                } else {
                    self.keep(new);
                }
            }
            Poll::Ready(Err(_)) => self.abandon(),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::store::{MemoryStore, StoreError};
    use std::sync::atomic::AtomicUsize;
    use tokio::io::AsyncReadExt;

    /// A store that counts the reads it serves.
    #[derive(Debug)]
    struct Counting {
        inner: MemoryStore,
        reads: AtomicUsize,
    }

    impl ArchiveStore for Counting {
        fn locate(&self, key: &str) -> PathBuf {
            self.inner.locate(key)
        }
        fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Bytes> {
            self.inner.get(key)
        }
        fn put<'a>(&'a self, key: &'a str, bytes: Bytes, mode: PutMode) -> StoreFuture<'a, ()> {
            self.inner.put(key, bytes, mode)
        }
        fn upload<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Box<dyn ObjectUpload>> {
            self.inner.upload(key)
        }
        fn read<'a>(&'a self, key: &'a str, offset: u64) -> StoreFuture<'a, ObjectReader> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.read(key, offset)
        }
        fn head<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ObjectMeta> {
            self.inner.head(key)
        }
        fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<ObjectMeta>> {
            self.inner.list(prefix)
        }
        fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
            self.inner.delete(key)
        }
        fn create_folder<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, ()> {
            self.inner.create_folder(prefix)
        }
    }

    fn object(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    async fn setup(limit: u64) -> (Arc<Counting>, Arc<Spool>, SpoolStore, tempfile::TempDir) {
        let inner = Arc::new(Counting {
            inner: MemoryStore::new(),
            reads: AtomicUsize::new(0),
        });
        for (key, seed) in [("a/data-0", 1u8), ("a/data-1", 2), ("b/data-0", 3)] {
            inner
                .put(key, Bytes::from(object(300_000, seed)), PutMode::Create)
                .await
                .unwrap();
        }
        let parent = tempfile::tempdir().unwrap();
        let spool = Spool::open(&SpoolConfig {
            dir: Some(parent.path().to_path_buf()),
            limit: Some(limit),
        })
        .unwrap()
        .unwrap();
        let store = SpoolStore::new(inner.clone(), spool.clone());
        (inner, spool, store, parent)
    }

    async fn read_all(store: &SpoolStore, key: &str, offset: u64) -> Vec<u8> {
        let mut reader = store.read(key, offset).await.unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn an_object_read_whole_is_downloaded_once() {
        let (inner, spool, store, _parent) = setup(10 << 20).await;
        for key in ["a/data-0", "a/data-1", "b/data-0"] {
            let first = read_all(&store, key, 0).await;
            let second = read_all(&store, key, 0).await;
            let third = read_all(&store, key, 1234).await;
            let stored = inner.inner.get(key).await.unwrap();
            assert_eq!(first, stored);
            assert_eq!(second, stored);
            assert_eq!(third, stored[1234..]);
        }
        assert_eq!(
            inner.reads.load(Ordering::SeqCst),
            3,
            "one download per object"
        );
        assert_eq!(spool.served(), 6);
        assert_eq!(spool.held(), 900_000);
        let path = spool.path().to_path_buf();
        drop(store);
        drop(spool);
        assert!(!path.exists(), "the spool folder outlived the spool");
    }

    #[tokio::test]
    async fn an_object_got_whole_is_downloaded_once() {
        let (inner, spool, store, _parent) = setup(10 << 20).await;
        let stored = inner.inner.get("b/data-0").await.unwrap();
        assert_eq!(store.get("b/data-0").await.unwrap(), stored);
        inner.inner.delete("b/data-0").await.unwrap();
        // Gone from the store: everything comes from the copy.
        assert_eq!(store.get("b/data-0").await.unwrap(), stored);
        assert_eq!(read_all(&store, "b/data-0", 0).await, stored);
        assert_eq!(store.head("b/data-0").await.unwrap().size, 300_000);
        assert!(store.head("a/data-0").await.is_ok(), "no copy: the store's");
        assert!(matches!(
            store.head("nothing").await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(spool.served(), 2);
    }

    #[tokio::test]
    async fn a_read_stopped_early_keeps_nothing() {
        let (inner, spool, store, _parent) = setup(10 << 20).await;
        let mut reader = store.read("a/data-0", 0).await.unwrap();
        let mut some = vec![0; 1000];
        reader.read_exact(&mut some).await.unwrap();
        drop(reader);
        assert_eq!(spool.held(), 0);
        let whole = read_all(&store, "a/data-0", 0).await;
        assert_eq!(whole, inner.inner.get("a/data-0").await.unwrap());
        assert_eq!(inner.reads.load(Ordering::SeqCst), 2);
        let left: Vec<_> = std::fs::read_dir(spool.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "only the whole copy: {left:?}");
    }

    #[tokio::test]
    async fn objects_over_the_budget_are_read_from_the_store_each_time() {
        // Room for one object of three.
        let (inner, spool, store, _parent) = setup(400_000).await;
        for _ in 0..2 {
            for key in ["a/data-0", "a/data-1", "b/data-0"] {
                let bytes = read_all(&store, key, 0).await;
                assert_eq!(bytes, inner.inner.get(key).await.unwrap());
            }
        }
        assert_eq!(inner.reads.load(Ordering::SeqCst), 5);
        assert_eq!(spool.held(), 300_000);
        assert_eq!(
            spool.budget.load(Ordering::SeqCst),
            100_000,
            "budget leaked"
        );
    }

    #[tokio::test]
    async fn a_limit_of_zero_is_no_spool() {
        let parent = tempfile::tempdir().unwrap();
        let config = SpoolConfig {
            dir: Some(parent.path().to_path_buf()),
            limit: Some(0),
        };
        assert!(Spool::open(&config).unwrap().is_none());
    }

    #[test]
    fn the_folder_of_a_dead_process_is_removed() {
        let parent = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22 on Linux: this process cannot exist.
        let dead = parent.path().join(format!("{PREFIX}4294967-abc"));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("0"), b"left").unwrap();
        let mine = parent
            .path()
            .join(format!("{PREFIX}{}-xyz", std::process::id()));
        std::fs::create_dir(&mine).unwrap();
        let other = parent.path().join("not-a-spool");
        std::fs::create_dir(&other).unwrap();
        let spool = Spool::open(&SpoolConfig {
            dir: Some(parent.path().to_path_buf()),
            limit: Some(1 << 20),
        })
        .unwrap()
        .unwrap();
        assert!(!dead.exists());
        assert!(mine.exists(), "a live process's spool was removed");
        assert!(other.exists());
        drop(spool);
    }
}
