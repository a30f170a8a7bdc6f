//! Writing an archive's folder, metadata files and manifest.
//!
//! Every file is written under a temporary name and renamed into place when
//! complete; the manifest is written last, the same way, so an archive is
//! either complete (manifest present) or visibly incomplete. Files are
//! created readable by the owner only (`0600`, folders `0700`): backups hold
//! user data.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::hash::HashingWriter;
use super::manifest::{FileEntry, FileKind, Manifest};
use super::{ArchiveError, MANIFEST_FILE};

/// Suffix of a file being written; never listed in a manifest.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Top-level entries esark owns in an archive folder; `--overwrite` removes
/// these and nothing else.
const OWNED_ENTRIES: &[&str] = &["indices", "cluster"];

/// The archive folder being written.
#[derive(Debug, Clone)]
pub struct ArchiveWriter {
    root: PathBuf,
}

impl ArchiveWriter {
    /// Prepares `root` for a new archive. A folder that exists and is not
    /// empty is refused unless `overwrite`, which first removes the manifest
    /// (so the old archive is never mistaken for the new one) and then the
    /// folders esark owns.
    pub async fn create(root: &Path, overwrite: bool) -> Result<ArchiveWriter, ArchiveError> {
        match tokio::fs::metadata(root).await {
            Ok(meta) if !meta.is_dir() => return Err(ArchiveError::NotADirectory(root.into())),
            Ok(_) => {
                let mut entries = tokio::fs::read_dir(root)
                    .await
                    .map_err(|e| ArchiveError::io(root, e))?;
                let non_empty = entries
                    .next_entry()
                    .await
                    .map_err(|e| ArchiveError::io(root, e))?
                    .is_some();
                if non_empty {
                    if !overwrite {
                        return Err(ArchiveError::NotEmpty(root.into()));
                    }
                    clear_owned(root).await?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_private_dir(root).await?;
            }
            Err(e) => return Err(ArchiveError::io(root, e)),
        }
        Ok(ArchiveWriter { root: root.into() })
    }

    /// Opens the folder of an interrupted dump, as it is.
    pub async fn open_existing(root: &Path) -> Result<ArchiveWriter, ArchiveError> {
        match tokio::fs::metadata(root).await {
            Ok(meta) if meta.is_dir() => Ok(ArchiveWriter { root: root.into() }),
            Ok(_) => Err(ArchiveError::NotADirectory(root.into())),
            Err(e) => Err(ArchiveError::io(root, e)),
        }
    }

    /// Removes from `folder` every data chunk and partial file whose path
    /// is not in `keep`: leftovers of an interrupted run that no checkpoint
    /// vouches for.
    pub async fn prune(
        &self,
        folder: &str,
        keep: &std::collections::HashSet<String>,
    ) -> Result<(), ArchiveError> {
        let dir = self.path(folder);
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| ArchiveError::io(&dir, e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| ArchiveError::io(&dir, e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{folder}/{name}");
            let stale = name.ends_with(PARTIAL_SUFFIX)
                || (name.starts_with("data-") && !keep.contains(&rel));
            if stale {
                let path = entry.path();
                tokio::fs::remove_file(&path)
                    .await
                    .map_err(|e| ArchiveError::io(&path, e))?;
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of an archive-relative `/`-separated path.
    pub fn path(&self, rel: &str) -> PathBuf {
        rel.split('/').fold(self.root.clone(), |p, c| p.join(c))
    }

    /// Creates a folder (and its parents) inside the archive.
    pub async fn create_dir(&self, rel: &str) -> Result<(), ArchiveError> {
        create_private_dir(&self.path(rel)).await
    }

    /// Writes a pretty-printed JSON file and returns its manifest entry.
    pub async fn write_json<T: Serialize>(
        &self,
        rel: &str,
        kind: FileKind,
        value: &T,
    ) -> Result<FileEntry, ArchiveError> {
        let path = self.path(rel);
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| ArchiveError::io(&path, std::io::Error::other(e)))?;
        bytes.push(b'\n');
        let (len, sha256) = write_atomically(&path, &bytes, false).await?;
        Ok(FileEntry {
            kind,
            path: rel.to_string(),
            bytes: len,
            docs: None,
            sha256,
            slice: None,
        })
    }

    /// Writes the manifest, last: a temporary file, fsync, rename, fsync of
    /// the folder.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<(), ArchiveError> {
        let path = self.root.join(MANIFEST_FILE);
        let mut bytes = serde_json::to_vec_pretty(manifest)
            .map_err(|e| ArchiveError::io(&path, std::io::Error::other(e)))?;
        bytes.push(b'\n');
        write_atomically(&path, &bytes, true).await?;
        sync_dir(&self.root).await
    }
}

/// Writes `bytes` to `path` through a `.partial` file and a rename. Returns
/// size and sha256.
async fn write_atomically(
    path: &Path,
    bytes: &[u8],
    fsync: bool,
) -> Result<(u64, String), ArchiveError> {
    let tmp = partial_path(path);
    let file = create_private_file(&tmp).await?;
    let mut w = HashingWriter::new(file);
    w.write_all(bytes)
        .await
        .map_err(|e| ArchiveError::io(&tmp, e))?;
    let (file, len, sha256) = w.finish();
    if fsync {
        file.sync_all()
            .await
            .map_err(|e| ArchiveError::io(&tmp, e))?;
    }
    drop(file);
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| ArchiveError::io(path, e))?;
    Ok((len, sha256))
}

/// `name` -> `name.partial`, beside it.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(PARTIAL_SUFFIX);
    PathBuf::from(s)
}

/// Creates (truncating) a file readable and writable by the owner only.
pub async fn create_private_file(path: &Path) -> Result<tokio::fs::File, ArchiveError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options
        .open(path)
        .await
        .map_err(|e| ArchiveError::io(path, e))
}

async fn create_private_dir(path: &Path) -> Result<(), ArchiveError> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder
        .create(path)
        .await
        .map_err(|e| ArchiveError::io(path, e))
}

async fn clear_owned(root: &Path) -> Result<(), ArchiveError> {
    for name in [
        MANIFEST_FILE.to_string(),
        format!("{MANIFEST_FILE}{PARTIAL_SUFFIX}"),
    ] {
        let p = root.join(name);
        match tokio::fs::remove_file(&p).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::io(p, e)),
        }
    }
    sync_dir(root).await?;
    for name in OWNED_ENTRIES {
        let p = root.join(name);
        match tokio::fs::remove_dir_all(&p).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::io(p, e)),
        }
    }
    Ok(())
}

async fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    #[cfg(unix)]
    {
        let d = tokio::fs::File::open(dir)
            .await
            .map_err(|e| ArchiveError::io(dir, e))?;
        d.sync_all().await.map_err(|e| ArchiveError::io(dir, e))?;
    }
    Ok(())
}
