//! Sending requests: one attempt ([`Cluster::request_once`]), or attempts
//! driven by the cluster's [`RetryPolicy`](crate::retry::RetryPolicy)
//! ([`Cluster::send`], [`Cluster::request`], [`Cluster::call`]), each
//! signed under SigV4 when configured, and the answers or failures turned
//! into [`ClusterError`]s that name the URL, method and path.

use bytes::Bytes;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::Method;
use std::time::Duration;

use super::{model, root_cause, Cluster, ClusterError};
use crate::aws::sigv4::{self, SigV4Signer};
use crate::retry::{classify_answer, RetryAction, Verdict};

/// What the server answered to a request sent through the retry policy.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    /// Whether an earlier attempt of this request may have been acted on
    /// (its answer was lost, or was a server error other than 429): a
    /// create answered "already exists" is then most likely esark's own.
    pub resent: bool,
}

/// The answer to one attempt ([`Cluster::request_once`]).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    /// What the server's `Retry-After` asked for.
    pub retry_after: Option<Duration>,
}

/// One attempt's outcome, with what the server asked of a retry.
struct Attempt {
    status: u16,
    body: Bytes,
    retry_after: Option<Duration>,
}

impl Cluster {
    /// Sends a request through the retry policy and returns status and
    /// body of the last answer, without judging a status that is not worth
    /// a retry. Transport failures become [`ClusterError`]s.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), ClusterError> {
        self.send(method, path, body)
            .await
            .map(|a| (a.status, a.body))
    }

    /// Sends a request through the retry policy: 429, 5xx (but 501/505)
    /// and broken connections are retried with capped, jittered backoff,
    /// at least as long as a `Retry-After` asks. The last answer is
    /// returned, whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, ClusterError> {
        use std::sync::atomic::{AtomicBool, Ordering};
        // Set once an attempt fails in a way the server may have acted on.
        let acted = AtomicBool::new(false);
        let (outcome, _) = self
            .policy
            .drive(
                || self.attempt(method, path, body.clone()),
                |outcome: &Result<Attempt, ClusterError>| {
                    let verdict = self.judge(outcome);
                    if verdict != Verdict::Done && may_have_acted(outcome) {
                        acted.store(true, Ordering::Relaxed);
                    }
                    verdict
                },
            )
            .await;
        let attempt = outcome?;
        Ok(Answer {
            status: attempt.status,
            body: attempt.body,
            resent: acted.load(Ordering::Relaxed),
        })
    }

    /// Whether an attempt's outcome is worth another one.
    fn judge(&self, outcome: &Result<Attempt, ClusterError>) -> Verdict {
        match outcome {
            Ok(a) if classify_answer(a.status, &a.body) == RetryAction::Retry => Verdict::Retry {
                after: a.retry_after,
                why: format!("HTTP {}: {}", a.status, model::error::reason(&a.body)),
            },
            Ok(_) => Verdict::Done,
            Err(e @ ClusterError::Unreachable { .. }) if self.connected => Verdict::Retry {
                after: None,
                why: e.to_string(),
            },
            Err(e @ ClusterError::Transport { .. }) => Verdict::Retry {
                after: None,
                why: e.to_string(),
            },
            Err(_) => Verdict::Done,
        }
    }

    /// Sends a request once and returns its status, body and the delay a
    /// `Retry-After` header asked for, without judging the status: for
    /// requests whose caller decides about retries.
    pub async fn request_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Reply, ClusterError> {
        self.attempt(method, path, body).await.map(|a| Reply {
            status: a.status,
            body: a.body,
            retry_after: a.retry_after,
        })
    }

    async fn attempt(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Attempt, ClusterError> {
        let headers = match &self.signer {
            Some(signer) => self.sign(signer, method, path, body.as_deref()).await?,
            None => HeaderMap::new(),
        };
        let response = self
            .transport
            .send(method, path, headers, None::<&()>, body, None)
            .await
            .map_err(|e| self.transport_error(method, path, &e))?;
        let status = response.status_code().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::retry_after);
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(method, path, &e))?;
        Ok(Attempt {
            status,
            body,
            retry_after,
        })
    }

    /// The SigV4 headers for a request, over the URL the transport will
    /// build from `path` and the exact body bytes it will send (no body
    /// compression is configured).
    async fn sign(
        &self,
        signer: &SigV4Signer,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<HeaderMap, ClusterError> {
        let url = sigv4::request_url(&self.url, path).map_err(|e| ClusterError::Transport {
            url: self.url.to_string(),
            method: method_name(method),
            path: display_path(path),
            reason: e.to_string(),
        })?;
        signer
            .headers(&method_name(method), &url, body.unwrap_or_default())
            .await
            .map_err(|error| ClusterError::AwsSigning {
                url: self.url.to_string(),
                error,
            })
    }

    /// Sends a request through the retry policy and returns the body of a
    /// 2xx answer; any other status becomes an error carrying the server's
    /// reason.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, ClusterError> {
        let (status, bytes) = self.request(method, path, body).await?;
        self.judged(method, path, status, bytes)
    }

    /// Like [`Cluster::call`], in one attempt: for requests that are not
    /// safely repeatable as such (a scroll page), whose caller decides.
    pub async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, ClusterError> {
        let reply = self.request_once(method, path, body).await?;
        self.judged(method, path, reply.status, reply.body)
    }

    fn judged(
        &self,
        method: Method,
        path: &str,
        status: u16,
        bytes: Bytes,
    ) -> Result<Bytes, ClusterError> {
        if (200..300).contains(&status) {
            Ok(bytes)
        } else {
            Err(self.status_error(method, path, status, &bytes))
        }
    }

    /// Like [`Cluster::call`], parsing the answer as JSON into `T`.
    pub async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T, ClusterError> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| self.bad_response(method, path, e.to_string()))
    }

    pub(crate) fn bad_response(&self, method: Method, path: &str, reason: String) -> ClusterError {
        ClusterError::BadResponse {
            url: self.url.to_string(),
            method: method_name(method),
            path: display_path(path),
            reason,
        }
    }

    pub(crate) fn status_error(
        &self,
        method: Method,
        path: &str,
        status: u16,
        body: &[u8],
    ) -> ClusterError {
        let reason = model::error::reason(body);
        match status {
            401 => ClusterError::Unauthorized {
                url: self.url.to_string(),
            },
            403 => ClusterError::Forbidden {
                url: self.url.to_string(),
                method: method_name(method),
                path: display_path(path),
                reason,
            },
            _ => ClusterError::Http {
                url: self.url.to_string(),
                method: method_name(method),
                path: display_path(path),
                status,
                reason,
                types: model::error::ErrorTypes::of(body),
            },
        }
    }

    fn transport_error(
        &self,
        method: Method,
        path: &str,
        error: &elasticsearch::Error,
    ) -> ClusterError {
        let mut reason = root_cause(error);
        // rustls names the TLS alert only in its message: no type to go by.
        if reason.contains("CertificateRequired") {
            reason.push_str(
                " (the server asks for a client certificate: --source-client-cert and \
                 --source-client-key, or --target-client-cert and --target-client-key)",
            );
        }
        // A mutual-TLS server that refuses the client's certificate (or
        // misses one) sends its alert after the client has finished its
        // side of a TLS 1.3 handshake; when the client's first request
        // races the alert, all the client sees is a connection closed
        // before any answer. Said at first contact only: later it is a
        // node going away.
        else if !self.connected && self.url.scheme() == "https" && closed_early(error) {
            reason.push_str(
                " (the server closed the TLS connection before answering: a server that \
                 requires a client certificate does so when none is given or it refuses the \
                 one given: --source-client-cert and --source-client-key, or \
                 --target-client-cert and --target-client-key)",
            );
        }
        let connect = error_chain_is_connect(error);
        if fatal_alert(error) {
            ClusterError::TlsRefused {
                url: self.url.to_string(),
                method: method_name(method),
                path: display_path(path),
                reason,
            }
        } else if connect {
            ClusterError::Unreachable {
                url: self.url.to_string(),
                reason,
            }
        } else {
            ClusterError::Transport {
                url: self.url.to_string(),
                method: method_name(method),
                path: display_path(path),
                reason: if error.is_timeout() {
                    format!("timed out ({reason})")
                } else {
                    reason
                },
            }
        }
    }
}

/// Whether a failed attempt may have been acted on by the server: its
/// answer was lost on the way, or it was a server error. A 429 and a
/// refused connection were not.
fn may_have_acted(outcome: &Result<Attempt, ClusterError>) -> bool {
    match outcome {
        Ok(a) => a.status != 429,
        Err(ClusterError::Unreachable { .. }) => false,
        Err(_) => true,
    }
}

fn display_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

fn method_name(method: Method) -> String {
    format!("{method:?}").to_uppercase()
}

/// Whether the connection ended before any answer came: hyper's
/// "connection was not ready" (closed while the request waited for it) and
/// "connection closed before message completed", a TLS stream that ended
/// without `close_notify`, or a reset.
fn closed_early(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_canceled() || h.is_incomplete_message() {
                return true;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            ) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

/// Whether the server sent a fatal TLS alert (rustls' `AlertReceived`,
/// inside the I/O error of the TLS stream): a refused client certificate
/// (`UnknownCA`, `BadCertificate`, `CertificateRequired`…), not a passing
/// fault.
fn fatal_alert(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        // An I/O error's `source` skips the error it wraps.
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(e), wrapped].into_iter().flatten() {
            if let Some(rustls::Error::AlertReceived(_)) = candidate.downcast_ref::<rustls::Error>()
            {
                return true;
            }
        }
        current = e.source();
    }
    false
}

fn error_chain_is_connect(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            return r.is_connect();
        }
        current = e.source();
    }
    false
}
