//! `esark verify`: after a clean restore it matches; after the target is
//! changed behind its back it names what differs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::Method;
use serde_json::json;

use crate::util::fixture::Fixture;
use crate::util::restore_support::{
    dump_archive, id_list, json_report, report_index, restore_cmd, seed_index, target_cluster,
    verify_cmd, Stored,
};
use crate::util::server::{enc, TestCluster};

/// A source index `<p>-v` (50 docs `d00`..`d49` with integers near 2^63,
/// explicit mapping, an alias, an explicit refresh interval) and a legacy template, dumped and
/// restored into a fresh target, on which `verify` matches.
struct Restored {
    source: TestCluster,
    target: TestCluster,
    _tmp: tempfile::TempDir,
    archive: PathBuf,
    index: String,
    template: String,
    _docs: BTreeMap<String, Stored>,
}

fn restored(test: &str) -> Option<Restored> {
    let target = target_cluster(test)?;
    let source = TestCluster::start(test);
    let index = source.name("v");
    let docs: Vec<(String, String)> = (0..50)
        .map(|i| {
            let big = i64::MAX - i;
            (
                format!("d{i:02}"),
                format!(r#"{{"i":{i},"v":"orig","big":{big}}}"#),
            )
        })
        .collect();
    let seeded = seed_index(
        &source,
        &index,
        &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
                "mappings": {"properties": {"i": {"type": "integer"}, "v": {"type": "keyword"}, "big": {"type": "long"}}},
                "aliases": {source.name("v-alias"): {}}}),
        &docs,
    );
    let template = source.name("tpl");
    source.put_legacy_template(
        &template,
        &json!({"index_patterns": [format!("{}-tpl-*", source.prefix())], "order": 1}),
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &Fixture::exactly(&index));
    restore_cmd(&archive, &target).run().assert_success();
    let clean = verify_cmd(&archive, &target).arg("--json").run();
    clean.assert_success();
    assert_eq!(json_report(&clean)["status"], "match", "{clean}");
    Some(Restored {
        source,
        target,
        _tmp: tmp,
        archive,
        index,
        template,
        _docs: seeded,
    })
}

#[test]
fn verify_names_changed_missing_and_unexpected_documents() {
    let Some(r) = restored("verify-docs") else {
        return;
    };
    let t = &r.target;
    let i = enc(&r.index);
    let put_raw = |id: &str, source: &str| {
        let (status, body) = t.request(
            Method::PUT,
            &format!("/{i}/_doc/{id}?refresh=true"),
            "application/json",
            Some(source.to_string()),
        );
        assert!((200..300).contains(&status), "PUT {id}: {status} {body}");
    };
    put_raw("d07", r#"{"i":7,"v":"tampered","big":9223372036854775800}"#);
    // Off by one above 2^53: a digest that goes through f64 misses it.
    put_raw("d21", r#"{"i":21,"v":"orig","big":9223372036854775785}"#);
    // The same document with its keys in another order is not a change
    // (the digest is over the canonical `_source`).
    put_raw("d30", r#"{"big":9223372036854775777,"v":"orig","i":30}"#);
    t.delete(&format!("/{i}/_doc/d13?refresh=true"));
    put_raw("intruder", r#"{"i":999,"v":"orig","big":1}"#);
    t.refresh(&r.index);
    assert_eq!(t.count(&r.index), 50);

    // Text output names the ids.
    let run = verify_cmd(&r.archive, t).run();
    assert_eq!(run.code, Some(1), "expected exit 1\n{run}");
    let all = format!("{}\n{}", run.stdout, run.stderr);
    for id in ["d07", "d13", "d21", "intruder"] {
        assert!(all.contains(id), "verify output does not name {id}\n{run}");
    }

    // And so does the JSON report, each id in its list.
    let run = verify_cmd(&r.archive, t).arg("--json").run();
    assert_eq!(run.code, Some(1), "expected exit 1\n{run}");
    let report = json_report(&run);
    assert_eq!(report["status"], "differ", "{report}");
    let entry = report_index(&report, &r.index);
    assert_eq!(entry["target"], r.index.as_str(), "{entry}");
    assert_eq!(entry["archive_docs"], 50, "{entry}");
    assert_eq!(entry["target_docs"], 50, "{entry}");
    assert_eq!(entry["documents_match"], false, "{entry}");
    let mut changed = id_list(entry, "changed");
    changed.sort();
    assert_eq!(changed, ["d07", "d21"], "{entry}");
    assert_eq!(id_list(entry, "missing"), ["d13"], "{entry}");
    assert_eq!(id_list(entry, "unexpected"), ["intruder"], "{entry}");
    // Only documents were touched.
    assert_eq!(entry["settings_match"], true, "{entry}");
    assert_eq!(entry["mappings_match"], true, "{entry}");
    assert_eq!(entry["aliases_match"], true, "{entry}");
    assert_eq!(report["templates_match"], true, "{report}");
}

#[test]
fn verify_reports_settings_alias_and_template_differences() {
    let Some(r) = restored("verify-meta") else {
        return;
    };
    let t = &r.target;
    let i = enc(&r.index);
    // The archived refresh interval is 1s.
    t.put(
        &format!("/{i}/_settings"),
        &json!({"index": {"refresh_interval": "30s"}}),
    );
    t.post(
        "/_aliases",
        &json!({"actions": [{"remove": {"index": r.index, "alias": r.source.name("v-alias")}}]}),
    );
    t.delete(&format!("/_template/{}", enc(&r.template)));

    let run = verify_cmd(&r.archive, t).arg("--json").run();
    assert_eq!(run.code, Some(1), "expected exit 1\n{run}");
    let report = json_report(&run);
    assert_eq!(report["status"], "differ", "{report}");
    let entry = report_index(&report, &r.index);
    assert_eq!(entry["documents_match"], true, "{entry}");
    assert_eq!(entry["mappings_match"], true, "{entry}");
    assert_eq!(entry["settings_match"], false, "{entry}");
    assert_eq!(entry["aliases_match"], false, "{entry}");
    assert_eq!(report["templates_match"], false, "{report}");
    let differences = entry["differences"].to_string();
    assert!(
        differences.contains("refresh_interval"),
        "differences do not name refresh_interval: {entry}"
    );
    assert!(
        report["differences"].to_string().contains(&r.template),
        "differences do not name the template {}: {report}",
        r.template
    );
}

/// A selective verify compares the templates a selective restore puts
/// back (those shaping the selected indices), not every template of the
/// archive: after `restore --match X`, `verify --match X` matches.
#[test]
fn a_selective_verify_compares_only_the_templates_of_the_selection() {
    let Some(target) = target_cluster("verify-select") else {
        return;
    };
    let source = TestCluster::start("verify-select");
    let index = source.name("v");
    seed_index(
        &source,
        &index,
        &json!({}),
        &[("d1".into(), r#"{"i":1}"#.into())],
    );
    // A template for other indices than the selected one.
    let other = source.name("tpl-other");
    source.put_legacy_template(
        &other,
        &json!({"index_patterns": [format!("{}-other-*", source.prefix())], "order": 1}),
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&source, &archive, &Fixture::exactly(&index));
    let only = format!("^{}$", regex::escape(&index));
    restore_cmd(&archive, &target)
        .args(["--match", &only])
        .run()
        .assert_success();
    let run = verify_cmd(&archive, &target)
        .args(["--match", &only, "--json"])
        .run();
    assert_eq!(json_report(&run)["status"], "match", "{run}");
    run.assert_success();
}
