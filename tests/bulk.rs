//! The bulk indexer alone, against a scripted cluster (the front's
//! [`Scripted`] layer): only failed items are retried, permanent rejects
//! are recorded, exhausted retries count as failed, and a `create`
//! conflict counts as written only when esark may have sent the document
//! before. The request builder's own tests are unit tests in
//! `src/sink/bulk/request.rs`.

use std::sync::Arc;
use std::time::Duration;

use esark::cluster::{Auth, Cluster, ClusterConfig};
use esark::retry::RetryPolicy;
use esark::sink::bulk::{BulkBuilder, BulkIndexer, BulkOp, BulkRequest, IndexStats, Pending};
use esark::sink::rate::RateLimits;
use esark::sink::rejects::RejectsWriter;

use crate::util::front::plan::Route;
use crate::util::front::scripted::Scripted;
use crate::util::front::Front;

/// A front answering `GET /` like OpenSearch and each `_bulk` with the next
/// of `script`, and the layer (which keeps the bulk bodies it received).
fn scripted_cluster(script: Vec<(u16, String)>) -> (Front, Arc<Scripted>) {
    let scripted = Arc::new(Scripted::opensearch().script(Route::bulk(), script));
    (Front::start(None, vec![scripted.clone()]), scripted)
}

async fn indexer_for(url: &str, rejects: &Arc<RejectsWriter>) -> BulkIndexer {
    let policy = RetryPolicy {
        initial: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_attempts: 3,
    };
    indexer_with(url, rejects, policy, 2).await
}

async fn indexer_with(
    url: &str,
    rejects: &Arc<RejectsWriter>,
    policy: RetryPolicy,
    concurrency: usize,
) -> BulkIndexer {
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
    BulkIndexer::new(
        Arc::new(cluster),
        concurrency,
        RateLimits::default(),
        policy,
        rejects.clone(),
    )
}

/// `(written, rejected, failed)`, the rejects file and the bulk bodies the
/// cluster received, after sending `request` to one answering `script`.
async fn send(
    script: Vec<(u16, String)>,
    index: &str,
    request: BulkRequest,
) -> ((u64, u64, u64), String, Vec<String>) {
    let (front, scripted) = scripted_cluster(script);
    let dir = tempfile::tempdir().unwrap();
    let rejects = Arc::new(RejectsWriter::new(&dir.path().join("r.jsonl")));
    let indexer = indexer_for(&front.url(), &rejects).await;
    let stats = Arc::new(IndexStats::default());
    let mut pending = Pending::new();
    indexer
        .submit(&Arc::from(index), request, &stats, &mut pending)
        .await;
    pending.wait().await;
    rejects.flush().unwrap();
    let text = std::fs::read_to_string(rejects.path()).unwrap_or_default();
    (stats.snapshot(), text, scripted.bodies(&Route::bulk()))
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
    let (stats, rejects, seen) = send(
        vec![
            (429, r#"{"error":{"type":"es_rejected_execution_exception","reason":"busy"}}"#.into()),
            (200, r#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue"}}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad a"}}}]}"#.into()),
            (200, r#"{"errors":false,"items":[{"index":{"status":201}}]}"#.into()),
        ],
        "i",
        three_docs(),
    )
    .await;
    assert_eq!(stats, (2, 1, 0));
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0], seen[1], "a whole-request 429 resends everything");
    assert_eq!(
        seen[2],
        "{\"index\":{\"_index\":\"i\",\"_id\":\"2\"}}\n{\"a\":2}\n"
    );
    assert_eq!(
        rejects,
        "{\"index\":\"i\",\"id\":\"3\",\"status\":400,\"reason\":\"mapper_parsing_exception: bad a\",\"document\":{\"a\":\"x\"}}\n"
    );
}

#[tokio::test]
async fn exhausted_retries_count_as_failed_and_are_recorded() {
    let busy = r#"{"error":{"type":"es_rejected_execution_exception","reason":"busy"}}"#;
    let (stats, rejects, seen) = send(
        vec![(503, busy.into()), (503, busy.into()), (503, busy.into())],
        "i",
        three_docs(),
    )
    .await;
    assert_eq!(stats, (0, 0, 3));
    assert_eq!(seen.len(), 3);
    assert_eq!(rejects.lines().count(), 3);
    assert!(
        rejects.contains("gave up after 3 attempts: HTTP 503"),
        "{rejects}"
    );
}

#[tokio::test]
async fn a_whole_request_refused_for_good_is_failed_at_once_with_its_status() {
    let bad = r#"{"error":{"type":"parse_exception","reason":"bad"}}"#;
    let (stats, rejects, seen) = send(vec![(400, bad.into())], "i", three_docs()).await;
    assert_eq!(stats, (0, 0, 3));
    assert_eq!(seen.len(), 1, "a 400 is not retried");
    assert_eq!(rejects.lines().count(), 3);
    assert!(rejects.contains("\"status\":400"), "{rejects}");
    assert!(!rejects.contains("gave up after"), "{rejects}");
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

    let (stats, rejects, _) = send(
        vec![busy(503), answer([created, conflict, conflict])],
        "ds",
        three_creates(false),
    )
    .await;
    assert_eq!(stats, (3, 0, 0));
    assert_eq!(rejects, "");

    let (stats, rejects, _) = send(
        vec![busy(429), answer([created, conflict, conflict])],
        "ds",
        three_creates(false),
    )
    .await;
    assert_eq!(stats, (1, 2, 0));
    assert_eq!(rejects.lines().count(), 2);
    assert!(rejects.contains("\"status\":409"), "{rejects}");

    let (stats, _, _) = send(
        vec![answer([conflict, created, conflict])],
        "ds",
        three_creates(true),
    )
    .await;
    assert_eq!(stats, (3, 0, 0));

    let (stats, rejects, _) = send(
        vec![answer([conflict, created, created])],
        "ds",
        three_creates(false),
    )
    .await;
    assert_eq!(stats, (2, 1, 0));
    assert!(rejects.contains("\"id\":\"1\""), "{rejects}");
}

/// Bug (found while moving the bulk retries onto `RetryPolicy::drive`:
/// `request_once` dropped the header, so bulk retries never saw it): a
/// `Retry-After` on a 429 paces the bulk retry, within the policy's cap,
/// instead of the backoff alone.
#[tokio::test]
async fn a_retry_after_of_a_refused_bulk_request_is_honoured() {
    let busy = r#"{"error":{"type":"es_rejected_execution_exception","reason":"busy"}}"#;
    let ok = r#"{"errors":false,"items":[{"index":{"status":201}},{"index":{"status":201}},{"index":{"status":201}}]}"#;
    let scripted = Arc::new(
        Scripted::opensearch()
            .retry_after(1)
            .script(Route::bulk(), vec![(429, busy.into()), (200, ok.into())]),
    );
    let front = Front::start(None, vec![scripted.clone()]);
    // Without the header the retry would wait at most 1 ms.
    let policy = RetryPolicy {
        initial: Duration::from_millis(1),
        max_delay: Duration::from_secs(10),
        max_attempts: 3,
    };
    let dir = tempfile::tempdir().unwrap();
    let rejects = Arc::new(RejectsWriter::new(&dir.path().join("r.jsonl")));
    let indexer = indexer_with(&front.url(), &rejects, policy, 1).await;
    let stats = Arc::new(IndexStats::default());
    let mut pending = Pending::new();
    let started = std::time::Instant::now();
    indexer
        .submit(&Arc::from("i"), three_docs(), &stats, &mut pending)
        .await;
    pending.wait().await;
    let waited = started.elapsed();
    assert_eq!(stats.snapshot(), (3, 0, 0));
    assert_eq!(scripted.bodies(&Route::bulk()).len(), 2);
    assert!(
        waited >= Duration::from_millis(900),
        "the retry came after {waited:?}, not after the 1 s asked for"
    );
}
