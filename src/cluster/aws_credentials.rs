//! Where the AWS credentials and region for SigV4 signing
//! ([`super::sigv4`]) come from: the first two links of the standard AWS
//! credential chain, read as the AWS CLI and SDKs read them.
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
//! The profile files are parsed by `aws-config` (profile syntax, `[profile
//! x]` sections of the config file, precedence of the credentials file),
//! fed the files' contents as read here: every variable comes from an
//! [`AwsEnv`], a snapshot that tests build from a map instead of the
//! process environment.
//!
//! Not supported: the links that fetch credentials over the network
//! (EC2 instance metadata, ECS container credentials, web identity, SSO,
//! `role_arn` assume-role). They need `aws-config`'s own HTTP client, a
//! hyper + rustls (aws-lc) stack next to the one `reqwest` already brings;
//! `aws-config` gets [`NoNetwork`] instead, so such a profile fails with a
//! clear error and no request leaves the machine.
//!
//! [`CredentialCache`] keeps the credentials between requests and reads
//! the chain again before they expire (or every few minutes when they
//! carry no expiry), so a dump that runs for hours keeps valid
//! credentials when the profile files are rewritten by a helper.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use aws_config::meta::region::ProvideRegion;
use aws_config::profile::{ProfileFileCredentialsProvider, ProfileFileRegionProvider};
use aws_config::provider_config::ProviderConfig;
use aws_config::Region;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

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
    fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn profile_name(&self) -> &str {
        self.get("AWS_PROFILE").unwrap_or("default")
    }

    /// `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`, else the file in
    /// `~/.aws/`; a leading `~/` is the home folder.
    fn profile_path(&self, kind: EnvConfigFileKind) -> Option<PathBuf> {
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

/// The profile files as read now: path and contents (`None`: no such file).
struct ProfileFiles {
    name: String,
    files: Vec<(EnvConfigFileKind, PathBuf, Option<String>)>,
}

impl ProfileFiles {
    fn read(env: &AwsEnv) -> Result<ProfileFiles, AwsError> {
        let mut files = Vec::new();
        // Config first: the credentials file wins where both set a key.
        for kind in [EnvConfigFileKind::Config, EnvConfigFileKind::Credentials] {
            let Some(path) = env.profile_path(kind) else {
                continue;
            };
            let contents = match std::fs::read_to_string(&path) {
                Ok(text) => Some(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(AwsError::File {
                        path,
                        reason: e.to_string(),
                    })
                }
            };
            files.push((kind, path, contents));
        }
        Ok(ProfileFiles {
            name: env.profile_name().to_string(),
            files,
        })
    }

    /// What `aws-config` parses, or `None` when no file exists.
    fn config_files(&self) -> Option<EnvConfigFiles> {
        let mut builder = EnvConfigFiles::builder();
        let mut any = false;
        for (kind, _, contents) in &self.files {
            if let Some(text) = contents {
                builder = builder.with_contents(*kind, text.clone());
                any = true;
            }
        }
        any.then(|| builder.build())
    }

    /// `profile "x" (~/.aws/config, ~/.aws/credentials: no such file)`.
    fn describe(&self) -> String {
        let files: Vec<String> = self
            .files
            .iter()
            .map(|(_, path, contents)| match contents {
                Some(_) => path.display().to_string(),
                None => format!("{}: no such file", path.display()),
            })
            .collect();
        format!("profile {:?} ({})", self.name, files.join(", "))
    }
}

/// What `aws-config` gets as its HTTP client: it refuses every request, so
/// that a profile that would fetch credentials over the network fails
/// instead of panicking for want of a client (see the module doc).
#[derive(Debug)]
pub struct NoNetwork;

const NO_NETWORK: &str = "esark fetches no AWS credentials over the network";

impl HttpConnector for NoNetwork {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Err(ConnectorError::other(NO_NETWORK.into(), None)))
    }
}

impl HttpClient for NoNetwork {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(NoNetwork)
    }
}

fn provider_config(region: Option<&str>) -> ProviderConfig {
    ProviderConfig::without_region()
        .with_region(region.map(|r| Region::new(r.to_string())))
        .with_http_client(NoNetwork)
}

/// Reads the chain once: environment, then the profile. `region` is the
/// signing region, given to `aws-config` for the profile kinds that would
/// need one.
pub async fn resolve_credentials(
    env: &AwsEnv,
    region: Option<&str>,
) -> Result<Credentials, AwsError> {
    if let (Some(id), Some(secret)) = (
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(Credentials::new(
            id,
            secret,
            env.get("AWS_SESSION_TOKEN").map(str::to_string),
            None,
            "environment",
        ));
    }
    let env_part = match env.get("AWS_ACCESS_KEY_ID") {
        Some(_) => "environment (AWS_ACCESS_KEY_ID set, AWS_SECRET_ACCESS_KEY not)",
        None => "environment (AWS_ACCESS_KEY_ID not set)",
    };
    let profile = ProfileFiles::read(env)?;
    let not_found = |detail: Option<String>| AwsError::NoCredentials {
        tried: match detail {
            Some(d) => format!("{env_part}, {}: {d}", profile.describe()),
            None => format!("{env_part}, {}", profile.describe()),
        },
    };
    let Some(files) = profile.config_files() else {
        return Err(not_found(None));
    };
    let provider = ProfileFileCredentialsProvider::builder()
        .configure(&provider_config(region))
        .profile_files(files)
        .profile_name(&profile.name)
        .build();
    match provider.provide_credentials().await {
        Ok(credentials) => Ok(credentials),
        Err(e @ CredentialsError::CredentialsNotLoaded(_)) => {
            let detail = super::root_cause(&e);
            Err(not_found((!detail.is_empty()).then_some(detail)))
        }
        Err(e) => Err(AwsError::Profile {
            profile: profile.name.clone(),
            reason: explain(&super::root_cause(&e), &profile.name),
        }),
    }
}

/// The region of the chain: `AWS_REGION`, `AWS_DEFAULT_REGION`, then the
/// profile's `region`.
pub async fn resolve_region(env: &AwsEnv) -> Result<Option<String>, AwsError> {
    if let Some(region) = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
    {
        return Ok(Some(region.to_string()));
    }
    let profile = ProfileFiles::read(env)?;
    let Some(files) = profile.config_files() else {
        return Ok(None);
    };
    let provider = ProfileFileRegionProvider::builder()
        .configure(&provider_config(None))
        .profile_files(files)
        .profile_name(&profile.name)
        .build();
    Ok(provider.region().await.map(|r| r.as_ref().to_string()))
}

/// The profile name [`AwsError::NoRegion`] mentions.
pub fn profile_name(env: &AwsEnv) -> String {
    env.profile_name().to_string()
}

/// Turns `aws-config`'s messages about unsupported profile kinds into
/// advice a user can follow.
fn explain(reason: &str, profile: &str) -> String {
    let export = format!(
        "export temporary credentials with `aws configure export-credentials --profile {profile} --format env` and run esark with them"
    );
    if reason.contains("cargo feature") {
        format!("the profile uses AWS SSO / IAM Identity Center, which esark does not support; {export}")
    } else if reason.contains(NO_NETWORK) || reason.contains("Missing Region") {
        format!("the profile needs credentials fetched over the network (assume role, web identity or instance metadata), which esark does not do; {export}")
    } else {
        reason.to_string()
    }
}

/// Credentials kept between requests, read again from the chain before
/// they expire.
///
/// Many requests sign at once: the common path takes the read lock only;
/// one task at a time (the `refresh` mutex) reads the chain again, and the
/// others wait for its result instead of reading it too.
pub struct CredentialCache {
    env: AwsEnv,
    region: String,
    current: RwLock<Option<Fetched>>,
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Fetched {
    credentials: Credentials,
    /// When they were read.
    at: SystemTime,
    /// After a failed re-read: the old credentials are used without trying
    /// again until then.
    hold_until: Option<SystemTime>,
}

/// Credentials are read again this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Credentials without an expiry (static keys) are read again this often,
/// in case a helper rewrote the profile files.
const REREAD_AFTER: Duration = Duration::from_secs(5 * 60);
/// After a failed re-read, how long the old credentials are used before
/// trying again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

impl Fetched {
    fn is_fresh(&self, now: SystemTime) -> bool {
        if self.hold_until.is_some_and(|until| now < until) {
            return true;
        }
        match self.credentials.expiry() {
            Some(expiry) => now + EXPIRY_MARGIN < expiry,
            // A clock that went back counts as fresh.
            None => now
                .duration_since(self.at)
                .map_or(true, |age| age < REREAD_AFTER),
        }
    }

    fn is_valid(&self, now: SystemTime) -> bool {
        self.credentials.expiry().is_none_or(|expiry| now < expiry)
    }
}

impl fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialCache")
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl CredentialCache {
    /// Reads the chain once, so that missing credentials are an error
    /// before the first request.
    pub async fn load(env: AwsEnv, region: &str) -> Result<CredentialCache, AwsError> {
        let credentials = resolve_credentials(&env, Some(region)).await?;
        Ok(CredentialCache {
            env,
            region: region.to_string(),
            current: RwLock::new(Some(Fetched {
                credentials,
                at: SystemTime::now(),
                hold_until: None,
            })),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    fn cached(&self) -> Option<Fetched> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn store(&self, fetched: Fetched) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(fetched);
    }

    /// Credentials valid for a while yet.
    pub async fn get(&self) -> Result<Credentials, AwsError> {
        if let Some(f) = self.cached().filter(|f| f.is_fresh(SystemTime::now())) {
            return Ok(f.credentials);
        }
        let _one_at_a_time = self.refresh.lock().await;
        let now = SystemTime::now();
        let old = self.cached();
        if let Some(f) = old.as_ref().filter(|f| f.is_fresh(now)) {
            return Ok(f.credentials.clone());
        }
        match resolve_credentials(&self.env, Some(&self.region)).await {
            Ok(credentials) => {
                self.store(Fetched {
                    credentials: credentials.clone(),
                    at: now,
                    hold_until: None,
                });
                Ok(credentials)
            }
            // A failed re-read (a file being rewritten, a helper that failed
            // once) keeps credentials that have not expired yet.
            Err(e) => match old.filter(|f| f.is_valid(now)) {
                Some(mut f) => {
                    tracing::warn!(
                        "reading AWS credentials again failed ({e}); using the previous ones"
                    );
                    f.hold_until = Some(now + RETRY_AFTER);
                    self.store(f.clone());
                    Ok(f.credentials)
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A home folder with the given credentials and config files.
    fn home(credentials: Option<&str>, config: Option<&str>) -> tempfile::TempDir {
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

    fn env_of(home: &Path, vars: &[(&str, &str)]) -> AwsEnv {
        let mut pairs = vec![("HOME".to_string(), home.display().to_string())];
        pairs.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        AwsEnv::from_pairs(pairs)
    }

    const CREDENTIALS: &str = "\
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

    const CONFIG: &str = "\
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

    #[tokio::test]
    async fn environment_comes_before_the_profile() {
        let home = home(Some(CREDENTIALS), Some(CONFIG));
        let env = env_of(
            home.path(),
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret"),
                ("AWS_SESSION_TOKEN", "env-token"),
                ("AWS_REGION", "us-west-2"),
            ],
        );
        let c = resolve_credentials(&env, None).await.unwrap();
        assert_eq!(c.access_key_id(), "AKIDENV");
        assert_eq!(c.secret_access_key(), "env-secret");
        assert_eq!(c.session_token(), Some("env-token"));
        assert_eq!(
            resolve_region(&env).await.unwrap().as_deref(),
            Some("us-west-2")
        );
        let env = env_with(&env, "AWS_REGION", "");
        let env = env_with(&env, "AWS_DEFAULT_REGION", "ca-central-1");
        assert_eq!(
            resolve_region(&env).await.unwrap().as_deref(),
            Some("ca-central-1")
        );
    }

    fn env_with(env: &AwsEnv, key: &str, value: &str) -> AwsEnv {
        let mut env = env.clone();
        env.vars.insert(key.to_string(), value.to_string());
        env
    }

    #[tokio::test]
    async fn default_profile_from_the_home_folder() {
        let home = home(Some(CREDENTIALS), Some(CONFIG));
        // Half the keys in the environment: the chain goes on to the profile.
        let env = env_of(home.path(), &[("AWS_ACCESS_KEY_ID", "AKIDENV")]);
        let c = resolve_credentials(&env, None).await.unwrap();
        assert_eq!(c.access_key_id(), "AKIDDEFAULT");
        assert_eq!(c.secret_access_key(), "default-secret");
        assert_eq!(c.session_token(), None);
        assert_eq!(
            resolve_region(&env).await.unwrap().as_deref(),
            Some("eu-west-3")
        );
    }

    #[tokio::test]
    async fn named_profile_with_session_token_and_its_region() {
        let home = home(Some(CREDENTIALS), Some(CONFIG));
        let env = env_of(home.path(), &[("AWS_PROFILE", "work")]);
        let c = resolve_credentials(&env, None).await.unwrap();
        assert_eq!(c.access_key_id(), "AKIDWORK");
        assert_eq!(c.session_token(), Some("work-token"));
        assert_eq!(
            resolve_region(&env).await.unwrap().as_deref(),
            Some("ap-southeast-2")
        );
    }

    #[tokio::test]
    async fn files_named_by_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("creds.ini");
        let config = dir.path().join("conf.ini");
        std::fs::write(
            &credentials,
            "[ci]\naws_access_key_id = AKIDCI\naws_secret_access_key = ci-secret\n",
        )
        .unwrap();
        std::fs::write(&config, "[profile ci]\nregion = sa-east-1\n").unwrap();
        // The home folder's files must not be read.
        let home = home(Some(CREDENTIALS), Some(CONFIG));
        let env = env_of(
            home.path(),
            &[
                ("AWS_PROFILE", "ci"),
                ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
                ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ],
        );
        let c = resolve_credentials(&env, None).await.unwrap();
        assert_eq!(c.access_key_id(), "AKIDCI");
        assert_eq!(
            resolve_region(&env).await.unwrap().as_deref(),
            Some("sa-east-1")
        );
    }

    #[tokio::test]
    async fn nothing_found_names_what_was_tried() {
        let home = home(None, None);
        let env = env_of(home.path(), &[]);
        let e = resolve_credentials(&env, None).await.unwrap_err();
        let text = e.to_string();
        eprintln!("{text}");
        assert!(matches!(e, AwsError::NoCredentials { .. }), "{text}");
        assert!(text.starts_with("no AWS credentials found"), "{text}");
        assert!(text.contains("AWS_ACCESS_KEY_ID not set"), "{text}");
        assert!(text.contains("profile \"default\""), "{text}");
        assert!(text.contains(".aws/credentials: no such file"), "{text}");
        assert_eq!(resolve_region(&env).await.unwrap(), None);

        // A profile that is not in the files.
        let home = home_with_default();
        let env = env_of(home.path(), &[("AWS_PROFILE", "nope")]);
        let text = resolve_credentials(&env, None)
            .await
            .unwrap_err()
            .to_string();
        eprintln!("{text}");
        assert!(text.starts_with("no AWS credentials found"), "{text}");
        assert!(text.contains("\"nope\""), "{text}");
    }

    fn home_with_default() -> tempfile::TempDir {
        home(Some(CREDENTIALS), Some(CONFIG))
    }

    #[tokio::test]
    async fn unsupported_or_broken_profiles_are_clear_errors_without_secrets() {
        let home = home_with_default();
        for (profile, expected) in [
            ("half", "aws_secret_access_key"),
            ("sso", "SSO"),
            ("role", "over the network"),
        ] {
            let env = env_of(home.path(), &[("AWS_PROFILE", profile)]);
            let e = resolve_credentials(&env, Some("us-east-1"))
                .await
                .unwrap_err();
            let text = e.to_string();
            eprintln!("{profile}: {text}");
            assert!(matches!(e, AwsError::Profile { .. }), "{profile}: {text}");
            assert!(text.contains(expected), "{profile}: {text}");
            assert!(!text.contains("default-secret"), "{profile}: {text}");
            assert!(!text.contains('\n'), "{profile}: {text}");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn credential_process_gives_expiring_credentials() {
        // Run through `sh` rather than executed: a script written just now
        // may still be open in a child another test forked ("text file busy").
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("helper.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKIDPROC\", \
             \"SecretAccessKey\": \"proc-secret\", \"SessionToken\": \"proc-token\", \
             \"Expiration\": \"2099-01-01T00:00:00Z\"}'\n",
        )
        .unwrap();
        let config = format!(
            "[profile helper]\ncredential_process = sh {}\n",
            script.display()
        );
        let home = home(None, Some(&config));
        let env = env_of(home.path(), &[("AWS_PROFILE", "helper")]);
        let c = resolve_credentials(&env, None).await.unwrap();
        assert_eq!(c.access_key_id(), "AKIDPROC");
        assert_eq!(c.session_token(), Some("proc-token"));
        // An expiry: the cache reads the chain again 5 minutes before it.
        assert_eq!(
            c.expiry(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(4_070_908_800))
        );
    }

    #[test]
    fn debug_shows_no_values() {
        let env = AwsEnv::from_pairs([("AWS_SECRET_ACCESS_KEY", "s3cr3t")]);
        let text = format!("{env:?}");
        assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn freshness() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let fetched = |expiry: Option<SystemTime>| Fetched {
            credentials: Credentials::new("AKID", "secret", None, expiry, "test"),
            at: t0,
            hold_until: None,
        };
        // Static keys: read again after a few minutes.
        let f = fetched(None);
        assert!(f.is_fresh(t0 + minutes(4)));
        assert!(!f.is_fresh(t0 + minutes(6)));
        assert!(f.is_fresh(t0 - minutes(1)), "clock went back");
        // Temporary credentials: read again before they expire, whatever their age.
        let f = fetched(Some(t0 + minutes(60)));
        assert!(f.is_fresh(t0 + minutes(54)));
        assert!(!f.is_fresh(t0 + minutes(56)));
        assert!(f.is_valid(t0 + minutes(59)));
        assert!(!f.is_valid(t0 + minutes(60)));
        // After a failed re-read, the old ones are used for a while.
        let mut f = fetched(Some(t0 + minutes(60)));
        f.hold_until = Some(t0 + minutes(57));
        assert!(f.is_fresh(t0 + minutes(56)));
        assert!(!f.is_fresh(t0 + minutes(58)));
    }

    #[tokio::test]
    async fn cache_reads_rewritten_files_again_and_keeps_valid_ones_on_failure() {
        let home = home(
            Some("[default]\naws_access_key_id = AKIDOLD\naws_secret_access_key = old\n"),
            None,
        );
        let env = env_of(home.path(), &[]);
        let cache = CredentialCache::load(env, "us-east-1").await.unwrap();
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKIDOLD");
        std::fs::write(
            home.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIDNEW\naws_secret_access_key = new\n",
        )
        .unwrap();
        // Still fresh: not read again.
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKIDOLD");
        // Pretend they were read long ago.
        let mut f = cache.cached().unwrap();
        f.at -= REREAD_AFTER * 2;
        cache.store(f);
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKIDNEW");
        // The file is gone (a helper rewriting it): the previous keys stay.
        std::fs::remove_file(home.path().join(".aws/credentials")).unwrap();
        let mut f = cache.cached().unwrap();
        f.at -= REREAD_AFTER * 2;
        cache.store(f);
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKIDNEW");
        assert!(cache.cached().unwrap().hold_until.is_some());
    }
}
