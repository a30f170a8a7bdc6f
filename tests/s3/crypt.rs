//! Encrypted archives on S3: no document id in any stored object, `inspect`
//! checks them without the key, a restore without `--identity` is refused
//! before any write, and one with it is exact.

use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::{esark, restore, BUCKET};
use crate::util::check::assert_one_error_line;
use crate::util::fixture::Fixture;
use crate::util::moto::Moto;
use crate::util::restore_support::{
    assert_same_stored, docs_of, seed_index, target_args, target_cluster, try_count,
};
use crate::util::server::TestCluster;

/// A key pair: the recipient string and the identity file in `dir`.
fn keys(dir: &Path) -> (String, PathBuf) {
    let identity = age::x25519::Identity::generate();
    let path = dir.join("s3.key");
    std::fs::write(&path, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    (identity.to_public().to_string(), path)
}

/// The id of document `i`: long and unlikely enough to be found by chance.
fn id(i: usize) -> String {
    format!("plainid-{i:05}-zebra")
}

#[test]
fn s3_encrypted_round_trip_stores_no_plaintext_and_needs_the_identity() {
    let Some(moto) = Moto::start("s3-crypt") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let source = TestCluster::start("s3-crypt");
    let Some(target) = target_cluster("s3-crypt") else {
        return;
    };
    let index = source.name("sealed");
    let docs: Vec<(String, String)> = (0..400)
        .map(|i| {
            (
                id(i),
                format!(r#"{{"marker":"plaintextvalue-{i}","n":{i}}}"#),
            )
        })
        .collect();
    let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}});
    let seeded = seed_index(&source, &index, &body, &docs);
    let tmp = tempfile::tempdir().unwrap();
    let (recipient, identity) = keys(tmp.path());
    let url = format!("s3://{BUCKET}/sealed");
    esark(&moto)
        .arg("dump")
        .args(source.source_args())
        .args(["--match", &Fixture::exactly(&index), "--output", &url])
        .args(["--encrypt-to", &recipient, "--file-size", "8KiB"])
        .args(["--compression", "none"])
        .run()
        .assert_success();

    let keys = moto.keys(BUCKET, "sealed/");
    assert!(
        keys.iter().filter(|k| k.contains("/data-")).count() > 1,
        "{keys:?}"
    );
    for key in &keys {
        let bytes = moto.get_object(BUCKET, key);
        let text = String::from_utf8_lossy(&bytes);
        for needle in [id(0), id(123), id(399), "plaintextvalue".into()] {
            assert!(!text.contains(&needle), "{key} holds {needle:?} in plain");
        }
        if !key.ends_with("/manifest.json") {
            assert!(
                bytes.starts_with(b"age-encryption.org/v1\n"),
                "{key} is not an age file"
            );
        }
    }

    // Integrity without the key.
    let inspect = esark(&moto).args(["inspect", &url, "--json"]).run();
    inspect.assert_success();
    let report: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(report["intact"], true, "{inspect}");

    // Without --identity: one line, before anything is written.
    let refused = restore(&moto, &url, &target);
    let line = assert_one_error_line(&refused);
    assert!(line.contains("--identity"), "{line}");
    assert_eq!(
        try_count(&target, &index),
        None,
        "restore wrote before refusing"
    );

    esark(&moto)
        .args(["restore", "--input", &url])
        .args(target_args(&target))
        .arg("--identity")
        .arg(&identity)
        .run()
        .assert_success();
    assert_same_stored(&seeded, &docs_of(&target, &index), "decrypted from s3");
    assert_eq!(
        moto.keys(BUCKET, "sealed/"),
        keys,
        "restore wrote into the bucket"
    );
}
