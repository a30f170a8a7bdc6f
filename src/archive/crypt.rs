//! Encryption of an archive's files with age (archive format 5): every
//! file but `manifest.json` is an age file in the binary format,
//! encrypted to X25519 recipients (`age1…`) after compression, and read
//! back with identities (`AGE-SECRET-KEY-1…`).
//!
//! - Chunks are encrypted as they stream to the store: [`CryptWriter`]
//!   sits between the compressor and the checksum, so the manifest's
//!   sha256 and size are those of the stored (encrypted) bytes, and
//!   `inspect` proves an archive intact without the key. It hands age's
//!   synchronous encryptor at most [`STEP`] bytes per write and drains
//!   what comes out before taking more: memory stays one age chunk
//!   (64 KiB) whatever the file size. (age's own async writer gives no
//!   way back to the upload, which the chunk writer needs to commit.)
//! - Chunks are decrypted as they stream back: [`decrypting`] wraps the
//!   store's reader with age's async reader (64 KiB at a time).
//! - Small files (metadata JSON, the dump's checkpoint) are encrypted and
//!   decrypted whole: [`Recipients::seal`], [`Identities::open`].
//!
//! Only public keys are ever written (the manifest and the checkpoint
//! record the recipients); identities are read from their file and kept
//! in memory only.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use age::x25519;
use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use super::store::{
    ArchiveStore, LocalStore, ObjectMeta, ObjectReader, ObjectUpload, PutMode, StoreError,
    StoreFuture,
};

/// Plaintext handed to age per write: one age chunk.
const STEP: usize = 64 * 1024;

/// The scheme named in the manifest's `encryption`.
pub const SCHEME: &str = "age-x25519";

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("{what}: not an age X25519 recipient (age1…)")]
    BadRecipient { what: String },
    #[error("{}: line {line}: not an age X25519 identity (AGE-SECRET-KEY-1…)", path.display())]
    BadIdentity { path: PathBuf, line: usize },
    #[error("{}: no identity in the file", .0.display())]
    NoIdentity(PathBuf),
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("the archive is encrypted: pass --identity FILE (an age identity file)")]
    IdentityNeeded,
    #[error("the identity does not open this archive (encrypted to other keys)")]
    WrongIdentity,
    #[error("not a valid age file: {0}")]
    Damaged(String),
}

impl From<age::DecryptError> for CryptError {
    fn from(e: age::DecryptError) -> CryptError {
        match e {
            age::DecryptError::NoMatchingKeys => CryptError::WrongIdentity,
            other => CryptError::Damaged(other.to_string()),
        }
    }
}

impl From<CryptError> for io::Error {
    fn from(e: CryptError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }
}

/// The public keys a dump encrypts to.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<x25519::Recipient>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.to_strings()).finish()
    }
}

impl Recipients {
    /// The recipients given as keys (`--encrypt-to`) and in files
    /// (`--encrypt-to-file`: one a line, `#` comments and blank lines
    /// ignored); `None` when none is given.
    pub fn parse(keys: &[String], files: &[PathBuf]) -> Result<Option<Recipients>, CryptError> {
        let mut all = Vec::new();
        for key in keys {
            all.push(parse_recipient(key, key)?);
        }
        for path in files {
            let text = std::fs::read_to_string(path).map_err(|error| CryptError::Io {
                path: path.clone(),
                error,
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let what = format!("{}: line {}", path.display(), n + 1);
                all.push(parse_recipient(line, &what)?);
            }
        }
        Ok(Recipients::from_keys(all))
    }

    /// Recipients from their `age1…` strings (a checkpoint's).
    pub fn from_strings(keys: &[String]) -> Result<Option<Recipients>, CryptError> {
        let keys: Result<Vec<_>, _> = keys.iter().map(|k| parse_recipient(k, k)).collect();
        Ok(Recipients::from_keys(keys?))
    }

    fn from_keys(mut keys: Vec<x25519::Recipient>) -> Option<Recipients> {
        keys.sort_by_key(|k| k.to_string());
        keys.dedup_by_key(|k| k.to_string());
        (!keys.is_empty()).then_some(Recipients { keys })
    }

    /// The public keys, sorted: what the manifest and checkpoint record.
    pub fn to_strings(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.to_string()).collect()
    }

    fn encryptor(&self) -> age::Encryptor {
        age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
            .expect("X25519 recipients always combine")
    }

    /// `plain` as one age file.
    pub fn seal(&self, plain: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plain.len() + 256);
        let mut w = self.encryptor().wrap_output(&mut out)?;
        w.write_all(plain)?;
        w.finish()?;
        Ok(out)
    }
}

fn parse_recipient(text: &str, what: &str) -> Result<x25519::Recipient, CryptError> {
    x25519::Recipient::from_str(text.trim()).map_err(|_| CryptError::BadRecipient {
        what: what.to_string(),
    })
}

/// The private keys an archive is read with.
#[derive(Clone)]
pub struct Identities {
    keys: Arc<Vec<x25519::Identity>>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} keys)", self.keys.len())
    }
}

impl Identities {
    /// Reads an age identity file: `AGE-SECRET-KEY-1…` lines, `#`
    /// comments and blank lines (what `age-keygen` writes). Errors never
    /// quote the line.
    pub fn load(path: &Path) -> Result<Identities, CryptError> {
        let text = std::fs::read_to_string(path).map_err(|error| CryptError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(
                x25519::Identity::from_str(line).map_err(|_| CryptError::BadIdentity {
                    path: path.to_path_buf(),
                    line: n + 1,
                })?,
            );
        }
        if keys.is_empty() {
            return Err(CryptError::NoIdentity(path.to_path_buf()));
        }
        Ok(Identities {
            keys: Arc::new(keys),
        })
    }

    /// `--identity FILE` when given.
    pub fn load_given(path: Option<&Path>) -> Result<Option<Identities>, CryptError> {
        path.map(Identities::load).transpose()
    }

    fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k as &dyn age::Identity)
    }

    /// The plaintext of a whole age file.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptError> {
        let decryptor = age::Decryptor::new_buffered(sealed)?;
        let mut reader = decryptor.decrypt(self.iter())?;
        let mut plain = Vec::new();
        io::Read::read_to_end(&mut reader, &mut plain)
            .map_err(|e| CryptError::Damaged(e.to_string()))?;
        Ok(plain)
    }
}

/// The plaintext of the age file that `stored` yields, as it is read.
/// Fails at once, on the header, if no identity opens it.
pub async fn decrypting<R>(
    stored: R,
    identities: &Identities,
) -> Result<Box<dyn AsyncRead + Unpin + Send>, CryptError>
where
    R: AsyncBufRead + Unpin + Send + 'static,
{
    let decryptor = age::Decryptor::new_async_buffered(stored.compat()).await?;
    let reader = decryptor.decrypt_async(identities.iter())?;
    Ok(Box::new(reader.compat()))
}

/// age's encryptor writes its ciphertext here; [`CryptWriter`] drains it.
#[derive(Clone, Default)]
struct Pending(Arc<Mutex<Vec<u8>>>);

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum State {
    Plain,
    Open(age::stream::StreamWriter<Pending>),
    Finished,
}

/// A writer that encrypts what it is given into `inner` as one age file,
/// or passes it through unchanged (an unencrypted archive).
pub struct CryptWriter<W> {
    inner: W,
    state: State,
    pending: Pending,
    /// How much of `pending` already went to `inner`.
    sent: usize,
    /// Bytes taken from the writer's user (before encryption).
    accepted: u64,
}

impl<W: AsyncWrite + Unpin> CryptWriter<W> {
    pub fn plain(inner: W) -> CryptWriter<W> {
        CryptWriter {
            inner,
            state: State::Plain,
            pending: Pending::default(),
            sent: 0,
            accepted: 0,
        }
    }

    /// Encrypts to `recipients`, or passes through when `None`.
    pub fn new(inner: W, recipients: Option<&Recipients>) -> io::Result<CryptWriter<W>> {
        let Some(recipients) = recipients else {
            return Ok(CryptWriter::plain(inner));
        };
        let pending = Pending::default();
        // Writes the header into `pending`: it goes out with the first data.
        let stream = recipients.encryptor().wrap_output(pending.clone())?;
        Ok(CryptWriter {
            inner,
            state: State::Open(stream),
            pending,
            sent: 0,
            accepted: 0,
        })
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Bytes written into this writer so far, before encryption: what a
    /// chunk's `--file-size` is measured in (age holds up to 64 KiB before
    /// any of it reaches the inner writer; the stored file is larger by
    /// its header and 16 bytes per 64 KiB).
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// The inner writer, whatever is left unwritten: for an upload that is
    /// to be aborted.
    pub fn into_inner_unfinished(self) -> W {
        self.inner
    }

    /// Ends the age file, writes all of it to the inner writer and returns
    /// it (not shut down: the caller commits it).
    pub async fn finish(mut self) -> io::Result<W> {
        std::future::poll_fn(|cx| Pin::new(&mut self).poll_end(cx)).await?;
        Ok(self.inner)
    }

    /// Writes what age produced to `inner`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let chunk = {
                let mut pending = self.pending.0.lock().unwrap_or_else(|p| p.into_inner());
                if self.sent == pending.len() {
                    pending.clear();
                    self.sent = 0;
                    return Poll::Ready(Ok(()));
                }
                // Copied out so the lock is not held across the write.
                pending[self.sent..].to_vec()
            };
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &chunk))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
    }

    /// Ends the age file (once) and drains it.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let State::Open(_) = self.state {
            let State::Open(stream) = std::mem::replace(&mut self.state, State::Finished) else {
                unreachable!()
            };
            stream.finish()?;
        }
        self.poll_drain(cx)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CryptWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match &mut this.state {
            State::Plain => {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
                this.accepted += n as u64;
                Poll::Ready(Ok(n))
            }
            State::Finished => Poll::Ready(Err(io::Error::other("write after the end"))),
            State::Open(_) => {
                // What age produced for the last write goes out first, so
                // that no more than one step is ever held.
                ready!(this.poll_drain(cx))?;
                let State::Open(stream) = &mut this.state else {
                    unreachable!()
                };
                let step = buf.len().min(STEP);
                stream.write_all(&buf[..step])?;
                this.accepted += step as u64;
                Poll::Ready(Ok(step))
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_end(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A store whose [`ArchiveStore::put`] encrypts to `recipients` (every
/// other operation is the inner store's): for the small files written
/// whole through a store by code that knows nothing of encryption (the
/// dump's checkpoint).
#[derive(Debug)]
pub struct SealingStore {
    inner: Arc<dyn ArchiveStore>,
    recipients: Recipients,
}

impl SealingStore {
    pub fn new(inner: Arc<dyn ArchiveStore>, recipients: Recipients) -> SealingStore {
        SealingStore { inner, recipients }
    }
}

impl ArchiveStore for SealingStore {
    fn locate(&self, key: &str) -> PathBuf {
        self.inner.locate(key)
    }
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Bytes> {
        self.inner.get(key)
    }
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes, mode: PutMode) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let sealed = self
                .recipients
                .seal(&bytes)
                .map_err(|error| StoreError::io(self.locate(key), error))?;
            self.inner.put(key, Bytes::from(sealed), mode).await
        })
    }
    fn upload<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Box<dyn ObjectUpload>> {
        self.inner.upload(key)
    }
    fn read<'a>(&'a self, key: &'a str, offset: u64) -> StoreFuture<'a, ObjectReader> {
        self.inner.read(key, offset)
    }
    fn head<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ObjectMeta> {
        self.inner.head(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.inner.delete(key)
    }
    fn create_folder<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, ()> {
        self.inner.create_folder(prefix)
    }
    fn as_local(&self) -> Option<&LocalStore> {
        self.inner.as_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pair() -> (Recipients, Identities, tempfile::TempDir) {
        let id = x25519::Identity::generate();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        use age::secrecy::ExposeSecret;
        std::fs::write(
            &path,
            format!("# a comment\n\n{}\n", id.to_string().expose_secret()),
        )
        .unwrap();
        let r = Recipients::parse(&[id.to_public().to_string()], &[]).unwrap();
        (r.unwrap(), Identities::load(&path).unwrap(), dir)
    }

    #[tokio::test]
    async fn streams_round_trip_in_bounded_steps() {
        let (r, ids, _dir) = pair();
        let plain: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut w = CryptWriter::new(Vec::new(), Some(&r)).unwrap();
        w.write_all(&plain).await.unwrap();
        assert!(w.pending.0.lock().unwrap().len() <= STEP + 1024);
        let sealed = w.finish().await.unwrap();
        assert!(!sealed.windows(8).any(|s| s == &plain[4000..4008]));
        assert_eq!(ids.open(&sealed).unwrap(), plain);
        let mut out = Vec::new();
        decrypting(std::io::Cursor::new(sealed.clone()), &ids)
            .await
            .unwrap()
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, plain);
        // Another key is refused on the header.
        let (_, other, _d) = pair();
        assert!(matches!(
            other.open(&sealed),
            Err(CryptError::WrongIdentity)
        ));
        let e = decrypting(std::io::Cursor::new(sealed), &other).await;
        assert!(matches!(e, Err(CryptError::WrongIdentity)));
    }

    #[test]
    fn recipients_files_skip_comments_and_refuse_garbage() {
        let (r, _, dir) = pair();
        let file = dir.path().join("recipients.txt");
        let key = r.to_strings()[0].clone();
        std::fs::write(&file, format!("# team\n\n{key}\n")).unwrap();
        let parsed = Recipients::parse(std::slice::from_ref(&key), std::slice::from_ref(&file))
            .unwrap()
            .unwrap();
        assert_eq!(parsed.to_strings(), vec![key]);
        std::fs::write(&file, "age1nope\n").unwrap();
        let e = Recipients::parse(&[], &[file]).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(Recipients::parse(&[], &[]).unwrap().is_none());
    }
    /// An encrypted archive in a [`crate::archive::store::MemoryStore`]:
    /// every file but the manifest is an age file, the checksums are of
    /// the stored bytes, and the reader opens metadata and chunks (of
    /// every compression) with the identity, and only with it.
    #[tokio::test]
    async fn an_encrypted_archive_round_trips_through_any_store() {
        use crate::archive::compression::Compression;
        use crate::archive::manifest::{FileKind, IndexEntry};
        use crate::archive::store::MemoryStore;
        use crate::archive::writer::ArchiveWriter;
        use crate::sink::chunk::ChunkWriter;
        use crate::source::archive::ChunkLines;

        let (r, ids, _dir) = pair();
        let store: Arc<dyn ArchiveStore> = Arc::new(MemoryStore::new());
        let writer = ArchiveWriter::create_in(store.clone())
            .await
            .unwrap()
            .encrypt_to(Some(r.clone()));
        let mappings = serde_json::json!({"properties": {"zebrafield": {"type": "keyword"}}});
        let mut files = vec![writer
            .write_json("indices/logs/mappings.json", FileKind::Mappings, &mappings)
            .await
            .unwrap()];
        let lines: String = (0..500)
            .map(|n| format!("{{\"_id\":\"secret-{n}\",\"_source\":{{\"n\":{n}}}}}\n"))
            .collect();
        for (slice, compression) in [Compression::Zstd, Compression::Gzip, Compression::None]
            .into_iter()
            .enumerate()
        {
            let mut chunks = ChunkWriter::new(
                writer.clone(),
                "indices/logs",
                slice as u32,
                compression,
                1,
                1 << 30,
            );
            chunks.push(lines.as_bytes(), 500).await.unwrap();
            files.extend(chunks.finish().await.unwrap());
        }
        for f in &files {
            assert!(f.encrypted, "{}", f.path);
            let stored = store.get(&f.path).await.unwrap();
            assert!(stored.starts_with(b"age-encryption.org/v1\n"), "{}", f.path);
            assert_eq!(stored.len() as u64, f.bytes);
            let text = String::from_utf8_lossy(&stored);
            assert!(!text.contains("secret-") && !text.contains("zebrafield"));
        }
        let mut manifest = crate::archive::store::tests_manifest(IndexEntry {
            name: "logs".into(),
            folder: "indices/logs".into(),
            docs: 1500,
            expected_docs: 1500,
            slices: 3,
            files,
            data_stream: false,
        });
        manifest.format_version = crate::archive::Version::V5;
        manifest.encryption = Some(crate::archive::manifest::Encryption {
            scheme: SCHEME.into(),
            recipients: r.to_strings(),
        });
        writer.write_manifest(&manifest).await.unwrap();

        // Without a key: the checksums, and nothing else.
        let archive = crate::archive::reader::open_store(store.clone())
            .await
            .unwrap();
        assert!(archive
            .check_files(archive.manifest().files())
            .await
            .is_empty());
        let e = archive
            .reader()
            .check_identity()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("--identity"), "{e}");
        let (_, other, _d) = pair();
        let wrong = crate::archive::reader::open_store(store.clone())
            .await
            .unwrap()
            .with_identities(Some(other));
        let e = wrong
            .reader()
            .check_identity()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not open"), "{e}");

        let archive = archive.with_identities(Some(ids));
        archive.reader().check_identity().await.unwrap();
        let files = &archive.manifest().indices[0].files;
        let read = archive.reader().read(&files[0]).await.unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&read).unwrap(),
            mappings
        );
        let chunks = files[1..]
            .iter()
            .map(|f| {
                let mut chunk =
                    crate::source::archive::ChunkFile::new(store.clone(), &f.path, 500, None);
                chunk.encrypted = true;
                chunk.identities = archive.reader().identities().cloned();
                chunk
            })
            .collect();
        let mut lines_read = ChunkLines::new(chunks);
        let (mut buf, mut n) = (Vec::new(), 0);
        while lines_read.next_line(&mut buf).await.unwrap() {
            n += 1;
        }
        assert_eq!(n, 1500);
    }
}
