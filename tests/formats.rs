//! The archive format as a contract: archives written by earlier versions
//! of esark (format versions 1 and 2, kept under `tests/fixtures/`) still
//! restore exactly; new archives are version 4 and record the cluster
//! metadata the cluster offers, with a warning (not a failure) for each
//! kind it does not; `--query` makes a partial dump.

use std::path::Path;

use serde_json::Value;

use crate::util::esark::Esark;
use crate::util::restore_support::{copy_dir, docs_of, restore_cmd, target_cluster, verify_cmd};
use crate::util::server::TestCluster;
use crate::util::skip::skip;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Restores the fixture archive `fixture-vN` (index `fixture-vN`, alias
/// `fixture-vN-read`, three documents with big integers and unicode)
/// written by an earlier esark, and checks every byte of every document.
fn old_archive_restores_exactly(version: u32) {
    let name = format!("fixture-v{version}");
    let Some(target) = target_cluster(&format!("format-v{version}")) else {
        return;
    };
    // Restore writes its state beside the archive: work on a copy.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join(&name);
    copy_dir(&fixture(&format!("archive-v{version}")), &archive);
    assert_eq!(manifest(&archive)["format_version"], version);

    let inspect = Esark::new().arg("inspect").arg(&archive).run();
    assert_eq!(inspect.code, Some(0), "{inspect:?}");
    assert!(
        inspect
            .stdout
            .contains(&format!("esark-archive v{version}")),
        "{}",
        inspect.stdout
    );

    let out = restore_cmd(&archive, &target).args(["--quiet"]).run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let docs = docs_of(&target, &name);
    assert_eq!(docs.len(), 3);
    let source = |id: &str| docs[id].source.clone();
    assert_eq!(
        source("a"),
        r#"{"name":"Zoë","big":9223372036854775807,"nested":{"k":"v","n":[1,2,-9007199254740993]},"ratio":2.50}"#
    );
    assert_eq!(source("b"), r#"{"name":"café","big":-9223372036854775808}"#);
    assert_eq!(docs["b"].routing.as_deref(), Some("r1"));
    assert_eq!(source("c"), r#"{"name":"東京 🚀","big":9007199254740993}"#);
    let aliases = target.get(&format!("/{name}/_alias"));
    assert!(
        aliases[name.as_str()]["aliases"]
            .get(format!("{name}-read"))
            .is_some(),
        "{aliases}"
    );

    let verify = verify_cmd(&archive, &target).run();
    assert_eq!(verify.code, Some(0), "{verify:?}");
}

#[test]
fn a_format_version_1_archive_restores_exactly() {
    old_archive_restores_exactly(1);
}

/// Version 2 chunks are a single zstd frame (version 3 writes one per page).
#[test]
fn a_format_version_2_archive_restores_exactly() {
    old_archive_restores_exactly(2);
}

/// Version 3 manifests have no `failed` list (version 4 adds it).
#[test]
fn a_format_version_3_archive_restores_exactly() {
    old_archive_restores_exactly(3);
}

#[test]
fn new_archives_are_version_6_and_missing_apis_are_warnings() {
    let cluster = TestCluster::start("format-v2");
    let index = cluster.name("docs");
    cluster.create_index(&index, &serde_json::json!({}));
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("a");
    let out = Esark::new()
        .arg("dump")
        .args(cluster.source_args())
        .arg("--output")
        .arg(&out_dir)
        .args([
            "--match",
            &format!("^{index}$"),
            "--include-cluster-settings",
        ])
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let m = manifest(&out_dir);
    assert_eq!(m["format_version"], 6);
    let kinds: Vec<&str> = m["cluster_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for always in [
        "templates",
        "index_templates",
        "component_templates",
        "cluster_settings",
    ] {
        assert!(kinds.contains(&always), "{kinds:?}");
    }
    // Every kind the cluster lacks is named in one warning line; every kind
    // it has is in the archive.
    let offered = |kind: &str, what: &str| {
        let warned = out
            .stderr
            .lines()
            .any(|l| l.starts_with("warning: ") && l.contains(what));
        assert!(
            kinds.contains(&kind) != warned,
            "{kind}: in archive {}, warned {warned}\n{}",
            kinds.contains(&kind),
            out.stderr
        );
    };
    offered("ingest_pipelines", "ingest pipelines");
    offered("stored_scripts", "stored scripts");
    offered("data_streams", "data streams");
    if cluster.flavor() == "opensearch" {
        offered("ism_policies", "(ISM) policies");
    } else {
        offered("ilm_policies", "(ILM) policies");
    }
    if !cluster.is_shared() {
        // osmem serves neither ingest pipelines nor lifecycle policies:
        // both named in one line.
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("does not offer"))
            .collect();
        assert_eq!(lines.len(), 1, "{}", out.stderr);
        assert!(
            lines[0].starts_with("warning: not dumped, the cluster does not offer them: ")
                && lines[0].contains("ingest pipelines")
                && lines[0].contains("policies"),
            "{}",
            out.stderr
        );
    }
    let inspect = Esark::new().arg("inspect").arg(&out_dir).run();
    assert_eq!(inspect.code, Some(0), "{inspect:?}");
}

#[test]
fn query_dumps_only_matching_documents() {
    let cluster = TestCluster::start("format-query");
    let index = cluster.name("q");
    cluster.create_index(
        &index,
        &serde_json::json!({"mappings": {"properties": {"n": {"type": "long"}}}}),
    );
    let mut body = String::new();
    for i in 0..50 {
        body.push_str(&format!(
            "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"{i}\"}}}}\n{{\"n\":{i}}}\n"
        ));
    }
    cluster.bulk(&body);
    cluster.refresh(&index);
    let dir = tempfile::tempdir().unwrap();
    for (name, query) in [
        (
            "body",
            r#"{"query":{"range":{"n":{"gte":10,"lt":20}}},"size":3}"#.to_string(),
        ),
        ("bare", r#"{"range":{"n":{"gte":10,"lt":20}}}"#.to_string()),
    ] {
        let out_dir = dir.path().join(name);
        let out = Esark::new()
            .arg("dump")
            .args(cluster.source_args())
            .arg("--output")
            .arg(&out_dir)
            .args([
                "--match",
                &format!("^{index}$"),
                "--query",
                &query,
                "--compression",
                "none",
            ])
            .args(["--json", "--quiet"])
            .run();
        assert_eq!(out.code, Some(0), "{out:?}");
        let m = manifest(&out_dir);
        assert_eq!(m["indices"][0]["docs"], 10, "{m}");
        assert_eq!(m["indices"][0]["expected_docs"], 10, "{m}");
        assert_eq!(
            m["options"]["query"],
            serde_json::json!({"range": {"n": {"gte": 10, "lt": 20}}})
        );
        let mut ids: Vec<u64> = Vec::new();
        for f in m["indices"][0]["files"].as_array().unwrap() {
            if f["kind"] == "data" {
                let text =
                    std::fs::read_to_string(out_dir.join(f["path"].as_str().unwrap())).unwrap();
                for line in text.lines() {
                    let v: Value = serde_json::from_str(line).unwrap();
                    ids.push(v["_id"].as_str().unwrap().parse().unwrap());
                }
            }
        }
        ids.sort();
        assert_eq!(ids, (10..20).collect::<Vec<u64>>());
    }
    let bad = Esark::new()
        .arg("dump")
        .args(cluster.source_args())
        .arg("--output")
        .arg(dir.path().join("bad"))
        .args(["--query", "[1,2]"])
        .run();
    assert_eq!(bad.code, Some(2), "{bad:?}");
}

#[test]
fn an_unknown_format_version_is_refused_with_a_clear_line() {
    let Some(target) = target_cluster("format-unknown") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("future");
    copy_dir(&fixture("archive-v1"), &archive);
    let path = archive.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 99");
    std::fs::write(&path, text).unwrap();
    for command in ["inspect", "restore"] {
        let mut esark = Esark::new().arg(command);
        esark = if command == "inspect" {
            esark.arg(&archive)
        } else {
            restore_cmd(&archive, &target)
        };
        let out = esark.run();
        assert_eq!(out.code, Some(1), "{out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", out.stderr);
        assert!(
            lines[0].contains("archive format version 99 is not supported"),
            "{}",
            lines[0]
        );
    }
    assert!(!target
        .get("/_cat/indices?format=json")
        .to_string()
        .contains("fixture-v1"));
}

#[test]
fn one_index_goes_through_a_pipe() {
    let cluster = TestCluster::start("format-pipe");
    let Some(target) = target_cluster("format-pipe") else {
        return;
    };
    let index = cluster.name("p");
    cluster.create_index(
        &index,
        &serde_json::json!({"settings": {"number_of_shards": 2}}),
    );
    let mut body = String::new();
    for i in 0..300 {
        let routing = if i % 3 == 0 { ",\"routing\":\"r\"" } else { "" };
        body.push_str(&format!(
            "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"{i}\"{routing}}}}}\n{{\"n\":{i},\"big\":{}}}\n",
            9_007_199_254_740_993u64 + i
        ));
    }
    cluster.bulk(&body);
    cluster.refresh(&index);
    let bin = env!("CARGO_BIN_EXE_esark");
    let piped = format!("{index}-piped");
    let script = format!(
        "'{bin}' dump --source '{}' --output - --match '^{index}$' | '{bin}' restore --input - --index '{piped}' --target '{}' --quiet",
        cluster.url(),
        target.url()
    );
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
    let sent = docs_of(&cluster, &index);
    let got = docs_of(&target, &piped);
    assert_eq!(sent.len(), 300);
    assert_eq!(got.len(), 300);
    for (id, doc) in &sent {
        assert_eq!(got[id].source, doc.source, "{id}");
        assert_eq!(got[id].routing, doc.routing, "{id}");
    }
    // More than one index cannot go to one pipe; no index name, no restore.
    cluster.create_index(&cluster.name("other"), &serde_json::json!({}));
    let out = Esark::new()
        .arg("dump")
        .args(cluster.source_args())
        .args([
            "--output",
            "-",
            "--match",
            &format!("^{}", cluster.name("")),
        ])
        .run();
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = Esark::new()
        .args(["restore", "--input", "-", "--target", target.url()])
        .run();
    assert_eq!(out.code, Some(2), "{out:?}");
}

#[test]
fn copy_with_a_query_copies_only_matching_documents() {
    let source = TestCluster::start("format-copy-query");
    let Some(target) = target_cluster("format-copy-query") else {
        return;
    };
    let index = source.name("c");
    source.create_index(
        &index,
        &serde_json::json!({"mappings": {"properties": {"n": {"type": "long"}}}}),
    );
    let mut body = String::new();
    for i in 0..40 {
        body.push_str(&format!(
            "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"{i}\"}}}}\n{{\"n\":{i}}}\n"
        ));
    }
    source.bulk(&body);
    source.refresh(&index);
    let out = crate::util::restore_support::copy_cmd(&source, &target)
        .args([
            "--match",
            &format!("^{index}$"),
            "--query",
            r#"{"query":{"range":{"n":{"gte":30}}}}"#,
            "--quiet",
        ])
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let got = docs_of(&target, &index);
    let mut ids: Vec<u64> = got.keys().map(|k| k.parse().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (30..40).collect::<Vec<u64>>());
}

/// An archive of Elasticsearch 8 (tests/fixtures/archive-es8, written by
/// tests/fixtures/make-archive-es8.py) restored into OpenSearch (osmem):
/// `flattened` and `dense_vector`, which OpenSearch refuses, become
/// `flat_object` and `knn_vector` (dims -> dimension), each field named in
/// the report with what was left out; documents arrive byte for byte, and
/// verify counts the converted mapping as the same.
#[test]
fn an_elasticsearch_archive_restores_into_opensearch_with_field_types_converted() {
    let Some(target) = target_cluster("format-es8") else {
        return;
    };
    if target.get("/")["version"]["distribution"] != "opensearch" {
        skip("format-es8", "the target must be OpenSearch");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("es8");
    copy_dir(&fixture("archive-es8"), &archive);

    let out = restore_cmd(&archive, &target)
        .args(["--json", "--quiet"])
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let report: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let entry = report["indices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "es8-flat")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(entry["status"], "restored", "{entry}");
    let notes = entry["notes"].to_string();
    for expected in [
        "field labels: flattened -> flat_object (left out: depth_limit)",
        "field vec: dense_vector -> knn_vector (left out: index, similarity)",
    ] {
        assert!(notes.contains(expected), "{expected:?} not in {notes}");
    }

    let mapping = target.get("/es8-flat/_mapping");
    let props = &mapping["es8-flat"]["mappings"]["properties"];
    assert_eq!(props["labels"]["type"], "flat_object", "{mapping}");
    assert_eq!(props["vec"]["type"], "knn_vector", "{mapping}");
    assert_eq!(props["vec"]["dimension"], 3, "{mapping}");
    assert_eq!(props["title"]["fields"]["raw"]["type"], "keyword");

    let docs = docs_of(&target, "es8-flat");
    assert_eq!(docs.len(), 2);
    assert_eq!(
        docs["a"].source,
        r#"{"title":"Zoë","labels":{"env":"prod","team":{"name":"search"}},"vec":[0.5,0.25,1.0],"big":9223372036854775807}"#
    );
    assert_eq!(docs["b"].routing.as_deref(), Some("r1"));
    assert_eq!(
        docs["b"].source,
        r#"{"title":"東京 🚀","labels":{"env":"dev"},"vec":[1,0,0],"big":-9007199254740993}"#
    );

    let verify = verify_cmd(&archive, &target).run();
    assert_eq!(verify.code, Some(0), "{verify:?}");
}

/// A chunk of the default compression is what the README says it is:
/// LZ4 frames, one per page, that `lz4 -dc` reads whole. Regression: the
/// frames the `lz4` crate's encoder made (block checksums on) were read
/// by the `lz4` tool (1.9.4) only to the end of the first one, silently:
/// 100 lines of a 350-document chunk.
#[test]
fn the_lz4_tool_reads_every_page_of_a_chunk() {
    if std::process::Command::new("lz4")
        .arg("--version")
        .output()
        .is_err()
    {
        skip(
            "the_lz4_tool_reads_every_page_of_a_chunk",
            "no `lz4` tool on PATH",
        );
        return;
    }
    let cluster = TestCluster::start("format-lz4-tool");
    let index = cluster.name("z");
    // Pages of ~400 KB: more than one 256 KiB lz4 block each.
    let text = "lorem ipsum é 🚀 ".repeat(200);
    let mut body = String::new();
    for i in 0..350 {
        body.push_str(&format!(
            "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"{i}\"}}}}\n{{\"n\":{i},\"s\":\"{text}\\\"{i}\"}}\n"
        ));
    }
    cluster.bulk(&body);
    cluster.refresh(&index);
    let dir = tempfile::tempdir().unwrap();
    let out = Esark::new()
        .arg("dump")
        .args(cluster.source_args())
        .arg("--output")
        .arg(dir.path())
        .args(["--match", &format!("^{index}$"), "--slices", "1"])
        .args(["--page-size", "100", "--quiet"])
        .run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let m = manifest(dir.path());
    let chunks: Vec<&str> = m["indices"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "data")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(chunks.len(), 1, "{m}");
    assert!(chunks[0].ends_with(".jsonl.lz4"), "{m}");
    let decoded = std::process::Command::new("lz4")
        .arg("-dc")
        .arg(dir.path().join(chunks[0]))
        .output()
        .unwrap();
    assert!(decoded.status.success(), "{decoded:?}");
    let text = String::from_utf8(decoded.stdout).unwrap();
    let mut ids: Vec<u64> = text
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            v["_id"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        (0..350).collect::<Vec<u64>>(),
        "lz4 -dc read {} lines",
        text.lines().count()
    );
}
