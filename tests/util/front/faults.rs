//! The fault-injection layer: applies a plan of [`Rule`]s to the requests
//! passing through (the first rule that hits a request applies; every
//! matching rule counts it) and logs every request with the fault applied
//! to it ([`Event`]), so a test checks that its fault really happened
//! ([`FaultLayer::assert_fired`]): a resilience test whose fault never
//! fires proves nothing.

use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::plan::{Armed, Fault, Route, Rule};
use super::{es_error, path_of, Layer, Next, Reply, Request, Response};

/// One request the proxy saw, and what it did with it.
#[derive(Debug, Clone)]
pub struct Event {
    /// 1-based, in arrival order.
    pub seq: u64,
    pub method: String,
    /// Path and query, as the client sent them.
    pub target: String,
    /// The rule that hit it, if any.
    pub rule: Option<String>,
    /// [`Fault::label`] of the fault applied, if any.
    pub fault: Option<String>,
    /// What happened: the status answered, items rewritten, ...
    pub outcome: String,
    /// Milliseconds since the proxy started.
    pub at_ms: u128,
    /// Newlines in the request body (a `_bulk` body has two per document).
    pub body_lines: usize,
    /// The `size` of a search request's JSON body (a point-in-time page),
    /// if it has one.
    pub search_size: Option<u64>,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} +{}ms {} {}",
            self.seq, self.at_ms, self.method, self.target
        )?;
        if let (Some(rule), Some(fault)) = (&self.rule, &self.fault) {
            write!(f, " [{rule}: {fault}]")?;
        }
        write!(f, " -> {}", self.outcome)
    }
}

struct State {
    rules: Vec<Armed>,
    events: Vec<Event>,
    /// Bulk items answered 429 by the bulk-item faults, in all.
    items_rewritten: u64,
}

/// Fault injection after a plan; see the module doc.
pub struct FaultLayer {
    /// Named in the log's header.
    upstream: String,
    state: Mutex<State>,
    started: Instant,
}

impl FaultLayer {
    pub fn new(upstream: &str, rules: Vec<Rule>) -> FaultLayer {
        FaultLayer {
            upstream: upstream.to_string(),
            state: Mutex::new(State {
                rules: rules.into_iter().map(Armed::new).collect(),
                events: Vec::new(),
                items_rewritten: 0,
            }),
            started: Instant::now(),
        }
    }

    /// Replaces the fault plan (counters start again from zero); the log
    /// is kept. `set_rules(vec![])` makes the layer a plain relay.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        let mut state = self.state.lock().unwrap();
        state.rules = rules.into_iter().map(Armed::new).collect();
    }

    /// Every request so far, in arrival order.
    pub fn events(&self) -> Vec<Event> {
        self.state.lock().unwrap().events.clone()
    }

    /// How many requests arrived so far.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().events.len()
    }

    /// The requests so far that match `route`.
    fn matching<T>(&self, route: &Route, f: impl Fn(&Event) -> T) -> Vec<T> {
        let state = self.state.lock().unwrap();
        state
            .events
            .iter()
            .filter(|e| route.matches(&e.method, path_of(&e.target)))
            .map(f)
            .collect()
    }

    /// How many requests so far match `route`.
    pub fn requests_matching(&self, route: &Route) -> usize {
        self.matching(route, |_| ()).len()
    }

    /// The request targets (path and query) so far of the requests that
    /// match `route` (which sees the path alone).
    pub fn targets_matching(&self, route: &Route) -> Vec<String> {
        self.matching(route, |e| e.target.clone())
    }

    /// The newlines in the bodies of the requests so far that match
    /// `route`: for `_bulk`, twice the documents sent (retries included).
    pub fn body_lines(&self, route: &Route) -> usize {
        self.matching(route, |e| e.body_lines).into_iter().sum()
    }

    /// How many times the rule `name` was applied so far (a rule replaced
    /// by [`FaultLayer::set_rules`] still counts from the log).
    pub fn fired(&self, name: &str) -> usize {
        let state = self.state.lock().unwrap();
        let events = state.events.iter();
        events.filter(|e| e.rule.as_deref() == Some(name)).count()
    }

    /// How many times a fault with this [`Fault::label`] was applied.
    pub fn fired_label(&self, label: &str) -> usize {
        let state = self.state.lock().unwrap();
        let events = state.events.iter();
        events.filter(|e| e.fault.as_deref() == Some(label)).count()
    }

    /// Bulk items answered 429 by the bulk-item faults so far.
    pub fn items_rewritten(&self) -> u64 {
        self.state.lock().unwrap().items_rewritten
    }

    /// Panics, with the log, unless the rule `name` was applied at least
    /// `min` times.
    pub fn assert_fired(&self, name: &str, min: usize) {
        let n = self.fired(name);
        assert!(
            n >= min,
            "fault rule {name:?} applied {n} times, expected at least {min}\n{}",
            self.log()
        );
    }

    /// The log as text, one request a line (the last 300 requests), for
    /// failure messages.
    pub fn log(&self) -> String {
        let state = self.state.lock().unwrap();
        let skip = state.events.len().saturating_sub(300);
        let mut out = format!(
            "--- fault proxy -> {} ({} requests) ---\n",
            self.upstream,
            state.events.len()
        );
        for e in state.events.iter().skip(skip) {
            out.push_str(&format!("{e}\n"));
        }
        out
    }

    /// The log of the requests a rule hit, for failure messages.
    pub fn faults_log(&self) -> String {
        let state = self.state.lock().unwrap();
        let hit = state.events.iter().filter(|e| e.fault.is_some());
        hit.map(|e| format!("{e}\n")).collect()
    }

    /// Picks the fault for a request (if any) and logs it; returns the
    /// event's position in the log so the outcome can be filled in.
    fn decide(&self, req: &Request) -> (usize, Option<Fault>) {
        let mut state = self.state.lock().unwrap();
        let mut chosen: Option<(String, Fault)> = None;
        for armed in state.rules.iter_mut() {
            if !armed.rule.route.matches(&req.method, req.path()) {
                continue;
            }
            let hit = armed.decide();
            if hit && chosen.is_none() {
                armed.fired += 1;
                chosen = Some((armed.rule.name.clone(), armed.rule.fault.clone()));
            }
        }
        let seq = state.events.len() as u64 + 1;
        state.events.push(Event {
            seq,
            method: req.method.clone(),
            target: req.target.clone(),
            rule: chosen.as_ref().map(|(n, _)| n.clone()),
            fault: chosen.as_ref().map(|(_, f)| f.label()),
            outcome: "pending".into(),
            at_ms: self.started.elapsed().as_millis(),
            body_lines: req.body.iter().filter(|&&b| b == b'\n').count(),
            search_size: search_size(req),
        });
        (state.events.len() - 1, chosen.map(|(_, f)| f))
    }

    fn set_outcome(&self, pos: usize, outcome: String) {
        self.state.lock().unwrap().events[pos].outcome = outcome;
    }

    /// Passes `req` on and logs what came back.
    async fn relay(&self, req: Request, next: Next<'_>, pos: usize, prefix: &str) -> Reply {
        let reply = next.run(req).await;
        self.set_outcome(pos, format!("{prefix}relayed {}", outcome_of(&reply)));
        reply
    }

    async fn apply(&self, req: Request, next: Next<'_>) -> Reply {
        let (pos, fault) = self.decide(&req);
        let Some(fault) = fault else {
            return self.relay(req, next, pos, "").await;
        };
        match fault {
            Fault::Status(status) => {
                self.set_outcome(pos, format!("answered {status} (not forwarded)"));
                Reply::Answer(injected_error(status))
            }
            Fault::ContextMissing => {
                self.set_outcome(pos, "answered 404 context missing (not forwarded)".into());
                Reply::Answer(Response::json(404, &context_missing()))
            }
            Fault::ResetBeforeForward => {
                self.set_outcome(pos, "reset (not forwarded)".into());
                Reply::Reset
            }
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                self.relay(req, next, pos, &format!("after {delay:?}: "))
                    .await
            }
            Fault::LoseResponse => {
                let reply = next.run(req).await;
                let outcome = match &reply {
                    Reply::Answer(up) => format!(
                        "upstream answered {} ({} bytes), response dropped, reset",
                        up.status,
                        up.body.len()
                    ),
                    Reply::Reset => "reset below; reset".into(),
                };
                self.set_outcome(pos, outcome);
                Reply::Reset
            }
            Fault::BulkItems429 { every_nth_item } => {
                let Reply::Answer(mut up) = next.run(req).await else {
                    self.set_outcome(pos, "reset below".into());
                    return Reply::Reset;
                };
                let outcome = if up.status == 200 {
                    match rewrite_bulk_items(&up.body, every_nth_item) {
                        Some((body, rewritten, total)) => {
                            up.body = Bytes::from(body);
                            self.state.lock().unwrap().items_rewritten += rewritten as u64;
                            format!("upstream 200, {rewritten} of {total} items answered 429")
                        }
                        None => "upstream 200 not a bulk answer, relayed as is".into(),
                    }
                } else {
                    format!("upstream {}, relayed as is", up.status)
                };
                self.set_outcome(pos, outcome);
                Reply::Answer(up)
            }
            Fault::BulkItems429Unapplied { every_nth_item } => {
                self.bulk_items_unapplied(req, next, pos, every_nth_item)
                    .await
            }
        }
    }

    /// [`Fault::BulkItems429Unapplied`]: forwards the bulk without items
    /// `n, 2n, ...` and answers 429 for them, the others as upstream did.
    async fn bulk_items_unapplied(
        &self,
        mut req: Request,
        next: Next<'_>,
        pos: usize,
        every_nth_item: usize,
    ) -> Reply {
        let Some(SplitBulk {
            kept,
            dropped,
            total,
        }) = split_bulk(&req.body, every_nth_item)
        else {
            let prefix = "not a bulk body of index/create pairs: ";
            return self.relay(req, next, pos, prefix).await;
        };
        let upstream_items = if kept.is_empty() {
            Vec::new()
        } else {
            req.body = Bytes::from(kept);
            let up = match next.run(req).await {
                Reply::Answer(up) => up,
                Reply::Reset => {
                    self.set_outcome(pos, "reset below".into());
                    return Reply::Reset;
                }
            };
            let items = serde_json::from_slice::<Value>(&up.body)
                .ok()
                .and_then(|v| v.get("items").and_then(Value::as_array).cloned());
            match items {
                Some(items) if up.status == 200 => items,
                _ => {
                    let outcome =
                        format!("upstream {} for the kept items, relayed as is", up.status);
                    self.set_outcome(pos, outcome);
                    return Reply::Answer(up);
                }
            }
        };
        // Put the refused items back in their places.
        let mut upstream_items = upstream_items.into_iter();
        let mut items = Vec::with_capacity(total);
        for i in 0..total {
            match dropped.iter().find(|(p, _)| *p == i) {
                Some((_, item)) => items.push(item.clone()),
                None => items.push(upstream_items.next().unwrap_or(Value::Null)),
            }
        }
        self.state.lock().unwrap().items_rewritten += dropped.len() as u64;
        let outcome = format!(
            "forwarded {} of {total} items, answered 429 for {}",
            total - dropped.len(),
            dropped.len()
        );
        self.set_outcome(pos, outcome);
        let body = json!({"took": 1, "errors": !dropped.is_empty(), "items": items});
        Reply::Answer(Response::json(200, &body))
    }
}

impl Layer for FaultLayer {
    fn handle<'a>(&'a self, req: Request, next: Next<'a>) -> BoxFuture<'a, Reply> {
        Box::pin(self.apply(req, next))
    }
}

fn outcome_of(reply: &Reply) -> String {
    match reply.status() {
        Some(status) => status.to_string(),
        None => "a reset".into(),
    }
}

fn context_missing() -> Value {
    json!({
        "error": {
            "root_cause": [{"type": "search_context_missing_exception",
                            "reason": "No search context found for id [1]"}],
            "type": "search_phase_execution_exception",
            "reason": "all shards failed",
            "phase": "query",
            "grouped": true,
            "failed_shards": []
        },
        "status": 404
    })
}

/// A `_bulk` body with some of its documents taken out.
struct SplitBulk {
    /// The body without them.
    kept: Vec<u8>,
    /// Their positions, each with the 429 item that answers it.
    dropped: Vec<(usize, Value)>,
    /// Documents in the original body.
    total: usize,
}

/// Splits a `_bulk` body of `index`/`create` action and source pairs,
/// taking out pairs `n, 2n, ...` (1-based). `None` when the body is not
/// such pairs.
fn split_bulk(body: &[u8], every_nth_item: usize) -> Option<SplitBulk> {
    let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if !lines.len().is_multiple_of(2) || every_nth_item == 0 {
        return None;
    }
    let mut kept = Vec::with_capacity(body.len());
    let mut dropped = Vec::new();
    for (i, pair) in lines.chunks(2).enumerate() {
        let action: Value = serde_json::from_slice(pair[0]).ok()?;
        let (op, meta) = action.as_object()?.iter().next()?;
        if op != "index" && op != "create" {
            return None;
        }
        if (i + 1).is_multiple_of(every_nth_item) {
            let item = json!({op.as_str(): {
                "_index": meta.get("_index").cloned().unwrap_or(Value::Null),
                "_id": meta.get("_id").cloned().unwrap_or(Value::Null),
                "status": 429,
                "error": {
                    "type": "es_rejected_execution_exception",
                    "reason": "injected (not applied)"
                }
            }});
            dropped.push((i, item));
        } else {
            for line in pair {
                kept.extend_from_slice(line);
                kept.push(b'\n');
            }
        }
    }
    Some(SplitBulk {
        kept,
        dropped,
        total: lines.len() / 2,
    })
}

/// Answers items `n, 2n, ...` (1-based) of a bulk response with a 429.
/// Returns the new body, how many items were rewritten and how many there
/// are; `None` when the body is not a bulk answer.
fn rewrite_bulk_items(body: &[u8], every_nth_item: usize) -> Option<(Vec<u8>, usize, usize)> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let items = v.get_mut("items")?.as_array_mut()?;
    let total = items.len();
    let mut rewritten = 0;
    for (i, item) in items.iter_mut().enumerate() {
        if every_nth_item == 0 || !(i + 1).is_multiple_of(every_nth_item) {
            continue;
        }
        let Some(obj) = item.as_object_mut() else {
            continue;
        };
        let Some((_, result)) = obj.iter_mut().next() else {
            continue;
        };
        let index = result.get("_index").cloned().unwrap_or(Value::Null);
        let id = result.get("_id").cloned().unwrap_or(Value::Null);
        *result = json!({
            "_index": index,
            "_id": id,
            "status": 429,
            "error": {
                "type": "es_rejected_execution_exception",
                "reason": "injected"
            }
        });
        rewritten += 1;
    }
    if rewritten > 0 {
        v["errors"] = Value::Bool(true);
    }
    Some((serde_json::to_vec(&v).ok()?, rewritten, total))
}

/// An Elasticsearch-style error body for an injected status.
fn injected_error(status: u16) -> Response {
    let (kind, reason) = match status {
        429 => (
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation (injected by the test proxy)",
        ),
        503 => (
            "unavailable_shards_exception",
            "primary shard is not active (injected by the test proxy)",
        ),
        _ => ("exception", "injected by the test proxy"),
    };
    es_error(status, kind, reason)
}

/// The top-level `size` of the JSON body of a request to `…/_search`.
fn search_size(req: &Request) -> Option<u64> {
    if !req.path().ends_with("/_search") {
        return None;
    }
    let body: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
    body.get("size")?.as_u64()
}
