//! `esark dump` when things go wrong: credentials (through an auth proxy,
//! since osmem has none), an unreachable source, a failure in the middle of
//! a run, bad flags, and an output folder that is not empty.

use std::path::Path;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::json;

use crate::util::archive::{self, Archive};
use crate::util::check::{
    assert_no_secret, assert_one_error_line, assert_same_docs, no_manifest, verify_archive,
};
use crate::util::esark::{dump, Esark, Output};
use crate::util::fixture::{Fixture, Sent};
use crate::util::proxy::AuthProxy;
use crate::util::server::{BulkBody, TestCluster};

// ---- credentials and errors ---------------------------------------------------------

const USER: &str = "esark-user";
/// Passwords with characters a URL must percent-encode (`:`, `@`, `/`, `%`).
const RIGHT: &str = "Right:Pw@7d1f/x%";
const WRONG: &str = "Wr0ng:Pw@93kq/y%";

/// A password as it appears raw and percent-encoded in a URL: neither may
/// be printed.
fn forms(password: &str) -> [String; 2] {
    let url = url::Url::parse(&format!("http://{USER}@h/")).unwrap();
    let mut url = url;
    url.set_password(Some(password)).unwrap();
    let encoded = url.password().unwrap().to_string();
    [password.to_string(), encoded]
}

fn assert_no_password(output: &Output, passwords: &[&str]) {
    for password in passwords {
        let [raw, encoded] = forms(password);
        assert_no_secret(output, &[&raw, &encoded]);
    }
}

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

#[test]
fn dump_wrong_password_fails_with_one_clear_line() {
    let (_cluster, proxy, index, _) = proxied("dump-wrong-password");
    let tmp = tempfile::tempdir().unwrap();
    let password_file = tmp.path().join("password");
    std::fs::write(&password_file, WRONG).unwrap();
    let mentions_auth = Regex::new(r"(?i)401|authenticat|unauthori[sz]ed").unwrap();
    let regex = Fixture::exactly(&index);
    for label in ["password-file", "env", "url", "no-credentials"] {
        let out = tmp.path().join(label);
        let source = match label {
            "url" => proxy.url_with_credentials(USER, WRONG),
            _ => proxy.url(),
        };
        let command = Esark::new()
            .args(["dump", "--source", &source, "--match", &regex, "--output"])
            .arg(&out);
        let command = match label {
            "password-file" => command
                .args(["--source-user", USER, "--source-password-file"])
                .arg(&password_file),
            "env" => command
                .args(["--source-user", USER])
                .env("ESARK_SOURCE_PASSWORD", WRONG),
            _ => command,
        };
        let rejected_before = proxy.rejected();
        let run = command.run();
        let line = assert_one_error_line(&run);
        eprintln!("{label}: {line}");
        assert!(
            mentions_auth.is_match(&line),
            "{label}: the error must say authentication failed (401)\n{run}"
        );
        assert_no_password(&run, &[WRONG, RIGHT]);
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
    let (_cluster, proxy, index, sent) = proxied("dump-right-password");
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
        assert_no_password(&run, &[RIGHT]);
        let archive = Archive::open(&out);
        assert_same_docs(&archive, &sent);
        let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
        for form in forms(RIGHT) {
            assert!(!manifest.contains(&form), "{label}: password in manifest");
        }
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
}

#[test]
fn dump_unreachable_source_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    let secret = "Unreach-Pw-55x";
    // (Plain characters: the URL below is written by hand.)
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
    eprintln!("unreachable: {line}");
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
    eprintln!("unreachable: failed after {:?}", started.elapsed());
}

#[test]
fn dump_failing_midway_leaves_no_manifest() {
    // The credentials stop working after half of the requests a complete
    // dump needs: the dump fails in the middle of scrolling, after some
    // chunks exist, and must not leave a manifest.json that would make the
    // half-written folder look like a complete archive.
    let (cluster, proxy, index, _) = proxied("dump-midway");
    let many = cluster.name("many");
    cluster.create_index(
        &many,
        &json!({"settings": {"number_of_shards": 2, "number_of_replicas": 0}}),
    );
    let mut bulk = BulkBody::new();
    for i in 0..1000 {
        bulk.index(&many, &format!("m{i}"), None, &format!(r#"{{"m":{i}}}"#));
    }
    cluster.bulk(bulk.as_str());
    let tmp = tempfile::tempdir().unwrap();
    let run = |out: &Path| {
        Esark::new()
            .args(["dump", "--source", &proxy.url_with_credentials(USER, RIGHT)])
            .args([
                "--match",
                &format!("^({}|{})$", regex::escape(&index), regex::escape(&many)),
            ])
            .args([
                "--page-size",
                "10",
                "--slices",
                "2",
                "--parallel",
                "1",
                "--output",
            ])
            .arg(out)
            .run()
    };
    let before = proxy.forwarded();
    run(&tmp.path().join("complete")).assert_success();
    let needed = proxy.forwarded() - before;
    assert!(
        needed > 100,
        "a paged dump takes many requests, not {needed}"
    );

    proxy.revoke_after(needed / 2);
    let out = tmp.path().join("broken");
    let rejected_before = proxy.rejected();
    let broken = run(&out);
    eprintln!(
        "midway: {needed} requests for a complete dump; broken run left {:?}\n{}",
        archive::files_on_disk(&out),
        broken.stderr
    );
    assert_eq!(broken.code, Some(1), "{broken}");
    assert!(proxy.rejected() > rejected_before, "{broken}");
    assert!(
        broken
            .stderr_lines()
            .iter()
            .any(|l| l.starts_with("error:")),
        "{broken}"
    );
    assert_no_password(&broken, &[RIGHT]);
    assert!(
        no_manifest(&out),
        "manifest.json left by a failed dump: {:?}",
        archive::files_on_disk(&out)
    );
}

#[test]
fn dump_usage_errors_exit_2() {
    // Bad flags are usage errors (exit 2), found before any request: the
    // source here is unreachable, which would be exit 1.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    let cases: [&[&str]; 6] = [
        &["--match", "("],
        &["--exclude", "[a-"],
        &["--compression", "brotli"],
        &["--compression", "lz4", "--level", "13"],
        &["--slices", "0"],
        &["--file-size", "lots"],
    ];
    for case in cases {
        let run = Esark::new()
            .args(["dump", "--source", "http://127.0.0.1:1", "--output"])
            .arg(&out)
            .args(case)
            .run();
        assert_eq!(run.code, Some(2), "{case:?}\n{run}");
        assert!(
            run.stderr_lines()
                .first()
                .is_some_and(|l| l.starts_with("error:")),
            "{case:?}\n{run}"
        );
        assert!(!out.exists() || no_manifest(&out), "{case:?}");
    }
    let no_output = Esark::new()
        .args(["dump", "--source", "http://127.0.0.1:1"])
        .run();
    assert_eq!(no_output.code, Some(2), "{no_output}");
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
    assert!(
        again
            .stderr_lines()
            .first()
            .is_some_and(|l| l.starts_with("error:")),
        "{again}"
    );
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), manifest);
    verify_archive(&Archive::open(&out), &f.cluster, "lz4");

    // With --overwrite: a new archive of only what this dump selected.
    let main_only = Fixture::exactly(&f.main);
    dump(&f.cluster, &out, &["--match", &main_only, "--overwrite"]).assert_success();
    let archive = Archive::open(&out);
    verify_archive(&archive, &f.cluster, "lz4");
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
    verify_archive(&Archive::open(&empty), &f.cluster, "lz4");
}

// ---- archive locations --------------------------------------------------------------

/// Regression: `--output s3x://bars/b1` (any scheme esark does not serve)
/// exited 0 having written a local folder `s3x:/bars/b1`, so a user believed
/// the backup was elsewhere. It is refused in one line, exit 2, before
/// anything is written; `restore`, `verify` and `inspect` refuse it too.
#[test]
fn unserved_scheme_is_refused_not_written_as_a_folder() {
    let cluster = TestCluster::start("dump-unserved-scheme");
    let index = cluster.name("scheme");
    cluster.create_index(&index, &json!({"settings": {"number_of_replicas": 0}}));
    let tmp = tempfile::tempdir().unwrap();
    for location in ["ftp://bars/b1", "s3x://bars/b1", "https://bars.example/b1"] {
        let scheme = location.split("://").next().unwrap();
        let commands = [
            Esark::new().args([
                "dump",
                "--source",
                cluster.url(),
                "--match",
                &Fixture::exactly(&index),
                "--output",
                location,
            ]),
            Esark::new().args(["restore", "--target", cluster.url(), "--input", location]),
            Esark::new().args(["verify", "--target", cluster.url(), "--input", location]),
            Esark::new().args(["inspect", location]),
        ];
        for command in commands {
            let run = command.current_dir(tmp.path()).run();
            assert_eq!(run.code, Some(2), "expected exit 2 (usage)\n{run}");
            let lines = run.stderr_lines();
            assert_eq!(lines.len(), 1, "expected one stderr line\n{run}");
            assert!(
                lines[0].starts_with("error:") && lines[0].contains(&format!("{scheme}://")),
                "the error must name the scheme\n{run}"
            );
        }
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "{location}: wrote {left:?} locally");
    }
}
