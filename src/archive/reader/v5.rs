//! Reader for archive format version 5: the layout and manifest of
//! version 4 (see [`super::v4`]), with files encrypted with age
//! ([`crate::archive::crypt`]). The manifest says how, and which files:
//!
//! ```text
//! "encryption": {"scheme": "age-x25519", "recipients": ["age1…"]},
//! "indices": [{… "files": [{"kind": "data", "path": "indices/logs/data-s000-00000.jsonl.zst",
//!                           "bytes": 1234, "sha256": "…", "encrypted": true, …}]}]
//! ```
//!
//! An encrypted file keeps its name (`.jsonl.zst`, `.json`): it is an age
//! file of what the name says, compressed before it was encrypted.
//! `bytes` and `sha256` are those of the stored, encrypted bytes, so that
//! `inspect` checks an archive without the key. The manifest itself is
//! never encrypted: index names, counts, checksums and options stay
//! readable. An older esark would read an age file as JSON or zstd and
//! fail on every file, hence the new version: it refuses the archive as
//! a whole instead.
//!
//! esark writes version 5 for encrypted archives only; an archive that is
//! not encrypted is written as version 4, byte for byte as before, so
//! that an esark that predates encryption still reads it.

use super::super::crypt::SCHEME;
use super::super::manifest::{Manifest, ManifestError};

/// Parses a version 5 manifest: encrypted files need a known scheme.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let manifest: Manifest = serde_json::from_slice(bytes)?;
    match &manifest.encryption {
        Some(e) if e.scheme != SCHEME => {
            return Err(ManifestError::UnknownScheme(e.scheme.clone()))
        }
        Some(_) => {}
        None => {
            if let Some(f) = manifest.files().find(|f| f.encrypted) {
                return Err(ManifestError::EncryptedWithoutScheme(f.path.clone()));
            }
        }
    }
    Ok(manifest)
}
