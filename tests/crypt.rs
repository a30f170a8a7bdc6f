//! Archives encrypted with age (`dump --encrypt-to`, `--identity`): no
//! plaintext left beside the manifest, `inspect` without the key, a
//! restore refused before any write without the right identity, format
//! version 5 for encrypted archives only.

use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::util::archive::files_on_disk;
use crate::util::check::assert_one_error_line;
use crate::util::esark::{dump_cmd, inspect, Esark};
use crate::util::restore_support::{
    all_index_names, assert_same_stored, docs_of, restore_cmd, seed_index, target_cluster,
    verify_cmd,
};
use crate::util::server::TestCluster;

/// A mapping field name, a document value and an id that must appear in
/// no file of an encrypted archive but the manifest (which has none).
const FIELD: &str = "zebrafieldname";
const VALUE: &str = "plaintextvaluemarker";
const ID: &str = "secretid0042";

/// A key pair: the recipient string and the identity file in `dir`.
fn keys(dir: &Path, name: &str) -> (String, PathBuf) {
    let identity = age::x25519::Identity::generate();
    let path = dir.join(format!("{name}.key"));
    std::fs::write(
        &path,
        format!(
            "# created: by the test\n# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        ),
    )
    .unwrap();
    (identity.to_public().to_string(), path)
}

/// An index holding [`FIELD`], [`VALUE`] and [`ID`], among 300 documents.
fn seed(cluster: &TestCluster) -> String {
    let index = cluster.name("crypt");
    let docs: Vec<(String, String)> = (0..300)
        .map(|i| {
            let id = if i == 42 {
                ID.to_string()
            } else {
                format!("d{i}")
            };
            (id, format!(r#"{{"{FIELD}":"{VALUE}-{i}","n":{i}}}"#))
        })
        .collect();
    let body = json!({"mappings": {"properties": {FIELD: {"type": "keyword"}}}});
    seed_index(cluster, &index, &body, &docs);
    index
}

fn manifest(archive: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(archive.join("manifest.json")).unwrap()).unwrap()
}

/// Every archive file but the manifest is an age file holding none of the
/// plaintext; the manifest says version 5 (6 with lz4 chunks, the
/// default), the recipients, and which files.
fn assert_sealed(archive: &Path, recipients: &[&str]) {
    let m = manifest(archive);
    let lz4 = m.to_string().contains(".jsonl.lz4");
    assert_eq!(m["format_version"], if lz4 { 6 } else { 5 }, "{m:#}");
    assert_eq!(m["encryption"]["scheme"], "age-x25519");
    let mut want: Vec<&str> = recipients.to_vec();
    want.sort();
    assert_eq!(m["encryption"]["recipients"], json!(want));
    let files = files_on_disk(archive);
    assert!(files.iter().any(|f| f.contains("data-s")), "{files:?}");
    for rel in files.iter().filter(|f| *f != "manifest.json") {
        let bytes = std::fs::read(archive.join(rel)).unwrap();
        assert!(
            bytes.starts_with(b"age-encryption.org/v1\n"),
            "{rel} is not an age file"
        );
        for needle in [FIELD, VALUE, ID] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{rel} holds {needle:?} in plaintext"
            );
        }
    }
    let text = std::fs::read_to_string(archive.join("manifest.json")).unwrap();
    for needle in [FIELD, VALUE, ID] {
        assert!(!text.contains(needle), "the manifest holds {needle:?}");
    }
    let listed: Vec<&Value> = m["indices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["files"].as_array().unwrap())
        .chain(m["cluster_files"].as_array().unwrap())
        .collect();
    assert!(listed.iter().all(|f| f["encrypted"] == true), "{m:#}");
}

#[test]
fn an_encrypted_dump_leaves_no_plaintext_and_restores_with_the_identity() {
    let cluster = TestCluster::start("crypt-round-trip");
    let Some(target) = target_cluster("crypt-round-trip") else {
        return;
    };
    let index = seed(&cluster);
    let tmp = tempfile::tempdir().unwrap();
    let (alice, alice_key) = keys(tmp.path(), "alice");
    let (bob, bob_key) = keys(tmp.path(), "bob");
    let recipients = tmp.path().join("recipients.txt");
    std::fs::write(&recipients, format!("# the team\n\n{bob}\n")).unwrap();
    let archive = tmp.path().join("archive");
    dump_cmd(&cluster, &archive)
        .args(["--match", &index, "--encrypt-to", &alice])
        .arg("--encrypt-to-file")
        .arg(&recipients)
        .args(["--file-size", "4KiB"])
        .run()
        .assert_success();
    assert_sealed(&archive, &[&alice, &bob]);

    // The checksums are of the stored bytes: no key needed to check them.
    inspect(&archive).assert_success();
    Esark::new()
        .arg("inspect")
        .arg(&archive)
        .arg("--identity")
        .arg(&bob_key)
        .run()
        .assert_success();

    // Either recipient's identity opens it.
    restore_cmd(&archive, &target)
        .arg("--identity")
        .arg(&alice_key)
        .run()
        .assert_success();
    assert_same_stored(
        &docs_of(&cluster, &index),
        &docs_of(&target, &index),
        "source vs target",
    );
    assert_eq!(target.mappings(&index), cluster.mappings(&index));
    verify_cmd(&archive, &target)
        .arg("--identity")
        .arg(&bob_key)
        .run()
        .assert_success();
}

#[test]
fn a_missing_or_wrong_identity_is_refused_before_any_write() {
    let cluster = TestCluster::start("crypt-no-identity");
    let Some(target) = target_cluster("crypt-no-identity") else {
        return;
    };
    let index = seed(&cluster);
    let tmp = tempfile::tempdir().unwrap();
    let (alice, _) = keys(tmp.path(), "alice");
    let (_, mallory_key) = keys(tmp.path(), "mallory");
    let archive = tmp.path().join("archive");
    dump_cmd(&cluster, &archive)
        .args(["--match", &index, "--encrypt-to", &alice])
        .args(["--compression", "none"])
        .run()
        .assert_success();
    let before = all_index_names(&target);

    let out = restore_cmd(&archive, &target).run();
    let line = assert_one_error_line(&out);
    assert!(line.contains("--identity"), "{out}");
    let out = restore_cmd(&archive, &target)
        .arg("--identity")
        .arg(&mallory_key)
        .run();
    let line = assert_one_error_line(&out);
    assert!(line.contains("does not open"), "{out}");
    assert!(!line.contains("AGE-SECRET-KEY"), "{out}");
    assert_eq!(
        all_index_names(&target),
        before,
        "the target was written to"
    );

    let out = verify_cmd(&archive, &target).run();
    assert!(assert_one_error_line(&out).contains("--identity"), "{out}");
    let out = Esark::new()
        .arg("inspect")
        .arg(&archive)
        .arg("--identity")
        .arg(&mallory_key)
        .run();
    assert!(
        assert_one_error_line(&out).contains("does not open"),
        "{out}"
    );
}

#[test]
fn inspect_names_a_tampered_encrypted_file_without_the_key() {
    let cluster = TestCluster::start("crypt-tampered");
    let index = seed(&cluster);
    let tmp = tempfile::tempdir().unwrap();
    let (alice, alice_key) = keys(tmp.path(), "alice");
    let archive = tmp.path().join("archive");
    dump_cmd(&cluster, &archive)
        .args(["--match", &index, "--encrypt-to", &alice])
        .args(["--compression", "gzip"])
        .run()
        .assert_success();
    assert_sealed(&archive, &[&alice]);
    let chunk = files_on_disk(&archive)
        .into_iter()
        .find(|f| f.contains("data-s"))
        .unwrap();
    let path = archive.join(&chunk);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let out = inspect(&archive);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout.contains(&chunk) || out.stderr.contains(&chunk),
        "{out}"
    );

    // A restore stops on it before any write, key or not.
    if let Some(target) = target_cluster("crypt-tampered") {
        let out = restore_cmd(&archive, &target)
            .arg("--identity")
            .arg(&alice_key)
            .run();
        assert!(assert_one_error_line(&out).contains(&chunk), "{out}");
        assert!(!all_index_names(&target).contains(&index));
    }
}

#[test]
fn an_unencrypted_dump_is_still_format_4_and_bad_recipients_are_refused() {
    // Format 4 as before encryption existed, for the compressions format 4
    // knows (zstd here; lz4, the default, makes it 6: formats.rs).
    let cluster = TestCluster::start("crypt-plain");
    let index = seed(&cluster);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_cmd(&cluster, &archive)
        .args(["--match", &index, "--compression", "zstd"])
        .run()
        .assert_success();
    let m = manifest(&archive);
    assert_eq!(m["format_version"], 4, "{m:#}");
    assert!(m.get("encryption").is_none(), "{m:#}");
    let text = std::fs::read_to_string(archive.join("manifest.json")).unwrap();
    assert!(!text.contains("encrypted"), "{text}");

    let out = dump_cmd(&cluster, &tmp.path().join("other"))
        .args(["--match", &index, "--encrypt-to", "age1notakey"])
        .run();
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("not an age X25519 recipient"), "{out}");
    assert!(!tmp.path().join("other").exists());
}

/// `tests/fixtures/archive-v5`: the documents of the older fixtures
/// (big integers, unicode, a routing), written encrypted by this esark to
/// the test key `archive-v5.key`, restore exactly with that key, as every
/// later esark must.
#[test]
fn the_format_version_5_fixture_restores_exactly() {
    let Some(target) = target_cluster("crypt-fixture-v5") else {
        return;
    };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("fixture-v5");
    crate::util::restore_support::copy_dir(&fixtures.join("archive-v5"), &archive);
    let key = fixtures.join("archive-v5.key");
    assert_eq!(manifest(&archive)["format_version"], 5);
    let out = inspect(&archive);
    assert!(out.stdout.contains("esark-archive v5"), "{out}");
    out.assert_success();
    let out = restore_cmd(&archive, &target)
        .arg("--identity")
        .arg(&key)
        .arg("--quiet")
        .run();
    out.assert_success();
    let docs = docs_of(&target, "fixture-v5");
    assert_eq!(docs.len(), 3);
    assert_eq!(
        docs["a"].source,
        r#"{"name":"Zoë","big":9223372036854775807,"nested":{"k":"v","n":[1,2,-9007199254740993]},"ratio":2.50}"#
    );
    assert_eq!(
        docs["b"].source,
        r#"{"name":"café","big":-9223372036854775808}"#
    );
    assert_eq!(docs["b"].routing.as_deref(), Some("r1"));
    assert_eq!(
        docs["c"].source,
        r#"{"name":"東京 🚀","big":9007199254740993}"#
    );
    let aliases = target.get("/fixture-v5/_alias");
    assert!(
        aliases["fixture-v5"]["aliases"]
            .get("fixture-v5-read")
            .is_some(),
        "{aliases}"
    );
    verify_cmd(&archive, &target)
        .arg("--identity")
        .arg(&key)
        .run()
        .assert_success();
}

/// An encrypted dump killed midway leaves an encrypted checkpoint; `--resume`
/// needs the identity to read it, refuses other recipients, and completes
/// the archive encrypted to the recipients it started with.
#[test]
fn a_killed_encrypted_dump_resumes_with_its_recipients() {
    use crate::util::faults::{Fault, FaultProxy, Route, Rule, When};
    use crate::util::restore_support::Spawned;
    use std::time::Duration;

    let cluster = TestCluster::start("crypt-resume");
    let index = seed(&cluster);
    let tmp = tempfile::tempdir().unwrap();
    let (alice, alice_key) = keys(tmp.path(), "alice");
    let (bob, _) = keys(tmp.path(), "bob");
    let slow = Rule::new(
        "slow",
        Route::pages(),
        When::Every {
            every: 1,
            max: 10_000,
        },
        Fault::Slow(Duration::from_millis(300)),
    );
    let proxy = FaultProxy::start(cluster.base_url(), vec![slow]);
    let mut url = url::Url::parse(&proxy.url()).unwrap();
    if let Some((user, password)) = cluster.credentials() {
        url.set_username(user).unwrap();
        url.set_password(Some(password)).unwrap();
    }
    let url = url.as_str().trim_end_matches('/').to_string();
    let out = tmp.path().join("archive");
    let args: Vec<String> = [
        "dump",
        "--source",
        &url,
        "--output",
        &out.to_string_lossy(),
        "--match",
        &index,
        "--slices",
        "1",
        "--page-size",
        "20",
        "--compression",
        "none",
        "--file-size",
        "2KiB",
        "--encrypt-to",
        &alice,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let chunk = regex::Regex::new(r"/data-s\d{3}-\d{5}\.jsonl$").unwrap();
    let chunks = |dir: &Path| {
        if !dir.exists() {
            return 0;
        }
        files_on_disk(dir)
            .iter()
            .filter(|f| chunk.is_match(f))
            .count()
    };
    let mut run = Spawned::start(args, None);
    run.wait_until("two finished chunks", Duration::from_secs(45), || {
        chunks(&out) >= 2
    });
    run.kill9();
    run.wait(Duration::from_secs(10));
    assert!(!out.join("manifest.json").exists());
    let checkpoint = std::fs::read(out.join("checkpoint.json")).unwrap();
    assert!(checkpoint.starts_with(b"age-encryption.org/v1\n"));
    proxy.set_rules(vec![]);

    let resume = || {
        Esark::new()
            .arg("dump")
            .args(["--source", &url])
            .arg("--output")
            .arg(&out)
            .arg("--resume")
    };
    let refused = resume().run();
    assert!(
        assert_one_error_line(&refused).contains("--identity"),
        "{refused}"
    );
    let refused = resume()
        .arg("--identity")
        .arg(&alice_key)
        .args(["--encrypt-to", &bob])
        .run();
    assert_eq!(refused.code, Some(2), "{refused}");
    assert!(refused.stderr.contains("--encrypt-to"), "{refused}");
    resume()
        .arg("--identity")
        .arg(&alice_key)
        .run()
        .assert_success();
    assert_sealed(&out, &[&alice]);
    assert_eq!(manifest(&out)["indices"][0]["docs"], 300);
    inspect(&out).assert_success();
    assert!(!out.join("checkpoint.json").exists());
}
