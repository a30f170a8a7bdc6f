//! Talking to one Elasticsearch or OpenSearch cluster.
//!
//! [`Cluster`] wraps the `elasticsearch` crate's [`Transport`]: it owns the
//! connection settings (credentials are handed to the transport and never
//! kept in anything that is displayed), detects the flavor and version from
//! `GET /` when it connects, and turns every failure into a [`ClusterError`]
//! whose message names the (credential-free) URL and never a secret.
//!
//! This file holds [`Cluster`] and how it connects; `config` the
//! connection settings ([`ClusterConfig`], [`Auth`]), `transport` how a
//! request is sent and retried ([`Cluster::send`] and the calls built on
//! it), `error` the [`ClusterError`] type, all re-exported here.
//!
//! One file per group of endpoints: [`indices`] (listing, metadata, count),
//! [`templates`], [`scroll`]; wire types live in [`model`]. With
//! [`Auth::AwsSigV4`] every request is signed by [`crate::aws::sigv4`]
//! with credentials from [`crate::aws::credentials`].

pub mod client_cert;
mod config;
pub mod data_streams;
mod error;
pub mod extras;
pub mod indices;
pub mod model;
pub mod pit;
pub mod scroll;
pub mod templates;
mod transport;

use std::fmt;
use std::sync::Arc;

use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::AUTHORIZATION;
use elasticsearch::http::transport::{SingleNodeConnectionPool, Transport, TransportBuilder};
use elasticsearch::http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

use crate::aws::sigv4::SigV4Signer;
use crate::aws::AwsEnv;
pub(crate) use crate::errors::root_cause;
use crate::retry::RetryPolicy;
use model::info::{ClusterInfo, Flavor, RootResponse};

pub use config::{redact_url_text, Auth, ClusterConfig};
pub use error::ClusterError;
pub use transport::{Answer, Reply};

/// Characters escaped in a path segment: everything but unreserved ones, so
/// that `%kuzzle` becomes `%25kuzzle` and `a:b` cannot be read as a scheme.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// Percent-encodes an index, alias or template name for use in a URL path.
pub fn encode_segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
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
}
