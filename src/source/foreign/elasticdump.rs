//! elasticdump and multielasticdump output.
//!
//! A data file holds one search hit per line, as elasticdump's
//! `JSON.stringify(hit)` wrote it (`lib/transports/base.js`):
//! `{"_id":…,"_index":…,"_score":…,"_routing":…,"_source":{…}}`, possibly
//! with `_type` (Elasticsearch 6 and older, ignored) and the routing under
//! `fields._routing` (Elasticsearch 2 and older). Only `_source` is copied,
//! byte for byte.
//!
//! A multielasticdump folder (`bin/multielasticdump`, `generatePath`) holds
//! per index, named with the raw index name:
//!
//! ```text
//! <index>.json            data (`--fsCompress`: <index>.json.gz, gzip)
//! <index>.split-<N>.json  data, part N (elasticdump --fileSize; .json.gz when compressed)
//! <index>.mapping.json    {"<index>":{"mappings":{…}}}            plain JSON
//! <index>.settings.json   "{\"<index>\":{\"settings\":{…}}}"       a JSON string holding JSON
//! <index>.analyzer.json   the same as settings (the analysis is used)
//! <index>.alias.json      "{\"<index>\":{\"aliases\":{…}}}" (or "{}")
//! <index>.template.json   "{\"<name>\":{…},…}": every legacy template of the source
//! <index>.index.json      "{\"<index>\":{\"aliases\":…,\"mappings\":…,\"settings\":…}}"
//! ```
//!
//! Elasticsearch 6 mappings carry one mapping type (`{"_doc":{"properties":…}}`);
//! it is unwrapped. Several types (Elasticsearch 5) cannot go into one index
//! and are refused.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::archive::metadata::typeless;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::lines::{read_all, RawLines};
use super::{push_doc, ConvertError, ForeignError, ForeignFile, ForeignIndex, LineFormat};
use crate::archive::metadata::strip_generated;
use crate::catalog::IndexMetadata;

/// A metadata file of a multielasticdump folder (`supportedTypes` in
/// `bin/multielasticdump`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetaKind {
    Mapping,
    Settings,
    Analyzer,
    Alias,
    Template,
    Index,
}

impl MetaKind {
    const ALL: [MetaKind; 6] = [
        MetaKind::Mapping,
        MetaKind::Settings,
        MetaKind::Analyzer,
        MetaKind::Alias,
        MetaKind::Template,
        MetaKind::Index,
    ];

    fn suffix(self) -> &'static str {
        match self {
            MetaKind::Mapping => ".mapping",
            MetaKind::Settings => ".settings",
            MetaKind::Analyzer => ".analyzer",
            MetaKind::Alias => ".alias",
            MetaKind::Template => ".template",
            MetaKind::Index => ".index",
        }
    }
}

/// What a file of a multielasticdump folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Documents; `split` is N of a `.split-N` part.
    Data {
        split: Option<u32>,
    },
    Meta(MetaKind),
}

/// Classifies a file name of a multielasticdump folder: the index it
/// belongs to and what it holds. `None`: not one of its files.
pub fn classify_name(name: &str) -> Option<(String, Part)> {
    let base = name.strip_suffix(".gz").unwrap_or(name);
    let stem = base.strip_suffix(".json")?;
    // esark's own state files (`restore.state.json`, `FILE.restore.state.json`).
    if stem.is_empty() || name.ends_with(crate::restore::state::STATE_FILE) {
        return None;
    }
    // elasticdump's StreamSplitter names parts `<base>.split-<N><ext>[.gz]`.
    if let Some((index, n)) = stem.rsplit_once(".split-") {
        if !index.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            let split = n.parse().ok()?;
            return Some((index.to_string(), Part::Data { split: Some(split) }));
        }
    }
    for kind in MetaKind::ALL {
        if let Some(index) = stem.strip_suffix(kind.suffix()) {
            if !index.is_empty() {
                return Some((index.to_string(), Part::Meta(kind)));
            }
        }
    }
    Some((stem.to_string(), Part::Data { split: None }))
}

#[derive(Deserialize)]
struct Hit<'a> {
    #[serde(rename = "_index", borrow, default)]
    index: Option<Cow<'a, str>>,
    #[serde(rename = "_id", borrow)]
    id: &'a RawValue,
    #[serde(rename = "_routing", borrow, default)]
    routing: Option<&'a RawValue>,
    #[serde(rename = "_source", borrow)]
    source: Option<&'a RawValue>,
    #[serde(borrow, default)]
    fields: Option<Fields<'a>>,
}

/// `fields` of a hit: old servers returned the routing there.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "_routing", borrow, default)]
    routing: Option<&'a RawValue>,
}

/// Only the index of a hit, for splitting a file by index.
#[derive(Deserialize)]
struct HitIndex<'a> {
    #[serde(rename = "_index", borrow, default)]
    index: Option<Cow<'a, str>>,
}

/// Whether a line looks like an elasticdump hit (for detection).
pub(crate) fn is_hit(line: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Keys<'a> {
        #[serde(rename = "_id", borrow)]
        _id: &'a RawValue,
        #[serde(rename = "_source", borrow)]
        _source: &'a RawValue,
    }
    serde_json::from_slice::<Keys>(line).is_ok()
}

/// Appends the archive line of one hit to `out`; returns the hit's `_index`.
pub(crate) fn convert_hit<'a>(
    line: &'a [u8],
    out: &mut Vec<u8>,
) -> Result<Option<Cow<'a, str>>, ConvertError> {
    let hit: Hit = serde_json::from_slice(line)
        .map_err(ConvertError::not_json("not an elasticdump document line"))?;
    let source = hit.source.ok_or(ConvertError::NoSource)?;
    let routing = hit.routing.or(hit.fields.and_then(|f| f.routing));
    push_doc(out, hit.id, routing, source)?;
    Ok(hit.index)
}

/// A multielasticdump folder: one [`ForeignIndex`] per index, in name
/// order, and the legacy templates of its `.template.json` files.
pub(crate) async fn read_folder(
    dir: &Path,
) -> Result<(Vec<ForeignIndex>, Map<String, Value>), ForeignError> {
    /// The files of one index.
    #[derive(Default)]
    struct Files {
        data: Vec<(Option<u32>, PathBuf)>,
        meta: Vec<(MetaKind, PathBuf)>,
    }
    let mut found: BTreeMap<String, Files> = BTreeMap::new();
    for name in super::file_names(dir).await? {
        if let Some((index, part)) = classify_name(&name) {
            let files = found.entry(index).or_default();
            match part {
                Part::Data { split } => files.data.push((split, dir.join(&name))),
                Part::Meta(kind) => files.meta.push((kind, dir.join(&name))),
            }
        }
    }
    let mut templates = Map::new();
    let mut indices = Vec::new();
    for (
        name,
        Files {
            mut data,
            meta: meta_files,
        },
    ) in found
    {
        // The unsplit file first, then the parts in order.
        data.sort();
        let mut files = Vec::new();
        let mut docs = 0;
        for (_, path) in data {
            let n = count_lines(&path).await?;
            docs += n;
            files.push(ForeignFile {
                path,
                format: LineFormat::Hit,
                only_index: None,
                docs: n,
                max_line: crate::source::archive::DEFAULT_MAX_LINE,
            });
        }
        let mut docs_meta = BTreeMap::new();
        for (kind, path) in meta_files {
            let value = read_double_encoded(&path).await?;
            docs_meta.insert(kind, (path, value));
        }
        let meta = metadata(&name, &docs_meta)?;
        if let Some((path, v)) = docs_meta.get(&MetaKind::Template) {
            match v {
                Value::Object(map) => templates.extend(map.clone()),
                _ => return Err(bad(path, "not a JSON object of templates")),
            }
        }
        indices.push(ForeignIndex {
            name,
            docs,
            meta,
            files,
        });
    }
    Ok((indices, templates))
}

/// One elasticdump data file: one index per `_index` found in it, or all
/// of it as `index_override`.
pub(crate) async fn read_file(
    path: &Path,
    index_override: Option<&str>,
) -> Result<Vec<ForeignIndex>, ForeignError> {
    let counts = match index_override {
        Some(name) => BTreeMap::from([(name.to_string(), count_lines(path).await?)]),
        None => {
            let mut counts = BTreeMap::new();
            let mut lines = RawLines::open(path).await?;
            let mut buf = Vec::new();
            while lines.next(&mut buf).await? {
                let hit: HitIndex = serde_json::from_slice(&buf).map_err(|e| {
                    lines.malformed(ConvertError::not_json("not an elasticdump document line")(
                        e,
                    ))
                })?;
                let index = hit.index.ok_or_else(|| {
                    lines.malformed("no \"_index\": name the target index with --index NAME")
                })?;
                *counts.entry(index.into_owned()).or_insert(0u64) += 1;
            }
            counts
        }
    };
    let several = counts.len() > 1;
    Ok(counts
        .into_iter()
        .map(|(name, docs)| ForeignIndex {
            files: vec![ForeignFile {
                path: path.to_path_buf(),
                format: LineFormat::Hit,
                only_index: (several).then(|| name.clone()),
                docs,
                max_line: crate::source::archive::DEFAULT_MAX_LINE,
            }],
            name,
            docs,
            meta: super::empty_meta(),
        })
        .collect())
}

/// The non-blank lines of a file: its documents, for the plan.
pub(crate) async fn count_lines(path: &Path) -> Result<u64, ForeignError> {
    let mut lines = RawLines::open(path).await?;
    let mut buf = Vec::new();
    let mut n = 0;
    while lines.next(&mut buf).await? {
        n += 1;
    }
    Ok(n)
}

/// A metadata file: JSON, or (settings, alias, template, index) a JSON
/// string holding JSON, as elasticdump writes what it got as text.
async fn read_double_encoded(path: &Path) -> Result<Value, ForeignError> {
    let bytes = read_all(path).await?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| bad(path, e))?;
    match value {
        Value::String(inner) => serde_json::from_str(&inner).map_err(|e| bad(path, e)),
        other => Ok(other),
    }
}

fn bad(path: &Path, reason: impl ToString) -> ForeignError {
    ForeignError::BadFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The entry of `index` in a `{"<index>": {...}}` answer: by name, or the
/// only one (a dump taken through an alias names the concrete index).
fn entry<'a>(doc: &'a Value, index: &str) -> Option<&'a Map<String, Value>> {
    let map = doc.as_object()?;
    let one = match map.get(index) {
        Some(v) => v,
        None if map.len() == 1 => map.values().next()?,
        None => return None,
    };
    one.as_object()
}

fn metadata(
    index: &str,
    files: &BTreeMap<MetaKind, (PathBuf, Value)>,
) -> Result<IndexMetadata, ForeignError> {
    let section = |kind: MetaKind, key: &str| -> Option<(&PathBuf, Value)> {
        let (path, doc) = files.get(&kind)?;
        entry(doc, index)
            .and_then(|e| e.get(key))
            .map(|v| (path, v.clone()))
    };
    let mut meta = super::empty_meta();
    if let Some((path, mappings)) =
        section(MetaKind::Mapping, "mappings").or_else(|| section(MetaKind::Index, "mappings"))
    {
        meta.mappings = typeless(mappings).map_err(|r| bad(path, r))?;
    }
    if let Some((_, settings)) = section(MetaKind::Settings, "settings")
        .or_else(|| section(MetaKind::Index, "settings"))
        .or_else(|| section(MetaKind::Analyzer, "settings"))
    {
        meta.settings = settings;
    }
    // An analyzer file alone still brings its analysis.
    if let Some((_, analyzer)) = section(MetaKind::Analyzer, "settings") {
        if let Some(analysis) = analyzer.pointer("/index/analysis") {
            if meta.settings.pointer("/index/analysis").is_none() {
                if !meta.settings.is_object() {
                    meta.settings = Value::Object(Map::new());
                }
                let settings = meta.settings.as_object_mut().expect("object");
                let index = settings
                    .entry("index")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(index) = index.as_object_mut() {
                    index.insert("analysis".into(), analysis.clone());
                }
            }
        }
    }
    strip_generated(&mut meta.settings);
    if let Some((_, aliases)) =
        section(MetaKind::Alias, "aliases").or_else(|| section(MetaKind::Index, "aliases"))
    {
        meta.aliases = aliases;
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_names_map_to_indices_and_parts() {
        let data = |split| Some(Part::Data { split });
        let meta = |kind| Some(Part::Meta(kind));
        let cases = [
            ("logs.json", "logs", data(None)),
            ("logs.json.gz", "logs", data(None)),
            ("%kuzzle.json", "%kuzzle", data(None)),
            (".hidden.json", ".hidden", data(None)),
            ("a.b.c.json", "a.b.c", data(None)),
            ("logs.split-0.json", "logs", data(Some(0))),
            ("logs.split-12.json.gz", "logs", data(Some(12))),
            ("logs.split-x.json", "logs.split-x", data(None)),
            ("logs.mapping.json", "logs", meta(MetaKind::Mapping)),
            ("logs.settings.json.gz", "logs", meta(MetaKind::Settings)),
            ("logs.analyzer.json", "logs", meta(MetaKind::Analyzer)),
            ("logs.alias.json", "logs", meta(MetaKind::Alias)),
            ("logs.template.json", "logs", meta(MetaKind::Template)),
            ("logs.index.json", "logs", meta(MetaKind::Index)),
            (".mapping.json", ".mapping", data(None)),
            ("logs.ndjson", "", None),
            ("README.md", "", None),
            (".json", "", None),
            ("restore.state.json", "", None),
            ("all.json.restore.state.json", "", None),
        ];
        for (name, index, part) in cases {
            let want = part.map(|p| (index.to_string(), p));
            assert_eq!(classify_name(name), want, "{name}");
        }
    }

    #[test]
    fn hits_become_archive_lines_with_their_routing() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            (
                r#"{"_id":"1","_index":"a","_score":1,"_source":{"n":9223372036854775807,"f":1.50}}"#,
                Some("a"),
                r#"{"_id":"1","_source":{"n":9223372036854775807,"f":1.50}}"#,
            ),
            (
                r#"{"_index":"a","_type":"_doc","_id":"2","_routing":"r","_source":{}}"#,
                Some("a"),
                r#"{"_id":"2","_routing":"r","_source":{}}"#,
            ),
            (
                r#"{"_index":"a\u00e9","_id":"3","fields":{"_routing":"old"},"_source":{"x":"é"}}"#,
                Some("aé"),
                r#"{"_id":"3","_routing":"old","_source":{"x":"é"}}"#,
            ),
            (
                r#"{"_id":"4","_routing":null,"_source":{}}"#,
                None,
                r#"{"_id":"4","_source":{}}"#,
            ),
        ];
        for (line, index, want) in cases {
            let mut out = Vec::new();
            let got = convert_hit(line.as_bytes(), &mut out).unwrap();
            assert_eq!(got.as_deref(), *index, "{line}");
            assert_eq!(std::str::from_utf8(&out).unwrap(), *want, "{line}");
            crate::archive::line::parse_line(&out).unwrap();
        }
        for bad in [
            r#"{"_id":"1"}"#,
            r#"{"_id":"1","_source":[1]}"#,
            r#"{"_id":{"a":1},"_source":{}}"#,
            r#"{"_id":"1","_routing":true,"_source":{}}"#,
            r#"{"_id":"1","_source":{}"#,
            "not json",
        ] {
            assert!(
                convert_hit(bad.as_bytes(), &mut Vec::new()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn mapping_types_are_unwrapped() {
        let v7 = json!({"properties":{"a":{"type":"keyword"}}});
        assert_eq!(typeless(v7.clone()).unwrap(), v7);
        assert_eq!(
            typeless(json!({"_doc":{"properties":{"a":{"type":"keyword"}}}})).unwrap(),
            v7
        );
        assert_eq!(
            typeless(
                json!({"_default_":{"dynamic":false},"doc":{"properties":{"a":{"type":"keyword"}}}})
            )
            .unwrap(),
            v7
        );
        assert_eq!(typeless(json!({})).unwrap(), json!({}));
        let dynamic = json!({"dynamic":"strict","_meta":{"v":1}});
        assert_eq!(typeless(dynamic.clone()).unwrap(), dynamic);
        let err = typeless(json!({"a":{"properties":{}},"b":{"properties":{}}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("several mapping types (a, b)"), "{err}");
    }

    #[test]
    fn metadata_comes_from_the_double_encoded_files() {
        let files = BTreeMap::from([
            (
                MetaKind::Mapping,
                (
                    PathBuf::from("i.mapping.json"),
                    json!({"i":{"mappings":{"_doc":{"properties":{"a":{"type":"long"}}}}}}),
                ),
            ),
            (
                MetaKind::Settings,
                (
                    PathBuf::from("i.settings.json"),
                    json!({"i":{"settings":{"index":{"number_of_shards":"2","uuid":"x","creation_date":"1"}}}}),
                ),
            ),
            (
                MetaKind::Analyzer,
                (
                    PathBuf::from("i.analyzer.json"),
                    json!({"i":{"settings":{"index":{"analysis":{"analyzer":{"f":{"type":"custom","tokenizer":"standard"}}}}}}}),
                ),
            ),
            (
                MetaKind::Alias,
                (
                    PathBuf::from("i.alias.json"),
                    json!({"i":{"aliases":{"r":{},"w":{"is_write_index":true}}}}),
                ),
            ),
        ]);
        let meta = metadata("i", &files).unwrap();
        assert_eq!(meta.mappings, json!({"properties":{"a":{"type":"long"}}}));
        assert_eq!(
            meta.settings,
            json!({"index":{"number_of_shards":"2","analysis":{"analyzer":{"f":{"type":"custom","tokenizer":"standard"}}}}})
        );
        assert_eq!(meta.aliases, json!({"r":{},"w":{"is_write_index":true}}));
        // An alias file of an index without aliases holds "{}".
        let empty = BTreeMap::from([(MetaKind::Alias, (PathBuf::from("e"), json!({})))]);
        assert_eq!(metadata("e", &empty).unwrap().aliases, json!({}));
    }
}
