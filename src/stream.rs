//! Pipes: `esark dump --output -` writes one index to stdout as an esark
//! stream, which `esark restore --input -` reads from stdin.
//!
//! # Stream format (version 1)
//!
//! A JSONL file (one JSON object per line, no compression) of three parts:
//!
//! ```text
//! {"esark_stream":{"version":1,"index":"logs","source":{"url":"http://a:9200/","cluster_name":"…","cluster_uuid":"…","flavor":"opensearch","version":"2.19.0"},"tool_version":"0.1.0","created_at":"2026-11-30T20:10:00.000Z"}}
//! {"_id":"1","_routing":null,"_source":{…}}
//! {"_id":"2","_routing":"r","_source":{…}}
//! {"esark_stream_end":{"docs":2}}
//! ```
//!
//! - the **header**, first: the format version, the index, the source
//!   cluster (its URL without credentials, name, uuid, flavor, version),
//!   the esark version and when the dump started. It is written once the
//!   index is selected, so a dump that fails before (unreachable source, no
//!   index matched) writes nothing at all;
//! - the **documents**, archive lines as in a chunk file;
//! - the **trailer**, last: how many documents were written. It is written
//!   only when every document was, so a dump that fails half way (the
//!   source is gone, a slice restart a pipe cannot take back, Ctrl-C)
//!   leaves a stream without one.
//!
//! Neither header nor trailer can be taken for a document: a document line
//! has `_id`, `_source` and nothing else at the top level.
//!
//! The reader ([`StreamReader`]) checks the header before the restore
//! touches the target, and at the end that the trailer is there, counts
//! the documents read, and is the last line. Documents read before a
//! missing or wrong trailer have been written by then (a pipe is read
//! once): the restore fails and says how many. A stream saved to a file
//! (`> FILE`) restores with `--input FILE`
//! ([`crate::source::foreign::esark_stream`]), checked whole before the
//! target is touched.
//!
//! The writer is the dump's ([`crate::dump::pipe`]): bytes written to a
//! pipe cannot be taken back, so it reads repeatable pages and fails
//! rather than write a document twice.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

use crate::archive::manifest::SourceCluster;

/// The stream format this esark writes and reads.
pub const STREAM_VERSION: u32 = 1;

/// The first line's key; the last line's is `esark_stream_end`.
const HEADER_KEY: &str = "esark_stream";

/// What the header says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamHeader {
    pub version: u32,
    /// The index (or data stream) dumped.
    pub index: String,
    pub source: SourceCluster,
    pub tool_version: String,
    /// RFC 3339, when the dump started.
    pub created_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderLine<T> {
    esark_stream: T,
}

/// What the trailer says.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamTrailer {
    pub docs: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrailerLine {
    esark_stream_end: StreamTrailer,
}

/// Why a stream on standard input is refused or incomplete.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("standard input is empty: no esark stream header (did the dump fail?); nothing was restored")]
    Empty,
    #[error("standard input does not start with an esark stream header ({0}): `restore --input -` reads what `esark dump --output -` writes (restore a file of documents with --input FILE); nothing was restored")]
    NoHeader(String),
    #[error("an esark stream of version {0}; this esark reads version {STREAM_VERSION}: upgrade esark; nothing was restored")]
    UnsupportedVersion(u64),
    #[error("reading the stream: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the stream ended without its trailer after {docs} documents: the dump did not finish"
    )]
    Truncated { docs: u64 },
    #[error("the stream's trailer counts {trailer} documents but {read} documents were read: the stream is damaged")]
    CountMismatch { trailer: u64, read: u64 },
    #[error("line {line}: a malformed stream trailer: {reason}")]
    BadTrailer { line: u64, reason: String },
    #[error("line {line}: a second stream header: two streams were joined")]
    SecondHeader { line: u64 },
    #[error("line {line}: data after the trailer: the stream must end with its trailer")]
    AfterTrailer { line: u64 },
    /// A plan's stream is loaded once; a second load finds it taken.
    #[error("standard input was already read")]
    AlreadyRead,
}

/// The header line (with its newline).
pub fn header_line(header: &StreamHeader) -> Vec<u8> {
    let mut line = serde_json::to_vec(&HeaderLine {
        esark_stream: header,
    })
    .expect("a header serializes");
    line.push(b'\n');
    line
}

/// The trailer line (with its newline).
pub fn trailer_line(docs: u64) -> Vec<u8> {
    let mut line = serde_json::to_vec(&TrailerLine {
        esark_stream_end: StreamTrailer { docs },
    })
    .expect("a trailer serializes");
    line.push(b'\n');
    line
}

/// Whether a line is a header or trailer rather than a document: its first
/// key is `esark_stream…`.
pub(crate) fn is_marker(line: &[u8]) -> bool {
    let rest = line.trim_ascii_start();
    let Some(rest) = rest.strip_prefix(b"{") else {
        return false;
    };
    rest.trim_ascii_start()
        .starts_with(format!("\"{HEADER_KEY}").as_bytes())
}

/// Whether a line is a stream header, of any version: how a stream saved
/// to a file is recognised.
pub fn is_header(line: &[u8]) -> bool {
    is_marker(line)
        && serde_json::from_slice::<HeaderLine<serde::de::IgnoredAny>>(line.trim_ascii()).is_ok()
}

/// Parses a first line: the header of a version this esark reads.
pub fn parse_header(line: &[u8]) -> Result<StreamHeader, StreamError> {
    let what = || {
        let shown = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
        StreamError::NoHeader(format!("the first line is {shown:?}"))
    };
    if !is_marker(line) {
        return Err(what());
    }
    // The version first, so a later version is named as such.
    let any: HeaderLine<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(line).map_err(|_| what())?;
    let version = any
        .esark_stream
        .get("version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| StreamError::NoHeader("the header has no version".into()))?;
    if version != u64::from(STREAM_VERSION) {
        return Err(StreamError::UnsupportedVersion(version));
    }
    let header: HeaderLine<StreamHeader> = serde_json::from_slice(line)
        .map_err(|e| StreamError::NoHeader(format!("a malformed header: {e}")))?;
    Ok(header.esark_stream)
}

/// Reads an esark stream: the header on [`StreamReader::open`], then the
/// document lines, checking the trailer at the end.
pub struct StreamReader {
    input: Box<dyn AsyncBufRead + Send + Unpin>,
    header: StreamHeader,
    /// Lines read, the header included.
    line: u64,
    /// Document lines handed out.
    docs: u64,
    /// The trailer was read (and its count matched).
    ended: bool,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("header", &self.header)
            .field("line", &self.line)
            .field("docs", &self.docs)
            .finish_non_exhaustive()
    }
}

impl StreamReader {
    /// Reads and checks the header (blank lines before it are skipped).
    pub async fn open(
        input: impl AsyncRead + Send + Unpin + 'static,
    ) -> Result<StreamReader, StreamError> {
        let mut input: Box<dyn AsyncBufRead + Send + Unpin> =
            Box::new(BufReader::with_capacity(1 << 20, input));
        let mut buf = Vec::new();
        let mut line = 0;
        loop {
            buf.clear();
            if input.read_until(b'\n', &mut buf).await? == 0 {
                return Err(StreamError::Empty);
            }
            line += 1;
            if !buf.trim_ascii().is_empty() {
                break;
            }
        }
        let header = parse_header(buf.trim_ascii())?;
        Ok(StreamReader {
            input,
            header,
            line,
            docs: 0,
            ended: false,
        })
    }

    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    /// The number of the last line read (1 is the header).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Reads the next document line into `buf` (without its newline);
    /// `false` at the end of a complete stream.
    pub async fn next_doc(&mut self, buf: &mut Vec<u8>) -> Result<bool, StreamError> {
        loop {
            buf.clear();
            if self.input.read_until(b'\n', buf).await? == 0 {
                return if self.ended {
                    Ok(false)
                } else {
                    Err(StreamError::Truncated { docs: self.docs })
                };
            }
            self.line += 1;
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if buf.trim_ascii().is_empty() {
                continue;
            }
            if self.ended {
                return Err(StreamError::AfterTrailer { line: self.line });
            }
            if !is_marker(buf) {
                self.docs += 1;
                return Ok(true);
            }
            self.read_trailer(buf)?;
        }
    }

    fn read_trailer(&mut self, line: &[u8]) -> Result<(), StreamError> {
        if is_header(line) {
            return Err(StreamError::SecondHeader { line: self.line });
        }
        let trailer: TrailerLine =
            serde_json::from_slice(line).map_err(|e| StreamError::BadTrailer {
                line: self.line,
                reason: e.to_string(),
            })?;
        let trailer = trailer.esark_stream_end;
        if trailer.docs != self.docs {
            return Err(StreamError::CountMismatch {
                trailer: trailer.docs,
                read: self.docs,
            });
        }
        self.ended = true;
        Ok(())
    }
}

/// The stream of `restore --input -`, its header already read; the load
/// takes it once (a pipe is read once). Cloned with the plan.
#[derive(Debug, Clone)]
pub struct StreamInput(Arc<Mutex<Option<StreamReader>>>);

impl StreamInput {
    pub fn new(reader: StreamReader) -> StreamInput {
        StreamInput(Arc::new(Mutex::new(Some(reader))))
    }

    /// The reader; `None` once taken.
    pub fn take(&self) -> Option<StreamReader> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::info::Flavor;

    fn header() -> StreamHeader {
        StreamHeader {
            version: STREAM_VERSION,
            index: "logs".into(),
            source: SourceCluster {
                url: "http://a:9200/".into(),
                cluster_name: "c".into(),
                cluster_uuid: "u".into(),
                flavor: Flavor::Opensearch,
                version: "2.19.0".into(),
            },
            tool_version: "0.1.0".into(),
            created_at: "2026-11-30T20:10:00.000Z".into(),
        }
    }

    const DOC: &str = r#"{"_id":"1","_routing":null,"_source":{"n":1}}"#;

    fn stream(lines: &[&str]) -> Vec<u8> {
        let mut out = header_line(&header());
        for l in lines {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Reads every document; the count, or the error.
    async fn read_all(bytes: Vec<u8>) -> Result<u64, StreamError> {
        let mut reader = StreamReader::open(std::io::Cursor::new(bytes)).await?;
        let mut buf = Vec::new();
        let mut n = 0;
        while reader.next_doc(&mut buf).await? {
            assert_eq!(buf, DOC.as_bytes());
            n += 1;
        }
        Ok(n)
    }

    #[test]
    fn header_and_trailer_are_one_json_line_each_and_not_documents() {
        let h = header_line(&header());
        assert_eq!(h.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(h.starts_with(b"{\"esark_stream\":{\"version\":1,"));
        assert_eq!(parse_header(h.trim_ascii()).unwrap(), header());
        assert_eq!(trailer_line(7), b"{\"esark_stream_end\":{\"docs\":7}}\n");
        assert!(is_marker(&h) && is_marker(&trailer_line(0)));
        assert!(is_header(&h) && !is_header(&trailer_line(0)));
        assert!(!is_marker(DOC.as_bytes()));
        assert!(crate::archive::line::parse_line(h.trim_ascii()).is_err());
        assert!(crate::archive::line::parse_line(trailer_line(1).trim_ascii()).is_err());
    }

    #[tokio::test]
    async fn a_complete_stream_reads_its_documents() {
        let trailer = String::from_utf8(trailer_line(2)).unwrap();
        assert_eq!(
            read_all(stream(&[DOC, "", DOC, trailer.trim()]))
                .await
                .unwrap(),
            2
        );
        let empty = String::from_utf8(trailer_line(0)).unwrap();
        assert_eq!(read_all(stream(&[empty.trim()])).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_bad_start_is_refused() {
        assert!(matches!(
            read_all(Vec::new()).await,
            Err(StreamError::Empty)
        ));
        assert!(matches!(
            read_all(b"\n\n".to_vec()).await,
            Err(StreamError::Empty)
        ));
        assert!(matches!(
            read_all(format!("{DOC}\n").into_bytes()).await,
            Err(StreamError::NoHeader(_))
        ));
        assert!(matches!(
            read_all(b"{\"esark_stream\":{\"version\":2}}\n".to_vec()).await,
            Err(StreamError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            read_all(b"{\"esark_stream\":{\"version\":1}}\n".to_vec()).await,
            Err(StreamError::NoHeader(_))
        ));
        assert!(matches!(
            read_all(b"not json\n".to_vec()).await,
            Err(StreamError::NoHeader(_))
        ));
    }

    #[tokio::test]
    async fn a_bad_end_fails_naming_the_count() {
        let e = read_all(stream(&[DOC, DOC])).await.unwrap_err();
        assert!(matches!(e, StreamError::Truncated { docs: 2 }), "{e}");
        assert!(e.to_string().contains("after 2 documents"), "{e}");
        let e = read_all(stream(&[DOC, r#"{"esark_stream_end":{"docs":3}}"#]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                StreamError::CountMismatch {
                    trailer: 3,
                    read: 1
                }
            ),
            "{e}"
        );
        let e = read_all(stream(&[DOC, r#"{"esark_stream_end":{"docs":1}}"#, DOC]))
            .await
            .unwrap_err();
        assert!(matches!(e, StreamError::AfterTrailer { line: 4 }), "{e}");
        let e = read_all(stream(&[DOC, r#"{"esark_stream_end":{"docs":"x"}}"#]))
            .await
            .unwrap_err();
        assert!(matches!(e, StreamError::BadTrailer { line: 3, .. }), "{e}");
        let h = String::from_utf8(header_line(&header())).unwrap();
        let e = read_all(stream(&[DOC, h.trim()])).await.unwrap_err();
        assert!(matches!(e, StreamError::SecondHeader { line: 3 }), "{e}");
    }
}
