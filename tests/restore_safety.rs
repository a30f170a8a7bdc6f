//! A restore never harms what it was not asked to touch; one bad index
//! never sinks or hides the rest (issue 11, restore side).
//!
//! Each test reproduces what the issue's author saw against osmem and
//! checks exact document counts per alias and alias memberships before and
//! after, with plain HTTP reads of the target.

use std::collections::BTreeSet;
use std::path::PathBuf;

use regex::Regex;
use serde_json::{json, Value};

use crate::util::esark::{Esark, Output};
use crate::util::faults::{FaultProxy, Route};
use crate::util::restore_support::{
    alias_targets, all_index_names, dump_archive, json_report, report_index, restore_cmd,
    seed_index, target_cluster, try_count, verify_cmd,
};
use crate::util::server::TestCluster;

/// `n` documents `{"i":<i>,"v":"<tag>"}`.
fn docs(n: usize, tag: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("{tag}{i:04}"),
                format!(r#"{{"i":{i},"v":"{tag}"}}"#),
            )
        })
        .collect()
}

/// Source: `<p>-logs-2024.01` and `<p>-logs-2024.02` (750 documents each,
/// both in alias `<p>-logs`), `<p>-products` (20, alias `<p>-catalog`),
/// dumped; and a target for it.
struct Logs {
    _source: TestCluster,
    target: TestCluster,
    _tmp: tempfile::TempDir,
    archive: PathBuf,
    p: String,
}

impl Logs {
    fn new(test: &str) -> Option<Logs> {
        let target = target_cluster(test)?;
        let source = TestCluster::start(test);
        let p = source.prefix().to_string();
        for month in ["01", "02"] {
            seed_index(
                &source,
                &format!("{p}-logs-2024.{month}"),
                &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                        "aliases": {format!("{p}-logs"): {}}}),
                &docs(750, &format!("m{month}-")),
            );
        }
        seed_index(
            &source,
            &format!("{p}-products"),
            &json!({"settings": {"number_of_replicas": 0},
                    "aliases": {format!("{p}-catalog"): {}}}),
            &docs(20, "prod-"),
        );
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("archive");
        dump_archive(&source, &archive, &format!("^{}-", regex::escape(&p)));
        Some(Logs {
            _source: source,
            target,
            _tmp: tmp,
            archive,
            p,
        })
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.p)
    }

    /// `--match` for exactly one archived index.
    fn exactly(&self, suffix: &str) -> String {
        format!("^{}$", regex::escape(&self.name(suffix)))
    }

    fn restore(&self, args: &[&str]) -> Output {
        restore_cmd(&self.archive, &self.target).args(args).run()
    }

    /// The members of `alias` on the target.
    fn members(&self, alias: &str) -> BTreeSet<String> {
        alias_targets(&self.target, alias).into_keys().collect()
    }

    fn full_restore(&self) {
        self.restore(&[]).assert_success();
        assert_eq!(try_count(&self.target, &self.name("logs")), Some(1500));
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The alias changes of a report entry as `(action, alias, index)`.
fn alias_changes(entry: &Value) -> BTreeSet<(String, String, String)> {
    entry["alias_changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no alias_changes in {entry}"))
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap_or("?").to_string(),
                c["alias"].as_str().unwrap_or("?").to_string(),
                c["index"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn string_list(entry: &Value, field: &str) -> Vec<String> {
    entry[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {entry}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

// ---- 1. --atomic swaps only the restored index's own memberships ------------

/// Regression: `--atomic --mode replace` of one index took the shared alias
/// `logs` off every other index (1,500 -> 750 documents), left the old
/// index behind despite `replace`, and a second run left the first run's
/// `-esark-<ts>` index behind, unreported.
#[test]
fn atomic_replace_of_one_index_keeps_the_shared_alias_on_the_others() {
    let Some(c) = Logs::new("safety-atomic-shared") else {
        return;
    };
    c.full_restore();
    let (jan, feb, logs) = (
        c.name("logs-2024.01"),
        c.name("logs-2024.02"),
        c.name("logs"),
    );
    assert_eq!(c.members(&logs), set(&[&jan, &feb]));
    let staging = Regex::new(&format!("^{}-esark-\\d+$", regex::escape(&jan))).unwrap();

    let mut previous: Option<String> = None;
    for round in 0..2 {
        let run = c.restore(&[
            "--match",
            &c.exactly("logs-2024.01"),
            "--atomic",
            "--mode",
            "replace",
            "--json",
        ]);
        run.assert_success();
        let report = json_report(&run);
        let entry = report_index(&report, &jan);
        let concrete = entry["concrete"].as_str().unwrap().to_string();
        assert!(staging.is_match(&concrete), "{entry}");
        // The shared alias: February stays, January's copy replaces it.
        assert_eq!(c.members(&logs), set(&[&concrete, &feb]), "round {round}");
        assert_eq!(try_count(&c.target, &logs), Some(1500), "round {round}");
        // The name reaches the new copy alone.
        assert_eq!(c.members(&jan), set(&[&concrete]), "round {round}");
        assert_eq!(try_count(&c.target, &jan), Some(750), "round {round}");
        assert_eq!(try_count(&c.target, &feb), Some(750), "round {round}");
        // What it replaced is gone, and reported.
        let old = previous.clone().unwrap_or_else(|| jan.clone());
        let names = all_index_names(&c.target);
        assert!(!names.contains(&old), "{old} left behind: {names:?}\n{run}");
        assert_eq!(
            names.iter().filter(|n| staging.is_match(n)).count(),
            1,
            "{names:?}"
        );
        assert_eq!(string_list(entry, "removed_indices"), vec![old.clone()]);
        let changes = alias_changes(entry);
        for change in [
            ("remove".to_string(), logs.clone(), old.clone()),
            ("add".to_string(), logs.clone(), concrete.clone()),
            ("add".to_string(), jan.clone(), concrete.clone()),
        ] {
            assert!(changes.contains(&change), "{change:?} not in {entry}");
        }
        assert!(
            !changes.iter().any(|(_, _, index)| index == &feb),
            "February touched: {entry}"
        );
        let human = c.restore(&[
            "--match",
            &c.exactly("logs-2024.01"),
            "--atomic",
            "--mode",
            "replace",
        ]);
        human.assert_success();
        assert!(
            human.stderr.contains("removed index") && human.stderr.contains("alias"),
            "the human summary names alias changes and removed indices\n{human}"
        );
        previous = c.members(&jan).into_iter().next();
    }
}

/// Regression: an index with aliases restored with `--atomic` into a fresh
/// target left no name `products` at all, so `verify` then failed.
#[test]
fn atomic_restore_of_an_index_with_aliases_keeps_its_name_reachable() {
    let Some(c) = Logs::new("safety-atomic-name") else {
        return;
    };
    let products = c.name("products");
    c.restore(&["--match", &c.exactly("products"), "--atomic"])
        .assert_success();
    assert_eq!(try_count(&c.target, &products), Some(20));
    assert_eq!(try_count(&c.target, &c.name("catalog")), Some(20));
    verify_cmd(&c.archive, &c.target)
        .args(["--match", &c.exactly("products")])
        .run()
        .assert_success();
}

/// Regression: `--prefix at- --atomic` moved the production alias `logs`
/// off the production indices onto the side copy.
#[test]
fn atomic_side_copy_never_takes_the_production_alias_off_production() {
    let Some(c) = Logs::new("safety-atomic-prefix") else {
        return;
    };
    c.full_restore();
    let (jan, feb, logs) = (
        c.name("logs-2024.01"),
        c.name("logs-2024.02"),
        c.name("logs"),
    );
    let run = c.restore(&[
        "--match",
        &c.exactly("logs-2024.01"),
        "--prefix",
        "at-",
        "--atomic",
        "--mode",
        "replace",
        "--no-aliases",
        "--json",
    ]);
    run.assert_success();
    assert_eq!(c.members(&logs), set(&[&jan, &feb]), "{run}");
    assert_eq!(try_count(&c.target, &logs), Some(1500));
    assert_eq!(try_count(&c.target, &format!("at-{jan}")), Some(750));
    assert_eq!(try_count(&c.target, &jan), Some(750));
}

// ---- 2. two indices renamed onto one name -----------------------------------

/// Regression: two indices renamed onto one name under `--mode replace`
/// reported 1,000 documents written while the target held 500 (the second
/// replace deleted the first).
#[test]
fn two_indices_renamed_onto_one_name_are_refused_before_writing() {
    let Some(c) = Logs::new("safety-rename-clash") else {
        return;
    };
    let run = c.restore(&[
        "--match",
        &format!("^{}-logs-", regex::escape(&c.p)),
        "--rename",
        r"logs-2024\.0[12]=logs-all",
        "--mode",
        "replace",
    ]);
    assert_eq!(run.code, Some(2), "expected a usage error (exit 2)\n{run}");
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "one line\n{run}");
    for name in [
        c.name("logs-2024.01"),
        c.name("logs-2024.02"),
        c.name("logs-all"),
    ] {
        assert!(lines[0].contains(&name), "{name} not named\n{run}");
    }
    assert_eq!(all_index_names(&c.target), Vec::<String>::new());
}

// ---- 4. a side copy and production aliases ----------------------------------

/// Regression: a `--prefix` side copy joined the production alias `logs`
/// (1,000 -> 2,000 documents) without a word. Now the report says so, and
/// `--no-aliases` restores the index without its aliases.
#[test]
fn side_copy_says_which_aliases_it_joined_and_no_aliases_keeps_out() {
    let Some(c) = Logs::new("safety-side-copy") else {
        return;
    };
    c.full_restore();
    let (jan, feb, logs) = (
        c.name("logs-2024.01"),
        c.name("logs-2024.02"),
        c.name("logs"),
    );
    let side = format!("side-{jan}");
    let run = c.restore(&[
        "--match",
        &c.exactly("logs-2024.01"),
        "--prefix",
        "side-",
        "--json",
    ]);
    run.assert_success();
    let report = json_report(&run);
    let entry = report_index(&report, &jan);
    assert_eq!(
        string_list(entry, "joined_aliases"),
        vec![logs.clone()],
        "{entry}"
    );
    assert_eq!(c.members(&logs), set(&[&jan, &feb, &side]));

    let quiet = format!("quiet-{jan}");
    let run = c.restore(&[
        "--match",
        &c.exactly("logs-2024.01"),
        "--prefix",
        "quiet-",
        "--no-aliases",
        "--json",
    ]);
    run.assert_success();
    let report = json_report(&run);
    let entry = report_index(&report, &jan);
    assert_eq!(string_list(entry, "joined_aliases"), Vec::<String>::new());
    assert_eq!(c.members(&logs), set(&[&jan, &feb, &side]));
    assert_eq!(try_count(&c.target, &quiet), Some(750));
    assert_eq!(c.target.aliases(&quiet), json!({}));
}

/// Regression: a `--prefix` side copy of an index that is its alias's
/// write index, restored beside the original (still the write index): the
/// server refuses two write indices with HTTP 500 `illegal_state_exception`,
/// an answer that will not change, and esark sent `POST /_aliases` 8 times
/// (some 17 s of backoff) before it said so. Now it asks once and says why.
#[test]
fn an_alias_the_server_refuses_for_good_is_asked_once_and_reported() {
    let test = "safety-write-alias";
    let Some(target) = target_cluster(test) else {
        return;
    };
    let source = TestCluster::start(test);
    let p = source.prefix().to_string();
    let (index, alias) = (format!("{p}-orders"), format!("{p}-orders-w"));
    seed_index(
        &source,
        &index,
        &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "aliases": {alias.clone(): {"is_write_index": true}}}),
        &docs(10, "o-"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &format!("^{}$", regex::escape(&index)));
    restore_cmd(&archive, &target).run().assert_success();

    let proxy = FaultProxy::start(target.base_url(), vec![]);
    let run = Esark::new()
        .args(["restore", "--input"])
        .arg(&archive)
        .args(["--target", &proxy.url(), "--prefix", "side-", "--quiet"])
        .run();
    assert_eq!(run.code, Some(1), "the restore cannot complete\n{run}");
    let last = run.stderr_lines().last().copied().unwrap_or("");
    assert!(
        last.contains("more than one write index") && last.contains(&alias),
        "the server's reason, on the last line\n{run}"
    );
    assert!(last.contains("--no-aliases"), "the way out\n{run}");
    let asked = proxy.requests_matching(&Route::new("POST", "^/_aliases$"));
    assert_eq!(asked, 1, "POST /_aliases sent\n{}", proxy.log());
    assert_eq!(
        alias_targets(&target, &alias)
            .into_keys()
            .collect::<Vec<_>>(),
        vec![index.clone()]
    );
    assert_eq!(try_count(&target, &format!("side-{index}")), Some(10));
}

// ---- 3. only the templates the selected indices need ------------------------

/// The templates of a report as `kind:name -> (status, reason)`.
fn template_outcomes(report: &Value) -> std::collections::BTreeMap<String, (String, String)> {
    report["templates"]
        .as_array()
        .unwrap_or_else(|| panic!("no templates in {report}"))
        .iter()
        .map(|t| {
            (
                format!(
                    "{}:{}",
                    t["kind"].as_str().unwrap(),
                    t["name"].as_str().unwrap()
                ),
                (
                    t["status"].as_str().unwrap_or("?").to_string(),
                    t["reason"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

/// Regression: `restore --match X --mode replace|merge` put back every
/// template of the archive, also those matching none of the selected
/// indices, silently reverting the target's newer versions.
#[test]
fn selective_restore_puts_back_only_the_templates_its_indices_need() {
    let Some(target) = target_cluster("safety-templates") else {
        return;
    };
    let source = TestCluster::start("safety-templates");
    let p = source.prefix().to_string();
    let n = |s: &str| format!("{p}-{s}");
    // Needed by logs-2024.01: index template (composed of a component
    // template) and a legacy template matching `logs-*`.
    source.put_component_template(
        &n("c-logs"),
        &json!({"template": {"mappings": {"properties": {"host": {"type": "keyword"}}}}, "version": 1}),
    );
    source.put_index_template(
        &n("t-logs"),
        &json!({"index_patterns": [format!("{p}-logs-*")], "composed_of": [n("c-logs")],
                "priority": 100, "version": 1}),
    );
    source.put_legacy_template(
        &n("l-logs"),
        &json!({"index_patterns": [format!("{p}-logs-*")], "order": 1, "version": 1}),
    );
    // Not needed: templates of other indices.
    source.put_component_template(
        &n("c-metrics"),
        &json!({"template": {"mappings": {"properties": {"cpu": {"type": "float"}}}}, "version": 1}),
    );
    source.put_index_template(
        &n("t-metrics"),
        &json!({"index_patterns": [format!("{p}-metrics-*")], "composed_of": [n("c-metrics")],
                "priority": 100, "version": 1}),
    );
    source.put_legacy_template(
        &n("l-metrics"),
        &json!({"index_patterns": [format!("{p}-metrics-*")], "order": 1, "version": 1}),
    );
    seed_index(
        &source,
        &n("logs-2024.01"),
        &json!({"settings": {"number_of_replicas": 0}}),
        &docs(10, "l"),
    );
    seed_index(
        &source,
        &n("metrics-2024.01"),
        &json!({"settings": {"number_of_replicas": 0}}),
        &docs(10, "m"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &format!("^{}-", regex::escape(&p)));

    // The target's newer versions of the unrelated ones, an older one of a
    // needed one, and a template of higher priority over `logs-*`.
    target.put_component_template(
        &n("c-metrics"),
        &json!({"template": {"mappings": {"properties": {"cpu": {"type": "double"}}}}, "version": 9}),
    );
    target.put_index_template(
        &n("t-metrics"),
        &json!({"index_patterns": [format!("{p}-metrics-*")], "composed_of": [n("c-metrics")],
                "priority": 100, "version": 9}),
    );
    target.put_legacy_template(
        &n("l-metrics"),
        &json!({"index_patterns": [format!("{p}-metrics-*")], "order": 1, "version": 9}),
    );
    target.put_legacy_template(
        &n("l-logs"),
        &json!({"index_patterns": [format!("{p}-logs-*")], "order": 1, "version": 0}),
    );
    target.put_index_template(
        &n("t-override"),
        &json!({"index_patterns": [format!("{p}-logs-2024*")], "priority": 500, "version": 9,
                "template": {"settings": {"number_of_replicas": 0}}}),
    );

    let run = restore_cmd(&archive, &target)
        .args([
            "--match",
            &format!("^{}$", regex::escape(&n("logs-2024.01"))),
            "--mode",
            "replace",
            "--json",
        ])
        .run();
    run.assert_success();
    let report = json_report(&run);
    // The unrelated ones keep the target's version 9.
    assert_eq!(target.index_template(&n("t-metrics"))["version"], 9);
    assert_eq!(target.component_template(&n("c-metrics"))["version"], 9);
    assert_eq!(target.legacy_template(&n("l-metrics"))["version"], 9);
    // The needed ones are the archive's.
    assert_eq!(target.index_template(&n("t-logs"))["version"], 1);
    assert_eq!(target.component_template(&n("c-logs"))["version"], 1);
    assert_eq!(target.legacy_template(&n("l-logs"))["version"], 1);
    let outcomes = template_outcomes(&report);
    let expected: std::collections::BTreeMap<String, (String, String)> = [
        ("component", "c-logs", "created"),
        ("index", "t-logs", "created"),
        ("legacy", "l-logs", "replaced"),
    ]
    .iter()
    .map(|(kind, name, how)| {
        (
            format!("{kind}:{}", n(name)),
            ("restored".to_string(), how.to_string()),
        )
    })
    .collect();
    assert_eq!(outcomes, expected, "{report}");
    // The target's template of higher priority is named in a warning.
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains(&n("t-override")) && warnings.contains(&n("logs-2024.01")),
        "no warning about the target's higher-priority template: {report}"
    );
    assert_eq!(target.count(&n("logs-2024.01")), 10);
}

// ---- 5. --force drops a bad chunk, not its index ----------------------------

/// Regression: with `--force`, one bad chunk of a multi-chunk index
/// skipped the whole index and reported "0 of 0 documents". Now the intact
/// chunks are restored and the lost documents reported by file and count,
/// with a non-zero exit; with and without line validation.
#[test]
fn force_restores_the_intact_chunks_of_an_index_with_a_bad_one() {
    let Some(target) = target_cluster("safety-force-chunk") else {
        return;
    };
    let source = TestCluster::start("safety-force-chunk");
    let name = source.name("big");
    let seeded: Vec<(String, String)> = (0..600)
        .map(|i| {
            (
                format!("d{i:04}"),
                format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(200 + i % 7)),
            )
        })
        .collect();
    seed_index(
        &source,
        &name,
        &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}}),
        &seeded,
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    crate::util::esark::Esark::new()
        .arg("dump")
        .args(source.source_args())
        .arg("--output")
        .arg(&archive)
        .args(["--match", &format!("^{}$", regex::escape(&name))])
        .args([
            "--file-size",
            "40KiB",
            "--compression",
            "none",
            "--page-size",
            "100",
        ])
        .run()
        .assert_success();
    let a = crate::util::archive::Archive::open(&archive);
    let mut chunks: Vec<(String, u64)> = a
        .files(&name, "data")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["docs"].as_u64().unwrap(),
            )
        })
        .collect();
    chunks.sort();
    assert!(chunks.len() >= 2, "one chunk only: {chunks:?}");
    let (bad, lost) = chunks[0].clone();
    let path = archive.join(&bad);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    for extra in [&[][..], &["--no-validate"][..]] {
        let run = restore_cmd(&archive, &target)
            .args(["--force", "--mode", "replace", "--discard-state", "--json"])
            .args(extra)
            .run();
        assert_eq!(run.code, Some(1), "expected exit 1 ({extra:?})\n{run}");
        let report = json_report(&run);
        assert_eq!(report["status"], "failed", "{report}");
        let entry = report_index(&report, &name);
        assert_eq!(entry["archive_docs"], 600, "{entry}");
        assert_eq!(entry["written"], 600 - lost, "{entry}");
        assert!(
            entry["lost"][0]["file"]
                .as_str()
                .is_some_and(|f| f.ends_with(&bad)),
            "{entry}"
        );
        assert_eq!(entry["lost"][0]["docs"], lost, "{entry}");
        assert_eq!(target.count(&name), 600 - lost, "{extra:?}");
        let human = restore_cmd(&archive, &target)
            .args(["--force", "--mode", "replace", "--discard-state"])
            .args(extra)
            .run();
        assert_eq!(human.code, Some(1), "{human}");
        assert!(
            human.stderr.contains(&bad) && human.stderr.contains(&format!("{lost} documents")),
            "the lost file and count are said\n{human}"
        );
    }
}

// ---- 7. done means: nothing outside the selected indices changes ------------

/// Everything of `cluster` except `restored` (index names) and `templates`
/// (`kind:name` of the archive): per index its count, settings, mappings
/// and aliases; every alias's members outside `restored`; every template.
fn everything_else(
    cluster: &TestCluster,
    restored: &[&str],
    templates: &[String],
) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    for index in all_index_names(cluster) {
        if restored.contains(&index.as_str()) {
            continue;
        }
        out.insert(format!("count {index}"), json!(cluster.count(&index)));
        out.insert(format!("settings {index}"), cluster.settings(&index));
        out.insert(format!("mappings {index}"), cluster.mappings(&index));
        out.insert(format!("aliases {index}"), cluster.aliases(&index));
    }
    for (kind, path) in [
        ("legacy", "/_template"),
        ("index", "/_index_template"),
        ("component", "/_component_template"),
    ] {
        let all = cluster.get(path);
        let named: Vec<(String, Value)> = match kind {
            "legacy" => all
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => all[format!("{kind}_templates")]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["name"].as_str().unwrap().to_string(), t.clone()))
                .collect(),
        };
        for (name, body) in named {
            let key = format!("{kind}:{name}");
            if !templates.contains(&key) {
                out.insert(format!("template {key}"), body);
            }
        }
    }
    out
}

/// The issue's definition of done: a full restore of a seeded cluster into
/// a target that already has other indices, aliases and templates changes
/// nothing outside the selected indices (their counts, settings, mappings,
/// aliases, and every other template).
#[test]
fn full_restore_changes_nothing_outside_the_restored_indices() {
    let Some(target) = target_cluster("safety-untouched") else {
        return;
    };
    let f = crate::util::fixture::Fixture::seed("safety-untouched", 60);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&f.cluster, &archive, &f.match_all());
    let p = f.cluster.prefix().to_string();

    // The target's own: two indices in a production alias, one of them
    // also in an alias the archive attaches to a restored index, and a
    // template of each kind.
    let t = |s: &str| target.name(s);
    for (index, n) in [("prod-a", 30), ("prod-b", 12)] {
        seed_index(
            &target,
            &t(index),
            &json!({"settings": {"number_of_replicas": 0, "refresh_interval": "7s"},
                    "mappings": {"properties": {"v": {"type": "keyword"}}},
                    "aliases": {t("prod"): {}}}),
            &docs(n, index),
        );
    }
    target.post(
        "/_aliases",
        &json!({"actions": [{"add": {"index": t("prod-b"), "alias": format!("{p}-filtered")}}]}),
    );
    target.put_component_template(
        &t("c"),
        &json!({"template": {"settings": {"number_of_replicas": 0}}, "version": 4}),
    );
    target.put_index_template(
        &t("i"),
        &json!({"index_patterns": [format!("{}-prod-*", target.prefix())], "composed_of": [t("c")],
                "priority": 10, "version": 4}),
    );
    target.put_legacy_template(
        &t("l"),
        &json!({"index_patterns": [format!("{}-prod-*", target.prefix())], "order": 2, "version": 4}),
    );

    let restored = f.open_indices();
    let templates = vec![
        format!("legacy:{}", f.legacy_template),
        format!("index:{}", f.index_template),
        format!("component:{}", f.component_template),
    ];
    let before = everything_else(&target, &restored, &templates);
    assert!(before.contains_key(&format!("count {}", t("prod-a"))));
    let run = restore_cmd(&archive, &target).arg("--json").run();
    run.assert_success();
    let after = everything_else(&target, &restored, &templates);
    for (key, was) in &before {
        assert_eq!(after.get(key), Some(was), "{key} changed\n{run}");
    }
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "something appeared or disappeared outside the restored indices"
    );
    assert_eq!(try_count(&target, &t("prod")), Some(42));
    // The restored index joined the alias the target's index was in: said.
    let report = json_report(&run);
    assert_eq!(
        string_list(report_index(&report, &f.main), "joined_aliases"),
        vec![format!("{p}-filtered")],
        "{report}"
    );
}

// ---- 6. messages ------------------------------------------------------------

/// Regression: `--json` printed nothing on stdout when a run failed with an
/// error (only the stderr line), so a script reading the summary had none.
#[test]
fn json_summary_is_printed_when_a_run_fails_too() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-archive");
    let dead = "http://127.0.0.1:9";
    let missing = missing.to_string_lossy().into_owned();
    let out = tmp.path().join("out").to_string_lossy().into_owned();
    let cases: Vec<Vec<&str>> = vec![
        vec!["restore", "--input", &missing, "--target", dead, "--json"],
        vec!["verify", "--input", &missing, "--target", dead, "--json"],
        vec!["copy", "--source", dead, "--target", dead, "--json"],
        vec!["dump", "--source", dead, "--output", &out, "--json"],
    ];
    for args in cases {
        let run = crate::util::esark::Esark::new().args(&args).run();
        assert_eq!(run.code, Some(1), "{run}");
        let report = json_report(&run);
        assert_eq!(report["status"], "failed", "{args:?}: {report}");
        assert!(
            report["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{args:?}: {report}"
        );
        let lines = run.stderr_lines();
        assert_eq!(lines.len(), 1, "still one error line on stderr\n{run}");
    }
}

/// Regression: a cluster without some APIs gave one warning per kind (up
/// to six lines) on every copy, and a kept template read
/// `template "t" (Component): Skipped: …`.
#[test]
fn apis_not_offered_are_one_line_and_template_outcomes_read_as_sentences() {
    let Some(target) = target_cluster("safety-messages") else {
        return;
    };
    let source = TestCluster::start("safety-messages");
    let name = source.name("one");
    seed_index(
        &source,
        &name,
        &json!({"settings": {"number_of_replicas": 0}}),
        &docs(3, "o"),
    );
    source.put_component_template(
        &source.name("comp"),
        &json!({"template": {"settings": {"number_of_replicas": 0}}}),
    );
    let copy = crate::util::restore_support::copy_cmd(&source, &target)
        .args(["--match", &format!("^{}$", regex::escape(&name))])
        .run();
    copy.assert_success();
    let offered = copy
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("does not offer"))
        .count();
    assert!(offered <= 1, "one line for what is not offered\n{copy}");

    // The dump too (osmem offers neither lifecycle policies, ingest
    // pipelines nor stored scripts: one line names them all).
    let tmp = tempfile::tempdir().unwrap();
    let dump = crate::util::esark::dump_cmd(&source, &tmp.path().join("warned"))
        .args(["--match", &format!("^{}$", regex::escape(&name))])
        .run();
    dump.assert_success();
    let offered = dump
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("does not offer"))
        .count();
    let expected = if source.is_shared() {
        offered.min(1)
    } else {
        1
    };
    assert_eq!(
        offered, expected,
        "one line for what is not offered\n{dump}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &format!("^{}$", regex::escape(&name)));
    let again = restore_cmd(&archive, &target)
        .args(["--mode", "skip-existing"])
        .run();
    again.assert_success();
    assert!(
        again.stderr.contains(&format!(
            "template {:?} (component): skipped: exists on the target; kept",
            source.name("comp")
        )),
        "{again}"
    );
    assert!(!again.stderr.contains("Skipped"), "{again}");
}

/// Regression: `--mode replace` (without `--atomic`) deleted the existing
/// index, and with it the target's own aliases on it, without saying so.
#[test]
fn replace_reports_the_index_it_deleted_and_the_memberships_it_had() {
    let Some(c) = Logs::new("safety-replace-report") else {
        return;
    };
    c.full_restore();
    let (jan, logs) = (c.name("logs-2024.01"), c.name("logs"));
    let extra = c.name("target-only");
    c.target.post(
        "/_aliases",
        &json!({"actions": [{"add": {"index": jan, "alias": extra}}]}),
    );
    let run = c.restore(&[
        "--match",
        &c.exactly("logs-2024.01"),
        "--mode",
        "replace",
        "--json",
    ]);
    run.assert_success();
    let report = json_report(&run);
    let entry = report_index(&report, &jan);
    assert_eq!(
        string_list(entry, "removed_indices"),
        vec![jan.clone()],
        "{entry}"
    );
    let changes = alias_changes(entry);
    for change in [
        ("remove".to_string(), extra.clone(), jan.clone()),
        ("remove".to_string(), logs.clone(), jan.clone()),
        ("add".to_string(), logs.clone(), jan.clone()),
    ] {
        assert!(changes.contains(&change), "{change:?} not in {entry}");
    }
    assert_eq!(try_count(&c.target, &logs), Some(1500));
}

/// Regression: a bulk request refused whole with 413 (too large) listed its
/// documents with status 0 and without their routing, the summary did not
/// count them, and the rejects file of a new run still held an earlier
/// run's lines.
#[test]
fn rejects_of_a_413_carry_status_and_routing_and_a_new_run_starts_the_file_afresh() {
    use crate::util::faults::{Fault, FaultProxy, Route, Rule, When};
    let Some(target) = target_cluster("safety-rejects") else {
        return;
    };
    let source = TestCluster::start("safety-rejects");
    let name = source.name("routed");
    source.create_index(&name, &json!({"settings": {"number_of_replicas": 0}}));
    let mut bulk = crate::util::server::BulkBody::new();
    for i in 0..20 {
        bulk.index(
            &name,
            &format!("d{i:02}"),
            Some("rt"),
            &format!(r#"{{"i":{i}}}"#),
        );
    }
    source.bulk(bulk.as_str());
    source.refresh(&name);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &format!("^{}$", regex::escape(&name)));
    let rejects = tmp.path().join("rejects.jsonl");
    let rejects_arg = rejects.to_string_lossy().into_owned();

    let proxy = FaultProxy::start(
        target.base_url(),
        vec![Rule::new(
            "too-large",
            Route::bulk(),
            When::Nth(1),
            Fault::Status(413),
        )],
    );
    let run = crate::util::esark::Esark::new()
        .args(["restore", "--input"])
        .arg(&archive)
        .args(["--target", proxy.url().trim_end_matches('/')])
        .args([
            "--bulk-docs",
            "10",
            "--concurrency",
            "1",
            "--rejects",
            &rejects_arg,
            "--json",
        ])
        .run();
    proxy.assert_fired("too-large", 1);
    assert_eq!(run.code, Some(1), "{run}");
    let report = json_report(&run);
    assert_eq!(report["failed"], 10, "{report}");
    let lines: Vec<Value> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10, "{lines:?}");
    for line in &lines {
        assert_eq!(line["status"], 413, "{line}");
        assert_eq!(line["routing"], "rt", "{line}");
    }

    // A new run (not --resume) without rejects: the file no longer lists
    // the earlier run's documents.
    let again = restore_cmd(&archive, &target)
        .args([
            "--mode",
            "replace",
            "--discard-state",
            "--rejects",
            &rejects_arg,
            "--json",
        ])
        .run();
    again.assert_success();
    let left = std::fs::read_to_string(&rejects).unwrap_or_default();
    assert_eq!(left, "", "the earlier run's rejects are still listed");
    assert_eq!(target.count(&name), 20);
}
