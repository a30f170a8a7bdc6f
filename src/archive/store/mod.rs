//! Where an archive's files are read and written: one interface,
//! [`ArchiveStore`], for a local folder ([`LocalStore`]) and object storage
//! (S3, GCS, Azure through the `object_store` crate: [`ObjectArchiveStore`]).
//! Which one a command line means is parsed once, into a [`Location`].
//!
//! A store holds *objects* named by archive-relative, `/`-separated keys
//! (`manifest.json`, `indices/logs/data-s000-00000.jsonl.zst`): the same
//! strings the manifest lists. The operations are the ones object storage
//! offers, so that nothing above this module assumes a file system:
//!
//! - [`ArchiveStore::upload`] streams a chunk ([`ObjectUpload`], an
//!   `AsyncWrite`) and publishes it only on [`ObjectUpload::commit`] (a
//!   local folder: fsync and rename of the `.partial` file; object
//!   storage: completing a multipart upload); [`ObjectUpload::abort`]
//!   removes it. Nothing half-written ever appears under the final name.
//! - [`ArchiveStore::put`] writes a small object whole, either replacing
//!   it ([`PutMode::Overwrite`]: the checkpoint, metadata files) or only
//!   if it does not exist yet ([`PutMode::Create`]: the manifest, the
//!   commit point of a dump; a conditional create on object storage).
//! - [`ArchiveStore::get`] reads a small object whole, [`ArchiveStore::read`]
//!   streams one from an offset, [`ArchiveStore::head`] gives its size,
//!   [`ArchiveStore::list`] the objects under a prefix,
//!   [`ArchiveStore::delete`] removes one.
//!
//! # What only a local folder does
//!
//! Replacing an archive in place (`--overwrite`: written beside as
//! `.NAME.esark-new`, swapped in when whole, a crashed swap finished by the
//! next run) is made of folder renames that object storage has no
//! equivalent for; it lives in [`swap`] and works on paths, used by
//! [`crate::archive::writer::ArchiveWriter::create`] only. Refusing files
//! that are symbolic links out of the archive is local too. Both are
//! reached through [`ArchiveStore::as_local`], which only [`LocalStore`]
//! answers. Folders themselves ([`ArchiveStore::create_folder`]) exist
//! only in a local store; object storage has nothing to create.
//!
//! # What only object storage needs
//!
//! Without renames, a dump claims its prefix with a lock object created
//! with [`PutMode::Create`] before it writes anything, and `--overwrite`
//! deletes the old archive (manifest first) before the new one is written:
//! [`lock`], used by
//! [`crate::archive::writer::ArchiveWriter::create_locked`].
//!
//! [`spool::SpoolStore`] wraps a remote store for a restore, so that the
//! check before the first write and the load download each object once.
//!
//! [`MemoryStore`] keeps objects in memory: for tests and for embedding
//! esark where an archive is not a folder. It is also the proof that
//! nothing above depends on a file system.

pub mod local;
pub mod location;
pub mod lock;
pub mod memory;
pub mod object;
pub mod spool;
pub mod swap;

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

pub use local::LocalStore;
pub use location::{Location, LocationError, ObjectLocation, Service};
pub use memory::MemoryStore;
pub use object::ObjectArchiveStore;

/// What a store operation returns: a boxed future, so that the trait can be
/// used as `Arc<dyn ArchiveStore>`.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// A stream of an object's bytes.
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// Errors of a store. Each names the object as [`ArchiveStore::locate`]
/// does (a local file's path, an object's URL).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object under that key.
    #[error("{}: {error}", object.display())]
    NotFound { object: PathBuf, error: io::Error },
    /// A [`PutMode::Create`] of a key that is taken.
    #[error("{}: already exists", object.display())]
    AlreadyExists { object: PathBuf },
    /// Reading or writing failed.
    #[error("{}: {error}", object.display())]
    Io { object: PathBuf, error: io::Error },
}

impl StoreError {
    /// Classifies an I/O error on `object`: not found, or anything else.
    pub fn io(object: impl Into<PathBuf>, error: io::Error) -> StoreError {
        let object = object.into();
        match error.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound { object, error },
            _ => StoreError::Io { object, error },
        }
    }

    /// The object the error is about.
    pub fn object(&self) -> &Path {
        match self {
            StoreError::NotFound { object, .. }
            | StoreError::AlreadyExists { object }
            | StoreError::Io { object, .. } => object,
        }
    }

    /// The error without the object's name, for messages that name it
    /// already.
    pub fn into_io(self) -> io::Error {
        match self {
            StoreError::NotFound { error, .. } | StoreError::Io { error, .. } => error,
            StoreError::AlreadyExists { .. } => {
                io::Error::new(io::ErrorKind::AlreadyExists, "already exists")
            }
        }
    }
}

impl From<StoreError> for super::ArchiveError {
    fn from(e: StoreError) -> super::ArchiveError {
        match e {
            StoreError::AlreadyExists { object } => super::ArchiveError::AlreadyExists(object),
            other => {
                let object = other.object().to_path_buf();
                super::ArchiveError::io(object, other.into_io())
            }
        }
    }
}

/// How [`ArchiveStore::put`] treats an object that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Replace it (the checkpoint, metadata files rewritten by a resumed
    /// dump).
    Overwrite,
    /// Fail with [`StoreError::AlreadyExists`]: the object is a commit
    /// point that only one writer may make (the manifest).
    Create,
}

/// An object listed by [`ArchiveStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key, `/`-separated.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Where an archive's objects are kept. Keys are `/`-separated and
/// relative to the archive; every operation is safe to call from several
/// tasks at once.
pub trait ArchiveStore: Send + Sync + std::fmt::Debug {
    /// How messages name the object `key` (its path in a local folder, its
    /// URL on object storage); `""` names the archive itself.
    fn locate(&self, key: &str) -> PathBuf;

    /// Reads a small object whole.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Bytes>;

    /// Writes a small object whole; it is durable when this returns and is
    /// never seen half-written.
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes, mode: PutMode) -> StoreFuture<'a, ()>;

    /// Starts writing `key` as a stream; nothing is visible under that key
    /// before [`ObjectUpload::commit`].
    fn upload<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Box<dyn ObjectUpload>>;

    /// Streams an object's bytes from `offset` on.
    fn read<'a>(&'a self, key: &'a str, offset: u64) -> StoreFuture<'a, ObjectReader>;

    /// The size of an object; [`StoreError::NotFound`] if there is none.
    fn head<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ObjectMeta>;

    /// Every object whose key starts with the folder `prefix` (`""` for
    /// all), sorted by key; a prefix with nothing under it lists nothing.
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<ObjectMeta>>;

    /// Removes an object; removing one that is not there succeeds.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;

    /// Makes the folder `prefix` ready to hold objects: a local store
    /// creates it (owner-only); object storage has no folders and nothing
    /// to do.
    fn create_folder<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, ()>;

    /// Waits (a bounded time) for what the store finishes in the
    /// background: object storage aborts the multipart uploads of chunks
    /// dropped unfinished in spawned tasks, which the end of the process
    /// would otherwise cut short, leaving their parts stored (and billed).
    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// The local folder behind this store, for what only a folder can do
    /// (see the module documentation); `None` for any other store.
    fn as_local(&self) -> Option<&LocalStore> {
        None
    }

    /// Whether an object exists.
    fn exists<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            match self.head(key).await {
                Ok(_) => Ok(true),
                Err(StoreError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }
}

/// An object being written by [`ArchiveStore::upload`]. Dropped without
/// [`ObjectUpload::commit`], it never appears under its name (a local
/// store leaves a `.partial` file that the next run of the dump prunes).
pub trait ObjectUpload: AsyncWrite + Send + Unpin {
    /// Where the bytes go while being written, for error messages (a local
    /// store's `.partial` file).
    fn location(&self) -> &Path;

    /// Flushes and publishes the object under its name, atomically.
    fn commit(self: Box<Self>) -> StoreFuture<'static, ()>;

    /// Drops what was written; the name stays untouched.
    fn abort(self: Box<Self>) -> StoreFuture<'static, ()>;
}

/// Splits a key into its components, ignoring empty ones.
pub(crate) fn components(key: &str) -> impl Iterator<Item = &str> {
    key.split('/').filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) use tests::manifest as tests_manifest;
