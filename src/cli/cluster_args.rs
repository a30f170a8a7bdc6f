//! Connection flags of a cluster (`--source…`, `--target…` mirroring them,
//! and the shared TLS flags) and their resolution into a [`ClusterConfig`].
//!
//! Authentication is one of: none, basic (user in the URL or
//! `--…-user`), an API key, a bearer token (`--…-bearer-token`), or AWS
//! SigV4 (`--…-aws-sigv4`, for Amazon OpenSearch Service; credentials and
//! region from the AWS chain, read when connecting). A bearer token or
//! SigV4 together with other credentials is a usage error. A client
//! certificate for mutual TLS (`--…-client-cert` and `--…-client-key`) goes
//! with any of them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::CliError;
use crate::aws::sigv4::AwsService;
use crate::cluster::client_cert::ClientCert;
use crate::cluster::{Auth, ClusterConfig};

/// How to reach and authenticate to the source cluster.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Source cluster URL; user and password may be given in it
    /// (http://user:pass@host:9200, special characters percent-encoded).
    /// Without a scheme (localhost:9200) it is http://.
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// User for basic authentication (password from ESARK_SOURCE_PASSWORD or --source-password-file).
    #[arg(long, value_name = "USER")]
    pub source_user: Option<String>,
    /// File holding the password (first line).
    #[arg(long, value_name = "PATH")]
    pub source_password_file: Option<PathBuf>,
    /// API key, `id:key` or base64 encoded.
    #[arg(
        long,
        value_name = "KEY",
        env = "ESARK_SOURCE_API_KEY",
        hide_env_values = true
    )]
    pub source_api_key: Option<String>,
    /// Token sent as `Authorization: Bearer TOKEN` (an access, service
    /// account or JWT token).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ESARK_SOURCE_BEARER_TOKEN",
        hide_env_values = true
    )]
    pub source_bearer_token: Option<String>,
    /// PEM client certificate (chain) for mutual TLS; needs --source-client-key.
    #[arg(long, value_name = "PATH", requires = "source_client_key")]
    pub source_client_cert: Option<PathBuf>,
    /// PEM private key of --source-client-cert (PKCS#8, RSA or EC).
    #[arg(long, value_name = "PATH", requires = "source_client_cert")]
    pub source_client_key: Option<PathBuf>,
    /// Sign requests with AWS SigV4 (Amazon OpenSearch Service or
    /// Serverless); credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
    /// (AWS_SESSION_TOKEN) or the AWS_PROFILE profile of ~/.aws/credentials
    /// and ~/.aws/config.
    #[arg(long)]
    pub source_aws_sigv4: bool,
    /// AWS region to sign for (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region).
    #[arg(long, value_name = "REGION", requires = "source_aws_sigv4")]
    pub source_aws_region: Option<String>,
    /// AWS service to sign for: es (OpenSearch Service domains) or aoss (OpenSearch Serverless).
    #[arg(
        long,
        value_name = "SERVICE",
        default_value = "es",
        requires = "source_aws_sigv4"
    )]
    pub source_aws_service: AwsService,
}

/// How to reach and authenticate to the target cluster.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Target cluster URL; user and password may be given in it
    /// (special characters percent-encoded). Without a scheme
    /// (localhost:9200) it is http://.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// User for basic authentication (password from ESARK_TARGET_PASSWORD or --target-password-file).
    #[arg(long, value_name = "USER")]
    pub target_user: Option<String>,
    /// File holding the password (first line).
    #[arg(long, value_name = "PATH")]
    pub target_password_file: Option<PathBuf>,
    /// API key, `id:key` or base64 encoded.
    #[arg(
        long,
        value_name = "KEY",
        env = "ESARK_TARGET_API_KEY",
        hide_env_values = true
    )]
    pub target_api_key: Option<String>,
    /// Token sent as `Authorization: Bearer TOKEN` (an access, service
    /// account or JWT token).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ESARK_TARGET_BEARER_TOKEN",
        hide_env_values = true
    )]
    pub target_bearer_token: Option<String>,
    /// PEM client certificate (chain) for mutual TLS; needs --target-client-key.
    #[arg(long, value_name = "PATH", requires = "target_client_key")]
    pub target_client_cert: Option<PathBuf>,
    /// PEM private key of --target-client-cert (PKCS#8, RSA or EC).
    #[arg(long, value_name = "PATH", requires = "target_client_cert")]
    pub target_client_key: Option<PathBuf>,
    /// Sign requests with AWS SigV4 (Amazon OpenSearch Service or
    /// Serverless); credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
    /// (AWS_SESSION_TOKEN) or the AWS_PROFILE profile of ~/.aws/credentials
    /// and ~/.aws/config.
    #[arg(long)]
    pub target_aws_sigv4: bool,
    /// AWS region to sign for (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region).
    #[arg(long, value_name = "REGION", requires = "target_aws_sigv4")]
    pub target_aws_region: Option<String>,
    /// AWS service to sign for: es (OpenSearch Service domains) or aoss (OpenSearch Serverless).
    #[arg(
        long,
        value_name = "SERVICE",
        default_value = "es",
        requires = "target_aws_sigv4"
    )]
    pub target_aws_service: AwsService,
}

/// TLS and timeout settings, shared by every cluster of a command.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// PEM file of a CA certificate to trust.
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify TLS certificates.
    #[arg(long)]
    pub insecure: bool,
    /// Timeout of one request, in seconds (at least 1).
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

impl SourceArgs {
    pub fn resolve(&self, conn: &ConnectionArgs) -> Result<ClusterConfig, CliError> {
        resolve(
            Side {
                url: &self.source,
                user: self.source_user.as_deref(),
                password_file: self.source_password_file.as_deref(),
                password_env: "ESARK_SOURCE_PASSWORD",
                side: "source",
                api_key: self.source_api_key.as_deref(),
                bearer: self.source_bearer_token.as_deref(),
                bearer_flag: "--source-bearer-token (ESARK_SOURCE_BEARER_TOKEN)",
                aws: self.source_aws_sigv4.then(|| Aws {
                    flag: "--source-aws-sigv4",
                    region: self.source_aws_region.clone(),
                    service: self.source_aws_service,
                }),
                client_cert: self.source_client_cert.as_deref(),
                client_key: self.source_client_key.as_deref(),
            },
            conn,
        )
    }
}

impl TargetArgs {
    pub fn resolve(&self, conn: &ConnectionArgs) -> Result<ClusterConfig, CliError> {
        resolve(
            Side {
                url: &self.target,
                user: self.target_user.as_deref(),
                password_file: self.target_password_file.as_deref(),
                password_env: "ESARK_TARGET_PASSWORD",
                side: "target",
                api_key: self.target_api_key.as_deref(),
                bearer: self.target_bearer_token.as_deref(),
                bearer_flag: "--target-bearer-token (ESARK_TARGET_BEARER_TOKEN)",
                aws: self.target_aws_sigv4.then(|| Aws {
                    flag: "--target-aws-sigv4",
                    region: self.target_aws_region.clone(),
                    service: self.target_aws_service,
                }),
                client_cert: self.target_client_cert.as_deref(),
                client_key: self.target_client_key.as_deref(),
            },
            conn,
        )
    }
}

/// The SigV4 flags of one side, when `--…-aws-sigv4` is given.
struct Aws {
    flag: &'static str,
    region: Option<String>,
    service: AwsService,
}

/// The connection flags of one side (`--source…` or `--target…`).
struct Side<'a> {
    url: &'a str,
    user: Option<&'a str>,
    password_file: Option<&'a Path>,
    password_env: &'a str,
    /// `source` or `target`, for messages naming flags.
    side: &'static str,
    api_key: Option<&'a str>,
    bearer: Option<&'a str>,
    /// How the bearer token was given, for messages.
    bearer_flag: &'static str,
    aws: Option<Aws>,
    client_cert: Option<&'a Path>,
    client_key: Option<&'a Path>,
}

/// Resolves connection flags. Precedence for the password: URL, then the
/// password file, then the environment variable. A bearer token or SigV4
/// together with other credentials is a usage error; a client certificate
/// goes with any of them.
fn resolve(side: Side<'_>, conn: &ConnectionArgs) -> Result<ClusterConfig, CliError> {
    let (url, url_auth) = ClusterConfig::from_url(side.url).map_err(CliError::usage)?;
    let api_key = side.api_key.filter(|k| !k.is_empty());
    let bearer = side.bearer.map(str::trim).filter(|t| !t.is_empty());
    // The credentials other than SigV4 and a bearer token, for the checks.
    let other = if api_key.is_some() {
        Some("an API key")
    } else if side.user.is_some() || side.password_file.is_some() {
        Some("a user or password")
    } else if !matches!(url_auth, Auth::None) {
        Some("credentials in the URL")
    } else {
        None
    };
    // An API key replaces basic credentials: given both, which one was
    // meant is a guess, so neither is sent.
    if api_key.is_some() {
        let basic = if !matches!(url_auth, Auth::None) {
            Some("credentials in the URL")
        } else if side.user.is_some() || side.password_file.is_some() {
            Some("a user or password")
        } else {
            None
        };
        if let Some(basic) = basic {
            return Err(CliError::usage(anyhow::anyhow!(
                "--{}-api-key cannot be combined with {basic}: give one kind of credentials per cluster",
                side.side
            )));
        }
    }
    if let Some(aws) = &side.aws {
        if let Some(other) = other.or(bearer.map(|_| "a bearer token")) {
            return Err(CliError::usage(anyhow::anyhow!(
                "{} cannot be combined with {other}: AWS SigV4 signs with AWS credentials only",
                aws.flag
            )));
        }
    }
    if let Some(token) = bearer {
        if let Some(other) = other {
            return Err(CliError::usage(anyhow::anyhow!(
                "{} cannot be combined with {other}: give one kind of credentials per cluster",
                side.bearer_flag
            )));
        }
        // Never echo the token: say what is wrong with it, not what it is.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CliError::usage(anyhow::anyhow!(
                "{}: the token must be printable ASCII without spaces",
                side.bearer_flag
            )));
        }
    }
    let file_password = match side.password_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map(|s| s.lines().next().unwrap_or("").to_string())
                .map_err(|e| {
                    CliError::usage(anyhow::anyhow!(
                        "cannot read password file {}: {e}",
                        path.display()
                    ))
                })?,
        ),
        None => None,
    };
    let env_password = std::env::var(side.password_env).ok();
    let auth = match (side.aws, bearer) {
        (Some(aws), _) => Auth::AwsSigV4 {
            region: aws.region,
            service: aws.service,
        },
        (None, Some(token)) => Auth::Bearer(token.to_string()),
        (None, None) => match (api_key, url_auth, side.user) {
            (Some(key), _, _) => Auth::ApiKey(key.to_string()),
            (
                _,
                Auth::Basic {
                    user: url_user,
                    password,
                },
                flag_user,
            ) => Auth::Basic {
                user: flag_user.map(str::to_string).unwrap_or(url_user),
                password: if password.is_empty() {
                    file_password.or(env_password).unwrap_or_default()
                } else {
                    password
                },
            },
            (_, _, Some(user)) => Auth::Basic {
                user: user.to_string(),
                // Said before connecting: a 401 would not tell why.
                password: file_password.or(env_password).ok_or_else(|| {
                    CliError::usage(anyhow::anyhow!(
                        "--{0}-user {user:?} has no password: give it with --{0}-password-file or {1}, or in the URL",
                        side.side,
                        side.password_env
                    ))
                })?,
            },
            _ => Auth::None,
        },
    };
    let ca_cert = match conn.ca_cert.as_deref() {
        Some(path) => Some((
            path.display().to_string(),
            std::fs::read(path).map_err(|e| {
                CliError::usage(anyhow::anyhow!(
                    "cannot read CA certificate {}: {e}",
                    path.display()
                ))
            })?,
        )),
        None => None,
    };
    // clap makes each of the pair require the other; checked again here so
    // that a config built another way cannot drop half of it silently.
    let client_cert = match (side.client_cert, side.client_key) {
        (Some(cert), Some(key)) => Some(ClientCert::load(cert, key).map_err(CliError::usage)?),
        (None, None) => None,
        _ => {
            return Err(CliError::usage(anyhow::anyhow!(
                "a client certificate needs both --…-client-cert and --…-client-key"
            )))
        }
    };
    Ok(ClusterConfig {
        url,
        auth,
        ca_cert,
        client_cert,
        insecure: conn.insecure,
        timeout: Duration::from_secs(conn.timeout.max(1)),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        conn: ConnectionArgs,
    }

    fn resolve_args(args: &[&str]) -> Result<ClusterConfig, CliError> {
        let cmd =
            Cmd::try_parse_from(std::iter::once("esark").chain(args.iter().copied())).unwrap();
        cmd.source.resolve(&cmd.conn)
    }

    #[test]
    fn a_bearer_token_resolves_and_debug_hides_it() {
        let config = resolve_args(&[
            "--source",
            "http://h:9200",
            "--source-bearer-token",
            "tok-s3cret",
        ])
        .unwrap();
        assert!(matches!(&config.auth, Auth::Bearer(t) if t == "tok-s3cret"));
        let debug = format!("{config:?}");
        assert!(debug.contains("Bearer(***)"), "{debug}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn a_bearer_token_with_basic_credentials_is_a_usage_error() {
        let e = resolve_args(&[
            "--source",
            "http://u:p4ss@h:9200",
            "--source-bearer-token",
            "tok-s3cret",
        ])
        .unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.line().contains("credentials in the URL"), "{}", e.line());
        assert!(!e.line().contains("s3cret") && !e.line().contains("p4ss"));
    }
}
