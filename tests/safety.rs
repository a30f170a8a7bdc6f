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

use crate::util::check::{assert_no_secret, assert_one_error_line, no_manifest};
use crate::util::esark::{dump, inspect, Esark, Output};
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
