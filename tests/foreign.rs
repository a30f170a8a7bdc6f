//! `esark restore --input` on dumps written by other tools: multielasticdump
//! folders, elasticdump files (plain, gzip, `--fileSize` parts), Kourou
//! exports and bulk NDJSON files, from `tests/fixtures/foreign/` (see its
//! README for how each was made). Every document is checked against the
//! file: `_source` exactly as the file holds it, big integers included.
//!
//! Fixtures are copied to a temporary folder first: a restore writes its
//! state file next to its input. Every test needs a target of its own: a
//! private osmem or `ESARK_TEST_TARGET_URL`, and is skipped (visibly) when
//! `ESARK_TEST_URL` is set without it (see `target_cluster`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::util::check::assert_one_error_line;
use crate::util::esark::Esark;
use crate::util::restore_support::{
    all_index_names, all_template_names, assert_same_stored, copy_dir, docs_of, restore_cmd,
    target_cluster, Stored,
};
use crate::util::server::{enc, TestCluster};

// ---- helpers ----------------------------------------------------------------

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/foreign")
        .join(name)
}

/// A copy of a fixture in a temporary folder, which also receives the
/// rejects file of the runs on it.
struct Staged {
    tmp: tempfile::TempDir,
    /// The copy of the fixture (a file or a folder).
    path: PathBuf,
}

/// Copies the fixture `name` (a file or a folder) to a fresh temporary folder.
fn staged(name: &str) -> Staged {
    let tmp = tempfile::tempdir().unwrap();
    let from = fixture(name);
    let path = tmp.path().join(from.file_name().unwrap());
    if from.is_dir() {
        copy_dir(&from, &path);
    } else {
        std::fs::copy(&from, &path).unwrap();
    }
    Staged { tmp, path }
}

impl Staged {
    /// `esark restore --input <the copy> --target <target>`.
    fn restore(&self, target: &TestCluster) -> Esark {
        self.restore_from(&self.path, target)
    }

    /// `esark restore --input <input> --target <target>`, the rejects file
    /// (written only if a document is rejected) in the temporary folder.
    fn restore_from(&self, input: &Path, target: &TestCluster) -> Esark {
        restore_cmd(input, target)
            .arg("--rejects")
            .arg(self.tmp.path().join("rejects.jsonl"))
    }
}

#[derive(Deserialize)]
struct Hit {
    _index: Option<String>,
    _id: String,
    #[serde(default)]
    _routing: Option<String>,
    #[serde(default)]
    fields: Option<HitFields>,
    _source: Box<RawValue>,
}

#[derive(Deserialize)]
struct HitFields {
    _routing: Option<String>,
}

/// The documents of an (uncompressed) elasticdump file, per `_index`, with
/// `_source` as the file holds it.
fn hits_of(path: &Path) -> BTreeMap<String, BTreeMap<String, Stored>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out: BTreeMap<String, BTreeMap<String, Stored>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let hit: Hit = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        out.entry(hit._index.unwrap_or_default())
            .or_default()
            .insert(
                hit._id,
                Stored {
                    routing: hit._routing.or(hit.fields.and_then(|f| f._routing)),
                    source: hit._source.get().to_string(),
                },
            );
    }
    out
}

/// The documents of a Kourou `documents.jsonl`, `body` as the file holds it.
fn kourou_docs(path: &Path) -> BTreeMap<String, Stored> {
    #[derive(Deserialize)]
    struct Doc {
        _id: String,
        body: Box<RawValue>,
    }
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let doc: Doc = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            (
                doc._id,
                Stored {
                    routing: None,
                    source: doc.body.get().to_string(),
                },
            )
        })
        .collect()
}

/// Creates `index` on `target` as `fx-people` of the multielasticdump
/// fixture (its mappings and analysis), for data files that carry none.
fn create_like_fx_people(target: &TestCluster, index: &str) {
    let read = |name: &str| -> Value {
        let bytes = std::fs::read(fixture("multielasticdump").join(name)).unwrap();
        match serde_json::from_slice(&bytes).unwrap() {
            Value::String(inner) => serde_json::from_str(&inner).unwrap(),
            other => other,
        }
    };
    let mappings = read("fx-people.mapping.json")["fx-people"]["mappings"].clone();
    let analysis =
        read("fx-people.settings.json")["fx-people"]["settings"]["index"]["analysis"].clone();
    target.create_index(
        index,
        &json!({"settings": {"index": {"analysis": analysis}}, "mappings": mappings}),
    );
}

fn tokens(target: &TestCluster, index: &str, analyzer: &str, text: &str) -> Vec<String> {
    let resp = target.post(
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

// ---- elasticdump --------------------------------------------------------------

#[test]
fn multielasticdump_folder_restores_documents_metadata_and_templates() {
    let Some(target) = target_cluster("foreign-multi") else {
        return;
    };
    let dir = staged("multielasticdump");
    let out = dir.restore(&target).run();
    out.assert_success();
    assert!(
        out.stderr.contains("importing a multielasticdump folder"),
        "{out}"
    );
    for index in ["fx-people", "fx-events"] {
        let expected = hits_of(&dir.path.join(format!("{index}.json")));
        assert_same_stored(&expected[index], &docs_of(&target, index), index);
        let mapping: Value = serde_json::from_slice(
            &std::fs::read(dir.path.join(format!("{index}.mapping.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            target.mappings(index),
            mapping[index]["mappings"],
            "{index}"
        );
    }
    let people = docs_of(&target, "fx-people");
    assert!(people["p1"].source.contains(r#""big":9223372036854775807"#));
    assert!(people["p2"]
        .source
        .contains(r#""huge":18446744073709551615"#));
    assert!(people["p2"].source.contains(r#""neg":-9007199254740993"#));
    assert_eq!(people["p2"].routing.as_deref(), Some("r1"));

    // Settings (the analyzer works), aliases and the legacy template.
    assert_eq!(tokens(&target, "fx-people", "folded", "Zoë"), ["zoe"]);
    assert_eq!(
        target.settings("fx-people")["index"]["number_of_shards"],
        "1"
    );
    assert_eq!(
        target.settings("fx-events")["index"]["number_of_shards"],
        "2"
    );
    let aliases = target.aliases("fx-people");
    assert_eq!(aliases["fx-people-read"], json!({}), "{aliases}");
    assert_eq!(
        aliases["fx-people-write"]["is_write_index"], true,
        "{aliases}"
    );
    assert_eq!(
        aliases["fx-people-write"]["index_routing"], "r1",
        "{aliases}"
    );
    assert_eq!(target.aliases("fx-events"), json!({}));
    assert_eq!(
        target.legacy_template("fx-tpl")["index_patterns"],
        json!(["fx-logs-*"])
    );
}

#[test]
fn gzip_files_and_file_size_parts_are_read_in_order() {
    let Some(target) = target_cluster("foreign-gzip-split") else {
        return;
    };
    let expected_people = &hits_of(&fixture("multielasticdump/fx-people.json"))["fx-people"];
    let expected_events = &hits_of(&fixture("multielasticdump/fx-events.json"))["fx-events"];

    // multielasticdump --fsCompress: every file gzipped, named .json.gz.
    let gz = staged("multielasticdump-gz");
    gz.restore(&target)
        .args(["--prefix", "gz-"])
        .run()
        .assert_success();
    assert_same_stored(expected_people, &docs_of(&target, "gz-fx-people"), "gz");
    assert_eq!(tokens(&target, "gz-fx-people", "folded", "Ünï"), ["uni"]);

    // elasticdump --fileSize --fsCompress: fx-events.split-{0,1}.json.gz.
    let parts_gz = staged("elasticdump-split-gz");
    parts_gz
        .restore(&target)
        .args(["--prefix", "parts-gz-"])
        .run()
        .assert_success();
    assert_same_stored(
        expected_events,
        &docs_of(&target, "parts-gz-fx-events"),
        "parts-gz",
    );

    // elasticdump --fileSize: data only, into an index created with mappings.
    create_like_fx_people(&target, "parts-fx-people");
    let parts = staged("elasticdump-split");
    parts
        .restore(&target)
        .args(["--prefix", "parts-", "--mode", "merge"])
        .run()
        .assert_success();
    assert_same_stored(
        expected_people,
        &docs_of(&target, "parts-fx-people"),
        "parts",
    );
}

#[test]
fn elasticdump_file_goes_to_each_hit_index_or_to_the_index_flag() {
    let Some(target) = target_cluster("foreign-single") else {
        return;
    };
    // A file of every index: each hit goes to its `_index`.
    create_like_fx_people(&target, "fx-people");
    let all = staged("elasticdump/all.json");
    all.restore(&target)
        .args(["--mode", "merge"])
        .run()
        .assert_success();
    let expected = hits_of(&all.path);
    assert_eq!(expected.len(), 2);
    for (index, docs) in &expected {
        assert_same_stored(docs, &docs_of(&target, index), index);
    }

    // --index: every document of the file into one named index.
    create_like_fx_people(&target, "people-copy");
    let one = staged("elasticdump/fx-people.json");
    one.restore(&target)
        .args(["--index", "people-copy", "--mode", "merge"])
        .run()
        .assert_success();
    assert_same_stored(
        &hits_of(&one.path)["fx-people"],
        &docs_of(&target, "people-copy"),
        "--index",
    );
    // The state file of a file input lives next to it (not under it, which
    // would have failed the run), and is removed at the end.
    assert!(!one
        .path
        .with_file_name("fx-people.json.restore.state.json")
        .exists());
}

#[test]
fn elasticsearch_6_dumps_lose_their_mapping_type() {
    let Some(target) = target_cluster("foreign-es6") else {
        return;
    };
    let dir = staged("es6");
    dir.restore(&target).run().assert_success();
    assert_eq!(
        target.mappings("legacy"),
        json!({"dynamic":"strict","properties":{
            "tags":{"type":"keyword"},
            "title":{"type":"text","fields":{"raw":{"type":"keyword"}}},
            "views":{"type":"long"}}})
    );
    let settings = target.settings("legacy");
    assert_eq!(settings["index"]["number_of_shards"], "2", "{settings}");
    assert_eq!(tokens(&target, "legacy", "names", "Ab Cd"), ["ab cd"]);
    assert_eq!(
        target.aliases("legacy")["legacy-read"]["filter"],
        json!({"term":{"tags":"x"}})
    );
    let docs = docs_of(&target, "legacy");
    assert_same_stored(
        &hits_of(&dir.path.join("legacy.json"))["legacy"],
        &docs,
        "es6",
    );
    assert_eq!(docs["l3"].routing.as_deref(), Some("u9"), "fields._routing");
}

// ---- Kourou -------------------------------------------------------------------

#[test]
fn kourou_export_restores_each_collection_into_index_dot_collection() {
    let Some(target) = target_cluster("foreign-kourou") else {
        return;
    };
    let root = staged("kourou");
    root.restore(&target).run().assert_success();
    for collection in ["yellow-taxi", "green-taxi"] {
        let index = format!("nyc-open-data.{collection}");
        let file = root
            .path
            .join("nyc-open-data")
            .join(collection)
            .join("documents.jsonl");
        assert_same_stored(&kourou_docs(&file), &docs_of(&target, &index), &index);
    }
    let yellow = docs_of(&target, "nyc-open-data.yellow-taxi");
    assert!(yellow["trip-1"]
        .source
        .contains(r#""meter":9223372036854775807"#));
    assert!(yellow["trip-1"].source.contains(r#""trip_distance":1.50"#));
    let mappings = target.mappings("nyc-open-data.yellow-taxi");
    assert_eq!(mappings["dynamic"], "strict", "{mappings}");
    assert_eq!(
        mappings["_meta"],
        json!({"owner":"taxi-team"}),
        "{mappings}"
    );
    assert_eq!(
        mappings["properties"]["_kuzzle_info"]["properties"]["createdAt"]["type"], "date",
        "{mappings}"
    );

    // One collection folder, into Kuzzle 2's own name with --prefix '&'.
    let green = root.path.join("nyc-open-data/green-taxi");
    root.restore_from(&green, &target)
        .args(["--prefix", "&"])
        .run()
        .assert_success();
    assert_same_stored(
        &kourou_docs(&green.join("documents.jsonl")),
        &docs_of(&target, "&nyc-open-data.green-taxi"),
        "--prefix &",
    );
}

// ---- bulk NDJSON --------------------------------------------------------------

#[test]
fn bulk_file_restores_index_and_create_actions() {
    let Some(target) = target_cluster("foreign-bulk") else {
        return;
    };
    let file = staged("bulk/docs.ndjson");
    let out = file.restore(&target).run();
    out.assert_success();
    assert!(out.stderr.contains("importing a bulk NDJSON file"), "{out}");
    let stored = |routing: Option<&str>, source: &str| Stored {
        routing: routing.map(str::to_string),
        source: source.to_string(),
    };
    let items = BTreeMap::from([
        (
            "i1".to_string(),
            stored(
                None,
                r#"{"name":"Zoë","big":9223372036854775807,"nested":{"a":[1,2,3],"b":{"c":null}}}"#,
            ),
        ),
        (
            "i2".to_string(),
            stored(
                Some("shard-a"),
                r#"{"name":"日本","neg":-9007199254740993,"f":1.50}"#,
            ),
        ),
    ]);
    let other = BTreeMap::from([
        (
            "42".to_string(),
            stored(
                Some("old-style"),
                r#"{"msg":"numeric id, _routing of Elasticsearch 6","esc":"tab\tquote\"backslash\\"}"#,
            ),
        ),
        ("o2".to_string(), stored(None, r#"{"msg":"crlf line"}"#)),
    ]);
    assert_same_stored(&items, &docs_of(&target, "bk-items"), "bk-items");
    assert_same_stored(&other, &docs_of(&target, "bk-other"), "bk-other");

    file.restore(&target)
        .args(["--index", "bk-all"])
        .run()
        .assert_success();
    let mut all = items;
    all.extend(other);
    assert_same_stored(&all, &docs_of(&target, "bk-all"), "--index");
}

// ---- refusals -----------------------------------------------------------------

#[test]
fn malformed_lines_stop_the_restore_before_any_write() {
    let Some(target) = target_cluster("foreign-malformed") else {
        return;
    };
    let before_indices = all_index_names(&target);
    let before_templates = all_template_names(&target);

    // elasticdump: the second line of fx-events.json cut short.
    let dir = staged("multielasticdump");
    let data = dir.path.join("fx-events.json");
    let text = std::fs::read_to_string(&data).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let cut = &lines[1][..lines[1].len() - 10];
    lines[1] = cut;
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let line = assert_one_error_line(&dir.restore(&target).run());
    assert!(line.contains("fx-events.json: line 2:"), "{line}");
    assert!(line.contains("nothing was restored"), "{line}");

    // Kourou: a body that is not an object.
    let root = staged("kourou");
    let docs = root.path.join("nyc-open-data/yellow-taxi/documents.jsonl");
    let text = std::fs::read_to_string(&docs).unwrap();
    std::fs::write(&docs, text + "{\"_id\":\"bad\",\"body\":\"text\"}\n").unwrap();
    let line = assert_one_error_line(&root.restore(&target).run());
    assert!(line.contains("documents.jsonl: line 5:"), "{line}");

    // Bulk: a delete action is an operation, not a document.
    let file = staged("bulk/docs.ndjson");
    let text = std::fs::read_to_string(&file.path).unwrap();
    std::fs::write(
        &file.path,
        text + "{\"delete\":{\"_index\":\"bk-items\",\"_id\":\"i1\"}}\n",
    )
    .unwrap();
    let line = assert_one_error_line(&file.restore(&target).run());
    assert!(line.contains("docs.ndjson: line 10:"), "{line}");
    assert!(line.contains("\"delete\" action"), "{line}");

    assert_eq!(all_index_names(&target), before_indices);
    assert_eq!(all_template_names(&target), before_templates);
}

/// A foreign dump's line is capped like an archive's (`--max-line-size`):
/// a longer one is refused in one line naming the file and the line,
/// before any write, instead of being read into memory whole.
#[test]
fn a_foreign_line_longer_than_the_cap_is_refused_before_any_write() {
    let Some(target) = target_cluster("foreign-long-line") else {
        return;
    };
    let before = all_index_names(&target);
    let dir = staged("multielasticdump");
    let data = dir.path.join("fx-events.json");
    let text = std::fs::read_to_string(&data).unwrap();
    // A valid hit of 3 MiB on line 2.
    let long = json!({
        "_id": "long", "_index": "fx-events", "_score": 1,
        "_source": {"kind": "x".repeat(3 << 20)}
    });
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines.insert(1, long.to_string());
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let run = dir.restore(&target).args(["--max-line-size", "1MiB"]).run();
    let line = assert_one_error_line(&run);
    assert!(line.contains("fx-events.json: line 2:"), "{line}");
    assert!(line.contains("--max-line-size"), "{line}");
    assert_eq!(all_index_names(&target), before, "nothing may be written");
}

#[test]
fn unrecognised_inputs_and_misused_index_flag_are_clear_errors() {
    let Some(target) = target_cluster("foreign-unrecognised") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let random = tmp.path().join("random");
    std::fs::create_dir(&random).unwrap();
    std::fs::write(random.join("package.json"), "{\"name\":\"x\"}\n").unwrap();
    std::fs::write(random.join("notes.txt"), "hello\n").unwrap();
    let line = assert_one_error_line(&restore_cmd(&random, &target).run());
    assert!(line.contains(&random.display().to_string()), "{line}");
    assert!(line.contains("neither an esark archive"), "{line}");
    let line = assert_one_error_line(&restore_cmd(&random.join("notes.txt"), &target).run());
    assert!(line.contains("neither an esark archive"), "{line}");

    // --index on a folder of two indices.
    let dir = staged("multielasticdump");
    let line = assert_one_error_line(&dir.restore(&target).args(["--index", "one"]).run());
    assert!(line.contains("fx-events, fx-people"), "{line}");

    // --index on an esark archive: a usage error.
    let archive = tmp.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    std::fs::write(archive.join("manifest.json"), "{}").unwrap();
    let out = restore_cmd(&archive, &target)
        .args(["--index", "one"])
        .run();
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("--rename"), "{out}");
    assert!(all_index_names(&target).iter().all(|i| i != "one"));
}
