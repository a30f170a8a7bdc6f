//! The plan: what a restore, copy or verify will do — the templates and,
//! per index, its target name, metadata and where its documents come from
//! (archive chunks, a live cluster, standard input, or files of another
//! tool's dump). A model the commands share, built from an archive, a
//! cluster or a foreign dump ([`input`] reads either from disk), and
//! checked whole before anything is written.

pub mod input;

use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};

use crate::archive::manifest::FileKind;
use crate::archive::reader::v1::FileCheck;
use crate::archive::reader::Archive;
use crate::archive::ArchiveError;
use crate::catalog::{
    read_metadata, read_templates, IndexMetadata, IndexSelector, MetadataBatches, TemplateSet,
};
use crate::cluster::extras::ExtraKind;
use crate::cluster::{Cluster, ClusterError};
use crate::job::Events;
use crate::source::archive::{ChunkDigest, ChunkFile, ChunkLines};
use crate::source::foreign::{ForeignError, ForeignFile, ForeignKind, ForeignLines};
use crate::source::slice::SliceCount;
use crate::source::{LineReader, ReaderKind};

/// Why a plan could not be made: nothing is written then.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Foreign(#[from] ForeignError),
    #[error("{path}: {problem}; nothing was restored (--force restores what is intact){}", if *.more > 0 { format!("; {} more damaged files", .more) } else { String::new() })]
    Damaged {
        path: String,
        problem: String,
        more: usize,
    },
    #[error("{path}: unreadable JSON: {reason}")]
    BadFile { path: String, reason: String },
    #[error("{problem}; nothing was restored (--force restores what is intact){}", if *.more > 0 { format!("; {} more bad files", .more) } else { String::new() })]
    Invalid { problem: String, more: usize },
    /// `--index` names the target of a foreign dump; an archive knows its
    /// indices' names (a usage error).
    #[error("--index applies to dumps of other tools, not to an esark archive: use --rename")]
    IndexOnArchive,
    #[error("nothing selected: {0}")]
    NothingSelected(String),
}

/// A damaged data file left out under `--force`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LostFile {
    pub file: String,
    pub docs: u64,
    pub problem: String,
}

/// Target index names: `--rename REGEX=REPLACEMENT`, then `--prefix`/`--suffix`.
#[derive(Debug, Clone, Default)]
pub struct Renamer {
    pub rename: Option<(Regex, String)>,
    pub prefix: String,
    pub suffix: String,
}

/// Why a `--rename` value is refused.
#[derive(Debug, thiserror::Error)]
pub enum RenameError {
    /// No `=` leaves a valid regex on its left: the last regex's error.
    #[error("{0}")]
    Regex(#[from] regex::Error),
    #[error("{0:?} is not REGEX=REPLACEMENT")]
    NoEquals(String),
}

impl Renamer {
    pub fn target(&self, name: &str) -> String {
        let renamed = match &self.rename {
            Some((re, replacement)) => re.replace_all(name, replacement.as_str()).into_owned(),
            None => name.to_string(),
        };
        format!("{}{}{}", self.prefix, renamed, self.suffix)
    }

    /// Parses `REGEX=REPLACEMENT`, split at the first `=` that leaves a
    /// valid regex on its left (so a regex may itself contain `=`).
    pub fn parse_rename(spec: &str) -> Result<(Regex, String), RenameError> {
        let mut last_error = None;
        for (i, _) in spec.match_indices('=') {
            match Regex::new(&spec[..i]) {
                Ok(re) => return Ok((re, spec[i + 1..].to_string())),
                Err(e) => last_error = Some(e),
            }
        }
        Err(match last_error {
            Some(e) => RenameError::Regex(e),
            None => RenameError::NoEquals(spec.to_string()),
        })
    }
}

/// Where an index's documents come from.
#[derive(Debug, Clone)]
pub enum DataOrigin {
    Chunks(Vec<ChunkFile>),
    /// Files of a dump written by another tool ([`crate::source::foreign`]).
    Foreign(Vec<ForeignFile>),
    /// An esark stream on standard input (`restore --input -`), its
    /// header already checked: read once, so not validated beforehand.
    Stdin(crate::stream::StreamInput),
    Cluster {
        cluster: Arc<Cluster>,
        slices: u32,
        page_size: usize,
        reader: ReaderKind,
        /// Only documents matching this query (raw JSON), for `copy --query`.
        query: Option<Arc<str>>,
    },
}

impl DataOrigin {
    /// The bytes of the index's chunks as stored, when the manifest gives
    /// every chunk's size (`None` for other origins).
    pub fn stored_bytes(&self) -> Option<u64> {
        match self {
            DataOrigin::Chunks(files) => files
                .iter()
                .map(|f| f.digest.as_ref().map(|d| d.bytes))
                .sum(),
            _ => None,
        }
    }
}

/// One index to restore.
#[derive(Debug, Clone)]
pub struct IndexPlan {
    /// The name in the archive (or on the source cluster).
    pub name: String,
    /// The name on the target.
    pub target: String,
    /// Documents expected (archive count, or `_count` on the source).
    pub docs: u64,
    pub meta: IndexMetadata,
    pub data: DataOrigin,
    /// A data stream: not created as an index, written with `create`.
    pub data_stream: bool,
}

/// Everything to restore.
#[derive(Debug, Clone, Default)]
pub struct RestorePlan {
    pub templates: TemplateSet,
    pub indices: Vec<IndexPlan>,
    /// Indices (or `cluster/…` files) left out because their files are
    /// damaged (only with `--force`), with why.
    pub damaged: Vec<(String, String)>,
    /// Cluster metadata beyond templates: per kind, `{name: PUT body}`.
    pub extras: Vec<(ExtraKind, Map<String, Value>)>,
    /// Damaged data files left out of an index that is restored without
    /// them (only with `--force`), by index name.
    pub lost: Vec<(String, LostFile)>,
}

impl RestorePlan {
    /// Two selected indices that `--rename`/`--prefix`/`--suffix` give one
    /// target name, as `(first, second, target)`: the second would
    /// overwrite (or, under `--mode replace`, delete) the first.
    pub fn target_clash(&self) -> Option<(&str, &str, &str)> {
        let mut seen: std::collections::HashMap<&str, &str> = Default::default();
        for index in &self.indices {
            if let Some(first) = seen.insert(&index.target, &index.name) {
                return Some((first, &index.name, &index.target));
            }
        }
        None
    }
}

/// Reads the plan for the selected indices, checking the files it needs
/// first: the cluster files and the selected indices' metadata files by
/// size and sha256 here, their data files as they are read (each
/// [`ChunkFile`] carries its digest: [`validate_data`] proves it before
/// the first write, [`check_data_digests`] where lines are not validated).
/// Files of indices that are not selected are not read at all. Without
/// `force`, any damaged file stops everything before a single write; with
/// it, damaged indices and template files are left out and listed in
/// [`RestorePlan::damaged`].
pub async fn from_archive(
    archive: &Archive,
    selector: &IndexSelector,
    renamer: &Renamer,
    force: bool,
) -> Result<RestorePlan, PlanError> {
    let reader = archive.reader();
    // A missing or wrong identity stops here, before any write.
    reader.check_identity().await?;
    let manifest = archive.manifest();
    let selected = || {
        manifest
            .indices
            .iter()
            .filter(|i| selector.selects(&i.name))
    };
    let needed = manifest.cluster_files.iter().chain(
        selected()
            .flat_map(|i| i.files.iter())
            .filter(|f| f.kind != FileKind::Data),
    );
    let problems = archive.check_files(needed).await;
    if !force {
        if let Some((path, problem)) = problems.first() {
            return Err(PlanError::Damaged {
                path: archive.root().join(path).display().to_string(),
                problem: problem.to_string(),
                more: problems.len() - 1,
            });
        }
    }
    let bad = |path: &str| -> Option<&FileCheck> {
        problems.iter().find(|(p, _)| p == path).map(|(_, c)| c)
    };
    let mut plan = RestorePlan::default();
    for file in &manifest.cluster_files {
        if let Some(problem) = bad(&file.path) {
            plan.damaged.push((file.path.clone(), problem.to_string()));
            continue;
        }
        let map: Map<String, Value> = read_json(reader, file).await?;
        match file.kind {
            FileKind::Templates => plan.templates.legacy = map,
            FileKind::IndexTemplates => plan.templates.index = Some(map),
            FileKind::ComponentTemplates => plan.templates.component = Some(map),
            other => {
                if let Some(kind) = crate::catalog::extra_kind(other) {
                    plan.extras.push((kind, map));
                }
            }
        }
    }
    // Indices the dump failed on have no files: reported, never restored.
    for failed in manifest.failed.iter().filter(|f| selector.selects(&f.name)) {
        plan.damaged.push((
            failed.name.clone(),
            format!(
                "not in the archive, the dump failed on it: {}",
                failed.reason
            ),
        ));
    }
    for index in selected() {
        if let Some((path, problem)) = index
            .files
            .iter()
            .find_map(|f| bad(&f.path).map(|c| (&f.path, c)))
        {
            plan.damaged
                .push((index.name.clone(), format!("{path}: {problem}")));
            continue;
        }
        let mut meta = IndexMetadata {
            settings: Value::Object(Map::new()),
            mappings: Value::Object(Map::new()),
            aliases: Value::Object(Map::new()),
        };
        let mut chunks = Vec::new();
        for file in &index.files {
            match file.kind {
                FileKind::Settings => meta.settings = read_json(reader, file).await?,
                FileKind::Mappings => meta.mappings = read_json(reader, file).await?,
                FileKind::Aliases => meta.aliases = read_json(reader, file).await?,
                FileKind::Data => chunks.push(chunk_file(reader, file)),
                _ => {}
            }
        }
        plan.indices.push(IndexPlan {
            name: index.name.clone(),
            target: renamer.target(&index.name),
            docs: index.docs,
            meta,
            data: DataOrigin::Chunks(chunks),
            data_stream: index.data_stream,
        });
    }
    Ok(plan)
}

/// A data file of `reader`'s archive to stream, checked against its
/// digest, and decrypted on the way when it is encrypted.
fn chunk_file(
    reader: &crate::archive::reader::Reader,
    file: &crate::archive::manifest::FileEntry,
) -> ChunkFile {
    let mut chunk = ChunkFile::new(
        reader.store().clone(),
        &file.path,
        file.docs.unwrap_or(0),
        Some(ChunkDigest {
            bytes: file.bytes,
            sha256: file.sha256.clone(),
        }),
    );
    if file.encrypted {
        chunk.encrypted = true;
        chunk.identities = reader.identities().cloned();
    }
    chunk
}

/// The plan of a foreign dump: its indices (named as the format says, or
/// `index_override`), selected by `selector`, renamed by `renamer`.
pub async fn from_foreign(
    input: &std::path::Path,
    kind: ForeignKind,
    index_override: Option<&str>,
    selector: &IndexSelector,
    renamer: &Renamer,
) -> Result<RestorePlan, ForeignError> {
    let (found, legacy) = crate::source::foreign::read(input, kind, index_override).await?;
    let mut plan = RestorePlan::default();
    plan.templates.legacy = legacy;
    for index in found.into_iter().filter(|i| selector.selects(&i.name)) {
        plan.indices.push(IndexPlan {
            target: renamer.target(&index.name),
            name: index.name,
            docs: index.docs,
            meta: index.meta,
            data: DataOrigin::Foreign(index.files),
            data_stream: false,
        });
    }
    Ok(plan)
}

/// Reads every data line of the plan before anything is written: each
/// line must be a data line and each file must hold the number of
/// documents the manifest says. A checksum proves a file is the one the
/// dump wrote; this proves its content is what a restore can load, so that
/// a broken archive is refused whole instead of half restored. With
/// `force`, bad files are left out (`drop_damaged`).
/// Files of a foreign dump are converted line by line as the load will
/// convert them.
pub async fn validate_data(plan: &mut RestorePlan, force: bool) -> Result<(), PlanError> {
    use futures::stream::{self, StreamExt};
    let mut checks = Vec::new();
    for (i, index) in plan.indices.iter().enumerate() {
        match &index.data {
            DataOrigin::Chunks(files) => {
                checks.extend(
                    files
                        .iter()
                        .enumerate()
                        .map(|(j, f)| (i, Some(j), DataCheck::Chunk(f.clone()))),
                );
            }
            DataOrigin::Foreign(files) => {
                checks.extend(
                    files
                        .iter()
                        .map(|f| (i, None, DataCheck::Foreign(f.clone()))),
                );
            }
            DataOrigin::Cluster { .. } | DataOrigin::Stdin(_) => {}
        }
    }
    let failures: Vec<(usize, Option<usize>, String)> = stream::iter(checks)
        .map(|(i, j, check)| async move {
            match check {
                DataCheck::Chunk(file) => check_lines(ChunkLines::new(vec![file])).await,
                DataCheck::Foreign(file) => check_lines(ForeignLines::new(vec![file])).await,
            }
            .map(|problem| (i, j, problem))
        })
        .buffer_unordered(2)
        .filter_map(std::future::ready)
        .collect()
        .await;
    let mut failures = failures;
    failures.sort();
    if let Some((_, _, first)) = failures.first() {
        if !force {
            return Err(PlanError::Invalid {
                problem: first.clone(),
                more: failures.len() - 1,
            });
        }
    }
    drop_damaged(plan, failures);
    Ok(())
}

/// With `--force`: leaves out each damaged data file (index `i`, file `j`
/// of its chunks, why). An index keeps its intact chunks and its lost
/// files are recorded in [`RestorePlan::lost`]; an index with no intact
/// chunk left, or a damaged file of another tool's dump, moves whole to
/// [`RestorePlan::damaged`].
fn drop_damaged(plan: &mut RestorePlan, mut bad: Vec<(usize, Option<usize>, String)>) {
    bad.sort();
    let mut whole: std::collections::BTreeMap<usize, String> = Default::default();
    // Highest file first, so that removing one keeps the others' positions.
    for (i, j, why) in bad.iter().rev() {
        let index = &mut plan.indices[*i];
        match (j, &mut index.data) {
            (Some(j), DataOrigin::Chunks(files)) => {
                let file = files.remove(*j);
                plan.lost.push((
                    index.name.clone(),
                    LostFile {
                        file: file.path.display().to_string(),
                        docs: file.docs,
                        problem: why.clone(),
                    },
                ));
                if files.is_empty() {
                    whole.insert(*i, why.clone());
                }
            }
            _ => {
                whole.insert(*i, why.clone());
            }
        }
    }
    for (i, why) in whole.into_iter().rev() {
        let index = plan.indices.remove(i);
        plan.lost.retain(|(name, _)| name != &index.name);
        plan.damaged.push((index.name, why));
    }
    plan.lost
        .sort_by(|a, b| (&a.0, &a.1.file).cmp(&(&b.0, &b.1.file)));
}

/// Checks the size and sha256 of every data file of the plan, without
/// decompressing: what a restore that does not validate lines still proves
/// before the first write. Damaged files stop it, or with `force` are left
/// out (`drop_damaged`).
pub async fn check_data_digests(plan: &mut RestorePlan, force: bool) -> Result<(), PlanError> {
    let mut bad = Vec::new();
    for (i, index) in plan.indices.iter().enumerate() {
        let DataOrigin::Chunks(files) = &index.data else {
            continue;
        };
        for (j, file) in files.iter().enumerate() {
            let Some(expected) = &file.digest else {
                continue;
            };
            let problem = match file.stored_digest().await {
                Ok((bytes, sha256)) if bytes == expected.bytes && sha256 == expected.sha256 => {
                    continue
                }
                Ok((bytes, _)) if bytes != expected.bytes => {
                    format!("{bytes} bytes, the manifest says {}", expected.bytes)
                }
                Ok(_) => "its sha256 differs from the manifest's".to_string(),
                Err(e) => e.to_string(),
            };
            bad.push((
                i,
                Some(j),
                format!("{}: damaged: {problem}", file.path.display()),
            ));
        }
    }
    if let (Some((_, _, first)), false) = (bad.first(), force) {
        return Err(PlanError::Invalid {
            problem: first.clone(),
            more: bad.len() - 1,
        });
    }
    drop_damaged(plan, bad);
    Ok(())
}

/// One file for [`validate_data`] to read.
enum DataCheck {
    Chunk(ChunkFile),
    Foreign(ForeignFile),
}

/// Reads every line of a data file as the load will (archive chunks are
/// split, documents of other tools converted); the first problem found,
/// named by file and line.
async fn check_lines(mut lines: impl LineReader) -> Option<String> {
    let mut buf = Vec::new();
    loop {
        match lines.read_line(&mut buf).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(e.to_string()),
        }
        if let Err(reason) = crate::archive::line::parse_line(&buf) {
            let (path, line) = lines.position();
            return Some(format!(
                "{}: line {line}: malformed data line: {reason}",
                path.display()
            ));
        }
    }
}

/// The plan of `restore --input -`: one index, named by `--index`, whose
/// documents come from the stream on standard input; the target infers its
/// mappings (or the index exists and `--mode merge` writes into it).
pub fn from_stdin(
    index: &str,
    renamer: &Renamer,
    input: crate::stream::StreamInput,
) -> RestorePlan {
    RestorePlan {
        indices: vec![IndexPlan {
            name: index.to_string(),
            target: renamer.target(index),
            docs: 0,
            meta: IndexMetadata {
                settings: Value::Object(Map::new()),
                mappings: Value::Object(Map::new()),
                aliases: Value::Object(Map::new()),
            },
            data: DataOrigin::Stdin(input),
            data_stream: false,
        }],
        ..RestorePlan::default()
    }
}

/// How a copy reads its source's documents.
#[derive(Debug, Clone)]
pub struct SourceReading {
    /// Slices per index (resolved against each index's shards).
    pub slices: SliceCount,
    pub page_size: usize,
    pub reader: ReaderKind,
    /// Only the documents matching this query.
    pub query: Option<Arc<str>>,
}

/// A selective plan (`--match`, `--exclude`) takes only the templates its
/// indices need: the ones whose patterns match a target name, and the
/// component templates those compose, so that verify compares what
/// restore puts back. (A copy takes every template of the source.)
pub fn keep_selected_templates(plan: &mut RestorePlan, selector: &IndexSelector) {
    if selector.include.is_none() && selector.exclude.is_none() {
        return;
    }
    let names: Vec<&str> = plan.indices.iter().map(|i| i.target.as_str()).collect();
    plan.templates.keep_needed(&names);
}

/// Reads the plan from a live cluster (for `copy`): its templates and, per
/// selected open index, its metadata; documents will be read as `reading`
/// says.
pub async fn from_cluster(
    source: Arc<Cluster>,
    selector: &IndexSelector,
    renamer: &Renamer,
    reading: &SourceReading,
    events: &Events,
) -> Result<RestorePlan, PlanError> {
    let SourceReading {
        slices,
        page_size,
        reader,
        query,
    } = reading.clone();
    let (selected, skipped) = crate::catalog::select_indices(&source, selector).await?;
    // Said before anything is read or written: copying nothing is an
    // error, as dumping nothing is.
    if selected.is_empty() {
        return Err(PlanError::NothingSelected(
            crate::catalog::nothing_selected(&source, selector, &skipped).await,
        ));
    }
    for closed in &skipped {
        events.warn(format!("index {:?} is closed; skipped", closed.name));
    }
    let mut plan = RestorePlan {
        templates: read_templates(&source, events).await?,
        ..RestorePlan::default()
    };
    let mut kinds = ExtraKind::for_flavor(source.flavor()).to_vec();
    kinds.push(ExtraKind::ClusterSettings);
    // What the source does not offer is one warning line for the run.
    let mut not_offered: Vec<(&str, String)> = Vec::new();
    for kind in kinds {
        match source.read_extra(kind).await? {
            crate::cluster::extras::Offered::Yes(items) => plan.extras.push((kind, items)),
            crate::cluster::extras::Offered::No(reason) => {
                not_offered.push((kind.describe(), reason))
            }
        }
    }
    if let Some((_, reason)) = not_offered.first() {
        let kinds: Vec<&str> = not_offered.iter().map(|(k, _)| *k).collect();
        events.warn(format!(
            "not copied, the source does not offer them: {} (first: {reason})",
            kinds.join(", ")
        ));
    }
    let batches = MetadataBatches::new(
        selected
            .iter()
            .filter(|s| s.data_stream.is_none())
            .map(|s| s.name.clone()),
    );
    for selected in selected {
        let (meta, docs) =
            read_metadata(&source, &selected, Some(&batches), true, query.as_deref()).await?;
        let docs = docs.unwrap_or_default();
        let data_stream = selected.data_stream.is_some();
        // Pages bounded in bytes too, as the dump's.
        let page_size = crate::source::page_size::from_disk(page_size, selected.doc_bytes);
        let name = selected.name;
        let slices = slices.resolve(meta.shards());
        plan.indices.push(IndexPlan {
            target: renamer.target(&name),
            name,
            docs,
            meta,
            data: DataOrigin::Cluster {
                cluster: source.clone(),
                slices,
                page_size,
                reader,
                query: query.clone(),
            },
            data_stream,
        });
    }
    Ok(plan)
}

async fn read_json<T: serde::de::DeserializeOwned>(
    reader: &crate::archive::reader::Reader,
    file: &crate::archive::manifest::FileEntry,
) -> Result<T, PlanError> {
    let bytes = reader.read(file).await?;
    serde_json::from_slice(&bytes).map_err(|e| PlanError::BadFile {
        path: reader.path_of(file).display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_then_prefix_and_suffix() {
        let r = Renamer {
            rename: Some(Renamer::parse_rename("^logs-(.*)$=archive-$1").unwrap()),
            prefix: "dr-".into(),
            suffix: "-v2".into(),
        };
        assert_eq!(r.target("logs-2024"), "dr-archive-2024-v2");
        assert_eq!(r.target("other"), "dr-other-v2");
        assert_eq!(Renamer::default().target("%kuzzle"), "%kuzzle");
    }

    #[test]
    fn two_sources_onto_one_target_name_clash() {
        let index = |name: &str, target: &str| IndexPlan {
            name: name.into(),
            target: target.into(),
            docs: 0,
            meta: IndexMetadata {
                settings: Value::Null,
                mappings: Value::Null,
                aliases: Value::Null,
            },
            data: DataOrigin::Chunks(Vec::new()),
            data_stream: false,
        };
        let mut plan = RestorePlan {
            indices: vec![index("a", "x"), index("b", "y")],
            ..RestorePlan::default()
        };
        assert_eq!(plan.target_clash(), None);
        plan.indices.push(index("c", "x"));
        assert_eq!(plan.target_clash(), Some(("a", "c", "x")));
    }

    #[test]
    fn rename_spec_splits_at_the_first_valid_regex() {
        let (re, rep) = Renamer::parse_rename("a=b").unwrap();
        assert_eq!((re.as_str(), rep.as_str()), ("a", "b"));
        let (re, rep) = Renamer::parse_rename("x(?P<n>=)?y=z").unwrap();
        assert_eq!((re.as_str(), rep.as_str()), ("x(?P<n>=)?y", "z"));
        assert!(Renamer::parse_rename("novalue").is_err());
    }
}
