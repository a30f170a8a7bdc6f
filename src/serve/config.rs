//! The service's configuration file (`esark serve --config FILE`, TOML):
//! where it listens, where job state and archives live, how many jobs run
//! at once, the clusters jobs may name (credentials stay here, never in a
//! job), and the API tokens with their roles.
//!
//! Everything is checked when the file is loaded, so a bad config stops
//! the service before it listens: a non-loopback address without tokens,
//! a token naming an unknown cluster, a password variable that is not set.
//! Relative paths are taken from the config file's folder, so the service
//! reads the same files whatever its working directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::auth::{Role, TokenDigest, TokenEntry};
use crate::archive::store::{Location, LocationError};
use crate::aws::sigv4::AwsService;
use crate::cluster::{Auth, ClusterConfig};

/// Jobs running at once when the file does not say.
pub const DEFAULT_MAX_JOBS: usize = 2;

/// Largest archive upload (`PUT /v1/archives/{name}`) when the file does
/// not say: uploads are streamed to the archives' store, so this bounds
/// the space one upload can take, not memory.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 100 << 30;

/// Why a config file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("archives: {0}")]
    Archives(#[from] LocationError),
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    state: PathBuf,
    archives: String,
    #[serde(default = "default_max_jobs")]
    max_jobs: usize,
    /// Bytes (`107374182400`) or a size (`"100GiB"`).
    max_upload_bytes: Option<RawSize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    clusters: BTreeMap<String, RawCluster>,
    #[serde(default)]
    tokens: Vec<RawToken>,
}

fn default_max_jobs() -> usize {
    DEFAULT_MAX_JOBS
}

/// A size as a number of bytes or a text such as `"100GiB"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

/// A `[clusters.NAME]` table. One kind of credentials at most.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    url: String,
    user: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    api_key_env: Option<String>,
    bearer_token_env: Option<String>,
    ca_cert: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    aws_sigv4: bool,
    aws_region: Option<String>,
    aws_service: Option<String>,
    /// Per request timeout in seconds (default 120, as the CLI).
    timeout: Option<u64>,
}

/// A `[[tokens]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    role: Role,
    sha256: String,
    clusters: Option<Vec<String>>,
}

/// TLS files of the listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// The job database and job logs.
    pub state: PathBuf,
    /// Export jobs write archive NAME under it; import jobs read it.
    pub archives: Location,
    pub max_jobs: usize,
    /// The largest archive upload accepted, in bytes.
    pub max_upload_bytes: u64,
    pub tls: Option<TlsFiles>,
    /// Clusters by name, credentials resolved. `Debug` of [`Auth`] hides them.
    pub clusters: BTreeMap<String, ClusterConfig>,
    pub tokens: Vec<TokenEntry>,
}

impl ServeConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<ServeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        ServeConfig::parse(&text, &base).map_err(|e| e.in_file(path))
    }

    /// Parses `text`, with relative paths taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<ServeConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            // toml's message spans several lines (a caret under the spot).
            message: e.message().to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: PathBuf::new(),
            message,
        };
        let listen: SocketAddr = raw.listen.parse().map_err(|_| {
            invalid(format!(
                "listen = {:?}: an address and port such as \"127.0.0.1:8080\"",
                raw.listen
            ))
        })?;
        if raw.max_jobs == 0 {
            return Err(invalid("max_jobs must be at least 1".into()));
        }
        let max_upload_bytes = match raw.max_upload_bytes {
            None => DEFAULT_MAX_UPLOAD_BYTES,
            Some(RawSize::Bytes(n)) => n,
            Some(RawSize::Text(text)) => crate::cli::parse_size(&text)
                .map_err(|e| invalid(format!("max_upload_bytes: {e}")))?,
        };
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let archives = if raw.archives.contains("://") {
            Location::parse(raw.archives.as_ref())?
        } else {
            Location::Local(resolve(Path::new(&raw.archives)))
        };
        let tls = match (raw.tls_cert, raw.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: resolve(&cert),
                key: resolve(&key),
            }),
            (None, None) => None,
            _ => return Err(invalid("tls_cert and tls_key go together".into())),
        };
        let mut clusters = BTreeMap::new();
        for (name, cluster) in raw.clusters {
            let config = cluster_config(&name, cluster, &resolve).map_err(invalid)?;
            clusters.insert(name, config);
        }
        let mut tokens: Vec<TokenEntry> = Vec::new();
        for token in raw.tokens {
            if tokens.iter().any(|t| t.name == token.name) {
                return Err(invalid(format!("two tokens are named {:?}", token.name)));
            }
            let digest = TokenDigest::from_hex(&token.sha256).ok_or_else(|| {
                invalid(format!(
                    "token {:?}: sha256 must be 64 hex digits (the sha256 of the token, e.g. `printf %s TOKEN | sha256sum`)",
                    token.name
                ))
            })?;
            if tokens.iter().any(|t| t.digest == digest) {
                return Err(invalid(format!(
                    "token {:?} has the same sha256 as another token",
                    token.name
                )));
            }
            if let Some(names) = &token.clusters {
                if let Some(unknown) = names.iter().find(|n| !clusters.contains_key(*n)) {
                    return Err(invalid(format!(
                        "token {:?} names cluster {unknown:?}, which has no [clusters.{unknown}] table",
                        token.name
                    )));
                }
            }
            tokens.push(TokenEntry {
                name: token.name,
                role: token.role,
                digest,
                clusters: token.clusters,
            });
        }
        if tokens.is_empty() && !listen.ip().is_loopback() {
            return Err(invalid(format!(
                "listen = \"{listen}\" is not a loopback address and no [[tokens]] are configured: anyone who reaches it could run jobs; add tokens or listen on 127.0.0.1"
            )));
        }
        Ok(ServeConfig {
            listen,
            state: resolve(&raw.state),
            archives,
            max_jobs: raw.max_jobs,
            max_upload_bytes,
            tls,
            clusters,
            tokens,
        })
    }
}

impl ConfigError {
    /// Names the file in a message parsed without it.
    fn in_file(self, path: &Path) -> ConfigError {
        match self {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        }
    }
}

/// Resolves a `[clusters.NAME]` table: secrets read from their variable
/// or file now, so a missing one stops the service at start.
fn cluster_config(
    name: &str,
    raw: RawCluster,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<ClusterConfig, String> {
    let mut config =
        ClusterConfig::new(&raw.url).map_err(|e| format!("cluster {name:?}: url: {e}"))?;
    if !matches!(config.auth, Auth::None) {
        return Err(format!(
            "cluster {name:?}: credentials in the url would be stored in plain text; use user + password_env or password_file"
        ));
    }
    let env = |var: &str, what: &str| -> Result<String, String> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => Err(format!(
                "cluster {name:?}: {what} = {var:?}, but that variable is not set"
            )),
        }
    };
    let kinds = [
        raw.user.is_some() || raw.password_env.is_some() || raw.password_file.is_some(),
        raw.api_key_env.is_some(),
        raw.bearer_token_env.is_some(),
        raw.aws_sigv4,
    ];
    if kinds.iter().filter(|k| **k).count() > 1 {
        return Err(format!(
            "cluster {name:?}: give one kind of credentials (user/password, api_key_env, bearer_token_env or aws_sigv4)"
        ));
    }
    if !raw.aws_sigv4 && (raw.aws_region.is_some() || raw.aws_service.is_some()) {
        return Err(format!(
            "cluster {name:?}: aws_region and aws_service need aws_sigv4 = true"
        ));
    }
    config.auth = if let Some(user) = raw.user {
        let password = match (raw.password_env, raw.password_file) {
            (Some(var), None) => env(&var, "password_env")?,
            (None, Some(file)) => {
                let file = resolve(&file);
                std::fs::read_to_string(&file)
                    .map_err(|e| {
                        format!(
                            "cluster {name:?}: cannot read password_file {}: {e}",
                            file.display()
                        )
                    })?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            }
            (None, None) => {
                return Err(format!(
                    "cluster {name:?}: user {user:?} has no password_env or password_file"
                ))
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "cluster {name:?}: password_env and password_file: give one"
                ))
            }
        };
        Auth::Basic { user, password }
    } else if raw.password_env.is_some() || raw.password_file.is_some() {
        return Err(format!("cluster {name:?}: a password needs a user"));
    } else if let Some(var) = raw.api_key_env {
        Auth::ApiKey(env(&var, "api_key_env")?)
    } else if let Some(var) = raw.bearer_token_env {
        Auth::Bearer(env(&var, "bearer_token_env")?)
    } else if raw.aws_sigv4 {
        let service = match raw.aws_service.as_deref() {
            None => AwsService::Es,
            Some(s) => s
                .parse()
                .map_err(|e| format!("cluster {name:?}: aws_service: {e}"))?,
        };
        Auth::AwsSigV4 {
            region: raw.aws_region,
            service,
        }
    } else {
        Auth::None
    };
    if let Some(ca) = raw.ca_cert {
        let ca = resolve(&ca);
        let pem = std::fs::read(&ca).map_err(|e| {
            format!(
                "cluster {name:?}: cannot read ca_cert {}: {e}",
                ca.display()
            )
        })?;
        config.ca_cert = Some((ca.display().to_string(), pem));
    }
    config.insecure = raw.insecure;
    if let Some(secs) = raw.timeout {
        config.timeout = Duration::from_secs(secs.max(1));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        ServeConfig::parse(text, Path::new("/etc/esark"))
    }

    #[test]
    fn the_issue_example_parses_with_paths_from_the_file_folder() {
        std::env::set_var("ESARK_CONFIG_TEST_PW", "s3cret");
        let config = parse(&format!(
            r#"
listen = "127.0.0.1:8080"
state = "./esark-state"
archives = "./archives"
max_jobs = 2

[clusters.prod]
url = "https://es.example:9200"
user = "backup"
password_env = "ESARK_CONFIG_TEST_PW"

[[tokens]]
name = "ci"
role = "exporter"
sha256 = "{DIGEST}"
clusters = ["prod"]
"#
        ))
        .unwrap();
        assert_eq!(config.state, Path::new("/etc/esark/./esark-state"));
        assert_eq!(
            config.archives,
            Location::Local(PathBuf::from("/etc/esark/./archives"))
        );
        assert!(matches!(
            &config.clusters["prod"].auth,
            Auth::Basic { user, password } if user == "backup" && password == "s3cret"
        ));
        assert_eq!(config.tokens[0].role, Role::Exporter);
        assert_eq!(config.max_upload_bytes, DEFAULT_MAX_UPLOAD_BYTES);
        // Debug output (logs) never holds the password.
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn max_upload_bytes_is_bytes_or_a_size() {
        let base = "listen = \"127.0.0.1:0\"\nstate = \"s\"\narchives = \"a\"\n";
        for (value, bytes) in [("4096", 4096), ("\"2GiB\"", 2 << 30)] {
            let config = parse(&format!("{base}max_upload_bytes = {value}\n")).unwrap();
            assert_eq!(config.max_upload_bytes, bytes, "{value}");
        }
    }

    #[test]
    fn a_public_listener_without_tokens_is_refused() {
        let error = parse("listen = \"0.0.0.0:8080\"\nstate = \"s\"\narchives = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a loopback address"), "{error}");
        assert!(parse("listen = \"127.0.0.1:0\"\nstate = \"s\"\narchives = \"a\"\n").is_ok());
    }

    #[test]
    fn mistakes_are_named() {
        let base = "listen = \"127.0.0.1:0\"\nstate = \"s\"\narchives = \"a\"\n";
        for (extra, expected) in [
            ("lisen = 1\n", "unknown field"),
            (
                "[clusters.c]\nurl = \"http://x:9200\"\nuser = \"u\"\npassword_env = \"ESARK_CONFIG_TEST_UNSET\"\n",
                "ESARK_CONFIG_TEST_UNSET",
            ),
            (
                "[clusters.c]\nurl = \"http://u:p@x:9200\"\n",
                "credentials in the url",
            ),
            (
                &format!("[[tokens]]\nname = \"t\"\nrole = \"admin\"\nsha256 = \"{DIGEST}\"\nclusters = [\"nope\"]\n"),
                "\"nope\"",
            ),
            (
                "[[tokens]]\nname = \"t\"\nrole = \"admin\"\nsha256 = \"abc\"\n",
                "64 hex digits",
            ),
            (
                &format!("[[tokens]]\nname = \"t\"\nrole = \"root\"\nsha256 = \"{DIGEST}\"\n"),
                "unknown variant",
            ),
            ("max_jobs = 0\n", "max_jobs"),
            ("max_upload_bytes = \"lots\"\n", "max_upload_bytes"),
            ("tls_cert = \"c.pem\"\n", "tls_cert and tls_key"),
        ] {
            let error = parse(&format!("{base}{extra}")).unwrap_err().to_string();
            assert!(error.contains(expected), "{extra}: {error}");
        }
        let error = parse("listen = \"127.0.0.1:0\"\nstate = \"s\"\narchives = \"ftp://x/y\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("ftp"), "{error}");
    }
}
