//! Restore (archive -> cluster) and copy (cluster -> cluster).
//!
//! Both run the same plan ([`plan::RestorePlan`]): templates first
//! (component, composable, legacy), then per index: decide and create
//! ([`target`]), load the documents through the bulk stage ([`load`]), put
//! the load settings back (also after a failure or Ctrl-C), refresh, and
//! attach or atomically move the aliases. The [`report::RestoreReport`]
//! accounts for every document, and names every template, alias
//! membership and index it changed or removed: a restore touches nothing
//! else ([`templates`] decides which templates a selective one needs).

pub mod job;
pub mod load;
pub mod report;
pub mod state;
pub mod target;
pub mod templates;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};

use crate::archive::ArchiveError;
use crate::cluster::extras::{is_not_offered, ExtraKind};
use crate::cluster::{Cluster, ClusterConfig, ClusterError};
use crate::job::{CancellationToken, Event, Events, IndexOutcome, JobKind, JobOutcome};
use crate::plan::{self, IndexPlan, PlanError, RestorePlan};
use crate::retry::RetryPolicy;
use crate::sink::bulk::{BulkBuilder, BulkIndexer, BulkOp, IndexStats};
use crate::sink::rate::RateLimits;
use crate::sink::rejects::RejectsWriter;
use load::{BulkSize, LoadError};
use report::{IndexReport, RestoreReport, Status};
use target::{Mode, Preparation};

/// Indices restored at the same time; bulk requests of all of them share
/// the `--concurrency` slots.
pub const PARALLEL_INDICES: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{path}: unreadable JSON: {reason}")]
    BadFile { path: String, reason: String },
    #[error("cannot resume: {0}")]
    Resume(String),
    #[error(
        "no folder for the restore state: set ESARK_STATE_DIR (or HOME), or give --state FILE"
    )]
    NoStateDir,
    #[error("{}: an interrupted restore of this input into this cluster is unfinished; nothing was done: continue it with `esark restore --resume` and the same options, or start over with --discard-state", path.display())]
    Unfinished { path: PathBuf },
    #[error("cannot resume with other options than the interrupted restore ({}): {options}; nothing was done: resume with the recorded values, or start over with --discard-state", path.display())]
    OptionsDiffer { path: PathBuf, options: String },
    /// Two selected indices would be restored under one name (a usage
    /// error).
    #[error("indices {first:?} and {second:?} would both be restored as {name:?}; nothing was written (change --rename, or select one of them)")]
    TargetClash {
        first: String,
        second: String,
        name: String,
    },
}

impl RestoreError {
    /// Whether the error is in what was asked (exit 2), not in what
    /// happened (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RestoreError::Unfinished { .. }
                | RestoreError::OptionsDiffer { .. }
                | RestoreError::Plan(PlanError::IndexOnArchive)
                | RestoreError::TargetClash { .. }
        )
    }
}

/// Default bulk concurrency: enough to keep a cluster's write queue busy
/// without queueing into 429s.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default documents per bulk request; `--bulk-bytes` (default 5 MiB, the
/// low end of the size Elasticsearch's tuning guide suggests) cuts first
/// for documents over ~5 KB.
///
/// Measured restoring the benchmark's 100,000 documents of ~0.9 KB into the
/// null sink (three runs each): 1000 documents per request used the same
/// CPU and wall time as 2000 or 5000 (0.25-0.33 s CPU), and peak memory
/// 21 MiB instead of 24 MiB (2000) or 39-46 MiB (5000 with 10 MiB bodies):
/// `--concurrency` requests are held while in flight, and what a slow
/// cluster does with a request does not depend on how it was cut.
pub const DEFAULT_BULK_DOCS: usize = 1000;

/// Default bytes per bulk request (`--bulk-bytes`).
pub const DEFAULT_BULK_BYTES: usize = 5 << 20;

/// A resolved restore or copy.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    pub target: ClusterConfig,
    pub mode: Mode,
    pub atomic: bool,
    pub mappings: bool,
    pub data: bool,
    pub templates: bool,
    /// Attach the archived aliases (off with `--no-aliases`).
    pub aliases: bool,
    pub concurrency: usize,
    pub bulk: BulkSize,
    pub rate_docs: Option<u64>,
    pub rate_bytes: Option<u64>,
    pub rejects: PathBuf,
    /// Where progress is recorded for `--resume` (restore only).
    pub state: Option<PathBuf>,
    /// Continue the restore recorded in `state`.
    pub resume: bool,
    /// Start over even if `state` records an unfinished restore.
    pub discard_state: bool,
    /// What is restored (the `--input`), recorded in the state.
    pub input: String,
    /// The options that decide where and what is written (`--mode` ->
    /// `fail`, `--prefix` -> `(none)`, ...): recorded in the state, and a
    /// resumed run must give the same.
    pub recorded: BTreeMap<String, String>,
    /// Put back persistent cluster settings, when the archive has them.
    pub cluster_settings: bool,
}

impl RestoreConfig {
    /// A restore or copy into `target` with the command line's defaults:
    /// `--mode fail`, mappings, data, templates and aliases, rejects in
    /// `esark-rejects.jsonl`, the state in the user's state folder.
    pub fn new(target: ClusterConfig) -> RestoreConfig {
        RestoreConfig {
            target,
            mode: Mode::Fail,
            atomic: false,
            mappings: true,
            data: true,
            templates: true,
            aliases: true,
            concurrency: DEFAULT_CONCURRENCY,
            bulk: BulkSize {
                bytes: DEFAULT_BULK_BYTES,
                docs: DEFAULT_BULK_DOCS,
            },
            rate_docs: None,
            rate_bytes: None,
            rejects: PathBuf::from("esark-rejects.jsonl"),
            state: None,
            resume: false,
            discard_state: false,
            input: String::new(),
            recorded: BTreeMap::new(),
            cluster_settings: false,
        }
    }
}

/// Runs a plan against `target`, reporting through `events` (see
/// [`crate::job`]). Cancelling `cancel` (Ctrl-C) stops reading; requests
/// in flight finish, settings are put back, the state is kept for
/// `--resume`, and the report says `interrupted`.
pub async fn run(
    config: &RestoreConfig,
    plan: RestorePlan,
    target: Arc<Cluster>,
    events: &Events,
    cancel: CancellationToken,
) -> Result<RestoreReport, RestoreError> {
    let kind = if plan
        .indices
        .iter()
        .any(|i| matches!(i.data, plan::DataOrigin::Cluster { .. }))
    {
        JobKind::Copy
    } else {
        JobKind::Restore
    };
    events.emit(Event::JobStarted { kind });
    let result = run_plan(config, plan, target, events, cancel).await;
    events.emit(Event::JobFinished {
        outcome: match &result {
            Ok(report) if report.interrupted => JobOutcome::Cancelled,
            Ok(report) => match report.exit_code() {
                0 => JobOutcome::Succeeded,
                3 => JobOutcome::Partial,
                _ => JobOutcome::Failed {
                    message: report::first_problem(report),
                },
            },
            Err(e) => JobOutcome::Failed {
                message: e.to_string(),
            },
        },
    });
    result
}

async fn run_plan(
    config: &RestoreConfig,
    plan: RestorePlan,
    target: Arc<Cluster>,
    events: &Events,
    cancel: CancellationToken,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    // Before anything is written: a recorded, unfinished restore is
    // continued (same options) or deliberately discarded, never replaced.
    let state = match &config.state {
        Some(path) if config.resume => Some(Arc::new(state::StateFile::resume(
            path,
            &target.info().cluster_uuid,
            &config.recorded,
        )?)),
        Some(path) => Some(Arc::new(state::StateFile::create(
            path,
            state::NewState {
                input: &config.input,
                url: target.url().as_str(),
                uuid: &target.info().cluster_uuid,
                options: &config.recorded,
            },
            config.discard_state,
        )?)),
        None => None,
    };
    let rejects = Arc::new(
        if state.is_some() && config.resume {
            RejectsWriter::resume(&config.rejects)?
        } else {
            RejectsWriter::fresh(&config.rejects)?
        }
        .with_events(events.clone()),
    );
    let indexer = BulkIndexer::new(
        target.clone(),
        config.concurrency,
        RateLimits::new(config.rate_docs, config.rate_bytes),
        RetryPolicy::default(),
        rejects.clone(),
    );
    let mut report = RestoreReport {
        indices: Vec::new(),
        templates: Vec::new(),
        extras: Vec::new(),
        rejects_file: None,
        warnings: Vec::new(),
        elapsed: Default::default(),
        interrupted: false,
    };
    for (name, why) in &plan.damaged {
        let mut entry = IndexReport::new(name, name, 0);
        entry.reason = Some(format!("damaged, not restored: {why}"));
        report.indices.push(entry);
    }
    // Policies, pipelines and scripts first: templates and indices refer
    // to them; data streams last, as they need their index template. A
    // data stream whose documents are restored is created (or replaced)
    // with them, under `--mode`, instead.
    let with_documents: HashSet<&str> = plan
        .indices
        .iter()
        .filter(|i| i.data_stream)
        .map(|i| i.name.as_str())
        .collect();
    let extras: Vec<(ExtraKind, serde_json::Map<String, serde_json::Value>)> = plan
        .extras
        .iter()
        .map(|(kind, items)| {
            let mut items = items.clone();
            if *kind == ExtraKind::DataStreams {
                items.retain(|name, _| !with_documents.contains(name.as_str()));
            }
            (*kind, items)
        })
        .collect();
    let (before, after): (Vec<_>, Vec<_>) = extras
        .iter()
        .filter(|(kind, _)| *kind != ExtraKind::ClusterSettings || config.cluster_settings)
        .partition(|(kind, _)| *kind != ExtraKind::DataStreams);
    report.extras = restore_extras(&target, &before, config.mode).await;
    if config.templates {
        let names: Vec<&str> = plan.indices.iter().map(|i| i.target.as_str()).collect();
        let (done, warnings) =
            templates::restore(&target, &plan.templates, config.mode, &names).await;
        report.templates = done;
        report.warnings.extend(warnings);
    }
    report
        .extras
        .extend(restore_extras(&target, &after, config.mode).await);
    // The total is known from the plan before the first document; what an
    // index does not deliver (skipped, failed) is taken back when it ends.
    let lost_of = |name: &str| -> Vec<report::LostFile> {
        plan.lost
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, file)| file.clone())
            .collect()
    };
    let expected_of = |index: &IndexPlan| {
        let lost: u64 = lost_of(&index.name).iter().map(|l| l.docs).sum();
        index.docs.saturating_sub(lost)
    };
    for index in &plan.indices {
        let docs = if config.data { expected_of(index) } else { 0 };
        events.plan(&index.name, Some(&index.target), docs);
    }
    let siblings: Vec<String> = plan.indices.iter().map(|i| i.target.clone()).collect();
    let siblings = &siblings;
    let results: Vec<IndexReport> = stream::iter(plan.indices.iter())
        .map(|index| {
            let cancel = cancel.clone();
            let (target, indexer, state) = (&target, &indexer, state.as_ref());
            async move {
                let report = restore_index(
                    config,
                    index,
                    lost_of(&index.name),
                    siblings,
                    target,
                    indexer,
                    state,
                    events,
                    cancel,
                )
                .await;
                let counted = report.written + report.rejected + report.failed;
                let outcome = match (report.status, &report.reason) {
                    (Status::Restored, _) => IndexOutcome::Done,
                    (Status::Skipped, reason) => IndexOutcome::Skipped {
                        reason: reason.clone().unwrap_or_default(),
                    },
                    (Status::Failed, reason) => IndexOutcome::Failed {
                        reason: reason.clone().unwrap_or_else(|| "failed".into()),
                    },
                };
                events.finish(&index.name, counted, outcome);
                report
            }
        })
        .buffer_unordered(PARALLEL_INDICES)
        .collect()
        .await;
    report.indices.extend(results);
    report.indices.sort_by(|a, b| a.name.cmp(&b.name));
    rejects.flush()?;
    if rejects.is_used() {
        report.rejects_file = Some(rejects.path().to_path_buf());
    }
    report.interrupted = cancel.is_cancelled();
    report.elapsed = started.elapsed();
    if let Some(state) = &state {
        if !report.failed() {
            state.remove()?;
        }
    }
    Ok(report)
}

/// Puts back cluster metadata. A kind the target does not offer is
/// reported as skipped (with why), not as a failure; under `--mode fail`
/// and `skip-existing`, an item that exists is kept.
async fn restore_extras(
    target: &Cluster,
    extras: &[&(ExtraKind, serde_json::Map<String, serde_json::Value>)],
    mode: Mode,
) -> Vec<report::ExtraReport> {
    let keep_existing = matches!(mode, Mode::Fail | Mode::SkipExisting);
    let mut out = Vec::new();
    for (kind, items) in extras {
        let mut unsupported: Option<String> = None;
        for (name, body) in items {
            let (status, reason) = if let Some(why) = &unsupported {
                (Status::Skipped, Some(why.clone()))
            } else {
                match target.put_extra(*kind, name, body).await {
                    Ok(()) => (Status::Restored, None),
                    Err(e) if is_not_offered(&e) => {
                        let why = format!("the target does not offer {} ({e})", kind.describe());
                        unsupported = Some(why.clone());
                        (Status::Skipped, Some(why))
                    }
                    Err(e) if keep_existing && e.is_type("resource_already_exists_exception") => (
                        Status::Skipped,
                        Some("exists on the target; kept".to_string()),
                    ),
                    Err(e) => (Status::Failed, Some(e.to_string())),
                }
            };
            out.push(report::ExtraReport {
                kind: kind.describe(),
                name: name.clone(),
                status,
                reason,
            });
        }
    }
    out
}

// The run-wide handles plus the index, the files it lost under --force
// and the target names of the run's indices.
#[allow(clippy::too_many_arguments)]
async fn restore_index(
    config: &RestoreConfig,
    index: &IndexPlan,
    lost: Vec<report::LostFile>,
    siblings: &[String],
    target: &Arc<Cluster>,
    indexer: &BulkIndexer,
    state: Option<&Arc<state::StateFile>>,
    events: &Events,
    cancel: CancellationToken,
) -> IndexReport {
    let mut report = IndexReport::new(&index.name, &index.target, index.docs);
    report.lost = lost;
    let lost_docs: u64 = report.lost.iter().map(|l| l.docs).sum();
    if cancel.is_cancelled() {
        report.reason = Some("interrupted before it started".into());
        return report;
    }
    let earlier = state.and_then(|s| s.index(&index.name));
    if let Some(done) = earlier.as_ref().and_then(|e| e.done.clone()) {
        return done;
    }
    let (concrete, restore_settings) = match &earlier {
        // Resumed: the index exists and was set up by the interrupted run.
        Some(e) => {
            if e.restore_settings.is_some() {
                let load = serde_json::json!({ "index": target::LOAD_SETTINGS.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect::<serde_json::Map<_, _>>() });
                if let Err(e) = target.put_index_settings(&e.concrete, &load).await {
                    report.reason = Some(e.to_string());
                    return report;
                }
            }
            (e.concrete.clone(), e.restore_settings.clone())
        }
        None => {
            let prepared = if index.data_stream {
                target::prepare_data_stream(target, &index.target, config.mode, config.atomic).await
            } else {
                target::prepare(
                    target,
                    &index.target,
                    &index.meta,
                    config.mode,
                    config.atomic,
                    config.mappings,
                )
                .await
            };
            match prepared {
                Ok(Preparation::Load {
                    concrete,
                    restore_settings,
                    dropped_settings,
                    converted_fields,
                    removed,
                    ..
                }) => {
                    if let Some((old, aliases)) = removed {
                        report.alias_changes.extend(aliases.iter().map(|alias| {
                            report::AliasChange {
                                action: "remove".into(),
                                alias: alias.clone(),
                                index: old.clone(),
                            }
                        }));
                        report.removed_indices.push(old);
                    }
                    report.notes.extend(
                        dropped_settings
                            .iter()
                            .map(|s| format!("setting {s} left out: the target does not know it")),
                    );
                    report.notes.extend(
                        converted_fields
                            .iter()
                            .map(|c| format!("{c}: the target does not know the first type")),
                    );
                    (concrete, restore_settings)
                }
                Ok(Preparation::Skip(why)) => {
                    report.status = Status::Skipped;
                    report.reason = Some(why);
                    return report;
                }
                Ok(Preparation::Fail(why)) => {
                    report.reason = Some(why);
                    return report;
                }
                Err(e) => {
                    report.reason = Some(e.to_string());
                    return report;
                }
            }
        }
    };
    report.concrete = Some(concrete.clone());
    if let (Some(state), None) = (state, &earlier) {
        let recorded = state.update(|s| {
            s.indices.insert(
                index.name.clone(),
                state::IndexState {
                    target: index.target.clone(),
                    concrete: concrete.clone(),
                    restore_settings: restore_settings.clone(),
                    started: Default::default(),
                    chunks: Default::default(),
                    done: None,
                },
            );
        });
        if let Err(e) = recorded {
            report.reason = Some(e.to_string());
            return report;
        }
    }

    let mut problems = Vec::new();
    if config.data {
        let stats = Arc::new(IndexStats::default());
        let target_name: Arc<str> = Arc::from(concrete.as_str());
        // A data stream takes `create` actions only (an id already in it
        // is a rejected document, reported as such).
        let op = if index.data_stream {
            BulkOp::Create
        } else {
            BulkOp::Index
        };
        let builder = BulkBuilder::new(&concrete, op, config.bulk.bytes, config.bulk.docs);
        let done: HashSet<PathBuf> = earlier
            .as_ref()
            .map(|e| e.chunks.keys().cloned().collect())
            .unwrap_or_default();
        let begun: HashSet<PathBuf> = earlier
            .as_ref()
            .map(|e| e.started.iter().cloned().collect())
            .unwrap_or_default();
        let (before_written, before_rejected) = earlier
            .as_ref()
            .map(|e| {
                e.chunks
                    .values()
                    .fold((0, 0), |(w, r), (cw, cr)| (w + cw, r + cr))
            })
            .unwrap_or((0, 0));
        let counter = events.start(&index.name, before_written + before_rejected, 0);
        let start: Option<load::ChunkStart> = state.map(|state| {
            let state = state.clone();
            let name = index.name.clone();
            Arc::new(move |path: &std::path::Path| {
                state
                    .update(|s| {
                        if let Some(i) = s.indices.get_mut(&name) {
                            i.started.insert(path.to_path_buf());
                        }
                    })
                    .map_err(load::RecordError::State)
            }) as load::ChunkStart
        });
        let ack: Option<load::ChunkAck> = state.map(|state| {
            let state = state.clone();
            let rejects = indexer.rejects().clone();
            let name = index.name.clone();
            Arc::new(move |path: &std::path::Path, written: u64, rejected: u64| {
                // The rejects of a chunk are on disk before the chunk is
                // recorded as done: a resumed run does not send it again.
                if rejected > 0 {
                    rejects.sync().map_err(load::RecordError::Rejects)?;
                }
                state
                    .update(|s| {
                        if let Some(i) = s.indices.get_mut(&name) {
                            i.chunks.insert(path.to_path_buf(), (written, rejected));
                        }
                    })
                    .map_err(load::RecordError::State)
            }) as load::ChunkAck
        });
        let loaded = load::load(
            &index.data,
            &index.name,
            builder,
            load::LoadTarget {
                indexer,
                index: target_name,
                stats: stats.clone(),
                counter: &counter,
            },
            load::ChunkHooks {
                done,
                begun,
                start,
                ack,
            },
            cancel.clone(),
        )
        .await;
        stats.add(before_written, before_rejected, 0);
        let (written, rejected, failed) = stats.snapshot();
        report.rejected = rejected;
        report.failed = failed;
        report.written = written;
        match loaded {
            Ok(load::Loaded { read, resent }) => {
                if written + rejected + failed != read + before_written + before_rejected {
                    problems.push(format!(
                        "{} documents read but {} accounted for",
                        read + before_written + before_rejected,
                        written + rejected + failed
                    ));
                }
                // Sent twice after a source slice restarted: written once.
                report.written = written.saturating_sub(resent);
                if matches!(index.data, plan::DataOrigin::Stdin(_)) {
                    // Nothing said beforehand how many would come.
                    report.archive_docs = read;
                }
            }
            Err(e) => {
                if matches!(index.data, plan::DataOrigin::Stdin(_)) {
                    // What was read of an incomplete stream was sent.
                    report.archive_docs = written + rejected + failed;
                }
                problems.push(match e {
                    LoadError::Interrupted => "interrupted".into(),
                    e => e.to_string(),
                });
            }
        }
        if failed > 0 {
            problems.push(format!(
                "{failed} documents could not be delivered (see the rejects file)"
            ));
        }
    }
    // Put the load settings back whatever happened above.
    if let Some(settings) = restore_settings {
        if let Err(e) = target.put_index_settings(&concrete, &settings).await {
            problems.push(format!(
                "putting back refresh_interval/number_of_replicas failed: {e}"
            ));
        }
    }
    // Damaged files left out under --force: the intact rest is loaded and
    // its aliases attached, but the index is not whole.
    let incomplete = (!report.lost.is_empty()).then(|| {
        let files: Vec<&str> = report.lost.iter().map(|l| l.file.as_str()).collect();
        format!(
            "{lost_docs} documents lost: damaged files left out (--force): {}",
            files.join(", ")
        )
    });
    // With --atomic, an incomplete copy never takes the place of the index
    // readers use.
    let mut incomplete = incomplete;
    if config.atomic {
        problems.extend(incomplete.take());
    }
    if problems.is_empty() {
        if let Err(e) = target.refresh(&concrete).await {
            problems.push(format!("refresh failed: {e}"));
        }
        let none = serde_json::json!({});
        let aliases = if config.aliases {
            &index.meta.aliases
        } else {
            &none
        };
        match target::attach_aliases(
            target,
            &index.target,
            &concrete,
            aliases,
            config.atomic,
            siblings,
        )
        .await
        {
            Ok(outcome) => {
                report.alias_changes.extend(outcome.changes);
                report.removed_indices.extend(outcome.removed);
                report.joined_aliases = outcome.joined;
            }
            Err(e) => problems.push(format!("aliases: {e}")),
        }
    } else if config.atomic {
        problems.push(format!(
            "aliases were not switched; the partial index {concrete:?} is left for inspection"
        ));
    }
    problems.extend(incomplete);
    if problems.is_empty() {
        report.status = Status::Restored;
        if let Some(state) = state {
            let finished = report.clone();
            if let Err(e) = state.update(|s| {
                if let Some(i) = s.indices.get_mut(&index.name) {
                    i.done = Some(finished);
                }
            }) {
                report.status = Status::Failed;
                report.reason = Some(format!("cannot record restore progress: {e}"));
            }
        }
    } else {
        report.reason = Some(problems.join("; "));
    }
    report
}
