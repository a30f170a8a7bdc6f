//! `manifest.json`: what an archive holds, and how to prove it is whole.

use serde::{Deserialize, Serialize};

use super::compression::Compression;
use super::Version;
use crate::cluster::model::info::Flavor;

/// Why a manifest of a known format version cannot be read (the reader
/// names the file).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A file of a kind that a later format version introduced.
    #[error("{path}: a {kind:?} file does not exist in format version {version}")]
    KindTooNew {
        path: String,
        kind: FileKind,
        version: u32,
    },
    #[error("\"failed\" indices appear in format version 4, not {0}")]
    FailedTooEarly(u32),
    #[error("encrypted files appear in format version 5, not {0}")]
    EncryptedTooEarly(u32),
    #[error("{0}: marked encrypted, but the manifest has no \"encryption\"")]
    EncryptedWithoutScheme(String),
    #[error("unknown encryption scheme {0:?}")]
    UnknownScheme(String),
}

/// The root of `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always [`super::FORMAT_NAME`].
    pub format: String,
    pub format_version: Version,
    pub tool_version: String,
    /// RFC 3339, when the dump started.
    pub created_at: String,
    /// RFC 3339, when the manifest was written.
    pub completed_at: String,
    pub source: SourceCluster,
    pub options: DumpOptions,
    /// Cluster-level metadata files (templates).
    pub cluster_files: Vec<FileEntry>,
    pub indices: Vec<IndexEntry>,
    /// Indices that matched but were not dumped (closed ones), with why.
    #[serde(default)]
    pub skipped: Vec<SkippedIndex>,
    /// Indices that matched but could not be dumped (format 4): deleted
    /// during the dump, `_source` disabled, an error reading them. None of
    /// their files is listed; a restore reports them as not restorable.
    #[serde(default)]
    pub failed: Vec<FailedIndex>,
    /// How the files marked `encrypted` are encrypted (format 5); absent
    /// for an archive that is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// The encryption of an archive (format 5): which scheme, and to which
/// public keys (never a secret). Only the files marked `encrypted` are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Encryption {
    /// [`super::crypt::SCHEME`]: age, X25519 recipients, binary format.
    pub scheme: String,
    /// The recipients' public keys (`age1…`), sorted.
    pub recipients: Vec<String>,
}

/// An index the dump failed on, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailedIndex {
    pub name: String,
    pub reason: String,
}

/// The cluster a dump came from. Never holds credentials.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceCluster {
    /// The base URL without user info.
    pub url: String,
    pub cluster_name: String,
    pub cluster_uuid: String,
    pub flavor: Flavor,
    pub version: String,
}

/// The options a dump ran with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DumpOptions {
    pub compression: Compression,
    pub level: i32,
    /// `auto` or a number, as given.
    pub slices: String,
    pub page_size: usize,
    pub file_size: u64,
    #[serde(rename = "match")]
    pub match_: Option<String>,
    pub exclude: Option<String>,
    /// The query a partial dump was made with (`--query`); absent for a
    /// whole dump. Optional, so archives without it read the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<RawQuery>,
}

/// A query kept as the exact JSON text it was given in: never parsed into
/// numbers that could round, and never dropped because a parse failed. On
/// disk it is the same JSON object as before (no format change).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawQuery(Box<serde_json::value::RawValue>);

impl RawQuery {
    /// The query's JSON text; fails only on text that is not JSON.
    pub fn new(text: &str) -> Result<RawQuery, serde_json::Error> {
        serde_json::value::RawValue::from_string(text.to_string()).map(RawQuery)
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }
}

/// The same query, whatever the white space.
impl PartialEq for RawQuery {
    fn eq(&self, other: &RawQuery) -> bool {
        let parse = |q: &RawQuery| serde_json::from_str::<serde_json::Value>(q.get()).ok();
        self.get() == other.get() || parse(self).is_some_and(|a| Some(a) == parse(other))
    }
}

/// One dumped index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexEntry {
    pub name: String,
    /// The folder, relative to the archive root, `/`-separated.
    pub folder: String,
    /// Documents written to the archive.
    pub docs: u64,
    /// What `_count` said before the dump (informative: writes during a
    /// dump can change it).
    pub expected_docs: u64,
    /// Number of slices the index was read with; data files carry their slice.
    pub slices: u32,
    pub files: Vec<FileEntry>,
    /// A data stream (format 3): only data files; restored into the data
    /// stream (created from its index template) with `create` actions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data_stream: bool,
}

/// What a file holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Settings,
    Mappings,
    Aliases,
    Data,
    Templates,
    IndexTemplates,
    ComponentTemplates,
    /// Version 2 and later.
    IlmPolicies,
    IsmPolicies,
    IngestPipelines,
    StoredScripts,
    DataStreams,
    ClusterSettings,
}

/// One file of the archive, with what proves it intact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub kind: FileKind,
    /// Relative to the archive root, `/`-separated.
    pub path: String,
    pub bytes: u64,
    /// Documents in a data file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<u64>,
    /// Lowercase hex sha256 of the bytes on disk.
    pub sha256: String,
    /// The slice a data file was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<u32>,
    /// An age file (format 5): `bytes` and `sha256` are those of the
    /// encrypted bytes as stored, checkable without the key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SkippedIndex {
    pub name: String,
    pub reason: String,
}

impl Manifest {
    /// Every file the manifest lists, cluster files first.
    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        self.cluster_files
            .iter()
            .chain(self.indices.iter().flat_map(|i| i.files.iter()))
    }

    /// Whether any file is encrypted: reading it then needs an identity.
    pub fn is_encrypted(&self) -> bool {
        self.files().any(|f| f.encrypted)
    }

    /// Refuses encryption in a manifest of a version before 5.
    pub fn refuse_encryption(&self, version: u32) -> Result<(), ManifestError> {
        if self.encryption.is_some() || self.is_encrypted() {
            return Err(ManifestError::EncryptedTooEarly(version));
        }
        Ok(())
    }

    /// Total documents in the archive.
    pub fn total_docs(&self) -> u64 {
        self.indices.iter().map(|i| i.docs).sum()
    }
}

/// Now, as the manifest's timestamps are written (RFC 3339, UTC, ms).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
