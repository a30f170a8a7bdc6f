//! A dump of many small indices (issue 14: the per-index cost): an index
//! listed with no more documents than a page is read in one search
//! without a context (no `_count`, no scroll to open and clear), and the
//! settings, mappings and aliases of the indices are read a batch at a
//! time. Counted at a relaying proxy; an index that grew after the listing
//! is still dumped whole, and lost or refused answers to the one search
//! leave each document archived once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::dump::assert_archived_once;
use crate::util::archive::Archive;
use crate::util::esark::{Esark, Output};
use crate::util::faults::{Fault, FaultProxy, Route, Rule, When};
use crate::util::restore_support::{seed_index, Spawned, Stored};
use crate::util::server::{BulkBody, TestCluster};

/// `n` documents `{"i":…,"t":"…"}` with ids `<tag>0`…
fn docs(tag: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("{tag}{i}"),
                format!(r#"{{"i":{i},"t":"text {i}"}}"#),
            )
        })
        .collect()
}

fn one_shard() -> serde_json::Value {
    json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
}

/// `esark dump` of every index of `cluster`'s test prefix through `url`.
fn dump(cluster: &TestCluster, url: &str, out: &std::path::Path, extra: &[&str]) -> Esark {
    Esark::new()
        .args(["dump", "--source", url, "--output"])
        .arg(out)
        .args(["--match", &format!("^{}-", regex::escape(cluster.prefix()))])
        .args(extra)
        .timeout(Duration::from_secs(180))
}

fn assert_code(run: &Output, code: i32, proxy: &FaultProxy) {
    assert_eq!(run.code, Some(code), "{run}\n{}", proxy.log());
}

/// The manifest's entry of `index` says it was read as the cluster held it.
fn assert_manifest_counts(dir: &std::path::Path, index: &str, docs: usize) {
    let archive = Archive::open(dir);
    let entry = archive.index(index);
    assert_eq!(entry["docs"], docs, "{index}: {entry}");
    assert_eq!(entry["expected_docs"], docs, "{index}: {entry}");
}

#[test]
fn small_indices_are_dumped_in_one_request_each() {
    let test = "dump-small-indices";
    let source = TestCluster::start(test);
    let small: Vec<String> = (0..25).map(|i| source.name(&format!("t{i:02}"))).collect();
    let seeded: Vec<BTreeMap<String, Stored>> = small
        .iter()
        .map(|name| seed_index(&source, name, &one_shard(), &docs("d", 10)))
        .collect();
    // More than a page (100 documents here): counted, read with a scroll.
    let big = source.name("big");
    let big_seeded = seed_index(&source, &big, &one_shard(), &docs("b", 300));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");

    let proxy = FaultProxy::start(source.base_url(), vec![]);
    let run = dump(
        &source,
        &proxy.url(),
        &out,
        &["--page-size", "100", "--reader", "scroll"],
    )
    .run();
    assert_code(&run, 0, &proxy);
    let count = |method: &str, path: &str| proxy.requests_matching(&Route::new(method, path));
    for name in &small {
        let at = regex::escape(name);
        let what = format!("{name}\n{}", proxy.log());
        assert_eq!(
            count("GET", &format!("^/{at}/_count$")),
            0,
            "counted: {what}"
        );
        assert_eq!(
            count("POST", &format!("^/{at}/_search$")),
            1,
            "searched: {what}"
        );
        for section in ["_mapping", "_settings", "_alias"] {
            assert_eq!(
                count("GET", &format!("^/{at}/{section}$")),
                0,
                "{section} of it alone: {what}"
            );
        }
    }
    let at = regex::escape(&big);
    assert_eq!(
        count("GET", &format!("^/{at}/_count$")),
        1,
        "{}",
        proxy.log()
    );
    assert!(count("POST", "^/_search/scroll$") >= 2, "{}", proxy.log());
    // One scroll cleared: the big index's.
    assert_eq!(count("DELETE", "^/_search/scroll$"), 1, "{}", proxy.log());
    // 26 indices: a first batch of 10, then the other 16; three sections each.
    let batched = count("GET", "^/[^/_][^/]*,[^/]*/_(mapping|settings|alias)$");
    assert_eq!(batched, 6, "batched metadata requests\n{}", proxy.log());

    for (name, expected) in small.iter().zip(&seeded) {
        assert_archived_once(&out, name, expected);
        assert_manifest_counts(&out, name, expected.len());
    }
    assert_archived_once(&out, &big, &big_seeded);
    assert_manifest_counts(&out, &big, big_seeded.len());
    let mapping = &Archive::open(&out).metadata(&small[3], "mappings");
    assert_eq!(
        mapping["properties"]["i"]["type"], "long",
        "the batch's mapping of {}: {mapping}",
        small[3]
    );
}

/// The listing said 10 documents; 30 more arrive (and are refreshed)
/// before the search, held at the proxy: the search's total says 40, more
/// than its page of 20, and the index is read with a scroll instead,
/// every document once.
#[test]
fn an_index_grown_after_the_listing_is_dumped_whole() {
    let test = "dump-grown-index";
    let source = TestCluster::start(test);
    let name = source.name("grows");
    let mut seeded = seed_index(&source, &name, &one_shard(), &docs("d", 10));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    let proxy = FaultProxy::start(
        source.base_url(),
        vec![Rule::new(
            "held search",
            Route::new("POST", &format!("^/{}/_search$", regex::escape(&name))),
            When::Nth(1),
            Fault::Slow(Duration::from_secs(3)),
        )],
    );
    let mut args: Vec<String> = ["dump", "--source", &proxy.url(), "--output"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(out.to_string_lossy().into_owned());
    args.extend(
        ["--match", &format!("^{}$", regex::escape(&name))]
            .iter()
            .map(|s| s.to_string()),
    );
    args.extend(
        ["--page-size", "20", "--reader", "scroll"]
            .iter()
            .map(|s| s.to_string()),
    );
    let mut run = Spawned::start(&args, None);
    run.wait_until("the search held", Duration::from_secs(60), || {
        proxy.fired("held search") >= 1
    });
    let mut bulk = BulkBody::new();
    for (id, doc) in docs("late", 30) {
        bulk.index(&name, &id, None, &doc);
        seeded.insert(
            id,
            Stored {
                routing: None,
                source: doc,
            },
        );
    }
    source.bulk(bulk.as_str());
    source.refresh(&name);
    let run = run.wait(Duration::from_secs(120));
    assert_code(&run, 0, &proxy);
    let at = regex::escape(&name);
    let count = |method: &str, path: &str| proxy.requests_matching(&Route::new(method, path));
    // The search (its answer dropped), then the scroll's first page.
    assert_eq!(
        count("POST", &format!("^/{at}/_search$")),
        2,
        "{}",
        proxy.log()
    );
    assert!(count("POST", "^/_search/scroll$") >= 1, "{}", proxy.log());
    assert_archived_once(&out, &name, &seeded);
    assert_manifest_counts(&out, &name, 40);
}

/// The one search of a small index lost after the server answered, refused
/// with 503 and reset before it was forwarded: it holds no cursor, so it is
/// asked again in place, and each document is archived once.
#[test]
fn small_index_searches_lost_or_refused_are_asked_again() {
    let test = "dump-small-faults";
    let source = TestCluster::start(test);
    let names: Vec<String> = (0..4).map(|i| source.name(&format!("s{i}"))).collect();
    let seeded: Vec<BTreeMap<String, Stored>> = names
        .iter()
        .map(|name| seed_index(&source, name, &one_shard(), &docs("d", 15)))
        .collect();
    let search = Route::new("POST", r"^/[^/_][^/]*/_search$");
    let proxy = FaultProxy::start(
        source.base_url(),
        vec![
            Rule::new(
                "search-lost",
                search.clone(),
                When::At(vec![1, 4]),
                Fault::LoseResponse,
            ),
            Rule::new(
                "search-503",
                search.clone(),
                When::Nth(2),
                Fault::Status(503),
            ),
            Rule::new(
                "search-reset",
                search.clone(),
                When::Nth(3),
                Fault::ResetBeforeForward,
            ),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    let run = dump(&source, &proxy.url(), &out, &["--reader", "scroll"]).run();
    assert_code(&run, 0, &proxy);
    for rule in ["search-lost", "search-503", "search-reset"] {
        proxy.assert_fired(rule, 1);
    }
    // Nothing but searches: no scroll was opened for any of them.
    assert_eq!(
        proxy.requests_matching(&Route::new("POST", "^/_search/scroll$")),
        0,
        "{}",
        proxy.log()
    );
    for (name, expected) in names.iter().zip(&seeded) {
        assert_archived_once(&out, name, expected);
        assert_manifest_counts(&out, name, expected.len());
    }
}
