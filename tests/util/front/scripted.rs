//! The scripted layer: answers from a script instead of a cluster, for a
//! client tested alone (the bulk indexer's retries, say). Each scripted
//! [`Route`] answers either always the same ([`Scripted::always`]) or the
//! next answer of a list ([`Scripted::script`]; once the list runs out,
//! `500 script exhausted`, which a test sees as one request too many).
//! The bodies of the requests a list answered are kept
//! ([`Scripted::bodies`]). A request no route picks goes on down the stack.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::plan::Route;
use super::{Layer, Next, Reply, Request, Response};

/// What `GET /` of an OpenSearch 2.11 answers.
pub const OPENSEARCH_INFO: &str = r#"{"cluster_name":"t","cluster_uuid":"u","version":{"distribution":"opensearch","number":"2.11.0"}}"#;

enum Answers {
    Always(u16, String),
    /// Answered in turn; the bodies of the requests they answered.
    Listed(VecDeque<(u16, String)>, Vec<Bytes>),
}

/// Answers requests from a script; see the module doc.
pub struct Scripted {
    routes: Vec<(Route, Mutex<Answers>)>,
    /// `Retry-After` sent with every 429 and 503 answer, if set.
    retry_after: Option<String>,
}

impl Scripted {
    /// A script that answers nothing yet.
    pub fn new() -> Scripted {
        Scripted {
            routes: Vec::new(),
            retry_after: None,
        }
    }

    /// Sends `Retry-After: SECONDS` with every 429 and 503 answer.
    pub fn retry_after(mut self, seconds: u64) -> Scripted {
        self.retry_after = Some(seconds.to_string());
        self
    }

    /// A cluster of one kind: `GET /` answers like OpenSearch 2.11.
    pub fn opensearch() -> Scripted {
        Scripted::new().always(Route::new("GET", "^/$"), 200, OPENSEARCH_INFO)
    }

    /// Answers every request on `route` with `status` and the JSON `body`.
    pub fn always(mut self, route: Route, status: u16, body: &str) -> Scripted {
        let answers = Answers::Always(status, body.to_string());
        self.routes.push((route, Mutex::new(answers)));
        self
    }

    /// Answers the requests on `route` with `answers`, one each, in order.
    pub fn script(mut self, route: Route, answers: Vec<(u16, String)>) -> Scripted {
        let answers = Answers::Listed(answers.into(), Vec::new());
        self.routes.push((route, Mutex::new(answers)));
        self
    }

    /// The bodies of the requests the list on `route` answered, in order
    /// (a route given to [`Scripted::script`], the same `Route` value).
    pub fn bodies(&self, route: &Route) -> Vec<String> {
        let answers = self
            .routes
            .iter()
            .find(|(r, _)| r == route)
            .map(|(_, a)| a.lock().unwrap());
        match answers.as_deref() {
            Some(Answers::Listed(_, seen)) => seen
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The scripted answer to `req`, if a route picks it.
    fn answer(&self, req: &Request) -> Option<Response> {
        let (_, answers) = self
            .routes
            .iter()
            .find(|(route, _)| route.matches(&req.method, req.path()))?;
        let (status, body) = match &mut *answers.lock().unwrap() {
            Answers::Always(status, body) => (*status, body.clone()),
            Answers::Listed(left, seen) => {
                seen.push(req.body.clone());
                left.pop_front()
                    .unwrap_or((500, r#"{"error":"script exhausted"}"#.into()))
            }
        };
        let mut headers = vec![("content-type".into(), "application/json".into())];
        if let (Some(after), 429 | 503) = (&self.retry_after, status) {
            headers.push(("retry-after".into(), after.clone()));
        }
        Some(Response {
            status,
            headers,
            body: Bytes::from(body),
        })
    }
}

impl Default for Scripted {
    fn default() -> Self {
        Scripted::new()
    }
}

impl Layer for Scripted {
    fn handle<'a>(&'a self, req: Request, next: Next<'a>) -> BoxFuture<'a, Reply> {
        match self.answer(&req) {
            Some(answer) => Box::pin(async move { Reply::Answer(answer) }),
            None => next.run(req),
        }
    }
}
