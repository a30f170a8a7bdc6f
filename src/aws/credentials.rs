//! The credential chain: the environment, then the shared profile files.
//!
//! The profile files are parsed by `aws-config` (profile syntax, `[profile
//! x]` sections of the config file, precedence of the credentials file),
//! fed the files' contents as read here.
//!
//! Not supported: the links that fetch credentials over the network
//! (EC2 instance metadata, ECS container credentials, web identity, SSO,
//! `role_arn` assume-role). They need `aws-config`'s own HTTP client, a
//! hyper + rustls (aws-lc) stack next to the one `reqwest` already brings;
//! `aws-config` gets [`NoNetwork`] instead, so such a profile fails with a
//! clear error and no request leaves the machine.

use std::path::PathBuf;

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

use super::{AwsEnv, AwsError};
use crate::errors::root_cause;

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
            let detail = root_cause(&e);
            Err(not_found((!detail.is_empty()).then_some(detail)))
        }
        Err(e) => Err(AwsError::Profile {
            profile: profile.name.clone(),
            reason: explain(&root_cause(&e), &profile.name),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::test_support::*;
    use std::time::{Duration, SystemTime};
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
}
