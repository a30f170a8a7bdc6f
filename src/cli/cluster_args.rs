//! Connection flags of a cluster (`--source…`, `--target…` mirroring them,
//! and the shared TLS flags) and their resolution into a [`ClusterConfig`].
//!
//! Authentication is one of: none, basic (user in the URL or
//! `--…-user`), an API key, or AWS SigV4 (`--…-aws-sigv4`, for Amazon
//! OpenSearch Service; credentials and region from the AWS chain, read when
//! connecting). SigV4 together with a user or API key is a usage error.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::CliError;
use crate::cluster::sigv4::AwsService;
use crate::cluster::{Auth, ClusterConfig};

/// How to reach and authenticate to the source cluster.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Source cluster URL; user and password may be given in it
    /// (http://user:pass@host:9200).
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
    /// Target cluster URL; user and password may be given in it.
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
    /// Timeout of one request, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,
}

impl SourceArgs {
    pub fn resolve(&self, conn: &ConnectionArgs) -> Result<ClusterConfig, CliError> {
        resolve(
            &self.source,
            self.source_user.as_deref(),
            self.source_password_file.as_deref(),
            "ESARK_SOURCE_PASSWORD",
            self.source_api_key.as_deref(),
            self.source_aws_sigv4.then(|| Aws {
                flag: "--source-aws-sigv4",
                region: self.source_aws_region.clone(),
                service: self.source_aws_service,
            }),
            conn,
        )
    }
}

impl TargetArgs {
    pub fn resolve(&self, conn: &ConnectionArgs) -> Result<ClusterConfig, CliError> {
        resolve(
            &self.target,
            self.target_user.as_deref(),
            self.target_password_file.as_deref(),
            "ESARK_TARGET_PASSWORD",
            self.target_api_key.as_deref(),
            self.target_aws_sigv4.then(|| Aws {
                flag: "--target-aws-sigv4",
                region: self.target_aws_region.clone(),
                service: self.target_aws_service,
            }),
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

/// Resolves connection flags. Precedence for the password: URL, then the
/// password file, then the environment variable.
#[allow(clippy::too_many_arguments)]
fn resolve(
    url: &str,
    user: Option<&str>,
    password_file: Option<&std::path::Path>,
    password_env: &str,
    api_key: Option<&str>,
    aws: Option<Aws>,
    conn: &ConnectionArgs,
) -> Result<ClusterConfig, CliError> {
    let (url, url_auth) = ClusterConfig::from_url(url).map_err(CliError::usage)?;
    if let Some(aws) = &aws {
        let other = if api_key.is_some_and(|k| !k.is_empty()) {
            Some("an API key")
        } else if user.is_some() || password_file.is_some() {
            Some("a user or password")
        } else if !matches!(url_auth, Auth::None) {
            Some("credentials in the URL")
        } else {
            None
        };
        if let Some(other) = other {
            return Err(CliError::usage(anyhow::anyhow!(
                "{} cannot be combined with {other}: AWS SigV4 signs with AWS credentials only",
                aws.flag
            )));
        }
    }
    let file_password = match password_file {
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
    let env_password = std::env::var(password_env).ok();
    let auth = match aws {
        Some(aws) => Auth::AwsSigV4 {
            region: aws.region,
            service: aws.service,
        },
        None => match (api_key, url_auth, user) {
            (Some(key), _, _) if !key.is_empty() => Auth::ApiKey(key.to_string()),
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
                password: file_password.or(env_password).unwrap_or_default(),
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
    Ok(ClusterConfig {
        url,
        auth,
        ca_cert,
        insecure: conn.insecure,
        timeout: Duration::from_secs(conn.timeout.max(1)),
    })
}
