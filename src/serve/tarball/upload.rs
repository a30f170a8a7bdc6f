//! An upload: a tar read from the request body into the archive's store,
//! checked against its manifest on the way (see [`super`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tar::EntryType;
use tokio_util::io::StreamReader;

use crate::archive::hash::HashingWriter;
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

/// Where entries are in the tar, decided by the first one.
pub(super) enum Layout {
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
        let copied = copy(entry, &mut writer).await;
        let (object, bytes, sha256) = writer.finish();
        if let Err(error) = copied {
            let _ = object.abort().await;
            return Err(match error {
                // The body ended or broke inside this file: name it.
                Copy::Read(e) => UploadError::Mismatch {
                    path: key.to_string(),
                    problem: format!("cut short in the request body: {e}"),
                },
                Copy::Write(e) => UploadError::Store(StoreError::io(self.store.locate(key), e)),
            });
        }
        object.commit().await.map_err(UploadError::Store)?;
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

/// Which side of a copy failed: the request body, or the store.
enum Copy {
    Read(io::Error),
    Write(io::Error),
}

/// Copies an entry into an upload, telling read errors (the client's)
/// from write errors (the store's).
async fn copy<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    from: &mut R,
    to: &mut W,
) -> Result<(), Copy> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = from.read(&mut buf).await.map_err(Copy::Read)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await.map_err(Copy::Write)?;
    }
}

/// The archive key of tar path `raw`, `None` for the top folder itself
/// (or `.`). The first entry decides the layout: a file at the root, or
/// anything under `cluster/` or `indices/`, means entries are at the root;
/// anything else names the top folder every entry must be under.
pub(super) fn archive_key(
    raw: &str,
    is_dir: bool,
    layout: &mut Layout,
) -> Result<Option<String>, String> {
    if raw.starts_with('/') {
        return Err("an absolute path is refused".into());
    }
    let mut parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
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
