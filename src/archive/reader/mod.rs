//! Reading an archive: the manifest's version field first, then the parser
//! for that version ([`v1`] to [`v5`]), whose result is adapted to the current
//! model; then [`Reader`] checks files against it. Every version shares the
//! on-disk layout drawn in [`v1`].
//!
//! Files are read through the archive's [`ArchiveStore`]: [`open`] opens a
//! local folder, [`open_store`] any store. Refusing files that are
//! symbolic links out of the archive is done for a local folder only (no
//! other store has links).

pub mod v1;
pub mod v2;
pub mod v3;
pub mod v4;
pub mod v5;
pub mod v6;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use super::crypt::{decrypting, CryptError, Identities};
use super::hash::reader_digest;
use super::manifest::{FileEntry, Manifest};
use super::store::{ArchiveStore, LocalStore, StoreError};
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

    /// Where the archive is: its folder, or the store's name for it.
    pub fn root(&self) -> PathBuf {
        self.reader.root()
    }

    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// The identities to read an encrypted archive with (`--identity`).
    pub fn with_identities(mut self, identities: Option<Identities>) -> Archive {
        self.reader.identities = identities;
        self
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
            .buffer_unordered(check_concurrency(reader.store().as_ref()))
            .filter(|(_, c)| std::future::ready(*c != FileCheck::Ok))
            .collect()
            .await;
        problems.sort_by(|a, b| a.0.cmp(&b.0));
        problems
    }
}

/// Files of a local folder checked at the same time: hashing is
/// CPU-bound, reading is I/O.
const CHECK_CONCURRENCY: usize = 4;

/// Files of object storage checked at the same time: most are a few
/// hundred bytes (settings, mappings, aliases, templates), so a check is
/// one round trip. A restore from moto of the benchmark's archive (100,000
/// documents in 4 indices) checks 17 such files: 4 at a time they took
/// some 5 rounds of 10-20 ms; 16 at a time all are asked within 2 ms and
/// moto (some 300 requests/s) answers them in some 55 ms. The whole
/// restore into the null sink: 0.34-0.39 s before (3 runs), 0.31-0.36 s
/// after (8 runs; the folder: 0.21-0.26 s).
const REMOTE_CHECK_CONCURRENCY: usize = 16;

/// How many files of `store` [`Archive::check_files`] checks at once.
fn check_concurrency(store: &dyn ArchiveStore) -> usize {
    match store.as_local() {
        Some(_) => CHECK_CONCURRENCY,
        None => REMOTE_CHECK_CONCURRENCY,
    }
}

/// Files of an opened archive.
#[derive(Debug)]
pub struct Reader {
    store: Arc<dyn ArchiveStore>,
    manifest: Manifest,
    /// What opens its encrypted files, when given.
    identities: Option<Identities>,
}

/// Why a manifest that parses is still not one esark wrote.
#[derive(Debug, thiserror::Error)]
pub enum InconsistentManifest {
    /// An index listed twice would be restored twice.
    #[error("index {0:?} is listed twice")]
    IndexListedTwice(String),
    #[error("file {0:?} is listed twice")]
    FileListedTwice(String),
    #[error(transparent)]
    UnsafePath(ArchiveError),
    #[error("index {index:?} claims {claimed} documents but its files hold {held}")]
    DocumentCount {
        index: String,
        claimed: u64,
        held: u64,
    },
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
    fn new(
        store: Arc<dyn ArchiveStore>,
        manifest: Manifest,
    ) -> Result<Reader, InconsistentManifest> {
        let mut names = std::collections::HashSet::new();
        let listed = manifest.indices.iter().map(|i| &i.name);
        for name in listed.chain(manifest.failed.iter().map(|f| &f.name)) {
            if !names.insert(name.as_str()) {
                return Err(InconsistentManifest::IndexListedTwice(name.clone()));
            }
        }
        let mut paths = std::collections::HashSet::new();
        for file in manifest.files() {
            safe_relative(&file.path).map_err(InconsistentManifest::UnsafePath)?;
            if !paths.insert(file.path.as_str()) {
                return Err(InconsistentManifest::FileListedTwice(file.path.clone()));
            }
        }
        for index in &manifest.indices {
            let held: u64 = index.files.iter().filter_map(|f| f.docs).sum();
            if held != index.docs {
                return Err(InconsistentManifest::DocumentCount {
                    index: index.name.clone(),
                    claimed: index.docs,
                    held,
                });
            }
        }
        Ok(Reader {
            store,
            manifest,
            identities: None,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where the archive is: its folder, or the store's name for it.
    pub fn root(&self) -> PathBuf {
        self.store.locate("")
    }

    /// The store the archive's files are read from.
    pub fn store(&self) -> &Arc<dyn ArchiveStore> {
        &self.store
    }

    /// How messages name a file of the archive: its path in a local
    /// folder.
    pub fn path_of(&self, file: &FileEntry) -> PathBuf {
        self.store.locate(&file.path)
    }

    /// Reads a (small) file of the archive whole, decrypted.
    pub async fn read(&self, file: &FileEntry) -> Result<Bytes, ArchiveError> {
        let stored = self.store.get(&file.path).await?;
        if !file.encrypted {
            return Ok(stored);
        }
        let crypt = |e| ArchiveError::Crypt(self.path_of(file), e);
        let identities = self
            .identities
            .as_ref()
            .ok_or_else(|| crypt(CryptError::IdentityNeeded))?;
        Ok(Bytes::from(identities.open(&stored).map_err(crypt)?))
    }

    /// What opens the archive's encrypted files, if given.
    pub fn identities(&self) -> Option<&Identities> {
        self.identities.as_ref()
    }

    /// Proves, before anything is written anywhere, that the archive's
    /// encrypted files can be read: an identity is given, and it opens the
    /// header of the first encrypted file. An archive that is not
    /// encrypted needs nothing.
    pub async fn check_identity(&self) -> Result<(), ArchiveError> {
        let Some(file) = self.manifest.files().find(|f| f.encrypted) else {
            return Ok(());
        };
        let crypt = |e| ArchiveError::Crypt(self.store.locate(""), e);
        let identities = self
            .identities
            .as_ref()
            .ok_or_else(|| crypt(CryptError::IdentityNeeded))?;
        let stored = self.store.read(&file.path, 0).await?;
        let buffered = tokio::io::BufReader::new(stored);
        match decrypting(buffered, identities).await {
            Ok(_) => Ok(()),
            Err(CryptError::WrongIdentity) => Err(crypt(CryptError::WrongIdentity)),
            Err(e) => Err(ArchiveError::Crypt(self.path_of(file), e)),
        }
    }

    /// Refuses an archive in `local` with a file that resolves outside its
    /// folder (a symbolic link, of the file or of a folder on its way):
    /// reading it would read, and restore, whatever it points to. Files
    /// that do not exist are left to the checks that report them missing.
    async fn check_links(&self, local: &LocalStore) -> Result<(), ArchiveError> {
        let root = tokio::fs::canonicalize(local.root())
            .await
            .map_err(|e| ArchiveError::io(local.root(), e))?;
        for file in self.manifest.files() {
            let path = local.path(&file.path);
            match tokio::fs::canonicalize(&path).await {
                Ok(real) if !real.starts_with(&root) => {
                    return Err(ArchiveError::OutsideArchive { path, target: real })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks one file's size and sha256 against the manifest.
    ///
    /// One read of the object, no `HEAD` before it (on object storage a
    /// request saved per file, and through a spool the read leaves the
    /// copy that the restore then parses): at most one byte more than the
    /// manifest's size is read, so a longer file is not read to its end.
    pub async fn check_file(&self, file: &FileEntry) -> FileCheck {
        let stored = match self.store.read(&file.path, 0).await {
            Err(StoreError::NotFound { .. }) => return FileCheck::Missing,
            Err(e) => return FileCheck::Unreadable(e.into_io().to_string()),
            Ok(stored) => stored,
        };
        let mut limited = tokio::io::AsyncReadExt::take(stored, file.bytes.saturating_add(1));
        match reader_digest(&mut limited).await {
            Ok((size, _)) if size > file.bytes => {
                // Longer: its real size, as the message gives it.
                let actual = match self.store.head(&file.path).await {
                    Ok(m) => m.size,
                    Err(_) => size,
                };
                FileCheck::SizeMismatch {
                    expected: file.bytes,
                    actual,
                }
            }
            Ok((size, _)) if size != file.bytes => FileCheck::SizeMismatch {
                expected: file.bytes,
                actual: size,
            },
            Ok((_, digest)) if digest == file.sha256 => FileCheck::Ok,
            Ok(_) => FileCheck::DigestMismatch,
            Err(e) => FileCheck::Unreadable(e.to_string()),
        }
    }
}

/// Opens the archive in the folder `root`: checks that it is a folder with
/// a manifest of a known format version.
pub async fn open(root: &Path) -> Result<Archive, ArchiveError> {
    match tokio::fs::metadata(root).await {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(ArchiveError::NotADirectory(root.into())),
        Err(e) => return Err(ArchiveError::io(root, e)),
    }
    open_store(Arc::new(LocalStore::new(root))).await
}

/// Opens the archive in `store`: checks that it has a manifest of a known
/// format version.
pub async fn open_store(store: Arc<dyn ArchiveStore>) -> Result<Archive, ArchiveError> {
    let path = store.locate(MANIFEST_FILE);
    let bytes = match store.get(MANIFEST_FILE).await {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => {
            return Err(ArchiveError::MissingManifest(store.locate("")))
        }
        Err(e) => return Err(e.into()),
    };
    let bad = |reason: String| ArchiveError::BadManifest {
        path: path.clone(),
        reason,
    };
    // serde reads a struct from an array too ("expected struct Header
    // with 2 elements"): say what a manifest is instead.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(bad(format!(
            "a manifest is a JSON object with \"format\": {FORMAT_NAME:?}, \"format_version\", \"source\", \"indices\"…, and this is not one"
        )));
    }
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
        Version::V4 => v4::parse(&bytes),
        Version::V5 => v5::parse(&bytes),
        Version::V6 => v6::parse(&bytes),
    }
    .map_err(|e| bad(e.to_string()))?;
    let reader = Reader::new(store.clone(), manifest).map_err(|e| bad(e.to_string()))?;
    if let Some(local) = store.as_local() {
        reader.check_links(local).await?;
    }
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

    /// A manifest from the v3 fixture's shape, with `indices` replaced.
    fn manifest_with(indices: serde_json::Value) -> Vec<u8> {
        let index = |name: &str| {
            serde_json::json!({"name": name, "folder": format!("indices/{name}"), "docs": 0,
                "expected_docs": 0, "slices": 1, "files": []})
        };
        let indices = match indices {
            serde_json::Value::Array(names) => names
                .iter()
                .map(|n| index(n.as_str().unwrap()))
                .collect::<Vec<_>>(),
            _ => unreachable!(),
        };
        serde_json::to_vec(&serde_json::json!({
            "format": "esark-archive", "format_version": 3, "tool_version": "0.1.0",
            "created_at": "2026-01-01T00:00:00Z", "completed_at": "2026-01-01T00:00:00Z",
            "source": {"url": "http://h/", "cluster_name": "c", "cluster_uuid": "u",
                       "flavor": "opensearch", "version": "2.0.0"},
            "options": {"compression": "zstd", "level": 1, "slices": "auto", "page_size": 1000,
                        "file_size": 1000, "match": null, "exclude": null},
            "cluster_files": [], "indices": indices,
        }))
        .unwrap()
    }

    async fn open_manifest(bytes: &[u8]) -> Result<super::Archive, super::ArchiveError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), bytes).unwrap();
        super::open(dir.path()).await
    }

    /// Regression: a manifest listing one index twice was restored twice.
    #[tokio::test]
    async fn an_index_listed_twice_is_refused() {
        open_manifest(&manifest_with(serde_json::json!(["a", "b"])))
            .await
            .unwrap();
        let e = open_manifest(&manifest_with(serde_json::json!(["a", "b", "a"])))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("index \"a\" is listed twice"), "{e}");
    }

    /// Format 4 lists failed indices; a version 3 manifest that has them
    /// is not one esark wrote.
    #[tokio::test]
    async fn failed_indices_are_read_from_version_4_only() {
        let mut m: serde_json::Value =
            serde_json::from_slice(&manifest_with(serde_json::json!(["a"]))).unwrap();
        m["failed"] = serde_json::json!([{"name": "b", "reason": "deleted during the dump"}]);
        let e = open_manifest(&serde_json::to_vec(&m).unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("format version 4"), "{e}");
        m["format_version"] = serde_json::json!(4);
        let archive = open_manifest(&serde_json::to_vec(&m).unwrap())
            .await
            .unwrap();
        assert_eq!(archive.manifest().failed[0].name, "b");
        // A failed index may not also be listed as dumped.
        m["failed"][0]["name"] = serde_json::json!("a");
        let e = open_manifest(&serde_json::to_vec(&m).unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("listed twice"), "{e}");
    }

    /// Regression: `[]` said "expected struct Header with 2 elements".
    #[tokio::test]
    async fn a_manifest_that_is_not_an_object_says_what_a_manifest_is() {
        for text in ["[]", " [\"esark-archive\", 3]", "3", "\"x\""] {
            let e = open_manifest(text.as_bytes())
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("a manifest is a JSON object"), "{text}: {e}");
            assert!(!e.contains("struct Header"), "{text}: {e}");
        }
    }

    /// A file that is a symbolic link out of the archive is refused.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlink_out_of_the_archive_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s3cret\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&manifest_with(serde_json::json!(["a"]))).unwrap();
        manifest["indices"][0]["files"] = serde_json::json!([{"kind": "settings",
            "path": "indices/a/settings.json", "bytes": 7, "sha256": "00"}]);
        std::fs::create_dir_all(dir.path().join("indices/a")).unwrap();
        std::fs::write(
            dir.path().join("manifest.json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            dir.path().join("indices/a/settings.json"),
        )
        .unwrap();
        let e = super::open(dir.path()).await.unwrap_err().to_string();
        assert!(e.contains("outside the archive"), "{e}");
        assert!(e.contains("settings.json"), "{e}");
        // A folder linked out of the archive, the same.
        std::fs::remove_dir_all(dir.path().join("indices")).unwrap();
        std::fs::create_dir_all(outside.path().join("a")).unwrap();
        std::fs::write(outside.path().join("a/settings.json"), "{}\n").unwrap();
        std::fs::create_dir_all(dir.path().join("indices")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("a"), dir.path().join("indices/a")).unwrap();
        let e = super::open(dir.path()).await.unwrap_err().to_string();
        assert!(e.contains("outside the archive"), "{e}");
    }

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
