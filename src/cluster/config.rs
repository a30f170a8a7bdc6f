//! Connection settings resolved from the command line: the credential-free
//! URL ([`ClusterConfig::from_url`] moves any user info into [`Auth`]),
//! credentials, TLS material and the request timeout. Nothing here talks
//! to a server; [`super::Cluster::connect`] does.

use std::fmt;
use std::time::Duration;

use url::Url;

use super::client_cert::ClientCert;
use super::ClusterError;
use crate::aws::sigv4::AwsService;

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
    /// A cluster at `url` with the command line's defaults: credentials
    /// from the URL's user info if any, system CAs, a 120 s timeout.
    pub fn new(url: &str) -> Result<ClusterConfig, ClusterError> {
        let (url, auth) = ClusterConfig::from_url(url)?;
        Ok(ClusterConfig {
            url,
            auth,
            ca_cert: None,
            client_cert: None,
            insecure: false,
            timeout: Duration::from_secs(120),
        })
    }

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
