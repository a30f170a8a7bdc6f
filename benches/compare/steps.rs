//! The orchestrator: seeds one source, measures every dump row against it,
//! then the memory flatness runs ([`flatness`]), then every restore row
//! into a fresh target each time, then the restore of a generated archive
//! of 1,000,000 documents and the many-small-indices rows ([`indices`]),
//! and writes the report. With `--rows storage`, only the storage rows
//! ([`storage`]) and the folder rows they are compared with run; with
//! `--rows indices` or `--rows flatness`, only those rows. The
//! multielasticdump rows are in [`elasticdump`].
//!
//! A row that fails shows as FAILED with its reason; only a source that
//! cannot be started or seeded stops the run. Every server is a
//! [`Server`], killed when it goes out of scope; every child has a
//! deadline scaled to the number of documents.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::measure::{self, Outcome};
use crate::raw;
use crate::report::{Row, Run, RunStatus};
use crate::servers::{collections_during, encode, Http, Server};
use crate::{Config, Rows};

mod elasticdump;
mod flatness;
mod indices;
mod storage;

pub use indices::{Kinds, ManyIndices};
use storage::{Archive, Storage};

/// esark restore's defaults, used for the raw bulk bodies too.
const BULK_BYTES: usize = 10 << 20;
const BULK_DOCS: usize = 5000;

pub struct Bench {
    pub cfg: Config,
    http: Http,
    /// Scratch for this run (wiped at start).
    dir: PathBuf,
    logs: PathBuf,
    /// Every index of the source, hidden ones included.
    pub indices: Vec<String>,
    /// Top-level documents in the source (`_count`).
    pub expected: u64,
    pub rows: Vec<Row>,
    /// The memory-flatness rows at a tenth of the documents.
    pub small_rows: Vec<Row>,
    pub small_docs: u64,
    /// The storage rows (S3, encryption), compared with `dump.esark` and
    /// `restore.null` of `rows`.
    pub storage_rows: Vec<Row>,
    /// esark restore → null sink from generated archives (the big size;
    /// with `--rows flatness`, three sizes).
    pub flat_rows: Vec<Row>,
    /// The many-small-indices rows, when they ran.
    pub many: Option<ManyIndices>,
    pub notes: Vec<String>,
    pub seed_secs: f64,
    pub started: Instant,
}

pub fn run(cfg: Config) -> Result<(), String> {
    let dir = cfg.work.join("run");
    let _ = std::fs::remove_dir_all(&dir);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let mut b = Bench {
        cfg,
        http: Http::new(),
        dir,
        logs,
        indices: Vec::new(),
        expected: 0,
        rows: Vec::new(),
        small_rows: Vec::new(),
        small_docs: 0,
        storage_rows: Vec::new(),
        flat_rows: Vec::new(),
        many: None,
        notes: Vec::new(),
        seed_secs: f64::NAN,
        started: Instant::now(),
    };
    let versions = crate::results::versions(&b.cfg);
    match b.cfg.rows {
        Rows::Indices => b.many_indices(),
        Rows::Flatness => b.big_flatness(),
        Rows::All | Rows::Storage => {
            b.main_rows()?;
            if b.cfg.rows == Rows::All {
                b.big_flatness();
                b.many_indices();
            }
        }
    }
    crate::results::write(&b, &versions)
}

impl Bench {
    /// The esark-seed source and every row measured against it: dump side,
    /// memory flatness at a tenth, restore side, storage rows.
    fn main_rows(&mut self) -> Result<(), String> {
        let source = Server::osmem_traced(
            &self.cfg.osmem,
            "source osmem",
            &self.logs.join("osmem-source.log"),
        )?;
        progress(&format!(
            "source osmem at {}; seeding {} documents",
            source.url, self.cfg.docs
        ));
        let t = Instant::now();
        self.seed(&source.url, self.cfg.docs, "seed")?;
        self.seed_secs = t.elapsed().as_secs_f64();
        self.indices = self
            .http
            .indices(&source.url)?
            .into_iter()
            .map(|i| i.name)
            .collect();
        self.expected = self.http.count_docs(&source.url, &self.indices)?;
        progress(&format!(
            "seeded in {:.1} s: {} documents in {:?}",
            self.seed_secs, self.expected, self.indices
        ));
        if self.expected != self.cfg.docs {
            self.notes.push(format!(
                "The source holds {} documents, not the {} asked for.",
                self.expected, self.cfg.docs
            ));
        }
        let mut storage = self.storage_setup();
        self.dump_side(&source, &mut storage);
        drop(source);
        if self.cfg.rows == Rows::All {
            self.flatness();
        }
        self.restore_side(&mut storage);
        self.storage_finish(storage);
        Ok(())
    }
}

fn progress(msg: &str) {
    eprintln!("[{}] {msg}", chrono::Local::now().format("%H:%M:%S"));
}

/// Recursive size of the files under `path`.
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn failed(why: String) -> Run {
    Run::without_numbers(RunStatus::Failed(why))
}

/// The waits for an idle source server before each dump run (see
/// [`Server::wait_quiet`]).
#[derive(Default)]
struct Quiet {
    runs: usize,
    waited: Duration,
    longest: Duration,
    never_quiet: usize,
}

/// The longest a dump run waits for the source server to go idle.
const QUIET_MAX: Duration = Duration::from_secs(10);

impl Quiet {
    fn wait(&mut self, server: &Server) {
        let (waited, quiet) = server.wait_quiet(QUIET_MAX);
        self.runs += 1;
        self.waited += waited;
        self.longest = self.longest.max(waited);
        if !quiet {
            self.never_quiet += 1;
        }
    }

    fn note(&self) -> String {
        let mut note = format!(
            "Each of the {} dump runs against the source osmem started once osmem had been idle \
             (under 5 ms of CPU time in each of two 100 ms windows): {:.1} s of waiting in all, \
             {:.2} s at most before one run",
            self.runs,
            self.waited.as_secs_f64(),
            self.longest.as_secs_f64()
        );
        if self.never_quiet > 0 {
            note.push_str(&format!(
                "; {} run(s) started after {} s without osmem going idle",
                self.never_quiet,
                QUIET_MAX.as_secs()
            ));
        }
        note.push('.');
        note
    }
}

/// How long the dump side waits after its last run before it reads the
/// source server's collections: a collection is reported when it ends, and
/// one of 100,000 documents' heap takes up to about a second.
const GC_SETTLE: Duration = Duration::from_secs(3);

impl Bench {
    /// A deadline of `base` seconds plus `per_doc_ms` per document.
    fn budget(&self, base: u64, per_doc_ms: f64) -> Duration {
        Duration::from_secs(base)
            + Duration::from_secs_f64(self.cfg.docs as f64 * per_doc_ms / 1000.0)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        // esark writes its rejects file to the working directory.
        cmd.current_dir(&self.dir);
        cmd
    }

    fn own(&self, role: &str) -> Command {
        let mut cmd = self.command(std::env::current_exe().expect("the current executable"));
        cmd.arg(role);
        cmd
    }

    /// Runs an unmeasured helper step; `Err` names its log.
    fn helper(&self, name: &str, cmd: Command, timeout: Duration) -> Result<String, String> {
        let log = self.logs.join(format!("{name}.log"));
        let outcome = measure::run(cmd, timeout, &log);
        keep_stdout(&log, &outcome);
        outcome
            .status
            .map(|()| outcome.stdout)
            .map_err(|e| format!("{name}: {e} (log: {})", log.display()))
    }

    fn seed(&self, url: &str, docs: u64, name: &str) -> Result<(), String> {
        let mut cmd = self.command(&self.cfg.esark_seed);
        cmd.args([
            "--target",
            url,
            "--docs",
            &docs.to_string(),
            "--seed",
            &self.cfg.seed.to_string(),
        ]);
        self.helper(name, cmd, self.budget(120, 6.0)).map(|_| ())
    }

    /// Runs one measured child and judges it: `check` returns the documents
    /// it can find where they should be.
    fn measured(
        &self,
        name: &str,
        cmd: Command,
        timeout: Duration,
        expected: u64,
        check: impl FnOnce(&Outcome) -> Result<u64, String>,
    ) -> Run {
        let log = self.logs.join(format!("{name}.log"));
        let start = Instant::now();
        let outcome = measure::run(cmd, timeout, &log);
        let span = Some((start, Instant::now()));
        keep_stdout(&log, &outcome);
        let (status, verified) = match &outcome.status {
            Err(e) => (
                RunStatus::Failed(format!("{e} (log: {})", log.display())),
                None,
            ),
            Ok(()) => match check(&outcome) {
                Err(e) => (RunStatus::Failed(format!("cannot verify: {e}")), None),
                Ok(v) if v == expected => (RunStatus::Ok, Some(v)),
                Ok(v) => (
                    RunStatus::Incomplete(format!("{v} of {expected} documents")),
                    Some(v),
                ),
            },
        };
        let m = &outcome.measurement;
        progress(&format!(
            "{name}: {:.2} s, CPU {:.2} s, RSS {:.0} MiB, {} -> {:?}",
            m.wall.as_secs_f64(),
            m.cpu,
            m.max_rss as f64 / 1048576.0,
            verified.map_or("-".into(), |v| format!(
                "{:.0} docs/s",
                v as f64 / m.wall.as_secs_f64()
            )),
            status
        ));
        Run {
            m: outcome.measurement,
            verified,
            status,
            span,
            server_gc: None,
        }
    }

    // ---- dump side ----------------------------------------------------

    fn dump_side(&mut self, server: &Server, storage: &mut Storage) {
        let all = self.cfg.rows == Rows::All;
        let source = server.url.as_str();
        let n = self.expected;
        let mut raw = Row::new(
            "dump.raw",
            "dump",
            "raw scroll (Rust, 2 workers, page 5000)",
            n,
        );
        let mut esark = Row::new("dump.esark", "dump", "esark dump (lz4, defaults)", n);
        let out = self.path("dump-esark");
        let folder = Archive::Folder(out.clone());
        // What the server spent during each run: some runs meet a burst of
        // over a second of server CPU (seen with either tool; the server
        // holds a few GB for 100,000 documents): its garbage collections,
        // which the notes and the rows mark (see `Server::osmem_traced`).
        let mut server_cpu: Vec<(String, Option<(Instant, Instant)>, f64, f64)> = Vec::new();
        let mut during = |label: String, run: &Run, before: Option<f64>| {
            if let (Some(b), Some(a)) = (before, server.cpu_seconds()) {
                server_cpu.push((label, run.span, run.m.wall.as_secs_f64(), a - b));
            }
        };
        let mut quiet = Quiet::default();
        for r in 1..=self.cfg.dump_repeat {
            // Odd rounds dump raw first, even rounds esark: the server
            // collects garbage after a set amount of allocation, and with
            // the same order in every round its collections kept landing
            // on the same row (every esark dump of one run).
            for esark_turn in [r % 2 == 0, r % 2 == 1] {
                if esark_turn {
                    quiet.wait(server);
                    let before = server.cpu_seconds();
                    let run = self.esark_dump(source, &folder, &format!("dump-esark-{r}"), n);
                    during(format!("esark {r}"), &run, before);
                    esark.runs.push(run);
                } else if all {
                    quiet.wait(server);
                    let before = server.cpu_seconds();
                    let run = self.raw_scroll(source, r);
                    during(format!("raw {r}"), &run, before);
                    raw.runs.push(run);
                }
            }
            self.storage_dump(storage, source, r, &mut || quiet.wait(server));
        }
        self.notes.push(quiet.note());
        // A collection is reported when it ends: let one under way finish.
        std::thread::sleep(GC_SETTLE);
        let cycles = server.gc_cycles();
        for row in [&mut raw, &mut esark] {
            row.note_gc(cycles.as_deref());
        }
        self.storage_note_gc(storage, cycles.as_deref());
        if !server_cpu.is_empty() {
            let met = |span: &Option<(Instant, Instant)>| match (span, &cycles) {
                (Some(span), Some(cycles)) if collections_during(cycles, *span) > 0 => {
                    " (met a server GC)"
                }
                _ => "",
            };
            let list: Vec<String> = server_cpu
                .iter()
                .map(|(label, span, wall, cpu)| {
                    format!("{label}: {wall:.2} s / {cpu:.2} s{}", met(span))
                })
                .collect();
            self.notes.push(format!(
                "Dump runs in the order they ran, wall time / CPU time osmem spent meanwhile: {}.",
                list.join("; ")
            ));
            if let Some(cycles) = &cycles {
                self.notes.push(format!(
                    "The source osmem collected garbage {} time(s) from its start to the end of the \
                     dump rows (seeding included; `GODEBUG=gctrace=1`). A dump run that overlapped a \
                     collection is marked above and left out of its row's medians when the row keeps \
                     at least {} runs without one.",
                    cycles.len(),
                    crate::report::MIN_CLEAN_RUNS
                ));
            }
        }
        esark.data_bytes = Some(dir_size(&out));
        if let Some(options) = std::fs::read(out.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|m| m["options"].clone())
        {
            self.notes.push(format!(
                "esark dump's options, as its manifest records them: `{options}`."
            ));
        }
        if !all {
            self.rows.push(esark);
            return;
        }
        let default = self.elasticdump_dump(source, false);
        let big_int = self.elasticdump_dump(source, true);
        self.rows.extend([raw, esark, default, big_int]);
        self.big_int_note();
    }

    fn raw_scroll(&self, source: &str, r: usize) -> Run {
        let mut cmd = self.own("raw-scroll");
        cmd.args(["--source", source, "--workers", "2", "--page-size", "5000"]);
        self.measured(
            &format!("dump-raw-{r}"),
            cmd,
            self.budget(60, 2.0),
            self.expected,
            |o| json_u64(&o.stdout, "docs"),
        )
    }

    fn esark_dump(&self, source: &str, out: &Archive, name: &str, expected: u64) -> Run {
        out.clear();
        let mut cmd = self.command(&self.cfg.esark);
        cmd.args(["dump", "--source", source, "--output"])
            .arg(out.location())
            .args(["--match", ".*", "--json", "-q"]);
        out.writing(&mut cmd);
        self.measured(name, cmd, self.budget(60, 2.0), expected, |_| {
            self.inspect(out, name)
        })
    }

    /// Documents of an esark archive per its manifest, after `esark inspect`
    /// checked every file's size and sha256 (and, encrypted, that the
    /// identity opens it).
    fn inspect(&self, archive: &Archive, name: &str) -> Result<u64, String> {
        let mut cmd = self.command(&self.cfg.esark);
        cmd.arg("inspect").arg(archive.location()).arg("--json");
        archive.reading(&mut cmd);
        let out = self.helper(&format!("{name}-inspect"), cmd, self.budget(60, 0.5))?;
        let v: Value =
            serde_json::from_str(&out).map_err(|e| format!("esark inspect --json: {e}"))?;
        if v["intact"] != Value::Bool(true) {
            return Err("esark inspect: the archive is not intact".into());
        }
        Ok(v["manifest"]["indices"]
            .as_array()
            .ok_or("esark inspect: no manifest.indices")?
            .iter()
            .map(|i| i["docs"].as_u64().unwrap_or(0))
            .sum())
    }

    // ---- restore side -------------------------------------------------

    fn restore_side(&mut self, storage: &mut Storage) {
        let all = self.cfg.rows == Rows::All;
        let n = self.expected;
        let archive = self.path("dump-esark");
        let folder = Archive::Folder(archive.clone());
        let archive_ok = self
            .rows
            .iter()
            .find(|r| r.key == "dump.esark")
            .and_then(|r| r.runs.last())
            .is_some_and(|r| matches!(r.status, RunStatus::Ok));
        let bulk_dir = self.path("bulk");
        let prepared = if !all {
            Err("not run (--rows storage)".into())
        } else if archive_ok {
            progress("building the raw _bulk bodies from the esark archive");
            raw::prepare_bulk_bodies(&archive, &bulk_dir, BULK_BYTES, BULK_DOCS)
        } else {
            Err("no complete esark dump".into())
        };
        if let Ok(p) = &prepared {
            self.notes.push(format!(
                "Raw bulk bodies: {} requests, {} documents, {:.1} MiB, built with esark's BulkBuilder (10 MiB / 5000 documents per request) from the last esark dump.",
                p.files, p.docs, p.bytes as f64 / 1048576.0
            ));
            if p.docs != n {
                self.notes.push(format!(
                    "The esark archive's data files hold {} lines, not {n}.",
                    p.docs
                ));
            }
        }
        let mut raw = Row::new(
            "restore.raw",
            "restore",
            "raw _bulk (Rust, 2 connections, ~10 MiB bodies) → osmem",
            n,
        );
        let mut esark = Row::new(
            "restore.esark",
            "restore",
            "esark restore (defaults) → osmem",
            n,
        );
        let mut null = Row::new("restore.null", "restore", "esark restore → null sink", n);
        let no_archive = || failed("no complete esark dump".into());
        for r in 1..=self.cfg.repeat {
            if all {
                raw.runs.push(match &prepared {
                    Ok(_) => self.raw_bulk(&archive, &bulk_dir, r),
                    Err(e) => failed(e.clone()),
                });
                esark.runs.push(if archive_ok {
                    self.esark_restore(&archive, r)
                } else {
                    no_archive()
                });
            }
            null.runs.push(if archive_ok {
                self.esark_restore_null(&folder, &format!("restore-null-{r}"), n)
            } else {
                no_archive()
            });
            self.storage_restore(storage, r);
        }
        raw.data_bytes = prepared.as_ref().ok().map(|p| p.bytes);
        esark.data_bytes = Some(dir_size(&archive));
        null.data_bytes = esark.data_bytes;
        if !all {
            self.rows.push(null);
            return;
        }
        let default = self.elasticdump_load(false);
        let big_int = self.elasticdump_load(true);
        self.rows.extend([raw, esark, null, default, big_int]);
    }

    fn target(&self, name: &str) -> Result<Server, String> {
        Server::osmem(
            &self.cfg.osmem,
            name,
            &self.logs.join(format!("osmem-{name}.log")),
        )
    }

    fn raw_bulk(&self, archive: &Path, bodies: &Path, r: usize) -> Run {
        let name = format!("restore-raw-{r}");
        let target = match self.target(&name) {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
        // Untimed: the same indices (settings, mappings, aliases) and
        // templates esark creates, with refresh off as esark does for a load.
        let mut prep = self.command(&self.cfg.esark);
        prep.args(["restore", "--input"]).arg(archive).args([
            "--target",
            &target.url,
            "--no-data",
            "-q",
        ]);
        if let Err(e) = self.helper(&format!("{name}-prepare"), prep, self.budget(60, 0.5)) {
            return failed(e);
        }
        for index in &self.indices {
            let url = format!("{}/{}/_settings", target.url, encode(index));
            let body = r#"{"index":{"refresh_interval":"-1"}}"#.to_string();
            if let Err(e) = self.http.send(reqwest::Method::PUT, &url, Some(body)) {
                return failed(e);
            }
        }
        let mut cmd = self.own("raw-bulk");
        cmd.args(["--target", &target.url, "--connections", "2", "--dir"])
            .arg(bodies);
        self.measured(&name, cmd, self.budget(120, 6.0), self.expected, |o| {
            let failed_items = json_u64(&o.stdout, "failed_items")?;
            if failed_items > 0 {
                progress(&format!("{name}: {failed_items} items failed"));
            }
            self.http.count_docs(&target.url, &self.indices)
        })
    }

    fn esark_restore(&self, archive: &Path, r: usize) -> Run {
        let name = format!("restore-esark-{r}");
        let target = match self.target(&name) {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
        let mut cmd = self.command(&self.cfg.esark);
        cmd.args(["restore", "--input"]).arg(archive).args([
            "--target",
            &target.url,
            "--json",
            "-q",
        ]);
        self.measured(&name, cmd, self.budget(120, 6.0), self.expected, |_| {
            self.http.count_docs(&target.url, &self.indices)
        })
    }

    fn esark_restore_null(&self, archive: &Archive, name: &str, expected: u64) -> Run {
        let sink = match Server::null_sink(&self.logs.join(format!("{name}-sink.log"))) {
            Ok(s) => s,
            Err(e) => return failed(e),
        };
        let mut cmd = self.command(&self.cfg.esark);
        cmd.args(["restore", "--input"])
            .arg(archive.location())
            .args(["--target", &sink.url, "--json", "-q"]);
        archive.reading(&mut cmd);
        let timeout = Duration::from_secs(60) + Duration::from_secs_f64(expected as f64 * 0.002);
        self.measured(name, cmd, timeout, expected, |o| {
            let stats = self
                .http
                .get_json(&format!("{}/_null_sink/stats", sink.url))?;
            if stats["odd_bodies"].as_u64() != Some(0) {
                return Err(format!("malformed bulk bodies: {stats}"));
            }
            let written = json_u64(&o.stdout, "written")?;
            let received = stats["docs"].as_u64().unwrap_or(0);
            if written != received {
                return Err(format!(
                    "esark reports {written} written, the sink received {received}"
                ));
            }
            Ok(received)
        })
    }
}

/// Appends a child's stdout to its log (the first 64 KiB).
fn keep_stdout(log: &Path, outcome: &Outcome) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::File::options().append(true).create(true).open(log) {
        let end = outcome
            .stdout
            .char_indices()
            .nth(65536)
            .map_or(outcome.stdout.len(), |(i, _)| i);
        let _ = writeln!(f, "\n--- stdout ---\n{}", &outcome.stdout[..end]);
    }
}

/// A number field of the JSON object a child printed.
fn json_u64(stdout: &str, field: &str) -> Result<u64, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("no JSON on stdout")?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("stdout: {e}"))?;
    v[field]
        .as_u64()
        .ok_or_else(|| format!("no {field:?} in {line}"))
}
