//! The vocabulary of a fault plan: a [`Rule`] names the requests it
//! applies to ([`Route`]: method and a regex over the path without the
//! query), which of them it hits ([`When`]: the n-th, every n-th up to a
//! bound, or a seeded coin flip up to a bound) and what happens to them
//! ([`Fault`]). The plan is deterministic for a given sequence of requests
//! and always bounded, so every run ends. [`Route`] also picks the requests
//! a [`super::scripted::Scripted`] layer answers.

use std::time::Duration;

use regex::Regex;

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

/// The same method and the same regex text.
impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        self.method == other.method && self.path.as_str() == other.path.as_str()
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
pub(super) struct Armed {
    pub(super) rule: Rule,
    matched: u64,
    pub(super) fired: u64,
    rng: Option<fastrand::Rng>,
}

impl Armed {
    pub(super) fn new(rule: Rule) -> Armed {
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
    pub(super) fn decide(&mut self) -> bool {
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
