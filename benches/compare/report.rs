//! Rows of results and the report: the table printed at the end and
//! written to `benches/RESULTS.md`, with the machine and tool versions.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::measure::{median, Measurement};
use crate::servers::{collections_during, GcCycle};

/// How one run of a row ended.
#[derive(Debug, Clone)]
pub enum RunStatus {
    Ok,
    /// It finished, but not every document arrived.
    Incomplete(String),
    Failed(String),
    /// It could not run (no moto for the S3 rows); the reason is reported.
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct Run {
    pub m: Measurement,
    /// Documents found where they should be (output files, target, sink).
    pub verified: Option<u64>,
    pub status: RunStatus,
    /// When the child was started and when it ended.
    pub span: Option<(Instant, Instant)>,
    /// How many of the source server's garbage collections overlapped the
    /// run (`None`: the server does not report them); see
    /// [`Row::note_gc`] and [`crate::servers::Server::osmem_traced`].
    pub server_gc: Option<usize>,
}

impl Run {
    /// A run that has no numbers (failed before it started, or skipped).
    pub fn without_numbers(status: RunStatus) -> Run {
        Run {
            m: Measurement::default(),
            verified: None,
            status,
            span: None,
            server_gc: None,
        }
    }

    fn met_gc(&self) -> bool {
        self.server_gc.is_some_and(|n| n > 0)
    }
}

/// One line of the table: one tool on one side, over its runs.
#[derive(Debug, Clone)]
pub struct Row {
    /// Stable name used to find the row for ratios.
    pub key: &'static str,
    pub side: &'static str,
    pub tool: String,
    pub expected: u64,
    pub runs: Vec<Run>,
    /// Dump: the output's size on disk. Restore: the input's.
    pub data_bytes: Option<u64>,
}

impl Row {
    pub fn new(
        key: &'static str,
        side: &'static str,
        tool: impl Into<String>,
        expected: u64,
    ) -> Row {
        Row {
            key,
            side,
            tool: tool.into(),
            expected,
            runs: Vec::new(),
            data_bytes: None,
        }
    }

    /// Runs that produced numbers (not failed or skipped).
    fn measured(&self) -> Vec<&Run> {
        self.runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Ok | RunStatus::Incomplete(_)))
            .collect()
    }

    /// The runs the medians are taken over: the measured runs that met no
    /// garbage collection of the source server, when there are at least
    /// [`MIN_CLEAN_RUNS`] of them; otherwise every measured run. (Which
    /// run a collection lands in depends on what every run before it
    /// allocated on the server, not on the tool that runs: see
    /// [`crate::servers::Server::osmem_traced`].)
    fn timed(&self) -> Vec<&Run> {
        let measured = self.measured();
        let clean: Vec<&Run> = measured.iter().copied().filter(|r| !r.met_gc()).collect();
        if clean.len() >= MIN_CLEAN_RUNS {
            clean
        } else {
            measured
        }
    }

    /// Sets [`Run::server_gc`] of every run with a span from the server's
    /// collections (`None`: it does not report them).
    pub fn note_gc(&mut self, cycles: Option<&[GcCycle]>) {
        let Some(cycles) = cycles else { return };
        for run in &mut self.runs {
            if let Some(span) = run.span {
                run.server_gc = Some(collections_during(cycles, span));
            }
        }
    }

    /// The runs column: how many runs, and how many of them met a
    /// collection of the server and were left out of the medians.
    fn runs_cell(&self) -> String {
        if self.status() == "SKIPPED" {
            return "0".into();
        }
        let measured = self.measured();
        let left_out = measured.len() - self.timed().len();
        let met = measured.iter().filter(|r| r.met_gc()).count();
        match (left_out, met) {
            (0, 0) => self.runs.len().to_string(),
            (0, met) => format!("{} ({met} met a server GC, kept)", self.runs.len()),
            (out, _) => format!("{} ({out} met a server GC)", self.runs.len()),
        }
    }

    pub fn status(&self) -> &'static str {
        if self
            .runs
            .iter()
            .any(|r| matches!(r.status, RunStatus::Skipped(_)))
        {
            "SKIPPED"
        } else if self
            .runs
            .iter()
            .any(|r| matches!(r.status, RunStatus::Failed(_)))
        {
            "FAILED"
        } else if self
            .runs
            .iter()
            .any(|r| matches!(r.status, RunStatus::Incomplete(_)))
        {
            "INCOMPLETE"
        } else {
            "ok"
        }
    }

    /// Reasons of failed and incomplete runs, deduplicated.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.runs {
            let p = match &r.status {
                RunStatus::Ok => continue,
                RunStatus::Incomplete(s) => format!("INCOMPLETE: {s}"),
                RunStatus::Failed(s) => format!("FAILED: {s}"),
                RunStatus::Skipped(s) => format!("SKIPPED: {s}"),
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    fn stat(&self, f: impl Fn(&Run) -> f64) -> f64 {
        median(self.timed().into_iter().map(f).collect())
    }

    pub fn wall(&self) -> f64 {
        self.stat(|r| r.m.wall.as_secs_f64())
    }

    /// Verified documents per second of median wall time.
    pub fn docs_per_s(&self) -> f64 {
        self.stat(|r| r.verified.unwrap_or(0) as f64) / self.wall()
    }

    pub fn cpu(&self) -> f64 {
        self.stat(|r| r.m.cpu)
    }

    pub fn max_rss(&self) -> f64 {
        self.stat(|r| r.m.max_rss as f64)
    }

    fn tree_rss(&self) -> f64 {
        self.stat(|r| r.m.tree_rss as f64)
    }

    fn wall_range(&self) -> String {
        let walls: Vec<f64> = self
            .measured()
            .iter()
            .map(|r| r.m.wall.as_secs_f64())
            .collect();
        if walls.len() < 2 {
            return "-".into();
        }
        let min = walls.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = walls.iter().cloned().fold(0.0, f64::max);
        format!("{}–{}", secs(min), secs(max))
    }

    fn verified(&self) -> String {
        let v: Vec<u64> = self.measured().iter().filter_map(|r| r.verified).collect();
        match (v.iter().min(), v.iter().max()) {
            (Some(a), Some(b)) if a == b => format!("{a}/{}", self.expected),
            (Some(a), Some(b)) => format!("{a}..{b}/{}", self.expected),
            _ => format!("-/{}", self.expected),
        }
    }
}

/// The fewest runs without a server garbage collection a row's medians are
/// taken over; with fewer, they are taken over all its runs.
pub const MIN_CLEAN_RUNS: usize = 2;

pub fn secs(s: f64) -> String {
    if !s.is_finite() {
        "-".into()
    } else if s < 10.0 {
        format!("{s:.2}")
    } else {
        format!("{s:.1}")
    }
}

pub fn mib(bytes: f64) -> String {
    if !bytes.is_finite() || bytes <= 0.0 {
        "-".into()
    } else {
        format!("{:.1}", bytes / (1024.0 * 1024.0))
    }
}

fn rate(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else {
        format!("{:.0}", x)
    }
}

/// The results table, in Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| side | tool | runs | wall s (median) | wall range | docs/s | client CPU s | peak RSS MiB | tree RSS MiB | data MiB | docs verified | status |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let measured = !r.measured().is_empty();
        let num = |x: String| if measured { x } else { "-".into() };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.side,
            r.tool,
            r.runs_cell(),
            num(secs(r.wall())),
            num(r.wall_range()),
            num(rate(r.docs_per_s())),
            num(secs(r.cpu())),
            num(mib(r.max_rss())),
            num(mib(r.tree_rss())),
            r.data_bytes.map_or("-".into(), |b| mib(b as f64)),
            r.verified(),
            r.status(),
        );
    }
    s
}

/// `a / b` as `x.xx×`, or `-`.
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 && a > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "-".into()
    }
}

/// The machine, as `nproc`, memory and CPU model.
pub fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, m)| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or("unknown".to_string(), |kb| {
            format!("{:.1} GiB", kb / 1024.0 / 1024.0)
        });
    vec![
        ("nproc".into(), output("nproc", &[])),
        ("memory".into(), mem),
        ("CPU".into(), model),
        ("kernel".into(), output("uname", &["-sr"])),
    ]
}

/// First line of a command's stdout, or `unknown (why)`.
pub fn output(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    match Command::new(program.as_ref()).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        Ok(o) => format!("unknown ({})", o.status),
        Err(e) => format!("unknown ({e})"),
    }
}

/// The version field of an npm package.json.
pub fn npm_version(package_json: &Path) -> String {
    std::fs::read(package_json)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}
