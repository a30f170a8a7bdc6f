//! The restore's spool on S3: the check before the first write downloads
//! each data object, the load reads the local copy, and nothing is left
//! behind. Counted at a relaying proxy in front of moto; the same restore
//! with `--spool-limit 0` downloads each object twice, so the count tells
//! the two apart.

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

/// GETs of each data object's file name that the proxy relayed.
fn data_gets(proxy: &FaultProxy) -> BTreeMap<String, usize> {
    let mut gets = BTreeMap::new();
    for event in proxy.events() {
        let path = event.target.split('?').next().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default();
        if event.method == "GET" && name.starts_with("data-") {
            *gets.entry(name.to_string()).or_insert(0) += 1;
        }
    }
    gets
}

#[test]
fn s3_restore_downloads_each_data_object_once() {
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
    let data: Vec<String> = moto
        .keys(BUCKET, "once/")
        .iter()
        .filter_map(|k| k.rsplit('/').next())
        .filter(|name| name.starts_with("data-"))
        .map(str::to_string)
        .collect();
    assert!(data.len() > 3, "{data:?}");

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
    let once =
        |n: usize| -> BTreeMap<String, usize> { data.iter().map(|k| (k.clone(), n)).collect() };

    let proxy = FaultProxy::start(&moto.url, vec![]);
    let spool = tempfile::tempdir().unwrap();
    restore(&proxy, spool.path(), &[]).assert_success();
    assert_same_stored(
        &seeded,
        &docs_of(&target, &index),
        "restored through the spool",
    );
    assert_eq!(
        data_gets(&proxy),
        once(1),
        "downloads per data object\n{}",
        proxy.log()
    );
    let left: Vec<_> = std::fs::read_dir(spool.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "the spool was left behind: {left:?}");

    // Without the spool, the check and the load each download it.
    let proxy = FaultProxy::start(&moto.url, vec![]);
    restore(
        &proxy,
        spool.path(),
        &["--mode", "replace", "--spool-limit", "0"],
    )
    .assert_success();
    assert_same_stored(
        &seeded,
        &docs_of(&target, &index),
        "restored without the spool",
    );
    assert_eq!(
        data_gets(&proxy),
        once(2),
        "downloads per data object\n{}",
        proxy.log()
    );
}
