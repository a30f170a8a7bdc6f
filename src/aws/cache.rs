//! [`CredentialCache`] keeps the credentials between requests and reads
//! the chain again before they expire (or every few minutes when they
//! carry no expiry), so a dump that runs for hours keeps valid
//! credentials when the profile files are rewritten by a helper.

use std::fmt;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

use super::credentials::resolve_credentials;
use super::{AwsEnv, AwsError};

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
    use crate::aws::test_support::*;
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
