//! Retries: what to retry is decided apart from how.
//!
//! [`classify_status`] is a pure decision on an HTTP answer (429 and 5xx are
//! worth another try, other statuses are not; [`classify_answer`] also
//! reads the error's type, for 5xx answers that will not change);
//! [`RetryPolicy`] is the one mechanism that retries: capped exponential
//! backoff with full jitter and a maximum number of attempts
//! (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>).

use std::future::Future;
use std::time::Duration;

use crate::cluster::model::bulk::BulkResponse;

/// What to do with an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAction {
    Success,
    /// Send the whole request again.
    Retry,
    /// Send again only the documents at these positions.
    RetryPartial(Vec<usize>),
    DontRetry,
}

/// A document of a bulk request that failed, by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    pub position: usize,
    pub status: u16,
    pub reason: String,
}

/// The decision on a bulk answer: what to retry, and which documents the
/// server refused for good (mapping conflicts, bad documents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkVerdict {
    pub action: RetryAction,
    /// Permanent failures, whatever the action.
    pub rejected: Vec<ItemFailure>,
    /// Why the request (or its first retried item) failed, for messages.
    pub reason: String,
}

/// Decides on a `_bulk` answer to a request of `sent` documents. Items are
/// paired with documents by position; an answer whose item count differs
/// cannot be paired and is retried whole (bulk indexing by id is idempotent).
pub fn classify_bulk(status: u16, body: &[u8], sent: usize) -> BulkVerdict {
    let verdict = |action, reason: String| BulkVerdict {
        action,
        rejected: Vec::new(),
        reason,
    };
    match classify_status(status) {
        RetryAction::Success => {}
        action => {
            return verdict(
                action,
                format!(
                    "HTTP {status}: {}",
                    crate::cluster::model::error::reason(body)
                ),
            )
        }
    }
    let response: BulkResponse = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return verdict(RetryAction::Retry, format!("unreadable bulk answer: {e}")),
    };
    if response.items.len() != sent {
        return verdict(
            RetryAction::Retry,
            format!(
                "the bulk answer has {} items for {sent} documents",
                response.items.len()
            ),
        );
    }
    let mut retry = Vec::new();
    let mut rejected = Vec::new();
    let mut reason = String::new();
    for (position, item) in response.items.iter().enumerate() {
        let status = item.result.status;
        match classify_status(status) {
            RetryAction::Success => {}
            RetryAction::Retry => {
                if reason.is_empty() {
                    reason = format!("HTTP {status}: {}", item.result.reason());
                }
                retry.push(position);
            }
            _ => rejected.push(ItemFailure {
                position,
                status,
                reason: item.result.reason(),
            }),
        }
    }
    BulkVerdict {
        action: if retry.is_empty() {
            RetryAction::Success
        } else {
            RetryAction::RetryPartial(retry)
        },
        rejected,
        reason,
    }
}

/// Exception types that, as the type of a 5xx answer, are about the
/// request and the cluster's state, not the server's health: sent again,
/// the request gets the same answer. Elasticsearch and OpenSearch answer
/// an `IllegalStateException` with 500: `alias [a] has more than one
/// write index [x,y]` for a second write index of an alias (a `--prefix`
/// side copy beside its original), which was sent 8 times, some 17 s of
/// backoff, before the restore gave up.
const REFUSED_FOR_GOOD_5XX: &[&str] = &["illegal_state_exception", "illegal_argument_exception"];

/// The decision on a whole-request answer: [`classify_status`], except that
/// a 5xx naming one of [`REFUSED_FOR_GOOD_5XX`] as its type is not retried.
pub fn classify_answer(status: u16, body: &[u8]) -> RetryAction {
    match classify_status(status) {
        RetryAction::Retry
            if status >= 500
                && crate::cluster::model::error::ErrorTypes::of(body)
                    .primary()
                    .is_some_and(|t| REFUSED_FOR_GOOD_5XX.contains(&t)) =>
        {
            RetryAction::DontRetry
        }
        action => action,
    }
}

/// The decision for a whole-request HTTP status.
pub fn classify_status(status: u16) -> RetryAction {
    match status {
        200..=299 => RetryAction::Success,
        // 501 (not implemented) and 505 (HTTP version) will not change.
        501 | 505 => RetryAction::DontRetry,
        429 | 500..=599 => RetryAction::Retry,
        _ => RetryAction::DontRetry,
    }
}

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max_delay: Duration,
    /// Total attempts, the first included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the delay before attempt `attempt + 1` (`attempt`
    /// counts from 1): `initial * 2^(attempt-1)`, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max_delay)
    }

    /// A delay drawn uniformly from `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rng.u64(0..=ceiling))
    }

    /// Runs `op` until it succeeds, fails with an error `retryable` rejects,
    /// or attempts run out (then the last error is returned).
    pub async fn run<T, E, F, Fut>(&self, op: F, retryable: impl Fn(&E) -> bool) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let (outcome, _) = self
            .drive(op, |outcome: &Result<T, E>| match outcome {
                Err(e) if retryable(e) => Verdict::Retry {
                    after: None,
                    why: e.to_string(),
                },
                _ => Verdict::Done,
            })
            .await;
        outcome
    }

    /// The one retry mechanism: runs `op` until `judge` accepts its outcome
    /// or attempts run out, sleeping between attempts as [`Backoff`]
    /// says. Returns the last outcome and the number of attempts made.
    pub async fn drive<T, F, Fut>(&self, mut op: F, judge: impl Fn(&T) -> Verdict) -> (T, u32)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = T>,
    {
        let mut backoff = self.backoff();
        loop {
            let outcome = op().await;
            match backoff.next_delay(&judge(&outcome)) {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return (outcome, backoff.attempts()),
            }
        }
    }

    /// The attempts of one operation under this policy, for a loop that
    /// sleeps itself ([`RetryPolicy::drive`], or a reader that must race
    /// the sleep with a cancellation).
    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: self.clone(),
            attempt: 1,
            rng: fastrand::Rng::new(),
        }
    }
}

/// The attempts made at one operation under a [`RetryPolicy`].
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    /// The attempt under way, from 1.
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// Attempts made so far, the one under way included.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// How long to wait before another attempt, after one that `verdict`
    /// judged: `None` when it is done, or when it asks for a retry but
    /// attempts ran out. The wait is a jittered backoff, or as long as the
    /// server asked (`Retry-After`) when that is longer (capped at
    /// `max_delay`). Counts the attempt to come.
    pub fn next_delay(&mut self, verdict: &Verdict) -> Option<Duration> {
        let Verdict::Retry { after, why } = verdict else {
            return None;
        };
        if self.attempt >= self.policy.max_attempts {
            return None;
        }
        let mut delay = self.policy.delay(self.attempt, &mut self.rng);
        if let Some(asked) = after {
            delay = delay.max((*asked).min(self.policy.max_delay));
        }
        tracing::warn!(
            "attempt {} failed ({why}); retrying in {delay:?}",
            self.attempt
        );
        self.attempt += 1;
        Some(delay)
    }

    /// Starts counting again (the operation made progress).
    pub fn reset(&mut self) {
        self.attempt = 1;
    }
}

/// A judgement on one attempt's outcome, for [`RetryPolicy::drive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// Worth another attempt: after at least `after` if the server said so
    /// (`Retry-After`); `why` is for the log.
    Retry {
        after: Option<Duration>,
        why: String,
    },
}

/// The delay a `Retry-After` header asks for, in its seconds form (the
/// HTTP-date form is not sent by Elasticsearch, OpenSearch or the usual
/// proxies in front of them, and is ignored).
pub fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn classification() {
        assert_eq!(classify_status(200), RetryAction::Success);
        assert_eq!(classify_status(429), RetryAction::Retry);
        assert_eq!(classify_status(503), RetryAction::Retry);
        assert_eq!(classify_status(400), RetryAction::DontRetry);
        assert_eq!(classify_status(401), RetryAction::DontRetry);
        assert_eq!(classify_status(404), RetryAction::DontRetry);
        assert_eq!(classify_status(501), RetryAction::DontRetry);
        assert_eq!(classify_status(502), RetryAction::Retry);
    }

    #[test]
    fn a_5xx_about_the_request_itself_is_not_retried() {
        let two_writers = br#"{"error":{"root_cause":[{"type":"illegal_state_exception","reason":"alias [w] has more than one write index [a,b]"}],"type":"illegal_state_exception","reason":"alias [w] has more than one write index [a,b]"},"status":500}"#;
        assert_eq!(classify_answer(500, two_writers), RetryAction::DontRetry);
        // The server's health: retried, whatever the causes say.
        let busy = br#"{"error":{"type":"search_phase_execution_exception","reason":"all shards failed","caused_by":{"type":"illegal_state_exception"}},"status":503}"#;
        assert_eq!(classify_answer(503, busy), RetryAction::Retry);
        assert_eq!(
            classify_answer(500, b"<html>proxy error</html>"),
            RetryAction::Retry
        );
        assert_eq!(classify_answer(502, b""), RetryAction::Retry);
        assert_eq!(classify_answer(429, two_writers), RetryAction::Retry);
        assert_eq!(classify_answer(200, b"{}"), RetryAction::Success);
        assert_eq!(classify_answer(404, b"{}"), RetryAction::DontRetry);
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_within_the_cap() {
        let p = RetryPolicy {
            initial: Duration::from_millis(10),
            max_delay: Duration::from_secs(5),
            max_attempts: 3,
        };
        let start = tokio::time::Instant::now();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let (outcome, attempts) = p
            .drive(
                || async { calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 },
                |n: &u32| {
                    if *n < 3 {
                        Verdict::Retry {
                            after: Some(Duration::from_secs(if *n == 1 { 2 } else { 60 })),
                            why: "busy".into(),
                        }
                    } else {
                        Verdict::Done
                    }
                },
            )
            .await;
        assert_eq!((outcome, attempts), (3, 3));
        // 2 s as asked, then 60 s asked but capped at 5 s.
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[test]
    fn a_backoff_counts_attempts_until_they_run_out_and_starts_again_on_reset() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: 3,
        };
        let retry = Verdict::Retry {
            after: Some(Duration::from_secs(5)),
            why: "busy".into(),
        };
        let mut b = p.backoff();
        assert_eq!(b.next_delay(&Verdict::Done), None);
        // Retry-After is honoured up to the cap.
        assert_eq!(b.next_delay(&retry), Some(Duration::from_secs(1)));
        assert_eq!(b.next_delay(&retry), Some(Duration::from_secs(1)));
        assert_eq!(b.attempts(), 3);
        assert_eq!(b.next_delay(&retry), None);
        b.reset();
        assert_eq!(b.attempts(), 1);
        let plain = Verdict::Retry {
            after: None,
            why: "x".into(),
        };
        assert!(b.next_delay(&plain).is_some_and(|d| d <= p.ceiling(1)));
    }

    #[test]
    fn bulk_items_are_judged_one_by_one() {
        let body = br#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [a]"}}},{"index":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"primary not active"}}},{"index":{"status":200}}]}"#;
        let v = classify_bulk(200, body, 5);
        assert_eq!(v.action, RetryAction::RetryPartial(vec![1, 3]));
        assert_eq!(
            v.rejected,
            vec![ItemFailure {
                position: 2,
                status: 400,
                reason: "mapper_parsing_exception: failed to parse field [a]".into()
            }]
        );
        assert!(v.reason.contains("queue full"));
    }

    #[test]
    fn bulk_whole_request_statuses() {
        assert_eq!(classify_bulk(429, b"{}", 3).action, RetryAction::Retry);
        assert_eq!(classify_bulk(503, b"oops", 3).action, RetryAction::Retry);
        let bad = classify_bulk(
            400,
            br#"{"error":{"type":"parse_exception","reason":"bad"}}"#,
            3,
        );
        assert_eq!(bad.action, RetryAction::DontRetry);
        assert_eq!(bad.reason, "HTTP 400: parse_exception: bad");
        let ok = classify_bulk(
            200,
            br#"{"errors":false,"items":[{"index":{"status":201}}]}"#,
            1,
        );
        assert_eq!(ok.action, RetryAction::Success);
        assert!(ok.rejected.is_empty());
    }

    #[test]
    fn bulk_answers_that_cannot_be_paired_are_retried_whole() {
        let v = classify_bulk(
            200,
            br#"{"errors":false,"items":[{"index":{"status":201}}]}"#,
            2,
        );
        assert_eq!(v.action, RetryAction::Retry);
        assert_eq!(classify_bulk(200, b"<html>", 2).action, RetryAction::Retry);
    }

    #[test]
    fn backoff_is_capped_exponential_with_full_jitter() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: 5,
        };
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(3), Duration::from_millis(400));
        assert_eq!(p.ceiling(10), Duration::from_secs(1));
        assert_eq!(p.ceiling(100), Duration::from_secs(1));
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 1..10 {
            assert!(p.delay(attempt, &mut rng) <= p.ceiling(attempt));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_within_the_attempt_limit() {
        let p = RetryPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            max_attempts: 4,
        };
        let calls = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let r: Result<u32, String> = p
            .run(
                || async {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    if n < 3 {
                        Err(format!("fail {n}"))
                    } else {
                        Ok(n)
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!(r, Ok(3));
        // Two sleeps, each at most its ceiling (1 s, then 2 s).
        assert!(start.elapsed() <= Duration::from_secs(3));

        calls.store(0, Ordering::SeqCst);
        let r: Result<u32, String> = p
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<u32, _>("always".to_string())
                },
                |_| true,
            )
            .await;
        assert_eq!(r, Err("always".into()));
        // Retryable every time: exactly `max_attempts` calls, then the last error.
        assert_eq!(calls.load(Ordering::SeqCst), p.max_attempts);

        calls.store(0, Ordering::SeqCst);

        let r: Result<u32, String> = p
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<u32, _>("permanent".to_string())
                },
                |_| false,
            )
            .await;
        assert_eq!(r, Err("permanent".into()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
