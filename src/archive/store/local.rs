//! [`LocalStore`]: an archive in a folder of the local file system.
//!
//! Keys map to paths under the folder. Files are created readable by the
//! owner only (`0600`, folders `0700`): backups hold user data. Every
//! object is written under `NAME.partial` and renamed into place once
//! complete and fsynced, so a crash leaves the old object or the new one,
//! never a torn file; a [`PutMode::Create`] (the manifest) also fsyncs the
//! folder, so that the rename itself survives a crash. Nothing is created
//! by opening a store: a read-only archive is readable.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use super::{
    components, ArchiveStore, ObjectMeta, ObjectReader, ObjectUpload, PutMode, StoreError,
    StoreFuture,
};

/// Suffix of a file being written; never listed in a manifest.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// An archive folder on the local file system.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// The store of the folder `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a key.
    pub fn path(&self, key: &str) -> PathBuf {
        components(key).fold(self.root.clone(), |p, c| p.join(c))
    }

    /// fsyncs the folder `prefix`, so that the renames made in it survive
    /// a crash.
    pub async fn sync_folder(&self, prefix: &str) -> Result<(), StoreError> {
        let dir = self.path(prefix);
        sync_dir(&dir).await.map_err(|e| StoreError::io(dir, e))
    }

    async fn put_file(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let path = self.path(key);
        // One writer per archive folder: the check and the rename need not
        // be one atomic step here (object storage's conditional create is).
        if mode == PutMode::Create && tokio::fs::symlink_metadata(&path).await.is_ok() {
            return Err(StoreError::AlreadyExists { object: path });
        }
        let tmp = partial_path(&path);
        let mut file = create_private_file(&tmp)
            .await
            .map_err(|e| StoreError::io(&tmp, e))?;
        file.write_all(&bytes)
            .await
            .map_err(|e| StoreError::io(&tmp, e))?;
        file.sync_all().await.map_err(|e| StoreError::io(&tmp, e))?;
        drop(file);
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| StoreError::io(&path, e))?;
        if mode == PutMode::Create {
            let parent = path.parent().unwrap_or(&self.root);
            sync_dir(parent)
                .await
                .map_err(|e| StoreError::io(parent, e))?;
        }
        Ok(())
    }

    async fn list_files(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut found = Vec::new();
        let mut folders = vec![(
            self.path(prefix),
            components(prefix).collect::<Vec<_>>().join("/"),
        )];
        while let Some((dir, key)) = folders.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&dir, e)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| StoreError::io(&dir, e))?
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if key.is_empty() {
                    name
                } else {
                    format!("{key}/{name}")
                };
                let meta = entry
                    .metadata()
                    .await
                    .map_err(|e| StoreError::io(entry.path(), e))?;
                if meta.is_dir() {
                    folders.push((entry.path(), child));
                } else {
                    found.push(ObjectMeta {
                        key: child,
                        size: meta.len(),
                    });
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }
}

impl ArchiveStore for LocalStore {
    fn locate(&self, key: &str) -> PathBuf {
        self.path(key)
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Bytes> {
        Box::pin(async move {
            let path = self.path(key);
            match tokio::fs::read(&path).await {
                Ok(bytes) => Ok(Bytes::from(bytes)),
                Err(e) => Err(StoreError::io(path, e)),
            }
        })
    }

    fn put<'a>(&'a self, key: &'a str, bytes: Bytes, mode: PutMode) -> StoreFuture<'a, ()> {
        Box::pin(self.put_file(key, bytes, mode))
    }

    fn upload<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Box<dyn ObjectUpload>> {
        Box::pin(async move {
            let path = self.path(key);
            let partial = partial_path(&path);
            let file = create_private_file(&partial)
                .await
                .map_err(|e| StoreError::io(&partial, e))?;
            Ok(Box::new(LocalUpload {
                file,
                partial,
                path,
            }) as Box<dyn ObjectUpload>)
        })
    }

    fn read<'a>(&'a self, key: &'a str, offset: u64) -> StoreFuture<'a, ObjectReader> {
        Box::pin(async move {
            let path = self.path(key);
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| StoreError::io(&path, e))?;
            if offset > 0 {
                file.seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(|e| StoreError::io(&path, e))?;
            }
            Ok(Box::new(file) as ObjectReader)
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ObjectMeta> {
        Box::pin(async move {
            let path = self.path(key);
            let meta = tokio::fs::metadata(&path)
                .await
                .map_err(|e| StoreError::io(&path, e))?;
            Ok(ObjectMeta {
                key: key.to_string(),
                size: meta.len(),
            })
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<ObjectMeta>> {
        Box::pin(self.list_files(prefix))
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let path = self.path(key);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::io(path, e)),
            }
        })
    }

    fn create_folder<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let path = self.path(prefix);
            create_private_dir(&path)
                .await
                .map_err(|e| StoreError::io(path, e))
        })
    }

    fn as_local(&self) -> Option<&LocalStore> {
        Some(self)
    }
}

/// A chunk being written to `NAME.partial`.
struct LocalUpload {
    file: tokio::fs::File,
    partial: PathBuf,
    path: PathBuf,
}

impl AsyncWrite for LocalUpload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl ObjectUpload for LocalUpload {
    fn location(&self) -> &Path {
        &self.partial
    }

    fn commit(self: Box<Self>) -> StoreFuture<'static, ()> {
        Box::pin(async move {
            let LocalUpload {
                mut file,
                partial,
                path,
            } = *self;
            file.flush()
                .await
                .map_err(|e| StoreError::io(&partial, e))?;
            file.sync_all()
                .await
                .map_err(|e| StoreError::io(&partial, e))?;
            drop(file);
            tokio::fs::rename(&partial, &path)
                .await
                .map_err(|e| StoreError::io(&path, e))
        })
    }

    fn abort(self: Box<Self>) -> StoreFuture<'static, ()> {
        Box::pin(async move {
            let LocalUpload { file, partial, .. } = *self;
            drop(file);
            match tokio::fs::remove_file(&partial).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::io(partial, e)),
            }
        })
    }
}

/// `name` -> `name.partial`, beside it.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(PARTIAL_SUFFIX);
    PathBuf::from(s)
}

/// Creates (truncating) a file readable and writable by the owner only.
pub async fn create_private_file(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await
}

/// Creates a folder and its parents, owner-only.
pub async fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(path).await
}

/// fsyncs a folder, so that renames in it survive a crash.
pub async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    tokio::fs::File::open(dir).await?.sync_all().await?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
