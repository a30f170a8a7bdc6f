//! Pipes: `esark dump --output -` and `esark restore --input -`.
//!
//! The stream starts with a header line and ends with a trailer line that
//! counts the documents; the restore reads the header before it touches
//! the target and fails when the trailer is missing, wrong, or followed by
//! more lines. A dump whose reader goes away fails. Each of these was a
//! silent success before (a failed dump piped into `--mode replace`
//! emptied the target index and exited 0).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::esark::{capture, text, Esark, Output};
use crate::util::faults::{Fault, FaultProxy, Route, Rule, When};
use crate::util::restore_support::{
    assert_same_stored, docs_of, seed_index, target_args, target_cluster, Stored,
};
use crate::util::server::TestCluster;

// ---- helpers ----------------------------------------------------------------

/// `n` documents of about 250 bytes: ids `0..n`, a big integer, padding.
fn docs(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                i.to_string(),
                format!(
                    "{{\"n\":{i},\"big\":{},\"pad\":\"{}\"}}",
                    9_007_199_254_740_993u64 + i as u64,
                    "x".repeat(200)
                ),
            )
        })
        .collect()
}

/// A source cluster with one index of `n` documents; returns the cluster,
/// the index name and its documents.
fn source_with(test: &str, n: usize) -> (TestCluster, String, BTreeMap<String, Stored>) {
    let cluster = TestCluster::start(test);
    let index = cluster.name("src");
    let sent = seed_index(
        &cluster,
        &index,
        &json!({"settings": {"number_of_shards": 2}}),
        &docs(n),
    );
    (cluster, index, sent)
}

/// `esark dump --output - --match ^index$`: the stream it wrote (and the
/// run, which must succeed).
fn dump_stream(cluster: &TestCluster, index: &str) -> Vec<String> {
    let out = Esark::new()
        .arg("dump")
        .args(cluster.source_args())
        .args(["--output", "-", "--match", &format!("^{index}$")])
        .run();
    out.assert_success();
    out.stdout.lines().map(str::to_string).collect()
}

/// `esark <args>` with `input` on its standard input.
fn esark_with_stdin(args: &[String], input: &[u8]) -> Output {
    let bin = env!("CARGO_BIN_EXE_esark");
    let mut child = Command::new(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = capture(child.stdout.take().unwrap());
    let stderr = capture(child.stderr.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // esark may stop reading early (a refused header): ignore EPIPE.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let status = wait_for(&mut child, Duration::from_secs(60), &stderr);
    let _ = writer.join();
    std::thread::sleep(Duration::from_millis(50));
    Output {
        code: status.code(),
        stdout: text(&stdout),
        stderr: text(&stderr),
        command: format!("esark {} < input", args.join(" ")),
    }
}

fn wait_for(
    child: &mut std::process::Child,
    timeout: Duration,
    stderr: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("esark did not finish within {timeout:?}\n{}", text(stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `restore --input - --index <index> --target <target> <extra>` fed `input`.
fn restore_stdin(target: &TestCluster, index: &str, extra: &[&str], input: &[u8]) -> Output {
    let mut args: Vec<String> = vec!["restore".into(), "--input".into(), "-".into()];
    args.extend(["--index".to_string(), index.to_string()]);
    args.extend(target_args(target));
    args.extend(extra.iter().map(|s| s.to_string()));
    esark_with_stdin(&args, input)
}

/// The lines joined back into a stream.
fn joined(lines: &[String]) -> Vec<u8> {
    let mut out = lines.join("\n");
    out.push('\n');
    out.into_bytes()
}

/// An index on `target` with 5 documents, which a refused restore must leave.
fn existing_index(target: &TestCluster, name: &str) -> BTreeMap<String, Stored> {
    let existing: Vec<(String, String)> = (0..5)
        .map(|i| (format!("old-{i}"), format!("{{\"old\":{i}}}")))
        .collect();
    seed_index(target, name, &json!({}), &existing)
}

/// Asserts a failed run: non-zero exit, and its last stderr line is one
/// `error:` line containing every one of `words`.
fn assert_failed_with(out: &Output, words: &[&str]) {
    assert!(
        out.code.is_some() && out.code != Some(0),
        "expected a non-zero exit\n{out}"
    );
    let last = out.stderr_lines().last().copied().unwrap_or_default();
    assert!(last.starts_with("error: "), "no error line\n{out}");
    for word in words {
        assert!(last.contains(word), "{word:?} not in the error line\n{out}");
    }
}

// ---- the stream -------------------------------------------------------------

/// The stream is a header, the documents, and a trailer counting them; it
/// restores exactly.
#[test]
fn a_pipe_carries_a_header_the_documents_and_a_counting_trailer() {
    let (source, index, sent) = source_with("pipes-round-trip", 300);
    let Some(target) = target_cluster("pipes-round-trip") else {
        return;
    };
    let lines = dump_stream(&source, &index);
    assert_eq!(lines.len(), 302, "header + 300 documents + trailer");
    let header: Value = serde_json::from_str(&lines[0]).unwrap();
    let h = &header["esark_stream"];
    assert_eq!(h["version"], 1, "{header}");
    assert_eq!(h["index"], index.as_str(), "{header}");
    assert_eq!(
        h["source"]["url"].as_str().unwrap().trim_end_matches('/'),
        source.base_url().trim_end_matches('/'),
        "{header}"
    );
    assert!(h["source"]["version"].is_string(), "{header}");
    assert!(h["created_at"].is_string(), "{header}");
    let trailer: Value = serde_json::from_str(&lines[301]).unwrap();
    assert_eq!(trailer, json!({"esark_stream_end": {"docs": 300}}));
    for line in &lines[1..301] {
        assert!(line.starts_with("{\"_id\":"), "{line}");
    }

    let piped = format!("{index}-piped");
    let out = restore_stdin(&target, &piped, &["--quiet"], &joined(&lines));
    out.assert_success();
    assert_same_stored(&sent, &docs_of(&target, &piped), "piped");
}

/// Regression: a dump that failed (unreachable source) piped into
/// `restore --mode replace` deleted the target index, restored "0 of 0"
/// and exited 0. Now the restore refuses the empty stream before it
/// touches the target.
#[test]
fn a_failed_dump_piped_into_restore_leaves_the_target_untouched() {
    let Some(target) = target_cluster("pipes-failed-dump") else {
        return;
    };
    let name = target.name("users-v1");
    let kept = existing_index(&target, &name);
    let bin = env!("CARGO_BIN_EXE_esark");
    let script = format!(
        "'{bin}' dump --source http://127.0.0.1:1 --output - --match '^{name}$' \
         | '{bin}' restore --input - --index '{name}' --target '{}' --mode replace --quiet; \
         echo \"codes ${{PIPESTATUS[0]}} ${{PIPESTATUS[1]}}\" >&2",
        target.url()
    );
    let out = Command::new("timeout")
        .args(["120", "bash", "-c", &script])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let codes = stderr
        .lines()
        .find_map(|l| l.strip_prefix("codes "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let codes: Vec<i32> = codes.split(' ').map(|c| c.parse().unwrap()).collect();
    assert_ne!(codes[0], 0, "the dump fails\n{stderr}");
    assert_ne!(codes[1], 0, "the restore fails\n{stderr}");
    assert!(
        stderr.contains("standard input"),
        "the restore says what is wrong with its input\n{stderr}"
    );
    assert_same_stored(&kept, &docs_of(&target, &name), "target after refusal");
}

/// An empty standard input, or document lines without the header, are
/// refused before the target is touched, even under `--mode replace`.
#[test]
fn a_stream_without_header_is_refused_and_nothing_is_touched() {
    let (source, index, _) = source_with("pipes-no-header", 20);
    let Some(target) = target_cluster("pipes-no-header") else {
        return;
    };
    let name = target.name("kept");
    let kept = existing_index(&target, &name);
    let replace = ["--mode", "replace", "--quiet"];

    let empty = restore_stdin(&target, &name, &replace, b"");
    assert_failed_with(&empty, &["standard input", "header"]);
    assert_same_stored(&kept, &docs_of(&target, &name), "after empty input");

    let lines = dump_stream(&source, &index);
    let plain: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("{\"_id\""))
        .cloned()
        .collect();
    assert_eq!(plain.len(), 20);
    let headerless = restore_stdin(&target, &name, &replace, &joined(&plain));
    assert_failed_with(&headerless, &["standard input", "header"]);
    assert_same_stored(&kept, &docs_of(&target, &name), "after headerless input");

    // A header of a later format version is refused too.
    let mut future = vec![r#"{"esark_stream":{"version":99,"index":"x"}}"#.to_string()];
    future.extend(plain);
    let newer = restore_stdin(&target, &name, &replace, &joined(&future));
    assert_failed_with(&newer, &["version 99"]);
    assert_same_stored(&kept, &docs_of(&target, &name), "after a newer version");
}

/// A stream that ends without its trailer (the dump died) fails the
/// restore, naming how many documents were read.
#[test]
fn a_truncated_stream_fails_naming_the_count() {
    let (source, index, _) = source_with("pipes-truncated", 50);
    let Some(target) = target_cluster("pipes-truncated") else {
        return;
    };
    let lines = dump_stream(&source, &index);
    assert!(lines[0].starts_with("{\"esark_stream\":"), "{}", lines[0]);
    let truncated = &lines[..21];
    let name = target.name("truncated");
    let out = restore_stdin(&target, &name, &[], &joined(truncated));
    assert_failed_with(&out, &["20 documents", "trailer"]);
    // The report says what was written (a pipe is read once).
    assert!(out.stderr.contains("20 of 20 documents written"), "{out}");
}

/// A trailer whose count differs from the documents read, or lines after
/// the trailer, fail the restore.
#[test]
fn a_wrong_trailer_count_or_lines_after_it_fail() {
    let (source, index, _) = source_with("pipes-wrong-count", 30);
    let Some(target) = target_cluster("pipes-wrong-count") else {
        return;
    };
    let lines = dump_stream(&source, &index);
    let last = lines.len() - 1;
    assert_eq!(lines[last], r#"{"esark_stream_end":{"docs":30}}"#);

    let mut wrong = lines.clone();
    wrong[last] = r#"{"esark_stream_end":{"docs":31}}"#.to_string();
    let out = restore_stdin(
        &target,
        &target.name("wrong"),
        &["--quiet"],
        &joined(&wrong),
    );
    assert_failed_with(&out, &["31", "30 documents"]);

    let mut missing_doc = lines.clone();
    missing_doc.remove(5);
    let out = restore_stdin(
        &target,
        &target.name("missing"),
        &["--quiet"],
        &joined(&missing_doc),
    );
    assert_failed_with(&out, &["30", "29 documents"]);

    let mut after = lines.clone();
    after.push(lines[1].clone());
    let out = restore_stdin(
        &target,
        &target.name("after"),
        &["--quiet"],
        &joined(&after),
    );
    assert_failed_with(&out, &["after the trailer"]);
}

/// Regression: `esark dump --output - | head` exited 0 although most of
/// the index was never written. A dump whose reader goes away fails.
#[test]
fn a_dump_whose_reader_goes_away_fails() {
    // About 1 MB: more than a pipe holds.
    let (source, index, _) = source_with("pipes-epipe", 4000);
    let bin = env!("CARGO_BIN_EXE_esark");
    let mut child = Command::new(bin)
        .arg("dump")
        .args(source.source_args())
        .args(["--output", "-", "--match", &format!("^{index}$")])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = capture(child.stderr.take().unwrap());
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let status = wait_for(&mut child, Duration::from_secs(60), &stderr);
    std::thread::sleep(Duration::from_millis(50));
    let err = text(&stderr);
    assert!(
        status.code().is_some() && status.code() != Some(0),
        "the dump must fail: {status:?}\n{err}"
    );
    let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains("closed"),
        "one error line saying the output was closed\n{err}"
    );
}

/// A stream saved to a file (`dump --output - > FILE`) restores with
/// `--input FILE` like a dump of another tool: its header names the
/// index, and the whole file is checked before anything is written, so a
/// truncated file touches nothing.
#[test]
fn a_saved_stream_restores_from_a_file_and_a_truncated_one_is_refused() {
    let (source, index, sent) = source_with("pipes-saved", 40);
    let Some(target) = target_cluster("pipes-saved") else {
        return;
    };
    let lines = dump_stream(&source, &index);
    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("saved.jsonl");
    std::fs::write(&saved, joined(&lines)).unwrap();
    let restored = target.name("saved");
    let out = Esark::new()
        .args(["restore", "--input"])
        .arg(&saved)
        .args(["--rename", &format!("^{index}$={restored}"), "--quiet"])
        .args(target_args(&target))
        .run();
    out.assert_success();
    assert_same_stored(&sent, &docs_of(&target, &restored), "from a saved stream");

    let cut = tmp.path().join("cut.jsonl");
    std::fs::write(&cut, joined(&lines[..11])).unwrap();
    let name = target.name("kept");
    let kept = existing_index(&target, &name);
    let out = Esark::new()
        .args(["restore", "--input"])
        .arg(&cut)
        .args(["--index", &name, "--mode", "replace", "--quiet"])
        .args(target_args(&target))
        .run();
    assert_failed_with(&out, &["trailer", "10 documents"]);
    assert_same_stored(&kept, &docs_of(&target, &name), "after a truncated file");
}

/// A dump that fails in the middle (a lost scroll page: the slice would
/// have to be read again, which a pipe cannot take back) writes the header
/// and what it read, no trailer, and exits non-zero; a restore of that
/// stream fails naming the documents read.
#[test]
fn a_dump_failing_mid_stream_writes_no_trailer() {
    let (source, index, _) = source_with("pipes-mid-stream", 500);
    let Some(target) = target_cluster("pipes-mid-stream") else {
        return;
    };
    let proxy = FaultProxy::start(
        source.base_url(),
        vec![Rule::new(
            "context-missing",
            Route::next_pages(),
            When::Nth(3),
            Fault::ContextMissing,
        )],
    );
    let out = Esark::new()
        .args(["dump", "--source", &proxy.url(), "--output", "-"])
        .args(["--match", &format!("^{index}$")])
        .args(["--reader", "scroll", "--slices", "1", "--page-size", "50"])
        .run();
    proxy.assert_fired("context-missing", 1);
    assert_failed_with(&out, &["cannot take back"]);
    let lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("{\"esark_stream\":")),
        "the header and what was read are passed on\n{out}"
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with("{\"esark_stream_end\"")),
        "no trailer\n{out}"
    );
    let read = lines.len() - 1;
    let restored = restore_stdin(
        &target,
        &target.name("partial"),
        &["--quiet"],
        out.stdout.as_bytes(),
    );
    assert_failed_with(&restored, &["trailer", &format!("after {read} documents")]);
}
