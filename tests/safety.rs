//! Issue 11, dump/verify side: a run never harms what it was not asked to
//! touch, and one bad index never sinks or hides the rest. `--overwrite`
//! keeps the last good archive until the new one is complete; an index
//! that cannot be dumped is recorded as failed while the others are
//! dumped; verify reports per index; selecting nothing is an error; bad
//! input (huge lines, duplicate or malformed manifests, symlinks) is
//! refused in one line; URLs and counts are checked before connecting.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::check::{assert_no_secret, no_manifest};
use crate::util::esark::{dump, inspect, Esark, Output};
use crate::util::faults::{Fault, FaultProxy, Route, Rule, When};
use crate::util::restore_support::{restore_cmd, seed_index, target_cluster, verify_cmd};
use crate::util::server::TestCluster;
use crate::util::skip::skip;

/// Asserts a usage error: exit 2, one `error:` line containing `needle`.
fn assert_usage(run: &Output, needle: &str) {
    assert_eq!(run.code, Some(2), "expected a usage error (exit 2)\n{run}");
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "expected one stderr line\n{run}");
    assert!(lines[0].starts_with("error:"), "{run}");
    assert!(lines[0].contains(needle), "expected {needle:?}\n{run}");
}

/// Asserts a failed run: exit 1 and one `error:` line (after any
/// `warning:` lines, such as osmem's missing ISM API). Returns it.
fn error_line(run: &Output) -> String {
    assert_eq!(run.code, Some(1), "expected exit 1\n{run}");
    let lines: Vec<&str> = run
        .stderr_lines()
        .into_iter()
        .filter(|l| !l.starts_with("warning:"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line\n{run}");
    assert!(lines[0].starts_with("error:"), "{run}");
    lines[0].to_string()
}

// ---- item 6: URLs, credentials and counts -------------------------------------------

/// Regression: `http://admin:p@ss/Secr3tPart@host:9200` (an unencoded `@`
/// and `/` in the password) was parsed as host `ss` and path
/// `/Secr3tPart@host:9200/`, and the connection error printed that path.
#[test]
fn a_password_with_an_unencoded_at_is_never_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let run = Esark::new()
        .args([
            "dump",
            "--source",
            "http://admin:p@ss/Secr3tPart@127.0.0.1:1",
        ])
        .arg("--output")
        .arg(tmp.path().join("out"))
        .run();
    assert_usage(&run, "percent-encode");
    assert_no_secret(&run, &["Secr3tPart", "p@ss", "admin"]);
    assert!(no_manifest(&tmp.path().join("out")));
}

/// Regression: `127.0.0.1:9200` was "relative URL without a base" and
/// `localhost:9200` had the scheme `localhost`: both are http://.
#[test]
fn a_url_without_a_scheme_is_http() {
    let cluster = TestCluster::start("safety-no-scheme");
    let Some(host) = cluster.url().strip_prefix("http://") else {
        skip(
            "a_url_without_a_scheme_is_http",
            "the test cluster is not plain http",
        );
        return;
    };
    let index = cluster.name("plain");
    seed_index(
        &cluster,
        &index,
        &json!({}),
        &[("1".into(), "{\"a\":1}".into())],
    );
    let localhost = host.replacen("127.0.0.1", "localhost", 1);
    for (i, source) in [host.to_string(), localhost].iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join(format!("out{i}"));
        let run = Esark::new()
            .args(["dump", "--source", source, "--match", &format!("^{index}$")])
            .arg("--output")
            .arg(&out)
            .run();
        run.assert_success();
        assert!(!no_manifest(&out), "{run}");
    }
}

/// Regression: `--source-user` without any password connected with an
/// empty one (a 401 that did not say why), and credentials in the URL
/// together with `--source-api-key` sent one of them silently.
#[test]
fn credentials_that_cannot_be_meant_are_refused_before_connecting() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = Esark::new()
        .args([
            "dump",
            "--source",
            "http://127.0.0.1:1",
            "--source-user",
            "elastic",
        ])
        .arg("--output")
        .arg(&out)
        .run();
    assert_usage(&run, "ESARK_SOURCE_PASSWORD");
    let run = Esark::new()
        .args(["dump", "--source", "http://elastic:pw-S3cret@127.0.0.1:1"])
        .args(["--source-api-key", "id:k3y-S3cret", "--output"])
        .arg(&out)
        .run();
    assert_usage(&run, "--source-api-key");
    assert_no_secret(&run, &["pw-S3cret", "k3y-S3cret"]);
    let run = Esark::new()
        .args([
            "restore",
            "--target",
            "http://127.0.0.1:1",
            "--target-user",
            "elastic",
        ])
        .arg("--input")
        .arg(&out)
        .run();
    assert_usage(&run, "ESARK_TARGET_PASSWORD");
}

/// Regression: `--parallel 0`, `--readers 0`, `--rate 0`, `--rate-bytes 0`
/// and `--timeout 0` were taken (as 1, as no limit, ...) instead of being
/// refused like `--concurrency 0`.
#[test]
fn zero_counts_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let out = out.to_str().unwrap();
    let dump = |extra: &[&str]| {
        Esark::new()
            .args(["dump", "--source", "http://127.0.0.1:1", "--output", out])
            .args(extra)
            .run()
    };
    let restore = |extra: &[&str]| {
        Esark::new()
            .args(["restore", "--target", "http://127.0.0.1:1", "--input", out])
            .args(extra)
            .run()
    };
    for (flag, run) in [
        ("--parallel", dump(&["--parallel", "0"])),
        ("--readers", dump(&["--readers", "0"])),
        ("--timeout", dump(&["--timeout", "0"])),
        ("--rate", restore(&["--rate", "0"])),
        ("--rate-bytes", restore(&["--rate-bytes", "0"])),
        ("--timeout", restore(&["--timeout", "0"])),
    ] {
        assert_eq!(run.code, Some(2), "{flag} 0\n{run}");
        assert!(run.stderr.contains(flag), "{flag} 0\n{run}");
    }
}

// ---- helpers -------------------------------------------------------------------------

/// `n` small documents, ids `0..n`.
fn docs(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (i.to_string(), format!("{{\"n\":{i},\"text\":\"doc {i}\"}}")))
        .collect()
}

/// The URL of `proxy`, with the cluster's credentials if it has any.
fn proxied(proxy: &FaultProxy, cluster: &TestCluster) -> String {
    let mut url = url::Url::parse(&proxy.url()).unwrap();
    if let Some((user, password)) = cluster.credentials() {
        url.set_username(user).unwrap();
        url.set_password(Some(password)).unwrap();
    }
    url.as_str().trim_end_matches('/').to_string()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn failed(manifest: &Value) -> Vec<(String, String)> {
    manifest["failed"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"failed\" list: {manifest}"))
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

// ---- item 1: --overwrite keeps the last good archive ---------------------------------

/// Regression: `dump --overwrite` removed the old archive before the new
/// dump ran, so a run that failed (here: an index with `_source` disabled)
/// left no archive at all.
#[test]
fn a_failed_overwrite_keeps_the_last_good_archive() {
    let cluster = TestCluster::start("safety-overwrite");
    let Some(target) = target_cluster("safety-overwrite") else {
        return;
    };
    let good = cluster.name("good");
    seed_index(&cluster, &good, &json!({}), &docs(10));
    let all = format!("^{}-", regex::escape(cluster.prefix()));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("nightly");
    dump(&cluster, &out, &["--match", &all]).assert_success();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    let before = std::fs::read(out.join("manifest.json")).unwrap();

    // The next night an index that cannot be dumped appears.
    let bad = cluster.name("nosource");
    seed_index(
        &cluster,
        &bad,
        &json!({"mappings": {"_source": {"enabled": false}}}),
        &docs(3),
    );
    let run = dump(&cluster, &out, &["--match", &all, "--overwrite"]);
    let line = error_line(&run);
    assert!(line.contains(&bad) && line.contains("--exclude"), "{run}");
    assert!(
        line.contains("previous archive") && line.contains("untouched"),
        "{run}"
    );
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), before);
    let checked = inspect(&out);
    assert_eq!(checked.code, Some(0), "{checked}");
    let restored = restore_cmd(&out, &target).arg("--quiet").run();
    restored.assert_success();
    assert_eq!(target.count(&good), 10);
    // This run's partial archive is beside it, named in the message.
    let staging = tmp.path().join(".nightly.esark-new");
    assert!(line.contains(&staging.display().to_string()), "{run}");
    assert_eq!(failed(&manifest(&staging))[0].0, bad);

    // A run that succeeds replaces it, and keeps what esark does not own.
    let run = dump(
        &cluster,
        &out,
        &[
            "--match",
            &format!("^{}$", regex::escape(&good)),
            "--overwrite",
        ],
    );
    run.assert_success();
    let after = manifest(&out);
    assert_eq!(after["format_version"], 6);
    assert_ne!(serde_json::to_vec_pretty(&after).unwrap(), before);
    assert_eq!(after["indices"].as_array().unwrap().len(), 1);
    assert!(failed(&after).is_empty());
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "keep me"
    );
    assert!(!out.join("restore.state.json").exists());
    assert!(!staging.exists());
    assert!(!tmp.path().join(".nightly.esark-old").exists());
    assert_eq!(inspect(&out).code, Some(0));
}

// ---- item 2: one index that cannot be dumped ------------------------------------------

/// Regression: an index with `_source` disabled failed the whole dump
/// (no manifest): the others are now dumped, it is listed as failed.
#[test]
fn an_index_without_source_is_listed_as_failed_and_the_rest_is_dumped() {
    let cluster = TestCluster::start("safety-nosource");
    let Some(target) = target_cluster("safety-nosource") else {
        return;
    };
    let good = cluster.name("good");
    let other = cluster.name("other");
    let bad = cluster.name("nosource");
    seed_index(&cluster, &good, &json!({}), &docs(30));
    seed_index(&cluster, &other, &json!({}), &docs(5));
    seed_index(
        &cluster,
        &bad,
        &json!({"mappings": {"_source": {"enabled": false}}}),
        &docs(3),
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let all = format!("^{}-", regex::escape(cluster.prefix()));
    let run = dump(&cluster, &out, &["--match", &all]);
    let line = error_line(&run);
    assert!(line.contains(&bad) && line.contains("--exclude"), "{run}");
    let m = manifest(&out);
    let names: Vec<&str> = m["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [good.as_str(), other.as_str()]);
    let archive = crate::util::archive::Archive::open(&out);
    assert_eq!(archive.docs(&good).len(), 30);
    assert_eq!(archive.docs(&other).len(), 5);
    let failures = failed(&m);
    assert_eq!(failures.len(), 1, "{m}");
    assert_eq!(failures[0].0, bad);
    assert!(failures[0].1.contains("--exclude"), "{m}");

    // inspect lists it and says the archive is not whole.
    let checked = inspect(&out);
    assert_eq!(checked.code, Some(1), "{checked}");
    assert!(
        checked.stdout.contains("FAILED") && checked.stdout.contains(&bad),
        "{checked}"
    );

    // restore puts back the others and reports it as not restorable.
    let restored = restore_cmd(&out, &target).arg("--quiet").run();
    assert_ne!(restored.code, Some(0), "{restored}");
    assert!(
        format!("{}{}", restored.stdout, restored.stderr).contains(&bad),
        "{restored}"
    );
    assert_eq!(target.count(&good), 30);
    assert_eq!(target.count(&other), 5);
    assert_eq!(crate::util::restore_support::try_count(&target, &bad), None);
}

/// Regression: an index deleted between the listing and the reading of
/// its settings (rollover, ILM) failed the whole dump with no manifest.
#[test]
fn an_index_deleted_during_the_dump_is_listed_as_failed() {
    let cluster = TestCluster::start("safety-deleted");
    let good = cluster.name("good");
    let victim = cluster.name("victim");
    seed_index(&cluster, &good, &json!({}), &docs(20));
    seed_index(&cluster, &victim, &json!({}), &docs(5));
    // Its settings are asked for after the listing, with those of the
    // other index (a batch): held back while the test deletes it, then
    // forwarded to a cluster that no longer has it, which refuses the
    // whole batch; each index is then read alone.
    let proxy = FaultProxy::start(
        cluster.base_url(),
        vec![Rule::new(
            "slow-settings",
            Route::new(
                "GET",
                &format!("^/([^/]*,)?{}(,[^/]*)?/_settings", regex::escape(&victim)),
            ),
            When::Nth(1),
            Fault::Slow(Duration::from_secs(2)),
        )],
    );
    let deleter = {
        let base = cluster.base_url().to_string();
        let victim = victim.clone();
        let creds = cluster
            .credentials()
            .map(|(u, p)| (u.to_string(), p.to_string()));
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            let client = reqwest::blocking::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap();
            let mut request = client.delete(format!("{}/{victim}", base.trim_end_matches('/')));
            if let Some((u, p)) = creds {
                request = request.basic_auth(u, Some(p));
            }
            request.send().unwrap().status().as_u16()
        })
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = Esark::new()
        .args(["dump", "--source", &proxied(&proxy, &cluster), "--insecure"])
        .args(["--match", &format!("^{}-", regex::escape(cluster.prefix()))])
        .arg("--output")
        .arg(&out)
        .run();
    assert_eq!(deleter.join().unwrap(), 200);
    proxy.assert_fired("slow-settings", 1);
    let line = error_line(&run);
    assert!(line.contains(&victim), "{run}");
    let m = manifest(&out);
    assert_eq!(m["indices"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["indices"][0]["name"], good.as_str());
    assert_eq!(m["indices"][0]["docs"], 20);
    let failures = failed(&m);
    assert_eq!(failures.len(), 1, "{m}");
    assert_eq!(failures[0].0, victim);
    assert!(failures[0].1.contains("404"), "{m}");

    // Back again: `--resume` retries the failed index, keeps the other.
    seed_index(&cluster, &victim, &json!({}), &docs(7));
    let resumed = Esark::new()
        .arg("dump")
        .args(cluster.source_args())
        .arg("--output")
        .arg(&out)
        .arg("--resume")
        .run();
    resumed.assert_success();
    let m = manifest(&out);
    assert!(failed(&m).is_empty(), "{m}");
    let archive = crate::util::archive::Archive::open(&out);
    assert_eq!(archive.docs(&good).len(), 20);
    assert_eq!(archive.docs(&victim).len(), 7);
    assert_eq!(inspect(&out).code, Some(0));
}

/// A run that fails as a whole (here the credentials stop working: every
/// page answered 401) under `--overwrite` leaves the old archive and no
/// folder of its own.
#[test]
fn an_overwrite_that_fails_as_a_whole_leaves_nothing_of_its_own() {
    let cluster = TestCluster::start("safety-overwrite-401");
    let good = cluster.name("good");
    seed_index(&cluster, &good, &json!({}), &docs(10));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("nightly");
    let only = format!("^{}$", regex::escape(&good));
    dump(&cluster, &out, &["--match", &only]).assert_success();
    let before = std::fs::read(out.join("manifest.json")).unwrap();
    let proxy = FaultProxy::start(
        cluster.base_url(),
        vec![Rule::new(
            "pages-401",
            Route::pages(),
            When::Every {
                every: 1,
                max: 1000,
            },
            Fault::Status(401),
        )],
    );
    let run = Esark::new()
        .args(["dump", "--source", &proxied(&proxy, &cluster), "--insecure"])
        .args(["--match", &only, "--overwrite", "--output"])
        .arg(&out)
        .run();
    let line = error_line(&run);
    assert!(line.contains("untouched"), "{run}");
    assert!(
        !line.contains("--resume"),
        "nothing is left to resume: {run}"
    );
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), before);
    assert_eq!(inspect(&out).code, Some(0));
    assert!(!tmp.path().join(".nightly.esark-new").exists());
}

// ---- item 3: verify per index ---------------------------------------------------------

/// Regression: verify ended on a document nested 200 levels ("recursion
/// limit exceeded") and on an index with `max_result_window` 100 (pages
/// of 2000), and one index's error stopped the comparison of all.
#[test]
fn verify_reads_deep_documents_and_small_result_windows_and_reports_each_index() {
    let cluster = TestCluster::start("safety-verify");
    let Some(target) = target_cluster("safety-verify") else {
        return;
    };
    let deep = cluster.name("deep");
    let small = cluster.name("small");
    let nested = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    seed_index(
        &cluster,
        &deep,
        &json!({"mappings": {"properties": {"a": {"type": "object", "enabled": false}}}}),
        &[("deep".to_string(), nested)],
    );
    seed_index(
        &cluster,
        &small,
        &json!({"settings": {"index": {"max_result_window": 100}}}),
        &docs(250),
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let all = format!("^{}-", regex::escape(cluster.prefix()));
    dump(&cluster, &out, &["--match", &all]).assert_success();
    restore_cmd(&out, &target)
        .arg("--quiet")
        .run()
        .assert_success();
    let verified = verify_cmd(&out, &target).run();
    assert_eq!(verified.code, Some(0), "{verified}");
    assert!(
        verified.stdout.contains("the target matches the archive"),
        "{verified}"
    );
    let verified = verify_cmd(&out, &target).args(["--page-size", "30"]).run();
    assert_eq!(verified.code, Some(0), "{verified}");

    // Reading one index fails: it is reported, the other still verified.
    let proxy = FaultProxy::start(
        target.base_url(),
        vec![Rule::new(
            "search-400",
            Route::new("*", &format!("^/{}/_search", regex::escape(&small))),
            When::Every {
                every: 1,
                max: 1000,
            },
            Fault::Status(400),
        )],
    );
    let run = Esark::new()
        .arg("verify")
        .arg("--input")
        .arg(&out)
        .args(["--target", &proxied(&proxy, &target), "--insecure"])
        .run();
    let line = error_line(&run);
    assert!(line.contains("could not be verified"), "{run}");
    assert!(run.stdout.contains(&format!("FAILED {small:?}")), "{run}");
    assert!(run.stdout.contains(&format!("ok {deep:?}")), "{run}");
}

// ---- item 4: nothing selected ---------------------------------------------------------

/// Regression: `dump --match` naming an alias wrote an empty archive, and
/// `restore`/`verify --match` with a typo exited 0 having done nothing.
#[test]
fn selecting_nothing_is_an_error() {
    let cluster = TestCluster::start("safety-nothing");
    let Some(target) = target_cluster("safety-nothing") else {
        return;
    };
    let jan = cluster.name("logs-2024.01");
    let feb = cluster.name("logs-2024.02");
    let alias = cluster.name("logs");
    for index in [&jan, &feb] {
        seed_index(
            &cluster,
            index,
            &json!({"aliases": {alias.clone(): {}}}),
            &docs(2),
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let by_alias = format!("^{}$", regex::escape(&alias));
    let run = dump(&cluster, &out, &["--match", &by_alias]);
    let line = error_line(&run);
    assert!(line.contains(&by_alias), "{run}");
    assert!(
        line.contains(&format!("{alias} is an alias of {jan}, {feb}")),
        "{run}"
    );
    assert!(!out.exists(), "nothing may be written: {run}");

    let all = format!("^{}-", regex::escape(cluster.prefix()));
    dump(&cluster, &out, &["--match", &all]).assert_success();
    for command in [restore_cmd(&out, &target), verify_cmd(&out, &target)] {
        let run = command.args(["--match", "^nomatch$"]).run();
        let line = error_line(&run);
        assert!(
            line.contains("^nomatch$") && line.contains("none of the 2 indices"),
            "{run}"
        );
        assert!(!run.stdout.contains("matches"), "{run}");
    }
}

// ---- item 5: a line of gigabytes ------------------------------------------------------

/// A zstd frame of `len` bytes `byte`: RLE blocks of 128 KiB, four bytes
/// each, so 4 GiB fit in 128 KiB.
fn rle_frame(byte: u8, len: u64) -> Vec<u8> {
    // Magic, a descriptor without content size, a 128 KiB window.
    let mut out = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x38];
    let block = 128 * 1024;
    let mut left = len;
    while left > 0 {
        let size = left.min(block);
        left -= size;
        let header = u32::from(left == 0) | (1 << 1) | ((size as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(byte);
    }
    out
}

/// Regression: a 135 KB chunk holding one 4 GiB line (with a valid
/// checksum) made restore allocate the whole line and abort. The line is
/// now refused at `--max-line-size` (100 MiB by default), in one line
/// naming the file and the line, quickly.
#[test]
fn a_chunk_holding_a_line_of_gigabytes_is_refused_in_one_line() {
    let cluster = TestCluster::start("safety-huge-line");
    let index = cluster.name("huge");
    seed_index(&cluster, &index, &json!({}), &docs(1));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // zstd: a 4 GiB run of one byte is a frame of a few bytes.
    dump(
        &cluster,
        &out,
        &[
            "--match",
            &format!("^{}$", regex::escape(&index)),
            "--compression",
            "zstd",
        ],
    )
    .assert_success();
    // The data file becomes one line of 4 GiB, its manifest entry updated
    // so that every checksum holds.
    let mut m = manifest(&out);
    let files = m["indices"][0]["files"].as_array_mut().unwrap();
    let data = files.iter_mut().find(|f| f["kind"] == "data").unwrap();
    let rel = data["path"].as_str().unwrap().to_string();
    let frame = rle_frame(b'x', 4 << 30);
    std::fs::write(out.join(&rel), &frame).unwrap();
    data["bytes"] = json!(frame.len());
    data["sha256"] = json!(crate::util::archive::sha256_file(&out.join(&rel)));
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
    assert_eq!(inspect(&out).code, Some(0));
    let file_name = Path::new(&rel)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();

    let started = Instant::now();
    let run = Esark::new()
        .arg("restore")
        .arg("--input")
        .arg(&out)
        .args(["--target", "http://127.0.0.1:1"])
        .timeout(Duration::from_secs(60))
        .run();
    let line = error_line(&run);
    assert!(
        line.contains(&file_name) && line.contains("line 1"),
        "{run}"
    );
    assert!(line.contains("--max-line-size"), "{run}");
    assert!(started.elapsed() < Duration::from_secs(30), "{run}");

    let run = Esark::new()
        .arg("verify")
        .arg("--input")
        .arg(&out)
        .args([
            "--target",
            cluster.url(),
            "--insecure",
            "--max-line-size",
            "1MiB",
        ])
        .run();
    error_line(&run);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains(&file_name) && said.contains("--max-line-size"),
        "{run}"
    );
}
