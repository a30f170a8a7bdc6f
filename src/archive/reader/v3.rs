//! Reader for archive format version 3: the layout and manifest of
//! version 2 (see [`super::v2`]); a zstd chunk is a sequence of frames,
//! one per page read from the cluster, instead of a single frame.
//!
//! Concatenated frames are one zstd stream to every decoder that follows
//! RFC 8878 (`zstd -d`, `zstdcat`), but esark 0.1 read only the first frame
//! of a chunk, hence the new version: an older esark refuses the archive
//! instead of finding its chunks short.

use super::super::manifest::Manifest;

/// Parses a version 3 manifest.
pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}
