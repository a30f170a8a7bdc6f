//! Bulk indexing: archive lines -> `_bulk` requests -> the target.
//!
//! [`BulkBuilder`] turns archive lines into NDJSON pairs without parsing
//! `_source` (its raw bytes are copied), and cuts requests by bytes and by
//! documents. Each request keeps the byte range of every pair, so a partial
//! retry re-joins only the documents that failed.
//!
//! [`BulkIndexer`] sends requests concurrently: a semaphore caps the
//! requests in flight (so memory is bounded by concurrency × request size),
//! the rate limits pace them, and a request's retries run in its own task:
//! whole-request 429/5xx/connection errors are retried with backoff, items
//! answered 429/5xx are retried alone, other item failures are permanent
//! rejects and go to the rejects file. Nothing is dropped silently: every
//! document ends up written, rejected or failed, and counted.
//!
//! A `create` answered 409 (`version_conflict_engine_exception`) for a
//! document esark may have delivered already (an earlier attempt whose
//! answer was lost, or a chunk an interrupted run began: see
//! [`BulkBuilder::set_resend`]) is that earlier write, found in place: it
//! counts as written. A 409 on a first delivery is a genuine conflict and a
//! reject.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use elasticsearch::http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::rate::RateLimits;
use super::rejects::RejectsWriter;
use crate::archive::line::{parse_line, push_json_single_line};
use crate::cluster::Cluster;
use crate::retry::{classify_bulk, BulkVerdict, RetryAction, RetryPolicy};

/// The bulk action used for every document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkOp {
    /// Create or overwrite by id.
    Index,
    /// Create only (data streams accept nothing else).
    Create,
}

/// One `_bulk` request: the body and the byte range of each document's pair.
#[derive(Debug, Clone)]
pub struct BulkRequest {
    body: Bytes,
    spans: Vec<Range<usize>>,
    /// The documents may be on the target already (sent by an interrupted
    /// run): a `create` conflict is then not a reject.
    resend: bool,
}

impl BulkRequest {
    pub fn docs(&self) -> usize {
        self.spans.len()
    }

    pub fn bytes(&self) -> usize {
        self.body.len()
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The NDJSON pair of document `i`.
    pub fn pair(&self, i: usize) -> &[u8] {
        &self.body[self.spans[i].clone()]
    }

    /// A new request of only the documents at `positions`.
    pub fn subset(&self, positions: &[usize]) -> BulkRequest {
        let mut body = Vec::with_capacity(positions.iter().map(|&p| self.spans[p].len()).sum());
        let mut spans = Vec::with_capacity(positions.len());
        for &p in positions {
            let start = body.len();
            body.extend_from_slice(self.pair(p));
            spans.push(start..body.len());
        }
        BulkRequest {
            body: Bytes::from(body),
            spans,
            resend: self.resend,
        }
    }
}

/// Builds requests for one target index from archive lines.
pub struct BulkBuilder {
    /// `{"index":{"_index":"<name>"` (or create), computed once.
    action_head: Vec<u8>,
    max_bytes: usize,
    max_docs: usize,
    body: Vec<u8>,
    spans: Vec<Range<usize>>,
    resend: bool,
}

impl BulkBuilder {
    pub fn new(index: &str, op: BulkOp, max_bytes: usize, max_docs: usize) -> BulkBuilder {
        let op = match op {
            BulkOp::Index => "index",
            BulkOp::Create => "create",
        };
        let name = serde_json::to_string(index).expect("a string serializes");
        BulkBuilder {
            action_head: format!("{{\"{op}\":{{\"_index\":{name}").into_bytes(),
            max_bytes: max_bytes.max(1),
            max_docs: max_docs.max(1),
            body: Vec::new(),
            spans: Vec::new(),
            resend: false,
        }
    }

    /// Marks the requests taken from now on as resends (`true`) of
    /// documents an earlier run may have delivered, or not.
    pub fn set_resend(&mut self, resend: bool) {
        self.resend = resend;
    }

    /// Adds one archive line (without its newline). Returns a request when
    /// this line filled one. `Err` describes a malformed line.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<BulkRequest>, String> {
        let parsed = parse_line(line).map_err(|e| e.to_string())?;
        if self.body.capacity() == 0 {
            self.body.reserve(self.max_bytes.min(64 << 20) + 64 * 1024);
        }
        let start = self.body.len();
        self.body.extend_from_slice(&self.action_head);
        self.body.extend_from_slice(b",\"_id\":");
        self.body.extend_from_slice(parsed.id);
        if let Some(r) = parsed.routing {
            self.body.extend_from_slice(b",\"routing\":");
            self.body.extend_from_slice(r);
        }
        self.body.extend_from_slice(b"}}\n");
        push_json_single_line(&mut self.body, parsed.source);
        self.body.push(b'\n');
        self.spans.push(start..self.body.len());
        if self.body.len() >= self.max_bytes || self.spans.len() >= self.max_docs {
            Ok(self.take())
        } else {
            Ok(None)
        }
    }

    /// The last, partly filled request.
    pub fn finish(mut self) -> Option<BulkRequest> {
        self.take()
    }

    /// The partly filled request, now (at a chunk boundary).
    pub fn take(&mut self) -> Option<BulkRequest> {
        if self.spans.is_empty() {
            return None;
        }
        Some(BulkRequest {
            body: Bytes::from(std::mem::take(&mut self.body)),
            spans: std::mem::take(&mut self.spans),
            resend: self.resend,
        })
    }
}

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

impl RequestTask {
    async fn run(self, mut request: BulkRequest) {
        let mut rng = fastrand::Rng::new();
        let mut attempt = 1;
        // Whether the documents of `request` may be on the target already.
        let mut sent_before = request.resend;
        loop {
            self.limits
                .acquire(request.docs() as u64, request.bytes() as u64)
                .await;
            // The status of a whole request refused (413 too large, say):
            // what each of its documents is recorded with.
            let mut http_status = 0;
            let (mut verdict, applied) = match self
                .cluster
                .request_once(Method::Post, "_bulk", Some(request.body().clone()))
                .await
            {
                // A whole request answered 429 was not applied.
                Ok((status, body)) => {
                    if !(200..300).contains(&status) {
                        http_status = status;
                    }
                    (classify_bulk(status, &body, request.docs()), status != 429)
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
            sent_before |= applied;
            self.stats
                .written
                .fetch_add(found as u64, Ordering::Relaxed);
            for failure in &verdict.rejected {
                self.reject(&request, failure.position, failure.status, &failure.reason);
            }
            self.stats
                .rejected
                .fetch_add(verdict.rejected.len() as u64, Ordering::Relaxed);
            let retry: Vec<usize> = match verdict.action {
                RetryAction::Success => {
                    let ok = request.docs() - verdict.rejected.len() - found;
                    self.stats.written.fetch_add(ok as u64, Ordering::Relaxed);
                    return;
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
                    return;
                }
            };
            if attempt >= self.policy.max_attempts {
                let reason = format!("gave up after {attempt} attempts: {}", verdict.reason);
                self.give_up(&request, &retry, http_status, &reason);
                return;
            }
            if retry.len() != request.docs() {
                request = request.subset(&retry);
            }
            let delay = self.policy.delay(attempt, &mut rng);
            tracing::debug!(
                "bulk to {:?}: retrying {} documents in {delay:?} ({})",
                self.index,
                retry.len(),
                verdict.reason
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Auth, ClusterConfig};
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    /// A scripted HTTP server: `GET /` answers like OpenSearch, each
    /// `POST /_bulk` gets the next scripted (status, body); bodies received
    /// are recorded.
    async fn scripted_server(script: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let (seen, script) = (seen2.clone(), script.clone());
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut request_line = String::new();
                        if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0;
                        loop {
                            let mut header = String::new();
                            read.read_line(&mut header).await.unwrap();
                            if header == "\r\n" {
                                break;
                            }
                            if let Some(v) =
                                header.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; length];
                        read.read_exact(&mut body).await.unwrap();
                        let (status, answer) = if request_line.starts_with("GET / ") {
                            (200, r#"{"cluster_name":"t","cluster_uuid":"u","version":{"distribution":"opensearch","number":"2.11.0"}}"#.to_string())
                        } else {
                            seen.lock().unwrap().push(String::from_utf8(body).unwrap());
                            script
                                .lock()
                                .unwrap()
                                .next()
                                .unwrap_or((500, "script exhausted".into()))
                        };
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        write.write_all(response.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (url, seen)
    }

    async fn indexer_for(url: &str, rejects: &Arc<RejectsWriter>) -> BulkIndexer {
        let (url, auth) = ClusterConfig::from_url(url).unwrap();
        assert!(matches!(auth, Auth::None));
        let cluster = Cluster::connect(&ClusterConfig {
            url,
            auth,
            ca_cert: None,
            client_cert: None,
            insecure: false,
            timeout: Duration::from_secs(10),
        })
        .await
        .unwrap();
        let policy = RetryPolicy {
            initial: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_attempts: 3,
        };
        BulkIndexer::new(
            Arc::new(cluster),
            2,
            RateLimits::default(),
            policy,
            rejects.clone(),
        )
    }

    fn three_docs() -> BulkRequest {
        let mut b = BulkBuilder::new("i", BulkOp::Index, 1 << 20, 3);
        b.push_line(br#"{"_id":"1","_source":{"a":1}}"#).unwrap();
        b.push_line(br#"{"_id":"2","_source":{"a":2}}"#).unwrap();
        b.push_line(br#"{"_id":"3","_source":{"a":"x"}}"#)
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn only_failed_items_are_retried_and_permanent_rejects_are_recorded() {
        let (url, seen) = scripted_server(vec![
            (429, r#"{"error":{"type":"es_rejected_execution_exception","reason":"busy"}}"#.into()),
            (200, r#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue"}}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad a"}}}]}"#.into()),
            (200, r#"{"errors":false,"items":[{"index":{"status":201}}]}"#.into()),
        ])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let rejects = Arc::new(RejectsWriter::new(&dir.path().join("r.jsonl")));
        let indexer = indexer_for(&url, &rejects).await;
        let stats = Arc::new(IndexStats::default());
        let mut pending = Pending::new();
        indexer
            .submit(&Arc::from("i"), three_docs(), &stats, &mut pending)
            .await;
        pending.wait().await;
        assert_eq!(stats.snapshot(), (2, 1, 0));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], seen[1], "a whole-request 429 resends everything");
        assert_eq!(
            seen[2],
            "{\"index\":{\"_index\":\"i\",\"_id\":\"2\"}}\n{\"a\":2}\n"
        );
        rejects.flush().unwrap();
        let text = std::fs::read_to_string(rejects.path()).unwrap();
        assert_eq!(
            text,
            "{\"index\":\"i\",\"id\":\"3\",\"status\":400,\"reason\":\"mapper_parsing_exception: bad a\",\"document\":{\"a\":\"x\"}}\n"
        );
    }

    #[tokio::test]
    async fn exhausted_retries_count_as_failed_and_are_recorded() {
        let busy = r#"{"error":{"type":"es_rejected_execution_exception","reason":"busy"}}"#;
        let (url, seen) = scripted_server(vec![
            (503, busy.into()),
            (503, busy.into()),
            (503, busy.into()),
        ])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let rejects = Arc::new(RejectsWriter::new(&dir.path().join("r.jsonl")));
        let indexer = indexer_for(&url, &rejects).await;
        let stats = Arc::new(IndexStats::default());
        let mut pending = Pending::new();
        indexer
            .submit(&Arc::from("i"), three_docs(), &stats, &mut pending)
            .await;
        pending.wait().await;
        assert_eq!(stats.snapshot(), (0, 0, 3));
        assert_eq!(seen.lock().unwrap().len(), 3);
        rejects.flush().unwrap();
        let text = std::fs::read_to_string(rejects.path()).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(
            text.contains("gave up after 3 attempts: HTTP 503"),
            "{text}"
        );
    }

    fn three_creates(resend: bool) -> BulkRequest {
        let mut b = BulkBuilder::new("ds", BulkOp::Create, 1 << 20, 3);
        b.set_resend(resend);
        b.push_line(br#"{"_id":"1","_source":{"a":1}}"#).unwrap();
        b.push_line(br#"{"_id":"2","_source":{"a":2}}"#).unwrap();
        b.push_line(br#"{"_id":"3","_source":{"a":3}}"#)
            .unwrap()
            .unwrap()
    }

    /// `(written, rejected, failed)` and the rejects file after sending
    /// `request` to a server answering `script`.
    async fn send(script: Vec<(u16, String)>, request: BulkRequest) -> ((u64, u64, u64), String) {
        let (url, _) = scripted_server(script).await;
        let dir = tempfile::tempdir().unwrap();
        let rejects = Arc::new(RejectsWriter::new(&dir.path().join("r.jsonl")));
        let indexer = indexer_for(&url, &rejects).await;
        let stats = Arc::new(IndexStats::default());
        let mut pending = Pending::new();
        indexer
            .submit(&Arc::from("ds"), request, &stats, &mut pending)
            .await;
        pending.wait().await;
        rejects.flush().unwrap();
        let text = std::fs::read_to_string(rejects.path()).unwrap_or_default();
        (stats.snapshot(), text)
    }

    /// A data stream `create` answered 409 after an attempt that may have
    /// been applied (lost answer, 5xx), or for a chunk an interrupted run
    /// began, is that earlier write; after a 429 (not applied) or on a first
    /// delivery, it is a genuine conflict.
    #[tokio::test]
    async fn a_create_conflict_is_written_only_when_esark_may_have_sent_it_before() {
        let conflict = r#"{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}}"#;
        let created = r#"{"create":{"status":201}}"#;
        let answer = |items: [&str; 3]| {
            (
                200,
                format!(r#"{{"errors":true,"items":[{}]}}"#, items.join(",")),
            )
        };
        let busy = |status| {
            (
                status,
                r#"{"error":{"type":"x","reason":"busy"}}"#.to_string(),
            )
        };

        let (stats, rejects) = send(
            vec![busy(503), answer([created, conflict, conflict])],
            three_creates(false),
        )
        .await;
        assert_eq!(stats, (3, 0, 0));
        assert_eq!(rejects, "");

        let (stats, rejects) = send(
            vec![busy(429), answer([created, conflict, conflict])],
            three_creates(false),
        )
        .await;
        assert_eq!(stats, (1, 2, 0));
        assert_eq!(rejects.lines().count(), 2);
        assert!(rejects.contains("\"status\":409"), "{rejects}");

        let (stats, _) = send(
            vec![answer([conflict, created, conflict])],
            three_creates(true),
        )
        .await;
        assert_eq!(stats, (3, 0, 0));

        let (stats, rejects) = send(
            vec![answer([conflict, created, created])],
            three_creates(false),
        )
        .await;
        assert_eq!(stats, (2, 1, 0));
        assert!(rejects.contains("\"id\":\"1\""), "{rejects}");
    }

    #[test]
    fn builder_copies_sources_and_cuts_by_docs_and_bytes() {
        let mut b = BulkBuilder::new("my\"idx", BulkOp::Index, 1 << 20, 2);
        assert!(b
            .push_line(
                br#"{"_id":"1","_routing":"r","_source":{"big":9223372036854775807,"z":1,"a":2}}"#
            )
            .unwrap()
            .is_none());
        let req = b
            .push_line(br#"{"_id":"2","_source":{}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(req.docs(), 2);
        assert_eq!(
            std::str::from_utf8(req.body()).unwrap(),
            concat!(
                r#"{"index":{"_index":"my\"idx","_id":"1","routing":"r"}}"#,
                "\n",
                r#"{"big":9223372036854775807,"z":1,"a":2}"#,
                "\n",
                r#"{"index":{"_index":"my\"idx","_id":"2"}}"#,
                "\n",
                "{}\n"
            )
        );
        let sub = req.subset(&[1]);
        assert_eq!(
            std::str::from_utf8(sub.body()).unwrap(),
            "{\"index\":{\"_index\":\"my\\\"idx\",\"_id\":\"2\"}}\n{}\n"
        );
        assert!(b.finish().is_none());

        let mut small = BulkBuilder::new("i", BulkOp::Create, 10, 1000);
        let r = small
            .push_line(br#"{"_id":"1","_source":{"a":1}}"#)
            .unwrap()
            .unwrap();
        assert!(std::str::from_utf8(r.body())
            .unwrap()
            .starts_with("{\"create\":"));
        assert!(small.push_line(b"{oops").is_err());
    }
}
