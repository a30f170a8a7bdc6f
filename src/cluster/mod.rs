//! Talking to one Elasticsearch or OpenSearch cluster.
//!
//! [`Cluster`] wraps the `elasticsearch` crate's [`Transport`]: it owns the
//! connection settings (credentials are handed to the transport and never
//! kept in anything that is displayed), detects the flavor and version from
//! `GET /` when it connects, and turns every failure into a [`ClusterError`]
//! whose message names the (credential-free) URL and never a secret.
//!
//! One file per group of endpoints: [`indices`] (listing, metadata, count),
//! [`templates`], [`scroll`]; wire types live in [`model`]. With
//! [`Auth::AwsSigV4`] every request is signed by [`crate::aws::sigv4`]
//! with credentials from [`crate::aws::credentials`].

pub mod client_cert;
pub mod data_streams;
pub mod extras;
pub mod indices;
pub mod model;
pub mod pit;
pub mod scroll;
pub mod templates;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, AUTHORIZATION};
use elasticsearch::http::transport::{SingleNodeConnectionPool, Transport, TransportBuilder};
use elasticsearch::http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

use crate::aws::sigv4::{self, AwsService, SigV4Signer};
use crate::aws::{AwsEnv, AwsError};
pub(crate) use crate::errors::root_cause;
use client_cert::ClientCert;
use model::info::{ClusterInfo, Flavor, RootResponse};

use crate::retry::{classify_status, RetryAction, RetryPolicy, Verdict};

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

/// Credentials for a cluster. `Debug` never prints secrets.
#[derive(Clone)]
pub enum Auth {
    None,
    Basic {
        user: String,
        password: String,
    },
    /// `id:key` or the base64 encoded form.
    ApiKey(String),
    /// A token sent as `Authorization: Bearer <token>` (an Elasticsearch
    /// access token, a service account token, or an OIDC/JWT token in
    /// front of a proxy).
    Bearer(String),
    /// AWS Signature Version 4 (Amazon OpenSearch Service, OpenSearch
    /// Serverless), with credentials from the environment or the shared
    /// profile files, read when connecting. `region: None` takes the
    /// chain's region.
    AwsSigV4 {
        region: Option<String>,
        service: AwsService,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            Auth::ApiKey(_) => f.write_str("ApiKey(***)"),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
            Auth::AwsSigV4 { region, service } => {
                write!(f, "AwsSigV4({service}, region {region:?})")
            }
        }
    }
}

/// Everything needed to connect to a cluster, resolved from the command line.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The base URL with user info removed; safe to print.
    pub url: Url,
    pub auth: Auth,
    /// PEM bytes of a CA certificate to trust, and the path it came from.
    pub ca_cert: Option<(String, Vec<u8>)>,
    /// A client certificate and key for mutual TLS; independent of `auth`
    /// (a cluster may ask for both).
    pub client_cert: Option<ClientCert>,
    pub insecure: bool,
    /// Per request timeout.
    pub timeout: Duration,
}

impl ClusterConfig {
    /// Parses `url`, moving any user info out of it into [`Auth::Basic`].
    /// A URL without a scheme (`localhost:9200`, `127.0.0.1:9200`) is
    /// taken as `http://`. An `@` after the host (a password with an
    /// unencoded `@` or `/`, as in `http://u:p@ss/x@host`) is refused
    /// rather than read as a host and a path that would then be printed.
    pub fn from_url(raw: &str) -> Result<(Url, Auth), ClusterError> {
        let raw = raw.trim();
        let with_scheme;
        let raw = if raw.contains("://") {
            raw
        } else {
            with_scheme = format!("http://{raw}");
            with_scheme.as_str()
        };
        if let Some(start) = raw.find("://").map(|s| s + 3) {
            let rest = &raw[start..];
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            if rest[authority_end..].contains('@') {
                return Err(ClusterError::InvalidUrl {
                    url: redact_url_text(raw),
                    reason: "an '@' after the host: percent-encode '@', '/', '?' and '#' in a user or password (%40, %2F, %3F, %23), or give the password with --…-password-file or ESARK_…_PASSWORD".into(),
                });
            }
        }
        let mut url = Url::parse(raw).map_err(|e| ClusterError::InvalidUrl {
            url: redact_url_text(raw),
            reason: e.to_string(),
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(ClusterError::InvalidUrl {
                url: redact_url_text(raw),
                reason: "the scheme must be http or https".into(),
            });
        }
        let user = percent_encoding::percent_decode_str(url.username())
            .decode_utf8_lossy()
            .into_owned();
        let password = url.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
        // A base path (for a cluster behind a reverse proxy) must end with a
        // slash, or `Url::join` drops its last segment.
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        url.set_query(None);
        url.set_fragment(None);
        let auth = if user.is_empty() {
            Auth::None
        } else {
            Auth::Basic {
                user,
                password: password.unwrap_or_default(),
            }
        };
        Ok((url, auth))
    }
}

/// Removes anything between `://` and `@` from a string that failed to parse
/// as a URL, so that an error message never echoes a password.
pub fn redact_url_text(raw: &str) -> String {
    match (raw.find("://"), raw.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &raw[..s + 3], &raw[at..]),
        _ => raw.to_string(),
    }
}

/// Characters escaped in a path segment: everything but unreserved ones, so
/// that `%kuzzle` becomes `%25kuzzle` and `a:b` cannot be read as a scheme.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// Percent-encodes an index, alias or template name for use in a URL path.
pub fn encode_segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

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

/// One attempt's outcome, with what the server asked of a retry.
struct Attempt {
    status: u16,
    body: Bytes,
    retry_after: Option<Duration>,
}

/// A connected cluster: transport plus what `GET /` said about it.
///
/// Every request goes through one [`RetryPolicy`]: [`Cluster::request`],
/// [`Cluster::call`] and the endpoints built on them retry 429, 5xx and
/// broken connections with backoff, honouring `Retry-After`. Requests
/// whose repetition is not safe as such (a scroll page, a bulk) use
/// [`Cluster::request_once`] / [`Cluster::call_once`], and their callers
/// decide ([`crate::source::slice`], [`crate::sink::bulk`]).
#[derive(Clone)]
pub struct Cluster {
    transport: Transport,
    url: Url,
    info: ClusterInfo,
    policy: RetryPolicy,
    /// False until `GET /` answered: a refused connection on the very
    /// first request is a wrong URL, said at once; later it is a node
    /// restarting, retried.
    connected: bool,
    /// Signs every request under [`Auth::AwsSigV4`]; shared by the clones
    /// so that they share one credential cache.
    signer: Option<Arc<SigV4Signer>>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.url.as_str())
            .field("info", &self.info)
            .finish()
    }
}

impl Cluster {
    /// Builds the transport and reads flavor and version from `GET /`.
    pub async fn connect(config: &ClusterConfig) -> Result<Cluster, ClusterError> {
        let url = config.url.clone();
        let mut signer = None;
        let pool = SingleNodeConnectionPool::new(url.clone());
        let mut builder = TransportBuilder::new(pool)
            .timeout(config.timeout)
            .enable_meta_header(false);
        let credentials = match &config.auth {
            Auth::None => None,
            Auth::Basic { user, password } => {
                Some(Credentials::Basic(user.clone(), password.clone()))
            }
            Auth::ApiKey(key) => Some(match key.split_once(':') {
                Some((id, k)) => Credentials::ApiKey(id.to_string(), k.to_string()),
                None => Credentials::EncodedApiKey(key.clone()),
            }),
            Auth::Bearer(token) => Some(Credentials::Bearer(token.clone())),
            Auth::AwsSigV4 { region, service } => {
                let loaded = SigV4Signer::load(region.as_deref(), *service, AwsEnv::from_process())
                    .await
                    .map_err(|error| ClusterError::AwsSigning {
                        url: url.to_string(),
                        error,
                    })?;
                signer = Some(Arc::new(loaded));
                None
            }
        };
        match (&config.client_cert, credentials) {
            (None, Some(credentials)) => builder = builder.auth(credentials),
            (None, None) => {}
            // The transport holds one `Credentials`: the certificate takes
            // it, and any other credentials go in a default header.
            (Some(cert), credentials) => {
                builder = builder.auth(Credentials::Certificate(ClientCertificate::Pem(
                    cert.pem.clone(),
                )));
                if let Some(credentials) = credentials {
                    let value =
                        client_cert::authorization_header(&credentials).ok_or_else(|| {
                            ClusterError::InvalidUrl {
                                url: url.to_string(),
                                reason:
                                    "the credentials hold characters not allowed in an HTTP header"
                                        .into(),
                            }
                        })?;
                    builder = builder.header(AUTHORIZATION, value);
                }
            }
        }
        if config.insecure {
            builder = builder.cert_validation(CertificateValidation::None);
        } else if let Some((path, pem)) = &config.ca_cert {
            let cert = Certificate::from_pem(pem).map_err(|e| ClusterError::CaCert {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            builder = builder.cert_validation(CertificateValidation::Full(cert));
        }
        let transport = builder.build().map_err(|e| ClusterError::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let mut cluster = Cluster {
            transport,
            url,
            info: ClusterInfo::default(),
            policy: RetryPolicy::default(),
            connected: false,
            signer,
        };
        cluster.info = cluster.read_info().await?;
        cluster.connected = true;
        Ok(cluster)
    }

    /// Uses `policy` for every retried request of this handle.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Cluster {
        self.policy = policy;
        self
    }

    async fn read_info(&self) -> Result<ClusterInfo, ClusterError> {
        let (status, body) = self.request(Method::Get, "", None).await?;
        if status == 401 {
            return Err(ClusterError::Unauthorized {
                url: self.url.to_string(),
            });
        }
        let not_engine = |reason: String| ClusterError::NotSearchEngine {
            url: self.url.to_string(),
            reason,
        };
        if !(200..300).contains(&status) {
            return Err(self.status_error(Method::Get, "/", status, &body));
        }
        let root: RootResponse = serde_json::from_slice(&body)
            .map_err(|_| not_engine("GET / did not answer with the expected JSON".into()))?;
        ClusterInfo::from_root(root).map_err(|e| not_engine(e.to_string()))
    }

    /// The credential-free base URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// What `GET /` said.
    pub fn info(&self) -> &ClusterInfo {
        &self.info
    }

    pub fn flavor(&self) -> Flavor {
        self.info.flavor
    }

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
            Ok(a) if classify_status(a.status) == RetryAction::Retry => Verdict::Retry {
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

    /// Sends a request once and returns status and body, without judging
    /// the status: for requests whose caller decides about retries.
    pub async fn request_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), ClusterError> {
        self.attempt(method, path, body)
            .await
            .map(|a| (a.status, a.body))
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
        let (status, bytes) = self.request_once(method, path, body).await?;
        self.judged(method, path, status, bytes)
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
        let connect = error_chain_is_connect(error);
        if connect {
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
