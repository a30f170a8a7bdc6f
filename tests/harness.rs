//! Checks of the test helpers themselves, against a real osmem (or the
//! `ESARK_TEST_URL` cluster), so that a dump test failing means esark is
//! wrong rather than the harness. None of these run the esark binary.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::util::archive::{self, Archive};
use crate::util::faults::{Fault, FaultProxy, Route, Rule, When};
use crate::util::proxy::AuthProxy;
use crate::util::server::{enc, BulkBody, TestCluster};

#[test]
fn harness_encodes_names_for_paths() {
    assert_eq!(enc("%kuzzle"), "%25kuzzle");
    assert_eq!(enc(".hidden-x_y"), ".hidden-x_y");
    assert_eq!(enc("a b/c?d#é"), "a%20b%2Fc%3Fd%23%C3%A9");
    assert_eq!(
        crate::util::esark::redact("--source=https://u:p%40ss@h:9200/x"),
        "--source=https://u:***@h:9200/x"
    );
    assert_eq!(
        crate::util::esark::redact("http://h:9200/a@b"),
        "http://h:9200/a@b"
    );
}

#[test]
fn harness_seeds_and_counts() {
    let cluster = TestCluster::start("harness-seed");
    let prefix = cluster.prefix().to_string();
    assert!(prefix.starts_with("esark-test-harness-seed-"));
    assert_eq!(prefix, prefix.to_lowercase());

    let kuzzle = format!("%{prefix}-kuzzle");
    let hidden = format!(".{prefix}-hidden");
    cluster.create_index(&kuzzle, &json!({"settings": {"number_of_shards": 2}}));
    cluster.create_index(&hidden, &json!({"settings": {"index.hidden": true}}));

    let mut bulk = BulkBody::new();
    let sources = [
        r#"{"big":9223372036854775807,"z":1,"a":"😀 中文 עברית"}"#,
        r#"{"big":-9223372036854775808,"n":{"x":[1,2],"y":{"z":null}},"f":1.50}"#,
    ];
    for i in 0..300 {
        let source = sources[i % 2];
        let routing = (i % 3 == 0).then_some("r-1");
        bulk.index(&kuzzle, &format!("id-{i}"), routing, source);
    }
    bulk.index(&hidden, "h1", None, r#"{"h":true}"#);
    assert_eq!(bulk.len(), 301);
    cluster.bulk(bulk.as_str());

    assert_eq!(cluster.count(&kuzzle), 300);
    assert_eq!(cluster.count(&hidden), 1);
    assert_eq!(
        cluster.settings(&hidden)["index"]["hidden"],
        json!("true"),
        "index.hidden"
    );
    assert_eq!(cluster.settings(&kuzzle)["index"]["number_of_shards"], "2");

    // The server returns a compact _source verbatim (key order, big numbers).
    let text = cluster.get_text(&format!("/{}/_doc/id-1", enc(&kuzzle)));
    assert!(text.contains(sources[1]), "{text}");

    cluster.close_index(&hidden);
    let cat = cluster.get("/_cat/indices?format=json&expand_wildcards=all");
    let status_of = |name: &str| {
        cat.as_array()
            .unwrap()
            .iter()
            .find(|i| i["index"] == name)
            .map(|i| i["status"].clone())
    };
    assert_eq!(status_of(&hidden), Some(json!("close")));
    assert_eq!(status_of(&kuzzle), Some(json!("open")));
}

#[test]
fn harness_proxy_requires_basic_auth() {
    let cluster = TestCluster::start("harness-proxy");
    let proxy = AuthProxy::start(&cluster, "alice", "correct-horse");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let none = client.get(proxy.url() + "/").send().unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(
        none.headers()["www-authenticate"].to_str().unwrap(),
        "Basic realm=\"security\""
    );
    let body: Value = none.json().unwrap();
    assert_eq!(body["status"], 401);
    assert_eq!(body["error"]["type"], "security_exception");

    let wrong = client
        .get(proxy.url() + "/_cat/indices")
        .basic_auth("alice", Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().unwrap();
    assert_eq!(
        body["error"]["reason"],
        "unable to authenticate user [alice] for REST request [/_cat/indices]"
    );
    assert_eq!(proxy.rejected(), 2);

    // Keep-alive: several requests, with and without bodies, one client.
    let index = cluster.name("proxied");
    for i in 0..5 {
        let resp = client
            .get(proxy.url() + "/")
            .basic_auth("alice", Some("correct-horse"))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        let info: Value = resp.json().unwrap();
        assert!(info["version"]["number"].is_string(), "{info}");
    }
    cluster.create_index(&index, &json!({}));
    let mut bulk = BulkBody::new();
    bulk.index(&index, "1", None, r#"{"a":1}"#);
    bulk.index(&index, "2", Some("r"), r#"{"a":2}"#);
    let resp = client
        .post(proxy.url() + "/_bulk?refresh=true")
        .basic_auth("alice", Some("correct-horse"))
        .header("content-type", "application/x-ndjson")
        .body(bulk.as_str().to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let head = client
        .head(format!("{}/{}", proxy.url(), enc(&index)))
        .basic_auth("alice", Some("correct-horse"))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    let missing = client
        .get(format!("{}/{}/_doc/nope", proxy.url(), enc(&index)))
        .basic_auth("alice", Some("correct-horse"))
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404, "upstream errors are relayed");
    assert_eq!(cluster.count(&index), 2);
    assert_eq!(proxy.rejected(), 2);
    assert_eq!(proxy.forwarded(), 8);

    // Credentials in the URL, percent-encoded where needed.
    let url = proxy.url_with_credentials("alice", "p@ss:w/rd");
    assert!(
        url.starts_with("http://alice:p%40ss%3Aw%2Frd@127.0.0.1:"),
        "{url}"
    );
}

#[test]
fn harness_reads_archive_folders() {
    let dir = tempfile::tempdir().unwrap();
    let lines = concat!(
        r#"{"_id":"a","_source":{"z":1,"big":9223372036854775807}}"#,
        "\n",
        r#"{"_id":"b\u00e9","_routing":"r1","_source":{"t":"😀","n":{"x":[1,2]}}}"#,
        "\n"
    );
    std::fs::create_dir_all(dir.path().join("indices/%25x")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let zst = rt.block_on(async {
        // Two frames, as a writer that flushes per page would produce.
        let mut out = Vec::new();
        for half in [
            &lines[..lines.find('\n').unwrap() + 1],
            &lines[lines.find('\n').unwrap() + 1..],
        ] {
            let mut enc = async_compression::tokio::write::ZstdEncoder::new(Vec::new());
            enc.write_all(half.as_bytes()).await.unwrap();
            enc.shutdown().await.unwrap();
            out.extend(enc.into_inner());
        }
        out
    });
    let gz = rt.block_on(async {
        let mut enc = async_compression::tokio::write::GzipEncoder::new(Vec::new());
        enc.write_all(lines.as_bytes()).await.unwrap();
        enc.shutdown().await.unwrap();
        enc.into_inner()
    });
    let files = [
        ("indices/%25x/data-s000-00000.jsonl.zst", zst),
        ("indices/%25x/data-s001-00000.jsonl.gz", gz),
        (
            "indices/%25x/data-s002-00000.jsonl",
            lines.as_bytes().to_vec(),
        ),
        (
            "indices/%25x/settings.json",
            br#"{"index":{"number_of_shards":"1"}}"#.to_vec(),
        ),
    ];
    let mut entries = Vec::new();
    for (rel, bytes) in &files {
        std::fs::write(dir.path().join(rel), bytes).unwrap();
        let kind = if rel.ends_with("settings.json") {
            "settings"
        } else {
            "data"
        };
        entries.push(json!({"kind": kind, "path": rel, "bytes": bytes.len(),
            "sha256": archive::sha256_file(&dir.path().join(rel))}));
    }
    let manifest = json!({"format": "esark-archive", "format_version": 1,
        "indices": [{"name": "%x", "folder": "indices/%25x", "docs": 6, "files": entries}],
        "skipped": [{"name": "c", "reason": "closed"}]});
    std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();

    let archive = Archive::open(dir.path());
    assert_eq!(archive.index_names(), vec!["%x"]);
    assert_eq!(
        archive.skipped(),
        vec![("c".to_string(), "closed".to_string())]
    );
    assert_eq!(
        archive.metadata("%x", "settings")["index"]["number_of_shards"],
        "1"
    );
    let docs = archive.docs("%x");
    assert_eq!(docs.len(), 6);
    for chunk in docs.chunks(2) {
        assert_eq!(chunk[0].id, "a");
        assert_eq!(chunk[0].routing, None);
        assert_eq!(chunk[0].source, r#"{"z":1,"big":9223372036854775807}"#);
        assert_eq!(chunk[1].id, "bé");
        assert_eq!(chunk[1].routing.as_deref(), Some("r1"));
        assert_eq!(chunk[1].source, r#"{"t":"😀","n":{"x":[1,2]}}"#);
        assert!(chunk[1].extra_keys.is_empty());
    }
    assert_eq!(
        archive::files_on_disk(dir.path()),
        vec![
            "indices/%25x/data-s000-00000.jsonl.zst",
            "indices/%25x/data-s001-00000.jsonl.gz",
            "indices/%25x/data-s002-00000.jsonl",
            "indices/%25x/settings.json",
            "manifest.json",
        ]
    );
}

#[test]
fn harness_builds_complement_regexes() {
    let prefixes = ["esark-test-x-ab", "%esark-test-x-ab", ".esark-test-x-ab"];
    let re = regex::Regex::new(&crate::util::fixture::not_starting_with(&prefixes)).unwrap();
    for kept_out in [
        "esark-test-x-ab",
        "esark-test-x-ab-main",
        "%esark-test-x-ab-kuzzle",
        ".esark-test-x-ab-hidden",
    ] {
        assert!(!re.is_match(kept_out), "{kept_out} must not match {re}");
    }
    for excluded in [
        "esark-test-x-ac-main",
        "esark-test-x-a",
        "esark",
        "%kuzzle",
        ".kibana",
        "logs-2024",
        "e",
        "%",
        "日本語",
        "esark-test-y-ab-main",
    ] {
        assert!(re.is_match(excluded), "{excluded} must match {re}");
    }
}

/// The test front (hyper) reads a chunked request body whole before its
/// layers see it, and a reset fault really breaks the connection: what the
/// hand-written parsers it replaced did.
#[test]
fn harness_front_relays_chunked_bodies_and_injects_resets() {
    let cluster = TestCluster::start("harness-front");
    let index = cluster.name("front");
    let health = Route::new("GET", "^/_cluster/health$");
    let rule = Rule::new("reset", health, When::Nth(1), Fault::ResetBeforeForward);
    let proxy = FaultProxy::start(cluster.base_url(), vec![rule]);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let bulk = format!("{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"1\"}}}}\n{{\"a\":1}}\n");
    // A reader of unknown length goes out with `transfer-encoding: chunked`.
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(bulk.into_bytes()));
    let resp = client
        .post(proxy.url() + "/_bulk?refresh=true")
        .header("content-type", "application/x-ndjson")
        .body(chunked)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(proxy.body_lines(&Route::bulk()), 2, "{}", proxy.log());
    assert_eq!(cluster.count(&index), 1);

    let reset = client.get(proxy.url() + "/_cluster/health").send();
    assert!(reset.is_err(), "answered despite the reset: {reset:?}");
    proxy.assert_fired("reset", 1);
    let again = client.get(proxy.url() + "/_cluster/health").send().unwrap();
    assert_eq!(again.status(), 200);
}
