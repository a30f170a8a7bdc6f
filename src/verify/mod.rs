//! The verify command: prove that a cluster holds what an archive holds.
//!
//! Per index: the document count and an order-independent digest of
//! (`_id`, canonical `_source`) computed on both sides while streaming
//! ([`digest`]); where they differ, only the differing buckets are read
//! again to name the missing, changed and unexpected documents. Settings,
//! mappings, aliases and templates are compared too. Memory stays bounded:
//! one page or line at a time, plus the ids of the differing buckets.

pub mod digest;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::archive::line::parse_line;
use crate::catalog::{read_index_metadata, IndexMetadata, TemplateSet};
use crate::cluster::templates::TemplateKind;
use crate::cluster::{Cluster, ClusterError};
use crate::plan::{DataOrigin, IndexPlan, RestorePlan};
use crate::source::archive::ChunkLines;
use crate::source::foreign::ForeignLines;
use crate::source::slice::spawn_slices_matching;
use crate::source::{LineReader, ReaderKind, SliceEvent};
use digest::{doc_hash, DocHash, IndexDigest};
use futures::StreamExt;

/// Ids listed per kind of difference and index; the counts are exact.
pub const MAX_LISTED: usize = 50;
/// Documents remembered per side while locating differences.
const MAX_LOCATE: usize = 200_000;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    Read(String),
}

/// The comparison of one index.
#[derive(Debug, Clone, Serialize)]
pub struct IndexVerdict {
    pub name: String,
    pub target: String,
    pub archive_docs: u64,
    pub target_docs: u64,
    pub documents_match: bool,
    pub missing: Vec<String>,
    pub changed: Vec<String>,
    pub unexpected: Vec<String>,
    pub settings_match: bool,
    pub mappings_match: bool,
    pub aliases_match: bool,
    pub differences: Vec<String>,
    /// Why the index could not be compared (the others still are).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl IndexVerdict {
    fn new(index: &IndexPlan) -> IndexVerdict {
        IndexVerdict {
            name: index.name.clone(),
            target: index.target.clone(),
            archive_docs: index.docs,
            target_docs: 0,
            documents_match: false,
            missing: Vec::new(),
            changed: Vec::new(),
            unexpected: Vec::new(),
            settings_match: false,
            mappings_match: false,
            aliases_match: false,
            differences: Vec::new(),
            error: None,
        }
    }

    pub fn matches(&self) -> bool {
        self.error.is_none()
            && self.documents_match
            && self.settings_match
            && self.mappings_match
            && self.aliases_match
            && self.differences.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub indices: Vec<IndexVerdict>,
    pub templates_match: bool,
    pub differences: Vec<String>,
}

impl VerifyReport {
    pub fn matches(&self) -> bool {
        self.templates_match
            && self.differences.is_empty()
            && self.indices.iter().all(|i| i.matches())
    }
}

/// Compares `plan` (read from an archive) with `target`, reading the
/// target `page_size` documents at a time (at most each index's
/// `max_result_window`). An index that cannot be compared is reported as
/// such and the others are still compared.
pub async fn run(
    plan: &RestorePlan,
    target: Arc<Cluster>,
    templates: bool,
    page_size: usize,
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        indices: Vec::new(),
        templates_match: true,
        differences: Vec::new(),
    };
    for (name, why) in &plan.damaged {
        report
            .differences
            .push(format!("{name}: damaged in the archive: {why}"));
    }
    if templates {
        let diffs = compare_templates(&plan.templates, &target).await?;
        report.templates_match = diffs.is_empty();
        report.differences.extend(diffs);
    }
    for index in &plan.indices {
        let verdict = match verify_index(index, &target, page_size).await {
            Ok(v) => v,
            Err(e) => IndexVerdict {
                error: Some(e.to_string()),
                ..IndexVerdict::new(index)
            },
        };
        report.indices.push(verdict);
    }
    Ok(report)
}

async fn verify_index(
    index: &IndexPlan,
    target: &Arc<Cluster>,
    page_size: usize,
) -> Result<IndexVerdict, VerifyError> {
    let mut verdict = IndexVerdict::new(index);
    let meta = if index.data_stream {
        // Its mappings and settings are its index template's, compared
        // with the templates; only its documents are compared here.
        if !target.data_stream_exists(&index.target).await? {
            verdict.differences.push(format!(
                "data stream {:?} does not exist on the target",
                index.target
            ));
            return Ok(verdict);
        }
        verdict.settings_match = true;
        verdict.mappings_match = true;
        verdict.aliases_match = true;
        IndexMetadata {
            settings: serde_json::Value::Null,
            mappings: serde_json::Value::Null,
            aliases: serde_json::Value::Null,
        }
    } else {
        let (meta, _) = match read_index_metadata(target, &index.target).await {
            Ok(m) => m,
            Err(e) if e.status() == Some(404) => {
                verdict.differences.push(format!(
                    "index {:?} does not exist on the target",
                    index.target
                ));
                return Ok(verdict);
            }
            Err(e) => return Err(e.into()),
        };
        compare_metadata(&index.meta, &meta, &index.target, &mut verdict);
        meta
    };

    let live = target_origin(target, &meta, page_size);
    let (archive_side, target_side) = tokio::join!(
        digest_side(&index.data, &index.name, None),
        digest_side(&live, &index.target, None)
    );
    let (archive_digest, _) = archive_side?;
    let (target_digest, _) = target_side?;
    verdict.target_docs = target_digest.count();
    let differing = archive_digest.differing(&target_digest);
    verdict.documents_match = differing.is_empty();
    if !differing.is_empty() {
        let (archive_side, target_side) = tokio::join!(
            digest_side(&index.data, &index.name, Some(&differing)),
            digest_side(&live, &index.target, Some(&differing))
        );
        let (_, archive_docs) = archive_side?;
        let (_, target_docs) = target_side?;
        match (archive_docs, target_docs) {
            (Some(a), Some(t)) => locate(&a, &t, &mut verdict),
            _ => verdict.differences.push(format!(
                "too many differing documents to list (more than {MAX_LOCATE})"
            )),
        }
    }
    if verdict.archive_docs != verdict.target_docs {
        verdict.differences.push(format!(
            "{} documents in the archive, {} on the target",
            verdict.archive_docs, verdict.target_docs
        ));
    }
    Ok(verdict)
}

fn target_origin(target: &Arc<Cluster>, meta: &IndexMetadata, page_size: usize) -> DataOrigin {
    DataOrigin::Cluster {
        cluster: target.clone(),
        slices: meta.shards().min(crate::source::slice::AUTO_SLICES_MAX),
        page_size: meta.page_size(page_size),
        reader: ReaderKind::Auto,
        query: None,
    }
}

type Located = HashMap<String, [u8; 32]>;

/// Streams one side. With `only`, also returns the documents of those
/// buckets (None when there are more than [`MAX_LOCATE`]).
async fn digest_side(
    origin: &DataOrigin,
    index: &str,
    only: Option<&[usize]>,
) -> Result<(IndexDigest, Option<Located>), VerifyError> {
    match origin {
        DataOrigin::Stdin(_) => Err(VerifyError::Read(
            "standard input can be read only once: verify needs an archive or a dump file".into(),
        )),
        DataOrigin::Foreign(files) => digest_lines(ForeignLines::new(files.clone()), only).await,
        DataOrigin::Chunks(files) => digest_lines(ChunkLines::new(files.clone()), only).await,
        DataOrigin::Cluster {
            cluster,
            slices,
            page_size,
            reader,
            query,
        } => {
            // One side per slice, so that a restarted slice (a lost scroll
            // page) can start its own count again.
            let mut sides: Vec<Side> = (0..*slices).map(|_| Side::new(only)).collect();
            let (mut events, readers) = spawn_slices_matching(
                cluster.clone(),
                index,
                *slices,
                *page_size,
                *reader,
                query.clone(),
                crate::job::CancellationToken::new(),
            );
            let mut failed = None;
            while let Some((slice, event)) = events.next().await {
                let side = &mut sides[slice as usize];
                match event {
                    SliceEvent::Restart => *side = Side::new(only),
                    SliceEvent::Page(page) => {
                        for line in page.lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                            if let Err(e) = side.visit(line) {
                                failed.get_or_insert(VerifyError::Read(format!(
                                    "index {index:?}: {e}"
                                )));
                            }
                        }
                    }
                }
            }
            for r in readers {
                match r.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        failed.get_or_insert(VerifyError::Read(e.to_string()));
                    }
                    Err(e) => {
                        failed.get_or_insert(VerifyError::Read(e.to_string()));
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            let mut digest = IndexDigest::default();
            let mut located = only.map(|_| HashMap::new());
            for side in sides {
                let (d, l) = side.finish();
                digest.merge(&d);
                located = match (located, l) {
                    (Some(mut all), Some(part)) => {
                        all.extend(part);
                        (all.len() <= MAX_LOCATE).then_some(all)
                    }
                    _ => None,
                };
            }
            Ok((digest, located))
        }
    }
}

/// Digests every line of archive chunks or of a dump of another tool.
async fn digest_lines(
    mut lines: impl LineReader,
    only: Option<&[usize]>,
) -> Result<(IndexDigest, Option<Located>), VerifyError> {
    let mut side = Side::new(only);
    let mut buf = Vec::new();
    while lines.read_line(&mut buf).await.map_err(VerifyError::Read)? {
        side.visit(&buf).map_err(|reason| {
            let (path, line) = lines.position();
            VerifyError::Read(format!("{}: line {line}: {reason}", path.display()))
        })?;
    }
    Ok(side.finish())
}

/// The digest of one stream of documents, and the documents of the
/// buckets being located.
struct Side<'a> {
    digest: IndexDigest,
    only: Option<&'a [usize]>,
    located: Option<Located>,
}

impl<'a> Side<'a> {
    fn new(only: Option<&'a [usize]>) -> Side<'a> {
        Side {
            digest: IndexDigest::default(),
            only,
            located: only.map(|_| HashMap::new()),
        }
    }

    fn visit(&mut self, line: &[u8]) -> Result<(), String> {
        let parsed = parse_line(line)?;
        let id: String = serde_json::from_slice(parsed.id).map_err(|e| e.to_string())?;
        let source = std::str::from_utf8(parsed.source).map_err(|e| e.to_string())?;
        let doc: DocHash = doc_hash(&id, source)?;
        self.digest.add(&doc);
        if let (Some(only), Some(map)) = (self.only, self.located.as_mut()) {
            if only.contains(&doc.bucket) {
                if map.len() >= MAX_LOCATE {
                    self.located = None;
                } else {
                    map.insert(id, doc.hash);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> (IndexDigest, Option<Located>) {
        (self.digest, self.located)
    }
}

fn locate(archive: &Located, target: &Located, verdict: &mut IndexVerdict) {
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    let mut unexpected = Vec::new();
    for (id, hash) in archive {
        match target.get(id) {
            None => missing.push(id.clone()),
            Some(h) if h != hash => changed.push(id.clone()),
            Some(_) => {}
        }
    }
    for id in target.keys() {
        if !archive.contains_key(id) {
            unexpected.push(id.clone());
        }
    }
    for (kind, mut ids, out) in [
        ("missing on the target", missing, &mut verdict.missing),
        ("changed on the target", changed, &mut verdict.changed),
        (
            "on the target but not in the archive",
            unexpected,
            &mut verdict.unexpected,
        ),
    ] {
        if ids.is_empty() {
            continue;
        }
        ids.sort();
        verdict.differences.push(format!(
            "{} documents {kind}: {}{}",
            ids.len(),
            ids.iter()
                .take(MAX_LISTED)
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            if ids.len() > MAX_LISTED { ", …" } else { "" }
        ));
        ids.truncate(MAX_LISTED);
        *out = ids;
    }
}

/// Settings: every archived key must have the same value on the target.
/// Mappings: equal. Aliases: equal, ignoring an alias named like the index
/// (added by an atomic restore).
fn compare_metadata(
    archived: &IndexMetadata,
    live: &IndexMetadata,
    target_name: &str,
    verdict: &mut IndexVerdict,
) {
    let mut archived_flat = Map::new();
    flatten("", &archived.settings, &mut archived_flat);
    let mut live_flat = Map::new();
    flatten("", &live.settings, &mut live_flat);
    let mut settings_ok = true;
    for (key, value) in &archived_flat {
        let other = live_flat.get(key);
        if other.map(scalar_text) != Some(scalar_text(value)) {
            settings_ok = false;
            verdict.differences.push(format!(
                "setting {key}: archive {}, target {}",
                scalar_text(value),
                other.map(scalar_text).unwrap_or_else(|| "absent".into())
            ));
        }
    }
    verdict.settings_match = settings_ok;
    // Field types converted for a target of the other flavor (see
    // `restore::target::prepare`) count as the same.
    verdict.mappings_match = crate::archive::metadata::same_after_conversion(
        &crate::archive::metadata::typeless(archived.mappings.clone())
            .unwrap_or_else(|_| archived.mappings.clone()),
        &live.mappings,
    );
    if !verdict.mappings_match {
        verdict.differences.push("mappings differ".into());
    }
    let mut live_aliases = live.aliases.clone();
    if let Some(map) = live_aliases.as_object_mut() {
        if archived.aliases.get(target_name).is_none() {
            map.remove(target_name);
        }
    }
    verdict.aliases_match = normalize_empty(&archived.aliases) == normalize_empty(&live_aliases);
    if !verdict.aliases_match {
        verdict.differences.push(format!(
            "aliases differ: archive {}, target {}",
            archived.aliases, live_aliases
        ));
    }
}

fn normalize_empty(v: &Value) -> Value {
    match v {
        Value::Null => Value::Object(Map::new()),
        other => other.clone(),
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// Settings come back as strings ("2") whatever was sent (2).
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn compare_templates(
    archived: &TemplateSet,
    target: &Cluster,
) -> Result<Vec<String>, ClusterError> {
    let mut diffs = Vec::new();
    let live_legacy = target.legacy_templates().await?;
    diff_templates(
        TemplateKind::Legacy,
        &archived.legacy,
        &live_legacy,
        &mut diffs,
    );
    if let Some(index) = &archived.index {
        let live = target.index_templates().await?;
        diff_templates(TemplateKind::Index, index, &live, &mut diffs);
    }
    if let Some(component) = &archived.component {
        let live = target.component_templates().await?;
        diff_templates(TemplateKind::Component, component, &live, &mut diffs);
    }
    Ok(diffs)
}

fn diff_templates(
    kind: TemplateKind,
    archived: &Map<String, Value>,
    live: &Map<String, Value>,
    diffs: &mut Vec<String>,
) {
    for (name, body) in archived {
        match live.get(name) {
            None => diffs.push(format!(
                "{kind:?} template {name:?} is missing on the target"
            )),
            Some(other) if other != body => {
                diffs.push(format!("{kind:?} template {name:?} differs"))
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verdict() -> IndexVerdict {
        IndexVerdict {
            name: "i".into(),
            target: "i".into(),
            archive_docs: 0,
            target_docs: 0,
            documents_match: true,
            missing: vec![],
            changed: vec![],
            unexpected: vec![],
            settings_match: false,
            mappings_match: false,
            aliases_match: false,
            differences: vec![],
            error: None,
        }
    }

    #[test]
    fn settings_compare_archived_keys_as_text() {
        let archived = IndexMetadata {
            settings: json!({"index": {"number_of_shards": 2, "analysis": {"analyzer": {"a": {"type": "custom"}}}}}),
            mappings: json!({"properties": {}}),
            aliases: json!({"al": {}}),
        };
        let live = IndexMetadata {
            settings: json!({"index": {"number_of_shards": "2", "refresh_interval": "1s", "analysis": {"analyzer": {"a": {"type": "custom"}}}}}),
            mappings: json!({"properties": {}}),
            aliases: json!({"al": {}, "i": {}}),
        };
        let mut v = verdict();
        compare_metadata(&archived, &live, "i", &mut v);
        assert!(
            v.settings_match && v.mappings_match && v.aliases_match,
            "{:?}",
            v.differences
        );

        let changed = IndexMetadata {
            settings: json!({"index": {"number_of_shards": "3"}}),
            ..live
        };
        let mut v = verdict();
        compare_metadata(&archived, &changed, "i", &mut v);
        assert!(!v.settings_match);
        assert!(
            v.differences
                .iter()
                .any(|d| d == "setting index.number_of_shards: archive 2, target 3"),
            "{:?}",
            v.differences
        );
    }

    #[test]
    fn locate_names_missing_changed_and_unexpected() {
        let a: Located = [("1".to_string(), [1; 32]), ("2".to_string(), [2; 32])].into();
        let t: Located = [("2".to_string(), [9; 32]), ("3".to_string(), [3; 32])].into();
        let mut v = verdict();
        locate(&a, &t, &mut v);
        assert_eq!(v.missing, ["1"]);
        assert_eq!(v.changed, ["2"]);
        assert_eq!(v.unexpected, ["3"]);
    }
}
