//! Runs the jobs of the database: at most `max_jobs` at once, each one of
//! the library calls with an [`Events`] handle folding its events into
//! progress (persisted every second and at the end) and a cancellation
//! token that the API's cancel and the service's shutdown cancel alike.
//!
//! A job's files live in `STATE/jobs/<id>/`: `log.txt` (its warnings and
//! how it ended), `errors.ndjson` (its rejected documents as the API
//! serves them), and for an import its restore state and rejects file.
//! Nothing written there or into the database holds a cluster's secret:
//! messages pass through [`Secrets::redact`] first.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::ServeConfig;
use super::db::{create_private_dir, now, Db, JobRecord};
use super::metrics::Metrics;
use super::options::{self, archive_location, job_dir, Context, Prepared};
use super::progress::Progress;
use super::secrets::Secrets;
use super::status::Status;
use crate::archive::store::Location;
use crate::dump::DumpError;
use crate::job::{Event, Events};
use crate::restore::report::RestoreReport;
use crate::restore::RestoreError;
use crate::verify::VerifyError;

/// How often a running job's progress is written to the database.
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// Why a running job was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `POST /v1/jobs/{id}/cancel`: it ends `cancelled`.
    User,
    /// The service is going away: it ends `interrupted` (resumable).
    Shutdown,
}

/// A job that holds a slot.
#[derive(Default)]
struct Live {
    /// The job's own token: cancelling it stops the library call the way
    /// Ctrl-C stops the CLI's.
    cancel: CancellationToken,
    stop: Mutex<Option<Stop>>,
    progress: Mutex<Progress>,
}

/// The job runner, shared by the handlers.
pub struct Runner {
    db: Arc<Db>,
    config: Arc<ServeConfig>,
    metrics: Arc<Metrics>,
    secrets: Secrets,
    /// `max_jobs` permits: a job holds one while it runs; queued jobs wait
    /// for one (in submission order: tokio's semaphore is fair).
    slots: Arc<Semaphore>,
    /// Jobs holding a slot, by id: what cancel and progress reads reach.
    live: Mutex<HashMap<String, Arc<Live>>>,
    /// Cancelled when the service stops: queued jobs stop waiting (they
    /// stay `queued` and run after the next start).
    stopping: CancellationToken,
    /// Every job task, awaited at shutdown.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// How a run ended.
struct Ended {
    status: Status,
    error: Option<String>,
    report: Option<Value>,
}

impl Runner {
    pub fn new(db: Arc<Db>, config: Arc<ServeConfig>, metrics: Arc<Metrics>) -> Runner {
        Runner {
            secrets: Secrets::of(&config),
            slots: Arc::new(Semaphore::new(config.max_jobs)),
            db,
            config,
            metrics,
            live: Mutex::default(),
            stopping: CancellationToken::new(),
            tasks: Mutex::default(),
        }
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Runs queued job `id` once a slot is free.
    pub fn enqueue(self: &Arc<Self>, id: String) {
        let runner = self.clone();
        let handle = tokio::spawn(async move { runner.run(id).await });
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// The in-memory progress of a running job (fresher than the
    /// database's).
    pub fn progress(&self, id: &str) -> Option<Progress> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(id)
            .map(|l| l.progress.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Asks job `id` to stop: a running job becomes `cancelling` (then
    /// `cancelled`), a queued one `cancelled` at once. `false` if it was
    /// neither.
    pub fn cancel(&self, id: &str) -> Result<bool, super::db::DbError> {
        if self.db.transition(id, Status::Cancelling)? {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(live) = live.get(id) {
                live.stop
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(Stop::User);
                live.cancel.cancel();
            }
            return Ok(true);
        }
        // Still waiting for a slot: its task sees the change and leaves.
        self.db.transition(id, Status::Cancelled)
    }

    /// The service stops: running jobs are cancelled (they checkpoint and
    /// end `interrupted`), queued ones stay queued; returns when every job
    /// task has ended.
    pub async fn shutdown(&self) {
        self.stopping.cancel();
        for live in self.live.lock().unwrap_or_else(|p| p.into_inner()).values() {
            live.stop
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(Stop::Shutdown);
            live.cancel.cancel();
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }

    async fn run(self: Arc<Self>, id: String) {
        let permit = tokio::select! {
            biased;
            _ = self.stopping.cancelled() => return,
            permit = self.slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let live = Arc::new(Live::default());
        // Registered before it is `running`, so a cancel that sees it
        // running finds its token.
        self.live_map().insert(id.clone(), live.clone());
        // Checked after registering: `shutdown` sets `stopping` before it
        // cancels the registered jobs, so a job either sees it here or is
        // cancelled there, never neither.
        if self.stopping.is_cancelled() {
            self.live_map().remove(&id);
            return;
        }
        let job = match self.db.transition(&id, Status::Running) {
            Ok(true) => self.db.get(&id).ok().flatten(),
            _ => None,
        };
        if let Some(job) = job {
            let ended = self.execute(&job, &live).await;
            let progress = live
                .progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            self.metrics.job_ended(job.kind, &progress);
            let error = ended.error.map(|e| self.secrets.redact(&e));
            let report = ended.report.map(|r| self.secrets.redact_json(r));
            log_line(
                &job_dir(&self.config.state, &id),
                &format!(
                    "ended {}: {}",
                    ended.status.as_str(),
                    error.as_deref().unwrap_or("ok")
                ),
            );
            if let Err(e) = self.db.finish(
                &id,
                ended.status,
                error.as_deref(),
                report.as_ref(),
                &progress,
            ) {
                tracing::error!("job {id}: cannot record its end: {e}");
            }
        }
        self.live_map().remove(&id);
        drop(permit);
    }

    fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Live>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the library call of `job` to its end.
    async fn execute(&self, job: &JobRecord, live: &Arc<Live>) -> Ended {
        let dir = job_dir(&self.config.state, &job.id);
        if let Err(e) = create_private_dir(&dir) {
            return failed(format!("cannot create {}: {e}", dir.display()));
        }
        let prepared = match self.prepare(job, &dir) {
            Ok(p) => p,
            Err(message) => return failed(message),
        };
        // Events fold into progress on the job's tasks (quick); rejects and
        // warnings go to a writer task that does the file work.
        let (tx, rx) = mpsc::unbounded_channel();
        let folding = live.clone();
        let events = Events::new(move |event| {
            folding
                .progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply(&event);
            if matches!(
                event,
                Event::DocumentRejected { .. } | Event::Warning { .. } | Event::Info { .. }
            ) {
                let _ = tx.send(event);
            }
        });
        let writer = tokio::spawn(write_events(dir.clone(), rx, self.secrets.clone()));
        let persist = {
            let (db, id, live) = (self.db.clone(), job.id.clone(), live.clone());
            tokio::spawn(async move {
                let mut last = Progress::default();
                loop {
                    tokio::time::sleep(PERSIST_EVERY).await;
                    let now = live
                        .progress
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    if now != last {
                        let _ = db.set_progress(&id, &now);
                        last = now;
                    }
                }
            })
        };
        let cancel = live.cancel.clone();
        let stopped = || {
            let stop = *live.stop.lock().unwrap_or_else(|p| p.into_inner());
            Ended {
                status: if stop == Some(Stop::Shutdown) {
                    Status::Interrupted
                } else {
                    Status::Cancelled
                },
                error: None,
                report: None,
            }
        };
        let ended = match prepared {
            Prepared::Export(mut config) => {
                config.resume = has_checkpoint(&config.output).await;
                let events = events.clone();
                let result = on_own_thread(move || async move {
                    crate::dump::run(&config, &events, cancel).await
                })
                .await;
                match result {
                    Ok(Ok(report)) => Ended {
                        status: Status::Succeeded,
                        error: None,
                        report: Some(crate::cli::dump::summary_json(&report)),
                    },
                    Ok(Err(DumpError::Interrupted(_) | DumpError::Stopped)) => stopped(),
                    Ok(Err(e)) => failed(e.to_string()),
                    Err(panic) => failed(panic),
                }
            }
            Prepared::Import(mut restore) => {
                restore.config.resume = restore.config.state.as_deref().is_some_and(Path::exists);
                let events = events.clone();
                let result = on_own_thread(move || async move {
                    crate::restore::job::restore(*restore, &events, cancel).await
                })
                .await;
                restore_ended(result, stopped)
            }
            Prepared::Copy(copy) => {
                let events = events.clone();
                let result = on_own_thread(move || async move {
                    crate::restore::job::copy(*copy, &events, cancel).await
                })
                .await;
                restore_ended(result, stopped)
            }
            Prepared::Verify(verify) => {
                let events = events.clone();
                let result = on_own_thread(move || async move {
                    crate::verify::job::verify(*verify, &events, cancel).await
                })
                .await;
                match result {
                    Ok(Ok(report)) => Ended {
                        status: if report.matches() {
                            Status::Succeeded
                        } else {
                            Status::Failed
                        },
                        error: (!report.matches())
                            .then(|| "the target differs from the archive".to_string()),
                        report: Some(crate::cli::verify::report_json(&report)),
                    },
                    Ok(Err(VerifyError::Interrupted)) => stopped(),
                    Ok(Err(e)) => failed(e.to_string()),
                    Err(panic) => failed(panic),
                }
            }
        };
        persist.abort();
        drop(events);
        let _ = writer.await;
        ended
    }

    /// The job's config: its options resolved against the service's
    /// clusters and archives.
    fn prepare(&self, job: &JobRecord, dir: &Path) -> Result<Prepared, String> {
        let cluster_of = |name: &str| {
            self.config
                .clusters
                .get(name)
                .ok_or_else(|| format!("cluster {name:?} is no longer in the service's config"))
        };
        let target = job.target_cluster.as_deref().map(cluster_of).transpose()?;
        let ctx = Context {
            cluster: cluster_of(&job.cluster)?,
            target_cluster: target,
            archive: job
                .archive
                .as_deref()
                .map(|name| archive_location(&self.config.archives, name)),
            job_dir: dir,
        };
        options::prepare(job.kind, &job.options, &ctx).map_err(|e| e.to_string())
    }
}

/// Runs a library call on a thread of tokio's blocking pool, driven by
/// the service's runtime (its tasks are spawned there as usual). The
/// compiler cannot prove the restore's future `Send` through
/// `tokio::spawn`'s higher-ranked bounds (rust-lang/rust#102211), and a
/// future driven by `block_on` need not be. `Err`: the call panicked.
async fn on_own_thread<F, Fut, T>(make: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(make()))
        .await
        .map_err(|e| format!("the job stopped unexpectedly: {e}"))
}

fn failed(message: String) -> Ended {
    Ended {
        status: Status::Failed,
        error: Some(message),
        report: None,
    }
}

fn restore_ended(
    result: Result<Result<RestoreReport, RestoreError>, String>,
    stopped: impl FnOnce() -> Ended,
) -> Ended {
    let result = match result {
        Ok(result) => result,
        Err(panic) => return failed(panic),
    };
    match result {
        Ok(report) if report.interrupted => Ended {
            report: Some(crate::cli::restore::report_json(&report)),
            ..stopped()
        },
        Ok(report) => {
            let (status, error) = match report.exit_code() {
                0 => (Status::Succeeded, None),
                3 => (Status::Partial, None),
                _ => (
                    Status::Failed,
                    Some(format!(
                        "the restore did not complete: {}",
                        crate::restore::report::first_problem(&report)
                    )),
                ),
            };
            Ended {
                status,
                error,
                report: Some(crate::cli::restore::report_json(&report)),
            }
        }
        Err(e) => failed(e.to_string()),
    }
}

/// Whether the archive holds a dump's checkpoint: an export run again
/// (resumed, or queued when the service stopped) continues it.
async fn has_checkpoint(location: &Location) -> bool {
    match location.open().await {
        Ok(store) => store
            .exists(crate::archive::CHECKPOINT_FILE)
            .await
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Writes a job's rejected documents (`errors.ndjson`) and warnings
/// (`log.txt`) as they come.
async fn write_events(
    dir: std::path::PathBuf,
    mut rx: mpsc::UnboundedReceiver<Event>,
    secrets: Secrets,
) {
    let mut errors = None;
    while let Some(event) = rx.recv().await {
        match event {
            Event::DocumentRejected {
                index,
                id,
                status,
                reason,
            } => {
                let file = errors.get_or_insert_with(|| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.join("errors.ndjson"))
                });
                if let Ok(file) = file {
                    let line = json!({"index": index, "id": id, "status": status,
                        "reason": secrets.redact(&reason)});
                    let _ = writeln!(file, "{line}");
                }
            }
            Event::Warning { message } => {
                log_line(&dir, &format!("warning: {}", secrets.redact(&message)))
            }
            Event::Info { message } => log_line(&dir, &secrets.redact(&message)),
            _ => {}
        }
    }
}

/// One line of a job's `log.txt`.
fn log_line(dir: &Path, line: &str) {
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log.txt"))
    {
        let _ = writeln!(file, "{} {line}", now());
    }
}
