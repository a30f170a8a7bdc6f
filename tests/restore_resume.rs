//! `esark restore --resume` and the rejects file, exactly once.
//!
//! Each test interrupts a restore (SIGKILL, or one SIGINT) or makes the
//! target lose bulk answers, then counts every document on the target and
//! every line of the rejects file:
//!
//! - a resumed run refuses options that contradict the recorded ones, and
//!   accepts those that are safe to change;
//! - a plain re-run of an interrupted restore stops before touching
//!   anything and points to `--resume` (or `--discard-state`);
//! - the state lives outside the archive: a read-only archive restores,
//!   and an archive is never modified by a restore;
//! - a `create` resent into a data stream (lost answer, resumed chunk) is
//!   not a reject, while a genuine conflict still is;
//! - rejects are on disk before their chunk is acknowledged, a resumed
//!   run lists each rejected document once, and a rejects file that
//!   cannot be written fails the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::data_streams::{self, DOCS, STREAM};
use crate::util::archive::{files_on_disk, sha256_file};
use crate::util::esark::{Esark, Output};
use crate::util::faults::{Fault, FaultProxy, Route, Rule, When};
use crate::util::proxy::AuthProxy;
use crate::util::restore_support::{
    acked_chunks_in_state, all_index_names, assert_same_stored, docs_of, dump_small_chunks,
    json_report, report_index, seed_index, target_cluster, Spawned,
};
use crate::util::server::TestCluster;

/// Documents of the index restored by the interruption tests.
const LOGS_DOCS: usize = 1500;

/// A source with `<p>-logs` (1500 documents of ~120 bytes), dumped into
/// an archive of uncompressed 32 KiB chunks (about 6).
struct Setup {
    source: TestCluster,
    target: TestCluster,
    index: String,
    archive: PathBuf,
    /// `ESARK_STATE_DIR` of every run.
    state_dir: PathBuf,
    tmp: tempfile::TempDir,
}

fn setup(test: &str) -> Option<Setup> {
    let target = target_cluster(test)?;
    let source = TestCluster::start(test);
    let index = source.name("logs");
    let docs: Vec<(String, String)> = (0..LOGS_DOCS)
        .map(|i| {
            (
                format!("d{i:05}"),
                format!(r#"{{"n":{i},"msg":"line {i} of the log, padded to a hundred bytes or so","big":{}}}"#, i64::MAX - i as i64),
            )
        })
        .collect();
    seed_index(
        &source,
        &index,
        &json!({"settings": {"number_of_shards": 1}}),
        &docs,
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_small_chunks(&source, &archive, &format!("^{index}$"), "32KiB");
    let state_dir = tmp.path().join("state");
    Some(Setup {
        source,
        target,
        index,
        archive,
        state_dir,
        tmp,
    })
}

impl Setup {
    /// `restore --input <archive> --target <url>` with one bulk of 50
    /// documents at a time, rejects in the temporary folder.
    fn args(&self, url: &str) -> Vec<String> {
        vec![
            "restore".into(),
            "--input".into(),
            self.archive.to_string_lossy().into_owned(),
            "--target".into(),
            url.into(),
            "--bulk-docs".into(),
            "50".into(),
            "--concurrency".into(),
            "1".into(),
            "--rejects".into(),
            self.tmp
                .path()
                .join("rejects.jsonl")
                .to_string_lossy()
                .into_owned(),
        ]
    }

    fn run(&self, args: &[String], extra: &[&str]) -> Output {
        Esark::new()
            .args(args)
            .args(extra)
            .env("ESARK_STATE_DIR", &self.state_dir.to_string_lossy())
            .run()
    }

    fn spawn(&self, args: &[String]) -> Spawned {
        Spawned::start_with_env(
            args,
            None,
            &[("ESARK_STATE_DIR", &self.state_dir.to_string_lossy())],
        )
    }

    /// The one state file in the state folder, if any (or the one in the
    /// archive folder, where esark kept it before, so that these tests
    /// show what they check against an older esark too).
    fn state_file(&self) -> Option<PathBuf> {
        let files: Vec<PathBuf> = std::fs::read_dir(&self.state_dir)
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        assert!(files.len() <= 1, "more than one state file: {files:?}");
        let old = self.archive.join("restore.state.json");
        files
            .into_iter()
            .next()
            .or_else(|| old.exists().then_some(old))
    }

    /// The documents of the index on the target, refreshed first (a
    /// restore loads with refresh off).
    fn refreshed_count(&self) -> u64 {
        self.target.refresh(&self.index);
        self.target.count(&self.index)
    }

    /// Asserts the target holds every document of the source once, same bytes.
    fn assert_complete(&self, what: &str) {
        let expected = docs_of(&self.source, &self.index);
        assert_eq!(expected.len(), LOGS_DOCS);
        assert_same_stored(&expected, &docs_of(&self.target, &self.index), what);
        assert_eq!(self.target.count(&self.index), LOGS_DOCS as u64, "{what}");
    }
}

/// Chunks acknowledged in a state file (0 while it does not exist).
fn acked_chunks(state: Option<PathBuf>) -> usize {
    state.map_or(0, |path| acked_chunks_in_state(&path))
}

/// Waits for the bulk a [`slow_bulks`] proxy was holding when esark was
/// killed: the proxy still forwards it.
fn settle() {
    std::thread::sleep(Duration::from_millis(800));
}

/// A proxy that delays every bulk by `ms`.
fn slow_bulks(upstream: &str, ms: u64) -> FaultProxy {
    FaultProxy::start(
        upstream,
        vec![Rule::new(
            "slow",
            Route::bulk(),
            When::Every {
                every: 1,
                max: 100_000,
            },
            Fault::Slow(Duration::from_millis(ms)),
        )],
    )
}

/// The lines of stderr that say `error:`.
fn error_lines(run: &Output) -> Vec<&str> {
    run.stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("error"))
        .collect()
}

/// Every file of a folder with its sha256.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    files_on_disk(dir)
        .into_iter()
        .map(|f| {
            let sum = sha256_file(&dir.join(&f));
            (f, sum)
        })
        .collect()
}

// ---- resume and its options -------------------------------------------------

/// Regression: after a kill -9, `restore --resume --prefix r-` reported
/// `"x" -> "r-x": 500 of 500` although the documents went to the names of
/// the first run. Options that decide where and what is written are now
/// recorded and a resume that contradicts them is refused (exit 2, one
/// line naming each); rate, concurrency and bulk size may change.
#[test]
fn resume_refuses_options_that_contradict_the_interrupted_restore() {
    let Some(s) = setup("resume-options") else {
        return;
    };
    let proxy = slow_bulks(s.target.base_url(), 150);
    let args = s.args(&proxy.url());
    let mut run = s.spawn(&args);
    run.wait_until("a chunk acknowledged", Duration::from_secs(60), || {
        acked_chunks(s.state_file()) >= 1
    });
    run.kill9();
    assert_eq!(run.wait(Duration::from_secs(120)).code, None);
    settle();
    let state = s.state_file().expect("the state survives the kill");
    let recorded = std::fs::read(&state).unwrap();
    let count = s.refreshed_count();
    assert!(count < LOGS_DOCS as u64, "the kill came too late: {count}");
    let bulks = proxy.requests_matching(&Route::bulk());

    let prefixed = s.run(&args, &["--resume", "--prefix", "r-"]);
    assert_eq!(prefixed.code, Some(2), "--resume --prefix r-\n{prefixed}");
    let errors = error_lines(&prefixed);
    assert_eq!(errors.len(), 1, "{prefixed}");
    assert!(
        errors[0].contains("--prefix r- (recorded: (none))")
            && errors[0].contains("--discard-state"),
        "{prefixed}"
    );
    let two = s.run(&args, &["--resume", "--mode", "merge", "--match", "."]);
    assert_eq!(two.code, Some(2), "{two}");
    let errors = error_lines(&two);
    assert_eq!(errors.len(), 1, "{two}");
    for part in [
        "--mode merge (recorded: fail)",
        "--match . (recorded: (none))",
    ] {
        assert!(errors[0].contains(part), "{part}: {two}");
    }
    assert_eq!(
        std::fs::read(&state).unwrap(),
        recorded,
        "the refusals changed the state"
    );
    assert!(
        !all_index_names(&s.target)
            .iter()
            .any(|n| n.starts_with("r-")),
        "a refused resume wrote an index"
    );
    assert_eq!(
        s.refreshed_count(),
        count,
        "a refused resume wrote documents"
    );
    assert_eq!(
        proxy.requests_matching(&Route::bulk()),
        bulks,
        "a refused resume sent bulks"
    );

    // Safe to change: concurrency, bulk size, rate.
    let mut safe = args.clone();
    for (flag, value) in [("--concurrency", "2"), ("--bulk-docs", "70")] {
        let at = safe.iter().position(|a| a == flag).unwrap();
        safe[at + 1] = value.into();
    }
    let resumed = s.run(&safe, &["--resume", "--rate", "1000000", "--json"]);
    assert_eq!(resumed.code, Some(0), "{resumed}");
    let report = json_report(&resumed);
    let entry = report_index(&report, &s.index);
    assert_eq!(entry["target"], s.index.as_str(), "{entry}");
    assert_eq!(entry["written"], LOGS_DOCS as u64, "{entry}");
    assert_eq!(entry["rejected"], 0, "{entry}");
    s.assert_complete("resumed with other rate, concurrency and bulk size");
    assert!(
        s.state_file().is_none(),
        "the state of a complete restore is removed"
    );
}

/// Regression: after Ctrl-C a plain re-run said "index exists ... choose
/// --mode replace, merge or skip-existing", overwrote the state (so a
/// later --resume failed), and `--mode skip-existing` then exited 0 with a
/// partial index. A run without --resume now stops before touching
/// anything and points to --resume or --discard-state.
#[test]
fn a_rerun_after_an_interrupt_is_refused_and_points_to_resume() {
    let Some(s) = setup("resume-rerun") else {
        return;
    };
    let proxy = slow_bulks(s.target.base_url(), 150);
    let args = s.args(&proxy.url());
    let mut run = s.spawn(&args);
    run.wait_until("a chunk acknowledged", Duration::from_secs(60), || {
        acked_chunks(s.state_file()) >= 1
    });
    run.sigint();
    let interrupted = run.wait(Duration::from_secs(30));
    assert_eq!(interrupted.code, Some(1), "{interrupted}");
    let state = s
        .state_file()
        .expect("an interrupted restore keeps its state");
    let recorded = std::fs::read(&state).unwrap();
    let count = s.target.count(&s.index);
    assert!(
        count < LOGS_DOCS as u64,
        "the interrupt came too late: {count}"
    );
    let bulks = proxy.requests_matching(&Route::bulk());

    for extra in [
        &[][..],
        &["--mode", "skip-existing"][..],
        &["--mode", "replace"][..],
    ] {
        let again = s.run(&args, extra);
        assert_eq!(again.code, Some(2), "{extra:?}\n{again}");
        let errors = error_lines(&again);
        assert_eq!(errors.len(), 1, "{again}");
        assert!(
            errors[0].contains("--resume") && errors[0].contains("--discard-state"),
            "{again}"
        );
        assert_eq!(
            std::fs::read(&state).unwrap(),
            recorded,
            "{extra:?} changed the state"
        );
        assert_eq!(s.refreshed_count(), count, "{extra:?} wrote documents");
    }
    assert_eq!(
        proxy.requests_matching(&Route::bulk()),
        bulks,
        "a refused run sent bulks"
    );

    // Starting over deliberately.
    let fresh = s.run(&args, &["--discard-state", "--mode", "replace", "--json"]);
    assert_eq!(fresh.code, Some(0), "{fresh}");
    assert_eq!(
        report_index(&json_report(&fresh), &s.index)["written"],
        LOGS_DOCS as u64
    );
    s.assert_complete("started over with --discard-state --mode replace");
    assert!(s.state_file().is_none());
}

/// Regression: the state went into the archive folder, so a read-only
/// archive could not be restored and reading a backup modified it. Now it
/// lives in the state folder: the archive stays byte-identical through an
/// interrupted and a resumed restore.
#[test]
fn a_read_only_archive_restores_and_is_never_modified() {
    let Some(s) = setup("resume-read-only") else {
        return;
    };
    let before = snapshot(&s.archive);
    let chmod = |mode: &str| {
        let ok = std::process::Command::new("chmod")
            .args(["-R", mode])
            .arg(&s.archive)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chmod -R {mode}");
    };
    chmod("a-w");
    let probe = s.archive.join(".write-probe");
    if std::fs::write(&probe, b"").is_ok() {
        std::fs::remove_file(&probe).unwrap();
        eprintln!(
            "resume-read-only: chmod has no effect (running as root); checking instead \
             that the archive is byte-identical and has no new file"
        );
    }
    let proxy = slow_bulks(s.target.base_url(), 150);
    let args = s.args(&proxy.url());
    let mut run = s.spawn(&args);
    run.wait_until("a chunk acknowledged", Duration::from_secs(60), || {
        acked_chunks(s.state_file()) >= 1
    });
    run.kill9();
    assert_eq!(run.wait(Duration::from_secs(120)).code, None);
    assert_eq!(
        snapshot(&s.archive),
        before,
        "the interrupted restore changed the archive"
    );
    let resumed = s.run(&args, &["--resume"]);
    chmod("u+w");
    assert_eq!(resumed.code, Some(0), "{resumed}");
    assert_eq!(
        snapshot(&s.archive),
        before,
        "the resumed restore changed the archive"
    );
    s.assert_complete("restored from a read-only archive");
    assert!(s.state_file().is_none());
}

// ---- data streams: resent creates ---------------------------------------------

/// The data stream archive of [`data_streams::source`] in 16 KiB chunks,
/// and a target with the emulation behind a fault proxy.
struct DataStreamSetup {
    source: TestCluster,
    target: TestCluster,
    target_streams: AuthProxy,
    archive: PathBuf,
    tmp: tempfile::TempDir,
    _source_proxy: AuthProxy,
}

fn data_stream_setup(test: &str) -> Option<DataStreamSetup> {
    let (source, source_proxy) = data_streams::source(test)?;
    let target = target_cluster(test)?;
    let target_streams = AuthProxy::start_data_streams(&target);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    Esark::new()
        .args([
            "dump",
            "--source",
            &source_proxy.url(),
            "--match",
            "^logs-app$",
        ])
        .arg("--output")
        .arg(&archive)
        .args(["--compression", "none", "--file-size", "16KiB"])
        .run()
        .assert_success();
    Some(DataStreamSetup {
        source,
        target,
        target_streams,
        archive,
        tmp,
        _source_proxy: source_proxy,
    })
}

impl DataStreamSetup {
    fn args(&self, url: &str, bulk_docs: &str) -> Vec<String> {
        vec![
            "restore".into(),
            "--input".into(),
            self.archive.to_string_lossy().into_owned(),
            "--target".into(),
            url.into(),
            "--bulk-docs".into(),
            bulk_docs.into(),
            "--concurrency".into(),
            "1".into(),
            "--rejects".into(),
            self.rejects().to_string_lossy().into_owned(),
            "--state".into(),
            self.tmp
                .path()
                .join("state.json")
                .to_string_lossy()
                .into_owned(),
        ]
    }

    fn rejects(&self) -> PathBuf {
        self.tmp.path().join("rejects.jsonl")
    }

    fn assert_complete(&self, what: &str) {
        let expected = docs_of(&self.source, STREAM);
        assert_eq!(expected.len(), DOCS);
        assert_same_stored(&expected, &docs_of(&self.target, STREAM), what);
    }
}

/// Regression: a data stream document is written with `create`; the retry
/// of a bulk whose answer was lost got 409 `version_conflict_engine_exception`,
/// counted as rejected (exit 3, rejects file) although the document was
/// there. A resent create found in place is written. A genuine conflict (an
/// id the data stream held before esark sent it) is still a reject.
#[test]
fn a_data_stream_bulk_resent_after_a_lost_answer_is_not_rejected() {
    let Some(d) = data_stream_setup("resume-ds-lost") else {
        return;
    };
    let proxy = FaultProxy::start(
        &d.target_streams.url(),
        vec![Rule::new(
            "lost",
            Route::bulk(),
            When::At(vec![2, 5]),
            Fault::LoseResponse,
        )],
    );
    let args = d.args(&proxy.url(), "50");
    let run = Esark::new().args(&args).arg("--json").run();
    proxy.assert_fired("lost", 2);
    assert_eq!(run.code, Some(0), "{run}\n{}", proxy.faults_log());
    let entry = report_index(&json_report(&run), STREAM).clone();
    assert_eq!(entry["written"], DOCS as u64, "{entry}");
    assert_eq!(entry["rejected"], 0, "{entry}");
    assert!(!d.rejects().exists(), "a rejects file was written");
    assert!(
        d.target_streams.data_streams().creates() > DOCS,
        "no document was sent twice: the fault proved nothing"
    );
    d.assert_complete("lost bulk answers");

    // Every id exists now: restoring again into the data stream is a
    // genuine conflict for each, reported as rejected.
    proxy.set_rules(vec![]);
    let merged = Esark::new()
        .args(&args)
        .args(["--mode", "merge", "--json"])
        .run();
    assert_eq!(merged.code, Some(3), "{merged}");
    let entry = report_index(&json_report(&merged), STREAM).clone();
    assert_eq!(entry["written"], 0, "{entry}");
    assert_eq!(entry["rejected"], DOCS as u64, "{entry}");
    let lines: Vec<Value> = std::fs::read_to_string(d.rejects())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), DOCS);
    assert!(lines.iter().all(|l| l["status"] == 409), "{:?}", lines[0]);
    d.assert_complete("after the genuine conflicts");
}

/// Regression: `restore --resume` resends the chunk that was not
/// acknowledged; its documents already in the data stream answered 409 and
/// were reported as rejected (exit 3). They are the earlier run's writes.
#[test]
fn a_data_stream_chunk_resent_by_resume_is_not_rejected() {
    let Some(d) = data_stream_setup("resume-ds-kill") else {
        return;
    };
    let proxy = slow_bulks(&d.target_streams.url(), 150);
    let args = d.args(&proxy.url(), "20");
    let state = d.tmp.path().join("state.json");
    let mut run = Spawned::start(&args, None);
    // One chunk acknowledged and 2 more bulks answered: the next chunk is
    // half sent.
    let mut acked_at = None;
    run.wait_until("a chunk and 2 more bulks", Duration::from_secs(60), || {
        let bulks = proxy.requests_matching(&Route::bulk());
        if acked_at.is_none() && acked_chunks(Some(state.clone())) >= 1 {
            acked_at = Some(bulks);
        }
        acked_at.is_some_and(|at| bulks >= at + 3)
    });
    run.kill9();
    assert_eq!(run.wait(Duration::from_secs(120)).code, None);
    d.target.refresh(STREAM);
    settle();
    let count = d.target.count(STREAM);
    assert!(count < DOCS as u64, "the kill came too late: {count}");
    let sent = d.target_streams.data_streams().creates();

    proxy.set_rules(vec![]);
    let resumed = Esark::new().args(&args).args(["--resume", "--json"]).run();
    assert_eq!(resumed.code, Some(0), "{resumed}");
    let entry = report_index(&json_report(&resumed), STREAM).clone();
    assert_eq!(entry["written"], DOCS as u64, "{entry}");
    assert_eq!(entry["rejected"], 0, "{entry}");
    assert!(!d.rejects().exists(), "a rejects file was written");
    assert!(
        sent + (DOCS - count as usize) < d.target_streams.data_streams().creates(),
        "the resumed run sent no document twice: the test proved nothing"
    );
    d.assert_complete("resumed data stream");
}

// ---- rejects --------------------------------------------------------------------

/// `<p>-rej` on the source (n a keyword: 1200 documents, every 10th with
/// `n` = "bad-<i>"), dumped in 16 KiB chunks; the target has `<p>-rej` with
/// `n` a long, so the 120 bad ones are rejected.
fn rejects_setup(test: &str) -> Option<(Setup, Vec<String>)> {
    let target = target_cluster(test)?;
    let source = TestCluster::start(test);
    let index = source.name("rej");
    let mut bad = Vec::new();
    let docs: Vec<(String, String)> = (0..1200)
        .map(|i| {
            let id = format!("r{i:05}");
            let n = if i % 10 == 7 {
                bad.push(id.clone());
                format!("\"bad-{i}\"")
            } else {
                format!("\"{i}\"")
            };
            (
                id,
                format!(r#"{{"n":{n},"msg":"some padding text for the document number {i}"}}"#),
            )
        })
        .collect();
    seed_index(
        &source,
        &index,
        &json!({"mappings": {"properties": {"n": {"type": "keyword"}}}}),
        &docs,
    );
    target.create_index(
        &index,
        &json!({"mappings": {"properties": {"n": {"type": "long"}}}}),
    );
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_small_chunks(&source, &archive, &format!("^{index}$"), "16KiB");
    let state_dir = tmp.path().join("state");
    Some((
        Setup {
            source,
            target,
            index,
            archive,
            state_dir,
            tmp,
        },
        bad,
    ))
}

/// The ids in a rejects file, in order (repeats kept).
fn rejected_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Regression: rejects were buffered and flushed at the end while chunk
/// acknowledgements were fsynced at once, so a kill -9 lost the rejects of
/// acknowledged chunks for good (a resumed run does not send them again).
/// Now they are on disk before the acknowledgement, and the resumed run
/// appends to the same file without listing a document twice: across both
/// runs, every rejected document is listed exactly once.
#[test]
fn rejects_survive_a_kill_and_are_listed_once_across_resume() {
    let Some((s, bad)) = rejects_setup("resume-rejects-kill") else {
        return;
    };
    let proxy = slow_bulks(s.target.base_url(), 100);
    let args = s.args(&proxy.url());
    let mut run = s.spawn(&[&args[..], &["--mode".into(), "merge".into()]].concat());
    run.wait_until("2 chunks acknowledged", Duration::from_secs(60), || {
        acked_chunks(s.state_file()) >= 2
    });
    run.kill9();
    assert_eq!(run.wait(Duration::from_secs(120)).code, None);
    let rejects = s.tmp.path().join("rejects.jsonl");
    let before_resume = rejected_ids(&rejects);
    assert!(
        before_resume.len() < bad.len(),
        "the kill came too late: {} rejects",
        before_resume.len()
    );

    let resumed = s.run(&args, &["--mode", "merge", "--resume", "--json"]);
    assert_eq!(resumed.code, Some(3), "{resumed}");
    let entry = report_index(&json_report(&resumed), &s.index).clone();
    assert_eq!(entry["rejected"], bad.len() as u64, "{entry}");
    assert_eq!(entry["written"], (1200 - bad.len()) as u64, "{entry}");
    let mut listed = rejected_ids(&rejects);
    let lines = listed.len();
    listed.sort();
    listed.dedup();
    assert_eq!(lines, listed.len(), "a document is listed twice");
    assert_eq!(listed, bad, "the rejects across both runs");
    assert_eq!(s.target.count(&s.index), (1200 - bad.len()) as u64);
}

/// Regression: a rejects file that could not be written was only logged;
/// the run exited 3 pointing to a file that did not exist. It now fails
/// the run with one line.
#[test]
fn a_rejects_file_that_cannot_be_written_fails_the_run() {
    let Some((s, _bad)) = rejects_setup("resume-rejects-unwritable") else {
        return;
    };
    let nowhere = s.tmp.path().join("no-such-folder").join("rejects.jsonl");
    let mut args = s.args(s.target.url());
    let at = args.iter().position(|a| a == "--rejects").unwrap();
    args[at + 1] = nowhere.to_string_lossy().into_owned();
    let run = s.run(&args, &["--mode", "merge", "--quiet"]);
    assert_eq!(run.code, Some(1), "{run}");
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "{run}");
    assert!(
        lines[0].starts_with("error:") && lines[0].contains("no-such-folder/rejects.jsonl"),
        "{run}"
    );

    // A directory where the file should be.
    let dir = s.tmp.path().join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    args[at + 1] = dir.to_string_lossy().into_owned();
    let run = s.run(&args, &["--mode", "merge", "--quiet", "--discard-state"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.stderr_lines().len(), 1, "{run}");
}

/// Regression: a state file that could not be rewritten after a chunk was
/// only logged ("cannot record restore progress"); the run went on and
/// exited 0 with a state that a later `--resume` would trust. It now fails
/// the run with one line.
#[test]
fn a_state_file_that_cannot_be_written_fails_the_run() {
    let Some(s) = setup("resume-state-unwritable") else {
        return;
    };
    let proxy = slow_bulks(s.target.base_url(), 150);
    let state = s.tmp.path().join("state.json");
    let mut args = s.args(&proxy.url());
    args.extend([
        "--state".into(),
        state.to_string_lossy().into_owned(),
        "--quiet".into(),
    ]);
    let mut run = Spawned::start(&args, None);
    run.wait_until("a chunk acknowledged", Duration::from_secs(60), || {
        acked_chunks(Some(state.clone())) >= 1
    });
    // Each change is appended to the file, opened anew: a folder in its
    // place makes every later write fail.
    run.wait_until("the folder in place", Duration::from_secs(10), || {
        std::fs::remove_file(&state).is_ok() && std::fs::create_dir(&state).is_ok()
    });
    let failed = run.wait(Duration::from_secs(120));
    assert_eq!(failed.code, Some(1), "{failed}");
    let lines = failed.stderr_lines();
    assert_eq!(lines.len(), 1, "{failed}");
    assert!(
        lines[0].starts_with("error:") && lines[0].contains("cannot record restore progress"),
        "{failed}"
    );
}
