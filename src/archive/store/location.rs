//! Where an archive is, as the command line names it: a [`Location`],
//! parsed in this one place for `dump --output`, `restore --input`,
//! `verify --input` and `inspect`.
//!
//! - a plain path, or `file:///PATH`: a local folder ([`LocalStore`]);
//! - `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX`, `az://CONTAINER/PREFIX`:
//!   object storage ([`super::object::ObjectArchiveStore`]).
//!
//! Any other `SCHEME://` is refused naming the scheme: written as a path it
//! would make a local folder `SCHEME:/…`, and a user would believe the
//! backup is somewhere it is not.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use super::object::{ObjectLocation, Service};
use super::{ArchiveStore, LocalStore, StoreError};

/// Where an archive is read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder of the local file system.
    Local(PathBuf),
    /// A prefix of a bucket.
    Object(ObjectLocation),
}

/// Why a location is refused (a usage error).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocationError {
    #[error("{location}: esark does not serve {scheme}:// (archives are folders, file://, s3://, gs:// or az://)")]
    UnsupportedScheme { location: String, scheme: String },
    #[error("{location}: {reason}")]
    Invalid { location: String, reason: String },
}

impl Location {
    /// Reads a location as the command line gives it. A path that is not
    /// UTF-8 is a local path.
    pub fn parse(raw: &OsStr) -> Result<Location, LocationError> {
        let Some(text) = raw.to_str() else {
            return Ok(Location::Local(PathBuf::from(raw)));
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(raw)));
        };
        let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !is_scheme {
            // `./a://b` is an odd folder name, not a URL.
            return Ok(Location::Local(PathBuf::from(raw)));
        }
        let invalid = |reason: &str| LocationError::Invalid {
            location: text.to_string(),
            reason: reason.to_string(),
        };
        let service = match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                // file:///abs/path or file://localhost/abs/path (RFC 8089).
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(invalid(
                        "a file:// URL names an absolute path: file:///PATH",
                    ));
                }
                let path = percent_encoding::percent_decode_str(path)
                    .decode_utf8()
                    .map_err(|_| invalid("not UTF-8 once decoded"))?;
                return Ok(Location::Local(PathBuf::from(path.as_ref())));
            }
            "s3" => Service::S3,
            "gs" => Service::Gcs,
            "az" => Service::Azure,
            _ => {
                return Err(LocationError::UnsupportedScheme {
                    location: text.to_string(),
                    scheme: scheme.to_string(),
                })
            }
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("no bucket: SCHEME://BUCKET/PREFIX"));
        }
        let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
        if parts.iter().any(|p| *p == "." || *p == "..") {
            return Err(invalid("`.` and `..` are not prefix components"));
        }
        Ok(Location::Object(ObjectLocation {
            service,
            bucket: bucket.to_string(),
            prefix: parts.join("/"),
        }))
    }

    /// The local folder, if it is one.
    pub fn as_local(&self) -> Option<&Path> {
        match self {
            Location::Local(path) => Some(path),
            Location::Object(_) => None,
        }
    }

    /// How messages and reports name it: the folder, or the URL.
    pub fn to_path(&self) -> PathBuf {
        match self {
            Location::Local(path) => path.clone(),
            Location::Object(object) => PathBuf::from(object.to_string()),
        }
    }

    /// The store that reads and writes it. Object storage reads its
    /// credentials here, so that missing ones fail before any work.
    pub async fn open(&self) -> Result<Arc<dyn ArchiveStore>, StoreError> {
        match self {
            Location::Local(path) => Ok(Arc::new(LocalStore::new(path.clone()))),
            Location::Object(object) => Ok(Arc::new(
                super::object::ObjectArchiveStore::open(object).await?,
            )),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Object(object) => write!(f, "{object}"),
        }
    }
}

/// A path given by a program (not parsed: it is a local folder whatever
/// its name).
impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Location {
        Location::Local(path)
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Location {
        Location::Local(path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Location, LocationError> {
        Location::parse(OsStr::new(s))
    }

    fn object(service: Service, bucket: &str, prefix: &str) -> Location {
        Location::Object(ObjectLocation {
            service,
            bucket: bucket.into(),
            prefix: prefix.into(),
        })
    }

    #[test]
    fn locations_parse_by_scheme() {
        let local = |p: &str| Ok(Location::Local(PathBuf::from(p)));
        let cases: &[(&str, Result<Location, LocationError>)] = &[
            ("backup", local("backup")),
            ("/var/b 1", local("/var/b 1")),
            ("./a://b", local("./a://b")),
            ("file:///var/b%201", local("/var/b 1")),
            ("file://localhost/var/b", local("/var/b")),
            ("s3://bars/b1", Ok(object(Service::S3, "bars", "b1"))),
            ("s3://bars/", Ok(object(Service::S3, "bars", ""))),
            ("s3://bars//x/y/", Ok(object(Service::S3, "bars", "x/y"))),
            ("gs://g/p", Ok(object(Service::Gcs, "g", "p"))),
            ("az://c/p/q", Ok(object(Service::Azure, "c", "p/q"))),
        ];
        for (raw, expected) in cases {
            assert_eq!(&parse(raw), expected, "{raw}");
        }
    }

    #[test]
    fn unserved_schemes_and_bad_urls_are_refused() {
        for raw in ["ftp://bars/b1", "s3x://bars/b1", "https://h/b", "S4://x"] {
            let err = parse(raw).unwrap_err();
            assert!(
                matches!(err, LocationError::UnsupportedScheme { .. }),
                "{raw}: {err}"
            );
            let scheme = raw.split("://").next().unwrap();
            assert!(err.to_string().contains(&format!("{scheme}://")), "{err}");
        }
        for raw in ["s3://", "s3:///p", "gs://b/../x", "file://host/x"] {
            assert!(
                matches!(parse(raw), Err(LocationError::Invalid { .. })),
                "{raw}"
            );
        }
    }

    #[test]
    fn locations_display_as_given() {
        assert_eq!(parse("s3://bars//b1/").unwrap().to_string(), "s3://bars/b1");
        assert_eq!(
            parse("s3://bars").unwrap().to_path(),
            Path::new("s3://bars")
        );
    }
}
