//! A restore of many small indices (issue 14: the per-index cost): the
//! target's names are listed once instead of looked up per index, and an
//! index that one bulk request holds is created with its archived settings
//! instead of being tuned for the load and put back (`PUT _settings`, a
//! cluster-state update per index). Counted at a relaying proxy; a name
//! taken on the target after the listing is decided again, never written
//! into.

use std::time::Duration;

use serde_json::json;

use crate::util::esark::{Esark, Output};
use crate::util::faults::{Fault, FaultProxy, Route, Rule, When};
use crate::util::restore_support::{
    assert_same_stored, docs_of, dump_archive, seed_index, target_cluster, Spawned,
};
use crate::util::server::TestCluster;

/// `n` documents `{"i":…,"t":"…"}` with ids `d0`…
fn docs(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("d{i}"), format!(r#"{{"i":{i},"t":"text {i}"}}"#)))
        .collect()
}

/// `esark restore --input archive` into `url` (the proxy in front of the
/// target), with `extra`.
fn restore(archive: &std::path::Path, url: &str, extra: &[&str]) -> Esark {
    Esark::new()
        .arg("restore")
        .arg("--input")
        .arg(archive)
        .args(["--target", url])
        .args(extra)
        .timeout(Duration::from_secs(180))
}

/// `name` as it appears in a request path, as a regex.
fn path_regex(name: &str) -> String {
    regex::escape(name)
}

fn assert_code(run: &Output, code: i32, proxy: &FaultProxy) {
    assert_eq!(run.code, Some(code), "{run}\n{}", proxy.log());
}

#[test]
fn small_indices_are_restored_in_two_requests_each() {
    let test = "restore-small-indices";
    let source = TestCluster::start(test);
    let Some(target) = target_cluster(test) else {
        return;
    };
    let small: Vec<String> = (0..12).map(|i| source.name(&format!("t{i:02}"))).collect();
    let mut seeded = Vec::new();
    for name in &small {
        let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "7s"}});
        seeded.push(seed_index(&source, name, &body, &docs(20)));
    }
    // Over one bulk request (1,000 documents by default): tuned for the
    // load, its settings put back after it.
    let big = source.name("big");
    let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "9s"}});
    let big_seeded = seed_index(&source, &big, &body, &docs(1500));
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &format!("{}-.*", source.prefix()));

    let proxy = FaultProxy::start(target.base_url(), vec![]);
    let run = restore(&archive, &proxy.url(), &[]).run();
    assert_code(&run, 0, &proxy);
    let count = |method: &str, path: &str| proxy.requests_matching(&Route::new(method, path));
    assert_eq!(count("GET", "^/_alias$"), 1, "one listing\n{}", proxy.log());
    for name in small.iter().chain([&big]) {
        let at = path_regex(name);
        let what = format!("{name}\n{}", proxy.log());
        assert_eq!(
            count("GET", &format!("^/{at}/_alias$")),
            0,
            "looked up: {what}"
        );
        assert_eq!(count("PUT", &format!("^/{at}$")), 1, "created: {what}");
        // A small index's one bulk request refreshes what it writes.
        assert_eq!(
            count("POST", &format!("^/{at}/_refresh$")),
            usize::from(*name == big),
            "refreshed: {what}"
        );
        let settings_puts = count("PUT", &format!("^/{at}/_settings$"));
        assert_eq!(
            settings_puts,
            usize::from(*name == big),
            "settings put: {what}"
        );
    }
    let bulks = proxy.targets_matching(&Route::new("POST", "^/_bulk$"));
    let refreshing = bulks.iter().filter(|t| t.contains("refresh=true")).count();
    assert_eq!(
        (refreshing, bulks.len() - refreshing),
        (small.len(), 2),
        "one refreshing bulk per small index, two plain ones for the big one: {bulks:?}"
    );
    for (name, expected) in small.iter().zip(&seeded) {
        assert_same_stored(expected, &docs_of(&target, name), name);
        let settings = target.settings(name);
        assert_eq!(
            settings["index"]["refresh_interval"], "7s",
            "{name}: {settings}"
        );
        assert_eq!(
            settings["index"]["number_of_replicas"], "0",
            "{name}: {settings}"
        );
    }
    assert_same_stored(&big_seeded, &docs_of(&target, &big), &big);
    let settings = target.settings(&big);
    assert_eq!(
        settings["index"]["refresh_interval"], "9s",
        "put back: {settings}"
    );
}

/// The listing says the name is free; by the time its creation arrives,
/// someone else made an index of that name (the proxy holds the creation
/// while the test does). The creation fails, the name is looked up again,
/// and under the default `--mode fail` the index is left alone.
#[test]
fn a_name_taken_after_the_listing_is_decided_again() {
    let test = "restore-name-taken";
    let source = TestCluster::start(test);
    let Some(target) = target_cluster(test) else {
        return;
    };
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| source.name(s)).collect();
    let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}});
    let seeded: Vec<_> = names
        .iter()
        .map(|name| seed_index(&source, name, &body, &docs(30)))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &format!("{}-.*", source.prefix()));

    let taken = &names[1];
    let proxy = FaultProxy::start(
        target.base_url(),
        vec![Rule::new(
            "held create",
            Route::new("PUT", &format!("^/{}$", path_regex(taken))),
            When::Nth(1),
            Fault::Slow(Duration::from_secs(3)),
        )],
    );
    let mut args = vec!["restore".to_string(), "--input".into()];
    args.push(archive.to_string_lossy().into_owned());
    args.extend(["--target".to_string(), proxy.url()]);
    let mut run = Spawned::start(&args, None);
    run.wait_until("the creation held", Duration::from_secs(60), || {
        proxy.fired("held create") >= 1
    });
    let theirs = seed_index(
        &target,
        taken,
        &body,
        &[("theirs".into(), r#"{"x":1}"#.into())],
    );
    let run = run.wait(Duration::from_secs(120));
    assert_code(&run, 1, &proxy);
    assert!(
        run.stdout.contains("the index exists; nothing written")
            || run.stderr.contains("the index exists; nothing written"),
        "{run}\n{}",
        proxy.log()
    );
    assert_eq!(
        proxy.requests_matching(&Route::new(
            "GET",
            &format!("^/{}/_alias$", path_regex(taken))
        )),
        1,
        "looked up again\n{}",
        proxy.log()
    );
    assert_same_stored(
        &theirs,
        &docs_of(&target, taken),
        "the other writer's index",
    );
    for (i, name) in names.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_same_stored(&seeded[i], &docs_of(&target, name), name);
    }
}
