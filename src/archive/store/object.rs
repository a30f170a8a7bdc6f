//! [`ObjectArchiveStore`]: an archive under a prefix of an S3, GCS or Azure
//! bucket, through the `object_store` crate (multipart uploads, conditional
//! puts, ranged reads, retries with backoff).
//!
//! - Chunks stream as multipart uploads while they are written
//!   ([`object_store::buffered::BufWriter`]): at most [`PART_SIZE`] bytes
//!   buffered and [`PARTS_IN_FLIGHT`] parts uploading, whatever
//!   `--file-size`, so memory stays bounded. An upload that is aborted or
//!   dropped before its commit is aborted on the server: nothing appears
//!   under the name, and no parts are left stored. A dropped one is
//!   aborted by a spawned task, which [`ArchiveStore::settle`] waits for
//!   (the end of the process would cut it short).
//! - The manifest is put with [`PutMode::Create`]: `If-None-Match: *` on S3
//!   (supported by AWS since 2024, and by MinIO, R2, Ceph), a generation
//!   precondition on GCS, `If-None-Match` on Azure. Of two dumps into one
//!   prefix, only one can commit.
//! - Reads stream from an offset with a ranged GET.
//!
//! Credentials come from the standard places and are never printed: S3
//! from esark's own AWS chain ([`crate::aws`]: environment, then
//! `AWS_PROFILE`'s shared files), kept fresh by its
//! [`CredentialCache`]; the endpoint from `AWS_ENDPOINT_URL_S3` or
//! `AWS_ENDPOINT_URL` (MinIO, Ceph, R2, …; plain http allowed for an http
//! endpoint). GCS and Azure read their usual variables
//! (`GOOGLE_APPLICATION_CREDENTIALS`; `AZURE_STORAGE_ACCOUNT_NAME` with
//! `AZURE_STORAGE_ACCOUNT_KEY` or a SAS).

use std::fmt;
use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AwsCredential, S3ConditionalPut};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::buffered::BufWriter;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::{Path, PathPart};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::{
    ArchiveStore, ObjectMeta, ObjectReader, ObjectUpload, PutMode, StoreError, StoreFuture,
};
use crate::aws::cache::CredentialCache;
use crate::aws::AwsEnv;

/// Bytes buffered before a part is sent; also the size of every part but
/// the last (S3's minimum is 5 MiB). 10,000 parts of it make 80 GiB, far
/// above any sensible `--file-size`.
pub const PART_SIZE: usize = 8 << 20;
/// Parts uploading at once per chunk: with [`PART_SIZE`], at most about
/// 40 MiB per chunk being written.
pub const PARTS_IN_FLIGHT: usize = 4;
/// How long [`ArchiveStore::settle`] waits for the aborts of dropped
/// uploads: each is one request, retried if the server fails.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The aborts of uploads dropped unfinished, spawned by their `Drop`.
type PendingAborts = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// The object storage services esark serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Amazon S3 and S3-compatible servers (`s3://`).
    S3,
    /// Google Cloud Storage (`gs://`).
    Gcs,
    /// Azure Blob Storage (`az://`).
    Azure,
}

impl Service {
    /// The URL scheme that names it.
    pub fn scheme(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::Gcs => "gs",
            Service::Azure => "az",
        }
    }
}

/// An archive on object storage: a bucket (an Azure container) and the
/// prefix under which its objects are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLocation {
    pub service: Service,
    pub bucket: String,
    /// `/`-separated, without leading or trailing `/`; `""` is the bucket's
    /// root.
    pub prefix: String,
}

impl fmt::Display for ObjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.service.scheme(), self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// An archive under `PREFIX` of a bucket.
#[derive(Debug)]
pub struct ObjectArchiveStore {
    store: Arc<dyn ObjectStore>,
    location: ObjectLocation,
    /// Shared with every upload, which adds its abort when dropped
    /// unfinished; [`ArchiveStore::settle`] waits for them.
    aborts: PendingAborts,
}

impl ObjectArchiveStore {
    /// Connects to the bucket of `location` with the credentials of the
    /// environment; missing credentials are an error here, before any
    /// work. Nothing is requested from the server yet.
    pub async fn open(location: &ObjectLocation) -> Result<ObjectArchiveStore, StoreError> {
        // reqwest 0.13 (under object_store) takes the process's rustls
        // provider; ring is the one compiled in (see Cargo.toml).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fail = |reason: String| StoreError::Io {
            object: PathBuf::from(location.to_string()),
            error: io::Error::other(reason),
        };
        let store: Arc<dyn ObjectStore> = match location.service {
            Service::S3 => Arc::new(
                s3_builder(&location.bucket, AwsEnv::from_process())
                    .await
                    .map_err(fail)?
                    .build()
                    .map_err(|e| fail(one_line(&e.to_string())))?,
            ),
            Service::Gcs => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&location.bucket)
                    .build()
                    .map_err(|e| fail(one_line(&e.to_string())))?,
            ),
            Service::Azure => Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_container_name(&location.bucket)
                    .build()
                    .map_err(|e| fail(one_line(&e.to_string())))?,
            ),
        };
        Ok(ObjectArchiveStore {
            store,
            location: location.clone(),
            aborts: PendingAborts::default(),
        })
    }

    /// The object path of an archive key.
    fn path(&self, key: &str) -> Path {
        let prefix = self.location.prefix.split('/');
        prefix
            .chain(key.split('/'))
            .filter(|p| !p.is_empty())
            .map(PathPart::from)
            .collect()
    }

    /// The archive key of an object path under the prefix.
    fn key(&self, path: &Path) -> Option<String> {
        let root = self.path("");
        let parts: Vec<String> = path
            .prefix_match(&root)?
            .map(|p| p.as_ref().to_string())
            .collect();
        Some(parts.join("/"))
    }

    fn error(&self, key: &str, e: object_store::Error) -> StoreError {
        let object = self.locate(key);
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                object,
                error: io::Error::new(io::ErrorKind::NotFound, "no such object"),
            },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => StoreError::AlreadyExists { object },
            other => StoreError::Io {
                object,
                error: io::Error::other(explain(&self.location.bucket, &other.to_string())),
            },
        }
    }
}

/// The S3 builder: esark's credential chain, the region and the endpoint
/// of the environment, conditional puts with `If-None-Match`.
async fn s3_builder(bucket: &str, env: AwsEnv) -> Result<AmazonS3Builder, String> {
    let region = crate::aws::credentials::resolve_region(&env)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| "us-east-1".to_string());
    // The AWS SDKs' variables; blank counts as unset, as there.
    let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty());
    let cache = CredentialCache::load(env, &region)
        .await
        .map_err(|e| e.to_string())?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region)
        .with_credentials(Arc::new(ChainCredentials(cache)))
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    Ok(builder)
}

/// esark's AWS credential chain, as object_store asks for credentials.
#[derive(Debug)]
struct ChainCredentials(CredentialCache);

#[async_trait::async_trait]
impl object_store::CredentialProvider for ChainCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let c = self
            .0
            .get()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        }))
    }
}

/// An object_store error as one line saying the cause: the S3 error code
/// when the server gave one (`NoSuchBucket`, `InvalidAccessKeyId`, …).
fn explain(bucket: &str, message: &str) -> String {
    let code = message
        .split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next());
    match code {
        Some("NoSuchBucket") => format!("bucket {bucket:?} does not exist (NoSuchBucket)"),
        Some(code @ ("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied")) => {
            format!("access to bucket {bucket:?} refused ({code}): check the credentials")
        }
        Some(code) => format!("request to bucket {bucket:?} refused ({code})"),
        None => one_line(message),
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl ArchiveStore for ObjectArchiveStore {
    fn locate(&self, key: &str) -> PathBuf {
        let mut url = self.location.to_string();
        for part in key.split('/').filter(|p| !p.is_empty()) {
            url.push('/');
            url.push_str(part);
        }
        PathBuf::from(url)
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Bytes> {
        Box::pin(async move {
            let result = self.store.get(&self.path(key)).await;
            let result = result.map_err(|e| self.error(key, e))?;
            result.bytes().await.map_err(|e| self.error(key, e))
        })
    }

    fn put<'a>(&'a self, key: &'a str, bytes: Bytes, mode: PutMode) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mode = match mode {
                PutMode::Overwrite => object_store::PutMode::Overwrite,
                PutMode::Create => object_store::PutMode::Create,
            };
            self.store
                .put_opts(
                    &self.path(key),
                    PutPayload::from(bytes),
                    PutOptions::from(mode),
                )
                .await
                .map(|_| ())
                .map_err(|e| self.error(key, e))
        })
    }

    fn upload<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Box<dyn ObjectUpload>> {
        Box::pin(async move {
            let writer = BufWriter::with_capacity(self.store.clone(), self.path(key), PART_SIZE)
                .with_max_concurrency(PARTS_IN_FLIGHT);
            Ok(Box::new(ObjectStoreUpload {
                writer: Some(writer),
                location: self.locate(key),
                aborts: self.aborts.clone(),
            }) as Box<dyn ObjectUpload>)
        })
    }

    fn read<'a>(&'a self, key: &'a str, offset: u64) -> StoreFuture<'a, ObjectReader> {
        Box::pin(async move {
            let options = GetOptions {
                range: (offset > 0).then_some(GetRange::Offset(offset)),
                ..GetOptions::default()
            };
            let result = self
                .store
                .get_opts(&self.path(key), options)
                .await
                .map_err(|e| self.error(key, e))?;
            let stream = result.into_stream().map_err(io::Error::other);
            Ok(Box::new(tokio_util::io::StreamReader::new(stream)) as ObjectReader)
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ObjectMeta> {
        Box::pin(async move {
            let meta = self
                .store
                .head(&self.path(key))
                .await
                .map_err(|e| self.error(key, e))?;
            Ok(ObjectMeta {
                key: key.to_string(),
                size: meta.size,
            })
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<ObjectMeta>> {
        Box::pin(async move {
            let under = self.path(prefix);
            let mut listed = self.store.list(Some(&under));
            let mut found = Vec::new();
            while let Some(meta) = listed.next().await {
                let meta = meta.map_err(|e| self.error(prefix, e))?;
                if let Some(key) = self.key(&meta.location) {
                    found.push(ObjectMeta {
                        key,
                        size: meta.size,
                    });
                }
            }
            found.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(found)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            match self.store.delete(&self.path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.error(key, e)),
            }
        })
    }

    fn create_folder<'a>(&'a self, _prefix: &'a str) -> StoreFuture<'a, ()> {
        // Object storage has no folders.
        Box::pin(async { Ok(()) })
    }

    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let pending: Vec<JoinHandle<()>> = {
                let mut aborts = self.aborts.lock().unwrap_or_else(|p| p.into_inner());
                aborts.drain(..).collect()
            };
            let all = futures::future::join_all(pending);
            // An abort that does not get through in time leaves its parts
            // to the bucket's lifecycle rule; the run's outcome stands.
            let _ = tokio::time::timeout(SETTLE_TIMEOUT, all).await;
        })
    }
}

/// A chunk streaming to a multipart upload.
struct ObjectStoreUpload {
    /// `None` once committed or aborted.
    writer: Option<BufWriter>,
    location: PathBuf,
    /// Where a drop unfinished leaves its abort, for
    /// [`ArchiveStore::settle`].
    aborts: PendingAborts,
}

/// Aborts the multipart upload of `writer`, if it started one. One being
/// started (its create request in flight) is finished first: aborting
/// only what is already started would leave it open.
async fn abort_writer(writer: &mut BufWriter) -> object_store::Result<()> {
    writer
        .flush()
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "object storage",
            source: Box::new(e),
        })?;
    writer.abort().await
}

impl ObjectStoreUpload {
    fn writer(&mut self) -> io::Result<&mut BufWriter> {
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::other("upload already finished"))
    }
}

impl AsyncWrite for ObjectStoreUpload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.writer()?).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.writer()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Completing the upload publishes the object: only commit does
        // (a compressor shuts its output down when it ends its frame).
        Pin::new(self.writer()?).poll_flush(cx)
    }
}

impl ObjectUpload for ObjectStoreUpload {
    fn location(&self) -> &FsPath {
        &self.location
    }

    fn commit(mut self: Box<Self>) -> StoreFuture<'static, ()> {
        Box::pin(async move {
            let location = self.location.clone();
            let mut writer = self.writer.take().ok_or_else(|| StoreError::Io {
                object: location.clone(),
                error: io::Error::other("upload already finished"),
            })?;
            writer
                .shutdown()
                .await
                .map_err(|e| StoreError::io(location, io::Error::other(one_line(&e.to_string()))))
        })
    }

    fn abort(mut self: Box<Self>) -> StoreFuture<'static, ()> {
        Box::pin(async move {
            let location = self.location.clone();
            match self.writer.take() {
                Some(mut writer) => abort_writer(&mut writer).await.map_err(|e| {
                    StoreError::io(location, io::Error::other(one_line(&e.to_string())))
                }),
                None => Ok(()),
            }
        })
    }
}

impl Drop for ObjectStoreUpload {
    /// An upload dropped unfinished (a failed or cancelled chunk) is
    /// aborted, so that its parts are not left billed on the server.
    fn drop(&mut self) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let abort = runtime.spawn(async move {
                let _ = abort_writer(&mut writer).await;
            });
            let mut aborts = self.aborts.lock().unwrap_or_else(|p| p.into_inner());
            aborts.retain(|a| !a.is_finished());
            aborts.push(abort);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_become_one_line_naming_the_bucket_and_cause() {
        let cases = [
            (
                "Client error with status 404: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code></Error>",
                "bucket \"bars\" does not exist (NoSuchBucket)",
            ),
            (
                "status 403: <Error><Code>InvalidAccessKeyId</Code><Message>x</Message></Error>",
                "access to bucket \"bars\" refused (InvalidAccessKeyId): check the credentials",
            ),
            (
                "status 400: <Error><Code>SlowDown</Code></Error>",
                "request to bucket \"bars\" refused (SlowDown)",
            ),
            ("error sending\n  request", "error sending request"),
        ];
        for (message, expected) in cases {
            assert_eq!(explain("bars", message), expected);
        }
    }
}
