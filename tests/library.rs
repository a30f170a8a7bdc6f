//! The engine as a library: dump, restore and verify driven by their job calls
//! alone (no esark process), with the events they emit and a
//! cancellation token. The counts the events carry add up to the
//! manifest's, and a cancelled job leaves a state that a resumed call
//! completes, every document exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use esark::cluster::ClusterConfig;
use esark::dump::{DumpConfig, DumpError};
use esark::job::{CancellationToken, Event, Events, IndexOutcome, JobKind, JobOutcome};
use esark::restore::job::{restore, RestoreJob};
use esark::restore::RestoreConfig;
use esark::verify::job::{verify, VerifyJob};

use crate::util::archive::Archive;
use crate::util::restore_support::{docs_of, target_cluster};
use crate::util::server::{BulkBody, TestCluster};

/// What esark gets to reach `cluster`, as its TLS flags would say.
fn config_of(cluster: &TestCluster) -> ClusterConfig {
    let mut config = ClusterConfig::new(cluster.url()).expect("a test cluster URL parses");
    let tls = cluster.tls_args();
    if tls.first().map(String::as_str) == Some("--insecure") {
        config.insecure = true;
    } else if let [flag, path] = tls.as_slice() {
        assert_eq!(flag, "--ca-cert");
        config.ca_cert = Some((path.clone(), std::fs::read(path).expect("the CA file")));
    }
    config
}

/// `n` documents into `index`, ids `0..n`.
fn seed(cluster: &TestCluster, index: &str, n: usize) {
    cluster.create_index(
        index,
        &serde_json::json!({"settings": {"number_of_shards": 2}}),
    );
    let mut body = BulkBody::new();
    for i in 0..n {
        body.index(
            index,
            &i.to_string(),
            None,
            // Above 2^53: kept exactly.
            &format!(
                r#"{{"n":{i},"big":{},"text":"document {i}"}}"#,
                9_007_199_254_740_993u64 + i as u64
            ),
        );
    }
    cluster.bulk(body.as_str());
    cluster.refresh(index);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Ok(event) = rx.try_recv() {
        seen.push(event);
    }
    seen
}

/// Per index: the last progress count and the finished count.
fn counts(events: &[Event]) -> BTreeMap<String, (Option<u64>, Option<u64>)> {
    let mut out: BTreeMap<String, (Option<u64>, Option<u64>)> = BTreeMap::new();
    for e in events {
        match e {
            Event::IndexProgress { index, docs, .. } => {
                out.entry(index.clone()).or_default().0 = Some(*docs)
            }
            Event::IndexFinished { index, docs, .. } => {
                out.entry(index.clone()).or_default().1 = Some(*docs)
            }
            _ => {}
        }
    }
    out
}

/// Events into a channel, and a token they cancel on the first progress
/// of any index (as a service's cancel request arriving mid-run would).
fn cancelled_by_first_progress() -> (
    Events,
    tokio::sync::mpsc::UnboundedReceiver<Event>,
    CancellationToken,
) {
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let trigger = cancel.clone();
    let events = Events::new(move |event| {
        if matches!(event, Event::IndexProgress { .. }) {
            trigger.cancel();
        }
        let _ = tx.send(event);
    });
    (events, rx, cancel)
}

fn ids_in_archive(dir: &Path, index: &str) -> Vec<String> {
    Archive::open(dir)
        .docs(index)
        .into_iter()
        .map(|d| d.id)
        .collect()
}

#[test]
fn dump_and_restore_through_the_library_report_counts_that_add_up_to_the_manifest() {
    let test = "library_events";
    let source = TestCluster::start(test);
    let Some(target) = target_cluster(test) else {
        return;
    };
    let (a, b) = (source.name("events-a"), source.name("events-b"));
    seed(&source, &a, 1_200);
    seed(&source, &b, 300);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("archive");
    let rt = runtime();

    let mut config = DumpConfig::new(config_of(&source), out.clone());
    config.selector.include = Some(regex::Regex::new(&format!("^({a}|{b})$")).unwrap());
    config.page_size = 100;
    let (events, mut rx) = Events::channel();
    let report = rt
        .block_on(esark::dump::run(&config, &events, CancellationToken::new()))
        .expect("the dump succeeds");
    let seen = drain(&mut rx);
    assert_eq!(
        seen.first(),
        Some(&Event::JobStarted {
            kind: JobKind::Dump
        })
    );
    assert_eq!(
        seen.last(),
        Some(&Event::JobFinished {
            outcome: JobOutcome::Succeeded
        })
    );
    assert_eq!(report.manifest.total_docs(), 1_500);
    let counted = counts(&seen);
    for entry in &report.manifest.indices {
        assert_eq!(
            counted.get(&entry.name),
            Some(&(Some(entry.docs), Some(entry.docs))),
            "{}: the last progress and the finished count are the manifest's",
            entry.name
        );
        assert!(seen.contains(&Event::IndexPlanned {
            index: entry.name.clone(),
            target: None,
            docs: entry.expected_docs,
        }));
    }
    let finished: u64 = counted.values().filter_map(|c| c.1).sum();
    assert_eq!(finished, report.manifest.total_docs());
    // Progress bytes are what was read: every page counted once.
    let bytes: u64 = seen
        .iter()
        .filter_map(|e| match e {
            Event::IndexProgress { index, bytes, .. } if *index == a => Some(*bytes),
            _ => None,
        })
        .max()
        .unwrap();
    assert!(bytes > 1_200 * 40, "{bytes} bytes for 1,200 documents");

    // The restore, renamed, through its job call.
    let mut restore_config = RestoreConfig::new(config_of(&target));
    restore_config.state = Some(dir.path().join("restore.state"));
    restore_config.rejects = dir.path().join("rejects.jsonl");
    let job = RestoreJob {
        config: restore_config,
        input: out.clone().into(),
        index: None,
        selector: Default::default(),
        renamer: esark::plan::Renamer {
            rename: None,
            prefix: "copy-".into(),
            suffix: String::new(),
        },
        force: false,
        validate: true,
        max_line: esark::source::archive::DEFAULT_MAX_LINE,
        identity: None,
        spool: Default::default(),
    };
    let (events, mut rx) = Events::channel();
    let report = rt
        .block_on(restore(job, &events, CancellationToken::new()))
        .expect("the restore runs");
    assert_eq!(report.exit_code(), 0, "{report:?}");
    let seen = drain(&mut rx);
    assert_eq!(
        seen.first(),
        Some(&Event::JobStarted {
            kind: JobKind::Restore
        })
    );
    assert_eq!(
        seen.last(),
        Some(&Event::JobFinished {
            outcome: JobOutcome::Succeeded
        })
    );
    for (name, docs) in [(&a, 1_200), (&b, 300)] {
        assert!(seen.contains(&Event::IndexPlanned {
            index: name.clone(),
            target: Some(format!("copy-{name}")),
            docs,
        }));
        assert!(seen.contains(&Event::IndexFinished {
            index: name.clone(),
            docs,
            outcome: IndexOutcome::Done,
        }));
        assert_eq!(counts(&seen)[name.as_str()].0, Some(docs));
        assert_eq!(target.count(&format!("copy-{name}")), docs);
    }

    // And verified through its job call: each index read whole.
    let job = VerifyJob {
        target: config_of(&target),
        input: out.clone().into(),
        index: None,
        selector: Default::default(),
        renamer: esark::plan::Renamer {
            rename: None,
            prefix: "copy-".into(),
            suffix: String::new(),
        },
        templates: false,
        page_size: 100,
        max_line: esark::source::archive::DEFAULT_MAX_LINE,
        identity: None,
    };
    let (events, mut rx) = Events::channel();
    let report = rt
        .block_on(verify(job, &events, CancellationToken::new()))
        .expect("the verification runs");
    assert!(report.matches(), "{report:?}");
    let seen = drain(&mut rx);
    assert_eq!(
        seen.last(),
        Some(&Event::JobFinished {
            outcome: JobOutcome::Succeeded
        })
    );
    let counted = counts(&seen);
    assert_eq!(counted[a.as_str()], (Some(1_200), Some(1_200)));
    assert_eq!(counted[b.as_str()], (Some(300), Some(300)));
}

#[test]
fn a_cancelled_dump_and_a_cancelled_restore_resume_through_the_library_exactly_once() {
    let test = "library_cancel";
    let source = TestCluster::start(test);
    let Some(target) = target_cluster(test) else {
        return;
    };
    let index = source.name("cancel");
    seed(&source, &index, 2_000);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("archive");
    let rt = runtime();

    let mut config = DumpConfig::new(config_of(&source), out.clone());
    config.selector.include = Some(regex::Regex::new(&format!("^{index}$")).unwrap());
    config.page_size = 50;
    config.file_size = 4 << 10;
    // Cancelled by its own first page, as a service's cancel request would.
    let (events, mut rx, cancel) = cancelled_by_first_progress();
    let stopped = rt.block_on(esark::dump::run(&config, &events, cancel));
    assert!(
        matches!(stopped, Err(DumpError::Interrupted(_))),
        "{stopped:?}"
    );
    assert_eq!(
        drain(&mut rx).last(),
        Some(&Event::JobFinished {
            outcome: JobOutcome::Cancelled
        })
    );
    assert!(!out.join("manifest.json").exists(), "no manifest yet");
    assert!(out.join("checkpoint.json").exists(), "a resumable state");

    config.resume = true;
    let (events, mut rx) = Events::channel();
    let report = rt
        .block_on(esark::dump::run(&config, &events, CancellationToken::new()))
        .expect("the resumed dump completes");
    assert_eq!(report.manifest.total_docs(), 2_000);
    let counted = counts(&drain(&mut rx));
    assert_eq!(counted[index.as_str()], (Some(2_000), Some(2_000)));
    let ids = ids_in_archive(&out, &index);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        (ids.len(), unique.len()),
        (2_000, 2_000),
        "each document once"
    );

    // A restore cancelled after its first bulk request, then resumed.
    let mut restore_config = RestoreConfig::new(config_of(&target));
    restore_config.state = Some(dir.path().join("restore.state"));
    restore_config.rejects = dir.path().join("rejects.jsonl");
    restore_config.concurrency = 1;
    restore_config.bulk.docs = 100;
    restore_config.rate_docs = Some(1_000);
    let job = RestoreJob {
        config: restore_config,
        input: out.clone().into(),
        index: None,
        selector: Default::default(),
        renamer: Default::default(),
        force: false,
        validate: true,
        max_line: esark::source::archive::DEFAULT_MAX_LINE,
        identity: None,
        spool: Default::default(),
    };
    let (events, mut rx, cancel) = cancelled_by_first_progress();
    let report = rt
        .block_on(restore(job.clone(), &events, cancel))
        .expect("an interrupted restore still reports");
    assert!(report.interrupted, "{report:?}");
    assert_eq!(
        drain(&mut rx).last(),
        Some(&Event::JobFinished {
            outcome: JobOutcome::Cancelled
        })
    );
    let partial = target.count(&index);
    assert!(partial < 2_000, "cancelled before the end: {partial}");
    assert!(dir.path().join("restore.state").exists());

    let mut resumed = job;
    resumed.config.resume = true;
    let (events, mut rx) = Events::channel();
    let report = rt
        .block_on(restore(resumed, &events, CancellationToken::new()))
        .expect("the resumed restore runs");
    assert_eq!(report.exit_code(), 0, "{report:?}");
    assert_eq!(
        drain(&mut rx).last(),
        Some(&Event::JobFinished {
            outcome: JobOutcome::Succeeded
        })
    );
    target.refresh(&index);
    let docs = docs_of(&target, &index);
    assert_eq!(docs.len(), 2_000, "every document, once");
    assert_eq!(target.count(&index), 2_000);
}
