//! The dump command end to end: connect, select indices, write cluster and
//! index metadata, stream every index's documents, write the manifest last.
//!
//! Its own parts: [`pipeline`] wires each slice's reader to its chunk
//! writer, [`checkpoint`] records what is safely on disk for `--resume`
//! (the archive format does not know its content, only its file name).

pub mod checkpoint;
pub mod pipeline;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use regex::Regex;
use serde_json::Value;
use tokio::sync::watch;

use crate::archive::compression::Compression;
use crate::archive::manifest::now_rfc3339;
use crate::archive::manifest::{
    DumpOptions, FailedIndex, FileEntry, FileKind, IndexEntry, Manifest, RawQuery, SkippedIndex,
    SourceCluster,
};
use crate::archive::naming::folder_name;
use crate::archive::writer::ArchiveWriter;
use crate::archive::{ArchiveError, CURRENT_VERSION, FORMAT_NAME};
use crate::cluster::extras::{ExtraKind, Offered};
use crate::cluster::{Cluster, ClusterConfig, ClusterError};
use crate::progress::Progress;
use crate::source::ReaderKind;
use checkpoint::{checkpointer, Checkpoint, Checkpointer, IndexCheckpoint, CHECKPOINT_FILE};
use pipeline::{dump_data, DataJob, PipelineError};

// The catalog moved out of the dump; re-exported for callers not yet updated.
pub use crate::catalog::{
    extra_file, extra_kind, read_index_metadata, read_metadata, read_templates, select_indices,
    IndexMetadata, IndexSelector, Selected, TemplateSet,
};

/// Default of `--readers`: slices read at the same time over all indices.
///
/// Two keeps a server with two cores busy (what the raw scroll baseline of
/// `benches/` uses) and bounds memory by two slices' pages whatever the
/// number of indices and shards: with one slice per shard of two indices at
/// once, the peak resident memory of a 100,000-document dump grew with
/// every shard that was read at the same time.
pub const DEFAULT_READERS: usize = 2;

pub use crate::source::slice::AUTO_SLICES_MAX;

/// How many slices to read an index with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceCount {
    /// One per primary shard, at most [`AUTO_SLICES_MAX`].
    Auto,
    /// As given, but never more than the primary shards.
    Fixed(u32),
}

impl SliceCount {
    pub fn resolve(self, shards: u32) -> u32 {
        let shards = shards.max(1);
        match self {
            SliceCount::Auto => shards.min(AUTO_SLICES_MAX),
            SliceCount::Fixed(n) => n.clamp(1, shards),
        }
    }
}

impl std::fmt::Display for SliceCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SliceCount::Auto => f.write_str("auto"),
            SliceCount::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// A resolved dump: everything the command line said, checked.
#[derive(Debug, Clone)]
pub struct DumpConfig {
    pub source: ClusterConfig,
    pub output: PathBuf,
    pub selector: IndexSelector,
    pub compression: Compression,
    pub level: i32,
    pub slices: SliceCount,
    /// Indices dumped at the same time.
    pub parallel: usize,
    /// Slices read at the same time, over all indices.
    pub readers: usize,
    pub page_size: usize,
    pub file_size: u64,
    pub overwrite: bool,
    /// Continue the interrupted dump in `output`.
    pub resume: bool,
    pub reader: ReaderKind,
    /// Only documents matching this query (raw JSON of a query object).
    pub query: Option<Arc<str>>,
    /// Also dump persistent cluster settings.
    pub include_cluster_settings: bool,
    /// The options that shape an archive's files which the command line
    /// named explicitly: a resumed dump refuses those that contradict the
    /// ones it recorded.
    pub asked: AskedOptions,
}

/// Options given explicitly on the command line, among those a dump
/// records (`None`: not given, the recorded or default value applies).
#[derive(Debug, Clone, Default)]
pub struct AskedOptions {
    pub compression: Option<Compression>,
    pub level: Option<i32>,
    pub slices: Option<String>,
    pub page_size: Option<usize>,
    pub file_size: Option<u64>,
    pub match_: Option<String>,
    pub exclude: Option<String>,
    pub query: Option<Arc<str>>,
    pub reader: Option<ReaderKind>,
}

impl AskedOptions {
    /// Each given option that differs from what the interrupted dump
    /// recorded, as `--flag X (recorded: Y)`.
    pub fn contradictions(&self, recorded: &DumpOptions, reader: ReaderKind) -> Vec<String> {
        fn differs<T: PartialEq + std::fmt::Display>(
            out: &mut Vec<String>,
            flag: &str,
            asked: Option<T>,
            recorded: Option<T>,
        ) {
            if let Some(asked) = asked {
                if Some(&asked) != recorded.as_ref() {
                    let was = recorded.map_or("none".to_string(), |r| r.to_string());
                    out.push(format!("--{flag} {asked} (recorded: {was})"));
                }
            }
        }
        let mut out = Vec::new();
        differs(
            &mut out,
            "compression",
            self.compression,
            Some(recorded.compression),
        );
        differs(&mut out, "level", self.level, Some(recorded.level));
        differs(
            &mut out,
            "slices",
            self.slices.clone(),
            Some(recorded.slices.clone()),
        );
        differs(
            &mut out,
            "page-size",
            self.page_size,
            Some(recorded.page_size),
        );
        differs(
            &mut out,
            "file-size",
            self.file_size,
            Some(recorded.file_size),
        );
        differs(
            &mut out,
            "match",
            self.match_.clone(),
            recorded.match_.clone(),
        );
        differs(
            &mut out,
            "exclude",
            self.exclude.clone(),
            recorded.exclude.clone(),
        );
        let name = |r: ReaderKind| {
            clap::ValueEnum::to_possible_value(&r)
                .map_or_else(|| format!("{r:?}"), |v| v.get_name().to_string())
        };
        differs(
            &mut out,
            "reader",
            self.reader.map(name),
            Some(name(reader)),
        );
        if let Some(asked) = &self.query {
            let same = match (RawQuery::new(asked), &recorded.query) {
                (Ok(a), Some(r)) => &a == r,
                _ => false,
            };
            if !same {
                let was = recorded.query.as_ref().map_or("none", |q| q.get());
                out.push(format!("--query {asked} (recorded: {was})"));
            }
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("dump incomplete, no manifest written: {}; continue it with `esark dump --resume` and the same --source and --output", describe_failures(.0))]
    IndicesFailed(Vec<(String, String)>),
    #[error("{} of {total} indices could not be dumped: {}; the archive in {} holds the others and lists these as failed{}", .failed.len(), describe_failures(.failed), .output.display(), if *.resumable { " (`esark dump --resume` with the same --output retries them)" } else { "" })]
    Incomplete {
        output: PathBuf,
        failed: Vec<(String, String)>,
        total: usize,
        /// Written in place (not beside an archive it was to replace).
        resumable: bool,
    },
    #[error("{error}; nothing was replaced: the previous archive in {} is untouched", .output.display())]
    NotReplaced {
        output: PathBuf,
        error: Box<DumpError>,
    },
    #[error("nothing to dump: {0}")]
    NothingSelected(String),
    #[error("interrupted")]
    Stopped,
    /// [`DumpError::IndicesFailed`] of a run whose folder was discarded.
    #[error("{}", describe_failures(.0))]
    Failed(Vec<(String, String)>),
    #[error("interrupted: the dump in {} is incomplete (no manifest); continue it with `esark dump --resume` and the same --source and --output", .0.display())]
    Interrupted(PathBuf),
    #[error("cannot resume: {0}")]
    NothingToResume(String),
    #[error("cannot resume with other options than the interrupted dump recorded: {}; leave them out to continue with the recorded ones, or start a new dump with --overwrite", .0.join(", "))]
    ResumeContradicts(Vec<String>),
    #[error("invalid --query: {0}")]
    BadQuery(String),
    #[error("{0}")]
    Pipe(String),
    /// The reader of `--output -` went away (`| head`): the stream is
    /// incomplete, and saying so is the point of a pipe's exit code.
    #[error("standard output was closed before the dump finished ({written} documents written): the reader of the pipe went away")]
    PipeClosed { written: u64 },
    #[error("cannot resume: unreadable checkpoint: {0}")]
    BadCheckpoint(String),
}

fn describe_failures(failures: &[(String, String)]) -> String {
    failures
        .iter()
        .map(|(name, why)| format!("index {name:?} failed: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a finished dump produced.
#[derive(Debug)]
pub struct DumpReport {
    pub output: PathBuf,
    pub manifest: Manifest,
    pub elapsed: Duration,
}

impl DumpConfig {
    /// The options recorded in the manifest (and the checkpoint).
    pub fn options(&self) -> Result<DumpOptions, DumpError> {
        Ok(DumpOptions {
            compression: self.compression,
            level: self.level,
            slices: self.slices.to_string(),
            page_size: self.page_size,
            file_size: self.file_size,
            match_: self
                .selector
                .include
                .as_ref()
                .map(|r| r.as_str().to_string()),
            exclude: self
                .selector
                .exclude
                .as_ref()
                .map(|r| r.as_str().to_string()),
            query: self
                .query
                .as_deref()
                .map(RawQuery::new)
                .transpose()
                .map_err(|e| DumpError::BadQuery(e.to_string()))?,
        })
    }

    /// This config with the options an interrupted dump ran with: they
    /// shaped the files already on disk, so a resumed run must keep them.
    fn resumed_with(&self, checkpoint: &Checkpoint) -> Result<DumpConfig, DumpError> {
        let o = &checkpoint.options;
        let contradictions = self.asked.contradictions(o, checkpoint.reader);
        if !contradictions.is_empty() {
            return Err(DumpError::ResumeContradicts(contradictions));
        }
        let regex = |r: &Option<String>| -> Result<Option<Regex>, DumpError> {
            r.as_deref()
                .map(|r| Regex::new(r).map_err(|e| DumpError::BadCheckpoint(e.to_string())))
                .transpose()
        };
        Ok(DumpConfig {
            selector: IndexSelector {
                include: regex(&o.match_)?,
                exclude: regex(&o.exclude)?,
                all_by_default: false,
            },
            compression: o.compression,
            level: o.level,
            slices: match o.slices.as_str() {
                "auto" => SliceCount::Auto,
                n => SliceCount::Fixed(
                    n.parse()
                        .map_err(|_| DumpError::BadCheckpoint(format!("slices {n:?}")))?,
                ),
            },
            page_size: o.page_size,
            file_size: o.file_size,
            reader: checkpoint.reader,
            query: o.query.as_ref().map(|q| Arc::from(q.get())),
            ..self.clone()
        })
    }
}

/// Runs a dump, or continues one with `config.resume`. `cancel` turning
/// `true` stops it (Ctrl-C): the checkpoint then says where to continue.
pub async fn run(
    config: &DumpConfig,
    progress: &Progress,
    cancel: watch::Receiver<bool>,
) -> Result<DumpReport, DumpError> {
    let started = Instant::now();
    // Connect first, so that an unreachable cluster leaves no folder behind.
    let cluster = Arc::new(Cluster::connect(&config.source).await?);
    let info = cluster.info().clone();
    if !info.is_supported() {
        progress.println(&format!(
            "warning: {} {} is not a version esark is tested with (Elasticsearch 6-9, OpenSearch 1-3); continuing",
            info.flavor, info.version
        ));
    }
    let source = SourceCluster {
        url: cluster.url().to_string(),
        cluster_name: info.cluster_name.clone(),
        cluster_uuid: info.cluster_uuid.clone(),
        flavor: info.flavor,
        version: info.version.clone(),
    };
    let (checkpoint, config) = if config.resume {
        let checkpoint = open_checkpoint(&config.output, &source).await?;
        let resumed = config.resumed_with(&checkpoint)?;
        (checkpoint, resumed)
    } else {
        let checkpoint = Checkpoint::new(
            now_rfc3339(),
            source.clone(),
            config.options()?,
            config.reader,
        );
        (checkpoint, config.clone())
    };
    let config = &config;

    // Selected before anything is written: selecting nothing is an error,
    // not an empty archive.
    let (selected, skipped) = select_indices(&cluster, &config.selector).await?;
    if selected.is_empty() {
        return Err(nothing_selected(&cluster, &config.selector, &skipped).await);
    }

    let archive = if config.resume {
        ArchiveWriter::open_existing(&config.output).await?
    } else {
        ArchiveWriter::create(&config.output, config.overwrite).await?
    };
    for closed in &skipped {
        progress.println(&format!(
            "warning: index {:?} is closed; skipped",
            closed.name
        ));
    }
    let written = write_archive(
        &cluster, &archive, config, checkpoint, source, selected, skipped, progress, cancel,
    )
    .await;
    if archive.replaces().is_none() {
        return written.map(|manifest| DumpReport {
            output: config.output.clone(),
            manifest,
            elapsed: started.elapsed(),
        });
    }
    // `--overwrite` of an archive: the new one replaces it only when whole.
    match written {
        Ok(manifest) => {
            archive.replace().await?;
            Ok(DumpReport {
                output: config.output.clone(),
                manifest,
                elapsed: started.elapsed(),
            })
        }
        Err(error) => {
            // A partial archive (failed indices) is kept beside the old
            // one for a look (its error names it); anything else is of no
            // use. The next run removes it.
            if !matches!(error, DumpError::Incomplete { .. }) {
                archive.discard().await?;
            }
            // Nothing is left to resume: say only that it stopped.
            let error = match error {
                DumpError::Interrupted(_) => DumpError::Stopped,
                DumpError::IndicesFailed(failures) => DumpError::Failed(failures),
                other => other,
            };
            Err(DumpError::NotReplaced {
                output: config.output.clone(),
                error: Box::new(error),
            })
        }
    }
}

/// Writes the archive of `selected` into `archive`, manifest last, and
/// returns the manifest. Indices that failed are listed in it as failed,
/// and the run then ends in [`DumpError::Incomplete`].
#[allow(clippy::too_many_arguments)]
async fn write_archive(
    cluster: &Arc<Cluster>,
    archive: &ArchiveWriter,
    config: &DumpConfig,
    checkpoint: Checkpoint,
    source: SourceCluster,
    selected: Vec<Selected>,
    skipped: Vec<SkippedIndex>,
    progress: &Progress,
    cancel: watch::Receiver<bool>,
) -> Result<Manifest, DumpError> {
    let checkpointer = Arc::new(checkpointer(archive.root(), checkpoint.clone()));
    // Written at once: even a run killed before its first chunk can resume.
    checkpointer.update(|_| {})?;
    checkpointer.flush().await?;
    let total = selected.len();

    let mut cluster_files = dump_templates(cluster, archive, progress).await?;
    cluster_files
        .extend(dump_extras(cluster, archive, config.include_cluster_settings, progress).await?);

    let readers = Arc::new(tokio::sync::Semaphore::new(config.readers.max(1)));
    let results: Vec<(String, Result<IndexEntry, IndexFailure>)> = stream::iter(selected)
        .map(|selected| {
            let name = selected.name.clone();
            let readers = readers.clone();
            let cluster = cluster.clone();
            let archive = archive.clone();
            let cancel = cancel.clone();
            let checkpointer = checkpointer.clone();
            let earlier = checkpoint.indices.get(&name).cloned();
            async move {
                let r = match earlier.as_ref().and_then(|e| e.done.clone()) {
                    Some(done) => {
                        progress.expect(done.docs);
                        progress.index(&name, done.docs).inc(done.docs);
                        Ok(done)
                    }
                    None => {
                        dump_index(
                            &cluster,
                            &archive,
                            config,
                            &selected,
                            progress,
                            &checkpointer,
                            earlier,
                            readers,
                            cancel,
                        )
                        .await
                    }
                };
                (name, r)
            }
        })
        .buffer_unordered(config.parallel.max(1))
        .collect()
        .await;
    // Whatever happened, what is recorded is on disk before the run ends.
    checkpointer.flush().await?;

    if *cancel.borrow() {
        return Err(DumpError::Interrupted(config.output.clone()));
    }
    let mut indices = Vec::new();
    let mut failed = Vec::new();
    let mut run_failures = Vec::new();
    for (name, result) in results {
        match result {
            Ok(entry) => indices.push(entry),
            Err(IndexFailure {
                reason,
                run_level: true,
            }) => run_failures.push((name, reason)),
            Err(IndexFailure { reason, .. }) => failed.push(FailedIndex { name, reason }),
        }
    }
    // Lost credentials, the network, a full disk: not a fact about an
    // index to record, but a run to continue with --resume.
    if !run_failures.is_empty() {
        run_failures.sort();
        return Err(DumpError::IndicesFailed(run_failures));
    }
    indices.sort_by(|a, b| a.name.cmp(&b.name));
    failed.sort_by(|a, b| a.name.cmp(&b.name));

    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: CURRENT_VERSION,
        tool_version: crate::TOOL_VERSION.into(),
        created_at: checkpoint.created_at.clone(),
        completed_at: now_rfc3339(),
        source,
        options: config.options()?,
        cluster_files,
        indices,
        skipped,
        failed: failed.clone(),
    };
    archive.write_manifest(&manifest).await?;
    if !failed.is_empty() {
        // The checkpoint stays: `--resume` retries the failed indices.
        return Err(DumpError::Incomplete {
            output: archive.root().to_path_buf(),
            failed: failed.into_iter().map(|f| (f.name, f.reason)).collect(),
            total,
            resumable: archive.replaces().is_none(),
        });
    }
    checkpointer.remove().await?;
    Ok(manifest)
}

/// The error of a selection that picked nothing, saying what was matched
/// against, and what a `--match` naming an alias should name instead.
async fn nothing_selected(
    cluster: &Cluster,
    selector: &IndexSelector,
    skipped: &[SkippedIndex],
) -> DumpError {
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
    DumpError::NothingSelected(line)
}

/// The checkpoint of an interrupted dump in `root`, checked against the
/// cluster it is resumed from.
async fn open_checkpoint(
    root: &std::path::Path,
    source: &SourceCluster,
) -> Result<Checkpoint, DumpError> {
    // A manifest that lists failed indices leaves them to a resumed run.
    let manifest = root.join(crate::archive::MANIFEST_FILE);
    if manifest.exists() && !lists_failures(&manifest) {
        return Err(DumpError::NothingToResume(format!(
            "{}: the dump is complete (it has a manifest)",
            root.display()
        )));
    }
    if !root.join(CHECKPOINT_FILE).exists() {
        return Err(DumpError::NothingToResume(format!(
            "{}: no {CHECKPOINT_FILE}: not an interrupted esark dump",
            root.display()
        )));
    }
    let checkpoint = Checkpoint::load(root)?;
    if checkpoint.source.cluster_uuid != source.cluster_uuid
        || checkpoint.source.cluster_name != source.cluster_name
    {
        return Err(DumpError::NothingToResume(format!(
            "{}: the interrupted dump was read from cluster {:?} ({}), not from {:?} ({})",
            root.display(),
            checkpoint.source.cluster_name,
            checkpoint.source.cluster_uuid,
            source.cluster_name,
            source.cluster_uuid
        )));
    }
    Ok(checkpoint)
}

/// Whether the manifest at `path` lists indices the dump failed on.
fn lists_failures(path: &std::path::Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Failed {
        #[serde(default)]
        failed: Vec<serde::de::IgnoredAny>,
    }
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Failed>(&b).ok())
        .is_some_and(|m| !m.failed.is_empty())
}

/// Writes lifecycle policies, ingest pipelines, stored scripts, data
/// streams (and with `cluster_settings`, persistent cluster settings), each
/// kind to its own file. A kind the cluster does not offer is a warning
/// naming it, not a failure.
async fn dump_extras(
    cluster: &Cluster,
    archive: &ArchiveWriter,
    cluster_settings: bool,
    progress: &Progress,
) -> Result<Vec<FileEntry>, DumpError> {
    let mut kinds = ExtraKind::for_flavor(cluster.flavor()).to_vec();
    if cluster_settings {
        kinds.push(ExtraKind::ClusterSettings);
    }
    let mut files = Vec::new();
    for kind in kinds {
        match cluster.read_extra(kind).await? {
            Offered::Yes(items) => {
                let (path, file_kind) = extra_file(kind);
                files.push(archive.write_json(path, file_kind, &items).await?);
            }
            Offered::No(reason) => progress.println(&format!(
                "warning: {} skipped: the cluster does not offer them ({reason})",
                kind.describe()
            )),
        }
    }
    Ok(files)
}

/// Writes the three kinds of templates, each to its own file.
async fn dump_templates(
    cluster: &Cluster,
    archive: &ArchiveWriter,
    progress: &Progress,
) -> Result<Vec<FileEntry>, DumpError> {
    archive.create_dir("cluster").await?;
    let set = read_templates(cluster, progress).await?;
    let mut files = vec![
        archive
            .write_json("cluster/templates.json", FileKind::Templates, &set.legacy)
            .await?,
    ];
    if let Some(index) = &set.index {
        files.push(
            archive
                .write_json(
                    "cluster/index_templates.json",
                    FileKind::IndexTemplates,
                    index,
                )
                .await?,
        );
    }
    if let Some(component) = &set.component {
        files.push(
            archive
                .write_json(
                    "cluster/component_templates.json",
                    FileKind::ComponentTemplates,
                    component,
                )
                .await?,
        );
    }
    Ok(files)
}

/// Dumps one index: metadata files, then data, continuing from what an
/// earlier run recorded. Errors come back as text so that one failed index
/// does not stop the others.
#[allow(clippy::too_many_arguments)]
async fn dump_index(
    cluster: &Arc<Cluster>,
    archive: &ArchiveWriter,
    config: &DumpConfig,
    selected: &Selected,
    progress: &Progress,
    checkpointer: &Arc<Checkpointer>,
    earlier: Option<IndexCheckpoint>,
    readers: Arc<tokio::sync::Semaphore>,
    cancel: watch::Receiver<bool>,
) -> Result<IndexEntry, IndexFailure> {
    let name = selected.name.as_str();
    let data_stream = selected.data_stream.is_some();
    let (meta, mut expected) = read_metadata(cluster, selected).await?;
    if let Some(query) = config.query.as_deref() {
        expected = cluster.count(name, Some(query)).await?;
    }
    // Said before any file is written: no page of it could be archived.
    if !data_stream && expected > 0 && source_disabled(&meta.mappings) {
        return Err(IndexFailure::of_index(format!(
            "_source is disabled in its mapping: its {expected} documents cannot be read back; leave the index out with --exclude"
        )));
    }
    // Read before `meta` is taken apart below.
    let page_size = meta.page_size(config.page_size);
    // A resumed index keeps the slice count its chunk names were made with.
    let slices = match &earlier {
        Some(e) if e.slice_count > 0 => e.slice_count,
        _ => config.slices.resolve(meta.shards()),
    };
    let earlier_slices = earlier.map(|e| e.slices).unwrap_or_default();
    let IndexMetadata {
        settings,
        mappings,
        aliases,
    } = meta;

    let folder = format!("indices/{}", folder_name(name));
    let keep: HashSet<String> = earlier_slices
        .values()
        .flat_map(|s| s.chunks.iter().map(|c| c.path.clone()))
        .collect();
    let write_meta = async {
        archive.create_dir(&folder).await?;
        archive.prune(&folder, &keep).await?;
        let mut files = Vec::new();
        // A data stream's metadata is its index template's.
        let meta_files = if data_stream {
            Vec::new()
        } else {
            vec![
                ("settings.json", FileKind::Settings, &settings),
                ("mappings.json", FileKind::Mappings, &mappings),
                ("aliases.json", FileKind::Aliases, &aliases),
            ]
        };
        for (file, kind, value) in meta_files {
            files.push(
                archive
                    .write_json(&format!("{folder}/{file}"), kind, value)
                    .await?,
            );
        }
        checkpointer.update(|cp| {
            cp.indices.entry(name.to_string()).or_default().slice_count = slices;
        })?;
        Ok::<_, ArchiveError>(files)
    };
    let mut files = write_meta.await?;

    progress.expect(expected);
    let bar = progress.index(name, expected);
    let job = DataJob {
        index: name.to_string(),
        folder: folder.clone(),
        slices,
        page_size,
        compression: config.compression,
        level: config.level,
        file_size: config.file_size,
        reader: config.reader,
        query: config.query.clone(),
        readers,
    };
    let (data, docs) = match dump_data(
        cluster.clone(),
        archive.clone(),
        &job,
        bar.clone(),
        checkpointer.clone(),
        earlier_slices,
        cancel,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Err(e.into()),
    };
    bar.finish();
    if docs != expected {
        progress.println(&format!(
            "warning: index {name:?}: {docs} documents dumped, _count said {expected} before the dump (was it written to meanwhile?)"
        ));
    }
    files.extend(data);
    let entry = IndexEntry {
        name: name.to_string(),
        folder,
        docs,
        expected_docs: expected,
        slices,
        files,
        data_stream,
    };
    checkpointer
        .update(|cp| cp.indices.entry(name.to_string()).or_default().done = Some(entry.clone()))?;
    Ok(entry)
}

/// Why an index was not dumped, and whether the cause is the run's rather
/// than the index's: lost credentials, an unreachable cluster or a full
/// disk would fail every index alike, so the run stops (resumable)
/// instead of listing them as failed.
#[derive(Debug)]
struct IndexFailure {
    reason: String,
    run_level: bool,
}

impl IndexFailure {
    fn of_index(reason: String) -> IndexFailure {
        IndexFailure {
            reason,
            run_level: false,
        }
    }
}

impl From<ClusterError> for IndexFailure {
    fn from(e: ClusterError) -> IndexFailure {
        let run_level = matches!(
            e,
            ClusterError::Unauthorized { .. }
                | ClusterError::Unreachable { .. }
                | ClusterError::Transport { .. }
                | ClusterError::AwsSigning { .. }
        );
        IndexFailure {
            reason: e.to_string(),
            run_level,
        }
    }
}

impl From<ArchiveError> for IndexFailure {
    fn from(e: ArchiveError) -> IndexFailure {
        IndexFailure {
            reason: e.to_string(),
            run_level: true,
        }
    }
}

impl From<PipelineError> for IndexFailure {
    fn from(e: PipelineError) -> IndexFailure {
        match e {
            PipelineError::Read(crate::source::ReadError::Cluster(e)) => e.into(),
            PipelineError::Archive(e) => e.into(),
            PipelineError::Interrupted => IndexFailure {
                reason: "interrupted".into(),
                run_level: true,
            },
            other => IndexFailure::of_index(other.to_string()),
        }
    }
}

/// Whether mappings turn `_source` off (`{"_source": {"enabled": false}}`,
/// or under a type name in Elasticsearch 6).
fn source_disabled(mappings: &Value) -> bool {
    let off = |m: &Value| m.pointer("/_source/enabled") == Some(&Value::Bool(false));
    off(mappings)
        || mappings
            .as_object()
            .is_some_and(|types| types.values().any(off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_selection_hides_dot_indices_only() {
        let s = IndexSelector::default();
        assert!(s.selects("logs"));
        assert!(s.selects("%kuzzle"));
        assert!(!s.selects(".kibana"));
    }

    #[test]
    fn match_sees_every_index_and_exclude_removes() {
        let s = IndexSelector {
            include: Some(Regex::new(r"^[.%]").unwrap()),
            exclude: Some(Regex::new("security").unwrap()),
            all_by_default: false,
        };
        assert!(s.selects(".kibana"));
        assert!(s.selects("%kuzzle"));
        assert!(!s.selects(".security-7"));
        assert!(!s.selects("logs"));
    }

    #[test]
    fn disabled_source_is_seen_typed_or_not() {
        use serde_json::json;
        assert!(source_disabled(&json!({"_source": {"enabled": false}})));
        assert!(source_disabled(
            &json!({"_doc": {"_source": {"enabled": false}}})
        ));
        assert!(!source_disabled(&json!({"_source": {"enabled": true}})));
        assert!(!source_disabled(&json!({"properties": {}})));
    }

    #[test]
    fn page_size_is_clamped_to_max_result_window() {
        use serde_json::json;
        let meta = |settings: Value| IndexMetadata {
            settings,
            mappings: json!({}),
            aliases: json!({}),
        };
        let small = meta(json!({"index": {"max_result_window": "100"}}));
        assert_eq!(small.page_size(1000), 100);
        assert_eq!(small.page_size(50), 50);
        assert_eq!(meta(json!({})).page_size(1000), 1000);
    }

    #[test]
    fn slices_never_exceed_shards() {
        assert_eq!(SliceCount::Auto.resolve(2), 2);
        assert_eq!(SliceCount::Auto.resolve(30), AUTO_SLICES_MAX);
        assert_eq!(SliceCount::Auto.resolve(0), 1);
        assert_eq!(SliceCount::Fixed(8).resolve(3), 3);
        assert_eq!(SliceCount::Fixed(0).resolve(3), 1);
    }
}
