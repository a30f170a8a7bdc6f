//! [`ClusterError`]: every way talking to a cluster can fail, with the
//! accessors callers branch on (the HTTP status, the server's error type,
//! a lost scroll context, a broken connection). Messages name the
//! credential-free URL and never a secret.

use super::model;
use crate::aws::AwsError;

/// Errors from talking to a cluster. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid cluster URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot read CA certificate {path}: {reason}")]
    CaCert { path: String, reason: String },
    #[error("cannot connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("authentication failed for {url} (HTTP 401): check the user and password, API key or bearer token")]
    Unauthorized { url: String },
    #[error("access denied by {url} (HTTP 403) for {method} {path}: {reason}")]
    Forbidden {
        url: String,
        method: String,
        path: String,
        reason: String,
    },
    #[error("{url} does not look like Elasticsearch or OpenSearch: {reason}")]
    NotSearchEngine { url: String, reason: String },
    #[error("{method} {path} on {url} failed with HTTP {status}: {reason}")]
    Http {
        url: String,
        method: String,
        path: String,
        status: u16,
        reason: String,
        /// The server's error `type` and root-cause types, to branch on
        /// (never on the reason's wording).
        types: model::error::ErrorTypes,
    },
    #[error("{method} {path} on {url}: unexpected response: {reason}")]
    BadResponse {
        url: String,
        method: String,
        path: String,
        reason: String,
    },
    #[error("{method} {path} on {url}: {reason}")]
    Transport {
        url: String,
        method: String,
        path: String,
        reason: String,
    },
    /// The server ended the TLS session with a fatal alert (it refused
    /// the client's certificate, or its CA): its last word, which another
    /// attempt would only hear again.
    #[error("{method} {path} on {url}: {reason}")]
    TlsRefused {
        url: String,
        method: String,
        path: String,
        reason: String,
    },
    /// No AWS credentials or region, or a request that cannot be signed.
    #[error("AWS request signing for {url}: {error}")]
    AwsSigning { url: String, error: AwsError },
}

impl ClusterError {
    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClusterError::Unauthorized { .. } => Some(401),
            ClusterError::Forbidden { .. } => Some(403),
            ClusterError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// An HTTP error as the cluster at `u` would make it from an answer
    /// (`status`, `body`) to `method path`: for tests fed with literal
    /// server answers.
    #[cfg(test)]
    pub(crate) fn from_answer(method: &str, path: &str, status: u16, body: &str) -> ClusterError {
        ClusterError::Http {
            url: "u".into(),
            method: method.into(),
            path: path.into(),
            status,
            reason: model::error::reason(body.as_bytes()),
            types: model::error::ErrorTypes::of(body.as_bytes()),
        }
    }

    /// Whether the server's error (its `type` or a root cause) is of the
    /// Elasticsearch exception type `kind`.
    pub fn is_type(&self, kind: &str) -> bool {
        match self {
            ClusterError::Http { types, .. } => types.is(kind),
            _ => false,
        }
    }

    /// Whether the server said the scroll or point-in-time context is gone
    /// (expired, or lost with a node).
    pub fn is_context_missing(&self) -> bool {
        self.status() == Some(404) && self.is_type("search_context_missing_exception")
    }

    /// Whether the request may not have reached the server's logic at all
    /// (connection refused, reset, timeout): the caller decides whether a
    /// retry is safe.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ClusterError::Unreachable { .. } | ClusterError::Transport { .. }
        )
    }
}
