//! Reader for archive format version 1.
//!
//! ```text
//! backup/
//! ├── manifest.json                      written last; lists and checksums every file below
//! ├── cluster/
//! │   ├── templates.json                 legacy templates   {name: body}
//! │   ├── index_templates.json           composable templates {name: body}
//! │   └── component_templates.json       component templates {name: body}
//! └── indices/
//!     └── <folder>/                      see `archive::naming`; the manifest maps index -> folder
//!         ├── settings.json              {"index": {...}} without server-generated keys
//!         ├── mappings.json
//!         ├── aliases.json               {alias: {filter, index_routing, search_routing, is_write_index}}
//!         └── data-s<SSS>-<NNNNN>.jsonl[.zst|.gz]
//!                                        one {"_id":…,"_routing":…,"_source":…} per line,
//!                                        _source byte-for-byte as the server sent it
//! ```

use std::path::{Path, PathBuf};

use super::super::manifest::{FileEntry, Manifest};
use super::super::ArchiveError;
use crate::archive::hash::file_digest;

#[derive(Debug)]
pub struct V1Reader {
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

impl V1Reader {
    pub(super) fn open(root: &Path, bytes: &[u8]) -> Result<V1Reader, String> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
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
        Ok(V1Reader {
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
