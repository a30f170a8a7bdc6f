//! Reader for archive format version 3: the layout and manifest of
//! version 2 (see [`super::v2`]), with two additions:
//!
//! - a zstd chunk is a sequence of frames, one per page read from the
//!   cluster, instead of a single frame;
//! - an entry of `indices` may be a data stream (`"data_stream": true`):
//!   its folder holds data files only (its mappings and settings are its
//!   index template's), and it is restored into the data stream, created
//!   from that template, with `create` actions.
//!
//! Concatenated frames are one zstd stream to every decoder that follows
//! RFC 8878 (`zstd -d`, `zstdcat`), but esark 0.1 read only the first frame
//! of a chunk and would restore a data stream as an index, hence the new
//! version: an older esark refuses the archive instead.

use super::super::manifest::{Manifest, ManifestError};

/// Parses a version 3 manifest (which has no `failed` list).
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let manifest: Manifest = serde_json::from_slice(bytes)?;
    if !manifest.failed.is_empty() {
        return Err(ManifestError::FailedTooEarly(3));
    }
    manifest.refuse_encryption(3)?;
    Ok(manifest)
}
