//! Reader for archive format version 6: the layout and manifest of
//! version 5 (see [`super::v5`]; files may be encrypted), with data chunks
//! that may be lz4 (`data-s000-00000.jsonl.lz4`): LZ4 frames (the format
//! of the `lz4` tool), one per page, read as one stream.
//!
//! A chunk's compression is still told by its name alone
//! ([`crate::archive::compression::Compression::from_file_name`]). An
//! older esark would take an `.lz4` chunk for an uncompressed one and fail
//! on its first line, hence the new version: it refuses the archive as a
//! whole instead. esark writes version 6 only for archives with lz4
//! chunks (the default), else 4 or 5 as before.

use super::super::manifest::{Manifest, ManifestError};

/// Parses a version 6 manifest: as version 5.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    super::v5::parse(bytes)
}
