//! `esark dump` end to end: seed a cluster, dump it, read the archive back
//! with the independent reader in `util::archive`, and compare with what
//! was sent and with what the cluster reports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::{json, Value};

use crate::util::archive::{self, Archive};
use crate::util::esark::{inspect, Esark, Output};
use crate::util::fixture::{not_starting_with, Fixture, Sent};
use crate::util::proxy::AuthProxy;
use crate::util::server::{BulkBody, TestCluster};

// ---- helpers ----------------------------------------------------------------

/// `esark dump --source <cluster> --output <out>`, ready for more flags.
fn dump_cmd(cluster: &TestCluster, out: &Path) -> Esark {
    Esark::new()
        .arg("dump")
        .args(cluster.source_args())
        .arg("--output")
        .arg(out)
}

fn dump(cluster: &TestCluster, out: &Path, extra: &[&str]) -> Output {
    dump_cmd(cluster, out).args(extra).run()
}

/// The folder the contract gives a (short, ordinary) index name: bytes in
/// `[a-z0-9_-]` kept, every other byte `%XX`.
fn contract_folder(name: &str) -> String {
    let mut out = String::from("indices/");
    for b in name.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asserts the archive holds exactly `expected`: every document once, with
/// its routing and its `_source` bytes unchanged, and nothing else.
fn assert_same_docs(archive: &Archive, expected: &Sent) {
    let mut seen = Sent::new();
    let mut duplicates = Vec::new();
    let mut extra_keys = Vec::new();
    for doc in archive.all_docs() {
        if !doc.extra_keys.is_empty() {
            extra_keys.push(format!("{}/{}: {:?}", doc.index, doc.id, doc.extra_keys));
        }
        let key = (doc.index.clone(), doc.id.clone());
        if seen
            .insert(key.clone(), (doc.routing.clone(), doc.source.clone()))
            .is_some()
        {
            duplicates.push(format!("{key:?} (again in {})", doc.file));
        }
    }
    let missing: Vec<_> = expected.keys().filter(|k| !seen.contains_key(*k)).collect();
    let unexpected: Vec<_> = seen.keys().filter(|k| !expected.contains_key(*k)).collect();
    let changed: Vec<String> = expected
        .iter()
        .filter_map(|(k, sent)| {
            seen.get(k).filter(|got| *got != sent).map(|got| {
                format!("{k:?}\n    sent     (routing, _source): {sent:?}\n    archived (routing, _source): {got:?}")
            })
        })
        .collect();
    let first = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join("\n  ");
    assert!(
        duplicates.is_empty()
            && missing.is_empty()
            && unexpected.is_empty()
            && changed.is_empty()
            && extra_keys.is_empty(),
        "archive {} differs from the documents sent ({} sent, {} archived):\n\
         duplicates ({}):\n  {}\nmissing ({}): {:?}\nunexpected ({}): {:?}\n\
         changed ({}):\n  {}\nlines with keys other than _id/_routing/_source ({}):\n  {}",
        archive.dir.display(),
        expected.len(),
        seen.len(),
        duplicates.len(),
        first(&duplicates),
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        unexpected.len(),
        unexpected.iter().take(5).collect::<Vec<_>>(),
        changed.len(),
        first(&changed),
        extra_keys.len(),
        first(&extra_keys),
    );
}

/// Checks everything the format promises about an archive that does not
/// depend on the data: manifest header and source, each listed file's size
/// and sha256, data file names, per-file and per-index counts, and that the
/// folder holds exactly the listed files plus `manifest.json`.
fn verify_archive(archive: &Archive, cluster: &TestCluster, compression: &str) {
    let m = &archive.manifest;
    assert_eq!(m["format"], "esark-archive", "{m}");
    assert_eq!(m["format_version"], 1, "{m}");
    assert!(m["tool_version"].is_string(), "tool_version: {m}");
    let created = chrono::DateTime::parse_from_rfc3339(m["created_at"].as_str().unwrap_or(""))
        .unwrap_or_else(|e| panic!("created_at not RFC 3339: {e}: {}", m["created_at"]));
    let completed = chrono::DateTime::parse_from_rfc3339(m["completed_at"].as_str().unwrap_or(""))
        .unwrap_or_else(|e| panic!("completed_at not RFC 3339: {e}: {}", m["completed_at"]));
    assert!(completed >= created, "completed_at before created_at");

    // Source: identity of the cluster, and never credentials.
    let info = cluster.info();
    let source = &m["source"];
    let url = url::Url::parse(source["url"].as_str().expect("source.url"))
        .unwrap_or_else(|e| panic!("source.url {}: {e}", source["url"]));
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "credentials in manifest source.url: {url}"
    );
    assert_eq!(
        url.port_or_known_default(),
        url::Url::parse(cluster.base_url())
            .unwrap()
            .port_or_known_default()
    );
    if let Some((_, password)) = cluster.credentials() {
        let text = std::fs::read_to_string(archive.dir.join("manifest.json")).unwrap();
        assert!(
            password.is_empty() || !text.contains(password),
            "password in manifest"
        );
    }
    assert_eq!(source["cluster_name"], info["cluster_name"]);
    assert_eq!(source["cluster_uuid"], info["cluster_uuid"]);
    assert_eq!(source["version"], info["version"]["number"]);
    assert_eq!(source["flavor"], cluster.flavor());
    assert_eq!(
        m["options"]["compression"], compression,
        "options: {}",
        m["options"]
    );

    // Every listed file: where, how big, which hash.
    let mut listed = BTreeSet::new();
    for entry in archive.all_file_entries() {
        let rel = entry["path"]
            .as_str()
            .unwrap_or_else(|| panic!("file without path: {entry}"));
        assert!(listed.insert(rel.to_string()), "{rel} listed twice");
        let path = archive.path(rel);
        let meta =
            std::fs::metadata(&path).unwrap_or_else(|e| panic!("listed file {rel} missing: {e}"));
        assert_eq!(entry["bytes"], meta.len(), "bytes of {rel}");
        let sha = entry["sha256"].as_str().unwrap_or("");
        assert!(
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "sha256 of {rel} is not lowercase hex: {sha:?}"
        );
        assert_eq!(sha, archive::sha256_file(&path), "sha256 of {rel}");
    }
    for entry in m["cluster_files"].as_array().expect("cluster_files") {
        let kind = entry["kind"].as_str().unwrap();
        assert!(
            ["templates", "index_templates", "component_templates"].contains(&kind),
            "cluster file kind {kind}"
        );
        assert_eq!(entry["path"], format!("cluster/{kind}.json"));
    }

    // Per index: folder, files, names, counts.
    let ext = match compression {
        "zstd" => ".jsonl.zst",
        "gzip" => ".jsonl.gz",
        "none" => ".jsonl",
        other => panic!("unknown compression {other}"),
    };
    let data_name = Regex::new(r"^data-s(\d{3})-(\d{5})(\.jsonl(?:\.zst|\.gz)?)$").unwrap();
    let mut folders = BTreeSet::new();
    for index in archive.indices() {
        let name = index["name"].as_str().unwrap();
        let folder = index["folder"].as_str().unwrap();
        assert!(folders.insert(folder), "folder {folder} used twice");
        assert!(folder.starts_with("indices/"), "{folder}");
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        let mut docs_in_files = 0;
        for file in index["files"].as_array().unwrap() {
            let kind = file["kind"].as_str().unwrap();
            *kinds.entry(kind).or_default() += 1;
            let rel = file["path"].as_str().unwrap();
            let (dir, base) = rel.rsplit_once('/').unwrap();
            assert_eq!(dir, folder, "{rel} outside its index folder");
            if kind == "data" {
                let caps = data_name
                    .captures(base)
                    .unwrap_or_else(|| panic!("bad data file name {rel}"));
                assert_eq!(&caps[3], ext, "{rel} for compression {compression}");
                assert_eq!(
                    file["slice"],
                    caps[1].parse::<u64>().unwrap(),
                    "slice of {rel}"
                );
                let lines =
                    archive::parse_data_lines(&archive::read_data_file(&archive.path(rel)), rel)
                        .len() as u64;
                assert_eq!(file["docs"], lines, "docs of {rel}");
                docs_in_files += lines;
            } else {
                assert_eq!(base, format!("{kind}.json"), "{rel}");
            }
        }
        for kind in ["settings", "mappings", "aliases"] {
            assert_eq!(kinds.get(kind), Some(&1), "{name}: one {kind} file");
        }
        assert_eq!(index["docs"], docs_in_files, "{name}: docs vs data files");
        assert_eq!(
            index["expected_docs"], docs_in_files,
            "{name}: expected_docs (the cluster is quiet)"
        );
    }

    // Nothing unlisted, nothing left over.
    listed.insert("manifest.json".to_string());
    let on_disk: BTreeSet<String> = archive::files_on_disk(&archive.dir).into_iter().collect();
    assert_eq!(
        on_disk, listed,
        "files in the archive folder vs files in the manifest"
    );
}

/// Settings as the archive should hold them: the cluster's, minus the keys
/// the server generates.
fn strip_generated_settings(mut settings: Value) -> Value {
    let index = settings["index"].as_object_mut().expect("settings.index");
    for key in [
        "uuid",
        "creation_date",
        "version",
        "provided_name",
        "resize",
    ] {
        index.remove(key);
    }
    if let Some(history) = index.get_mut("history").and_then(Value::as_object_mut) {
        history.remove("uuid");
    }
    if let Some(allocation) = index
        .get_mut("routing")
        .and_then(|r| r.get_mut("allocation"))
        .and_then(Value::as_object_mut)
    {
        allocation.remove("initial_recovery");
    }
    prune_empty_objects(&mut settings);
    settings
}

/// Removes objects left empty (at any depth), so that `{"history": {}}`
/// after stripping equals no `history` at all.
fn prune_empty_objects(value: &mut Value) {
    if let Value::Object(map) = value {
        for v in map.values_mut() {
            prune_empty_objects(v);
        }
        map.retain(|_, v| !matches!(v, Value::Object(o) if o.is_empty()));
    }
}

fn no_manifest(out: &Path) -> bool {
    !out.join("manifest.json").exists()
}

/// Asserts a failed run: exit 1 and exactly one non-empty stderr line,
/// starting with `error:`. Returns that line.
fn assert_one_error_line(output: &Output) -> String {
    assert_eq!(output.code, Some(1), "expected exit 1\n{output}");
    let lines = output.stderr_lines();
    assert_eq!(lines.len(), 1, "expected one stderr line\n{output}");
    assert!(lines[0].starts_with("error:"), "{output}");
    lines[0].to_string()
}

// ---- documents ----------------------------------------------------------------

#[test]
fn dump_keeps_every_document_byte_for_byte() {
    let f = Fixture::seed("dump-docs", 1200);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    let regex = f.match_all();
    let run = dump(
        &f.cluster,
        &out,
        &[
            "--match",
            &regex,
            "--slices",
            "2",
            "--page-size",
            "100",
            "--parallel",
            "3",
        ],
    );
    run.assert_success();
    let archive = Archive::open(&out);
    verify_archive(&archive, &f.cluster, "zstd");

    let mut expected_names: Vec<String> = f.open_indices().iter().map(|s| s.to_string()).collect();
    expected_names.sort();
    assert_eq!(archive.index_names(), expected_names);
    assert_same_docs(&archive, &f.sent);

    // Two slices on the two-shard index, each with its own files.
    let slices: BTreeSet<u64> = archive
        .files(&f.main, "data")
        .iter()
        .map(|file| file["slice"].as_u64().unwrap())
        .collect();
    assert_eq!(slices, BTreeSet::from([0, 1]), "slices of {}", f.main);

    // Folders follow the escaping rule (these names are short and ordinary).
    for name in f.open_indices() {
        assert_eq!(
            archive.index(name)["folder"],
            contract_folder(name),
            "{name}"
        );
    }
    assert_eq!(
        archive.index(&f.kuzzle)["folder"],
        format!("indices/%25{}-kuzzle", f.cluster.prefix())
    );
    assert_eq!(
        archive.index(&f.hidden)["folder"],
        format!("indices/%2E{}-hidden", f.cluster.prefix())
    );

    let options = &archive.manifest["options"];
    assert_eq!(options["page_size"], 100, "{options}");
    assert!(
        options["slices"] == 2 || options["slices"] == "2",
        "{options}"
    );
    assert_eq!(options["match"], regex.as_str(), "{options}");
    assert_eq!(options["exclude"], Value::Null, "{options}");
}

#[test]
fn dump_index_over_10000_docs_is_complete() {
    // Scrolls report at most 10,000 hits in `hits.total` on osmem (as
    // `track_total_hits` does on Elasticsearch): a reader that stops at the
    // reported total loses documents.
    let cluster = TestCluster::start("dump-large");
    let index = cluster.name("large");
    cluster.create_index(
        &index,
        &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}}),
    );
    let mut sent = Sent::new();
    let total = 10_500;
    for batch in (0..total).collect::<Vec<_>>().chunks(3500) {
        let mut bulk = BulkBody::new();
        for &i in batch {
            let id = format!("{i}");
            let source = format!(r#"{{"i":{i},"s":"small doc {i}"}}"#);
            bulk.index(&index, &id, None, &source);
            sent.insert((index.clone(), id), (None, source));
        }
        cluster.bulk(bulk.as_str());
    }
    assert_eq!(cluster.count(&index), total as u64);

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    dump(&cluster, &out, &["--match", &Fixture::exactly(&index)]).assert_success();
    let archive = Archive::open(&out);
    verify_archive(&archive, &cluster, "zstd");
    assert_eq!(archive.index(&index)["docs"], total);
    assert_same_docs(&archive, &sent);
}

// ---- metadata -----------------------------------------------------------------

#[test]
fn dump_metadata_matches_cluster() {
    let f = Fixture::seed("dump-meta", 50);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    dump(&f.cluster, &out, &["--match", &f.match_all()]).assert_success();
    let archive = Archive::open(&out);
    verify_archive(&archive, &f.cluster, "zstd");

    for name in f.open_indices() {
        let settings = archive.metadata(name, "settings");
        assert_eq!(
            {
                let mut s = settings.clone();
                prune_empty_objects(&mut s);
                s
            },
            strip_generated_settings(f.cluster.settings(name)),
            "settings.json of {name}"
        );
        for generated in [
            "uuid",
            "creation_date",
            "version",
            "provided_name",
            "resize",
        ] {
            assert!(
                settings["index"].get(generated).is_none(),
                "{name}: settings.json keeps index.{generated}"
            );
        }
        assert_eq!(
            archive.metadata(name, "mappings"),
            f.cluster.mappings(name),
            "mappings.json of {name}"
        );
        assert_eq!(
            archive.metadata(name, "aliases"),
            f.cluster.aliases(name),
            "aliases.json of {name}"
        );
    }

    // What the fixture set is really there (not only "equal to the cluster").
    let p = f.cluster.prefix();
    let main = archive.metadata(&f.main, "settings");
    assert_eq!(main["index"]["number_of_shards"], "2");
    assert_eq!(
        main["index"]["analysis"]["analyzer"]["esark_folding"]["filter"],
        json!(["lowercase", "asciifolding", "esark_stop"])
    );
    assert_eq!(
        archive.metadata(&f.main, "mappings")["properties"]["comments"]["type"],
        "nested"
    );
    assert_eq!(
        archive.metadata(&f.hidden, "settings")["index"]["hidden"],
        "true"
    );
    let aliases = archive.metadata(&f.main, "aliases");
    assert_eq!(
        aliases[format!("{p}-filtered")]["filter"],
        json!({"term": {"tags": "common"}})
    );
    assert_eq!(
        aliases[format!("{p}-filtered")]["index_routing"],
        "tenant-a"
    );
    assert_eq!(
        aliases[format!("{p}-filtered")]["search_routing"],
        "tenant-a"
    );
    assert_eq!(aliases[format!("{p}-write")]["is_write_index"], true);
    let kz = archive.metadata(&f.kuzzle, "aliases");
    assert_eq!(kz[format!("{p}-kz")]["search_routing"], "1,2");

    // Cluster-wide templates.
    let checks = [
        (
            "templates",
            &f.legacy_template,
            f.cluster.legacy_template(&f.legacy_template),
        ),
        (
            "index_templates",
            &f.index_template,
            f.cluster.index_template(&f.index_template),
        ),
        (
            "component_templates",
            &f.component_template,
            f.cluster.component_template(&f.component_template),
        ),
    ];
    for (kind, name, expected) in checks {
        let file = archive
            .cluster_file(kind)
            .unwrap_or_else(|| panic!("no {kind} file in {}", archive.manifest["cluster_files"]));
        assert_eq!(file[name.as_str()], expected, "{kind}: {name}");
        if !f.cluster.is_shared() {
            // A fresh osmem has no other templates.
            let names: Vec<&String> = file.as_object().unwrap().keys().collect();
            assert_eq!(names, vec![name], "{kind}");
        }
    }
    let legacy = &archive.cluster_file("templates").unwrap()[&f.legacy_template];
    assert_eq!(legacy["order"], 7);
    assert_eq!(legacy["index_patterns"], json!([format!("{p}-legacy-*")]));
    let composable = &archive.cluster_file("index_templates").unwrap()[&f.index_template];
    assert_eq!(composable["composed_of"], json!([f.component_template]));
    assert_eq!(composable["priority"], 271);
}

// ---- checksums and inspect ----------------------------------------------------

#[test]
fn dump_checksums_are_verified_by_inspect() {
    let f = Fixture::seed("dump-inspect", 300);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    dump(&f.cluster, &out, &["--match", &f.match_all()]).assert_success();
    let archive = Archive::open(&out);
    verify_archive(&archive, &f.cluster, "zstd");

    let good = inspect(&out);
    good.assert_success();
    for name in f.open_indices() {
        assert!(good.stdout.contains(name), "inspect lists {name}\n{good}");
    }
    let good_json = Esark::new().arg("inspect").arg(&out).arg("--json").run();
    good_json.assert_success();
    serde_json::from_str::<Value>(good_json.stdout.trim())
        .unwrap_or_else(|e| panic!("inspect --json is not JSON: {e}\n{good_json}"));

    // Flip one byte in the middle of a chunk.
    let chunk = archive.files(&f.main, "data")[0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let path = archive.path(&chunk);
    let original = std::fs::read(&path).unwrap();
    let mut corrupt = original.clone();
    let at = corrupt.len() / 2;
    corrupt[at] ^= 0x01;
    std::fs::write(&path, &corrupt).unwrap();
    let bad = inspect(&out);
    assert!(
        bad.code.is_some_and(|c| c != 0),
        "inspect must fail on a corrupt chunk\n{bad}"
    );
    let file_name = chunk.rsplit('/').next().unwrap();
    assert!(
        bad.stdout.contains(file_name) || bad.stderr.contains(file_name),
        "inspect must name {chunk}\n{bad}"
    );

    // Put it back: clean again. Then lose a metadata file.
    std::fs::write(&path, &original).unwrap();
    inspect(&out).assert_success();
    let aliases = archive.files(&f.kuzzle, "aliases")[0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(archive.path(&aliases)).unwrap();
    let missing = inspect(&out);
    assert!(
        missing.code.is_some_and(|c| c != 0),
        "inspect must fail on a missing file\n{missing}"
    );
    assert!(
        missing.stdout.contains(&aliases) || missing.stderr.contains(&aliases),
        "inspect must name {aliases}\n{missing}"
    );
}

// ---- selection -----------------------------------------------------------------

#[test]
fn dump_selects_indices_by_match_and_exclude() {
    let f = Fixture::seed("dump-select", 20);
    let c = &f.cluster;
    let p = regex::escape(c.prefix());
    let tmp = tempfile::tempdir().unwrap();
    let closed_skipped = |archive: &Archive| {
        let skipped = archive.skipped();
        let entry = skipped.iter().find(|(name, _)| *name == f.closed);
        assert!(
            entry.is_some_and(|(_, reason)| reason.to_lowercase().contains("closed")),
            "closed index {} must be reported as skipped (closed): {skipped:?}",
            f.closed
        );
        assert!(!archive.index_names().contains(&f.closed));
    };
    let check = |label: &str, extra: Vec<String>, expected: &[&str]| -> Archive {
        let out = tmp.path().join(label);
        let run = dump_cmd(c, &out).args(&extra).run();
        run.assert_success();
        let archive = Archive::open(&out);
        verify_archive(&archive, c, "zstd");
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(archive.index_names(), want, "{label}: {}", run.command);
        assert_same_docs(&archive, &f.sent_to(expected));
        archive
    };

    // Plain names only: the `%`, `.` and closed ones do not match.
    let a = check(
        "match-plain",
        vec!["--match".into(), format!("^{p}-.*$")],
        &[&f.main, &f.other],
    );
    closed_skipped(&a);
    assert_eq!(a.manifest["options"]["match"], format!("^{p}-.*$"));

    // Exclude wins over match.
    let b = check(
        "match-exclude",
        vec![
            "--match".into(),
            f.match_all(),
            "--exclude".into(),
            format!("^{p}-(other|closed)$"),
        ],
        &[&f.main, &f.kuzzle, &f.hidden],
    );
    assert_eq!(
        b.manifest["options"]["exclude"],
        format!("^{p}-(other|closed)$")
    );

    // The default: everything not starting with `.`, `%` names included.
    // On a shared cluster, other people's indices are excluded first.
    let mut default_args = Vec::new();
    if c.is_shared() {
        let prefixes = [
            c.prefix().to_string(),
            format!("%{}", c.prefix()),
            format!(".{}", c.prefix()),
        ];
        let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        default_args = vec!["--exclude".to_string(), not_starting_with(&prefixes)];
    }
    let d = check("default", default_args, &[&f.main, &f.other, &f.kuzzle]);
    closed_skipped(&d);
    assert_eq!(d.manifest["options"]["match"], Value::Null);

    // A regex for dot names does reach the hidden index.
    check(
        "match-dot",
        vec!["--match".into(), format!(r"^\.{p}-.*$")],
        &[&f.hidden],
    );
    // And one for `%` names the Kuzzle-style index.
    check(
        "match-percent",
        vec!["--match".into(), format!("^%{p}-.*$")],
        &[&f.kuzzle],
    );
}

// ---- compression -----------------------------------------------------------------

#[test]
fn dump_gzip_and_none_hold_the_same_documents() {
    let f = Fixture::seed("dump-compression", 1200);
    let tmp = tempfile::tempdir().unwrap();
    let regex = f.match_all();
    let mut sets = Vec::new();
    for (compression, extra) in [
        ("zstd", vec![]),
        ("gzip", vec!["--compression", "gzip", "--level", "9"]),
        (
            "none",
            vec!["--compression", "none", "--file-size", "64KiB"],
        ),
    ] {
        let out = tmp.path().join(compression);
        let mut args = vec!["--match", regex.as_str()];
        args.extend(extra);
        dump(&f.cluster, &out, &args).assert_success();
        let archive = Archive::open(&out);
        verify_archive(&archive, &f.cluster, compression);
        assert_same_docs(&archive, &f.sent);
        if compression == "gzip" {
            assert_eq!(archive.manifest["options"]["level"], 9);
        }
        if compression == "none" {
            assert_eq!(archive.manifest["options"]["file_size"], 65536);
            let data = archive.files(&f.main, "data");
            let total: u64 = data.iter().map(|d| d["bytes"].as_u64().unwrap()).sum();
            assert!(total > 3 * 65536, "main has {total} bytes of data");
            assert!(
                data.len() >= 3,
                "64 KiB files: expected several chunks for {total} bytes, got {}",
                data.len()
            );
            for d in data {
                // A chunk may close one line past the limit; lines are < 1 KiB.
                assert!(
                    d["bytes"].as_u64().unwrap() <= 65536 + 1024,
                    "chunk larger than --file-size: {d}"
                );
            }
        }
        let docs: BTreeSet<(String, String, Option<String>, String)> = archive
            .all_docs()
            .into_iter()
            .map(|d| (d.index, d.id, d.routing, d.source))
            .collect();
        sets.push((compression, docs));
    }
    for (compression, docs) in &sets[1..] {
        assert!(
            docs == &sets[0].1,
            "{compression} and zstd archives hold different documents"
        );
    }
}

// ---- credentials and errors ---------------------------------------------------------

const USER: &str = "esark-user";
const RIGHT: &str = "Right-Pw-7d1f";
const WRONG: &str = "Wr0ng-Pw-93kq";

/// A cluster with one small index behind an [`AuthProxy`].
fn proxied(test: &str) -> (TestCluster, AuthProxy, String, Sent) {
    let cluster = TestCluster::start(test);
    let index = cluster.name("secured");
    cluster.create_index(&index, &json!({"settings": {"number_of_replicas": 0}}));
    let mut bulk = BulkBody::new();
    let mut sent = Sent::new();
    for i in 0..30 {
        let source = format!(r#"{{"i":{i},"big":9223372036854775807}}"#);
        bulk.index(&index, &format!("s{i}"), None, &source);
        sent.insert((index.clone(), format!("s{i}")), (None, source));
    }
    cluster.bulk(bulk.as_str());
    let proxy = AuthProxy::start(&cluster, USER, RIGHT);
    (cluster, proxy, index, sent)
}

fn assert_no_secret(output: &Output, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !output.stdout.contains(secret) && !output.stderr.contains(secret),
            "output reveals the password {secret:?}\n{output}"
        );
    }
}

#[test]
fn dump_wrong_password_fails_with_one_clear_line() {
    let (_cluster, proxy, index, _) = proxied("dump-wrong-password");
    let tmp = tempfile::tempdir().unwrap();
    let password_file = tmp.path().join("password");
    std::fs::write(&password_file, WRONG).unwrap();
    let mentions_auth = Regex::new(r"(?i)401|authenticat|unauthori[sz]ed").unwrap();
    let regex = Fixture::exactly(&index);
    let base = |out: &Path, source: String| {
        Esark::new()
            .args(["dump", "--source", &source, "--match", &regex, "--output"])
            .arg(out)
    };
    let cases: Vec<(&str, Box<dyn Fn(&Path) -> Esark + '_>)> = vec![
        (
            "password-file",
            Box::new(|out: &Path| {
                base(out, proxy.url())
                    .args(["--source-user", USER, "--source-password-file"])
                    .arg(&password_file)
            }),
        ),
        (
            "env",
            Box::new(|out: &Path| {
                base(out, proxy.url())
                    .args(["--source-user", USER])
                    .env("ESARK_SOURCE_PASSWORD", WRONG)
            }),
        ),
        (
            "url",
            Box::new(|out: &Path| base(out, proxy.url_with_credentials(USER, WRONG))),
        ),
        (
            "no-credentials",
            Box::new(|out: &Path| base(out, proxy.url())),
        ),
    ];
    for (label, command) in cases {
        let out = tmp.path().join(label);
        let rejected_before = proxy.rejected();
        let run = command(&out).run();
        let line = assert_one_error_line(&run);
        assert!(
            mentions_auth.is_match(&line),
            "{label}: the error must say authentication failed (401)\n{run}"
        );
        assert_no_secret(&run, &[WRONG, RIGHT]);
        assert!(
            proxy.rejected() > rejected_before,
            "{label}: the proxy saw no rejected request\n{run}"
        );
        assert!(no_manifest(&out), "{label}: manifest.json left behind");
    }
    assert_eq!(
        proxy.forwarded(),
        0,
        "nothing may pass with a wrong password"
    );
}

#[test]
fn dump_right_password_through_proxy_works() {
    let (cluster, proxy, index, sent) = proxied("dump-right-password");
    let tmp = tempfile::tempdir().unwrap();
    // A password file as `echo pw > file` writes it: the first line counts.
    let password_file = tmp.path().join("password");
    std::fs::write(&password_file, format!("{RIGHT}\n")).unwrap();
    let regex = Fixture::exactly(&index);
    let runs = [
        (
            "password-file",
            Esark::new()
                .args(["dump", "--source", &proxy.url()])
                .args(["--source-user", USER, "--source-password-file"])
                .arg(&password_file),
        ),
        (
            "env",
            Esark::new()
                .args(["dump", "--source", &proxy.url(), "--source-user", USER])
                .env("ESARK_SOURCE_PASSWORD", RIGHT),
        ),
        (
            "url",
            Esark::new().args(["dump", "--source", &proxy.url_with_credentials(USER, RIGHT)]),
        ),
    ];
    for (label, command) in runs {
        let out = tmp.path().join(label);
        let run = command
            .args(["--match", &regex, "--output"])
            .arg(&out)
            .run();
        run.assert_success();
        assert_no_secret(&run, &[RIGHT]);
        let archive = Archive::open(&out);
        assert_same_docs(&archive, &sent);
        let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
        assert!(!manifest.contains(RIGHT), "{label}: password in manifest");
        let url = archive.manifest["source"]["url"].as_str().unwrap();
        assert!(
            !url.contains('@') && !url.contains(USER),
            "{label}: credentials in source.url {url}"
        );
        assert!(
            url.starts_with(&proxy.url()),
            "{label}: source.url {url} is not the proxy's {}",
            proxy.url()
        );
    }
    assert_eq!(proxy.rejected(), 0, "a right password is never rejected");
    drop(cluster);
}

#[test]
fn dump_unreachable_source_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    let secret = "Unreach-Pw-55x";
    let started = Instant::now();
    let run = Esark::new()
        .args([
            "dump",
            "--source",
            &format!("http://{USER}:{secret}@127.0.0.1:1"),
            "--output",
        ])
        .arg(&out)
        .timeout(Duration::from_secs(90))
        .run();
    let line = assert_one_error_line(&run);
    assert_no_secret(&run, &[secret]);
    assert!(
        Regex::new(r"(?i)127\.0\.0\.1|connect|refused|unreachable")
            .unwrap()
            .is_match(&line),
        "the error must say the source cannot be reached\n{run}"
    );
    assert!(
        no_manifest(&out),
        "manifest.json left behind by a failed dump"
    );
    eprintln!("unreachable source: failed after {:?}", started.elapsed());
}

// ---- output folder ---------------------------------------------------------------

#[test]
fn dump_refuses_non_empty_output_without_overwrite() {
    let f = Fixture::seed("dump-overwrite", 30);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    let all = f.match_all();
    dump(&f.cluster, &out, &["--match", &all]).assert_success();
    let manifest = std::fs::read(out.join("manifest.json")).unwrap();

    // Again into the same folder: refused, and the archive is untouched.
    let again = dump(&f.cluster, &out, &["--match", &all]);
    assert!(
        matches!(again.code, Some(1) | Some(2)),
        "a second dump into a non-empty folder must be refused\n{again}"
    );
    assert!(again.stderr.contains("--overwrite"), "{again}");
    assert!(again.stderr_lines()[0].starts_with("error:"), "{again}");
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), manifest);
    verify_archive(&Archive::open(&out), &f.cluster, "zstd");

    // With --overwrite: a new archive of only what this dump selected.
    let main_only = Fixture::exactly(&f.main);
    dump(&f.cluster, &out, &["--match", &main_only, "--overwrite"]).assert_success();
    let archive = Archive::open(&out);
    verify_archive(&archive, &f.cluster, "zstd");
    assert_eq!(archive.index_names(), vec![f.main.clone()]);
    assert_same_docs(&archive, &f.sent_to(&[&f.main]));

    // Any non-empty folder is refused, not only an archive.
    let other = tmp.path().join("notes");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "keep me").unwrap();
    let refused = dump(&f.cluster, &other, &["--match", &main_only]);
    assert!(matches!(refused.code, Some(1) | Some(2)), "{refused}");
    assert!(refused.stderr.contains("--overwrite"), "{refused}");
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        "keep me"
    );
    assert!(no_manifest(&other));

    // An existing empty folder is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    dump(&f.cluster, &empty, &["--match", &main_only]).assert_success();
    verify_archive(&Archive::open(&empty), &f.cluster, "zstd");
}

// ---- --json ---------------------------------------------------------------------

#[test]
fn dump_json_summary_matches_manifest() {
    let f = Fixture::seed("dump-json", 200);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    let run = dump(&f.cluster, &out, &["--match", &f.match_all(), "--json"]);
    run.assert_success();
    let summary: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("--json stdout is not one JSON object: {e}\n{run}"));
    let archive = Archive::open(&out);
    verify_archive(&archive, &f.cluster, "zstd");

    assert_eq!(summary["status"], "ok", "{summary}");
    assert_eq!(summary["output"], out.to_str().unwrap(), "{summary}");
    assert_eq!(summary["docs"], f.sent.len(), "{summary}");
    assert!(
        summary["elapsed_secs"].as_f64().is_some_and(|s| s >= 0.0),
        "{summary}"
    );
    let indices = summary["indices"].as_array().expect("indices");
    let mut names: Vec<&str> = indices
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    names.sort();
    let mut want = f.open_indices();
    want.sort();
    assert_eq!(names, want);
    for entry in indices {
        let name = entry["name"].as_str().unwrap();
        let m = archive.index(name);
        assert_eq!(entry["docs"], m["docs"], "{name}: {entry}");
        let files = m["files"].as_array().unwrap();
        let data: Vec<&Value> = files.iter().filter(|f| f["kind"] == "data").collect();
        let sum = |fs: &[&Value]| fs.iter().map(|f| f["bytes"].as_u64().unwrap()).sum::<u64>();
        let all: Vec<&Value> = files.iter().collect();
        // "files"/"bytes" may count data chunks or every file of the index.
        assert!(
            entry["files"] == data.len() || entry["files"] == files.len(),
            "{name}: files {} vs manifest ({} data, {} in all)",
            entry["files"],
            data.len(),
            files.len()
        );
        assert!(
            entry["bytes"] == sum(&data) || entry["bytes"] == sum(&all),
            "{name}: bytes {} vs manifest ({} data, {} in all)",
            entry["bytes"],
            sum(&data),
            sum(&all)
        );
    }
    let skipped = summary["skipped"].as_array().expect("skipped");
    assert!(
        skipped.iter().any(|s| s["name"] == f.closed.as_str()
            && s["reason"].as_str().is_some_and(|r| r.contains("closed"))),
        "{summary}"
    );
}
