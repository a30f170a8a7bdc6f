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

mod index;
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
use crate::sink::bulk::BulkIndexer;
use crate::sink::rate::RateLimits;
use crate::sink::rejects::RejectsWriter;
use index::restore_index;
use load::BulkSize;
use report::{IndexReport, RestoreReport, Status};
use target::Mode;

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
    #[error(transparent)]
    Spool(#[from] crate::archive::store::spool::SpoolError),
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
/// [`crate::job`]). A plan restoring two indices under one name is refused
/// before anything is written. Cancelling `cancel` (Ctrl-C) stops reading;
/// requests in flight finish, settings are put back, the state is kept for
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
    let result = match plan.target_clash() {
        Some((first, second, name)) => Err(RestoreError::TargetClash {
            first: first.to_string(),
            second: second.to_string(),
            name: name.to_string(),
        }),
        None => run_plan(config, plan, target, events, cancel).await,
    };
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
    // One listing of the target's names instead of one lookup per index:
    // with 1,000 small indices, 1,000 requests fewer.
    let names = if plan.indices.iter().filter(|i| !i.data_stream).count() > 1 && !config.atomic {
        match target.names().await {
            Ok(names) => Some(names),
            Err(e) => {
                tracing::info!(
                    "listing the target's indices and aliases: {e}; each index is looked up"
                );
                None
            }
        }
    } else {
        None
    };
    let names = names.as_ref();
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
                    names,
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
