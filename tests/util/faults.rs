//! A fault-injecting HTTP/1.1 proxy for the resilience tests.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:0` in front of an upstream
//! URL (an osmem-server) and relays every request, except those a [`Rule`]
//! picks: a rule names the requests it applies to ([`Route`]: method and a
//! regex over the path without the query), which of them it hits ([`When`]:
//! the n-th, every n-th up to a bound, or a seeded coin flip up to a bound)
//! and what happens to them ([`Fault`]). The plan is deterministic for a
//! given sequence of requests and always bounded, so every run ends.
//!
//! Every request is logged with the fault applied to it ([`Event`]), so a
//! test checks that its fault really happened ([`FaultProxy::assert_fired`]):
//! a resilience test whose fault never fires proves nothing.
//!
//! The proxy runs on its own small tokio runtime and stops on drop. Request
//! bodies are read whole (`content-length` or chunked); responses are read
//! whole from upstream and sent with a `content-length`. `accept-encoding`
//! is not relayed, so upstream answers are plain JSON the proxy can rewrite.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Request and response headers that belong to one hop, never relayed.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    // Not hop-by-hop, but kept out so that answers come back uncompressed.
    "accept-encoding",
];

/// What happens to a request a rule picked.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer at once with this status (429, 503, ...) and an
    /// Elasticsearch-style error body; nothing is forwarded.
    Status(u16),
    /// Forward a `_bulk` request, then answer items `n, 2n, ...` (1-based)
    /// of its 200 response with a 429 `es_rejected_execution_exception`.
    /// The server did apply them: a retry must be idempotent by id.
    BulkItems429 { every_nth_item: usize },
    /// Like [`Fault::BulkItems429`], but items `n, 2n, ...` are taken out
    /// of the request before it is forwarded: the server never sees them,
    /// so a client that does not retry them loses them.
    BulkItems429Unapplied { every_nth_item: usize },
    /// Close the client connection (with a TCP reset) without forwarding or
    /// answering.
    ResetBeforeForward,
    /// Wait this long, then forward normally.
    Slow(Duration),
    /// Forward, read upstream's whole answer (the server has acted: a page
    /// was served, a bulk applied), then reset the client connection
    /// without answering.
    LoseResponse,
    /// Answer 404 `search_context_missing_exception` without forwarding:
    /// an expired scroll or point-in-time context.
    ContextMissing,
}

impl Fault {
    /// A short name for logs and assertions: `status-429`, `bulk-items-429`,
    /// `reset`, `slow`, `lose-response`, `context-missing`.
    pub fn label(&self) -> String {
        match self {
            Fault::Status(s) => format!("status-{s}"),
            Fault::BulkItems429 { .. } => "bulk-items-429".into(),
            Fault::BulkItems429Unapplied { .. } => "bulk-items-429-unapplied".into(),
            Fault::ResetBeforeForward => "reset".into(),
            Fault::Slow(_) => "slow".into(),
            Fault::LoseResponse => "lose-response".into(),
            Fault::ContextMissing => "context-missing".into(),
        }
    }
}

/// Which requests a rule looks at: a method (`*` for any) and a regex over
/// the path (without the query string, still percent-encoded).
#[derive(Debug, Clone)]
pub struct Route {
    method: String,
    path: Regex,
}

impl Route {
    /// `method` (`POST`, or `*` for any) and a regex over the path; anchor
    /// it yourself (`^/_bulk$`).
    pub fn new(method: &str, path_regex: &str) -> Route {
        Route {
            method: method.to_ascii_uppercase(),
            path: Regex::new(path_regex)
                .unwrap_or_else(|e| panic!("bad route regex {path_regex:?}: {e}")),
        }
    }

    /// `POST /_bulk` and `POST /{index}/_bulk`.
    pub fn bulk() -> Route {
        Route::new("POST", r"^(/[^/]+)?/_bulk$")
    }

    /// `POST /_search/scroll`: the next page of a scroll.
    pub fn scroll_next() -> Route {
        Route::new("POST", r"^/_search/scroll$")
    }

    /// `POST /_search`: a point-in-time page (the PIT names the index).
    pub fn pit_search() -> Route {
        Route::new("POST", r"^/_search$")
    }

    /// `POST /{index}/_search`: the first page of a scroll (or a search on
    /// one index).
    pub fn index_search() -> Route {
        Route::new("POST", r"^/[^/_][^/]*/_search$")
    }

    /// `POST /{index}/_search/point_in_time`: opening a point in time.
    pub fn pit_open() -> Route {
        Route::new("POST", r"^/[^/]+/_search/point_in_time$")
    }

    /// Every page request a dump makes, whichever way it reads: the first
    /// page of a scroll, the next ones, and point-in-time pages.
    pub fn pages() -> Route {
        Route::new("POST", r"^(/_search|/_search/scroll|/[^/_][^/]*/_search)$")
    }

    /// The requests that continue a reading context (scroll id or PIT):
    /// the ones an expired context answers 404.
    pub fn next_pages() -> Route {
        Route::new("POST", r"^(/_search|/_search/scroll)$")
    }

    /// Every request.
    pub fn any() -> Route {
        Route::new("*", r"")
    }

    pub fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method.eq_ignore_ascii_case(method)) && self.path.is_match(path)
    }
}

/// Which of the requests matching a route a rule hits. Counts are 1-based
/// and per rule.
#[derive(Debug, Clone)]
pub enum When {
    /// Only the n-th matching request.
    Nth(u64),
    /// The listed matching requests.
    At(Vec<u64>),
    /// The `every`-th, `2*every`-th, ... matching requests, at most `max`
    /// times in all.
    Every { every: u64, max: u64 },
    /// Each matching request with probability `p`, drawn from a
    /// `fastrand::Rng` seeded with `seed`, at most `max` times in all.
    Random { p: f64, seed: u64, max: u64 },
}

/// A named fault plan entry: on `route`, `when`, apply `fault`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub route: Route,
    pub when: When,
    pub fault: Fault,
}

impl Rule {
    pub fn new(name: &str, route: Route, when: When, fault: Fault) -> Rule {
        Rule {
            name: name.to_string(),
            route,
            when,
            fault,
        }
    }
}

/// A rule with its counters.
struct Armed {
    rule: Rule,
    matched: u64,
    fired: u64,
    rng: Option<fastrand::Rng>,
}

impl Armed {
    fn new(rule: Rule) -> Armed {
        let rng = match rule.when {
            When::Random { seed, .. } => Some(fastrand::Rng::with_seed(seed)),
            _ => None,
        };
        Armed {
            rule,
            matched: 0,
            fired: 0,
            rng,
        }
    }

    /// Counts a matching request and says whether the rule hits it.
    fn decide(&mut self) -> bool {
        self.matched += 1;
        let n = self.matched;
        match &self.rule.when {
            When::Nth(k) => n == *k,
            When::At(list) => list.contains(&n),
            When::Every { every, max } => {
                *every > 0 && n.is_multiple_of(*every) && self.fired < *max
            }
            When::Random { p, max, .. } => {
                // Draw on every matching request, so the sequence of
                // decisions depends only on the number of requests.
                let draw = self.rng.as_mut().unwrap().f64();
                draw < *p && self.fired < *max
            }
        }
    }
}

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
    /// Bulk items answered 429 by [`Fault::BulkItems429`], in all.
    items_rewritten: u64,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    state: Mutex<State>,
    started: Instant,
    stop: AtomicBool,
}

/// A running fault-injecting proxy, stopped on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream` (a base URL
    /// without credentials, e.g. [`super::server::TestCluster::base_url`])
    /// with the fault plan `rules` (the first rule that hits a request
    /// applies; every matching rule counts it).
    pub fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            // Test-only: a shared https cluster often has a self-signed cert.
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            state: Mutex::new(State {
                rules: rules.into_iter().map(Armed::new).collect(),
                events: Vec::new(),
                items_rewritten: 0,
            }),
            started: Instant::now(),
            stop: AtomicBool::new(false),
        });
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let accept_shared = shared.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors, most likely: let connections end.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if accept_shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let _ = stream.set_nodelay(true);
                let conn_shared = accept_shared.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(stream, conn_shared).await;
                });
            }
        });
        FaultProxy {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the fault plan (counters start again from zero); the log
    /// is kept. `set_rules(vec![])` makes the proxy a plain relay.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        let mut state = self.shared.state.lock().unwrap();
        state.rules = rules.into_iter().map(Armed::new).collect();
    }

    /// Every request so far, in arrival order.
    pub fn events(&self) -> Vec<Event> {
        self.shared.state.lock().unwrap().events.clone()
    }

    /// How many requests arrived so far.
    pub fn requests(&self) -> usize {
        self.shared.state.lock().unwrap().events.len()
    }

    /// How many requests so far match `route`.
    pub fn requests_matching(&self, route: &Route) -> usize {
        let state = self.shared.state.lock().unwrap();
        state
            .events
            .iter()
            .filter(|e| route.matches(&e.method, path_of(&e.target)))
            .count()
    }

    /// The newlines in the bodies of the requests so far that match
    /// `route`: for `_bulk`, twice the documents sent (retries included).
    pub fn body_lines(&self, route: &Route) -> usize {
        let state = self.shared.state.lock().unwrap();
        state
            .events
            .iter()
            .filter(|e| route.matches(&e.method, path_of(&e.target)))
            .map(|e| e.body_lines)
            .sum()
    }

    /// How many times the rule `name` was applied so far (a rule replaced
    /// by [`FaultProxy::set_rules`] still counts from the log).
    pub fn fired(&self, name: &str) -> usize {
        let state = self.shared.state.lock().unwrap();
        state
            .events
            .iter()
            .filter(|e| e.rule.as_deref() == Some(name))
            .count()
    }

    /// How many times a fault with this [`Fault::label`] was applied.
    pub fn fired_label(&self, label: &str) -> usize {
        let state = self.shared.state.lock().unwrap();
        state
            .events
            .iter()
            .filter(|e| e.fault.as_deref() == Some(label))
            .count()
    }

    /// Bulk items answered 429 by [`Fault::BulkItems429`] so far.
    pub fn items_rewritten(&self) -> u64 {
        self.shared.state.lock().unwrap().items_rewritten
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
        let state = self.shared.state.lock().unwrap();
        let skip = state.events.len().saturating_sub(300);
        let mut out = format!(
            "--- fault proxy {} -> {} ({} requests) ---\n",
            self.url(),
            self.shared.upstream,
            state.events.len()
        );
        for e in state.events.iter().skip(skip) {
            out.push_str(&e.to_string());
            out.push('\n');
        }
        out
    }

    /// The log of the requests a rule hit, for failure messages.
    pub fn faults_log(&self) -> String {
        let state = self.shared.state.lock().unwrap();
        state
            .events
            .iter()
            .filter(|e| e.fault.is_some())
            .map(|e| format!("{e}\n"))
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(rt) = self.runtime.take() {
            // Drops every task: the listener and all connections close.
            rt.shutdown_background();
        }
    }
}

fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or("/")
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

/// What to send back for one request.
enum Reply {
    /// A complete response, then keep the connection (unless the client
    /// asked to close it).
    Answer(Vec<u8>),
    /// Reset the connection without answering.
    Reset,
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let mut conn = BufReader::new(stream);
    loop {
        let Some(req) = read_request(&mut conn).await? else {
            return Ok(());
        };
        let close = req.close;
        match handle(req, &shared).await {
            Reply::Answer(bytes) => {
                conn.write_all(&bytes).await?;
                conn.flush().await?;
                if close {
                    return Ok(());
                }
            }
            Reply::Reset => {
                // SO_LINGER 0: close() sends a RST instead of a FIN.
                let _ = conn.get_ref().set_zero_linger();
                return Ok(());
            }
        }
    }
}

async fn read_request(conn: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("bad request line"));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut close = version == Some("HTTP/1.0");
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if conn.read_line(&mut h).await? == 0 {
            return Ok(None);
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if let Some(c) = header("connection") {
        close = c.eq_ignore_ascii_case("close");
    }
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut size = String::new();
            conn.read_line(&mut size).await?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                loop {
                    let mut t = String::new();
                    if conn.read_line(&mut t).await? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            conn.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            conn.read_exact(&mut crlf).await?;
        }
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        body.resize(len, 0);
        conn.read_exact(&mut body).await?;
    }
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
        close,
    }))
}

/// Picks the fault for a request (if any) and logs it; returns the event's
/// position in the log so the outcome can be filled in.
fn decide(shared: &Shared, req: &Request) -> (usize, Option<Fault>) {
    let path = path_of(&req.target);
    let mut state = shared.state.lock().unwrap();
    let mut chosen: Option<(String, Fault)> = None;
    for armed in state.rules.iter_mut() {
        if !armed.rule.route.matches(&req.method, path) {
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
        at_ms: shared.started.elapsed().as_millis(),
        body_lines: req.body.iter().filter(|&&b| b == b'\n').count(),
    });
    (state.events.len() - 1, chosen.map(|(_, f)| f))
}

fn set_outcome(shared: &Shared, pos: usize, outcome: String) {
    shared.state.lock().unwrap().events[pos].outcome = outcome;
}

async fn handle(req: Request, shared: &Shared) -> Reply {
    let (pos, fault) = decide(shared, &req);
    let head = req.method == "HEAD";
    match fault {
        Some(Fault::Status(status)) => {
            set_outcome(shared, pos, format!("answered {status} (not forwarded)"));
            let body = injected_error(status);
            Reply::Answer(response(
                status,
                reason_phrase(status),
                &[("content-type".into(), "application/json".into())],
                body.as_bytes(),
                head,
                None,
            ))
        }
        Some(Fault::ContextMissing) => {
            set_outcome(
                shared,
                pos,
                "answered 404 context missing (not forwarded)".into(),
            );
            let body = json!({
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
            .to_string();
            Reply::Answer(response(
                404,
                "Not Found",
                &[("content-type".into(), "application/json".into())],
                body.as_bytes(),
                head,
                None,
            ))
        }
        Some(Fault::ResetBeforeForward) => {
            set_outcome(shared, pos, "reset (not forwarded)".into());
            Reply::Reset
        }
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            relay(&req, shared, pos, &format!("after {delay:?}: ")).await
        }
        Some(Fault::LoseResponse) => match forward(&req, shared).await {
            Ok(up) => {
                set_outcome(
                    shared,
                    pos,
                    format!(
                        "upstream answered {} ({} bytes), response dropped, reset",
                        up.status,
                        up.body.len()
                    ),
                );
                Reply::Reset
            }
            Err(e) => {
                set_outcome(shared, pos, format!("upstream failed: {e}; reset"));
                Reply::Reset
            }
        },
        Some(Fault::BulkItems429 { every_nth_item }) => match forward(&req, shared).await {
            Ok(mut up) => {
                let outcome = if up.status == 200 {
                    match rewrite_bulk_items(&up.body, every_nth_item) {
                        Some((body, rewritten, total)) => {
                            up.body = body;
                            shared.state.lock().unwrap().items_rewritten += rewritten as u64;
                            format!("upstream 200, {rewritten} of {total} items answered 429")
                        }
                        None => "upstream 200 not a bulk answer, relayed as is".into(),
                    }
                } else {
                    format!("upstream {}, relayed as is", up.status)
                };
                set_outcome(shared, pos, outcome);
                Reply::Answer(up.to_bytes(head))
            }
            Err(e) => bad_gateway(shared, pos, e, head),
        },
        Some(Fault::BulkItems429Unapplied { every_nth_item }) => {
            bulk_items_unapplied(&req, shared, pos, every_nth_item).await
        }
        None => relay(&req, shared, pos, "").await,
    }
}

/// [`Fault::BulkItems429Unapplied`]: forwards the bulk without items
/// `n, 2n, ...` and answers 429 for them, the others as upstream did.
async fn bulk_items_unapplied(
    req: &Request,
    shared: &Shared,
    pos: usize,
    every_nth_item: usize,
) -> Reply {
    let head = req.method == "HEAD";
    let Some(SplitBulk {
        kept,
        dropped,
        total,
    }) = split_bulk(&req.body, every_nth_item)
    else {
        return relay(req, shared, pos, "not a bulk body of index/create pairs: ").await;
    };
    let upstream_items = if kept.is_empty() {
        Vec::new()
    } else {
        let forwarded = Request {
            method: req.method.clone(),
            target: req.target.clone(),
            headers: req.headers.clone(),
            body: kept,
            close: req.close,
        };
        match forward(&forwarded, shared).await {
            Ok(up) if up.status == 200 => {
                let items = serde_json::from_slice::<Value>(&up.body)
                    .ok()
                    .and_then(|v| v.get("items").and_then(Value::as_array).cloned());
                match items {
                    Some(items) => items,
                    None => {
                        set_outcome(shared, pos, "upstream 200 not a bulk answer".into());
                        return Reply::Answer(up.to_bytes(head));
                    }
                }
            }
            Ok(up) => {
                set_outcome(
                    shared,
                    pos,
                    format!("upstream {} for the kept items, relayed as is", up.status),
                );
                return Reply::Answer(up.to_bytes(head));
            }
            Err(e) => return bad_gateway(shared, pos, e, head),
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
    shared.state.lock().unwrap().items_rewritten += dropped.len() as u64;
    set_outcome(
        shared,
        pos,
        format!(
            "forwarded {} of {total} items, answered 429 for {}",
            total - dropped.len(),
            dropped.len()
        ),
    );
    let body = json!({"took": 1, "errors": !dropped.is_empty(), "items": items}).to_string();
    Reply::Answer(response(
        200,
        "OK",
        &[("content-type".into(), "application/json".into())],
        body.as_bytes(),
        head,
        None,
    ))
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

async fn relay(req: &Request, shared: &Shared, pos: usize, prefix: &str) -> Reply {
    let head = req.method == "HEAD";
    match forward(req, shared).await {
        Ok(up) => {
            set_outcome(shared, pos, format!("{prefix}relayed {}", up.status));
            Reply::Answer(up.to_bytes(head))
        }
        Err(e) => bad_gateway(shared, pos, e, head),
    }
}

fn bad_gateway(shared: &Shared, pos: usize, e: reqwest::Error, head: bool) -> Reply {
    set_outcome(shared, pos, format!("upstream failed: {e}; answered 502"));
    let body = json!({"error": format!("fault proxy: {e}"), "status": 502}).to_string();
    Reply::Answer(response(
        502,
        "Bad Gateway",
        &[("content-type".into(), "application/json".into())],
        body.as_bytes(),
        head,
        None,
    ))
}

struct Upstream {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    content_length: Option<String>,
}

impl Upstream {
    fn to_bytes(&self, head: bool) -> Vec<u8> {
        response(
            self.status,
            reason_phrase(self.status),
            &self.headers,
            &self.body,
            head,
            self.content_length.clone(),
        )
    }
}

async fn forward(req: &Request, shared: &Shared) -> reqwest::Result<Upstream> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut out = shared
        .client
        .request(method, format!("{}{}", shared.upstream, req.target));
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) {
            continue;
        }
        out = out.header(name.as_str(), value.as_str());
    }
    if !req.body.is_empty() {
        out = out.body(req.body.clone());
    }
    let resp = out.send().await?;
    let status = resp.status().as_u16();
    let mut headers = Vec::new();
    let mut content_length = None;
    for (name, value) in resp.headers() {
        let lower = name.as_str();
        if lower == "content-length" {
            content_length = value.to_str().ok().map(str::to_string);
        }
        if HOP_BY_HOP.contains(&lower) {
            continue;
        }
        headers.push((
            name.as_str().to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    }
    let body = resp.bytes().await?.to_vec();
    Ok(Upstream {
        status,
        headers,
        body,
        content_length,
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
fn injected_error(status: u16) -> String {
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
    json!({
        "error": {
            "root_cause": [{"type": kind, "reason": reason}],
            "type": kind,
            "reason": reason
        },
        "status": status
    })
    .to_string()
}

fn reason_phrase(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// Serializes a response with an explicit `content-length` (for HEAD, the
/// upstream's length and no body).
fn response(
    status: u16,
    reason: &str,
    headers: &[(String, String)],
    body: &[u8],
    head: bool,
    head_len: Option<String>,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let len = if head {
        head_len.unwrap_or_else(|| body.len().to_string())
    } else {
        body.len().to_string()
    };
    out.extend_from_slice(format!("content-length: {len}\r\n\r\n").as_bytes());
    if !head {
        out.extend_from_slice(body);
    }
    out
}
