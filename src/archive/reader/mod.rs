//! Reading an archive: the manifest's version field first, then the parser
//! for that version ([`v1`], [`v2`], [`v3`]), whose result is adapted to the current
//! model; then [`Reader`] checks files against it. Every version shares the
//! on-disk layout drawn in [`v1`].

pub mod v1;
pub mod v2;
pub mod v3;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::hash::file_digest;
use super::manifest::{FileEntry, Manifest};
use super::{ArchiveError, Version, FORMAT_NAME, MANIFEST_FILE};

/// The two fields read before anything else.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    format_version: Option<serde_json::Value>,
}

/// An opened archive of any supported version, as the current model.
#[derive(Debug)]
pub struct Archive {
    /// The version the archive was written in.
    version: Version,
    reader: Reader,
}

impl Archive {
    pub fn manifest(&self) -> &Manifest {
        &self.reader.manifest
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn root(&self) -> &Path {
        &self.reader.root
    }

    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// Checks `files` (size and sha256 against the manifest), a few at a
    /// time; returns the failures, sorted by path.
    pub async fn check_files<'a>(
        &self,
        files: impl IntoIterator<Item = &'a FileEntry>,
    ) -> Vec<(String, FileCheck)> {
        use futures::stream::{self, StreamExt};
        let reader = self.reader();
        let mut problems: Vec<(String, FileCheck)> = stream::iter(files)
            .map(|f| async move { (f.path.clone(), reader.check_file(f).await) })
            .buffer_unordered(CHECK_CONCURRENCY)
            .filter(|(_, c)| std::future::ready(*c != FileCheck::Ok))
            .collect()
            .await;
        problems.sort_by(|a, b| a.0.cmp(&b.0));
        problems
    }
}

/// Files checked at the same time: hashing is CPU-bound, reading is I/O.
const CHECK_CONCURRENCY: usize = 4;

/// Files of an opened archive.
#[derive(Debug)]
pub struct Reader {
    root: PathBuf,
    manifest: Manifest,
}

/// The outcome of checking one file against the manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum FileCheck {
    Ok,
    Missing,
    SizeMismatch { expected: u64, actual: u64 },
    DigestMismatch,
    Unreadable(String),
}

impl Reader {
    fn new(root: &Path, manifest: Manifest) -> Result<Reader, String> {
        for file in manifest.files() {
            safe_relative(&file.path).map_err(|e| e.to_string())?;
        }
        for index in &manifest.indices {
            let data_docs: u64 = index.files.iter().filter_map(|f| f.docs).sum();
            if data_docs != index.docs {
                return Err(format!(
                    "index {:?} claims {} documents but its files hold {}",
                    index.name, index.docs, data_docs
                ));
            }
        }
        Ok(Reader {
            root: root.into(),
            manifest,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of a file of the archive.
    pub fn path_of(&self, file: &FileEntry) -> PathBuf {
        file.path
            .split('/')
            .fold(self.root.clone(), |p, c| p.join(c))
    }

    /// Checks one file's size and sha256 against the manifest.
    pub async fn check_file(&self, file: &FileEntry) -> FileCheck {
        let path = self.path_of(file);
        match tokio::fs::metadata(&path).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileCheck::Missing,
            Err(e) => return FileCheck::Unreadable(e.to_string()),
            Ok(m) if m.len() != file.bytes => {
                return FileCheck::SizeMismatch {
                    expected: file.bytes,
                    actual: m.len(),
                }
            }
            Ok(_) => {}
        }
        match file_digest(&path).await {
            Ok((_, digest)) if digest == file.sha256 => FileCheck::Ok,
            Ok(_) => FileCheck::DigestMismatch,
            Err(e) => FileCheck::Unreadable(e.to_string()),
        }
    }
}

/// Opens the archive at `root`: checks that it is a folder with a manifest
/// of a known format version.
pub async fn open(root: &Path) -> Result<Archive, ArchiveError> {
    match tokio::fs::metadata(root).await {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(ArchiveError::NotADirectory(root.into())),
        Err(e) => return Err(ArchiveError::io(root, e)),
    }
    let path = root.join(MANIFEST_FILE);
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ArchiveError::MissingManifest(root.into()))
        }
        Err(e) => return Err(ArchiveError::io(&path, e)),
    };
    let bad = |reason: String| ArchiveError::BadManifest {
        path: path.clone(),
        reason,
    };
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if header.format.as_deref() != Some(FORMAT_NAME) {
        return Err(bad(format!("\"format\" is not {FORMAT_NAME:?}")));
    }
    let version = header
        .format_version
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("no numeric \"format_version\"".into()))?;
    let version = Version::try_from(u32::try_from(version).unwrap_or(u32::MAX))?;
    let manifest = match version {
        Version::V1 => v1::parse(&bytes).map(v1::to_v2),
        Version::V2 => v2::parse(&bytes),
        Version::V3 => v3::parse(&bytes),
    }
    .map_err(&bad)?;
    let reader = Reader::new(root, manifest).map_err(bad)?;
    Ok(Archive { version, reader })
}

/// Refuses manifest paths that could point outside the archive.
fn safe_relative(path: &str) -> Result<(), ArchiveError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains(':')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        Err(ArchiveError::UnsafePath { path: path.into() })
    } else {
        Ok(())
    }
}

impl std::fmt::Display for FileCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileCheck::Ok => f.write_str("ok"),
            FileCheck::Missing => f.write_str("missing"),
            FileCheck::SizeMismatch { expected, actual } => {
                write!(
                    f,
                    "size {actual} bytes, manifest says {expected} (truncated or modified)"
                )
            }
            FileCheck::DigestMismatch => {
                f.write_str("sha256 does not match the manifest (modified)")
            }
            FileCheck::Unreadable(e) => write!(f, "unreadable: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_relative;

    #[test]
    fn unsafe_paths_are_refused() {
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "indices/../../x",
            "a//b",
            "c:/x",
            "a\\b",
            "./a",
        ] {
            assert!(safe_relative(p).is_err(), "{p}");
        }
        for p in [
            "indices/%25kuzzle/data-s000-00000.jsonl.zst",
            "cluster/templates.json",
        ] {
            assert!(safe_relative(p).is_ok(), "{p}");
        }
    }
}
