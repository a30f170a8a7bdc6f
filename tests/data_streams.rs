//! Data streams, end to end, through the emulation of
//! [`crate::util::front::data_streams`] in front of osmem (which has none): a dump
//! reads a data stream by its name as one archive entry and never its
//! backing index on its own; a restore creates the data stream from its
//! index template and writes with `create` actions only; `--mode` applies
//! to an existing data stream; verify and copy handle it.
//!
//! They need private servers (the emulation would shadow a real cluster's
//! own data streams), so they skip under `ESARK_TEST_URL`.

use std::path::Path;

use serde_json::{json, Value};

use crate::util::esark::Esark;
use crate::util::proxy::AuthProxy;
use crate::util::restore_support::{docs_of, json_report, report_index, target_cluster};
use crate::util::server::TestCluster;
use crate::util::skip::skip;

pub(crate) const STREAM: &str = "logs-app";
pub(crate) const DOCS: usize = 600;

/// A source with the data stream `logs-app` (600 documents, big integers,
/// unicode) and a plain index `plain` (3 documents).
pub(crate) fn source(test: &str) -> Option<(TestCluster, AuthProxy)> {
    let cluster = TestCluster::start(test);
    if cluster.is_shared() {
        skip(
            test,
            "data streams are emulated in front of a private osmem",
        );
        return None;
    }
    cluster.put_index_template(
        "logs-app-template",
        &json!({
            "index_patterns": ["logs-app*"],
            "data_stream": {},
            "priority": 200,
            "template": {
                "settings": {"number_of_shards": 2},
                "mappings": {"properties": {
                    "@timestamp": {"type": "date"},
                    "msg": {"type": "text"},
                    "n": {"type": "long"}
                }}
            }
        }),
    );
    let proxy = AuthProxy::start_data_streams(&cluster);
    let client = reqwest::blocking::Client::new();
    let put = client
        .put(format!("{}/_data_stream/{STREAM}", proxy.url()))
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 200, "{:?}", put.text());
    let mut body = String::new();
    for i in 0..DOCS {
        body.push_str(&format!(
            "{{\"create\":{{\"_index\":\"{STREAM}\",\"_id\":\"d{i:04}\"}}}}\n"
        ));
        body.push_str(&format!(
            "{{\"@timestamp\":\"2026-11-{:02}T10:{:02}:00Z\",\"msg\":\"Grüße {i} 🚀\",\"n\":{}}}\n",
            1 + i % 28,
            i % 60,
            9_007_199_254_740_993u64 + i as u64
        ));
    }
    let resp: Value = client
        .post(format!("{}/_bulk?refresh=true", proxy.url()))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(resp["errors"], false, "{resp:.500}");
    assert_eq!(proxy.data_streams().creates(), DOCS);
    cluster.put("/plain", &json!({"settings": {"number_of_shards": 1}}));
    cluster.bulk(concat!(
        "{\"index\":{\"_index\":\"plain\",\"_id\":\"1\"}}\n{\"k\":1}\n",
        "{\"index\":{\"_index\":\"plain\",\"_id\":\"2\"}}\n{\"k\":2}\n",
        "{\"index\":{\"_index\":\"plain\",\"_id\":\"3\"}}\n{\"k\":3}\n"
    ));
    Some((cluster, proxy))
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn a_data_stream_round_trips_through_an_archive() {
    let Some((source, source_proxy)) = source("ds-archive") else {
        return;
    };
    let Some(target) = target_cluster("ds-archive") else {
        return;
    };
    let target_proxy = AuthProxy::start_data_streams(&target);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("archive");

    // `.*` selects hidden indices too: the backing index must still not
    // be dumped on its own, only through its data stream.
    let dump = Esark::new()
        .args(["dump", "--source", &source_proxy.url(), "--match", ".*"])
        .arg("--output")
        .arg(&out)
        .run();
    assert_eq!(dump.code, Some(0), "{dump:?}");
    let m = manifest(&out);
    assert_eq!(m["format_version"], 6);
    let names: Vec<&str> = m["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["logs-app", "plain"], "{m}");
    let entry = &m["indices"][0];
    assert_eq!(entry["data_stream"], true, "{entry}");
    assert_eq!(entry["docs"], DOCS as u64);
    assert!(
        entry["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["kind"] == "data"),
        "a data stream's metadata is its template's: {entry}"
    );
    assert!(m["indices"][1].get("data_stream").is_none());
    let streams: Value =
        serde_json::from_slice(&std::fs::read(out.join("cluster/data_streams.json")).unwrap())
            .unwrap();
    assert!(streams.get(STREAM).is_some(), "{streams}");

    // Restore: the data stream is created from its template and written
    // with `create` only (the emulation refuses anything else).
    let restore = |extra: &[&str]| {
        Esark::new()
            .arg("restore")
            .arg("--input")
            .arg(&out)
            .args(["--target", &target_proxy.url(), "--json", "--quiet"])
            .args(extra)
            .run()
    };
    let first = restore(&[]);
    assert_eq!(first.code, Some(0), "{first:?}");
    let report = json_report(&first);
    assert_eq!(
        report_index(&report, STREAM)["status"],
        "restored",
        "{report}"
    );
    let streams = target_proxy.data_streams();
    assert_eq!(streams.refused(), 0);
    assert_eq!(streams.creates(), DOCS);
    assert!(streams.backing(STREAM).is_some());
    let (before, after) = (docs_of(&source, STREAM), docs_of(&target, STREAM));
    assert_eq!(after.len(), DOCS);
    assert_eq!(before, after, "documents differ after the restore");
    assert_eq!(docs_of(&target, "plain").len(), 3);

    // The data stream exists now: --mode fail refuses, replace starts over.
    let again = restore(&[]);
    assert_ne!(again.code, Some(0), "{again:?}");
    let report = json_report(&again);
    let failed = report_index(&report, STREAM);
    assert_eq!(failed["status"], "failed", "{report}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("the data stream exists"),
        "{failed}"
    );
    let skip = restore(&["--mode", "skip-existing"]);
    assert_eq!(skip.code, Some(0), "{skip:?}");
    assert_eq!(
        report_index(&json_report(&skip), STREAM)["status"],
        "skipped"
    );
    let replaced = restore(&["--mode", "replace"]);
    assert_eq!(replaced.code, Some(0), "{replaced:?}");
    assert_eq!(docs_of(&target, STREAM), before);
    assert_eq!(streams.refused(), 0);

    // --atomic has no alias to switch for a data stream: refused, untouched.
    let atomic = restore(&["--mode", "replace", "--atomic", "--match", "^logs-app$"]);
    assert_ne!(atomic.code, Some(0), "{atomic:?}");
    assert!(
        report_index(&json_report(&atomic), STREAM)["reason"]
            .as_str()
            .unwrap()
            .contains("--atomic"),
        "{atomic:?}"
    );
    assert_eq!(docs_of(&target, STREAM).len(), DOCS);

    let verify = Esark::new()
        .arg("verify")
        .arg("--input")
        .arg(&out)
        .args(["--target", &target_proxy.url()])
        .run();
    assert_eq!(verify.code, Some(0), "{verify:?}");
}

#[test]
fn copy_carries_a_data_stream() {
    let Some((source, source_proxy)) = source("ds-copy") else {
        return;
    };
    let Some(target) = target_cluster("ds-copy") else {
        return;
    };
    let target_proxy = AuthProxy::start_data_streams(&target);
    let copy = Esark::new()
        .args(["copy", "--source", &source_proxy.url()])
        .args([
            "--target",
            &target_proxy.url(),
            "--match",
            "^logs-",
            "--quiet",
        ])
        .run();
    assert_eq!(copy.code, Some(0), "{copy:?}");
    assert_eq!(target_proxy.data_streams().creates(), DOCS);
    assert_eq!(target_proxy.data_streams().refused(), 0);
    assert_eq!(docs_of(&target, STREAM), docs_of(&source, STREAM));
}

#[test]
fn a_restore_without_the_data_stream_template_fails_with_the_servers_reason() {
    let Some((_source, source_proxy)) = source("ds-no-template") else {
        return;
    };
    let Some(target) = target_cluster("ds-no-template") else {
        return;
    };
    let target_proxy = AuthProxy::start_data_streams(&target);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("archive");
    let dump = Esark::new()
        .args(["dump", "--source", &source_proxy.url()])
        .arg("--output")
        .arg(&out)
        .run();
    assert_eq!(dump.code, Some(0), "{dump:?}");
    let restore = Esark::new()
        .arg("restore")
        .arg("--input")
        .arg(&out)
        .args([
            "--target",
            &target_proxy.url(),
            "--no-templates",
            "--json",
            "--quiet",
        ])
        .run();
    assert_ne!(restore.code, Some(0), "{restore:?}");
    let report = json_report(&restore);
    let entry = report_index(&report, STREAM);
    assert_eq!(entry["status"], "failed", "{report}");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("no matching index template"),
        "{entry}"
    );
    assert_eq!(target_proxy.data_streams().creates(), 0);
    assert_eq!(report_index(&report, "plain")["status"], "restored");
}

/// Regression: a copy into a data stream whose source slice was restarted
/// (its scroll context lost) sent the slice's documents again with
/// `create`; the target answered 409 for those it already held, and they
/// were counted as rejected (exit 3) although every document was there.
#[test]
fn copy_into_a_data_stream_after_a_restarted_source_slice_rejects_nothing() {
    use crate::util::faults::{Fault, FaultProxy, Route, Rule, When};
    let test = "ds-copy-restart";
    let Some((source, source_proxy)) = source(test) else {
        return;
    };
    let Some(target) = target_cluster(test) else {
        return;
    };
    let target_proxy = AuthProxy::start_data_streams(&target);
    let faults = FaultProxy::start(
        source_proxy.url().trim_end_matches('/'),
        vec![Rule::new(
            "context-missing",
            Route::scroll_next(),
            When::Nth(3),
            Fault::ContextMissing,
        )],
    );
    let copy = Esark::new()
        .args(["copy", "--source", &faults.url()])
        .args(["--target", &target_proxy.url(), "--match", "^logs-"])
        .args(["--reader", "scroll", "--slices", "1", "--page-size", "100"])
        .args(["--bulk-docs", "50", "--json", "--quiet"])
        .run();
    faults.assert_fired("context-missing", 1);
    assert_eq!(copy.code, Some(0), "{copy}");
    let report = json_report(&copy);
    let entry = report_index(&report, STREAM);
    assert_eq!(entry["rejected"], 0, "{report}");
    assert_eq!(entry["written"], DOCS, "{report}");
    assert!(
        target_proxy.data_streams().creates() > DOCS,
        "the restarted slice sent documents again"
    );
    assert_eq!(docs_of(&target, STREAM), docs_of(&source, STREAM));
}
