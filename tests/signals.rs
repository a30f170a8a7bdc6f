//! SIGTERM (`kill`, `timeout`, systemd, Kubernetes) stops dump, restore and
//! copy like the first Ctrl-C: a graceful stop with a non-zero exit, the
//! target's `refresh_interval` and `number_of_replicas` put back, and what
//! `--resume` needs kept.
//!
//! Regression: only SIGINT was handled; SIGTERM killed esark at once and
//! left `refresh_interval: -1` and `number_of_replicas: 0` on the target.
//! Each run is slowed by the fault proxy (`Fault::Slow`) so that the
//! signal arrives in the middle of the load.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::archive::Archive;
use crate::util::esark::{capture, text, Esark, Output};
use crate::util::faults::{Fault, FaultProxy, Route, Rule, When};
use crate::util::restore_support::{
    assert_same_stored, docs_of, dump_small_chunks, seed_index, target_cluster, try_count, Spawned,
    Stored,
};
use crate::util::server::TestCluster;

const DOCS: usize = 1500;

/// A source with one index of [`DOCS`] documents whose load settings are
/// not the defaults (`refresh_interval` 7s, one replica).
fn source(test: &str) -> (TestCluster, String, BTreeMap<String, Stored>) {
    let cluster = TestCluster::start(test);
    let index = cluster.name("sig");
    let docs: Vec<(String, String)> = (0..DOCS)
        .map(|i| {
            (
                i.to_string(),
                format!("{{\"n\":{i},\"pad\":\"{}\"}}", "y".repeat(100)),
            )
        })
        .collect();
    let sent = seed_index(
        &cluster,
        &index,
        &json!({"settings": {"number_of_shards": 2, "number_of_replicas": 1, "refresh_interval": "7s"}}),
        &docs,
    );
    (cluster, index, sent)
}

/// Every request of `route` slowed down by `ms`.
fn slow(route: Route, ms: u64) -> Vec<Rule> {
    vec![Rule::new(
        "slow",
        route,
        When::Every {
            every: 1,
            max: 100_000,
        },
        Fault::Slow(Duration::from_millis(ms)),
    )]
}

fn proxied_url(proxy: &FaultProxy, cluster: &TestCluster) -> String {
    let mut url = url::Url::parse(&proxy.url()).unwrap();
    if let Some((user, password)) = cluster.credentials() {
        url.set_username(user).unwrap();
        url.set_password(Some(password)).unwrap();
    }
    url.as_str().trim_end_matches('/').to_string()
}

/// Asserts a graceful stop: an exit code (not killed by the signal), not 0,
/// and stderr mentioning `word`.
fn assert_stopped(run: &Output, word: &str) {
    assert!(
        run.code.is_some(),
        "SIGTERM killed esark instead of stopping it\n{run}"
    );
    assert_ne!(
        run.code,
        Some(0),
        "an interrupted run does not succeed\n{run}"
    );
    assert!(run.stderr.contains(word), "{word:?} not on stderr\n{run}");
}

/// Asserts the load settings of `index` on `target` are the source's again.
fn assert_settings_back(target: &TestCluster, index: &str) {
    let settings: Value = target.settings(index);
    assert_eq!(
        settings["index"]["refresh_interval"], "7s",
        "refresh_interval put back\n{settings}"
    );
    assert_eq!(
        settings["index"]["number_of_replicas"], "1",
        "number_of_replicas put back\n{settings}"
    );
}

#[test]
fn restore_stopped_by_sigterm_puts_settings_back_and_resumes() {
    let test = "signals-restore";
    let (source, index, sent) = source(test);
    let Some(target) = target_cluster(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_small_chunks(&source, &archive, &format!("^{index}$"), "64KiB");
    let proxy = FaultProxy::start(target.base_url(), slow(Route::bulk(), 150));
    let url = proxied_url(&proxy, &target);
    let mut args: Vec<String> = vec![
        "restore".into(),
        "--input".into(),
        archive.to_string_lossy().into_owned(),
        "--target".into(),
        url,
        "--bulk-docs".into(),
        "50".into(),
        "--concurrency".into(),
        "1".into(),
    ];
    let mut run = Spawned::start(&args, None);
    run.wait_until("8 bulk requests", Duration::from_secs(45), || {
        proxy.requests_matching(&Route::bulk()) >= 8
    });
    run.sigterm();
    let stopped = run.wait(Duration::from_secs(60));
    assert_stopped(&stopped, "--resume");
    assert_settings_back(&target, &index);
    assert!(
        target.count(&index) < DOCS as u64,
        "stopped in the middle\n{stopped}"
    );

    proxy.set_rules(vec![]);
    args.push("--resume".into());
    Esark::new().args(&args).run().assert_success();
    assert_eq!(target.count(&index), DOCS as u64);
    assert_same_stored(&sent, &docs_of(&target, &index), "resumed restore");
    assert_settings_back(&target, &index);
}

#[test]
fn dump_stopped_by_sigterm_resumes() {
    let test = "signals-dump";
    let (source, index, sent) = source(test);
    let proxy = FaultProxy::start(source.base_url(), slow(Route::pages(), 250));
    let url = proxied_url(&proxy, &source);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("dump");
    let args: Vec<String> = vec![
        "dump".into(),
        "--source".into(),
        url.clone(),
        "--output".into(),
        out.to_string_lossy().into_owned(),
        "--match".into(),
        format!("^{index}$"),
        "--slices".into(),
        "2".into(),
        "--page-size".into(),
        "100".into(),
        "--compression".into(),
        "none".into(),
        "--file-size".into(),
        "64KiB".into(),
    ];
    let mut run = Spawned::start(&args, None);
    run.wait_until("4 page requests", Duration::from_secs(45), || {
        proxy.requests_matching(&Route::pages()) >= 4
    });
    run.sigterm();
    let stopped = run.wait(Duration::from_secs(60));
    assert_stopped(&stopped, "--resume");
    assert!(
        !out.join("manifest.json").exists(),
        "an interrupted dump has no manifest\n{stopped}"
    );

    proxy.set_rules(vec![]);
    Esark::new()
        .arg("dump")
        .args(["--source", &url])
        .arg("--output")
        .arg(&out)
        .arg("--resume")
        .run()
        .assert_success();
    let docs = Archive::open(&out).docs(&index);
    assert_eq!(docs.len(), DOCS, "every document exactly once");
    let ids: BTreeSet<String> = docs.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), DOCS, "no document twice");
    assert_eq!(ids, sent.keys().cloned().collect::<BTreeSet<_>>());
}

#[test]
fn copy_stopped_by_sigterm_puts_settings_back() {
    let test = "signals-copy";
    let (source, index, _) = source(test);
    let Some(target) = target_cluster(test) else {
        return;
    };
    let proxy = FaultProxy::start(target.base_url(), slow(Route::bulk(), 150));
    let args: Vec<String> = vec![
        "copy".into(),
        "--source".into(),
        source.url().to_string(),
        "--target".into(),
        proxied_url(&proxy, &target),
        "--match".into(),
        format!("^{index}$"),
        "--bulk-docs".into(),
        "50".into(),
        "--concurrency".into(),
        "1".into(),
    ];
    let mut run = Spawned::start(&args, None);
    run.wait_until("4 bulk requests", Duration::from_secs(45), || {
        proxy.requests_matching(&Route::bulk()) >= 4
    });
    run.sigterm();
    let stopped = run.wait(Duration::from_secs(60));
    assert_stopped(&stopped, "interrupted");
    assert_settings_back(&target, &index);
}

/// `restore --input -` waiting on a silent pipe (a slow dump) stops on
/// SIGTERM at once, with the load settings of the index it created put
/// back, instead of waiting for the next line.
#[test]
fn restore_from_a_silent_pipe_stops_on_sigterm() {
    let test = "signals-pipe";
    let Some(target) = target_cluster(test) else {
        return;
    };
    let name = target.name("piped");
    let header = r#"{"esark_stream":{"version":1,"index":"x","source":{"url":"http://a:9200/","cluster_name":"c","cluster_uuid":"u","flavor":"opensearch","version":"2.19.0"},"tool_version":"0","created_at":"2026-11-30T00:00:00.000Z"}}"#;
    let bin = env!("CARGO_BIN_EXE_esark");
    let mut child = Command::new(bin)
        .args(["restore", "--input", "-", "--index", &name, "--target"])
        .arg(target.url())
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = capture(child.stderr.take().unwrap());
    let _stdout = capture(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{header}").unwrap();
    writeln!(stdin, r#"{{"_id":"1","_source":{{"n":1}}}}"#).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_count(&target, &name).is_none() {
        assert!(
            Instant::now() < deadline,
            "no index created\n{}",
            text(&stderr)
        );
        assert!(child.try_wait().unwrap().is_none(), "{}", text(&stderr));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stopped = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if stopped.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "restore still waits on its silent pipe after SIGTERM\n{}",
                text(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    std::thread::sleep(Duration::from_millis(50));
    let err = text(&stderr);
    assert!(code.is_some() && code != Some(0), "{code:?}\n{err}");
    assert!(err.contains("interrupted"), "{err}");
    let settings = target.settings(&name);
    assert_ne!(settings["index"]["refresh_interval"], "-1", "{settings}");
    assert_ne!(settings["index"]["number_of_replicas"], "0", "{settings}");
}

/// `dump --output -` stopped by SIGTERM exits non-zero without a trailer,
/// and does not suggest `--resume` (a pipe keeps no checkpoint).
#[test]
fn pipe_dump_stopped_by_sigterm_writes_no_trailer() {
    let test = "signals-pipe-dump";
    let (source, index, _) = source(test);
    let proxy = FaultProxy::start(source.base_url(), slow(Route::pages(), 250));
    let args: Vec<String> = vec![
        "dump".into(),
        "--source".into(),
        proxied_url(&proxy, &source),
        "--output".into(),
        "-".into(),
        "--match".into(),
        format!("^{index}$"),
        "--page-size".into(),
        "100".into(),
    ];
    let mut run = Spawned::start(&args, None);
    run.wait_until("3 page requests", Duration::from_secs(45), || {
        proxy.requests_matching(&Route::pages()) >= 3
    });
    run.sigterm();
    let stopped = run.wait(Duration::from_secs(60));
    assert_stopped(&stopped, "run the pipe again");
    assert!(!stopped.stderr.contains("--resume"), "{stopped}");
    assert!(
        stopped.stdout.starts_with("{\"esark_stream\":"),
        "the header\n{stopped}"
    );
    assert!(
        !stopped.stdout.contains("esark_stream_end"),
        "no trailer\n{stopped}"
    );
}
