//! The authentication layer: what Elasticsearch with security enabled asks
//! of every request. One `Authorization` value is accepted: `Basic
//! base64(user:password)` for one user ([`AuthLayer::basic`]) or `Bearer
//! <token>` for one token ([`AuthLayer::bearer`]).
//!
//! A request without it, or with another one, gets what Elasticsearch
//! answers: `401`, `WWW-Authenticate: Basic realm="security"` and a
//! `security_exception` body naming the user or the missing credentials.
//! An accepted request goes on without its `Authorization` (the upstream
//! gets its own credentials, if it has any).

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::future::BoxFuture;
use serde_json::json;

use super::{Layer, Next, Reply, Request, Response};

/// Checks the `Authorization` of every request; see the module doc.
pub struct AuthLayer {
    /// The only accepted `Authorization` value.
    expected: String,
    /// Requests answered with 401.
    rejected: AtomicUsize,
    /// Requests with the right credentials, let through or not.
    authorized: AtomicUsize,
    /// Requests with an `Authorization: Bearer …` header, right or wrong.
    bearer: AtomicUsize,
    /// Right credentials are refused once `authorized` reaches this
    /// (see [`AuthLayer::revoke_after`]).
    limit: AtomicUsize,
}

impl AuthLayer {
    /// Accepts only `user` / `password` in Basic authentication.
    pub fn basic(user: &str, password: &str) -> AuthLayer {
        AuthLayer::accepting(format!(
            "Basic {}",
            STANDARD.encode(format!("{user}:{password}"))
        ))
    }

    /// Accepts only `Authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> AuthLayer {
        AuthLayer::accepting(format!("Bearer {token}"))
    }

    fn accepting(expected: String) -> AuthLayer {
        AuthLayer {
            expected,
            rejected: AtomicUsize::new(0),
            authorized: AtomicUsize::new(0),
            bearer: AtomicUsize::new(0),
            limit: AtomicUsize::new(usize::MAX),
        }
    }

    /// How many requests got a 401.
    pub fn rejected(&self) -> usize {
        self.rejected.load(Ordering::SeqCst)
    }

    /// How many requests came with the right credentials.
    pub fn authorized(&self) -> usize {
        self.authorized.load(Ordering::SeqCst)
    }

    /// How many requests carried `Authorization: Bearer …` (right or wrong).
    pub fn bearer_requests(&self) -> usize {
        self.bearer.load(Ordering::SeqCst)
    }

    /// Lets `n` more requests with the right credentials through, then
    /// answers 401 to everything: credentials revoked in the middle of a run.
    pub fn revoke_after(&self, n: usize) {
        let seen = self.authorized.load(Ordering::SeqCst);
        self.limit.store(seen + n, Ordering::SeqCst);
    }

    /// `None` to let the request through, or the 401 to answer.
    fn check(&self, req: &Request) -> Option<Response> {
        let auth = req.header("authorization");
        if auth.is_some_and(|a| a.starts_with("Bearer ")) {
            self.bearer.fetch_add(1, Ordering::SeqCst);
        }
        let right = auth == Some(self.expected.as_str());
        let revoked = right
            && self.authorized.fetch_add(1, Ordering::SeqCst) >= self.limit.load(Ordering::SeqCst);
        if right && !revoked {
            return None;
        }
        self.rejected.fetch_add(1, Ordering::SeqCst);
        let path = req.path();
        let reason = match (auth, auth.and_then(basic_user)) {
            (_, Some(user)) => {
                format!("unable to authenticate user [{user}] for REST request [{path}]")
            }
            (Some(a), None) if a.starts_with("Bearer ") => {
                format!(
                    "unable to authenticate with provided credentials for REST request [{path}]"
                )
            }
            _ => format!("missing authentication credentials for REST request [{path}]"),
        };
        let challenge = "Basic realm=\"security\"";
        let mut response = Response::json(
            401,
            &json!({
                "error": {
                    "root_cause": [{"type": "security_exception", "reason": reason,
                        "header": {"WWW-Authenticate": challenge}}],
                    "type": "security_exception",
                    "reason": reason,
                    "header": {"WWW-Authenticate": challenge}
                },
                "status": 401
            }),
        );
        response
            .headers
            .push(("WWW-Authenticate".into(), challenge.into()));
        Some(response)
    }
}

impl Layer for AuthLayer {
    fn handle<'a>(&'a self, mut req: Request, next: Next<'a>) -> BoxFuture<'a, Reply> {
        match self.check(&req) {
            Some(refused) => Box::pin(async move { Reply::Answer(refused) }),
            None => {
                req.remove_header("authorization");
                next.run(req)
            }
        }
    }
}

/// The user of a `Basic ...` Authorization value, if it decodes.
fn basic_user(auth: &str) -> Option<String> {
    let decoded = STANDARD.decode(auth.strip_prefix("Basic ")?.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map(|(u, _)| u).unwrap_or(&text);
    Some(user.to_string())
}
