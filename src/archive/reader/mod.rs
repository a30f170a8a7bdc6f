//! Reading an archive: the manifest's version field first, then the reader
//! for that version.

pub mod v1;

use std::path::Path;

use serde::Deserialize;

use super::manifest::Manifest;
use super::{ArchiveError, Version, FORMAT_NAME, MANIFEST_FILE};

/// The two fields read before anything else.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    format_version: Option<serde_json::Value>,
}

/// An opened archive of any supported version, as the current model.
#[derive(Debug)]
pub enum Archive {
    V1(v1::V1Reader),
}

impl Archive {
    pub fn manifest(&self) -> &Manifest {
        match self {
            Archive::V1(r) => r.manifest(),
        }
    }

    pub fn version(&self) -> Version {
        match self {
            Archive::V1(_) => Version::V1,
        }
    }

    pub fn root(&self) -> &Path {
        match self {
            Archive::V1(r) => r.root(),
        }
    }
}

/// Opens the archive at `root`: checks that it is a folder with a manifest
/// of a known format version.
pub async fn open(root: &Path) -> Result<Archive, ArchiveError> {
    match tokio::fs::metadata(root).await {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(ArchiveError::NotADirectory(root.into())),
        Err(e) => return Err(ArchiveError::io(root, e)),
    }
    let path = root.join(MANIFEST_FILE);
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ArchiveError::MissingManifest(root.into()))
        }
        Err(e) => return Err(ArchiveError::io(&path, e)),
    };
    let bad = |reason: String| ArchiveError::BadManifest {
        path: path.clone(),
        reason,
    };
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if header.format.as_deref() != Some(FORMAT_NAME) {
        return Err(bad(format!("\"format\" is not {FORMAT_NAME:?}")));
    }
    let version = header
        .format_version
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("no numeric \"format_version\"".into()))?;
    let version = Version::try_from(u32::try_from(version).unwrap_or(u32::MAX))?;
    match version {
        Version::V1 => Ok(Archive::V1(v1::V1Reader::open(root, &bytes).map_err(
            |reason| ArchiveError::BadManifest {
                path: path.clone(),
                reason,
            },
        )?)),
    }
}
