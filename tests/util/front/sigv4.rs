//! The SigV4 layer: what Amazon OpenSearch Service checks before it looks
//! at a request. A request whose AWS SigV4 signature the
//! [`SigV4Verifier`] (written from the specification) does not accept gets
//! `403` and `{"message": reason}`, as AWS answers; an accepted one goes on
//! without its `Authorization`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::json;

use super::{Layer, Next, Reply, Request, Response};
use crate::util::sigv4::SigV4Verifier;

/// Verifies the signature of every request.
pub struct SigV4Layer {
    verifier: Arc<SigV4Verifier>,
    /// Requests answered with 403.
    rejected: AtomicUsize,
    /// Requests whose signature was accepted.
    authorized: AtomicUsize,
}

impl SigV4Layer {
    pub fn new(verifier: Arc<SigV4Verifier>) -> SigV4Layer {
        SigV4Layer {
            verifier,
            rejected: AtomicUsize::new(0),
            authorized: AtomicUsize::new(0),
        }
    }

    /// How many requests got a 403.
    pub fn rejected(&self) -> usize {
        self.rejected.load(Ordering::SeqCst)
    }

    /// How many requests were signed right.
    pub fn authorized(&self) -> usize {
        self.authorized.load(Ordering::SeqCst)
    }
}

impl Layer for SigV4Layer {
    fn handle<'a>(&'a self, mut req: Request, next: Next<'a>) -> BoxFuture<'a, Reply> {
        let checked = self
            .verifier
            .verify(&req.method, &req.target, &req.headers, &req.body);
        if let Err(reason) = checked {
            self.rejected.fetch_add(1, Ordering::SeqCst);
            let refused = Response::json(403, &json!({ "message": reason }));
            return Box::pin(async move { Reply::Answer(refused) });
        }
        self.authorized.fetch_add(1, Ordering::SeqCst);
        req.remove_header("authorization");
        next.run(req)
    }
}
