//! Kourou `index:export` and `collection:export` output (JSONL format,
//! Kourou's `src/support/dump-collection.ts`):
//!
//! ```text
//! <dest>/<index>/<collection>/documents.jsonl
//!     {"type":"collection","index":"<index>","collection":"<collection>"}
//!     {"_id":"…","body":{…}}                  one line per document
//! <dest>/<index>/<collection>/mappings.json
//!     {"type":"mappings","content":{"<index>":{"<collection>":{…mappings…}}}}
//! ```
//!
//! `--input` may name the export folder, one index folder, one collection
//! folder or a `documents.jsonl`. The index and collection come from the
//! header line. Collection `C` of Kuzzle index `I` is restored into the
//! index `I.C`; Kuzzle 2 itself keeps it in `&I.C`, which `--prefix '&'`
//! gives.
//!
//! Kuzzle adds `_kuzzle_info` (author, dates) to every collection's
//! mappings in Elasticsearch and hides it from `collection:getMapping`,
//! while exported documents carry it: it is added back, so that documents
//! load under `"dynamic": "strict"`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::lines::{read_all, RawLines};
use super::{push_doc, ConvertError, ForeignError, ForeignFile, ForeignIndex, LineFormat};

pub const DOCUMENTS_FILE: &str = "documents.jsonl";
pub const MAPPINGS_FILE: &str = "mappings.json";

#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    #[serde(rename = "type")]
    kind: String,
    index: String,
    collection: String,
}

/// What is wrong with a Kourou `mappings.json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingsError {
    #[error("no \"content\" in a Kourou mappings file")]
    NoContent,
    #[error("no mappings for index {index:?}, collection {collection:?}")]
    NotFound { index: String, collection: String },
    #[error("the collection's mappings are not an object")]
    NotAnObject,
}

#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(rename = "_id", borrow)]
    id: &'a RawValue,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// The header line of a `documents.jsonl`: `(index, collection)`.
pub(crate) fn parse_header(line: &[u8]) -> Result<(String, String), ConvertError> {
    let header: Header = serde_json::from_slice(line).map_err(ConvertError::not_json(
        "not a Kourou header line ({\"type\":\"collection\",…})",
    ))?;
    if header.kind != "collection" {
        return Err(ConvertError::NotKourouHeader(header.kind));
    }
    Ok((header.index, header.collection))
}

/// Appends the archive line of one exported document to `out`.
pub(crate) fn convert_doc(line: &[u8], out: &mut Vec<u8>) -> Result<(), ConvertError> {
    let doc: Doc = serde_json::from_slice(line).map_err(ConvertError::not_json(
        "not a Kourou document line ({\"_id\":…,\"body\":{…}})",
    ))?;
    push_doc(out, doc.id, None, doc.body)
}

/// The `documents.jsonl` files under `input`: itself, in it, or one or two
/// folders down, in name order.
pub(crate) async fn documents_files(input: &Path) -> Result<Vec<PathBuf>, ForeignError> {
    let meta = tokio::fs::metadata(input)
        .await
        .map_err(|e| ForeignError::io(input, e))?;
    if meta.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let here = input.join(DOCUMENTS_FILE);
    if super::is_file(&here).await {
        return Ok(vec![here]);
    }
    let mut out = Vec::new();
    for sub in super::dir_names(input).await? {
        let sub = input.join(sub);
        let file = sub.join(DOCUMENTS_FILE);
        if super::is_file(&file).await {
            out.push(file);
            continue;
        }
        for subsub in super::dir_names(&sub).await? {
            let file = sub.join(subsub).join(DOCUMENTS_FILE);
            if super::is_file(&file).await {
                out.push(file);
            }
        }
    }
    Ok(out)
}

/// One [`ForeignIndex`] per exported collection, named `<index>.<collection>`.
pub(crate) async fn read(input: &Path) -> Result<Vec<ForeignIndex>, ForeignError> {
    let mut indices: Vec<ForeignIndex> = Vec::new();
    for path in documents_files(input).await? {
        let mut lines = RawLines::open(&path).await?;
        let mut buf = Vec::new();
        if !lines.next(&mut buf).await? {
            return Err(lines.malformed("empty file: no Kourou header line"));
        }
        let (index, collection) = parse_header(&buf).map_err(|r| lines.malformed(r))?;
        let mut docs = 0;
        while lines.next(&mut buf).await? {
            docs += 1;
        }
        let name = format!("{index}.{collection}");
        if let Some(other) = indices.iter().find(|i| i.name == name) {
            return Err(ForeignError::BadFile {
                path,
                reason: format!(
                    "collection {collection:?} of index {index:?} is also in {}",
                    other.files[0].path.display()
                ),
            });
        }
        let mut meta = super::empty_meta();
        let mappings_path = path.with_file_name(MAPPINGS_FILE);
        if super::is_file(&mappings_path).await {
            meta.mappings = read_mappings(&mappings_path, &index, &collection).await?;
        }
        indices.push(ForeignIndex {
            name,
            docs,
            meta,
            files: vec![ForeignFile {
                path,
                format: LineFormat::Kourou,
                only_index: None,
                docs,
                max_line: crate::source::archive::DEFAULT_MAX_LINE,
            }],
        });
    }
    Ok(indices)
}

async fn read_mappings(path: &Path, index: &str, collection: &str) -> Result<Value, ForeignError> {
    let bad = |reason: &dyn std::fmt::Display| ForeignError::BadFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let bytes = read_all(path).await?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| bad(&e))?;
    collection_mappings(doc, index, collection).map_err(|e| bad(&e))
}

/// The mappings of `index`/`collection` in a Kourou `mappings.json`:
/// `{"type":"mappings","content":{I:{C:M}}}`, or `{I:{C:M}}` (older
/// Kourou), with `_kuzzle_info` added to `M`.
pub fn collection_mappings(
    doc: Value,
    index: &str,
    collection: &str,
) -> Result<Value, MappingsError> {
    let content = match doc {
        Value::Object(mut map) if map.get("type") == Some(&json!("mappings")) => {
            map.remove("content").ok_or(MappingsError::NoContent)?
        }
        other => other,
    };
    let mut mappings = content
        .get(index)
        .and_then(|i| i.get(collection))
        .cloned()
        .ok_or_else(|| MappingsError::NotFound {
            index: index.to_string(),
            collection: collection.to_string(),
        })?;
    let Some(map) = mappings.as_object_mut() else {
        return Err(MappingsError::NotAnObject);
    };
    let properties = map
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(properties) = properties.as_object_mut() {
        properties.entry("_kuzzle_info").or_insert_with(|| {
            json!({"properties": {
                "author": {"type": "keyword"},
                "createdAt": {"type": "date"},
                "updatedAt": {"type": "date"},
                "updater": {"type": "keyword"}
            }})
        });
    }
    Ok(mappings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_documents() {
        assert_eq!(
            parse_header(
                br#"{"type":"collection","index":"nyc-open-data","collection":"yellow-taxi"}"#
            )
            .unwrap(),
            ("nyc-open-data".to_string(), "yellow-taxi".to_string())
        );
        assert!(parse_header(br#"{"type":"mappings","index":"i","collection":"c"}"#).is_err());
        assert!(parse_header(br#"{"_id":"1","body":{}}"#).is_err());
        let mut out = Vec::new();
        convert_doc(
            br#"{"_id":"x","body":{"big":9223372036854775807,"_kuzzle_info":{"author":"-1"}}}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"_id":"x","_source":{"big":9223372036854775807,"_kuzzle_info":{"author":"-1"}}}"#
        );
        assert!(convert_doc(br#"{"_id":"x","body":"text"}"#, &mut Vec::new()).is_err());
        assert!(convert_doc(br#"{"_id":"x"}"#, &mut Vec::new()).is_err());
    }

    #[test]
    fn mappings_get_kuzzle_info_back() {
        let file = json!({"type":"mappings","content":{"i":{"c":{"dynamic":"strict","properties":{"a":{"type":"keyword"}}}}}});
        let m = collection_mappings(file, "i", "c").unwrap();
        assert_eq!(m["dynamic"], "strict");
        assert_eq!(m["properties"]["a"]["type"], "keyword");
        assert_eq!(
            m["properties"]["_kuzzle_info"]["properties"]["createdAt"]["type"],
            "date"
        );
        let older = json!({"i":{"c":{"properties":{"_kuzzle_info":{"properties":{}}}}}});
        let m = collection_mappings(older, "i", "c").unwrap();
        assert_eq!(m["properties"]["_kuzzle_info"], json!({"properties":{}}));
        assert!(collection_mappings(json!({"type":"mappings","content":{}}), "i", "c").is_err());
    }
}
