//! The dump command end to end: connect, select indices, write cluster and
//! index metadata, stream every index's documents, write the manifest last.
//!
//! Its own parts: [`pipeline`] wires each slice's reader to its chunk
//! writer, [`checkpoint`] records what is safely on disk for `--resume`
//! (the archive format does not know its content, only its file name).

pub mod checkpoint;
mod config;
mod index;
pub mod pipe;
pub mod pipeline;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use crate::archive::manifest::now_rfc3339;
use crate::archive::manifest::{
    Encryption, FailedIndex, IndexEntry, Manifest, SkippedIndex, SourceCluster,
};
use crate::archive::store::{ArchiveStore, Location};
use crate::archive::writer::ArchiveWriter;
use crate::archive::{ArchiveError, Version, FORMAT_NAME};
use crate::catalog::{select_indices, MetadataBatches, Selected};
use crate::cluster::{Cluster, ClusterError};
use crate::job::{CancellationToken, Event, Events, IndexOutcome, JobKind, JobOutcome};
use checkpoint::{checkpointer, Checkpoint, CHECKPOINT_FILE};

pub use config::{AskedOptions, DumpConfig, SliceCount, DEFAULT_FILE_SIZE, DEFAULT_PAGE_SIZE};
use index::{dump_extras, dump_index, dump_templates, IndexFailure};

/// Default of `--readers`: slices read at the same time over all indices.
///
/// Two keeps a server with two cores busy (what the raw scroll baseline of
/// `benches/` uses) and bounds memory by two slices' pages whatever the
/// number of indices and shards: with one slice per shard of two indices at
/// once, the peak resident memory of a 100,000-document dump grew with
/// every shard that was read at the same time.
pub const DEFAULT_READERS: usize = 2;

pub use crate::source::slice::AUTO_SLICES_MAX;

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

/// Runs a dump, or continues one with `config.resume`, reporting through
/// `events` (see [`crate::job`]). Cancelling `cancel` stops it (Ctrl-C):
/// the checkpoint then says where to continue, and the error is
/// [`DumpError::Interrupted`] (or, replacing an archive, a
/// [`DumpError::NotReplaced`] of [`DumpError::Stopped`]).
pub async fn run(
    config: &DumpConfig,
    events: &Events,
    cancel: CancellationToken,
) -> Result<DumpReport, DumpError> {
    events.emit(Event::JobStarted {
        kind: JobKind::Dump,
    });
    let result = run_dump(config, events, cancel).await;
    events.emit(Event::JobFinished {
        outcome: match &result {
            Ok(_) => JobOutcome::Succeeded,
            Err(DumpError::Interrupted(_) | DumpError::Stopped) => JobOutcome::Cancelled,
            Err(DumpError::NotReplaced { error, .. }) if matches!(**error, DumpError::Stopped) => {
                JobOutcome::Cancelled
            }
            Err(DumpError::Incomplete { .. }) => JobOutcome::Partial,
            Err(e) => JobOutcome::Failed {
                message: e.to_string(),
            },
        },
    });
    result
}

async fn run_dump(
    config: &DumpConfig,
    events: &Events,
    cancel: CancellationToken,
) -> Result<DumpReport, DumpError> {
    let started = Instant::now();
    // Connect first, so that an unreachable cluster leaves no folder behind.
    let cluster = Arc::new(Cluster::connect(&config.source).await?);
    let info = cluster.info().clone();
    if !info.is_supported() {
        events.warn(format!(
            "{} {} is not a version esark is tested with (Elasticsearch 6-9, OpenSearch 1-3); continuing",
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
    // Object storage reads its credentials here: missing ones fail
    // before any work.
    let store = config.output.open().await.map_err(ArchiveError::from)?;
    let (checkpoint, config) = if config.resume {
        let checkpoint = open_checkpoint(store.as_ref(), &source, config.identity.as_ref()).await?;
        let resumed = config.resumed_with(&checkpoint)?;
        (checkpoint, resumed)
    } else {
        let checkpoint = Checkpoint::new(
            now_rfc3339(),
            source.clone(),
            config.options()?,
            config.reader,
        )
        .encrypted_to(config.recipients.as_ref());
        (checkpoint, config.clone())
    };
    let config = &config;

    // Selected before anything is written: selecting nothing is an error,
    // not an empty archive.
    let (selected, skipped) = select_indices(&cluster, &config.selector).await?;
    if selected.is_empty() {
        return Err(DumpError::NothingSelected(
            crate::catalog::nothing_selected(&cluster, &config.selector, &skipped).await,
        ));
    }

    let archive = match (&config.output, config.resume) {
        (Location::Local(root), true) => ArchiveWriter::open_existing(root).await?,
        (Location::Local(root), false) => ArchiveWriter::create(root, config.overwrite).await?,
        (Location::Object(_), true) => ArchiveWriter::resume_locked(store).await?,
        // No swap on object storage: `--overwrite` deletes the old
        // archive before the new one is written.
        (Location::Object(_), false) => {
            let (writer, removed) = ArchiveWriter::create_locked(store, config.overwrite).await?;
            if removed > 0 {
                events.warn(format!(
                    "{}: removed the old archive there ({removed} objects) before writing the new one: object storage cannot swap archives, so unlike a folder's it is gone even if this dump fails",
                    config.output
                ));
            }
            writer
        }
    }
    .encrypt_to(config.recipients.clone());
    for closed in &skipped {
        events.warn(format!("index {:?} is closed; skipped", closed.name));
    }
    let written = write_archive(
        &cluster, &archive, config, checkpoint, source, selected, skipped, events, cancel,
    )
    .await;
    // Chunks dropped unfinished (a failed or cancelled slice) are aborted
    // in the background on object storage: done before the process ends.
    archive.store().settle().await;
    if archive.replaces().is_none() {
        return written.map(|manifest| DumpReport {
            output: config.output.to_path(),
            manifest,
            elapsed: started.elapsed(),
        });
    }
    // `--overwrite` of an archive: the new one replaces it only when whole.
    match written {
        Ok(manifest) => {
            archive.replace().await?;
            Ok(DumpReport {
                output: config.output.to_path(),
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
                output: config.output.to_path(),
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
    events: &Events,
    cancel: CancellationToken,
) -> Result<Manifest, DumpError> {
    let checkpointer = Arc::new(checkpointer(archive, checkpoint.clone()));
    // Written at once: even a run killed before its first chunk can resume.
    checkpointer.update(|_| {})?;
    checkpointer.flush().await?;
    let total = selected.len();

    let mut cluster_files = dump_templates(cluster, archive, events).await?;
    cluster_files
        .extend(dump_extras(cluster, archive, config.include_cluster_settings, events).await?);

    let readers = Arc::new(tokio::sync::Semaphore::new(config.readers.max(1)));
    // The indices dump_index will be called for, in the order it will be.
    let batches = MetadataBatches::new(
        selected
            .iter()
            .filter(|s| s.data_stream.is_none())
            .filter(|s| {
                checkpoint
                    .indices
                    .get(&s.name)
                    .is_none_or(|e| e.done.is_none())
            })
            .map(|s| s.name.clone()),
    );
    let batches = &batches;
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
                        events.plan(&name, None, done.docs);
                        events.finish(&name, done.docs, IndexOutcome::Done);
                        Ok(done)
                    }
                    None => {
                        let r = dump_index(
                            &cluster,
                            &archive,
                            config,
                            &selected,
                            events,
                            &checkpointer,
                            earlier,
                            readers,
                            batches,
                            cancel,
                        )
                        .await;
                        let (docs, outcome) = match &r {
                            Ok(entry) => (entry.docs, IndexOutcome::Done),
                            Err(failure) => (
                                0,
                                IndexOutcome::Failed {
                                    reason: failure.reason.clone(),
                                },
                            ),
                        };
                        events.finish(&name, docs, outcome);
                        r
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

    if cancel.is_cancelled() {
        return Err(DumpError::Interrupted(config.output.to_path()));
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
        format_version: Version::written(config.recipients.is_some(), config.compression),
        tool_version: crate::TOOL_VERSION.into(),
        created_at: checkpoint.created_at.clone(),
        completed_at: now_rfc3339(),
        source,
        options: config.options()?,
        cluster_files,
        indices,
        skipped,
        failed: failed.clone(),
        encryption: config.recipients.as_ref().map(|r| Encryption {
            scheme: crate::archive::crypt::SCHEME.into(),
            recipients: r.to_strings(),
        }),
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

/// The checkpoint of an interrupted dump in `root`, checked against the
/// cluster it is resumed from.
async fn open_checkpoint(
    store: &dyn ArchiveStore,
    source: &SourceCluster,
    identities: Option<&crate::archive::crypt::Identities>,
) -> Result<Checkpoint, DumpError> {
    use crate::archive::store::StoreError;
    let root = store.locate("");
    // A manifest that lists failed indices leaves them to a resumed run.
    match store.get(crate::archive::MANIFEST_FILE).await {
        Err(StoreError::NotFound { .. }) => {}
        Ok(manifest) if lists_failures(&manifest) => {}
        Err(e @ (StoreError::Io { .. } | StoreError::AlreadyExists { .. })) => {
            return Err(ArchiveError::from(e).into())
        }
        Ok(_) => {
            return Err(DumpError::NothingToResume(format!(
                "{}: the dump is complete (it has a manifest)",
                root.display()
            )))
        }
    }
    if !store.exists(CHECKPOINT_FILE).await.unwrap_or(false) {
        return Err(DumpError::NothingToResume(format!(
            "{}: no {CHECKPOINT_FILE}: not an interrupted esark dump",
            root.display()
        )));
    }
    let checkpoint = Checkpoint::load(store, identities).await?;
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
fn lists_failures(manifest: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Failed {
        #[serde(default)]
        failed: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Failed>(manifest)
        .ok()
        .is_some_and(|m| !m.failed.is_empty())
}

#[cfg(test)]
mod tests {
    use super::index::source_disabled;
    use super::*;
    use crate::catalog::{IndexMetadata, IndexSelector};
    use regex::Regex;
    use serde_json::Value;

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
