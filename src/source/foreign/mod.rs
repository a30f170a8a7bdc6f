//! Dumps written by other tools, restored like an archive: detection, what
//! they hold ([`read`]; the restore makes a plan of it), and a line reader
//! ([`ForeignLines`]) that turns each of their documents into an archive
//! line (`{"_id":…,"_routing":…,"_source":…}`) for the unchanged bulk stage.
//!
//! | input | module | target index |
//! |---|---|---|
//! | multielasticdump folder (`<index>.json`, `.mapping.json`, …) | [`elasticdump`] | the file name's index |
//! | elasticdump `--type=data` file (one hit per line) | [`elasticdump`] | each hit's `_index`, or `--index` |
//! | Kourou `index:export` folder (`<index>/<collection>/documents.jsonl`) | [`kourou`] | `<index>.<collection>` |
//! | bulk NDJSON file (action line + source line) | [`bulk`] | each action's `_index`, or `--index` |
//! | esark stream saved to a file (`esark dump --output - > FILE`) | [`esark_stream`] | the header's index, or `--index` |
//!
//! Files may be gzip or zstd compressed (recognised by content). A
//! document's `_source` is never parsed into a value: it is borrowed as a
//! [`RawValue`] and copied byte for byte, so big integers and key order
//! survive exactly as the file holds them. Restore's validation pass reads
//! every line through the same conversion before anything is written.

pub mod bulk;
pub mod elasticdump;
pub mod esark_stream;
pub mod kourou;
pub mod lines;

use std::path::{Path, PathBuf};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::archive::line::push_line;
use crate::catalog::IndexMetadata;

pub use lines::ForeignLines;

#[derive(Debug, thiserror::Error)]
pub enum ForeignError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: line {line}: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error(
        "{}: neither an esark archive (no manifest.json) nor a dump esark can import \
         (a multielasticdump folder, an elasticdump data file, a Kourou export, \
         a bulk NDJSON file or a saved esark stream)",
        .0.display()
    )]
    Unrecognized(PathBuf),
    #[error(
        "--index {name:?} names one target index, but the input holds {}: {}; \
         pick one with --match, or use --rename",
        found.len(),
        found.join(", ")
    )]
    AmbiguousIndex { name: String, found: Vec<String> },
}

/// What is wrong with one line of a foreign dump (the caller names the
/// file and the line).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Not the JSON line the format has here; `expected` says which.
    #[error("{expected}: {}", line_error(.error))]
    NotJson {
        expected: &'static str,
        error: serde_json::Error,
    },
    /// `_id` is an object, an array or another non-string.
    #[error("\"_id\" is {0}, not a string")]
    IdNotString(&'static str),
    #[error("the routing is {0}, not a string")]
    RoutingNotString(&'static str),
    #[error("the document's source is not an object")]
    SourceNotObject,
    #[error("no \"_source\" (dumped with --sourceOnly, or _source disabled?)")]
    NoSource,
    #[error("the action has no \"_id\" (esark restores documents by id)")]
    NoId,
    #[error(
        "not a bulk action line: expected one of \"index\", \"create\", \"delete\", \"update\""
    )]
    NotOneAction,
    /// A `delete` or `update` action: operations, not documents.
    #[error(
        "a {0:?} action: esark restores documents, not operations; only \"index\" and \
         \"create\" actions can be imported (remove the {0} actions first)"
    )]
    Operation(&'static str),
    #[error("not a Kourou header line: \"type\" is {0:?}, not \"collection\"")]
    NotKourouHeader(String),
}

impl ConvertError {
    pub(crate) fn not_json(expected: &'static str) -> impl Fn(serde_json::Error) -> ConvertError {
        move |error| ConvertError::NotJson { expected, error }
    }
}

impl ForeignError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> ForeignError {
        ForeignError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// What kind of foreign dump an input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignKind {
    /// A folder written by `multielasticdump --direction=dump`.
    ElasticdumpFolder,
    /// One file written by `elasticdump --type=data`.
    ElasticdumpFile,
    /// A Kourou export: the folder, an index or collection folder, or one
    /// `documents.jsonl`.
    Kourou,
    /// One `_bulk` NDJSON file.
    Bulk,
    /// The output of `esark dump --output -`, saved to a file.
    EsarkStream,
}

impl std::fmt::Display for ForeignKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ForeignKind::ElasticdumpFolder => "a multielasticdump folder",
            ForeignKind::ElasticdumpFile => "an elasticdump data file",
            ForeignKind::Kourou => "a Kourou export",
            ForeignKind::Bulk => "a bulk NDJSON file",
            ForeignKind::EsarkStream => "a saved esark stream (dump --output -)",
        })
    }
}

/// How the lines of a foreign file hold documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// One elasticdump hit per line.
    Hit,
    /// A Kourou header line, then `{"_id":…,"body":…}` per line.
    Kourou,
    /// Bulk action and source lines.
    Bulk,
    /// An esark stream: a header line, archive lines, a trailer line.
    Stream,
}

/// One foreign file holding documents of an index.
#[derive(Debug, Clone)]
pub struct ForeignFile {
    pub path: PathBuf,
    pub format: LineFormat,
    /// Only the documents of this `_index` (a file holding several
    /// indices is read once per index); `None`: all of them.
    pub only_index: Option<String>,
    /// Documents counted when planning.
    pub docs: u64,
    /// Longest line accepted, in bytes (`--max-line-size`, applied to the
    /// plan by [`crate::plan::input::limit_lines`]).
    pub max_line: u64,
}

/// One index found in a foreign dump.
#[derive(Debug, Clone)]
pub struct ForeignIndex {
    pub name: String,
    pub docs: u64,
    pub meta: IndexMetadata,
    pub files: Vec<ForeignFile>,
}

/// Metadata of an index whose dump carries none: the target infers the
/// mappings and uses its default settings.
pub(crate) fn empty_meta() -> IndexMetadata {
    IndexMetadata {
        settings: Value::Object(Map::new()),
        mappings: Value::Object(Map::new()),
        aliases: Value::Object(Map::new()),
    }
}

/// Appends one document as an archive line (without its newline). `id`
/// must be a JSON string (an integer is quoted: some bulk files carry
/// numeric ids), `routing` a string or null, `source` an object.
pub(crate) fn push_doc(
    out: &mut Vec<u8>,
    id: &RawValue,
    routing: Option<&RawValue>,
    source: &RawValue,
) -> Result<(), ConvertError> {
    let id = as_string(id).map_err(ConvertError::IdNotString)?;
    let routing = match routing {
        Some(r) if r.get() == "null" => None,
        Some(r) => Some(as_string(r).map_err(ConvertError::RoutingNotString)?),
        None => None,
    };
    if !source.get().starts_with('{') {
        return Err(ConvertError::SourceNotObject);
    }
    push_line(
        out,
        id.get().as_bytes(),
        routing.as_deref().map(|r| r.get().as_bytes()),
        source.get().as_bytes(),
    );
    out.pop();
    Ok(())
}

/// A JSON error inside one line: serde's message without its "at line 1
/// column N" (the line is named by the caller), with the column.
pub(crate) fn line_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => format!("{} (column {})", &text[..i], e.column()),
        None => text,
    }
}

/// A JSON string as is, or an integer as a string; `Err` names the type.
fn as_string(raw: &RawValue) -> Result<std::borrow::Cow<'_, RawValue>, &'static str> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => Ok(std::borrow::Cow::Borrowed(raw)),
        Some(b'-' | b'0'..=b'9') if text.bytes().all(|b| b == b'-' || b.is_ascii_digit()) => {
            Ok(std::borrow::Cow::Owned(
                RawValue::from_string(format!("\"{text}\"")).expect("a quoted integer is JSON"),
            ))
        }
        Some(b'{') => Err("an object"),
        Some(b'[') => Err("an array"),
        _ => Err("not a string"),
    }
}

/// Recognises a foreign dump by its names and first lines; `None` for an
/// esark archive (complete or not), a missing path, or anything else.
pub async fn detect(path: &Path) -> Option<ForeignKind> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    if meta.is_file() {
        return classify_line(&first_line(path).await?);
    }
    if looks_like_archive(path).await {
        return None;
    }
    for file in kourou::documents_files(path).await.ok()? {
        if let Some(line) = first_line(&file).await {
            if kourou::parse_header(&line).is_ok() {
                return Some(ForeignKind::Kourou);
            }
        }
    }
    for name in file_names(path).await.ok()? {
        let found = match elasticdump::classify_name(&name) {
            Some((_, elasticdump::Part::Meta(elasticdump::MetaKind::Mapping))) => true,
            Some((_, elasticdump::Part::Data { .. })) => first_line(&path.join(&name))
                .await
                .is_some_and(|l| elasticdump::is_hit(&l)),
            _ => false,
        };
        if found {
            return Some(ForeignKind::ElasticdumpFolder);
        }
    }
    None
}

/// What a file is, by its first non-blank line.
pub fn classify_line(line: &[u8]) -> Option<ForeignKind> {
    if crate::stream::is_header(line) {
        Some(ForeignKind::EsarkStream)
    } else if kourou::parse_header(line).is_ok() {
        Some(ForeignKind::Kourou)
    } else if bulk::is_action(line) {
        Some(ForeignKind::Bulk)
    } else if elasticdump::is_hit(line) {
        Some(ForeignKind::ElasticdumpFile)
    } else {
        None
    }
}

/// Whether `path` is (or may be) an esark archive, which the archive
/// reader opens or explains: it has a manifest, or is an interrupted dump,
/// or does not exist.
pub async fn looks_like_archive(path: &Path) -> bool {
    let exists = |p: PathBuf| async move { tokio::fs::metadata(p).await.is_ok() };
    !exists(path.to_path_buf()).await
        || exists(path.join(crate::archive::MANIFEST_FILE)).await
        || exists(path.join(crate::archive::CHECKPOINT_FILE)).await
        || exists(path.join("indices")).await
}

/// What a foreign dump holds: its indices (named as the format says, or
/// `index_override`) and the legacy templates it carries (multielasticdump
/// folders only). [`crate::plan::from_foreign`] makes a plan of it.
pub async fn read(
    input: &Path,
    kind: ForeignKind,
    index_override: Option<&str>,
) -> Result<(Vec<ForeignIndex>, Map<String, Value>), ForeignError> {
    let mut templates = Map::new();
    let mut found = match kind {
        ForeignKind::ElasticdumpFolder => {
            let (indices, legacy) = elasticdump::read_folder(input).await?;
            templates = legacy;
            indices
        }
        ForeignKind::ElasticdumpFile => elasticdump::read_file(input, index_override).await?,
        ForeignKind::Kourou => kourou::read(input).await?,
        ForeignKind::Bulk => bulk::read_file(input, index_override).await?,
        ForeignKind::EsarkStream => esark_stream::read_file(input).await?,
    };
    if let Some(name) = index_override {
        if found.len() > 1 {
            return Err(ForeignError::AmbiguousIndex {
                name: name.to_string(),
                found: found.into_iter().map(|i| i.name).collect(),
            });
        }
        for index in &mut found {
            index.name = name.to_string();
        }
    }
    Ok((found, templates))
}

/// The first non-blank line of a file (decompressed), if it has one.
async fn first_line(path: &Path) -> Option<Vec<u8>> {
    let mut lines = lines::RawLines::open(path).await.ok()?;
    let mut buf = Vec::new();
    lines.next(&mut buf).await.ok()?.then_some(buf)
}

/// Whether `path` is a regular file (following symbolic links).
pub(crate) async fn is_file(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file())
}

/// The names of the regular files in `dir`, sorted.
pub(crate) async fn file_names(dir: &Path) -> Result<Vec<String>, ForeignError> {
    entries(dir, false).await
}

/// The names of the folders in `dir`, sorted.
pub(crate) async fn dir_names(dir: &Path) -> Result<Vec<String>, ForeignError> {
    entries(dir, true).await
}

async fn entries(dir: &Path, dirs: bool) -> Result<Vec<String>, ForeignError> {
    let mut read = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| ForeignError::io(dir, e))?;
    let mut out = Vec::new();
    while let Some(entry) = read
        .next_entry()
        .await
        .map_err(|e| ForeignError::io(dir, e))?
    {
        // Follows symbolic links, as a shell listing would.
        let Ok(meta) = tokio::fs::metadata(entry.path()).await else {
            continue;
        };
        if meta.is_dir() == dirs && (dirs || meta.is_file()) {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_tell_the_file_kind() {
        let cases: &[(&str, Option<ForeignKind>)] = &[
            (
                r#"{"_id":"e1","_index":"fx-events","_score":1,"_source":{"seq":1}}"#,
                Some(ForeignKind::ElasticdumpFile),
            ),
            (
                r#"{"_index":"a","_type":"_doc","_id":"1","_source":{}}"#,
                Some(ForeignKind::ElasticdumpFile),
            ),
            (
                r#"{"index":{"_index":"a","_id":"1"}}"#,
                Some(ForeignKind::Bulk),
            ),
            (r#"{"create":{"_id":"1"}}"#, Some(ForeignKind::Bulk)),
            (
                r#"{"esark_stream":{"version":1,"index":"i"}}"#,
                Some(ForeignKind::EsarkStream),
            ),
            (
                r#"{"esark_stream":{"version":2}}"#,
                Some(ForeignKind::EsarkStream),
            ),
            (r#"{"esark_stream_end":{"docs":1}}"#, None),
            (r#"{"delete":{"_id":"1"}}"#, Some(ForeignKind::Bulk)),
            (
                r#"{"type":"collection","index":"i","collection":"c"}"#,
                Some(ForeignKind::Kourou),
            ),
            // An esark archive line is a hit without `_index`.
            (
                r#"{"_id":"1","_source":{}}"#,
                Some(ForeignKind::ElasticdumpFile),
            ),
            (r#"{"type":"mappings","content":{}}"#, None),
            (r#"{"name":"x"}"#, None),
            (r#""{\"a\":{}}""#, None),
            ("not json", None),
        ];
        for (line, want) in cases {
            assert_eq!(classify_line(line.as_bytes()), *want, "{line}");
        }
    }

    #[test]
    fn ids_and_routings_must_be_strings() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        let mut out = Vec::new();
        push_doc(&mut out, &raw("42"), Some(&raw("\"r\"")), &raw("{}")).unwrap();
        assert_eq!(out, br#"{"_id":"42","_routing":"r","_source":{}}"#);
        out.clear();
        push_doc(
            &mut out,
            &raw("\"a\""),
            Some(&raw("null")),
            &raw("{\"n\":1}"),
        )
        .unwrap();
        assert_eq!(out, br#"{"_id":"a","_source":{"n":1}}"#);
        assert!(push_doc(&mut out, &raw("1.5"), None, &raw("{}")).is_err());
        assert!(push_doc(&mut out, &raw("[\"a\"]"), None, &raw("{}")).is_err());
        assert!(push_doc(&mut out, &raw("\"a\""), Some(&raw("true")), &raw("{}")).is_err());
        assert!(push_doc(&mut out, &raw("\"a\""), None, &raw("\"s\"")).is_err());
    }

    /// Detection of whole inputs, against a table of folders and files.
    #[tokio::test]
    async fn inputs_are_detected_by_names_and_first_lines() {
        let root = tempfile::tempdir().unwrap();
        let hit = "{\"_index\":\"a\",\"_id\":\"1\",\"_source\":{}}\n";
        let header = "{\"type\":\"collection\",\"index\":\"i\",\"collection\":\"c\"}\n";
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<ForeignKind>);
        let cases: &[Case] = &[
            (
                "multi",
                &[("a.json", hit), ("a.mapping.json", "{}")],
                Some(ForeignKind::ElasticdumpFolder),
            ),
            (
                "mapping-only",
                &[("a.mapping.json", "{}")],
                Some(ForeignKind::ElasticdumpFolder),
            ),
            (
                "splits",
                &[("a.split-0.json", hit), ("a.split-1.json", hit)],
                Some(ForeignKind::ElasticdumpFolder),
            ),
            (
                "kourou-root",
                &[("i/c/documents.jsonl", header), ("i/c/mappings.json", "{}")],
                Some(ForeignKind::Kourou),
            ),
            (
                "kourou-index",
                &[("c/documents.jsonl", header)],
                Some(ForeignKind::Kourou),
            ),
            (
                "kourou-collection",
                &[("documents.jsonl", header)],
                Some(ForeignKind::Kourou),
            ),
            ("esark", &[("manifest.json", "{}"), ("a.json", hit)], None),
            (
                "esark-incomplete",
                &[("checkpoint.json", "{}"), ("indices/a/settings.json", "{}")],
                None,
            ),
            (
                "random",
                &[
                    ("package.json", "{\"name\":\"x\"}\n"),
                    ("notes.txt", "hello"),
                ],
                None,
            ),
            ("empty", &[], None),
        ];
        for (name, files, want) in cases {
            let dir = root.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (file, text) in *files {
                let path = dir.join(file);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            assert_eq!(detect(&dir).await, *want, "{name}");
        }
        let single = root.path().join("multi/a.json");
        assert_eq!(detect(&single).await, Some(ForeignKind::ElasticdumpFile));
        assert_eq!(detect(&root.path().join("missing")).await, None);
        assert!(looks_like_archive(&root.path().join("missing")).await);
        assert!(!looks_like_archive(&root.path().join("random")).await);
    }
}
