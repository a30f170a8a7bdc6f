//! The catalog every command shares: which indices and data streams a run
//! covers ([`IndexSelector`], [`select_indices`]), what an index carries
//! besides its documents ([`IndexMetadata`], read by [`read_metadata`]),
//! the cluster's templates ([`TemplateSet`]) and where each kind of
//! cluster metadata lives in an archive ([`extra_file`]). Dump, restore,
//! copy, verify and the importers of other tools' dumps read it; it
//! imports none of them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use regex::Regex;
use serde_json::{Map, Value};

use crate::archive::manifest::{FileKind, SkippedIndex};
use crate::archive::metadata::strip_generated;
use crate::cluster::data_streams::DataStream;
use crate::cluster::extras::ExtraKind;
use crate::cluster::{Cluster, ClusterError};
use crate::job::Events;

/// Which indices a run covers.
#[derive(Debug, Clone, Default)]
pub struct IndexSelector {
    /// Tested (unanchored) against every index name, hidden ones included.
    /// Without it: every index whose name does not start with `.`.
    pub include: Option<Regex>,
    /// Removes matches.
    pub exclude: Option<Regex>,
    /// Without `include`, select every name (a restore takes the whole
    /// archive) instead of the names not starting with `.` (a dump).
    pub all_by_default: bool,
}

impl IndexSelector {
    pub fn selects(&self, name: &str) -> bool {
        let included = match &self.include {
            Some(re) => re.is_match(name),
            None => self.all_by_default || !name.starts_with('.'),
        };
        included && !self.exclude.as_ref().is_some_and(|re| re.is_match(name))
    }
}

/// The file and manifest kind of each kind of cluster metadata.
pub fn extra_file(kind: ExtraKind) -> (&'static str, FileKind) {
    match kind {
        ExtraKind::IlmPolicies => ("cluster/ilm_policies.json", FileKind::IlmPolicies),
        ExtraKind::IsmPolicies => ("cluster/ism_policies.json", FileKind::IsmPolicies),
        ExtraKind::IngestPipelines => ("cluster/ingest_pipelines.json", FileKind::IngestPipelines),
        ExtraKind::StoredScripts => ("cluster/stored_scripts.json", FileKind::StoredScripts),
        ExtraKind::DataStreams => ("cluster/data_streams.json", FileKind::DataStreams),
        ExtraKind::ClusterSettings => ("cluster/cluster_settings.json", FileKind::ClusterSettings),
    }
}

/// The kind of cluster metadata a manifest file holds, if it is one.
pub fn extra_kind(kind: FileKind) -> Option<ExtraKind> {
    [
        ExtraKind::IlmPolicies,
        ExtraKind::IsmPolicies,
        ExtraKind::IngestPipelines,
        ExtraKind::StoredScripts,
        ExtraKind::DataStreams,
        ExtraKind::ClusterSettings,
    ]
    .into_iter()
    .find(|k| extra_file(*k).1 == kind)
}

/// An index's metadata as archived: settings (server-generated keys
/// removed), mappings and aliases.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexMetadata {
    pub settings: Value,
    pub mappings: Value,
    pub aliases: Value,
}

impl IndexMetadata {
    /// `page_size`, or the index's `max_result_window` when smaller: a
    /// scroll or search page larger than it is refused ("Batch size is too
    /// large").
    pub fn page_size(&self, page_size: usize) -> usize {
        let window = self
            .settings
            .pointer("/index/max_result_window")
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()));
        match window {
            Some(w) if w > 0 => page_size.min(usize::try_from(w).unwrap_or(usize::MAX)),
            _ => page_size,
        }
    }

    /// Primary shards, from the settings.
    pub fn shards(&self) -> u32 {
        self.settings
            .pointer("/index/number_of_shards")
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
            .unwrap_or(1) as u32
    }
}

/// Reads an index's metadata and its `_count` (each request retried by
/// the cluster's policy).
pub async fn read_index_metadata(
    cluster: &Cluster,
    name: &str,
) -> Result<(IndexMetadata, u64), ClusterError> {
    let meta = read_index_metadata_with(cluster, name, None).await?;
    Ok((meta, cluster.count(name, None).await?))
}

/// An index's metadata, already read when `batches` holds it.
async fn read_index_metadata_with(
    cluster: &Cluster,
    name: &str,
    batches: Option<&MetadataBatches>,
) -> Result<IndexMetadata, ClusterError> {
    let prefetched = match batches {
        Some(batches) => batches.take(cluster, name).await,
        None => None,
    };
    let mut meta = match prefetched {
        Some(meta) => meta,
        None => IndexMetadata {
            settings: cluster.index_settings(name).await?,
            mappings: cluster.index_mappings(name).await?,
            aliases: cluster.index_aliases(name).await?,
        },
    };
    strip_generated(&mut meta.settings);
    Ok(meta)
}

/// An index or data stream a run covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub name: String,
    /// Set for a data stream: read by its name, restored with `create`.
    pub data_stream: Option<DataStream>,
    /// Bytes on disk per document (the primaries', over all the backing
    /// indices of a data stream), when the listing gave them: what a page
    /// of it weighs, about ([`crate::source::page_size::from_disk`]).
    pub doc_bytes: Option<u64>,
    /// Documents, as the listing counted them (`docs.count` of
    /// `_cat/indices`: refreshed ones, nested documents included, so
    /// never fewer than a search finds then), when it gave them.
    pub listed_docs: Option<u64>,
}

impl Selected {
    pub fn index(name: &str) -> Selected {
        Selected {
            name: name.to_string(),
            data_stream: None,
            doc_bytes: None,
            listed_docs: None,
        }
    }
}

/// Bytes per document over `listed` (docs, bytes) pairs.
fn per_doc(listed: impl IntoIterator<Item = (u64, u64)>) -> Option<u64> {
    let (docs, bytes) = listed
        .into_iter()
        .fold((0u64, 0u64), |(d, b), (dd, bb)| (d + dd, b + bb));
    (docs > 0).then(|| bytes / docs)
}

/// The open indices and the data streams `selector` picks, and the closed
/// indices it would have. The backing indices of a selected data stream
/// are left out: its documents are read once, through the data stream.
pub async fn select_indices(
    cluster: &Cluster,
    selector: &IndexSelector,
) -> Result<(Vec<Selected>, Vec<SkippedIndex>), ClusterError> {
    let listed = cluster.list_indices().await?;
    let streams: Vec<DataStream> = if cluster.info().has_data_streams() {
        cluster
            .list_data_streams()
            .await?
            .into_iter()
            .filter(|d| selector.selects(&d.name))
            .collect()
    } else {
        Vec::new()
    };
    let backing: HashSet<&str> = streams
        .iter()
        .flat_map(|d| d.backing.iter().map(String::as_str))
        .collect();
    let sizes: HashMap<&str, (u64, u64)> = listed
        .iter()
        .filter_map(|i| Some((i.index.as_str(), i.docs_and_bytes()?)))
        .collect();
    let stream_bytes: Vec<Option<u64>> = streams
        .iter()
        .map(|d| {
            per_doc(
                d.backing
                    .iter()
                    .filter_map(|b| sizes.get(b.as_str()).copied()),
            )
        })
        .collect();
    let mut skipped = Vec::new();
    let mut selected = Vec::new();
    for index in listed
        .into_iter()
        .filter(|i| selector.selects(&i.index) && !backing.contains(i.index.as_str()))
    {
        if index.is_closed() {
            skipped.push(SkippedIndex {
                name: index.index,
                reason: "closed".into(),
            });
        } else {
            selected.push(Selected {
                doc_bytes: per_doc(index.docs_and_bytes()),
                listed_docs: index.docs_and_bytes().map(|(docs, _)| docs),
                ..Selected::index(&index.index)
            });
        }
    }
    selected.extend(
        streams
            .iter()
            .zip(stream_bytes)
            .map(|(d, doc_bytes)| Selected {
                name: d.name.clone(),
                data_stream: Some(d.clone()),
                doc_bytes,
                listed_docs: None,
            }),
    );
    selected.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((selected, skipped))
}

/// The one line of a selection of `cluster` that picked nothing (dump,
/// copy): what was matched against, closed indices it matched, and what a
/// `--match` naming an alias should name instead.
pub async fn nothing_selected(
    cluster: &Cluster,
    selector: &IndexSelector,
    skipped: &[SkippedIndex],
) -> String {
    let listed = cluster.list_indices().await.map(|l| l.len()).unwrap_or(0);
    let mut line = match &selector.include {
        Some(re) => format!(
            "--match '{}' selects none of the {listed} indices",
            re.as_str()
        ),
        None => format!(
            "none of the {listed} indices is selected by default (names not starting with '.')"
        ),
    };
    line.push_str(&format!(" of {}", cluster.url()));
    if let Some(exclude) = &selector.exclude {
        line.push_str(&format!(
            " once --exclude '{}' is applied",
            exclude.as_str()
        ));
    }
    if !skipped.is_empty() {
        let names: Vec<&str> = skipped.iter().map(|s| s.name.as_str()).collect();
        line.push_str(&format!(
            "; it matches only closed indices ({}): open them to dump them",
            names.join(", ")
        ));
    }
    if let Some(re) = &selector.include {
        let aliases = cluster.aliases().await.unwrap_or_default();
        for (alias, indices) in aliases.iter().filter(|(a, _)| re.is_match(a)).take(3) {
            line.push_str(&format!(
                "; {alias} is an alias of {}: match those",
                indices.join(", ")
            ));
        }
    }
    line
}

/// Like [`read_index_metadata`], for an index or a data stream, with its
/// `_count` (matching `query`, raw JSON, if given) when `count`. A data
/// stream's mappings and settings belong to its index template: only the
/// settings of its write index are read, for its number of shards.
pub async fn read_metadata(
    cluster: &Cluster,
    selected: &Selected,
    batches: Option<&MetadataBatches>,
    count: bool,
    query: Option<&str>,
) -> Result<(IndexMetadata, Option<u64>), ClusterError> {
    let meta = match &selected.data_stream {
        None => read_index_metadata_with(cluster, &selected.name, batches).await?,
        Some(stream) => IndexMetadata {
            settings: match stream.backing.last() {
                Some(write_index) => cluster.index_settings(write_index).await?,
                None => Value::Object(Map::new()),
            },
            mappings: Value::Object(Map::new()),
            aliases: Value::Object(Map::new()),
        },
    };
    let docs = match count {
        true => Some(cluster.count(&selected.name, query).await?),
        false => None,
    };
    Ok((meta, docs))
}

/// The settings, mappings and aliases of the indices a run reads, fetched
/// a batch of indices at a time (`GET /a,b,…/_settings`, `/_mapping` and
/// `/_alias`): three requests per batch instead of three per index, which
/// were three of the seven requests of a small index's dump
/// (benches/RESULTS.md, many small indices).
///
/// A batch is formed when the first of its indices is asked for, from that
/// index on in the order given, and fetched then; each entry is handed out
/// once. Its size follows the answers before it, so that a batch's answers
/// weigh about [`BATCH_BYTES`] whatever the mappings weigh: the first batch
/// takes [`FIRST_BATCH_INDICES`], each later one as many indices as weigh
/// [`BATCH_BYTES`] at the bytes per index of the batch before (at most
/// [`BATCH_INDICES`], at least one). Memory holds at most the batches in
/// use, whatever the number of indices. A batch that cannot be read (an
/// index of it deleted meanwhile answers 404 for the whole request) is
/// left empty: its indices are then read one by one, as before, so that a
/// failure is that of the index it concerns.
pub struct MetadataBatches {
    names: Vec<String>,
    position: HashMap<String, usize>,
    state: Mutex<BatchState>,
}

/// The batches formed so far and what the last one weighed.
#[derive(Default)]
struct BatchState {
    /// The batch of each index not handed out yet.
    batch_of: HashMap<String, std::sync::Arc<Batch>>,
    /// Bytes of answers per index, in the last batch fetched.
    bytes_per_index: Option<usize>,
}

struct Batch {
    names: Vec<String>,
    fetched: tokio::sync::OnceCell<Mutex<BatchEntries>>,
}

/// The settings, mappings and aliases of a batch's indices not handed out
/// yet.
type BatchEntries = HashMap<String, IndexMetadata>;

/// At most this many indices per batch request.
pub const BATCH_INDICES: usize = 100;
/// Indices of the first batch, before any answer was weighed: ten
/// mappings of the largest kind seen (some 200 KB at Elasticsearch's
/// default limit of 1,000 fields) stay a few megabytes.
pub const FIRST_BATCH_INDICES: usize = 10;
/// About this many bytes of answers (the three together) per batch; the
/// parsed values take a few times that. Small mappings (a few KB, as in
/// benches/) fill [`BATCH_INDICES`] well before it.
pub const BATCH_BYTES: usize = 1 << 20;
/// At most this many bytes of index names (percent-encoded, with commas)
/// per request path: Elasticsearch refuses request lines over 4 KiB by
/// default (`http.max_initial_line_length`).
const BATCH_PATH_BYTES: usize = 3000;

impl BatchState {
    fn next_size(&self) -> usize {
        match self.bytes_per_index {
            None => FIRST_BATCH_INDICES,
            Some(b) => (BATCH_BYTES / b.max(1)).clamp(1, BATCH_INDICES),
        }
    }
}

impl MetadataBatches {
    /// Batches of `names` (indices, not data streams), in the order given:
    /// the order in which they will be asked for.
    pub fn new(names: impl IntoIterator<Item = String>) -> MetadataBatches {
        let names: Vec<String> = names.into_iter().collect();
        let position = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        MetadataBatches {
            names,
            position,
            state: Mutex::new(BatchState::default()),
        }
    }

    /// The batch `name` belongs to, formed from `name` on if it has none.
    fn batch_for(&self, name: &str) -> Option<std::sync::Arc<Batch>> {
        let pos = *self.position.get(name)?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(batch) = state.batch_of.get(name) {
            return Some(batch.clone());
        }
        let size = state.next_size();
        let mut names = Vec::new();
        let mut bytes = 0;
        for n in &self.names[pos..] {
            let len = crate::cluster::encode_segment(n).len() + 1;
            let taken = state.batch_of.contains_key(n);
            if taken || names.len() >= size || (!names.is_empty() && bytes + len > BATCH_PATH_BYTES)
            {
                break;
            }
            bytes += len;
            names.push(n.clone());
        }
        let batch = std::sync::Arc::new(Batch {
            names,
            fetched: tokio::sync::OnceCell::new(),
        });
        for n in &batch.names {
            state.batch_of.insert(n.clone(), batch.clone());
        }
        Some(batch)
    }

    /// The settings, mappings and aliases of `name` (settings as the
    /// cluster gave them), once, if its batch could be read.
    async fn take(&self, cluster: &Cluster, name: &str) -> Option<IndexMetadata> {
        let batch = self.batch_for(name)?;
        let entries = batch
            .fetched
            .get_or_init(|| async {
                let names = &batch.names;
                let all = async {
                    let mut settings = cluster.settings_of(names).await?;
                    let mut mappings = cluster.mappings_of(names).await?;
                    let mut aliases = cluster.aliases_of(names).await?;
                    let bytes = settings.bytes + mappings.bytes + aliases.bytes;
                    let entries: BatchEntries = names
                        .iter()
                        .filter_map(|n| {
                            let meta = IndexMetadata {
                                settings: settings.by_name.remove(n)?,
                                mappings: mappings.by_name.remove(n)?,
                                aliases: aliases.by_name.remove(n)?,
                            };
                            Some((n.clone(), meta))
                        })
                        .collect();
                    Ok::<_, ClusterError>((entries, bytes))
                };
                let entries = match all.await {
                    Ok((entries, bytes)) => {
                        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        state.bytes_per_index = Some(bytes / names.len().max(1));
                        entries
                    }
                    Err(e) => {
                        tracing::info!(
                            "reading the metadata of {} indices at once failed ({e}): one by one",
                            names.len()
                        );
                        HashMap::new()
                    }
                };
                Mutex::new(entries)
            })
            .await;
        let entry = entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        // The batch goes once its last index has been handed out.
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .batch_of
            .remove(name);
        entry
    }
}

/// The cluster's templates of each kind, `{name: body}`; kinds the cluster
/// does not offer are empty.
#[derive(Debug, Clone, Default)]
pub struct TemplateSet {
    pub legacy: Map<String, Value>,
    pub index: Option<Map<String, Value>>,
    pub component: Option<Map<String, Value>>,
}

impl TemplateSet {
    /// Keeps only the templates that shape one of `names` (the target names of
    /// the selected indices): the index and legacy templates whose patterns
    /// match one, and the component templates those index templates compose.
    pub fn keep_needed(&mut self, names: &[&str]) {
        self.legacy.retain(|_, body| matches_any(body, names));
        let mut composed: BTreeSet<String> = BTreeSet::new();
        if let Some(index) = self.index.as_mut() {
            index.retain(|_, body| matches_any(body, names));
            for body in index.values() {
                for c in body
                    .get("composed_of")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    composed.insert(c.to_string());
                }
            }
        }
        if let Some(component) = self.component.as_mut() {
            component.retain(|name, _| composed.contains(name));
        }
    }
}

/// Whether an index pattern (`logs-*`, `*`) matches `name`: `*` is any
/// run of characters, everything else is literal.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    if !name.ends_with(last) {
        return false;
    }
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The `index_patterns` of a template body (a string or a list), or the
/// `template` field of a legacy template of Elasticsearch 5.
pub fn template_patterns(body: &Value) -> Vec<String> {
    match body.get("index_patterns").or_else(|| body.get("template")) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

pub fn matches_any(body: &Value, names: &[&str]) -> bool {
    template_patterns(body)
        .iter()
        .any(|p| names.iter().any(|n| glob_matches(p, n)))
}

/// Reads every template of the cluster.
pub async fn read_templates(
    cluster: &Cluster,
    events: &Events,
) -> Result<TemplateSet, ClusterError> {
    let mut set = TemplateSet {
        legacy: cluster.legacy_templates().await?,
        ..TemplateSet::default()
    };
    if cluster.info().has_composable_templates() {
        let not_offered = |e: &ClusterError| matches!(e.status(), Some(400 | 404 | 405));
        match cluster.index_templates().await {
            Ok(m) => set.index = Some(m),
            Err(e) if not_offered(&e) => events.warn(format!(
                "composable index templates skipped: the cluster does not offer them ({e})"
            )),
            Err(e) => return Err(e),
        }
        match cluster.component_templates().await {
            Ok(m) => set.component = Some(m),
            Err(e) if not_offered(&e) => events.warn(format!(
                "component templates skipped: the cluster does not offer them ({e})"
            )),
            Err(e) => return Err(e),
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use super::*;

    #[test]
    fn bytes_per_document_over_several_indices() {
        assert_eq!(per_doc([(10, 1000), (30, 3000)]), Some(100));
        assert_eq!(per_doc([(0, 0)]), None);
    }

    #[test]
    fn only_templates_of_selected_indices_and_their_components_are_kept() {
        let map = |v: Value| v.as_object().unwrap().clone();
        let mut set = TemplateSet {
            legacy: map(json!({"l-logs": {"index_patterns": ["logs-*"]},
                               "l-old": {"template": "logs-*"},
                               "l-other": {"index_patterns": "other-*"}})),
            index: Some(map(
                json!({"t-logs": {"index_patterns": ["logs-*"], "composed_of": ["c-logs"]},
                                   "t-other": {"index_patterns": ["other-*"], "composed_of": ["c-other"]}}),
            )),
            component: Some(map(json!({"c-logs": {}, "c-other": {}}))),
        };
        set.keep_needed(&["logs-1"]);
        let names = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&set.legacy), ["l-logs", "l-old"]);
        assert_eq!(names(set.index.as_ref().unwrap()), ["t-logs"]);
        assert_eq!(names(set.component.as_ref().unwrap()), ["c-logs"]);
    }
}
