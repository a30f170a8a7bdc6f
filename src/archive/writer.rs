//! Writing an archive's folder, metadata files and manifest.
//!
//! Every file is written under a temporary name and renamed into place when
//! complete; the manifest is written last, the same way, so an archive is
//! either complete (manifest present) or visibly incomplete. Files are
//! created readable by the owner only (`0600`, folders `0700`): backups hold
//! user data.
//!
//! # Replacing an archive (`--overwrite`)
//!
//! The old archive stays whole until the new one is: the new archive is
//! written in a sibling folder `.NAME.esark-new`, and only once its
//! manifest is written does [`ArchiveWriter::replace`] swap them:
//!
//! 1. `NAME` is renamed `.NAME.esark-old`;
//! 2. `.NAME.esark-new` is renamed `NAME`;
//! 3. whatever `.NAME.esark-old` holds that esark does not own (files a
//!    user put beside the archive) is moved into `NAME`;
//! 4. `.NAME.esark-old` is removed.
//!
//! Each step is one `rename` in one folder, so a crash leaves complete
//! archives only. The next `create` of `NAME` finishes or undoes what a
//! crash interrupted ([`recover`]): `NAME` missing but `.NAME.esark-old`
//! there (a crash between 1 and 2) puts the old archive back; both there (a
//! crash after 2) finishes 3 and 4; a `.NAME.esark-new` left by a crash or
//! a failed run is removed. A failed run never reaches step 1.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::hash::HashingWriter;
use super::manifest::{FileEntry, FileKind, Manifest};
use super::{ArchiveError, MANIFEST_FILE};

/// Suffix of a file being written; never listed in a manifest.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Top-level entries esark owns in an archive folder; `--overwrite`
/// replaces these and nothing else.
const OWNED_ENTRIES: &[&str] = &[
    "indices",
    "cluster",
    MANIFEST_FILE,
    "manifest.json.partial",
    super::CHECKPOINT_FILE,
    "checkpoint.json.partial",
    // A restore's progress through the old archive means nothing for the
    // new one.
    "restore.state.json",
    "restore.state.json.partial",
];

/// The archive folder being written.
#[derive(Debug, Clone)]
pub struct ArchiveWriter {
    /// Where files are written: the output folder, or the staging folder
    /// beside it when replacing an archive.
    root: PathBuf,
    /// The output folder whose archive this one replaces once complete.
    replaces: Option<PathBuf>,
}

impl ArchiveWriter {
    /// Prepares `root` for a new archive. A folder that exists and is not
    /// empty is refused unless `overwrite`: the new archive is then written
    /// beside it, and [`ArchiveWriter::replace`] swaps it in once complete
    /// (see the module documentation).
    pub async fn create(root: &Path, overwrite: bool) -> Result<ArchiveWriter, ArchiveError> {
        recover(root).await?;
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
                        let unfinished = tokio::fs::try_exists(root.join(super::CHECKPOINT_FILE))
                            .await
                            .unwrap_or(false)
                            && !tokio::fs::try_exists(root.join(MANIFEST_FILE))
                                .await
                                .unwrap_or(true);
                        return Err(if unfinished {
                            ArchiveError::UnfinishedDump(root.into())
                        } else {
                            ArchiveError::NotEmpty(root.into())
                        });
                    }
                    // Through a symbolic link, the folder it points to
                    // is replaced, not the link.
                    let real = tokio::fs::canonicalize(root)
                        .await
                        .map_err(|e| ArchiveError::io(root, e))?;
                    let (staging, _) = siblings(&real).await?;
                    remove_all(&staging).await?;
                    create_private_dir(&staging).await?;
                    return Ok(ArchiveWriter {
                        root: staging,
                        replaces: Some(real),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_private_dir(root).await?;
            }
            Err(e) => return Err(ArchiveError::io(root, e)),
        }
        Ok(ArchiveWriter {
            root: root.into(),
            replaces: None,
        })
    }

    /// Opens the folder of an interrupted dump, as it is.
    pub async fn open_existing(root: &Path) -> Result<ArchiveWriter, ArchiveError> {
        match tokio::fs::metadata(root).await {
            Ok(meta) if meta.is_dir() => Ok(ArchiveWriter {
                root: root.into(),
                replaces: None,
            }),
            Ok(_) => Err(ArchiveError::NotADirectory(root.into())),
            Err(e) => Err(ArchiveError::io(root, e)),
        }
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
            return Ok(self.root);
        };
        let (staging, old) = siblings(&output).await?;
        remove_all(&old).await?;
        rename(&output, &old).await?;
        rename(&staging, &output).await?;
        finish_swap(&old, &output).await?;
        Ok(output)
    }

    /// Removes the folder of an archive that will not replace anything (a
    /// failed or interrupted `--overwrite` run); the old one is untouched.
    pub async fn discard(&self) -> Result<(), ArchiveError> {
        if self.replaces.is_some() {
            remove_all(&self.root).await?;
        }
        Ok(())
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

/// The staging folder of a new archive for `output`, and the name the old
/// archive takes during the swap: `.NAME.esark-new` and `.NAME.esark-old`
/// beside it (same file system, so renames are atomic).
async fn siblings(output: &Path) -> Result<(PathBuf, PathBuf), ArchiveError> {
    // `.` or `..` have no name of their own: use the real path.
    let output = match output.file_name() {
        Some(_) => output.to_path_buf(),
        None => tokio::fs::canonicalize(output)
            .await
            .map_err(|e| ArchiveError::io(output, e))?,
    };
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ArchiveError::NotADirectory(output.clone()))?;
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((
        parent.join(format!(".{name}.esark-new")),
        parent.join(format!(".{name}.esark-old")),
    ))
}

/// Finishes or undoes a replacement a crash interrupted (see the module
/// documentation), and removes a staging folder a failed run left.
pub async fn recover(output: &Path) -> Result<(), ArchiveError> {
    let real = tokio::fs::canonicalize(output).await;
    let output = real.as_deref().unwrap_or(output);
    let (staging, old) = match siblings(output).await {
        Ok(s) => s,
        // No folder and no name: nothing was ever replaced there.
        Err(_) => return Ok(()),
    };
    if exists(&old).await {
        if exists(output).await {
            finish_swap(&old, output).await?;
        } else {
            rename(&old, output).await?;
        }
    }
    remove_all(&staging).await
}

/// Steps 3 and 4 of a replacement: moves what esark does not own from the
/// old archive's folder into the new one, then removes the old one.
async fn finish_swap(old: &Path, output: &Path) -> Result<(), ArchiveError> {
    let mut entries = tokio::fs::read_dir(old)
        .await
        .map_err(|e| ArchiveError::io(old, e))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| ArchiveError::io(old, e))?
    {
        let name = entry.file_name();
        let owned = OWNED_ENTRIES.iter().any(|o| name.as_os_str() == *o);
        let to = output.join(&name);
        if !owned && !exists(&to).await {
            rename(&entry.path(), &to).await?;
        }
    }
    remove_all(old).await?;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).await?;
    }
    Ok(())
}

async fn exists(path: &Path) -> bool {
    tokio::fs::symlink_metadata(path).await.is_ok()
}

async fn rename(from: &Path, to: &Path) -> Result<(), ArchiveError> {
    tokio::fs::rename(from, to)
        .await
        .map_err(|e| ArchiveError::io(from, e))
}

async fn remove_all(path: &Path) -> Result<(), ArchiveError> {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ArchiveError::io(path, e)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive folder with a manifest, an index folder and a file of
    /// the user's.
    fn archive(dir: &Path, marker: &str) {
        std::fs::create_dir_all(dir.join("indices/a")).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), marker).unwrap();
        std::fs::write(dir.join("indices/a/settings.json"), marker).unwrap();
    }

    fn manifest_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap()
    }

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
        archive(writer.root(), "new");
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
        archive(writer.root(), "newer");
        writer.discard().await.unwrap();
        assert_eq!(manifest_of(&out), "new");
        assert!(!tmp.path().join(".out.esark-new").exists());
    }

    /// A crash between the two renames leaves the old archive under its
    /// temporary name: the next run puts it back.
    #[tokio::test]
    async fn a_crash_between_the_renames_puts_the_old_archive_back() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let (staging, old) = siblings(&out).await.unwrap();
        archive(&old, "old");
        std::fs::write(old.join("notes.txt"), "mine").unwrap();
        archive(&staging, "new");
        recover(&out).await.unwrap();
        assert_eq!(manifest_of(&out), "old");
        assert_eq!(
            std::fs::read_to_string(out.join("notes.txt")).unwrap(),
            "mine"
        );
        assert!(!staging.exists() && !old.exists());
    }

    /// A crash after the new archive is in place finishes the swap: the
    /// user's files move over, the old archive goes.
    #[tokio::test]
    async fn a_crash_after_the_swap_is_finished() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let (staging, old) = siblings(&out).await.unwrap();
        archive(&old, "old");
        std::fs::write(old.join("notes.txt"), "mine").unwrap();
        archive(&out, "new");
        recover(&out).await.unwrap();
        assert_eq!(manifest_of(&out), "new");
        assert_eq!(
            std::fs::read_to_string(out.join("notes.txt")).unwrap(),
            "mine"
        );
        assert!(!staging.exists() && !old.exists());
    }
}
