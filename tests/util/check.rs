//! Assertions shared by the dump (and later restore) tests: what a correct
//! archive looks like, whatever the data.
//!
//! - [`verify_archive`]: manifest header and source, every listed file's
//!   size and sha256, data file names and counts, no unlisted files.
//! - [`assert_same_docs`]: an archive holds exactly the documents sent,
//!   `_source` bytes and routing unchanged.
//! - [`strip_generated_settings`]: the settings an archive should hold.
//! - error-run checks: one `error:` line, no secrets, no manifest left.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regex::Regex;
use serde_json::Value;

use super::archive::{self, Archive};
use super::esark::Output;
use super::fixture::Sent;
use super::server::TestCluster;

/// The folder the contract gives a (short, ordinary) index name: bytes in
/// `[a-z0-9_-]` kept, every other byte `%XX`.
pub fn contract_folder(name: &str) -> String {
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
pub fn assert_same_docs(archive: &Archive, expected: &Sent) {
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
pub fn verify_archive(archive: &Archive, cluster: &TestCluster, compression: &str) {
    let m = &archive.manifest;
    assert_eq!(m["format"], "esark-archive", "{m}");
    // Version 6 with lz4 chunks (the default), else 4 (not encrypted).
    let version = if compression == "lz4" { 6 } else { 4 };
    assert_eq!(m["format_version"], version, "{m}");
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
            [
                "templates",
                "index_templates",
                "component_templates",
                "ilm_policies",
                "ism_policies",
                "ingest_pipelines",
                "stored_scripts",
                "data_streams",
                "cluster_settings"
            ]
            .contains(&kind),
            "cluster file kind {kind}"
        );
        assert_eq!(entry["path"], format!("cluster/{kind}.json"));
    }

    // Per index: folder, files, names, counts.
    let ext = match compression {
        "lz4" => ".jsonl.lz4",
        "zstd" => ".jsonl.zst",
        "gzip" => ".jsonl.gz",
        "none" => ".jsonl",
        other => panic!("unknown compression {other}"),
    };
    let data_name = Regex::new(r"^data-s(\d{3})-(\d{5})(\.jsonl(?:\.lz4|\.zst|\.gz)?)$").unwrap();
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
pub fn strip_generated_settings(mut settings: Value) -> Value {
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
pub fn prune_empty_objects(value: &mut Value) {
    if let Value::Object(map) = value {
        for v in map.values_mut() {
            prune_empty_objects(v);
        }
        map.retain(|_, v| !matches!(v, Value::Object(o) if o.is_empty()));
    }
}

/// True when `out` has no `manifest.json` (a failed dump must leave none).
pub fn no_manifest(out: &Path) -> bool {
    !out.join("manifest.json").exists()
}

/// Asserts a failed run: exit 1 and exactly one non-empty stderr line,
/// starting with `error:`. Returns that line.
pub fn assert_one_error_line(output: &Output) -> String {
    assert_eq!(output.code, Some(1), "expected exit 1\n{output}");
    let lines = output.stderr_lines();
    assert_eq!(lines.len(), 1, "expected one stderr line\n{output}");
    assert!(lines[0].starts_with("error:"), "{output}");
    lines[0].to_string()
}

/// Asserts no secret appears in a run's stdout or stderr.
pub fn assert_no_secret(output: &Output, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !output.stdout.contains(secret) && !output.stderr.contains(secret),
            "output reveals the password {secret:?}\n{output}"
        );
    }
}
