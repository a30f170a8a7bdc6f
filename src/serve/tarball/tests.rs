//! The tar layouts and a round trip through a store: download, then
//! upload, byte for byte; a flipped byte and an oversized body refused.

use std::io;
use std::sync::Arc;

use bytes::Bytes;

use super::download::write_tar;
use super::upload::{archive_key, receive, Layout, UploadError};
use crate::archive::manifest::{FileEntry, Manifest};
use crate::archive::store::{ArchiveStore, MemoryStore, PutMode};
use crate::archive::MANIFEST_FILE;

fn key(raw: &str, is_dir: bool, layout: &mut Layout) -> Result<Option<String>, String> {
    archive_key(raw, is_dir, layout)
}

#[test]
fn entries_under_one_top_folder_are_stripped() {
    let mut layout = Layout::Undecided;
    assert_eq!(key("b1/", true, &mut layout), Ok(None));
    assert_eq!(
        key("b1/indices/x/data.jsonl", false, &mut layout),
        Ok(Some("indices/x/data.jsonl".into()))
    );
    assert_eq!(
        key("./b1/manifest.json", false, &mut layout),
        Ok(Some("manifest.json".into()))
    );
    assert!(key("b2/manifest.json", false, &mut layout)
        .unwrap_err()
        .contains("outside the top folder"));
}

#[test]
fn entries_at_the_root_are_kept() {
    for first in [
        "manifest.json",
        "./indices/",
        "cluster/templates.json",
        "./",
    ] {
        let mut layout = Layout::Undecided;
        key(first, first.ends_with('/'), &mut layout).unwrap();
        if first != "./" {
            assert!(matches!(layout, Layout::Root), "{first}");
        }
        assert_eq!(
            key("indices/x/settings.json", false, &mut layout),
            Ok(Some("indices/x/settings.json".into())),
            "{first}"
        );
    }
}

#[test]
fn paths_leaving_the_archive_are_refused() {
    for raw in ["/etc/passwd", "b1/../x", "../x", "b1/a\\b", "b1/c:d"] {
        let mut layout = Layout::Undecided;
        assert!(key(raw, false, &mut layout).is_err(), "{raw}");
    }
}

/// A manifest of one index with a settings file and a data file.
fn sample() -> (Manifest, Vec<(String, Vec<u8>)>) {
    use crate::archive::manifest::{FileKind, IndexEntry};
    use sha2::Digest;
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            "indices/logs/settings.json".into(),
            b"{\"index\":{}}".to_vec(),
        ),
        (
            "indices/logs/data-s000-00000.jsonl".into(),
            b"{\"_id\":\"1\",\"_source\":{}}\n{\"_id\":\"2\",\"_source\":{}}\n".to_vec(),
        ),
    ];
    let entry = |(path, bytes): &(String, Vec<u8>), kind, docs| FileEntry {
        kind,
        path: path.clone(),
        bytes: bytes.len() as u64,
        docs,
        sha256: hex::encode(sha2::Sha256::digest(bytes)),
        slice: docs.map(|_| 0),
        encrypted: false,
    };
    let index = IndexEntry {
        name: "logs".into(),
        folder: "logs".into(),
        docs: 2,
        expected_docs: 2,
        slices: 1,
        files: vec![
            entry(&files[0], FileKind::Settings, None),
            entry(&files[1], FileKind::Data, Some(2)),
        ],
        data_stream: false,
    };
    (crate::archive::store::tests_manifest(index), files)
}

#[tokio::test]
async fn a_tar_round_trips_through_a_store() {
    let (manifest, files) = sample();
    let source = Arc::new(MemoryStore::new());
    for (path, bytes) in &files {
        source
            .put(path, Bytes::from(bytes.clone()), PutMode::Create)
            .await
            .unwrap();
    }
    let manifest_bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let tar = write_tar(
        Vec::new(),
        "b1",
        source.as_ref(),
        &manifest,
        manifest_bytes.clone(),
    )
    .await
    .unwrap();
    let body = futures::stream::iter(
        tar.chunks(1000)
            .map(|c| Ok::<_, io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let target = Arc::new(MemoryStore::new());
    receive(target.clone(), body, u64::MAX).await.unwrap();
    assert_eq!(target.get(MANIFEST_FILE).await.unwrap(), manifest_bytes);
    for (path, bytes) in &files {
        assert_eq!(target.get(path).await.unwrap().as_ref(), &bytes[..]);
    }
    // One flipped byte of a file: refused, naming it, nothing kept.
    let first = &files[0].0;
    let mut tampered = tar.clone();
    let at = tar
        .windows(files[0].1.len())
        .position(|w| w == &files[0].1[..])
        .unwrap();
    tampered[at] ^= 1;
    let target = Arc::new(MemoryStore::new());
    let body = futures::stream::iter([Ok::<_, io::Error>(Bytes::from(tampered))]);
    let error = receive(target.clone(), body, u64::MAX).await.unwrap_err();
    assert!(error.to_string().starts_with(first.as_str()), "{error}");
    assert!(target.list("").await.unwrap().is_empty());
    // Over the maximum: too large, nothing kept.
    let body = futures::stream::iter([Ok::<_, io::Error>(Bytes::from(tar.clone()))]);
    let error = receive(target.clone(), body, 1000).await.unwrap_err();
    assert!(matches!(error, UploadError::TooLarge), "{error}");
    assert!(target.list("").await.unwrap().is_empty());
}
