//! Archives as tar streams, both ways, never whole in memory.
//!
//! Out ([`tar_body`]): the files the manifest lists, then `manifest.json`,
//! under `NAME/`, read from the store object by object into a tar writer
//! whose output is the response body. The manifest comes last, as in the
//! store: a transfer cut short leaves an extracted folder without it,
//! which every esark command treats as incomplete. Each file is checked
//! against the manifest on the way; one that changed ends the transfer
//! with an error instead of a complete-looking tar.
//!
//! In ([`receive`]): the request body as a tar stream. Entries are either
//! all at the root of the tar or all under one top folder (stripped).
//! Regular files go to the store as they arrive, with their size and
//! sha256 computed on the way; `manifest.json` is held back (capped at
//! [`MAX_MANIFEST`]) and written last with a conditional create, only
//! once every file it lists arrived intact and nothing else came. Links,
//! devices, fifos and paths leaving the archive are refused. On any
//! failure every object written is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tar::{Builder, EntryType, Header};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::archive::hash::{HashingReader, HashingWriter};
use crate::archive::manifest::{FileEntry, Manifest};
use crate::archive::reader;
use crate::archive::store::local::partial_path;
use crate::archive::store::{ArchiveStore, MemoryStore, PutMode, StoreError};
use crate::archive::{ArchiveError, MANIFEST_FILE};

/// Largest `manifest.json` accepted in an upload: it is held in memory.
pub const MAX_MANIFEST: u64 = 64 << 20;

/// Folders at the root of every archive: a tar whose first entry is under
/// one of them has its entries at the root, not under a top folder.
const ROOT_FOLDERS: &[&str] = &["cluster", "indices"];

/// Why an upload was refused. Every message names the entry.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A path, entry type or layout that is not an archive's.
    #[error("{entry}: {problem}")]
    Refused { entry: String, problem: String },
    /// A file that does not match what `manifest.json` says of it.
    #[error("{path}: {problem}")]
    Mismatch { path: String, problem: String },
    #[error("manifest.json: {0}")]
    BadManifest(String),
    #[error("the tar has no manifest.json")]
    NoManifest,
    #[error("not a readable tar stream: {0}")]
    Tar(io::Error),
    /// The body went over the configured maximum.
    #[error("the upload is too large")]
    TooLarge,
    /// The manifest's conditional create lost: the name was taken.
    #[error("the archive exists")]
    Exists,
    #[error(transparent)]
    Store(StoreError),
    /// The stored archive does not open (should not happen once checked).
    #[error("the stored archive does not open: {0}")]
    Stored(String),
}

/// Why a download stopped half way.
#[derive(Debug, thiserror::Error)]
enum DownloadError {
    #[error("{path}: {problem}; transfer stopped")]
    Changed { path: String, problem: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the tar: {0}")]
    Io(#[from] io::Error),
}

/// A header for a regular file of `size` bytes: owner-only, as the store
/// keeps archives (they hold user data), dated when the dump completed.
fn file_header(size: u64, mtime: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header
}

/// The response body of a download: a task writes the tar into one end
/// of a pipe, the body reads the other. The pipe holds at most 256 KiB,
/// so the store is read only as fast as the client takes the bytes. A
/// failure of the task ends the body with an error (the connection is
/// cut), never with a clean end the client would take for a whole tar.
pub fn tar_body(
    name: String,
    store: Arc<dyn ArchiveStore>,
    manifest: Manifest,
    manifest_bytes: Bytes,
) -> Body {
    let (writer, reader) = tokio::io::duplex(256 * 1024);
    let task = tokio::spawn(async move {
        let result = write_tar(writer, &name, store.as_ref(), &manifest, manifest_bytes)
            .await
            .map(drop);
        if let Err(e) = &result {
            tracing::warn!(archive = %name, "download stopped: {e}");
        }
        result
    });
    let outcome = futures::stream::once(async move {
        match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Err(io::Error::other(e.to_string()))),
            Err(e) => Some(Err(io::Error::other(format!("download task: {e}")))),
        }
    })
    .filter_map(futures::future::ready);
    Body::from_stream(ReaderStream::with_capacity(reader, 64 * 1024).chain(outcome))
}

/// Writes the tar into `out` and shuts it down; gives it back.
async fn write_tar<W: AsyncWrite + Unpin + Send + 'static>(
    out: W,
    name: &str,
    store: &dyn ArchiveStore,
    manifest: &Manifest,
    manifest_bytes: Bytes,
) -> Result<W, DownloadError> {
    let mtime = chrono::DateTime::parse_from_rfc3339(&manifest.completed_at)
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or(0);
    let mut builder = Builder::new(out);
    for file in manifest.files() {
        let object = store.read(&file.path, 0).await?;
        let (data, seen) = HashingReader::new(object.take(file.bytes));
        let mut header = file_header(file.bytes, mtime);
        builder
            .append_data(&mut header, format!("{name}/{}", file.path), data)
            .await?;
        let (bytes, sha256) = seen.get();
        let changed = |problem: String| DownloadError::Changed {
            path: file.path.clone(),
            problem,
        };
        if bytes != file.bytes {
            return Err(changed(format!(
                "{bytes} bytes in the store, {} in the manifest",
                file.bytes
            )));
        }
        if sha256 != file.sha256 {
            return Err(changed("sha256 differs from the manifest's".into()));
        }
    }
    let mut header = file_header(manifest_bytes.len() as u64, mtime);
    builder
        .append_data(
            &mut header,
            format!("{name}/{MANIFEST_FILE}"),
            manifest_bytes.as_ref(),
        )
        .await?;
    let mut out = builder.into_inner().await?;
    out.shutdown().await?;
    Ok(out)
}

/// Where entries are in the tar, decided by the first one.
enum Layout {
    Undecided,
    Root,
    Under(String),
}

/// A file received: its size and sha256.
type Received = BTreeMap<String, (u64, String)>;

/// Reads the tar in `body` (at most `max` bytes) into `store` (the
/// archive's, empty), checking it as `esark inspect` does; on failure
/// nothing written stays.
pub async fn receive<S, E>(
    store: Arc<dyn ArchiveStore>,
    body: S,
    max: u64,
) -> Result<(), UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    let over = Arc::new(AtomicBool::new(false));
    let flag = over.clone();
    let mut total = 0u64;
    let limited = body.map_err(io::Error::other).map(move |chunk| {
        let chunk = chunk?;
        total += chunk.len() as u64;
        if total > max {
            flag.store(true, Ordering::Relaxed);
            return Err(io::Error::other("the upload is too large"));
        }
        Ok(chunk)
    });
    let mut upload = Upload {
        store: store.as_ref(),
        started: Vec::new(),
        folders: BTreeSet::new(),
    };
    let result = upload.run(StreamReader::new(limited)).await;
    let result = match result {
        Err(_) if over.load(Ordering::Relaxed) => Err(UploadError::TooLarge),
        other => other,
    };
    if result.is_err() {
        upload.clean_up().await;
    }
    result
}

/// An upload in progress: what it created, for [`Upload::clean_up`].
struct Upload<'a> {
    store: &'a dyn ArchiveStore,
    /// Every key an upload was started for.
    started: Vec<String>,
    /// Folders created (a local store only has them).
    folders: BTreeSet<String>,
}

impl Upload<'_> {
    async fn run<R: AsyncRead + Unpin + Send>(&mut self, body: R) -> Result<(), UploadError> {
        let mut archive = tokio_tar::Archive::new(body);
        let mut entries = archive.entries().map_err(UploadError::Tar)?;
        let mut layout = Layout::Undecided;
        let mut received = Received::new();
        let mut manifest: Option<(Bytes, Manifest)> = None;
        while let Some(entry) = entries.next().await {
            let mut entry = entry.map_err(UploadError::Tar)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let refused = |problem: &str| UploadError::Refused {
                entry: raw.clone(),
                problem: problem.to_string(),
            };
            let kind = entry.header().entry_type();
            match kind {
                EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
                // A pax global header only carries defaults for what follows.
                EntryType::XGlobalHeader => continue,
                EntryType::Symlink | EntryType::Link => {
                    return Err(refused(
                        "links are refused (an archive holds regular files)",
                    ))
                }
                EntryType::Char | EntryType::Block | EntryType::Fifo => {
                    return Err(refused("devices and fifos are refused"))
                }
                _ => return Err(refused("an entry type an archive does not hold")),
            }
            let Some(key) = archive_key(&raw, kind == EntryType::Directory, &mut layout)
                .map_err(|p| refused(&p))?
            else {
                continue;
            };
            if kind == EntryType::Directory {
                continue;
            }
            if key == MANIFEST_FILE {
                if manifest.is_some() {
                    return Err(refused("manifest.json appears twice"));
                }
                if entry.header().size().unwrap_or(u64::MAX) > MAX_MANIFEST {
                    return Err(refused("larger than the 64 MiB a manifest may be"));
                }
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(MAX_MANIFEST)
                    .read_to_end(&mut bytes)
                    .await
                    .map_err(UploadError::Tar)?;
                let bytes = Bytes::from(bytes);
                let parsed = parse_manifest(bytes.clone()).await?;
                for (path, got) in &received {
                    check_received(&parsed, path, got)?;
                }
                manifest = Some((bytes, parsed));
                continue;
            }
            if received.contains_key(&key) {
                return Err(refused("appears twice in the tar"));
            }
            if let Some((_, m)) = &manifest {
                let listed = listed(m, &key).ok_or_else(|| unlisted(&key))?;
                let size = entry.header().size().map_err(UploadError::Tar)?;
                if size != listed.bytes {
                    return Err(size_mismatch(&key, size, listed.bytes));
                }
            }
            let got = self.store_file(&key, &mut entry).await?;
            if let Some((_, m)) = &manifest {
                check_received(m, &key, &got)?;
            }
            received.insert(key, got);
        }
        let (bytes, manifest) = manifest.ok_or(UploadError::NoManifest)?;
        if let Some(missing) = manifest.files().find(|f| !received.contains_key(&f.path)) {
            return Err(UploadError::Mismatch {
                path: missing.path.clone(),
                problem: "listed in manifest.json but not in the tar".into(),
            });
        }
        match self.store.put(MANIFEST_FILE, bytes, PutMode::Create).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists { .. }) => Err(UploadError::Exists),
            Err(e) => Err(UploadError::Store(e)),
        }
    }

    /// Streams one entry into the store under `key`: its size and sha256.
    async fn store_file<R: AsyncRead + Unpin>(
        &mut self,
        key: &str,
        entry: &mut R,
    ) -> Result<(u64, String), UploadError> {
        let folder = key.rsplit_once('/').map(|(f, _)| f).unwrap_or("");
        if self.folders.insert(folder.to_string()) {
            self.store
                .create_folder(folder)
                .await
                .map_err(UploadError::Store)?;
        }
        self.started.push(key.to_string());
        let object = self.store.upload(key).await.map_err(UploadError::Store)?;
        let mut writer = HashingWriter::new(object);
        let copied = tokio::io::copy(entry, &mut writer).await;
        let (object, bytes, sha256) = writer.finish();
        match copied {
            Ok(_) => object.commit().await.map_err(UploadError::Store)?,
            Err(e) => {
                let _ = object.abort().await;
                return Err(UploadError::Tar(e));
            }
        }
        Ok((bytes, sha256))
    }

    /// Removes every object this upload started, then (a local store) the
    /// folders it made, deepest first, if they are empty.
    async fn clean_up(&self) {
        for key in &self.started {
            if let Err(e) = self.store.delete(key).await {
                tracing::warn!("removing {key} of a refused upload: {e}");
            }
        }
        let Some(local) = self.store.as_local() else {
            return;
        };
        for key in &self.started {
            let _ = tokio::fs::remove_file(partial_path(&local.path(key))).await;
        }
        let mut folders: Vec<&String> = self.folders.iter().collect();
        folders.sort_by_key(|f| std::cmp::Reverse(f.matches('/').count() + !f.is_empty() as usize));
        for folder in folders {
            let mut path = local.path(folder);
            // Parents made along the way (`indices/` for `indices/x`).
            while path.starts_with(local.root()) {
                if tokio::fs::remove_dir(&path).await.is_err() || path == local.root() {
                    break;
                }
                path.pop();
            }
        }
    }
}

/// The archive key of tar path `raw`, `None` for the top folder itself
/// (or `.`). The first entry decides the layout: a file at the root, or
/// anything under `cluster/` or `indices/`, means entries are at the root;
/// anything else names the top folder every entry must be under.
fn archive_key(raw: &str, is_dir: bool, layout: &mut Layout) -> Result<Option<String>, String> {
    if raw.starts_with('/') {
        return Err("an absolute path is refused".into());
    }
    let mut parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.iter().any(|p| *p == "..") {
        return Err("a path leaving the archive (..) is refused".into());
    }
    if parts.iter().any(|p| p.contains('\\') || p.contains(':')) {
        return Err("a path with \\ or : is refused".into());
    }
    let Some(first) = parts.first().copied() else {
        return Ok(None);
    };
    if matches!(layout, Layout::Undecided) {
        let at_root = (parts.len() == 1 && !is_dir) || ROOT_FOLDERS.contains(&first);
        *layout = if at_root {
            Layout::Root
        } else {
            Layout::Under(first.to_string())
        };
    }
    if let Layout::Under(top) = layout {
        if first != top.as_str() {
            return Err(format!(
                "outside the top folder {top:?} (entries go all at the root of the tar or all under one folder)"
            ));
        }
        parts.remove(0);
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Parses an uploaded manifest as the archive reader would.
async fn parse_manifest(bytes: Bytes) -> Result<Manifest, UploadError> {
    let store = MemoryStore::new();
    store
        .put(MANIFEST_FILE, bytes, PutMode::Create)
        .await
        .map_err(UploadError::Store)?;
    match reader::open_store(Arc::new(store)).await {
        Ok(archive) => Ok(archive.manifest().clone()),
        Err(ArchiveError::BadManifest { reason, .. }) => Err(UploadError::BadManifest(reason)),
        Err(e) => Err(UploadError::BadManifest(e.to_string())),
    }
}

fn listed<'m>(manifest: &'m Manifest, key: &str) -> Option<&'m FileEntry> {
    manifest.files().find(|f| f.path == key)
}

fn unlisted(key: &str) -> UploadError {
    UploadError::Mismatch {
        path: key.to_string(),
        problem: "not listed in manifest.json (an archive holds only the files its manifest lists)"
            .into(),
    }
}

fn size_mismatch(key: &str, got: u64, listed: u64) -> UploadError {
    UploadError::Mismatch {
        path: key.to_string(),
        problem: format!("{got} bytes, manifest.json says {listed}"),
    }
}

/// Checks a received file against the manifest's entry for it.
fn check_received(manifest: &Manifest, key: &str, got: &(u64, String)) -> Result<(), UploadError> {
    let file = listed(manifest, key).ok_or_else(|| unlisted(key))?;
    if got.0 != file.bytes {
        return Err(size_mismatch(key, got.0, file.bytes));
    }
    if got.1 != file.sha256 {
        return Err(UploadError::Mismatch {
            path: key.to_string(),
            problem: "sha256 does not match manifest.json (damaged or altered)".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str, is_dir: bool, layout: &mut Layout) -> Result<Option<String>, String> {
        archive_key(raw, is_dir, layout)
    }

    #[test]
    fn entries_under_one_top_folder_are_stripped() {
        let mut layout = Layout::Undecided;
        assert_eq!(key("b1/", true, &mut layout), Ok(None));
        assert_eq!(
            key("b1/indices/x/data.jsonl", false, &mut layout),
            Ok(Some("indices/x/data.jsonl".into()))
        );
        assert_eq!(
            key("./b1/manifest.json", false, &mut layout),
            Ok(Some("manifest.json".into()))
        );
        assert!(key("b2/manifest.json", false, &mut layout)
            .unwrap_err()
            .contains("outside the top folder"));
    }

    #[test]
    fn entries_at_the_root_are_kept() {
        for first in [
            "manifest.json",
            "./indices/",
            "cluster/templates.json",
            "./",
        ] {
            let mut layout = Layout::Undecided;
            key(first, first.ends_with('/'), &mut layout).unwrap();
            if first != "./" {
                assert!(matches!(layout, Layout::Root), "{first}");
            }
            assert_eq!(
                key("indices/x/settings.json", false, &mut layout),
                Ok(Some("indices/x/settings.json".into())),
                "{first}"
            );
        }
    }

    #[test]
    fn paths_leaving_the_archive_are_refused() {
        for raw in ["/etc/passwd", "b1/../x", "../x", "b1/a\\b", "b1/c:d"] {
            let mut layout = Layout::Undecided;
            assert!(key(raw, false, &mut layout).is_err(), "{raw}");
        }
    }

    /// A manifest of one index with a settings file and a data file.
    fn sample() -> (Manifest, Vec<(String, Vec<u8>)>) {
        use crate::archive::manifest::{FileKind, IndexEntry};
        use sha2::Digest;
        let files: Vec<(String, Vec<u8>)> = vec![
            (
                "indices/logs/settings.json".into(),
                b"{\"index\":{}}".to_vec(),
            ),
            (
                "indices/logs/data-s000-00000.jsonl".into(),
                b"{\"_id\":\"1\",\"_source\":{}}\n{\"_id\":\"2\",\"_source\":{}}\n".to_vec(),
            ),
        ];
        let entry = |(path, bytes): &(String, Vec<u8>), kind, docs| FileEntry {
            kind,
            path: path.clone(),
            bytes: bytes.len() as u64,
            docs,
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
            slice: docs.map(|_| 0),
            encrypted: false,
        };
        let index = IndexEntry {
            name: "logs".into(),
            folder: "logs".into(),
            docs: 2,
            expected_docs: 2,
            slices: 1,
            files: vec![
                entry(&files[0], FileKind::Settings, None),
                entry(&files[1], FileKind::Data, Some(2)),
            ],
            data_stream: false,
        };
        (crate::archive::store::tests_manifest(index), files)
    }

    #[tokio::test]
    async fn a_tar_round_trips_through_a_store() {
        let (manifest, files) = sample();
        let source = Arc::new(MemoryStore::new());
        for (path, bytes) in &files {
            source
                .put(path, Bytes::from(bytes.clone()), PutMode::Create)
                .await
                .unwrap();
        }
        let manifest_bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
        let tar = write_tar(
            Vec::new(),
            "b1",
            source.as_ref(),
            &manifest,
            manifest_bytes.clone(),
        )
        .await
        .unwrap();
        let body = futures::stream::iter(
            tar.chunks(1000)
                .map(|c| Ok::<_, io::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        let target = Arc::new(MemoryStore::new());
        receive(target.clone(), body, u64::MAX).await.unwrap();
        assert_eq!(target.get(MANIFEST_FILE).await.unwrap(), manifest_bytes);
        for (path, bytes) in &files {
            assert_eq!(target.get(path).await.unwrap().as_ref(), &bytes[..]);
        }
        // One flipped byte of a file: refused, naming it, nothing kept.
        let first = &files[0].0;
        let mut tampered = tar.clone();
        let at = tar
            .windows(files[0].1.len())
            .position(|w| w == &files[0].1[..])
            .unwrap();
        tampered[at] ^= 1;
        let target = Arc::new(MemoryStore::new());
        let body = futures::stream::iter([Ok::<_, io::Error>(Bytes::from(tampered))]);
        let error = receive(target.clone(), body, u64::MAX).await.unwrap_err();
        assert!(error.to_string().starts_with(first.as_str()), "{error}");
        assert!(target.list("").await.unwrap().is_empty());
        // Over the maximum: too large, nothing kept.
        let body = futures::stream::iter([Ok::<_, io::Error>(Bytes::from(tar.clone()))]);
        let error = receive(target.clone(), body, 1000).await.unwrap_err();
        assert!(matches!(error, UploadError::TooLarge), "{error}");
        assert!(target.list("").await.unwrap().is_empty());
    }
}
