//! The archive: a public, versioned contract.
//!
//! An archive is a folder (or, through [`store::ArchiveStore`], any store
//! of objects) with a `manifest.json` at its root that is written last and
//! atomically; one without it is an incomplete dump. The
//! manifest records the format name and version, the source cluster, the
//! options used, and every file with its size, document count and sha256.
//!
//! Like meilisearch's dump crate, the format is versioned: [`Version`] lists
//! the versions this build reads, [`CURRENT_VERSION`] is the one
//! [`writer::ArchiveWriter`] writes, and [`reader::open`] reads the version
//! field first and dispatches to the reader for that version
//! ([`reader::v1`] to [`reader::v6`]), adapting older versions to the current
//! model. A change to the format adds a version, a reader for it, and an
//! adapter from the older ones.
//!
//! Version 5 adds encryption with age ([`crypt`]). It is written only for
//! an encrypted archive ([`Version::written`]): an archive that is not
//! encrypted is still version 4, unchanged, so that every esark that
//! reads version 4 keeps reading it; only an encrypted one, which an older
//! esark could not read anyway, says 5.
//!
//! Version 6 adds lz4 data chunks, the default compression since; an
//! archive dumped with `--compression zstd` (or gzip, none) is written as
//! version 4 or 5 as before ([`Version::written`]).
//!
//! Every read and write of an archive's files goes through an
//! [`store::ArchiveStore`]: [`store::LocalStore`] for a folder,
//! [`store::MemoryStore`] in memory; what only a folder can do (replacing
//! an archive in place) is in [`store::swap`].

pub mod compression;
pub mod crypt;
pub mod hash;
pub mod line;
pub mod manifest;
pub mod metadata;
pub mod naming;
pub mod reader;
pub mod state_file;
pub mod store;
pub mod writer;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `format` field of every esark manifest.
pub const FORMAT_NAME: &str = "esark-archive";

/// The manifest's file name at the archive root.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The private file an unfinished dump keeps in its archive folder (its
/// content is the dump's business: `crate::dump::checkpoint`); named here
/// so that the writer and the readers recognise an unfinished dump.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// Archive format versions this build can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum Version {
    /// Indices (settings, mappings, aliases, data) and templates.
    V1 = 1,
    /// Adds cluster metadata files: lifecycle policies, ingest pipelines,
    /// stored scripts, data streams, cluster settings.
    V2 = 2,
    /// zstd chunks hold one frame per page (any number of frames).
    V3 = 3,
    /// The manifest lists the indices that could not be dumped
    /// (`failed`), beside the dumped ones.
    V4 = 4,
    /// Files may be age-encrypted: the manifest says which and how
    /// (`encryption`, `encrypted`), with sizes and checksums of the stored
    /// bytes.
    V5 = 5,
    /// Data chunks may be lz4 (`.jsonl.lz4`, one frame per page), and are
    /// by default.
    V6 = 6,
}

/// The newest version this build writes (for an encrypted archive; see
/// [`Version::written`]).
pub const CURRENT_VERSION: Version = Version::V6;

impl Version {
    /// The version a new archive is written in: the oldest that holds it,
    /// so that an older esark reads what it can. 6 when its chunks are lz4,
    /// else 5 when encrypted, else 4.
    pub fn written(encrypted: bool, compression: compression::Compression) -> Version {
        if compression == compression::Compression::Lz4 {
            Version::V6
        } else if encrypted {
            Version::V5
        } else {
            Version::V4
        }
    }
}

impl TryFrom<u32> for Version {
    type Error = ArchiveError;
    fn try_from(v: u32) -> Result<Self, ArchiveError> {
        match v {
            1 => Ok(Version::V1),
            2 => Ok(Version::V2),
            3 => Ok(Version::V3),
            4 => Ok(Version::V4),
            5 => Ok(Version::V5),
            6 => Ok(Version::V6),
            other => Err(ArchiveError::UnsupportedVersion(other)),
        }
    }
}

impl From<Version> for u32 {
    fn from(v: Version) -> u32 {
        v as u32
    }
}

/// Errors reading or writing an archive. Each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: no manifest.json: not an esark archive, or an incomplete dump (a dump writes its manifest last)", .0.display())]
    MissingManifest(PathBuf),
    #[error("{}: not a folder", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: not an esark manifest: {reason}", path.display())]
    BadManifest { path: PathBuf, reason: String },
    #[error("archive format version {0} is not supported by esark {tool}; upgrade esark", tool = crate::TOOL_VERSION)]
    UnsupportedVersion(u32),
    #[error("{}: refusing to write into a non-empty folder; pass --overwrite to replace the archive in it", .0.display())]
    NotEmpty(PathBuf),
    #[error("{}: holds an unfinished dump (a checkpoint, no manifest): continue it with `esark dump --resume` and the same --source and --output, or pass --overwrite to start over", .0.display())]
    UnfinishedDump(PathBuf),
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: already exists: another dump wrote this archive", .0.display())]
    AlreadyExists(PathBuf),
    /// The dump lock of an object-storage prefix is taken
    /// ([`store::lock`]).
    #[error("{}: another dump is writing there ({holder}; {}), or one that was interrupted: continue that with `esark dump --resume` and the same --source and --output, or start over with --overwrite", path.display(), lock.display())]
    Locked {
        path: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("{path}: the manifest names a file outside the archive")]
    UnsafePath { path: String },
    #[error("{}: a link to {}, outside the archive: refused", path.display(), target.display())]
    OutsideArchive { path: PathBuf, target: PathBuf },
    #[error("{}: {error}", .0.display(), error = .1)]
    Crypt(PathBuf, crypt::CryptError),
}

impl ArchiveError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ArchiveError {
        ArchiveError::Io {
            path: path.into(),
            error: source,
        }
    }
}
