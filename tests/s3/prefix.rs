//! Who writes under a prefix: `--overwrite` deletes the old archive
//! (manifest first) and nothing beside the prefix; the dump lock refuses a
//! second dump, whether the first is running or was killed, until
//! `--resume` takes it over.

use std::time::Duration;

use serde_json::{json, Value};

use super::{docs, esark, restore, BUCKET};
use crate::util::check::assert_one_error_line;
use crate::util::esark::Output;
use crate::util::faults::{FaultProxy, Route};
use crate::util::fixture::Fixture;
use crate::util::moto::Moto;
use crate::util::restore_support::{
    assert_same_stored, docs_of, seed_index, target_args, target_cluster, try_count, Spawned,
};
use crate::util::server::{BulkBody, TestCluster};

const LOCK: &str = ".esark-dump.lock";

/// Asserts a dump refused as a usage error (exit 2, like a non-empty
/// folder) in one `error:` line, and returns it.
fn refused_line(run: &Output) -> String {
    assert_eq!(run.code, Some(2), "expected exit 2\n{run}");
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "expected one stderr line\n{run}");
    assert!(lines[0].starts_with("error:"), "{run}");
    lines[0].to_string()
}

/// `dump --match REGEX --output URL EXTRA...`.
fn dump_cmd(cluster: &TestCluster, regex: &str, url: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["dump".to_string()];
    args.extend(cluster.source_args());
    args.extend([
        "--match".into(),
        regex.into(),
        "--output".into(),
        url.into(),
    ]);
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Issue 15: `dump --overwrite` of a prefix was refused. Now the old archive
/// is deleted first (a warning says so), its objects that the new archive
/// does not have are gone, a sibling prefix (`ow2/`, `ow-x`) is untouched,
/// and the new archive restores exactly.
#[test]
fn s3_overwrite_replaces_the_archive_and_nothing_beside_the_prefix() {
    let Some(moto) = Moto::start("s3-overwrite") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let source = TestCluster::start("s3-overwrite");
    let Some(target) = target_cluster("s3-overwrite") else {
        return;
    };
    let (a, b) = (source.name("a"), source.name("b"));
    let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}});
    seed_index(&source, &a, &body, &docs(300, 100));
    seed_index(&source, &b, &body, &docs(100, 100));
    let url = format!("s3://{BUCKET}/ow");
    let both = format!("^({}|{})$", regex::escape(&a), regex::escape(&b));
    let first = dump_cmd(&source, &both, &url, &["--file-size", "8KiB"]);
    esark(&moto).args(&first).run().assert_success();
    moto.put_object(BUCKET, "ow2/x", b"sibling".to_vec());
    moto.put_object(BUCKET, "ow-x", b"beside".to_vec());
    let old = moto.keys(BUCKET, "ow/");
    assert!(old.iter().any(|k| k.contains(&b)), "{old:?}");

    // New data in `a` (changed and added documents); `b` not selected.
    let mut bulk = BulkBody::new();
    for i in 0..150 {
        bulk.index(&a, &format!("d{i}"), None, &format!(r#"{{"v":2,"i":{i}}}"#));
    }
    for i in 0..40 {
        bulk.index(
            &a,
            &format!("new{i}"),
            None,
            &format!(r#"{{"v":2,"n":{i}}}"#),
        );
    }
    source.bulk(bulk.as_str());
    source.refresh(&a);
    let expected = docs_of(&source, &a);
    assert_eq!(expected.len(), 340);

    // Without --overwrite: refused, nothing written.
    let only_a = Fixture::exactly(&a);
    let refused = esark(&moto)
        .args(dump_cmd(&source, &only_a, &url, &[]))
        .run();
    refused_line(&refused);
    assert_eq!(moto.keys(BUCKET, "ow/"), old, "a refused dump wrote");

    let run = esark(&moto)
        .args(dump_cmd(&source, &only_a, &url, &["--overwrite"]))
        .run();
    run.assert_success();
    assert!(
        run.stderr.contains("removed the old archive") && run.stderr.contains(&url),
        "no warning that the old archive went\n{run}"
    );
    let keys = moto.keys(BUCKET, "ow/");
    assert!(keys.contains(&"ow/manifest.json".to_string()), "{keys:?}");
    assert!(
        !keys.iter().any(|k| k.contains(&b)),
        "old objects of b left: {keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.ends_with(LOCK)),
        "lock left: {keys:?}"
    );
    let manifest: Value =
        serde_json::from_slice(&moto.get_object(BUCKET, "ow/manifest.json")).unwrap();
    let listed: Vec<String> = manifest["indices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["files"].as_array().unwrap().iter())
        .chain(manifest["cluster_files"].as_array().unwrap().iter())
        .map(|f| format!("ow/{}", f["path"].as_str().unwrap()))
        .collect();
    for key in keys.iter().filter(|k| *k != "ow/manifest.json") {
        assert!(listed.contains(key), "{key} is not of the new archive");
    }
    assert_eq!(moto.get_object(BUCKET, "ow2/x"), b"sibling");
    assert_eq!(moto.get_object(BUCKET, "ow-x"), b"beside");

    restore(&moto, &url, &target).assert_success();
    assert_same_stored(
        &expected,
        &docs_of(&target, &a),
        "restored after --overwrite",
    );
    assert_eq!(
        try_count(&target, &b),
        None,
        "b came back from the old archive"
    );
}

/// Issue 15: two dumps into one prefix both listed it empty and wrote side
/// by side until the manifest. Now the first one's lock refuses a second
/// dump, which writes nothing (every request it makes goes through a proxy:
/// none writes); a dump killed with its lock is refused too, with the lock
/// message; `inspect`, `restore` and `verify` see no archive; `--resume`
/// takes the lock over and completes exactly.
#[test]
fn s3_dump_lock_refuses_a_second_dump_until_resume() {
    let Some(moto) = Moto::start("s3-lock") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let source = TestCluster::start("s3-lock");
    let Some(target) = target_cluster("s3-lock") else {
        return;
    };
    let index = source.name("l");
    let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}});
    let seeded = seed_index(&source, &index, &body, &docs(9_000, 100));
    let url = format!("s3://{BUCKET}/l");
    let env: Vec<(&str, String)> = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let slow = [
        "--file-size",
        "16KiB",
        "--compression",
        "none",
        "--page-size",
        "50",
        "--slices",
        "1",
    ];
    let args = dump_cmd(&source, &Fixture::exactly(&index), &url, &slow);
    let mut first = Spawned::start_with_env(&args, None, &env);
    let lock_key = format!("l/{LOCK}");
    first.wait_until("the lock and a chunk", Duration::from_secs(120), || {
        let keys = moto.keys(BUCKET, "l/");
        keys.contains(&lock_key) && keys.iter().any(|k| k.contains("/data-"))
    });
    let lock_bytes = moto.get_object(BUCKET, &lock_key);
    let lock: Value = serde_json::from_slice(&lock_bytes).unwrap();
    for field in ["run_id", "host", "started_at"] {
        assert!(
            lock[field].as_str().is_some_and(|v| !v.is_empty()),
            "{lock}"
        );
    }
    assert!(lock["pid"].as_u64().is_some_and(|p| p > 0), "{lock}");

    // A second dump while the first runs: refused, and nothing it sent writes.
    let proxy = FaultProxy::start(&moto.url, vec![]);
    let second = esark(&moto)
        .env("AWS_ENDPOINT_URL_S3", &proxy.url())
        .args(&args)
        .run();
    let line = refused_line(&second);
    assert!(line.contains(&url), "must name the prefix: {line}");
    assert!(line.contains("another dump is writing there"), "{line}");
    let run_id = lock["run_id"].as_str().unwrap();
    assert!(line.contains(run_id), "must say whose lock: {line}");
    assert!(proxy.requests() > 0, "the second dump never reached S3");
    for method in ["PUT", "POST", "DELETE"] {
        assert_eq!(
            proxy.requests_matching(&Route::new(method, "")),
            0,
            "the refused dump sent a {method}\n{}",
            proxy.log()
        );
    }

    first.kill9();
    first.wait(Duration::from_secs(30));
    let keys = moto.keys(BUCKET, "l/");
    assert!(
        !keys.contains(&"l/manifest.json".to_string()),
        "the dump finished before the kill: make it longer"
    );
    assert_eq!(moto.get_object(BUCKET, &lock_key), lock_bytes);

    // No archive for readers; the lock is not taken for one.
    let inspect = esark(&moto).args(["inspect", &url]).run();
    assert!(
        assert_one_error_line(&inspect).contains("no manifest.json"),
        "{inspect}"
    );
    let refused = restore(&moto, &url, &target);
    assert!(assert_one_error_line(&refused).contains("no manifest.json"));
    assert_eq!(try_count(&target, &index), None, "restore wrote");
    let verify = esark(&moto)
        .args(["verify", "--input", &url])
        .args(target_args(&target))
        .run();
    assert!(assert_one_error_line(&verify).contains("no manifest.json"));

    // A killed dump's lock: refused the same way, nothing written.
    let again = esark(&moto).args(&args).run();
    let line = refused_line(&again);
    assert!(line.contains("another dump is writing there") && line.contains("--resume"));
    assert_eq!(moto.keys(BUCKET, "l/"), keys, "a refused dump wrote");

    let mut resume = args.clone();
    resume.push("--resume".into());
    esark(&moto)
        .args(&resume)
        .timeout(Duration::from_secs(300))
        .run()
        .assert_success();
    let keys = moto.keys(BUCKET, "l/");
    assert!(keys.contains(&"l/manifest.json".to_string()), "{keys:?}");
    assert!(
        !keys
            .iter()
            .any(|k| k.ends_with(LOCK) || k.contains("checkpoint")),
        "{keys:?}"
    );
    restore(&moto, &url, &target).assert_success();
    target.refresh(&index);
    assert_eq!(
        target.count(&index),
        seeded.len() as u64,
        "every document once"
    );
    assert_same_stored(&seeded, &docs_of(&target, &index), "resumed after a kill");
}
