//! Reading the data lines of an archived index, chunk after chunk,
//! decompressing on the fly. Chunks are streamed from the archive's store
//! ([`ArchiveStore::read`]). Errors name the file and the line.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use crate::archive::compression::{decoding_reader, Compression};
use crate::archive::crypt::{decrypting, CryptError, Identities};
use crate::archive::hash::{HashingReader, ReadDigest};
use crate::archive::store::ArchiveStore;

/// Read buffer in front of each chunk file and each decoder.
const READ_BUFFER: usize = 256 * 1024;

/// Default longest line read from an archive (`--max-line-size`): the
/// servers' default `http.max_content_length` (100mb), past which no bulk
/// request could carry the document anyway. A longer line is refused when
/// the limit is reached, before the rest of it is read into memory: a
/// small chunk can decompress to a line of gigabytes.
pub const DEFAULT_MAX_LINE: u64 = 100 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: damaged: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error("{}: line {line}: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

/// One data file to read.
#[derive(Debug, Clone)]
pub struct ChunkFile {
    /// The store that holds it, and its key there.
    pub store: Arc<dyn ArchiveStore>,
    pub key: String,
    /// How messages name it ([`ArchiveStore::locate`]).
    pub path: PathBuf,
    /// Documents the manifest says it holds.
    pub docs: u64,
    /// Size and sha256 the manifest says it has, checked as it is read.
    pub digest: Option<ChunkDigest>,
    /// Longest line accepted, in bytes ([`DEFAULT_MAX_LINE`]).
    pub max_line: u64,
    /// An age file (archive format 5), decrypted with `identities` as it
    /// is read; the digest is that of the stored bytes.
    pub encrypted: bool,
    pub identities: Option<Identities>,
}

impl ChunkFile {
    /// The chunk `key` of `store`, holding `docs` documents, read with the
    /// default line limit.
    pub fn new(
        store: Arc<dyn ArchiveStore>,
        key: &str,
        docs: u64,
        digest: Option<ChunkDigest>,
    ) -> ChunkFile {
        ChunkFile {
            path: store.locate(key),
            store,
            key: key.to_string(),
            docs,
            digest,
            max_line: DEFAULT_MAX_LINE,
            encrypted: false,
            identities: None,
        }
    }

    /// Size and hex sha256 of the file as stored, read whole.
    pub async fn stored_digest(&self) -> std::io::Result<(u64, String)> {
        crate::archive::hash::object_digest(self.store.as_ref(), &self.key).await
    }
}

/// A data file's size and hex sha256, as the manifest records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkDigest {
    pub bytes: u64,
    pub sha256: String,
}

struct OpenFile {
    reader: Box<dyn AsyncBufRead + Unpin + Send>,
    path: PathBuf,
    line: u64,
    docs: u64,
    expected: u64,
    /// What was read of the file itself (before decompression), and what
    /// it must come to.
    seen: ReadDigest,
    digest: Option<ChunkDigest>,
    max_line: u64,
}

/// The lines of a list of chunk files, in order.
pub struct ChunkLines {
    files: VecDeque<ChunkFile>,
    open: Option<OpenFile>,
}

impl ChunkLines {
    pub fn new(files: Vec<ChunkFile>) -> ChunkLines {
        ChunkLines {
            files: files.into(),
            open: None,
        }
    }

    /// Reads the next line into `buf` (cleared first, newline removed).
    /// Returns `false` at the end of the last file. Each file must hold the
    /// number of documents the manifest says.
    pub async fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, ChunkError> {
        loop {
            if self.open.is_none() {
                let Some(next) = self.files.pop_front() else {
                    return Ok(false);
                };
                self.open = Some(open(next).await?);
            }
            let file = self.open.as_mut().expect("opened above");
            buf.clear();
            let n = read_line_bounded(&mut file.reader, buf, file.max_line)
                .await
                .map_err(|error| ChunkError::Io {
                    path: file.path.clone(),
                    error,
                })?;
            let Some(n) = n else {
                return Err(ChunkError::Malformed {
                    path: file.path.clone(),
                    line: file.line + 1,
                    reason: format!(
                        "longer than {} (--max-line-size): refused without reading the rest",
                        bytesize::ByteSize::b(file.max_line).display().iec()
                    ),
                });
            };
            if n == 0 {
                if let Some(expected) = &file.digest {
                    let (bytes, sha256) = file.seen.get();
                    if bytes != expected.bytes || sha256 != expected.sha256 {
                        return Err(ChunkError::Damaged {
                            path: file.path.clone(),
                            reason: if bytes != expected.bytes {
                                format!("{bytes} bytes, the manifest says {}", expected.bytes)
                            } else {
                                "its sha256 differs from the manifest's: the file was changed or damaged".into()
                            },
                        });
                    }
                }
                if file.docs != file.expected {
                    return Err(ChunkError::Malformed {
                        path: file.path.clone(),
                        line: file.line,
                        reason: format!(
                            "holds {} documents, the manifest says {}",
                            file.docs, file.expected
                        ),
                    });
                }
                self.open = None;
                continue;
            }
            file.line += 1;
            if buf.last() == Some(&b'\n') {
                buf.pop();
            } else {
                return Err(ChunkError::Malformed {
                    path: file.path.clone(),
                    line: file.line,
                    reason: "the last line is cut off (no newline): truncated file".into(),
                });
            }
            if buf.is_empty() {
                continue;
            }
            file.docs += 1;
            return Ok(true);
        }
    }

    /// The file and line of the line last returned, for error messages.
    pub fn position(&self) -> (PathBuf, u64) {
        match &self.open {
            Some(f) => (f.path.clone(), f.line),
            None => (PathBuf::new(), 0),
        }
    }
}

/// Like `read_until(b'\n')`, but stops once `buf` holds more than `max`
/// bytes without a newline: `None`, with the line's start in `buf` and the
/// rest unread. The newline itself does not count.
pub(crate) async fn read_line_bounded<R: AsyncBufRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: u64,
) -> std::io::Result<Option<usize>> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut read = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Some(read));
        }
        let (take, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let content = buf.len() + take - usize::from(done);
        if content > max {
            return Ok(None);
        }
        buf.extend_from_slice(&available[..take]);
        reader.consume(take);
        read += take;
        if done {
            return Ok(Some(read));
        }
    }
}

async fn open(file: ChunkFile) -> Result<OpenFile, ChunkError> {
    let handle = file
        .store
        .read(&file.key, 0)
        .await
        .map_err(|e| ChunkError::Io {
            path: file.path.clone(),
            error: e.into_io(),
        })?;
    let (hashed, seen) = HashingReader::new(handle);
    let raw = BufReader::with_capacity(READ_BUFFER, hashed);
    let name = file.key.rsplit('/').next().unwrap_or_default();
    let compression = Compression::from_file_name(name);
    let reader = if file.encrypted {
        // stored -> sha256 -> age -> decompression: the digest is of the
        // stored bytes, as the manifest records it.
        let crypt = |error: CryptError| ChunkError::Io {
            path: file.path.clone(),
            error: error.into(),
        };
        let identities = file
            .identities
            .as_ref()
            .ok_or_else(|| crypt(CryptError::IdentityNeeded))?;
        let plain = decrypting(raw, identities).await.map_err(crypt)?;
        decoding_reader(BufReader::with_capacity(READ_BUFFER, plain), compression)
    } else {
        decoding_reader(raw, compression)
    };
    Ok(OpenFile {
        reader,
        path: file.path,
        line: 0,
        docs: 0,
        expected: file.docs,
        seen,
        digest: file.digest,
        max_line: file.max_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_compression::tokio::write::ZstdEncoder;
    use tokio::io::AsyncWriteExt;

    /// A chunk file in a local folder.
    pub(super) fn local(path: &std::path::Path) -> ChunkFile {
        let store = Arc::new(crate::archive::store::LocalStore::new(
            path.parent().unwrap(),
        ));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        ChunkFile::new(store, &name, 0, None)
    }

    async fn zst(path: &std::path::Path, text: &[u8]) {
        let f = tokio::fs::File::create(path).await.unwrap();
        let mut e = ZstdEncoder::new(f);
        e.write_all(text).await.unwrap();
        e.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn reads_files_in_order_and_checks_counts() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl.zst");
        let b = dir.path().join("b.jsonl");
        zst(&a, b"1\n2\n").await;
        tokio::fs::write(&b, b"3\n").await.unwrap();
        let mut lines = ChunkLines::new(vec![
            ChunkFile {
                docs: 2,
                digest: None,
                max_line: DEFAULT_MAX_LINE,
                ..local(&a)
            },
            ChunkFile {
                docs: 1,
                digest: None,
                max_line: DEFAULT_MAX_LINE,
                ..local(&b)
            },
        ]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while lines.next_line(&mut buf).await.unwrap() {
            got.push(String::from_utf8(buf.clone()).unwrap());
        }
        assert_eq!(got, ["1", "2", "3"]);

        // A compressed file with fewer documents than the manifest says: both
        // of its lines, then an error naming it (never a clean end).
        let mut wrong = ChunkLines::new(vec![ChunkFile {
            docs: 3,
            digest: None,
            max_line: DEFAULT_MAX_LINE,
            ..local(&a)
        }]);
        let mut read = 0;
        let err = loop {
            match wrong.next_line(&mut buf).await {
                Ok(true) => read += 1,
                Ok(false) => panic!("a file short of the manifest's count was accepted"),
                Err(e) => break e,
            }
        };
        assert_eq!(read, 2);
        assert!(err.to_string().contains("a.jsonl.zst"), "{err}");
        assert!(
            err.to_string()
                .contains("holds 2 documents, the manifest says 3"),
            "{err}"
        );
        let mut wrong = ChunkLines::new(vec![ChunkFile {
            docs: 3,
            digest: None,
            max_line: DEFAULT_MAX_LINE,
            ..local(&b)
        }]);
        let err = loop {
            match wrong.next_line(&mut buf).await {
                Ok(true) => continue,
                Ok(false) => panic!("count mismatch not detected"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("the manifest says 3"), "{err}");
    }

    #[tokio::test]
    async fn truncated_zstd_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl.zst");
        zst(&a, &b"{\"_id\":\"x\",\"_source\":{}}\n".repeat(1000)).await;
        let bytes = tokio::fs::read(&a).await.unwrap();
        tokio::fs::write(&a, &bytes[..bytes.len() / 2])
            .await
            .unwrap();
        let err = truncation_error(&a, 1000).await;
        assert!(err.to_string().contains("a.jsonl.zst"), "{err}");
    }

    /// Reads the chunk `path` said to hold `docs` lines to its first error;
    /// panics if it reads to the end without one.
    async fn truncation_error(path: &std::path::Path, docs: u64) -> ChunkError {
        let mut lines = ChunkLines::new(vec![ChunkFile {
            docs,
            digest: None,
            max_line: DEFAULT_MAX_LINE,
            ..local(path)
        }]);
        let mut buf = Vec::new();
        loop {
            match lines.next_line(&mut buf).await {
                Ok(true) => continue,
                Ok(false) => panic!("truncation of {} not detected", path.display()),
                Err(e) => return e,
            }
        }
    }

    /// An lz4 chunk (the default) cut anywhere — mid-frame, or between two
    /// frames, where the documents read so far fall short of the count —
    /// is an error naming the file, never a short chunk taken as whole.
    #[tokio::test]
    async fn truncated_lz4_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl.lz4");
        let mut compressor = crate::sink::chunk::Lz4PageCompressor::new(1).unwrap();
        let mut whole = Vec::new();
        let mut first_frame = 0;
        for page in 0..2 {
            let lines = format!("{{\"_id\":\"p{page}\",\"_source\":{{}}}}\n").repeat(500);
            whole.extend_from_slice(compressor.compress(lines.as_bytes()).unwrap());
            if page == 0 {
                first_frame = whole.len();
            }
        }
        for cut in [whole.len() / 2 + 7, first_frame, whole.len() - 3] {
            tokio::fs::write(&a, &whole[..cut]).await.unwrap();
            let err = truncation_error(&a, 1000).await;
            assert!(err.to_string().contains("a.jsonl.lz4"), "{cut}: {err}");
        }
    }

    /// Regression: a 135 KB chunk holding one 4 GiB line (a zstd frame of
    /// one byte repeated) made `read_until` allocate the whole line.
    #[tokio::test]
    async fn a_line_longer_than_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl.zst");
        zst(&a, &vec![b'x'; 4 << 20]).await;
        let mut lines = ChunkLines::new(vec![ChunkFile {
            docs: 1,
            digest: None,
            max_line: 1 << 20,
            ..local(&a)
        }]);
        let mut buf = Vec::new();
        let err = lines.next_line(&mut buf).await.unwrap_err();
        assert!(err.to_string().contains("a.jsonl.zst: line 1"), "{err}");
        assert!(err.to_string().contains("--max-line-size"), "{err}");
        assert!(buf.len() <= (1 << 20) + READ_BUFFER, "{}", buf.len());
        // At the limit exactly, the line is read.
        let b = dir.path().join("b.jsonl");
        tokio::fs::write(&b, b"12345\n").await.unwrap();
        let mut lines = ChunkLines::new(vec![ChunkFile {
            docs: 1,
            digest: None,
            max_line: 5,
            ..local(&b)
        }]);
        assert!(lines.next_line(&mut buf).await.unwrap());
        assert_eq!(buf, b"12345");
    }
}

#[cfg(test)]
mod digest_tests {
    use super::tests::local;
    use super::*;

    async fn read_all(file: ChunkFile) -> Result<u64, ChunkError> {
        let mut lines = ChunkLines::new(vec![file]);
        let mut buf = Vec::new();
        let mut n = 0;
        while lines.next_line(&mut buf).await? {
            n += 1;
        }
        Ok(n)
    }

    /// A file whose lines are fine but whose bytes are not the ones the
    /// manifest recorded is refused once read to its end.
    #[tokio::test]
    async fn the_checksum_is_checked_while_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data-s000-00000.jsonl");
        let text =
            b"{\"_id\":\"1\",\"_source\":{\"n\":1}}\n{\"_id\":\"2\",\"_source\":{\"n\":2}}\n";
        tokio::fs::write(&path, text).await.unwrap();
        let (bytes, sha256) = local(&path).stored_digest().await.unwrap();
        let file = |digest| ChunkFile {
            docs: 2,
            digest,
            max_line: DEFAULT_MAX_LINE,
            ..local(&path)
        };
        let right = ChunkDigest { bytes, sha256 };
        assert_eq!(read_all(file(Some(right.clone()))).await.unwrap(), 2);
        // Same size, one digit changed: still two good lines.
        let changed = String::from_utf8_lossy(text).replace("\"n\":2", "\"n\":3");
        tokio::fs::write(&path, changed).await.unwrap();
        let err = read_all(file(Some(right.clone()))).await.unwrap_err();
        assert!(matches!(err, ChunkError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("sha256"), "{err}");
        assert_eq!(read_all(file(None)).await.unwrap(), 2);
    }
}
