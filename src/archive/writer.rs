//! Writing an archive: its metadata files and manifest, through an
//! [`ArchiveStore`] (a local folder, or any other store); the data chunks
//! are written by [`crate::sink::chunk::ChunkWriter`] through the same
//! store.
//!
//! Every file is published whole (see [`crate::archive::store`]); the
//! manifest is written last, and only if none exists
//! ([`PutMode::Create`]), so an archive is either complete (manifest
//! present) or visibly incomplete. A resumed dump replaces the manifest
//! of its own partial run (one that lists failed indices).
//!
//! A local folder is prepared by [`ArchiveWriter::create`], which refuses
//! a non-empty folder unless `--overwrite`; the new archive is then
//! written beside it and swapped in by [`ArchiveWriter::replace`] once
//! complete (local folders only: [`crate::archive::store::swap`]).
//! Under an object-storage prefix, [`ArchiveWriter::create_locked`] claims
//! the prefix with a lock object first, and `--overwrite` deletes the old
//! archive before the new one is written
//! ([`crate::archive::store::lock`]).
//!
//! With [`ArchiveWriter::encrypt_to`], every file but the manifest is an
//! age file ([`crate::archive::crypt`]); entries record the stored bytes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::crypt::Recipients;
use super::manifest::{FileEntry, FileKind, Manifest};
use super::store::lock::{self, DumpLock};
use super::store::{swap, ArchiveStore, LocalStore, PutMode};
use super::{ArchiveError, MANIFEST_FILE};

pub use super::store::local::PARTIAL_SUFFIX;

/// The archive being written.
#[derive(Debug, Clone)]
pub struct ArchiveWriter {
    /// Where files are written: the output folder, the staging folder
    /// beside it when replacing an archive, or any other store.
    store: Arc<dyn ArchiveStore>,
    /// The output folder whose archive this one replaces once complete
    /// (local folders only).
    replaces: Option<PathBuf>,
    /// Opened to continue an interrupted dump, whose partial manifest (one
    /// listing failed indices) the new one replaces.
    resumed: bool,
    /// Every file but the manifest is encrypted to these (format 5).
    recipients: Option<Recipients>,
    /// Holds the dump lock of an object-storage prefix, released once the
    /// manifest is written.
    locked: bool,
}

impl ArchiveWriter {
    /// Prepares the folder `root` for a new archive. A folder that exists
    /// and is not empty is refused unless `overwrite`: the new archive is
    /// then written beside it, and [`ArchiveWriter::replace`] swaps it in
    /// once complete (see [`swap`]).
    pub async fn create(root: &Path, overwrite: bool) -> Result<ArchiveWriter, ArchiveError> {
        let (folder, replaces) = swap::prepare(root, overwrite).await?;
        Ok(ArchiveWriter {
            store: Arc::new(LocalStore::new(folder)),
            replaces,
            resumed: false,
            recipients: None,
            locked: false,
        })
    }

    /// Writes a new archive into `store`, which must hold nothing.
    pub async fn create_in(store: Arc<dyn ArchiveStore>) -> Result<ArchiveWriter, ArchiveError> {
        if !store.list("").await?.is_empty() {
            return Err(ArchiveError::NotEmpty(store.locate("")));
        }
        Ok(ArchiveWriter {
            store,
            replaces: None,
            resumed: false,
            recipients: None,
            locked: false,
        })
    }

    /// Continues the interrupted dump in `store`, as it is.
    pub fn resume_in(store: Arc<dyn ArchiveStore>) -> ArchiveWriter {
        ArchiveWriter {
            store,
            replaces: None,
            resumed: true,
            recipients: None,
            locked: false,
        }
    }

    /// Writes a new archive under an object-storage prefix, claiming it with
    /// the dump lock before anything else is written ([`lock::claim`]): a
    /// prefix that holds anything is refused. With `overwrite`, whatever it
    /// holds is deleted first, manifest first ([`lock::clear`]): object
    /// storage cannot swap an archive in, so the old one is gone from here
    /// on. Returns the writer and how many objects were deleted.
    pub async fn create_locked(
        store: Arc<dyn ArchiveStore>,
        overwrite: bool,
    ) -> Result<(ArchiveWriter, usize), ArchiveError> {
        let removed = match overwrite {
            true => lock::clear(store.as_ref()).await?,
            false => 0,
        };
        lock::claim(store.as_ref(), &DumpLock::new()).await?;
        let writer = ArchiveWriter {
            store,
            replaces: None,
            resumed: false,
            recipients: None,
            locked: true,
        };
        Ok((writer, removed))
    }

    /// Continues the interrupted dump under an object-storage prefix,
    /// taking its dump lock over.
    pub async fn resume_locked(
        store: Arc<dyn ArchiveStore>,
    ) -> Result<ArchiveWriter, ArchiveError> {
        lock::take_over(store.as_ref(), &DumpLock::new()).await?;
        let mut writer = ArchiveWriter::resume_in(store);
        writer.locked = true;
        Ok(writer)
    }

    /// Opens the folder of an interrupted dump, as it is.
    pub async fn open_existing(root: &Path) -> Result<ArchiveWriter, ArchiveError> {
        match tokio::fs::metadata(root).await {
            Ok(meta) if meta.is_dir() => Ok(ArchiveWriter {
                store: Arc::new(LocalStore::new(root)),
                replaces: None,
                resumed: true,
                recipients: None,
                locked: false,
            }),
            Ok(_) => Err(ArchiveError::NotADirectory(root.into())),
            Err(e) => Err(ArchiveError::io(root, e)),
        }
    }

    /// Encrypts every file written from now on but the manifest to
    /// `recipients` (none: nothing is encrypted).
    pub fn encrypt_to(mut self, recipients: Option<Recipients>) -> ArchiveWriter {
        self.recipients = recipients;
        self
    }

    /// The recipients files are encrypted to, if any.
    pub fn recipients(&self) -> Option<&Recipients> {
        self.recipients.as_ref()
    }

    /// The output folder this archive is to replace, when it is written
    /// beside it (`--overwrite` of a non-empty folder).
    pub fn replaces(&self) -> Option<&Path> {
        self.replaces.as_deref()
    }

    /// Swaps the complete archive written beside the output folder in, and
    /// removes the old one, keeping what esark does not own. Returns the
    /// output folder.
    pub async fn replace(self) -> Result<PathBuf, ArchiveError> {
        let Some(output) = self.replaces else {
            return Ok(self.store.locate(""));
        };
        swap::replace(&output).await?;
        Ok(output)
    }

    /// Removes the folder of an archive that will not replace anything (a
    /// failed or interrupted `--overwrite` run); the old one is untouched.
    pub async fn discard(&self) -> Result<(), ArchiveError> {
        if let (Some(_), Some(local)) = (&self.replaces, self.store.as_local()) {
            swap::discard(local.root()).await?;
        }
        Ok(())
    }

    /// Removes from `folder` every data chunk and partial file whose path
    /// is not in `keep`: leftovers of an interrupted run that no checkpoint
    /// vouches for. Only a resumed dump can have any: a new one starts in
    /// an empty folder, prefix or store (or one holding only its lock), so
    /// it lists nothing (on object storage, a `LIST` request per index
    /// saved).
    pub async fn prune(&self, folder: &str, keep: &HashSet<String>) -> Result<(), ArchiveError> {
        if !self.resumed {
            return Ok(());
        }
        for object in self.store.list(folder).await? {
            let name = object.key.rsplit('/').next().unwrap_or_default();
            let stale = name.ends_with(PARTIAL_SUFFIX)
                || (name.starts_with("data-") && !keep.contains(&object.key));
            if stale {
                self.store.delete(&object.key).await?;
            }
        }
        Ok(())
    }

    /// The store the archive is written to.
    pub fn store(&self) -> &Arc<dyn ArchiveStore> {
        &self.store
    }

    /// Where the archive is being written: its folder, or the store's name
    /// for it.
    pub fn root(&self) -> PathBuf {
        self.store.locate("")
    }

    /// Creates a folder (and its parents) inside the archive, where the
    /// store has folders.
    pub async fn create_dir(&self, rel: &str) -> Result<(), ArchiveError> {
        Ok(self.store.create_folder(rel).await?)
    }

    /// Writes a pretty-printed JSON file (encrypted when the archive is)
    /// and returns its manifest entry, with the size and sha256 of the
    /// stored bytes.
    pub async fn write_json<T: Serialize>(
        &self,
        rel: &str,
        kind: FileKind,
        value: &T,
    ) -> Result<FileEntry, ArchiveError> {
        let mut bytes = self.json(rel, value)?;
        if let Some(recipients) = &self.recipients {
            let sealed = recipients
                .seal(&bytes)
                .map_err(|e| ArchiveError::io(self.store.locate(rel), e))?;
            bytes = Bytes::from(sealed);
        }
        let len = bytes.len() as u64;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        self.store.put(rel, bytes, PutMode::Overwrite).await?;
        Ok(FileEntry {
            kind,
            path: rel.to_string(),
            bytes: len,
            docs: None,
            sha256,
            slice: None,
            encrypted: self.recipients.is_some(),
        })
    }

    /// Writes the manifest, last: the commit point of the dump. A local
    /// folder gets a temporary file, fsync, rename, fsync of the folder;
    /// an object-storage prefix's dump lock is released after it.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<(), ArchiveError> {
        let bytes = self.json(MANIFEST_FILE, manifest)?;
        if !self.resumed {
            self.store
                .put(MANIFEST_FILE, bytes, PutMode::Create)
                .await?;
        } else {
            self.store
                .put(MANIFEST_FILE, bytes, PutMode::Overwrite)
                .await?;
            if let Some(local) = self.store.as_local() {
                local.sync_folder("").await?;
            }
        }
        if self.locked {
            lock::release(self.store.as_ref()).await?;
        }
        Ok(())
    }

    /// `value` as pretty-printed JSON and a final newline.
    fn json<T: Serialize>(&self, rel: &str, value: &T) -> Result<Bytes, ArchiveError> {
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| ArchiveError::io(self.store.locate(rel), std::io::Error::other(e)))?;
        bytes.push(b'\n');
        Ok(Bytes::from(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::archive::store::swap::tests::{archive, manifest_of};

    #[tokio::test]
    async fn overwrite_writes_beside_and_swaps_when_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        archive(&out, "old");
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        std::fs::write(out.join("restore.state.json"), "{}").unwrap();
        assert!(matches!(
            ArchiveWriter::create(&out, false).await,
            Err(ArchiveError::NotEmpty(_))
        ));
        let writer = ArchiveWriter::create(&out, true).await.unwrap();
        let real = tokio::fs::canonicalize(tmp.path()).await.unwrap();
        assert_eq!(writer.root(), real.join(".out.esark-new"));
        archive(&writer.root(), "new");
        // Until the swap, the old archive is whole.
        assert_eq!(manifest_of(&out), "old");
        writer.replace().await.unwrap();
        assert_eq!(manifest_of(&out), "new");
        assert_eq!(
            std::fs::read_to_string(out.join("notes.txt")).unwrap(),
            "mine"
        );
        assert!(!out.join("restore.state.json").exists());
        assert!(!tmp.path().join(".out.esark-new").exists());
        assert!(!tmp.path().join(".out.esark-old").exists());

        // A failed run discards its folder; the archive is untouched.
        let writer = ArchiveWriter::create(&out, true).await.unwrap();
        archive(&writer.root(), "newer");
        writer.discard().await.unwrap();
        assert_eq!(manifest_of(&out), "new");
        assert!(!tmp.path().join(".out.esark-new").exists());
    }
}
