//! [`MemoryStore`]: an archive held in memory, for tests and for embedding
//! esark where an archive is not a folder (a service that hands archives
//! on, a test that must not touch a disk).
//!
//! It keeps the guarantees of every store: an upload appears only when
//! committed, a [`PutMode::Create`] never replaces an object. Like object
//! storage it has no folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use super::{
    ArchiveStore, ObjectMeta, ObjectReader, ObjectUpload, PutMode, StoreError, StoreFuture,
};

type Objects = Arc<Mutex<BTreeMap<String, Bytes>>>;

/// Objects in memory, shared by the clones of the store.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    objects: Objects,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Bytes>> {
        lock(&self.objects)
    }

    fn not_found(&self, key: &str) -> StoreError {
        StoreError::NotFound {
            object: self.locate(key),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such object"),
        }
    }
}

fn lock(objects: &Objects) -> MutexGuard<'_, BTreeMap<String, Bytes>> {
    objects.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `key` is under the folder `prefix`.
fn under(key: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl ArchiveStore for MemoryStore {
    fn locate(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("memory:/{key}"))
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Bytes> {
        let found = self.lock().get(key).cloned();
        Box::pin(async move { found.ok_or_else(|| self.not_found(key)) })
    }

    fn put<'a>(&'a self, key: &'a str, bytes: Bytes, mode: PutMode) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut objects = self.lock();
            if mode == PutMode::Create && objects.contains_key(key) {
                return Err(StoreError::AlreadyExists {
                    object: self.locate(key),
                });
            }
            objects.insert(key.to_string(), bytes);
            Ok(())
        })
    }

    fn upload<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Box<dyn ObjectUpload>> {
        Box::pin(async move {
            Ok(Box::new(MemoryUpload {
                objects: self.objects.clone(),
                key: key.to_string(),
                location: self.locate(key),
                buffer: Vec::new(),
            }) as Box<dyn ObjectUpload>)
        })
    }

    fn read<'a>(&'a self, key: &'a str, offset: u64) -> StoreFuture<'a, ObjectReader> {
        Box::pin(async move {
            let bytes = self.get(key).await?;
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            Ok(Box::new(std::io::Cursor::new(bytes.slice(start..))) as ObjectReader)
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ObjectMeta> {
        Box::pin(async move {
            let size = self.lock().get(key).map(|b| b.len() as u64);
            size.map(|size| ObjectMeta {
                key: key.to_string(),
                size,
            })
            .ok_or_else(|| self.not_found(key))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<ObjectMeta>> {
        Box::pin(async move {
            Ok(self
                .lock()
                .iter()
                .filter(|(key, _)| under(key, prefix))
                .map(|(key, bytes)| ObjectMeta {
                    key: key.clone(),
                    size: bytes.len() as u64,
                })
                .collect())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.lock().remove(key);
            Ok(())
        })
    }

    fn create_folder<'a>(&'a self, _prefix: &'a str) -> StoreFuture<'a, ()> {
        // No folders: an object's key is all there is.
        Box::pin(async { Ok(()) })
    }
}

/// An upload buffered until committed.
struct MemoryUpload {
    objects: Objects,
    key: String,
    location: PathBuf,
    buffer: Vec<u8>,
}

impl AsyncWrite for MemoryUpload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buffer.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl ObjectUpload for MemoryUpload {
    fn location(&self) -> &Path {
        &self.location
    }

    fn commit(self: Box<Self>) -> StoreFuture<'static, ()> {
        Box::pin(async move {
            let MemoryUpload {
                objects,
                key,
                buffer,
                ..
            } = *self;
            lock(&objects).insert(key, Bytes::from(buffer));
            Ok(())
        })
    }

    fn abort(self: Box<Self>) -> StoreFuture<'static, ()> {
        Box::pin(async { Ok(()) })
    }
}
