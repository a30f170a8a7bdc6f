//! What a dump and a restore ask of S3, per object, counted at a relaying
//! proxy in front of moto (on object storage every request is some 10 ms
//! and billed). A new dump lists the prefix once, not once per index. A
//! restore's checks before the first write download each object of the
//! archive once (the manifest, metadata and data, no `HEAD`), the parse
//! and the load read the local copies in its spool, and nothing is left
//! behind; the same restore with `--spool-limit 0` downloads each object
//! twice, so the count tells the two apart.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::{docs, dump, esark, BUCKET};
use crate::util::faults::FaultProxy;
use crate::util::moto::Moto;
use crate::util::restore_support::{
    assert_same_stored, docs_of, seed_index, target_args, target_cluster,
};
use crate::util::server::TestCluster;

/// `METHOD key` of each request for an object under `prefix/` that the
/// proxy relayed, with how many there were.
fn requests(proxy: &FaultProxy, prefix: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let under = format!("/{BUCKET}/{prefix}/");
    for event in proxy.events() {
        let path = event.target.split('?').next().unwrap_or_default();
        if let Some(key) = path.strip_prefix(&under) {
            *seen.entry(format!("{} {key}", event.method)).or_insert(0) += 1;
        }
    }
    seen
}

/// `LIST` requests (`GET /BUCKET?list-type=2…`) the proxy relayed.
fn lists(proxy: &FaultProxy) -> usize {
    let listing = format!("/{BUCKET}?");
    let events = proxy.events();
    let gets = events.iter().filter(|e| e.method == "GET");
    gets.filter(|e| e.target.starts_with(&listing) && e.target.contains("list-type"))
        .count()
}

#[test]
fn s3_new_dump_lists_its_prefix_once() {
    let Some(moto) = Moto::start("s3-lists") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let source = TestCluster::start("s3-lists");
    let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}});
    for name in ["a", "b", "c", "d"] {
        seed_index(&source, &source.name(name), &body, &docs(50, 100));
    }
    let proxy = FaultProxy::start(&moto.url, vec![]);
    let run = esark(&moto)
        .env("AWS_ENDPOINT_URL_S3", &proxy.url())
        .arg("dump")
        .args(source.source_args())
        .args([
            "--match",
            &format!("^{}-.*$", regex::escape(source.prefix())),
        ])
        .args(["--output", &format!("s3://{BUCKET}/lists")])
        .timeout(Duration::from_secs(180))
        .run();
    run.assert_success();
    let data = moto
        .keys(BUCKET, "lists/")
        .iter()
        .filter(|k| k.contains("/data-"))
        .count();
    assert_eq!(data, 4, "{:?}", moto.keys(BUCKET, "lists/"));
    assert_eq!(lists(&proxy), 1, "LIST requests\n{}", proxy.log());
}

#[test]
fn s3_restore_downloads_each_object_once() {
    let Some(moto) = Moto::start("s3-spool") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let source = TestCluster::start("s3-spool");
    let Some(target) = target_cluster("s3-spool") else {
        return;
    };
    let index = source.name("once");
    let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}});
    let seeded = seed_index(&source, &index, &body, &docs(1200, 200));
    let url = format!("s3://{BUCKET}/once");
    let small = ["--file-size", "16KiB", "--page-size", "100"];
    dump(&moto, &source, &index, &url, &small).assert_success();
    // Keys as the proxy sees them in paths (object_store escapes `%`).
    let keys: Vec<String> = moto
        .keys(BUCKET, "once/")
        .iter()
        .map(|k| k.strip_prefix("once/").unwrap().replace('%', "%25"))
        .collect();
    let data = keys.iter().filter(|k| k.contains("/data-")).count();
    assert!(data > 3, "{keys:?}");
    // Each object of the archive asked for with `n` GETs and no HEAD.
    let each = |n: usize| -> BTreeMap<String, usize> {
        keys.iter().map(|k| (format!("GET {k}"), n)).collect()
    };

    let restore = |proxy: &FaultProxy, spool: &std::path::Path, extra: &[&str]| {
        esark(&moto)
            .env("AWS_ENDPOINT_URL_S3", &proxy.url())
            .args(["restore", "--input", &url])
            .args(target_args(&target))
            .arg("--spool-dir")
            .arg(spool)
            .args(extra)
            .timeout(Duration::from_secs(180))
            .run()
    };

    let proxy = FaultProxy::start(&moto.url, vec![]);
    let spool = tempfile::tempdir().unwrap();
    restore(&proxy, spool.path(), &[]).assert_success();
    let stored = docs_of(&target, &index);
    assert_same_stored(&seeded, &stored, "restored through the spool");
    let seen = requests(&proxy, "once");
    assert_eq!(seen, each(1), "requests per object\n{}", proxy.log());
    let left: Vec<_> = std::fs::read_dir(spool.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "the spool was left behind: {left:?}");

    // Without the spool, the checks and the reads after them each
    // download it.
    let proxy = FaultProxy::start(&moto.url, vec![]);
    let off = ["--mode", "replace", "--spool-limit", "0"];
    restore(&proxy, spool.path(), &off).assert_success();
    let stored = docs_of(&target, &index);
    assert_same_stored(&seeded, &stored, "restored without the spool");
    let seen = requests(&proxy, "once");
    assert_eq!(seen, each(2), "requests per object\n{}", proxy.log());
}
