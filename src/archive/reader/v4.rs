//! Reader for archive format version 4: the layout of version 3 (see
//! [`super::v3`]), and a manifest that also lists the indices the dump
//! could not read, with why:
//!
//! ```text
//! "failed": [{"name": "logs-old", "reason": "GET /logs-old/_settings: 404 index_not_found_exception …"}]
//! ```
//!
//! A failed index has no entry in `indices` and none of its files is
//! listed (a folder it left behind is not part of the archive). An older
//! esark would ignore the list and take a partial archive for a whole one,
//! hence the new version: it refuses the archive instead.

use super::super::manifest::{Manifest, ManifestError};

/// Parses a version 4 manifest.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let manifest: Manifest = serde_json::from_slice(bytes)?;
    manifest.refuse_encryption(4)?;
    Ok(manifest)
}
