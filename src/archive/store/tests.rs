//! The store contract, checked on both stores, and a whole archive written
//! to and read back from memory: nothing above the store needs a folder.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ArchiveStore, LocalStore, MemoryStore, PutMode, StoreError};
use crate::archive::compression::Compression;
use crate::archive::manifest::{DumpOptions, FileKind, IndexEntry, Manifest, SourceCluster};
use crate::archive::reader::{self, FileCheck};
use crate::archive::writer::ArchiveWriter;
use crate::archive::{ArchiveError, CURRENT_VERSION, FORMAT_NAME, MANIFEST_FILE};
use crate::sink::chunk::ChunkWriter;
use crate::source::archive::{ChunkDigest, ChunkFile, ChunkLines};

async fn read_all(store: &dyn ArchiveStore, key: &str, offset: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut reader = store.read(key, offset).await.unwrap();
    reader.read_to_end(&mut out).await.unwrap();
    out
}

/// What every store promises: an upload is invisible until committed and
/// gone when aborted, a create never replaces, a missing object is
/// `NotFound`, deleting is idempotent, listing stays under its folder.
async fn contract(store: &dyn ArchiveStore) {
    store.create_folder("i").await.unwrap();
    let mut upload = store.upload("i/data-s000-00000.jsonl").await.unwrap();
    upload.write_all(b"1\n2\n").await.unwrap();
    assert!(!store.exists("i/data-s000-00000.jsonl").await.unwrap());
    upload.commit().await.unwrap();
    assert_eq!(store.head("i/data-s000-00000.jsonl").await.unwrap().size, 4);
    assert_eq!(read_all(store, "i/data-s000-00000.jsonl", 2).await, b"2\n");

    let mut upload = store.upload("i/data-s000-00001.jsonl").await.unwrap();
    upload.write_all(b"3\n").await.unwrap();
    upload.abort().await.unwrap();
    assert!(!store.exists("i/data-s000-00001.jsonl").await.unwrap());

    store
        .put("m.json", Bytes::from_static(b"a"), PutMode::Create)
        .await
        .unwrap();
    let taken = store
        .put("m.json", Bytes::from_static(b"b"), PutMode::Create)
        .await
        .unwrap_err();
    assert!(matches!(taken, StoreError::AlreadyExists { .. }), "{taken}");
    assert_eq!(&store.get("m.json").await.unwrap()[..], b"a");
    store
        .put("m.json", Bytes::from_static(b"c"), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(&store.get("m.json").await.unwrap()[..], b"c");

    let missing = store.get("nope.json").await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { .. }), "{missing}");
    assert!(missing.to_string().contains("nope.json"), "{missing}");
    assert!(matches!(
        store.head("nope.json").await,
        Err(StoreError::NotFound { .. })
    ));

    let keys = |list: Vec<super::ObjectMeta>| list.into_iter().map(|o| o.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.list("i").await.unwrap()),
        ["i/data-s000-00000.jsonl"]
    );
    assert_eq!(
        keys(store.list("").await.unwrap()),
        ["i/data-s000-00000.jsonl", "m.json"]
    );
    assert!(store.list("none").await.unwrap().is_empty());
    store.delete("m.json").await.unwrap();
    store.delete("m.json").await.unwrap();
    assert!(!store.exists("m.json").await.unwrap());
}

#[tokio::test]
async fn a_local_folder_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    contract(&store).await;
    // Nothing but the published files is left behind.
    assert!(!dir.path().join("i/data-s000-00001.jsonl.partial").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("i")), 0o700);
        assert_eq!(mode(&dir.path().join("i/data-s000-00000.jsonl")), 0o600);
    }
}

#[tokio::test]
async fn memory_keeps_the_store_contract() {
    contract(&MemoryStore::new()).await;
}

pub(crate) fn manifest(index: IndexEntry) -> Manifest {
    Manifest {
        format: FORMAT_NAME.into(),
        format_version: CURRENT_VERSION,
        tool_version: crate::TOOL_VERSION.into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        completed_at: "2026-01-01T00:00:01Z".into(),
        source: SourceCluster {
            url: "http://h/".into(),
            cluster_name: "c".into(),
            cluster_uuid: "u".into(),
            flavor: Default::default(),
            version: "8.0.0".into(),
        },
        options: DumpOptions {
            compression: Compression::Zstd,
            level: 3,
            slices: "auto".into(),
            page_size: 100,
            file_size: 1 << 30,
            match_: None,
            exclude: None,
            query: None,
        },
        cluster_files: Vec::new(),
        indices: vec![index],
        skipped: Vec::new(),
        failed: Vec::new(),
        encryption: None,
    }
}

/// An archive written through [`ArchiveWriter`] and [`ChunkWriter`] into a
/// [`MemoryStore`] reads back through the reader: the manifest, every
/// checksum, and a chunk's lines.
#[tokio::test]
async fn an_archive_round_trips_through_memory() {
    let memory = Arc::new(MemoryStore::new());
    let store: Arc<dyn ArchiveStore> = memory.clone();
    let writer = ArchiveWriter::create_in(store.clone()).await.unwrap();
    writer.create_dir("indices/logs").await.unwrap();
    let settings = serde_json::json!({"index": {"number_of_shards": "1"}});
    let mut files = vec![writer
        .write_json("indices/logs/settings.json", FileKind::Settings, &settings)
        .await
        .unwrap()];
    let mut chunks = ChunkWriter::new(
        writer.clone(),
        "indices/logs",
        0,
        Compression::Zstd,
        3,
        1 << 30,
    );
    let lines: Vec<String> = (0..20)
        .map(|n| format!("{{\"_id\":\"{n}\",\"_source\":{{\"n\":{n}}}}}\n"))
        .collect();
    chunks
        .push(lines[..10].concat().as_bytes(), 10)
        .await
        .unwrap();
    chunks
        .push(lines[10..].concat().as_bytes(), 10)
        .await
        .unwrap();
    files.extend(chunks.finish().await.unwrap());
    let index = IndexEntry {
        name: "logs".into(),
        folder: "indices/logs".into(),
        docs: 20,
        expected_docs: 20,
        slices: 1,
        files,
        data_stream: false,
    };
    let written = manifest(index);
    writer.write_manifest(&written).await.unwrap();
    // The manifest is the commit point: a second one is refused.
    assert!(matches!(
        writer.write_manifest(&written).await,
        Err(ArchiveError::AlreadyExists(_))
    ));
    // A store that holds an archive takes no new one.
    assert!(matches!(
        ArchiveWriter::create_in(store.clone()).await,
        Err(ArchiveError::NotEmpty(_))
    ));

    let archive = reader::open_store(store.clone()).await.unwrap();
    assert_eq!(archive.manifest(), &written);
    assert!(archive
        .check_files(archive.manifest().files())
        .await
        .is_empty());
    let data = &archive.manifest().indices[0].files[1];
    assert_eq!(data.kind, FileKind::Data);
    let digest = ChunkDigest {
        bytes: data.bytes,
        sha256: data.sha256.clone(),
    };
    let chunk = ChunkFile::new(store.clone(), &data.path, 20, Some(digest.clone()));
    let mut read = ChunkLines::new(vec![chunk.clone()]);
    let mut buf = Vec::new();
    let mut got = Vec::new();
    while read.next_line(&mut buf).await.unwrap() {
        got.push(format!("{}\n", String::from_utf8(buf.clone()).unwrap()));
    }
    assert_eq!(got, lines);
    assert_eq!(
        chunk.stored_digest().await.unwrap(),
        (digest.bytes, digest.sha256)
    );

    // A changed byte is caught by the checksums.
    let mut damaged = memory.get(&data.path).await.unwrap().to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    memory
        .put(&data.path, Bytes::from(damaged), PutMode::Overwrite)
        .await
        .unwrap();
    let problems = archive.check_files(archive.manifest().files()).await;
    assert_eq!(problems, [(data.path.clone(), FileCheck::DigestMismatch)]);
    memory.delete(MANIFEST_FILE).await.unwrap();
    assert!(matches!(
        reader::open_store(store).await,
        Err(ArchiveError::MissingManifest(_))
    ));
}
