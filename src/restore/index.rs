//! Restoring one index of a plan: decide and create its target (or take
//! over what an interrupted run set up), load its documents through the
//! bulk stage with its chunks recorded in the state, put the load settings
//! back whatever happened, refresh, and attach or atomically switch its
//! aliases. Everything that happened is in the returned [`IndexReport`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::load::{self, LoadError};
use super::report::{self, IndexReport, Status};
use super::target::{self, Preparation};
use super::{state, RestoreConfig};
use crate::cluster::indices::ClusterNames;
use crate::cluster::{Cluster, ClusterError};
use crate::job::{CancellationToken, Events};
use crate::plan::{self, IndexPlan};
use crate::sink::bulk::{BulkBuilder, BulkIndexer, BulkOp, IndexStats};

// The run-wide handles plus the index, the files it lost under --force,
// the target names of the run's indices and the names the target had when
// the run began (see `target::prepare`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn restore_index(
    config: &RestoreConfig,
    index: &IndexPlan,
    lost: Vec<report::LostFile>,
    siblings: &[String],
    target: &Arc<Cluster>,
    indexer: &BulkIndexer,
    state: Option<&Arc<state::StateFile>>,
    names: Option<&ClusterNames>,
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
    // An index one bulk request holds, created as archived (not tuned for
    // the load): its requests refresh what they write, instead of a
    // `_refresh` after the load.
    let refresh_in_bulk = earlier.is_none()
        && !index.data_stream
        && config.data
        && target::fits_one_bulk(
            index.docs,
            index.data.stored_bytes(),
            config.bulk.docs,
            config.bulk.bytes,
        );
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
                let fits = target::fits_one_bulk(
                    index.docs,
                    index.data.stored_bytes(),
                    config.bulk.docs,
                    config.bulk.bytes,
                );
                let setup = if config.data && !fits {
                    target::Setup::Tuned
                } else {
                    target::Setup::AsArchived
                };
                target::prepare(
                    target,
                    &index.target,
                    &index.meta,
                    config.mode,
                    config.atomic,
                    config.mappings,
                    setup,
                    names,
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
        let recorded = state.begin(
            &index.name,
            &index.target,
            &concrete,
            restore_settings.clone(),
        );
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
        let mut builder = BulkBuilder::new(&concrete, op, config.bulk.bytes, config.bulk.docs);
        builder.set_refresh(refresh_in_bulk);
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
                state.started(&name, path).map_err(load::RecordError::State)
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
                    .acked(&name, path, written, rejected)
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
        // Every request of a `refresh_in_bulk` index refreshed what it
        // wrote (those of its documents that were retried included).
        if !refresh_in_bulk {
            if let Err(e) = target.refresh(&concrete).await {
                problems.push(format!("refresh failed: {e}"));
            }
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
            // The server refused the archived aliases (a second write
            // index of an alias, say): the documents are in; say how to
            // restore the index without them.
            Err(e @ ClusterError::Http { .. }) if config.aliases => problems.push(format!(
                "aliases: {e} (--no-aliases restores the index without its archived aliases)"
            )),
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
            if let Err(e) = state.done(&index.name, &report) {
                report.status = Status::Failed;
                report.reason = Some(format!("cannot record restore progress: {e}"));
            }
        }
    } else {
        report.reason = Some(problems.join("; "));
    }
    report
}
