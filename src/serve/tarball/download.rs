//! A download: an archive's files and then its manifest, as a tar
//! written into the response body (see [`super`]).

use std::io;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tar::{Builder, EntryType, Header};
use tokio_util::io::ReaderStream;

use crate::archive::hash::HashingReader;
use crate::archive::manifest::Manifest;
use crate::archive::store::{ArchiveStore, StoreError};
use crate::archive::MANIFEST_FILE;

/// Why a download stopped half way.
#[derive(Debug, thiserror::Error)]
pub(super) enum DownloadError {
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
pub(super) async fn write_tar<W: AsyncWrite + Unpin + Send + 'static>(
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
