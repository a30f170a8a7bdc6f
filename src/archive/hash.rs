//! Checksums: a writer that hashes and counts what passes through it, a
//! reader that does the same, and a streaming sha256 of an object of an
//! archive's store.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// Wraps a writer; every byte written is fed to sha256 and counted, so a
/// chunk's checksum costs no second read of the file.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner writer, the byte count and the hex digest.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for HashingWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.hasher.update(&buf[..n]);
                this.bytes += n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a [`HashingReader`] has seen so far, shared with whoever checks it.
#[derive(Clone, Default)]
pub struct ReadDigest(std::sync::Arc<std::sync::Mutex<(Sha256, u64)>>);

impl ReadDigest {
    /// Bytes read so far and the hex sha256 of them.
    pub fn get(&self) -> (u64, String) {
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (guard.1, hex::encode(guard.0.clone().finalize()))
    }
}

/// Wraps a reader; every byte read is fed to sha256 and counted, so that
/// the pass that reads a file's lines proves its checksum too, without a
/// read of its own.
pub struct HashingReader<R> {
    inner: R,
    seen: ReadDigest,
}

impl<R> HashingReader<R> {
    /// The reader, and the handle to ask what it has read.
    pub fn new(inner: R) -> (HashingReader<R>, ReadDigest) {
        let seen = ReadDigest::default();
        (
            HashingReader {
                inner,
                seen: seen.clone(),
            },
            seen,
        )
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                let mut guard = this.seen.0.lock().unwrap_or_else(|p| p.into_inner());
                guard.0.update(new);
                guard.1 += new.len() as u64;
            }
        }
        poll
    }
}

/// Size and hex sha256 of an object of a store, read in 256 KiB blocks.
/// Errors carry no name (the caller's message has it).
pub async fn object_digest(
    store: &dyn super::store::ArchiveStore,
    key: &str,
) -> io::Result<(u64, String)> {
    let mut reader = store.read(key, 0).await.map_err(|e| e.into_io())?;
    reader_digest(&mut reader).await
}

/// Size and hex sha256 of everything a reader yields.
pub async fn reader_digest<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn hashes_what_passes_through() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").await.unwrap();
        w.write_all(b"world").await.unwrap();
        let (inner, bytes, digest) = w.finish();
        assert_eq!(inner, b"hello world");
        assert_eq!(bytes, 11);
        assert_eq!(
            digest,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let (n, d) = reader_digest(&mut &b"hello world"[..]).await.unwrap();
        assert_eq!((n, d.as_str()), (11, digest.as_str()));
        let (mut reader, seen) = HashingReader::new(&b"hello world"[..]);
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut out)
            .await
            .unwrap();
        assert_eq!(seen.get(), (11, digest));
    }
}
