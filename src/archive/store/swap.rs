//! Replacing an archive in a local folder (`--overwrite`): what only a
//! folder can do, kept apart from the store interface (object storage has
//! no folder renames; replacing an archive there is a matter for its own
//! store).
//!
//! The old archive stays whole until the new one is: the new archive is
//! written in a sibling folder `.NAME.esark-new` ([`prepare`]), and only
//! once its manifest is written does [`replace`] swap them:
//!
//! 1. `NAME` is renamed `.NAME.esark-old`;
//! 2. `.NAME.esark-new` is renamed `NAME`;
//! 3. whatever `.NAME.esark-old` holds that esark does not own (files a
//!    user put beside the archive) is moved into `NAME`;
//! 4. `.NAME.esark-old` is removed.
//!
//! Each step is one `rename` in one folder, so a crash leaves complete
//! archives only. The next [`prepare`] of `NAME` finishes or undoes what a
//! crash interrupted ([`recover`]): `NAME` missing but `.NAME.esark-old`
//! there (a crash between 1 and 2) puts the old archive back; both there (a
//! crash after 2) finishes 3 and 4; a `.NAME.esark-new` left by a crash or
//! a failed run is removed. A failed run never reaches step 1.

use std::path::{Path, PathBuf};

use super::local::create_private_dir;
use crate::archive::{ArchiveError, CHECKPOINT_FILE, MANIFEST_FILE};

/// Top-level entries esark owns in an archive folder; `--overwrite`
/// replaces these and nothing else.
const OWNED_ENTRIES: &[&str] = &[
    "indices",
    "cluster",
    MANIFEST_FILE,
    "manifest.json.partial",
    CHECKPOINT_FILE,
    "checkpoint.json.partial",
    // A restore's progress through the old archive means nothing for the
    // new one.
    "restore.state.json",
    "restore.state.json.partial",
];

/// The folder a new archive for `root` is written in: `root` itself, made
/// if missing, or (`overwrite` of a non-empty folder) a staging folder
/// beside it, with the folder it is to replace.
pub async fn prepare(
    root: &Path,
    overwrite: bool,
) -> Result<(PathBuf, Option<PathBuf>), ArchiveError> {
    recover(root).await?;
    match tokio::fs::metadata(root).await {
        Ok(meta) if !meta.is_dir() => Err(ArchiveError::NotADirectory(root.into())),
        Ok(_) => {
            let mut entries = tokio::fs::read_dir(root)
                .await
                .map_err(|e| ArchiveError::io(root, e))?;
            let non_empty = entries
                .next_entry()
                .await
                .map_err(|e| ArchiveError::io(root, e))?
                .is_some();
            if !non_empty {
                return Ok((root.into(), None));
            }
            if !overwrite {
                let unfinished = tokio::fs::try_exists(root.join(CHECKPOINT_FILE))
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
            // Through a symbolic link, the folder it points to is
            // replaced, not the link.
            let real = tokio::fs::canonicalize(root)
                .await
                .map_err(|e| ArchiveError::io(root, e))?;
            let (staging, _) = siblings(&real).await?;
            remove_all(&staging).await?;
            create_dir(&staging).await?;
            Ok((staging, Some(real)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_dir(root).await?;
            Ok((root.into(), None))
        }
        Err(e) => Err(ArchiveError::io(root, e)),
    }
}

/// Swaps the complete archive in `staging` in for `output`, and removes
/// the old one, keeping what esark does not own.
pub async fn replace(output: &Path) -> Result<(), ArchiveError> {
    let (staging, old) = siblings(output).await?;
    remove_all(&old).await?;
    rename(output, &old).await?;
    rename(&staging, output).await?;
    finish_swap(&old, output).await
}

/// Removes a staging folder that will not replace anything (a failed or
/// interrupted run); the old archive is untouched.
pub async fn discard(staging: &Path) -> Result<(), ArchiveError> {
    remove_all(staging).await
}

async fn create_dir(path: &Path) -> Result<(), ArchiveError> {
    create_private_dir(path)
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
    super::local::sync_dir(dir)
        .await
        .map_err(|e| ArchiveError::io(dir, e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An archive folder with a manifest, an index folder and a file of
    /// the user's.
    pub(crate) fn archive(dir: &Path, marker: &str) {
        std::fs::create_dir_all(dir.join("indices/a")).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), marker).unwrap();
        std::fs::write(dir.join("indices/a/settings.json"), marker).unwrap();
    }

    pub(crate) fn manifest_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap()
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
