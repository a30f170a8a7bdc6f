//! `esark restore` end to end: seed a source cluster, dump it, restore the
//! archive into a second, fresh cluster, and check the target with plain
//! HTTP reads (never only with `esark verify`).
//!
//! Every test here needs two distinct clusters (with `ESARK_TEST_URL`, the
//! target is `ESARK_TEST_TARGET_URL`) and is skipped visibly without them;
//! see `util::restore_support::target_cluster`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde_json::{json, Value};

use crate::util::archive::Archive;
use crate::util::check::{assert_no_secret, assert_one_error_line, strip_generated_settings};
use crate::util::esark::Esark;
use crate::util::fixture::Fixture;
use crate::util::proxy::AuthProxy;
use crate::util::restore_support::{
    alias_targets, all_index_names, all_template_names, assert_same_stored, assert_settings_subset,
    copy_dir, docs_of, dump_archive, get_source, json_report, report_index, restore_cmd,
    seed_index, target_cluster, try_count, verify_cmd, Spawned, Stored,
};
use crate::util::server::{enc, TestCluster};

// ---- helpers ----------------------------------------------------------------

/// The documents the fixture sent to `index`, as [`docs_of`] reads them.
fn sent_docs(f: &Fixture, index: &str) -> BTreeMap<String, Stored> {
    f.sent_to(&[index])
        .into_iter()
        .map(|((_, id), (routing, source))| (id, Stored { routing, source }))
        .collect()
}

/// `n` documents `{"i":<i>,"v":"<tag>"}` with ids `d00`, `d01`, ...
fn numbered_docs(n: usize, tag: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("d{i:02}"), format!(r#"{{"i":{i},"v":"{tag}"}}"#)))
        .collect()
}

/// The tokens `_analyze` gives for `text` with `analyzer` on `index`.
fn analyze(cluster: &TestCluster, index: &str, analyzer: &str, text: &str) -> Vec<String> {
    let resp = cluster.post(
        &format!("/{}/_analyze", enc(index)),
        &json!({"analyzer": analyzer, "text": text}),
    );
    resp["tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("_analyze on {index}: {resp}"))
        .iter()
        .map(|t| t["token"].as_str().unwrap().to_string())
        .collect()
}

/// The run's arguments as strings, for [`Spawned::start`].
fn restore_args(archive: &Path, target: &TestCluster, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "restore".to_string(),
        "--input".to_string(),
        archive.to_string_lossy().into_owned(),
    ];
    args.extend(crate::util::restore_support::target_args(target));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

// ---- 1. round trip ----------------------------------------------------------

#[test]
fn restore_round_trip_keeps_documents_and_metadata() {
    let Some(target) = target_cluster("restore-roundtrip") else {
        return;
    };
    let f = Fixture::seed("restore-roundtrip", 600);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&f.cluster, &archive, &f.match_all());

    // Run in an empty folder: a run without rejects must not create the
    // default rejects file there.
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let run = Spawned::start(restore_args(&archive, &target, &["--json"]), Some(&cwd))
        .wait(Duration::from_secs(120));
    run.assert_success();
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "restore without rejects left files in its working directory\n{run}"
    );

    // The report.
    let report = json_report(&run);
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["rejects_file"], Value::Null, "{report}");
    assert!(report["elapsed_secs"].is_number(), "{report}");
    assert_eq!(
        report["indices"].as_array().map(Vec::len),
        Some(f.open_indices().len()),
        "one entry per archived index: {report}"
    );
    for name in f.open_indices() {
        let entry = report_index(&report, name);
        let sent = sent_docs(&f, name).len();
        assert_eq!(entry["target"], name, "{entry}");
        assert_eq!(entry["archive_docs"], sent, "{entry}");
        assert_eq!(entry["written"], sent, "{entry}");
        assert_eq!(entry["rejected"], 0, "{entry}");
        assert_eq!(entry["failed"], 0, "{entry}");
        assert_eq!(entry["status"], "restored", "{entry}");
        assert_eq!(entry["reason"], Value::Null, "{entry}");
    }
    let templates: BTreeSet<(String, String, String)> = report["templates"]
        .as_array()
        .unwrap_or_else(|| panic!("no templates array: {report}"))
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap_or("?").to_string(),
                t["name"].as_str().unwrap_or("?").to_string(),
                t["status"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    let restored = |kind: &str, name: &str| (kind.into(), name.into(), "restored".into());
    assert_eq!(
        templates,
        BTreeSet::from([
            restored("component", &f.component_template),
            restored("index", &f.index_template),
            restored("legacy", &f.legacy_template),
        ]),
        "{report}"
    );

    // Independently: exactly the open indices, nothing else (the closed one
    // is not in the archive).
    let mut expected_names: Vec<String> = f.open_indices().iter().map(|s| s.to_string()).collect();
    expected_names.sort();
    assert_eq!(all_index_names(&target), expected_names);

    for name in f.open_indices() {
        // Every document, its routing and its `_source` bytes.
        let on_source = docs_of(&f.cluster, name);
        let on_target = docs_of(&target, name);
        assert_same_stored(&on_source, &on_target, &format!("{name}: source vs target"));
        assert_same_stored(
            &sent_docs(&f, name),
            &on_target,
            &format!("{name}: sent vs target"),
        );
        // Routed documents are where their routing says.
        for (id, doc) in on_source.iter().filter(|(_, d)| d.routing.is_some()) {
            assert_eq!(
                get_source(&target, name, id, doc.routing.as_deref()).as_deref(),
                Some(doc.source.as_str()),
                "{name}/{id} with routing {:?}",
                doc.routing
            );
        }

        assert_eq!(
            target.mappings(name),
            f.cluster.mappings(name),
            "mappings of {name}"
        );
        assert_eq!(
            target.aliases(name),
            f.cluster.aliases(name),
            "aliases of {name}"
        );
        assert_settings_subset(
            &strip_generated_settings(f.cluster.settings(name)),
            &target.settings(name),
            name,
        );
    }

    // The things the fixture set up, spelled out.
    let p = f.cluster.prefix();
    let main = target.settings(&f.main);
    assert_eq!(main["index"]["number_of_shards"], "2", "{main}");
    assert_eq!(main["index"]["refresh_interval"], "2s", "{main}");
    assert_eq!(main["index"]["number_of_replicas"], "0", "{main}");
    assert_eq!(target.settings(&f.hidden)["index"]["hidden"], "true");
    let big = get_source(&target, &f.main, "max-long", None).unwrap();
    assert!(big.contains("9223372036854775807"), "{big}");
    let aliases = target.aliases(&f.main);
    let filtered = &aliases[format!("{p}-filtered")];
    assert_eq!(filtered["filter"], json!({"term": {"tags": "common"}}));
    assert_eq!(filtered["index_routing"], "tenant-a");
    assert_eq!(filtered["search_routing"], "tenant-a");
    assert_eq!(aliases[format!("{p}-write")]["is_write_index"], true);
    let write = alias_targets(&target, &format!("{p}-write"));
    assert_eq!(write[&f.other]["is_write_index"], false, "{write:?}");
    assert_eq!(
        target.aliases(&f.kuzzle)[format!("{p}-kz")]["search_routing"],
        "1,2"
    );

    // The custom analyzer works on the target.
    let text = "The Çafé ÜBER le Zoë";
    let tokens = analyze(&target, &f.main, "esark_folding", text);
    assert_eq!(tokens, ["cafe", "uber", "zoe"]);
    assert_eq!(tokens, analyze(&f.cluster, &f.main, "esark_folding", text));

    // Templates.
    assert_eq!(
        target.legacy_template(&f.legacy_template),
        f.cluster.legacy_template(&f.legacy_template)
    );
    assert_eq!(
        target.index_template(&f.index_template),
        f.cluster.index_template(&f.index_template)
    );
    assert_eq!(
        target.component_template(&f.component_template),
        f.cluster.component_template(&f.component_template)
    );

    // And verify agrees, in text and in JSON.
    verify_cmd(&archive, &target).run().assert_success();
    let verified = verify_cmd(&archive, &target).arg("--json").run();
    verified.assert_success();
    let v = json_report(&verified);
    assert_eq!(v["status"], "match", "{v}");
    assert_eq!(v["templates_match"], true, "{v}");
    for name in f.open_indices() {
        let entry = report_index(&v, name);
        for key in [
            "documents_match",
            "settings_match",
            "mappings_match",
            "aliases_match",
        ] {
            assert_eq!(entry[key], true, "{key} of {name}: {entry}");
        }
        assert_eq!(entry["archive_docs"], entry["target_docs"], "{entry}");
    }
}

// ---- 2. modes against an existing index ---------------------------------------

/// A source with `data` (30 archive docs `d00`..`d29`) and `fresh` (10
/// docs), dumped; and a target on which `data` already exists with an older
/// mapping and two documents: `d00` in an old version and `old-only`.
struct ModeCase {
    source: TestCluster,
    target: TestCluster,
    _tmp: tempfile::TempDir,
    archive: PathBuf,
    data: String,
    fresh: String,
    archive_data: BTreeMap<String, Stored>,
    archive_fresh: BTreeMap<String, Stored>,
    old_data: BTreeMap<String, Stored>,
}

fn mode_case(test: &str) -> Option<ModeCase> {
    let target = target_cluster(test)?;
    let source = TestCluster::start(test);
    let data = source.name("data");
    let fresh = source.name("fresh");
    let archive_data = seed_index(
        &source,
        &data,
        &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {"properties": {"i": {"type": "integer"}, "v": {"type": "keyword"}}}}),
        &numbered_docs(30, "archive"),
    );
    let archive_fresh = seed_index(
        &source,
        &fresh,
        &json!({"settings": {"number_of_replicas": 0}}),
        &numbered_docs(10, "fresh"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(
        &source,
        &archive,
        &format!("^{}-(data|fresh)$", regex::escape(source.prefix())),
    );
    let old_data = seed_index(
        &target,
        &data,
        &json!({"settings": {"number_of_replicas": 0},
                "mappings": {"properties": {"legacy": {"type": "keyword"}}}}),
        &[
            ("d00".into(), r#"{"i":0,"v":"old","legacy":"x"}"#.into()),
            ("old-only".into(), r#"{"v":"old-only","legacy":"y"}"#.into()),
        ],
    );
    Some(ModeCase {
        source,
        target,
        _tmp: tmp,
        archive,
        data,
        fresh,
        archive_data,
        archive_fresh,
        old_data,
    })
}

#[test]
fn restore_mode_fail_is_the_default_and_leaves_the_index_alone() {
    let Some(c) = mode_case("restore-mode-fail") else {
        return;
    };
    let old_mapping = c.target.mappings(&c.data);
    // No --mode: fail is the default.
    let run = restore_cmd(&c.archive, &c.target).arg("--json").run();
    assert_eq!(run.code, Some(1), "expected exit 1\n{run}");
    let report = json_report(&run);
    assert_eq!(report["status"], "failed", "{report}");
    let entry = report_index(&report, &c.data);
    assert_eq!(entry["status"], "failed", "{entry}");
    assert!(
        entry["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "a failed index says why: {entry}"
    );
    assert_same_stored(
        &c.old_data,
        &docs_of(&c.target, &c.data),
        "existing index after --mode fail",
    );
    assert_eq!(c.target.mappings(&c.data), old_mapping);
    // The other index of the archive is restored all the same.
    assert_eq!(report_index(&report, &c.fresh)["status"], "restored");
    assert_same_stored(&c.archive_fresh, &docs_of(&c.target, &c.fresh), "fresh");
}

#[test]
fn restore_mode_replace_recreates_the_index() {
    let Some(c) = mode_case("restore-mode-replace") else {
        return;
    };
    let run = restore_cmd(&c.archive, &c.target)
        .args(["--mode", "replace", "--json"])
        .run();
    run.assert_success();
    let report = json_report(&run);
    assert_eq!(report["status"], "ok", "{report}");
    let entry = report_index(&report, &c.data);
    assert_eq!(entry["status"], "restored", "{entry}");
    assert_eq!(entry["written"], 30, "{entry}");
    // Old-only document gone, d00 in its archive version, archive mapping.
    assert_same_stored(
        &c.archive_data,
        &docs_of(&c.target, &c.data),
        "index after --mode replace",
    );
    assert_eq!(c.target.mappings(&c.data), c.source.mappings(&c.data));
    assert_same_stored(&c.archive_fresh, &docs_of(&c.target, &c.fresh), "fresh");
}

#[test]
fn restore_mode_merge_keeps_old_docs_and_overwrites_same_ids() {
    let Some(c) = mode_case("restore-mode-merge") else {
        return;
    };
    let run = restore_cmd(&c.archive, &c.target)
        .args(["--mode", "merge", "--json"])
        .run();
    run.assert_success();
    let report = json_report(&run);
    assert_eq!(report["status"], "ok", "{report}");
    let entry = report_index(&report, &c.data);
    assert_eq!(entry["status"], "restored", "{entry}");
    assert_eq!(entry["written"], 30, "{entry}");
    let mut expected = c.archive_data.clone();
    expected.insert("old-only".into(), c.old_data["old-only"].clone());
    assert_same_stored(
        &expected,
        &docs_of(&c.target, &c.data),
        "index after --mode merge",
    );
    // The index was kept: its own mapping is still there.
    assert_eq!(
        c.target.mappings(&c.data)["properties"]["legacy"]["type"],
        "keyword"
    );
    assert_same_stored(&c.archive_fresh, &docs_of(&c.target, &c.fresh), "fresh");
}

#[test]
fn restore_mode_skip_existing_reports_and_leaves_the_index_alone() {
    let Some(c) = mode_case("restore-mode-skip") else {
        return;
    };
    let old_mapping = c.target.mappings(&c.data);
    let run = restore_cmd(&c.archive, &c.target)
        .args(["--mode", "skip-existing", "--json"])
        .run();
    run.assert_success();
    let report = json_report(&run);
    assert_eq!(report["status"], "ok", "{report}");
    let entry = report_index(&report, &c.data);
    assert_eq!(entry["status"], "skipped", "{entry}");
    assert_eq!(entry["written"], 0, "{entry}");
    assert_same_stored(
        &c.old_data,
        &docs_of(&c.target, &c.data),
        "existing index after --mode skip-existing",
    );
    assert_eq!(c.target.mappings(&c.data), old_mapping);
    assert_eq!(report_index(&report, &c.fresh)["status"], "restored");
    assert_same_stored(&c.archive_fresh, &docs_of(&c.target, &c.fresh), "fresh");
}

// ---- 3. --atomic ------------------------------------------------------------

#[test]
fn restore_atomic_replace_switches_readers_in_one_step() {
    let Some(target) = target_cluster("restore-atomic") else {
        return;
    };
    let source = TestCluster::start("restore-atomic");
    let name = source.name("live");
    let docs: Vec<(String, String)> = (0..1500)
        .map(|i| (format!("n{i:04}"), format!(r#"{{"gen":"new","i":{i}}}"#)))
        .collect();
    let archived = seed_index(
        &source,
        &name,
        &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}}),
        &docs,
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &Fixture::exactly(&name));

    let old: Vec<(String, String)> = (0..40)
        .map(|i| (format!("o{i:02}"), format!(r#"{{"gen":"old","i":{i}}}"#)))
        .collect();
    seed_index(
        &target,
        &name,
        &json!({"settings": {"number_of_replicas": 0}}),
        &old,
    );

    let staging = Regex::new(&format!("^{}-esark-.+$", regex::escape(&name))).unwrap();
    let mut run = Spawned::start(
        restore_args(
            &archive,
            &target,
            &["--atomic", "--mode", "replace", "--rate", "300", "--json"],
        ),
        None,
    );
    // Poll `_count` through the name while the restore runs: 40 (old) until
    // the switch, then 1500 (all of the new) for good; anything else is a
    // reader seeing a partial or missing index.
    let mut observed: Vec<Option<u64>> = Vec::new();
    let mut old_seen_while_running = 0;
    let mut switched = false;
    let mut bad = Vec::new();
    let mut staging_seen = BTreeSet::new();
    while run.is_running() {
        let count = try_count(&target, &name);
        let still_running = run.is_running();
        match count {
            Some(40) if !switched => {
                if still_running {
                    old_seen_while_running += 1;
                }
            }
            Some(1500) => switched = true,
            other => bad.push(format!("{:.1}s: {other:?}", run.elapsed().as_secs_f64())),
        }
        observed.push(count);
        for index in all_index_names(&target) {
            if staging.is_match(&index) {
                staging_seen.insert(index);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let run = run.wait(Duration::from_secs(120));
    run.assert_success();
    assert!(
        bad.is_empty(),
        "readers of {name} saw counts other than 40 (old) then 1500 (new): {bad:?}\nall: {observed:?}\n{run}"
    );
    assert!(
        old_seen_while_running >= 5,
        "the restore ran too briefly to watch ({} polls of the old index while it ran); \
         is --rate 300 applied?\n{run}",
        old_seen_while_running
    );
    assert!(
        !staging_seen.is_empty(),
        "no `{name}-esark-<timestamp>` index appeared while loading\n{run}"
    );

    // Afterwards the name is an alias to one new concrete index.
    let targets = alias_targets(&target, &name);
    assert_eq!(targets.len(), 1, "{name} as alias: {targets:?}");
    let concrete = targets.keys().next().unwrap().clone();
    assert!(
        staging.is_match(&concrete),
        "{name} points to {concrete}, expected {name}-esark-<timestamp>"
    );
    assert!(
        staging_seen.contains(&concrete),
        "{concrete} is not the index loaded during the run ({staging_seen:?})"
    );
    let names = all_index_names(&target);
    assert!(
        !names.contains(&name),
        "the old concrete index {name} is still there: {names:?}"
    );
    assert_eq!(try_count(&target, &name), Some(1500));
    assert_same_stored(&archived, &docs_of(&target, &concrete), "new index");
    let report = json_report(&run);
    let entry = report_index(&report, &name);
    assert_eq!(entry["status"], "restored", "{entry}");
    assert_eq!(entry["written"], 1500, "{entry}");
}

// ---- 4. selection and renaming ----------------------------------------------

/// Source: `<p>-logs-2023` (20 docs), `<p>-logs-2024` (30 docs, alias
/// `<p>-logs` as write index) and `<p>-keep` (5 docs), dumped.
fn rename_source(test: &str) -> (TestCluster, tempfile::TempDir, PathBuf) {
    let source = TestCluster::start(test);
    let p = source.prefix().to_string();
    seed_index(
        &source,
        &format!("{p}-logs-2023"),
        &json!({"settings": {"number_of_replicas": 0}}),
        &numbered_docs(20, "2023"),
    );
    seed_index(
        &source,
        &format!("{p}-logs-2024"),
        &json!({"settings": {"number_of_replicas": 0},
                "aliases": {format!("{p}-logs"): {"is_write_index": true}}}),
        &numbered_docs(30, "2024"),
    );
    seed_index(
        &source,
        &format!("{p}-keep"),
        &json!({"settings": {"number_of_replicas": 0}}),
        &numbered_docs(5, "keep"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &format!("^{}-.*$", regex::escape(&p)));
    (source, tmp, archive)
}

#[test]
fn restore_rename_prefix_and_suffix_give_target_names() {
    let Some(target) = target_cluster("restore-rename") else {
        return;
    };
    let (source, _tmp, archive) = rename_source("restore-rename");
    let p = source.prefix();
    let naming: [&str; 5] = [
        "--rename",
        r"logs-(\d+)$=archived-$1",
        "--prefix",
        "r-",
        // `=`: a value starting with `-` would otherwise read as a flag.
        "--suffix=-x",
    ];
    let run = restore_cmd(&archive, &target)
        .args(naming)
        .arg("--json")
        .run();
    run.assert_success();
    let renamed = [
        (format!("{p}-logs-2023"), format!("r-{p}-archived-2023-x")),
        (format!("{p}-logs-2024"), format!("r-{p}-archived-2024-x")),
        (format!("{p}-keep"), format!("r-{p}-keep-x")),
    ];
    let mut expected_names: Vec<String> = renamed.iter().map(|(_, t)| t.clone()).collect();
    expected_names.sort();
    assert_eq!(all_index_names(&target), expected_names);
    let report = json_report(&run);
    for (from, to) in &renamed {
        assert_eq!(report_index(&report, from)["target"], to.as_str());
        assert_same_stored(&docs_of(&source, from), &docs_of(&target, to), to);
        assert_eq!(
            target.mappings(to),
            source.mappings(from),
            "mappings of {to}"
        );
    }
    // Alias names are not renamed; the alias follows its index.
    let logs = alias_targets(&target, &format!("{p}-logs"));
    assert_eq!(
        logs.keys().collect::<Vec<_>>(),
        vec![&format!("r-{p}-archived-2024-x")],
        "{logs:?}"
    );
    assert_eq!(
        logs[&format!("r-{p}-archived-2024-x")]["is_write_index"],
        true
    );

    // verify with the same naming matches; without it, the names are missing.
    verify_cmd(&archive, &target)
        .args(naming)
        .run()
        .assert_success();
    let unrenamed = verify_cmd(&archive, &target).run();
    assert_eq!(
        unrenamed.code,
        Some(1),
        "verify without --rename must not match\n{unrenamed}"
    );
}

#[test]
fn restore_selects_archive_indices_by_match_and_exclude() {
    let Some(target) = target_cluster("restore-select") else {
        return;
    };
    let (source, _tmp, archive) = rename_source("restore-select");
    let p = regex::escape(source.prefix());
    restore_cmd(&archive, &target)
        .args(["--match", &format!("^{p}-logs-.*$"), "--exclude", "2023"])
        .run()
        .assert_success();
    assert_eq!(
        all_index_names(&target),
        vec![format!("{}-logs-2024", source.prefix())]
    );
    assert_eq!(target.count(&format!("{}-logs-2024", source.prefix())), 30);
}

// ---- 5. rejected documents ----------------------------------------------------

#[test]
fn restore_strict_mapping_rejects_one_doc_and_exits_3() {
    let Some(target) = target_cluster("restore-reject") else {
        return;
    };
    let source = TestCluster::start("restore-reject");
    let name = source.name("strict");
    let mut docs: Vec<(String, String)> = (0..20)
        .map(|i| (format!("s{i:02}"), format!(r#"{{"a":"v{i}"}}"#)))
        .collect();
    docs.push(("s-extra".into(), r#"{"a":"x","extra":1}"#.into()));
    let mut archived = seed_index(
        &source,
        &name,
        &json!({"settings": {"number_of_replicas": 0}}),
        &docs,
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &Fixture::exactly(&name));

    // The target already has the index, strict and without `extra`: merging
    // into it keeps that mapping, so the one document with `extra` is
    // rejected with a 400.
    target.create_index(
        &name,
        &json!({"settings": {"number_of_replicas": 0},
                "mappings": {"dynamic": "strict", "properties": {"a": {"type": "keyword"}}}}),
    );
    let rejects = tmp.path().join("rejects.jsonl");
    let run = restore_cmd(&archive, &target)
        .args(["--mode", "merge", "--json", "--rejects"])
        .arg(&rejects)
        .run();
    assert_eq!(run.code, Some(3), "expected exit 3\n{run}");
    let report = json_report(&run);
    assert_eq!(report["status"], "rejected", "{report}");
    let rejects_file = report["rejects_file"].as_str().unwrap_or("");
    assert!(
        Path::new(rejects_file).file_name() == rejects.file_name()
            && std::fs::canonicalize(rejects_file).ok() == std::fs::canonicalize(&rejects).ok(),
        "rejects_file {rejects_file:?}, expected {}",
        rejects.display()
    );
    let entry = report_index(&report, &name);
    assert_eq!(entry["rejected"], 1, "{entry}");
    assert_eq!(entry["written"], 20, "{entry}");
    assert_eq!(entry["archive_docs"], 21, "{entry}");

    let check_rejects = |path: &Path| {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("no rejects file {}: {e}\n{run}", path.display()));
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "rejects file: {text}");
        let line: Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("reject line is not JSON: {e}: {}", lines[0]));
        assert_eq!(line["index"], name.as_str(), "{line}");
        assert_eq!(line["id"], "s-extra", "{line}");
        assert_eq!(line["status"], 400, "{line}");
        assert!(
            line["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{line}"
        );
        assert_eq!(line["document"], json!({"a": "x", "extra": 1}), "{line}");
    };
    check_rejects(&rejects);

    // Everything else is there.
    archived.remove("s-extra");
    assert_same_stored(&archived, &docs_of(&target, &name), "strict index");

    // Without --rejects, the file is `esark-rejects.jsonl` in the working
    // directory (merging again rejects the same document).
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let again = Spawned::start(
        restore_args(&archive, &target, &["--mode", "merge"]),
        Some(&cwd),
    )
    .wait(Duration::from_secs(60));
    assert_eq!(again.code, Some(3), "expected exit 3\n{again}");
    check_rejects(&cwd.join("esark-rejects.jsonl"));
}

// ---- 6. damaged archives ----------------------------------------------------

/// The fixture, dumped; and a target that must stay empty.
fn damaged_case(test: &str) -> Option<(Fixture, TestCluster, tempfile::TempDir, PathBuf)> {
    let target = target_cluster(test)?;
    let f = Fixture::seed(test, 100);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    // Two slices: the main index has a chunk per slice, so that `--force`
    // has intact chunks of it to restore (a small index is otherwise read
    // in one search, into one chunk).
    Esark::new()
        .arg("dump")
        .args(f.cluster.source_args())
        .arg("--output")
        .arg(&archive)
        .args(["--match", &f.match_all(), "--slices", "2"])
        .run()
        .assert_success();
    Some((f, target, tmp, archive))
}

/// The manifest path of the first data chunk of `index`.
fn first_chunk(archive: &Path, index: &str) -> String {
    let a = Archive::open(archive);
    let mut paths: Vec<String> = a
        .files(index, "data")
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    paths.into_iter().next().expect("a data chunk")
}

fn assert_target_empty(target: &TestCluster, after: &str) {
    assert_eq!(
        all_index_names(target),
        Vec::<String>::new(),
        "indices on the target after {after}"
    );
    assert_eq!(
        all_template_names(target),
        Vec::<String>::new(),
        "templates on the target after {after}"
    );
}

#[test]
fn restore_refuses_tampered_truncated_or_missing_files_before_writing() {
    let Some((f, target, tmp, archive)) = damaged_case("restore-damaged") else {
        return;
    };
    let chunk = first_chunk(&archive, &f.main);

    // One byte flipped, same size.
    let tampered = tmp.path().join("tampered");
    copy_dir(&archive, &tampered);
    let path = tampered.join(&chunk);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let run = restore_cmd(&tampered, &target).run();
    let line = assert_one_error_line(&run);
    assert!(
        line.contains(&chunk),
        "error line does not name {chunk}\n{run}"
    );
    assert_target_empty(&target, "a tampered chunk");

    // Truncated by one byte.
    let truncated = tmp.path().join("truncated");
    copy_dir(&archive, &truncated);
    let path = truncated.join(&chunk);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let run = restore_cmd(&truncated, &target).run();
    let line = assert_one_error_line(&run);
    assert!(
        line.contains(&chunk),
        "error line does not name {chunk}\n{run}"
    );
    assert_target_empty(&target, "a truncated chunk");

    // A listed file missing (a metadata file of another index).
    let missing = tmp.path().join("missing");
    copy_dir(&archive, &missing);
    let a = Archive::open(&missing);
    let mappings = a.files(&f.other, "mappings")[0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(missing.join(&mappings)).unwrap();
    let run = restore_cmd(&missing, &target).run();
    let line = assert_one_error_line(&run);
    assert!(
        line.contains(&mappings),
        "error line does not name {mappings}\n{run}"
    );
    assert_target_empty(&target, "a missing file");

    // No manifest at all.
    let no_manifest = tmp.path().join("no-manifest");
    copy_dir(&archive, &no_manifest);
    std::fs::remove_file(no_manifest.join("manifest.json")).unwrap();
    let run = restore_cmd(&no_manifest, &target).run();
    let line = assert_one_error_line(&run);
    assert!(
        line.contains("manifest"),
        "error line does not mention the manifest\n{run}"
    );
    assert_target_empty(&target, "a missing manifest");
}

#[test]
fn restore_force_restores_intact_indices_and_reports_the_damaged_one() {
    let Some((f, target, _tmp, archive)) = damaged_case("restore-force") else {
        return;
    };
    let chunk = first_chunk(&archive, &f.main);
    let path = archive.join(&chunk);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let run = restore_cmd(&archive, &target)
        .args(["--force", "--json"])
        .run();
    assert_eq!(run.code, Some(1), "expected exit 1\n{run}");
    let report = json_report(&run);
    assert_eq!(report["status"], "failed", "{report}");
    let main = report_index(&report, &f.main);
    assert_eq!(main["status"], "failed", "{main}");
    assert!(
        main["reason"].as_str().is_some_and(|r| r.contains(&chunk)),
        "the reason names {chunk}: {main}"
    );
    // The damaged chunk is left out, not its index (issue 11: `--force`
    // restores the intact chunks and counts the lost documents); the other
    // indices are restored whole.
    let lost = main["lost"][0]["docs"].as_u64().unwrap_or(0);
    assert!(lost > 0, "{main}");
    assert_eq!(
        main["written"].as_u64(),
        Some(sent_docs(&f, &f.main).len() as u64 - lost),
        "{main}"
    );
    assert_eq!(
        target.count(&f.main),
        sent_docs(&f, &f.main).len() as u64 - lost
    );
    for name in [&f.kuzzle, &f.hidden, &f.other] {
        assert_eq!(report_index(&report, name)["status"], "restored");
        assert_same_stored(&sent_docs(&f, name), &docs_of(&target, name), name);
    }
}

/// Regression: the up-front checksum pass covered every file of the
/// archive, so a damaged index outside `--match` blocked the restore of
/// healthy ones. Now only what is restored is checked, and the selected
/// data's checksums are still proven before the first write, with and
/// without line validation.
#[test]
fn restore_checks_only_the_selected_indices_and_still_refuses_their_damage() {
    let Some((f, target, _tmp, archive)) = damaged_case("restore-selected-damage") else {
        return;
    };
    let chunk = first_chunk(&archive, &f.main);
    let path = archive.join(&chunk);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    // Selected, with and without line validation: refused before writing.
    for extra in [&[][..], &["--no-validate"][..]] {
        let run = restore_cmd(&archive, &target)
            .args(["--match", &Fixture::exactly(&f.main)])
            .args(extra)
            .run();
        let line = assert_one_error_line(&run);
        assert!(line.contains(&chunk), "{extra:?}: {line}\n{run}");
        assert_target_empty(&target, &format!("a damaged selected chunk {extra:?}"));
    }

    // The damaged index is not selected: the other one restores whole.
    let run = restore_cmd(&archive, &target)
        .args(["--match", &Fixture::exactly(&f.other)])
        .run();
    assert!(run.success(), "{run}");
    assert_same_stored(
        &sent_docs(&f, &f.other),
        &docs_of(&target, &f.other),
        &f.other,
    );
}

// ---- 9. metadata-only and inferred mappings ------------------------------------

#[test]
fn restore_no_data_restores_metadata_only() {
    let Some(target) = target_cluster("restore-no-data") else {
        return;
    };
    let f = Fixture::seed("restore-no-data", 50);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&f.cluster, &archive, &f.match_all());
    restore_cmd(&archive, &target)
        .arg("--no-data")
        .run()
        .assert_success();
    for name in f.open_indices() {
        assert_eq!(target.count(name), 0, "{name} has documents");
        assert_eq!(target.mappings(name), f.cluster.mappings(name), "{name}");
        assert_eq!(target.aliases(name), f.cluster.aliases(name), "{name}");
    }
    assert_eq!(
        analyze(&target, &f.main, "esark_folding", "The Çafé"),
        ["cafe"]
    );
    assert_eq!(
        target.legacy_template(&f.legacy_template),
        f.cluster.legacy_template(&f.legacy_template)
    );
}

#[test]
fn restore_no_mappings_lets_the_target_infer_and_no_templates_skips_them() {
    let Some(target) = target_cluster("restore-no-mappings") else {
        return;
    };
    let f = Fixture::seed("restore-no-mappings", 50);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&f.cluster, &archive, &f.match_all());
    restore_cmd(&archive, &target)
        .args(["--no-mappings", "--no-templates", "--match"])
        .arg(Fixture::exactly(&f.main))
        .run()
        .assert_success();
    assert_eq!(all_index_names(&target), vec![f.main.clone()]);
    assert_eq!(all_template_names(&target), Vec::<String>::new());
    assert_same_stored(&sent_docs(&f, &f.main), &docs_of(&target, &f.main), &f.main);

    // The explicit mapping is not there: `tags` was `keyword`, `comments`
    // was `nested`, `title` had the custom analyzer.
    let mappings = target.mappings(&f.main);
    let props = &mappings["properties"];
    assert_ne!(props["tags"]["type"], "keyword", "{mappings}");
    assert_ne!(props["comments"]["type"], "nested", "{mappings}");
    assert!(props["title"].get("analyzer").is_none(), "{mappings}");
    assert_ne!(mappings, f.cluster.mappings(&f.main));
    // Settings (the analyzer) are restored all the same.
    assert_eq!(target.settings(&f.main)["index"]["number_of_shards"], "2");
    assert_eq!(
        analyze(&target, &f.main, "esark_folding", "The Çafé"),
        ["cafe"]
    );
}

// ---- credentials ---------------------------------------------------------------

#[test]
fn restore_target_credentials_work_and_never_show() {
    let Some(target) = target_cluster("restore-credentials") else {
        return;
    };
    const USER: &str = "restorer";
    const RIGHT: &str = "Right-pa55-w0rd";
    const WRONG: &str = "Wrong-pa55-w0rd";
    let source = TestCluster::start("restore-credentials");
    let name = source.name("secured");
    let docs = seed_index(
        &source,
        &name,
        &json!({"settings": {"number_of_replicas": 0}}),
        &numbered_docs(30, "secured"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &Fixture::exactly(&name));
    let proxy = AuthProxy::start(&target, USER, RIGHT);
    let command = || {
        Esark::new()
            .arg("restore")
            .arg("--input")
            .arg(&archive)
            .args(["--target", &proxy.url(), "--target-user", USER])
    };

    // A wrong password (from a file): one clear error line, nothing written.
    let password_file = tmp.path().join("password");
    std::fs::write(&password_file, WRONG).unwrap();
    let run = command()
        .arg("--target-password-file")
        .arg(&password_file)
        .run();
    let line = assert_one_error_line(&run);
    assert!(
        Regex::new(r"(?i)401|authenticat|unauthori[sz]ed")
            .unwrap()
            .is_match(&line),
        "the error does not say authentication failed\n{run}"
    );
    assert_no_secret(&run, &[WRONG]);
    assert!(proxy.rejected() > 0, "the proxy saw no request");
    assert_eq!(all_index_names(&target), Vec::<String>::new());

    // The right one (from the environment).
    let run = command().env("ESARK_TARGET_PASSWORD", RIGHT).run();
    run.assert_success();
    assert_no_secret(&run, &[RIGHT]);
    assert_same_stored(&docs, &docs_of(&target, &name), &name);
}

// ---- usage ----------------------------------------------------------------------

#[test]
fn restore_usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_string_lossy().into_owned();
    let target = "http://127.0.0.1:9";
    let cases: Vec<Vec<&str>> = vec![
        vec!["restore", "--input", &dir],
        vec!["restore", "--target", target],
        vec![
            "restore", "--input", &dir, "--target", target, "--mode", "bogus",
        ],
        vec![
            "restore", "--input", &dir, "--target", target, "--match", "(",
        ],
        vec![
            "restore",
            "--input",
            &dir,
            "--target",
            target,
            "--rename",
            "no-equals-sign",
        ],
        vec![
            "restore", "--input", &dir, "--target", target, "--rename", "(=x",
        ],
        vec!["verify", "--input", &dir],
        vec!["copy", "--source", target],
    ];
    for args in cases {
        let run = Esark::new().args(&args).run();
        assert_eq!(run.code, Some(2), "expected usage error (exit 2)\n{run}");
    }
}
