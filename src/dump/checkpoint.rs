//! The checkpoint of a dump in progress: `checkpoint.json` beside the
//! archive's files, rewritten atomically after every finished chunk and
//! removed once the manifest is written. `esark dump --resume` reads it:
//! finished indices and slices are kept, a point-in-time slice continues
//! from its recorded position, a scroll slice is read again.
//!
//! It is a private file of the tool, not part of the archive format: an
//! archive is what the manifest lists. It lives in the archive, so it is
//! read and written through the archive's store.
//!
//! In an encrypted dump the checkpoint is an age file like the archive's
//! other files (it holds the query and positions in the indices); it
//! records the recipients' public keys, never a secret, so that a resumed
//! dump keeps encrypting to them, and is read back with `--identity`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::archive::crypt::{CryptError, Identities, Recipients, SealingStore};
use crate::archive::manifest::{DumpOptions, FileEntry, IndexEntry, SkippedIndex, SourceCluster};
use crate::archive::state_file::StateWriter;
use crate::archive::store::ArchiveStore;
use crate::archive::writer::ArchiveWriter;
use crate::archive::ArchiveError;
use crate::source::pit::PitPosition;
use crate::source::ReaderKind;

pub use crate::archive::CHECKPOINT_FILE;
const CHECKPOINT_FORMAT: &str = "esark-checkpoint";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: String,
    pub format_version: u32,
    pub created_at: String,
    pub source: SourceCluster,
    pub options: DumpOptions,
    pub reader: ReaderKind,
    pub indices: BTreeMap<String, IndexCheckpoint>,
    #[serde(default)]
    pub skipped: Vec<SkippedIndex>,
    /// The public keys (`age1…`) the dump encrypts to; empty when it does
    /// not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexCheckpoint {
    /// Set once the index is complete.
    pub done: Option<IndexEntry>,
    /// Per slice, what is safely on disk.
    pub slices: BTreeMap<u32, SliceCheckpoint>,
    /// The slice count the index is read with.
    pub slice_count: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SliceCheckpoint {
    /// Finished chunks (fsynced and renamed into place).
    pub chunks: Vec<FileEntry>,
    /// Where a point-in-time slice continues after those chunks.
    pub position: Option<PitPosition>,
    pub done: bool,
}

impl SliceCheckpoint {
    pub fn docs(&self) -> u64 {
        self.chunks.iter().filter_map(|c| c.docs).sum()
    }
}

impl Checkpoint {
    pub fn new(
        created_at: String,
        source: SourceCluster,
        options: DumpOptions,
        reader: ReaderKind,
    ) -> Self {
        Checkpoint {
            format: CHECKPOINT_FORMAT.into(),
            format_version: 1,
            created_at,
            source,
            options,
            reader,
            indices: BTreeMap::new(),
            skipped: Vec::new(),
            recipients: Vec::new(),
        }
    }

    /// Records the recipients the dump encrypts to.
    pub fn encrypted_to(mut self, recipients: Option<&Recipients>) -> Checkpoint {
        self.recipients = recipients.map(Recipients::to_strings).unwrap_or_default();
        self
    }

    /// Reads the checkpoint of the dump in `store`, opening an encrypted
    /// one with `identities`.
    pub async fn load(
        store: &dyn ArchiveStore,
        identities: Option<&Identities>,
    ) -> Result<Checkpoint, ArchiveError> {
        let path = store.locate(CHECKPOINT_FILE);
        let mut bytes = store.get(CHECKPOINT_FILE).await?;
        if bytes.starts_with(AGE_MAGIC) {
            let crypt = |e| ArchiveError::Crypt(path.clone(), e);
            let identities = identities.ok_or_else(|| crypt(CryptError::IdentityNeeded))?;
            bytes = identities.open(&bytes).map_err(crypt)?.into();
        }
        let cp: Checkpoint =
            serde_json::from_slice(&bytes).map_err(|e| ArchiveError::BadManifest {
                path: path.clone(),
                reason: format!("unreadable checkpoint: {e}"),
            })?;
        if cp.format != CHECKPOINT_FORMAT || cp.format_version != 1 {
            return Err(ArchiveError::BadManifest {
                path,
                reason: "not an esark checkpoint of a known version".into(),
            });
        }
        Ok(cp)
    }
}

/// The checkpoint of a running dump, shared by its writer tasks: updated
/// in memory after every finished chunk, written by its own task.
pub type Checkpointer = StateWriter<Checkpoint>;

/// The checkpoint of the dump writing `archive`, kept in its store.
/// Encrypted (to the archive's recipients) when the archive is.
pub fn checkpointer(archive: &ArchiveWriter, checkpoint: Checkpoint) -> Checkpointer {
    let store = match archive.recipients() {
        Some(r) => Arc::new(SealingStore::new(Arc::clone(archive.store()), r.clone())),
        None => Arc::clone(archive.store()),
    };
    StateWriter::new(store, CHECKPOINT_FILE, checkpoint)
}

/// How every age file begins.
const AGE_MAGIC: &[u8] = b"age-encryption.org/";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::store::MemoryStore;

    /// An encrypted dump's checkpoint is an age file, read back with the
    /// identity only.
    #[tokio::test]
    async fn an_encrypted_checkpoint_needs_the_identity() {
        let identity = age::x25519::Identity::generate();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        use age::secrecy::ExposeSecret;
        std::fs::write(&key, identity.to_string().expose_secret()).unwrap();
        let identities = Identities::load(&key).unwrap();
        let recipients = Recipients::parse(&[identity.to_public().to_string()], &[])
            .unwrap()
            .unwrap();
        let store: Arc<dyn ArchiveStore> = Arc::new(MemoryStore::new());
        let archive = ArchiveWriter::create_in(store.clone())
            .await
            .unwrap()
            .encrypt_to(Some(recipients.clone()));
        let source = SourceCluster {
            url: "http://h/".into(),
            cluster_name: "c".into(),
            cluster_uuid: "u".into(),
            flavor: Default::default(),
            version: "2.0.0".into(),
        };
        let options = crate::dump::DumpConfig::new(
            crate::cluster::ClusterConfig::new("http://h:9200").unwrap(),
            std::path::PathBuf::from("o"),
        )
        .options()
        .unwrap();
        let cp = Checkpoint::new("now".into(), source, options, ReaderKind::Auto)
            .encrypted_to(Some(&recipients));
        let writer = checkpointer(&archive, cp);
        writer.update(|_| {}).unwrap();
        writer.flush().await.unwrap();
        let stored = store.get(CHECKPOINT_FILE).await.unwrap();
        assert!(stored.starts_with(AGE_MAGIC));
        let e = Checkpoint::load(store.as_ref(), None).await.unwrap_err();
        assert!(e.to_string().contains("--identity"), "{e}");
        let cp = Checkpoint::load(store.as_ref(), Some(&identities))
            .await
            .unwrap();
        assert_eq!(cp.recipients, recipients.to_strings());
    }
}
