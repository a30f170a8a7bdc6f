//! Who is calling, and what they may do. Clients send
//! `Authorization: Bearer TOKEN`; the config holds only each token's
//! sha256, compared in constant time. No token, or one the config does not
//! know, is 401; a known token whose role or clusters do not allow the
//! request is 403.
//!
//! Roles widen one another: `viewer` reads jobs and archives; `exporter`
//! adds export and verify jobs and archive downloads; `restorer` adds
//! import, verify and copy jobs and archive uploads; `admin` may do all of
//! that and control (cancel, resume) any job. Everyone else controls only
//! the jobs they created. A service with no tokens configured (it then
//! listens on loopback only, see [`super::config`]) treats every caller as
//! the admin `local`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Exporter,
    Restorer,
    Admin,
}

/// What a request does, for the role check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// List and read jobs, their progress, reports and rejected documents.
    ReadJobs,
    /// List archives and read their manifest summaries.
    ReadArchives,
    /// `GET /metrics`.
    ReadMetrics,
    SubmitExport,
    SubmitImport,
    SubmitVerify,
    SubmitCopy,
    DownloadArchive,
    UploadArchive,
}

impl Role {
    /// Whether this role may do `action`.
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Viewer => matches!(action, ReadJobs | ReadArchives | ReadMetrics),
            Role::Exporter => matches!(
                action,
                ReadJobs
                    | ReadArchives
                    | ReadMetrics
                    | SubmitExport
                    | SubmitVerify
                    | DownloadArchive
            ),
            Role::Restorer => matches!(
                action,
                ReadJobs
                    | ReadArchives
                    | ReadMetrics
                    | SubmitImport
                    | SubmitVerify
                    | SubmitCopy
                    | UploadArchive
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Exporter => "exporter",
            Role::Restorer => "restorer",
            Role::Admin => "admin",
        }
    }
}

/// The sha256 of a token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A digest is not a secret, but there is no reason to print it.
        f.write_str("TokenDigest(..)")
    }
}

impl TokenDigest {
    /// 64 hex digits, either case.
    pub fn from_hex(hex_text: &str) -> Option<TokenDigest> {
        let bytes = hex::decode(hex_text.trim()).ok()?;
        Some(TokenDigest(bytes.try_into().ok()?))
    }

    /// The digest of a presented token.
    pub fn of(token: &str) -> TokenDigest {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// 401: no token, a malformed header, or a token nobody configured.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the token is known, the request is not allowed to it.
    #[error("{0}")]
    Forbidden(String),
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name: a job's `created_by`.
    pub name: String,
    pub role: Role,
    /// The clusters this caller may use; `None`: all.
    pub clusters: Option<Vec<String>>,
}

impl Caller {
    /// Checks that the role allows `action` and that every cluster of
    /// `clusters` is one this caller may use.
    pub fn check(&self, action: Action, clusters: &[&str]) -> Result<(), AuthError> {
        if !self.role.allows(action) {
            return Err(AuthError::Forbidden(format!(
                "token {:?} (role {}) may not {}",
                self.name,
                self.role.as_str(),
                describe(action)
            )));
        }
        if let Some(allowed) = &self.clusters {
            if let Some(refused) = clusters.iter().find(|c| !allowed.iter().any(|a| a == *c)) {
                return Err(AuthError::Forbidden(format!(
                    "token {:?} may not use cluster {refused:?}",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// Whether this caller may cancel or resume a job created by `owner`:
    /// admins any job, others their own (and only with a role that can
    /// submit jobs at all).
    pub fn check_control(&self, owner: &str) -> Result<(), AuthError> {
        if self.role == Role::Admin {
            return Ok(());
        }
        if self.role == Role::Viewer {
            return Err(AuthError::Forbidden(format!(
                "token {:?} (role viewer) may not cancel or resume jobs",
                self.name
            )));
        }
        if self.name != owner {
            return Err(AuthError::Forbidden(format!(
                "token {:?} may cancel or resume only its own jobs (this one is {owner:?}'s)",
                self.name
            )));
        }
        Ok(())
    }
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::ReadJobs => "read jobs",
        Action::ReadArchives => "read archives",
        Action::ReadMetrics => "read metrics",
        Action::SubmitExport => "submit export jobs",
        Action::SubmitImport => "submit import jobs",
        Action::SubmitVerify => "submit verify jobs",
        Action::SubmitCopy => "submit copy jobs",
        Action::DownloadArchive => "download archives",
        Action::UploadArchive => "upload archives",
    }
}

/// An API token: who (`name`, recorded as a job's `created_by`), what it
/// may do, and on which clusters. Only the token's digest is known.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    pub digest: TokenDigest,
    /// `None`: every cluster.
    pub clusters: Option<Vec<String>>,
}

/// The configured tokens.
#[derive(Debug, Clone)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

impl Tokens {
    pub fn new(entries: Vec<TokenEntry>) -> Tokens {
        Tokens { entries }
    }

    /// Whether any token is configured (without, every caller is `local`).
    pub fn enabled(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The caller of a request with this `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        if !self.enabled() {
            return Ok(Caller {
                name: "local".into(),
                role: Role::Admin,
                clusters: None,
            });
        }
        let header = authorization.ok_or(AuthError::Unauthorized(
            "missing token: send Authorization: Bearer TOKEN",
        ))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Unauthorized(
                "the Authorization header must be `Bearer TOKEN`",
            ))?;
        let presented = TokenDigest::of(token);
        // Every entry is compared, in constant time, whichever matches: the
        // time taken says nothing about which token or how much of it.
        let mut found: Option<&TokenEntry> = None;
        for entry in &self.entries {
            if bool::from(entry.digest.0.ct_eq(&presented.0)) {
                found = Some(entry);
            }
        }
        let entry = found.ok_or(AuthError::Unauthorized("unknown token"))?;
        Ok(Caller {
            name: entry.name.clone(),
            role: entry.role,
            clusters: entry.clusters.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let entry = |name: &str, role, clusters: Option<Vec<&str>>| TokenEntry {
            name: name.into(),
            role,
            digest: TokenDigest::of(&format!("{name}-secret")),
            clusters: clusters.map(|c| c.into_iter().map(String::from).collect()),
        };
        Tokens::new(vec![
            entry("view", Role::Viewer, None),
            entry("ci", Role::Exporter, Some(vec!["prod"])),
            entry("ops", Role::Restorer, None),
            entry("boss", Role::Admin, None),
        ])
    }

    #[test]
    fn tokens_are_found_by_digest_and_refused_otherwise() {
        let t = tokens();
        assert_eq!(t.authenticate(Some("Bearer ci-secret")).unwrap().name, "ci");
        for header in [
            None,
            Some("Bearer nope"),
            Some("Basic Y2k6eA=="),
            Some("Bearer "),
        ] {
            assert!(
                matches!(t.authenticate(header), Err(AuthError::Unauthorized(_))),
                "{header:?}"
            );
        }
        let open = Tokens::new(vec![]);
        assert_eq!(open.authenticate(None).unwrap().role, Role::Admin);
    }

    #[test]
    fn roles_and_clusters() {
        let t = tokens();
        let caller = |n: &str| t.authenticate(Some(&format!("Bearer {n}-secret"))).unwrap();
        let ci = caller("ci");
        assert!(ci.check(Action::SubmitExport, &["prod"]).is_ok());
        assert!(ci.check(Action::SubmitExport, &["staging"]).is_err());
        assert!(ci.check(Action::SubmitImport, &["prod"]).is_err());
        assert!(ci.check(Action::DownloadArchive, &[]).is_ok());
        assert!(caller("view").check(Action::DownloadArchive, &[]).is_err());
        assert!(caller("ops").check(Action::UploadArchive, &[]).is_ok());
        assert!(caller("ops")
            .check(Action::SubmitExport, &["prod"])
            .is_err());
        assert!(caller("ops").check_control("ops").is_ok());
        assert!(caller("ops").check_control("ci").is_err());
        assert!(caller("view").check_control("view").is_err());
        assert!(caller("boss").check_control("ci").is_ok());
    }
}
