//! Bulk NDJSON files, as sent to `_bulk`: an action line, then (for
//! `index` and `create`) the document's source line.
//! <https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html>
//!
//! The action gives `_index` (or `--index NAME` does), `_id` (required:
//! esark restores documents by id) and `routing` (`_routing` before
//! Elasticsearch 7). `delete` and `update` are operations on documents that
//! exist elsewhere, not documents: a file holding them is refused, naming
//! the line, rather than half applied.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::lines::RawLines;
use super::{push_doc, ConvertError, ForeignError, ForeignFile, ForeignIndex, LineFormat};

#[derive(Deserialize)]
struct Action<'a> {
    #[serde(borrow, default)]
    index: Option<Meta<'a>>,
    #[serde(borrow, default)]
    create: Option<Meta<'a>>,
    #[serde(borrow, default)]
    delete: Option<&'a RawValue>,
    #[serde(borrow, default)]
    update: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(rename = "_index", borrow, default)]
    index: Option<Cow<'a, str>>,
    #[serde(rename = "_id", borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    routing: Option<&'a RawValue>,
    #[serde(rename = "_routing", borrow, default)]
    old_routing: Option<&'a RawValue>,
}

/// The `index` or `create` metadata of an action line.
fn parse_action(line: &[u8]) -> Result<Meta<'_>, ConvertError> {
    let action: Action =
        serde_json::from_slice(line).map_err(ConvertError::not_json("not a bulk action line"))?;
    let count = [
        action.index.is_some(),
        action.create.is_some(),
        action.delete.is_some(),
        action.update.is_some(),
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    if count != 1 {
        return Err(ConvertError::NotOneAction);
    }
    if action.delete.is_some() || action.update.is_some() {
        let what = if action.delete.is_some() {
            "delete"
        } else {
            "update"
        };
        return Err(ConvertError::Operation(what));
    }
    Ok(action.index.or(action.create).expect("one of them"))
}

/// Whether a line is a bulk action line (for detection).
pub(crate) fn is_action(line: &[u8]) -> bool {
    #[derive(Deserialize)]
    enum Kind<'a> {
        #[serde(rename = "index", borrow)]
        Index(&'a RawValue),
        #[serde(rename = "create", borrow)]
        Create(&'a RawValue),
        #[serde(rename = "delete", borrow)]
        Delete(&'a RawValue),
        #[serde(rename = "update", borrow)]
        Update(&'a RawValue),
    }
    match serde_json::from_slice::<Kind>(line) {
        Ok(Kind::Index(m) | Kind::Create(m) | Kind::Delete(m) | Kind::Update(m)) => {
            m.get().starts_with('{')
        }
        Err(_) => false,
    }
}

/// Checks an action line before its source line is read.
pub(crate) fn check_action(line: &[u8]) -> Result<(), ConvertError> {
    parse_action(line).map(|_| ())
}

/// Appends the archive line of an action and its source to `out`;
/// returns the action's `_index`.
pub(crate) fn convert<'a>(
    action: &'a [u8],
    source: &[u8],
    out: &mut Vec<u8>,
) -> Result<Option<Cow<'a, str>>, ConvertError> {
    let meta = parse_action(action)?;
    let id = meta.id.ok_or(ConvertError::NoId)?;
    let source: &RawValue = serde_json::from_slice(source)
        .map_err(ConvertError::not_json("the source line is not JSON"))?;
    push_doc(out, id, meta.routing.or(meta.old_routing), source)?;
    Ok(meta.index)
}

/// One bulk file: one index per `_index` of its actions, or all of it as
/// `index_override`. Every action is checked here, so that a `delete` or
/// an action without an index stops the plan.
pub(crate) async fn read_file(
    path: &Path,
    index_override: Option<&str>,
) -> Result<Vec<ForeignIndex>, ForeignError> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = RawLines::open(path).await?;
    let mut buf = Vec::new();
    while lines.next(&mut buf).await? {
        let meta = parse_action(&buf).map_err(|r| lines.malformed(r))?;
        let index = match (index_override, meta.index) {
            (Some(name), _) => name.to_string(),
            (None, Some(index)) => index.into_owned(),
            (None, None) => {
                return Err(lines.malformed(
                    "the action has no \"_index\": name the target index with --index NAME",
                ))
            }
        };
        *counts.entry(index).or_insert(0) += 1;
        let action_line = lines.line();
        if !lines.next(&mut buf).await? {
            return Err(ForeignError::Malformed {
                path: path.to_path_buf(),
                line: action_line,
                reason: "the last action has no source line".into(),
            });
        }
    }
    let several = counts.len() > 1;
    Ok(counts
        .into_iter()
        .map(|(name, docs)| ForeignIndex {
            files: vec![ForeignFile {
                path: path.to_path_buf(),
                format: LineFormat::Bulk,
                only_index: several.then(|| name.clone()),
                docs,
                max_line: crate::source::archive::DEFAULT_MAX_LINE,
            }],
            name,
            docs,
            meta: super::empty_meta(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_sources_become_archive_lines() {
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            (
                r#"{"index":{"_index":"a","_id":"1"}}"#,
                r#"{"n":9223372036854775807}"#,
                Some("a"),
                r#"{"_id":"1","_source":{"n":9223372036854775807}}"#,
            ),
            (
                r#"{ "create" : { "_index" : "b", "_id" : "2", "routing" : "r" } }"#,
                r#" {"x": -9007199254740993} "#,
                Some("b"),
                r#"{"_id":"2","_routing":"r","_source":{"x": -9007199254740993}}"#,
            ),
            (
                r#"{"index":{"_id":"3","_type":"_doc","_routing":"old"}}"#,
                r#"{}"#,
                None,
                r#"{"_id":"3","_routing":"old","_source":{}}"#,
            ),
        ];
        for (action, source, index, want) in cases {
            let mut out = Vec::new();
            let got = convert(action.as_bytes(), source.as_bytes(), &mut out).unwrap();
            assert_eq!(got.as_deref(), *index, "{action}");
            assert_eq!(std::str::from_utf8(&out).unwrap(), *want, "{action}");
        }
    }

    #[test]
    fn operations_and_incomplete_actions_are_refused() {
        let refused: &[(&str, &str)] = &[
            (
                r#"{"delete":{"_index":"a","_id":"1"}}"#,
                "\"delete\" action",
            ),
            (
                r#"{"update":{"_index":"a","_id":"1"}}"#,
                "\"update\" action",
            ),
            (r#"{"index":{"_index":"a"}}"#, "no \"_id\""),
            (r#"{"index":{},"create":{}}"#, "expected one of"),
            (r#"{"_id":"1","_source":{}}"#, "expected one of"),
        ];
        for (action, why) in refused {
            let err = convert(action.as_bytes(), b"{}", &mut Vec::new())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{action}: {err}");
        }
        let err = convert(br#"{"index":{"_id":"1"}}"#, b"[1]", &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an object"), "{err}");
    }

    #[test]
    fn action_lines_are_recognised() {
        assert!(is_action(br#"{"index":{"_index":"a","_id":"1"}}"#));
        assert!(is_action(br#"{"delete":{"_id":"1"}}"#));
        assert!(!is_action(br#"{"index":"a"}"#));
        assert!(!is_action(br#"{"_id":"1","_source":{}}"#));
        assert!(!is_action(br#"{"index":{},"x":1}"#));
    }
}
