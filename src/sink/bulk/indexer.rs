//! The bulk indexer: sends [`BulkRequest`]s to the target and settles
//! every document as written, rejected or failed.
//!
//! [`BulkIndexer`] sends requests concurrently: a semaphore caps the
//! requests in flight (so memory is bounded by concurrency × request size),
//! the rate limits pace them, and a request's retries run in its own task
//! through the one [`RetryPolicy`] ([`RetryPolicy::drive`]): the decision on
//! each answer is the pure [`classify_bulk`]; whole-request 429/5xx and
//! connection errors are retried whole, items answered 429/5xx are retried
//! alone, other item failures are permanent rejects and go to the rejects
//! file. Nothing is dropped silently: every document ends up written,
//! rejected or failed, and counted.
//!
//! A `create` answered 409 (`version_conflict_engine_exception`) for a
//! document esark may have delivered already (an earlier attempt whose
//! answer was lost, or a chunk an interrupted run began: see
//! [`super::BulkBuilder::set_resend`]) is that earlier write, found in
//! place: it counts as written. A 409 on a first delivery is a genuine
//! conflict and a reject.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use elasticsearch::http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::request::BulkRequest;
use crate::cluster::Cluster;
use crate::retry::{classify_bulk, BulkVerdict, RetryAction, RetryPolicy, Verdict};
use crate::sink::rate::RateLimits;
use crate::sink::rejects::RejectsWriter;

/// Counts of one index's documents, updated by the request tasks.
#[derive(Debug, Default)]
pub struct IndexStats {
    pub written: AtomicU64,
    /// Refused for good by the target (mapping conflict, bad document).
    pub rejected: AtomicU64,
    /// Not delivered: retries exhausted or the whole request refused.
    pub failed: AtomicU64,
}

impl IndexStats {
    /// Adds another set of counts to these.
    pub fn add(&self, written: u64, rejected: u64, failed: u64) {
        self.written.fetch_add(written, Ordering::Relaxed);
        self.rejected.fetch_add(rejected, Ordering::Relaxed);
        self.failed.fetch_add(failed, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.written.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Sends bulk requests to one cluster; shared by every index of a run.
pub struct BulkIndexer {
    cluster: Arc<Cluster>,
    /// Caps the requests in flight: a permit is taken before a request is
    /// handed to its task and released when the task ends (sent, retried,
    /// given up). Submitting waits for a permit, which is the backpressure
    /// that stops readers from racing ahead.
    permits: Arc<Semaphore>,
    limits: Arc<RateLimits>,
    policy: RetryPolicy,
    rejects: Arc<RejectsWriter>,
}

/// The request tasks of one index; awaiting it waits for all of them.
pub struct Pending {
    tasks: JoinSet<()>,
}

impl Pending {
    pub fn new() -> Pending {
        Pending {
            tasks: JoinSet::new(),
        }
    }

    /// Waits for every request task. A panicked task is counted by the caller
    /// through the stats (its documents are neither written nor rejected).
    pub async fn wait(mut self) {
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!("a bulk request task failed: {e}");
            }
        }
    }
}

impl Default for Pending {
    fn default() -> Self {
        Self::new()
    }
}

impl BulkIndexer {
    pub fn new(
        cluster: Arc<Cluster>,
        concurrency: usize,
        limits: RateLimits,
        policy: RetryPolicy,
        rejects: Arc<RejectsWriter>,
    ) -> BulkIndexer {
        BulkIndexer {
            cluster,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            limits: Arc::new(limits),
            policy,
            rejects,
        }
    }

    /// Where this indexer records rejected documents.
    pub fn rejects(&self) -> &Arc<RejectsWriter> {
        &self.rejects
    }

    /// Waits for a free slot, then sends `request` (with its retries) in a
    /// task of `pending`.
    pub async fn submit(
        &self,
        index: &Arc<str>,
        request: BulkRequest,
        stats: &Arc<IndexStats>,
        pending: &mut Pending,
    ) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let task = RequestTask {
            cluster: self.cluster.clone(),
            limits: self.limits.clone(),
            policy: self.policy.clone(),
            rejects: self.rejects.clone(),
            index: index.clone(),
            stats: stats.clone(),
            _permit: permit,
        };
        pending.tasks.spawn(task.run(request));
    }
}

/// One request and its retries.
struct RequestTask {
    cluster: Arc<Cluster>,
    limits: Arc<RateLimits>,
    policy: RetryPolicy,
    rejects: Arc<RejectsWriter>,
    index: Arc<str>,
    stats: Arc<IndexStats>,
    /// Held for the task's life: dropping it frees a slot for the next request.
    _permit: OwnedSemaphorePermit,
}

/// What is left of a request between its attempts.
struct Round {
    /// The documents the next attempt sends (or the last one sent).
    request: BulkRequest,
    /// Whether the documents of `request` may be on the target already.
    sent_before: bool,
    /// Positions of `request` the last attempt left to retry; the next
    /// attempt cuts `request` down to them first.
    retry: Option<Vec<usize>>,
}

/// What one attempt left to do.
#[derive(Debug)]
enum Outcome {
    /// Every document of the attempt is written, rejected or given up.
    Settled,
    /// These positions of the request sent are worth another attempt.
    Retry {
        positions: Vec<usize>,
        /// The status of a whole request refused, 0 otherwise: what each
        /// document is recorded with if the attempts run out.
        http_status: u16,
        reason: String,
        /// What the answer's `Retry-After` asked for.
        after: Option<Duration>,
    },
}

impl RequestTask {
    /// Attempts the request through the retry policy until every document
    /// is settled or the attempts run out (then the documents still to
    /// retry are failed).
    async fn run(self, request: BulkRequest) {
        let round = Mutex::new(Round {
            sent_before: request.is_resend(),
            request,
            retry: None,
        });
        let (last, attempts) = self
            .policy
            .drive(
                || self.attempt(&round),
                |outcome: &Outcome| match outcome {
                    Outcome::Settled => Verdict::Done,
                    // A `Retry-After` of the answer paces the retry (within
                    // the policy's cap); the backoff otherwise.
                    Outcome::Retry {
                        positions,
                        reason,
                        after,
                        ..
                    } => Verdict::Retry {
                        after: *after,
                        why: format!(
                            "bulk to {:?}: {} documents to retry: {reason}",
                            self.index,
                            positions.len()
                        ),
                    },
                },
            )
            .await;
        if let Outcome::Retry {
            positions,
            http_status,
            reason,
            ..
        } = last
        {
            let round = round.into_inner().expect("no attempt panicked holding it");
            let reason = format!("gave up after {attempts} attempts: {reason}");
            self.give_up(&round.request, &positions, http_status, &reason);
        }
    }

    /// Sends what is left of the request once and settles what the answer
    /// settles: written, found in place, rejected, or (whole request
    /// refused for good) failed.
    async fn attempt(&self, round: &Mutex<Round>) -> Outcome {
        let (request, sent_before) = {
            let mut round = round.lock().unwrap();
            if let Some(positions) = round.retry.take() {
                if positions.len() != round.request.docs() {
                    round.request = round.request.subset(&positions);
                }
            }
            (round.request.clone(), round.sent_before)
        };
        self.limits
            .acquire(request.docs() as u64, request.bytes() as u64)
            .await;
        let mut http_status = 0;
        let mut after = None;
        let (mut verdict, applied) = match self
            .cluster
            .request_once(Method::Post, request.path(), Some(request.body().clone()))
            .await
        {
            // A whole request answered 429 was not applied.
            Ok(reply) => {
                if !(200..300).contains(&reply.status) {
                    http_status = reply.status;
                }
                after = reply.retry_after;
                (
                    classify_bulk(reply.status, &reply.body, request.docs()),
                    reply.status != 429,
                )
            }
            Err(e) => (
                BulkVerdict {
                    action: if e.is_transport() {
                        RetryAction::Retry
                    } else {
                        RetryAction::DontRetry
                    },
                    rejected: Vec::new(),
                    reason: e.to_string(),
                },
                true,
            ),
        };
        let found = if sent_before {
            let before = verdict.rejected.len();
            verdict
                .rejected
                .retain(|f| !is_create_conflict(f.status, &f.reason));
            before - verdict.rejected.len()
        } else {
            0
        };
        round.lock().unwrap().sent_before |= applied;
        self.stats
            .written
            .fetch_add(found as u64, Ordering::Relaxed);
        for failure in &verdict.rejected {
            self.reject(&request, failure.position, failure.status, &failure.reason);
        }
        self.stats
            .rejected
            .fetch_add(verdict.rejected.len() as u64, Ordering::Relaxed);
        let positions: Vec<usize> = match verdict.action {
            RetryAction::Success => {
                let ok = request.docs() - verdict.rejected.len() - found;
                self.stats.written.fetch_add(ok as u64, Ordering::Relaxed);
                return Outcome::Settled;
            }
            RetryAction::RetryPartial(positions) => {
                let ok = request.docs() - verdict.rejected.len() - found - positions.len();
                self.stats.written.fetch_add(ok as u64, Ordering::Relaxed);
                positions
            }
            RetryAction::Retry => (0..request.docs()).collect(),
            RetryAction::DontRetry => {
                self.give_up(
                    &request,
                    &(0..request.docs()).collect::<Vec<_>>(),
                    http_status,
                    &verdict.reason,
                );
                return Outcome::Settled;
            }
        };
        round.lock().unwrap().retry = Some(positions.clone());
        Outcome::Retry {
            positions,
            http_status,
            reason: verdict.reason,
            after,
        }
    }

    /// Documents that could not be delivered, recorded with the status of
    /// the last answer to their request (0 when there was none).
    fn give_up(&self, request: &BulkRequest, positions: &[usize], status: u16, reason: &str) {
        for &p in positions {
            self.reject(request, p, status, reason);
        }
        self.stats
            .failed
            .fetch_add(positions.len() as u64, Ordering::Relaxed);
    }

    /// Records a document in the rejects file. A failed write is kept by
    /// the writer and fails the run (and the chunk is not acknowledged).
    fn reject(&self, request: &BulkRequest, position: usize, status: u16, reason: &str) {
        let _ = self
            .rejects
            .write(&self.index, request.pair(position), status, reason);
    }
}

/// A `create` of an id that exists: Elasticsearch answers 409
/// `version_conflict_engine_exception` ("document already exists").
fn is_create_conflict(status: u16, reason: &str) -> bool {
    status == 409 && reason.starts_with("version_conflict_engine_exception")
}
