//! AWS foundations shared by every AWS-facing part of esark (SigV4
//! signing of cluster requests today, S3 archives next): where the
//! credentials and region come from ([`credentials`]: the first two links
//! of the standard AWS credential chain, read as the AWS CLI and SDKs read
//! them), keeping them fresh for hours-long runs ([`cache`]), and Signature
//! Version 4 ([`sigv4`]).
//!
//! 1. The environment: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
//!    (and `AWS_SESSION_TOKEN` for temporary credentials).
//! 2. The shared profile files: profile `AWS_PROFILE` (else `default`) of
//!    `AWS_SHARED_CREDENTIALS_FILE` (else `~/.aws/credentials`) and
//!    `AWS_CONFIG_FILE` (else `~/.aws/config`): static keys, chains of
//!    `source_profile`s, `credential_process`.
//!
//! The region: the `--…-aws-region` flag, then `AWS_REGION`,
//! `AWS_DEFAULT_REGION`, the profile's `region`.
//!
//! Every variable comes from an [`AwsEnv`], a snapshot that tests build
//! from a map instead of the process environment.

pub mod cache;
pub mod credentials;
pub mod sigv4;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use aws_runtime::env_config::file::EnvConfigFileKind;

/// Why no credentials or region could be had. Messages never contain a
/// secret: they name variables, profiles and files.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("no AWS credentials found (tried: {tried})")]
    NoCredentials { tried: String },
    #[error("no AWS region: give --source-aws-region / --target-aws-region, or set AWS_REGION, or a region in profile {profile:?}")]
    NoRegion { profile: String },
    #[error("AWS profile {profile:?}: {reason}")]
    Profile { profile: String, reason: String },
    #[error("cannot read {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("cannot sign the request: {reason}")]
    Signing { reason: String },
}

/// The variables the chain reads, taken once (from the process, or from a
/// map in tests). `Debug` shows their names only.
#[derive(Clone, Default)]
pub struct AwsEnv {
    vars: BTreeMap<String, String>,
}

/// Every variable [`AwsEnv::from_process`] keeps.
const VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "HOME",
];

impl AwsEnv {
    pub fn from_process() -> AwsEnv {
        AwsEnv::from_pairs(
            VARS.iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))),
        )
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> AwsEnv {
        AwsEnv {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value; blank counts as unset, as in the AWS SDKs.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn profile_name(&self) -> &str {
        self.get("AWS_PROFILE").unwrap_or("default")
    }

    /// `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`, else the file in
    /// `~/.aws/`; a leading `~/` is the home folder.
    pub(crate) fn profile_path(&self, kind: EnvConfigFileKind) -> Option<PathBuf> {
        let (var, default) = match kind {
            EnvConfigFileKind::Config => ("AWS_CONFIG_FILE", "~/.aws/config"),
            EnvConfigFileKind::Credentials => ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        };
        let raw = self.get(var).unwrap_or(default);
        match raw.strip_prefix("~/") {
            Some(rest) => self.get("HOME").map(|home| Path::new(home).join(rest)),
            None => Some(PathBuf::from(raw)),
        }
    }
}

impl fmt::Debug for AwsEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsEnv")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Home folders with profile files, and environments pointing at them.
    use super::AwsEnv;
    use std::path::Path;

    /// A home folder with the given credentials and config files.
    pub(crate) fn home(credentials: Option<&str>, config: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        if let Some(text) = credentials {
            std::fs::write(dir.path().join(".aws/credentials"), text).unwrap();
        }
        if let Some(text) = config {
            std::fs::write(dir.path().join(".aws/config"), text).unwrap();
        }
        dir
    }

    pub(crate) fn env_of(home: &Path, vars: &[(&str, &str)]) -> AwsEnv {
        let mut pairs = vec![("HOME".to_string(), home.display().to_string())];
        pairs.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        AwsEnv::from_pairs(pairs)
    }

    pub(crate) const CREDENTIALS: &str = "\
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = default-secret

[work]
aws_access_key_id = AKIDWORK
aws_secret_access_key = work-secret
aws_session_token = work-token

[half]
aws_access_key_id = AKIDHALF
";

    pub(crate) const CONFIG: &str = "\
[default]
region = eu-west-3

[profile work]
region = ap-southeast-2

[profile sso]
sso_start_url = https://example.awsapps.com/start
sso_region = us-east-1
sso_account_id = 123456789012
sso_role_name = reader

[profile role]
role_arn = arn:aws:iam::123456789012:role/reader
source_profile = default
";
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn debug_shows_no_values() {
        let env = AwsEnv::from_pairs([("AWS_SECRET_ACCESS_KEY", "s3cr3t")]);
        let text = format!("{env:?}");
        assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
