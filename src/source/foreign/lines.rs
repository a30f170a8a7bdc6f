//! Reading foreign files line by line, decompressing on the fly, and
//! turning each document into an archive line for the bulk stage.
//!
//! Compression is recognised by the file's first bytes, not its name:
//! `elasticdump --fsCompress --output=x.json` writes gzip into a file named
//! `.json`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::source::archive::{read_line_bounded, DEFAULT_MAX_LINE};

use super::{bulk, elasticdump, esark_stream, kourou, ForeignError, ForeignFile, LineFormat};
use crate::archive::compression::{decoding_reader, Compression};

/// Read buffer in front of each file.
const READ_BUFFER: usize = 256 * 1024;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Opens `path` for reading, through a decoder when its first bytes are a
/// gzip or zstd header.
pub(crate) async fn open_decoded(
    path: &Path,
) -> Result<Box<dyn AsyncBufRead + Unpin + Send>, ForeignError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ForeignError::io(path, e))?;
    let mut raw = BufReader::with_capacity(READ_BUFFER, file);
    let head = raw
        .fill_buf()
        .await
        .map_err(|e| ForeignError::io(path, e))?;
    let compression = if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    };
    Ok(decoding_reader(raw, compression))
}

/// The whole (decompressed) content of a small file: metadata files.
pub(crate) async fn read_all(path: &Path) -> Result<Vec<u8>, ForeignError> {
    let mut reader = open_decoded(path).await?;
    let mut out = Vec::new();
    reader
        .read_to_end(&mut out)
        .await
        .map_err(|e| ForeignError::io(path, e))?;
    Ok(out)
}

/// The non-blank lines of one file, without their line break (`\n` or
/// `\r\n`), numbered from 1 as in an editor.
/// A line longer than `max_line` is refused before it is read whole.
pub(crate) struct RawLines {
    reader: Box<dyn AsyncBufRead + Unpin + Send>,
    path: PathBuf,
    line: u64,
    max_line: u64,
}

impl RawLines {
    /// Opens `path` with the default cap ([`DEFAULT_MAX_LINE`]): planning,
    /// before `--max-line-size` is applied to the plan.
    pub(crate) async fn open(path: &Path) -> Result<RawLines, ForeignError> {
        RawLines::open_limited(path, DEFAULT_MAX_LINE).await
    }

    /// Opens `path`, refusing lines longer than `max_line` bytes.
    pub(crate) async fn open_limited(path: &Path, max_line: u64) -> Result<RawLines, ForeignError> {
        Ok(RawLines {
            reader: open_decoded(path).await?,
            path: path.to_path_buf(),
            line: 0,
            max_line,
        })
    }

    /// Reads the next non-blank line into `buf`; `false` at the end.
    pub(crate) async fn next(&mut self, buf: &mut Vec<u8>) -> Result<bool, ForeignError> {
        loop {
            buf.clear();
            let n = read_line_bounded(&mut self.reader, buf, self.max_line)
                .await
                .map_err(|e| ForeignError::io(&self.path, e))?;
            let Some(n) = n else {
                self.line += 1;
                return Err(self.malformed(format!(
                    "longer than {} (--max-line-size): refused without reading the rest",
                    bytesize::ByteSize::b(self.max_line).display().iec()
                )));
            };
            if n == 0 {
                return Ok(false);
            }
            self.line += 1;
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            if !buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(true);
            }
        }
    }

    /// The number of the line last read.
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// An error about the line last read.
    pub(crate) fn malformed(&self, reason: impl std::fmt::Display) -> ForeignError {
        ForeignError::Malformed {
            path: self.path.clone(),
            line: self.line,
            reason: reason.to_string(),
        }
    }
}

/// The documents of a list of foreign files, in order, as archive lines
/// (`{"_id":…,"_routing":…,"_source":…}`, no newline) that
/// [`crate::sink::bulk::BulkBuilder::push_line`] takes unchanged.
pub struct ForeignLines {
    files: VecDeque<ForeignFile>,
    open: Option<(RawLines, ForeignFile)>,
    /// The line read last (a bulk action line, when `next` is its source).
    raw: Vec<u8>,
    next: Vec<u8>,
}

impl ForeignLines {
    pub fn new(files: Vec<ForeignFile>) -> ForeignLines {
        ForeignLines {
            files: files.into(),
            open: None,
            raw: Vec::with_capacity(64 * 1024),
            next: Vec::new(),
        }
    }

    /// Writes the next document into `out` (cleared first) as an archive
    /// line. Returns `false` after the last document of the last file.
    pub async fn next_line(&mut self, out: &mut Vec<u8>) -> Result<bool, ForeignError> {
        loop {
            if self.open.is_none() {
                let Some(file) = self.files.pop_front() else {
                    return Ok(false);
                };
                let mut lines = RawLines::open_limited(&file.path, file.max_line).await?;
                if file.format == LineFormat::Kourou {
                    // The first line names the index and the collection.
                    if !lines.next(&mut self.raw).await? {
                        return Err(lines.malformed("empty file: no Kourou header line"));
                    }
                    kourou::parse_header(&self.raw).map_err(|r| lines.malformed(r))?;
                }
                if file.format == LineFormat::Stream {
                    // The header (checked whole when planning).
                    if !lines.next(&mut self.raw).await? {
                        return Err(lines.malformed("empty file: no esark stream header"));
                    }
                }
                self.open = Some((lines, file));
            }
            let (lines, file) = self.open.as_mut().expect("opened above");
            if !lines.next(&mut self.raw).await? {
                self.open = None;
                continue;
            }
            out.clear();
            let wanted = match file.format {
                LineFormat::Hit => {
                    let index =
                        elasticdump::convert_hit(&self.raw, out).map_err(|r| lines.malformed(r))?;
                    keep(file.only_index.as_deref(), index.as_deref())
                }
                LineFormat::Kourou => {
                    kourou::convert_doc(&self.raw, out).map_err(|r| lines.malformed(r))?;
                    true
                }
                LineFormat::Stream => {
                    esark_stream::convert_line(&self.raw, out).map_err(|r| lines.malformed(r))?
                }
                LineFormat::Bulk => {
                    bulk::check_action(&self.raw).map_err(|r| lines.malformed(r))?;
                    let action_line = lines.line();
                    if !lines.next(&mut self.next).await? {
                        return Err(ForeignError::Malformed {
                            path: file.path.clone(),
                            line: action_line,
                            reason: "the last action has no source line".into(),
                        });
                    }
                    let index = bulk::convert(&self.raw, &self.next, out)
                        .map_err(|r| lines.malformed(r))?;
                    keep(file.only_index.as_deref(), index.as_deref())
                }
            };
            if wanted {
                return Ok(true);
            }
        }
    }

    /// The file and line of the document last returned, for error messages.
    pub fn position(&self) -> (PathBuf, u64) {
        match &self.open {
            Some((lines, _)) => (lines.path().to_path_buf(), lines.line()),
            None => (PathBuf::new(), 0),
        }
    }
}

/// Whether a document of `index` belongs to the file's selection.
fn keep(only: Option<&str>, index: Option<&str>) -> bool {
    match only {
        None => true,
        Some(only) => index == Some(only),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_compression::tokio::write::GzipEncoder;
    use tokio::io::AsyncWriteExt;

    async fn all(files: Vec<ForeignFile>) -> Result<Vec<String>, ForeignError> {
        let mut lines = ForeignLines::new(files);
        let mut out = Vec::new();
        let mut got = Vec::new();
        while lines.next_line(&mut out).await? {
            got.push(String::from_utf8(out.clone()).unwrap());
        }
        Ok(got)
    }

    fn file(path: &Path, format: LineFormat, only: Option<&str>) -> ForeignFile {
        ForeignFile {
            path: path.to_path_buf(),
            format,
            only_index: only.map(str::to_string),
            docs: 0,
            max_line: DEFAULT_MAX_LINE,
        }
    }

    #[tokio::test]
    async fn gzip_is_recognised_by_content_and_crlf_and_blank_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("named-like-plain.json");
        let f = tokio::fs::File::create(&path).await.unwrap();
        let mut gz = GzipEncoder::new(f);
        gz.write_all(b"{\"_index\":\"a\",\"_id\":\"1\",\"_source\":{\"n\":9223372036854775807}}\r\n\r\n  \n{\"_index\":\"b\",\"_id\":\"2\",\"_source\":{}}")
            .await
            .unwrap();
        gz.shutdown().await.unwrap();
        let got = all(vec![file(&path, LineFormat::Hit, None)]).await.unwrap();
        assert_eq!(
            got,
            [
                r#"{"_id":"1","_source":{"n":9223372036854775807}}"#,
                r#"{"_id":"2","_source":{}}"#
            ]
        );
        let only_b = all(vec![file(&path, LineFormat::Hit, Some("b"))])
            .await
            .unwrap();
        assert_eq!(only_b, [r#"{"_id":"2","_source":{}}"#]);
    }

    #[tokio::test]
    async fn errors_name_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bulk.ndjson");
        tokio::fs::write(
            &path,
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n\n{\"index\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{\"x\":\n",
        )
        .await
        .unwrap();
        let err = all(vec![file(&path, LineFormat::Bulk, None)])
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bulk.ndjson: line 5:"), "{text}");
    }

    #[tokio::test]
    async fn kourou_files_start_with_their_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("documents.jsonl");
        tokio::fs::write(
            &path,
            "{\"type\":\"collection\",\"index\":\"i\",\"collection\":\"c\"}\n{\"_id\":\"a\",\"body\":{\"v\":-9007199254740993}}\n",
        )
        .await
        .unwrap();
        let got = all(vec![file(&path, LineFormat::Kourou, None)])
            .await
            .unwrap();
        assert_eq!(got, [r#"{"_id":"a","_source":{"v":-9007199254740993}}"#]);
        tokio::fs::write(&path, "{\"_id\":\"a\",\"body\":{}}\n")
            .await
            .unwrap();
        let err = all(vec![file(&path, LineFormat::Kourou, None)])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("line 1:"), "{err}");
    }
}
