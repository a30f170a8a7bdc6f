//! Servers the comparison starts (osmem-server, the null bulk sink; moto
//! in [`crate::moto`]) and the few HTTP calls it makes itself (listing
//! indices, counting documents).
//!
//! A [`Server`] kills its process when dropped, so every server is gone at
//! the end of a run, on an error too; osmem is also told our pid
//! (`-parent-pid`) and the null sink watches its parent, so neither
//! outlives a killed harness.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A server process that announced its URL on the first line of stdout.
pub struct Server {
    child: Child,
    pub url: String,
    /// Just before the process was spawned: the origin of the times a Go
    /// runtime's `gctrace` gives (seconds since the program started).
    spawned: Instant,
    /// Where its `GODEBUG=gctrace=1` lines go, and the log's length before
    /// it started (the log is appended to): see [`Server::osmem_traced`].
    gc_log: Option<(PathBuf, u64)>,
}

/// The window [`Server::wait_quiet`] samples the server's CPU time over.
const QUIET_WINDOW: Duration = Duration::from_millis(100);

/// CPU seconds in a [`QUIET_WINDOW`] below which the server counts as idle
/// (one clock tick is 0.01 s: no tick at all).
const QUIET_CPU: f64 = 0.005;

/// One garbage collection of a Go server, as `gctrace` reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GcCycle {
    pub start: Instant,
    pub end: Instant,
}

/// How many of `cycles` overlapped the run from `start` to `end`.
pub fn collections_during(cycles: &[GcCycle], (start, end): (Instant, Instant)) -> usize {
    cycles
        .iter()
        .filter(|c| c.start < end && c.end > start)
        .count()
}

impl Server {
    /// Starts `cmd`, waits (at most 60 s) for a JSON line with `"url"`.
    pub fn start(name: &str, mut cmd: Command, log: &Path) -> Result<Server, String> {
        let err = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = Server {
            child,
            url: String::new(),
            spawned,
            gc_log: None,
        };
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => {
                return Err(format!(
                    "{name} exited before announcing its URL (see {})",
                    log.display()
                ))
            }
            Err(_) => return Err(format!("{name} did not announce its URL within 60 s")),
        };
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| format!("{name}: unreadable first line {line:?}: {e}"))?;
        server.url = v["url"]
            .as_str()
            .ok_or_else(|| format!("{name}: no \"url\" in {line:?}"))?
            .trim_end_matches('/')
            .to_string();
        Ok(server)
    }

    /// CPU seconds (user + system) the server has used so far, from
    /// `/proc/<pid>/stat`; `None` where that cannot be read.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name (which may hold spaces) in ")".
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (hz > 0.0).then(|| ticks / hz)
    }

    /// Waits until the server is idle: less than [`QUIET_CPU`] of CPU time
    /// in each of two windows of [`QUIET_WINDOW`] in a row, at most `max`.
    /// Returns how long it waited, and whether the server went quiet.
    ///
    /// A Go server's work for a request does not always end with its
    /// answer: a garbage collection under way (0.6-1.5 s of wall time at
    /// 100,000 documents) goes on into whatever runs next when runs follow
    /// each other at once. Waiting for an idle server makes a run meet only
    /// the collections that its own allocations, and those of the runs
    /// before it, start while it runs.
    pub fn wait_quiet(&self, max: Duration) -> (Duration, bool) {
        let start = Instant::now();
        let mut quiet_windows = 0;
        let Some(mut last) = self.cpu_seconds() else {
            return (Duration::ZERO, false);
        };
        while start.elapsed() < max {
            std::thread::sleep(QUIET_WINDOW);
            let Some(now) = self.cpu_seconds() else {
                return (start.elapsed(), false);
            };
            if now - last < QUIET_CPU {
                quiet_windows += 1;
                if quiet_windows == 2 {
                    return (start.elapsed(), true);
                }
            } else {
                quiet_windows = 0;
            }
            last = now;
        }
        (start.elapsed(), false)
    }

    /// A fresh, empty osmem-server on 127.0.0.1.
    pub fn osmem(bin: &Path, name: &str, log: &Path) -> Result<Server, String> {
        let mut cmd = Command::new(bin);
        cmd.args(["-addr", "127.0.0.1:0", "-no-stdin-watch", "-parent-pid"])
            .arg(std::process::id().to_string());
        Server::start(name, cmd, log)
    }

    /// A fresh osmem-server that reports each of its garbage collections
    /// (`GODEBUG=gctrace=1`, a line per cycle on stderr, into `log`): the
    /// dump rows' source. Holding 2-3 GB for 100,000 documents, it collects
    /// about once every 3-4 dumps, whichever tool dumps, and a collection
    /// takes 0.6-1.5 s of wall time and a second or more of its CPU
    /// (measured: 3 collections in 9 raw scrolls and 3 in 9 esark dumps, in
    /// a row each); a run it meets is slower by 0.1-0.5 s, the more so the
    /// more CPU the client itself needs on a 2-core machine.
    /// [`Server::gc_cycles`] tells which runs met one.
    pub fn osmem_traced(bin: &Path, name: &str, log: &Path) -> Result<Server, String> {
        let offset = std::fs::metadata(log).map_or(0, |m| m.len());
        let mut cmd = Command::new(bin);
        cmd.args(["-addr", "127.0.0.1:0", "-no-stdin-watch", "-parent-pid"])
            .arg(std::process::id().to_string())
            .env("GODEBUG", "gctrace=1");
        let mut server = Server::start(name, cmd, log)?;
        server.gc_log = Some((log.to_path_buf(), offset));
        Ok(server)
    }

    /// The garbage collections the server has finished so far (a cycle is
    /// reported when it ends), or `None` for a server not started by
    /// [`Server::osmem_traced`] or a log that cannot be read.
    pub fn gc_cycles(&self) -> Option<Vec<GcCycle>> {
        let (log, offset) = self.gc_log.as_ref()?;
        let bytes = std::fs::read(log).ok()?;
        let text = String::from_utf8_lossy(bytes.get(*offset as usize..)?);
        Some(
            text.lines()
                .filter_map(parse_gctrace)
                .map(|(start, clock)| GcCycle {
                    start: self.spawned + Duration::from_secs_f64(start),
                    end: self.spawned + Duration::from_secs_f64(start + clock),
                })
                .collect(),
        )
    }

    /// A server started elsewhere that does not announce its URL (moto):
    /// killed and reaped on drop like the others.
    pub fn adopt(child: Child, url: String) -> Server {
        Server {
            child,
            url,
            spawned: Instant::now(),
            gc_log: None,
        }
    }

    /// A fresh null bulk sink (this very binary, `null-sink`).
    pub fn null_sink(log: &Path) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg("null-sink");
        Server::start("null sink", cmd, log)
    }
}

/// A `gctrace` line, `gc 12 @73.422s 5%: 0.11+846+0.096 ms clock, ...`:
/// when the cycle began (seconds since the program started) and how long
/// it took (its three wall-clock phases: stop-the-world sweep termination,
/// concurrent mark and scan, stop-the-world mark termination), in seconds.
fn parse_gctrace(line: &str) -> Option<(f64, f64)> {
    let mut words = line.split_whitespace();
    (words.next()? == "gc").then_some(())?;
    words.next()?.parse::<u64>().ok()?;
    let start: f64 = words
        .next()?
        .strip_prefix('@')?
        .strip_suffix('s')?
        .parse()
        .ok()?;
    words.next()?; // "5%:"
    let phases = words.next()?;
    (words.next()? == "ms" && words.next()? == "clock,").then_some(())?;
    let mut ms = 0.0;
    for phase in phases.split('+') {
        ms += phase.parse::<f64>().ok()?;
    }
    Some((start, ms / 1000.0))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The harness's own HTTP calls, with keep-alive and a generous timeout.
pub struct Http {
    client: reqwest::blocking::Client,
}

/// One index of a cluster.
#[derive(Debug, Clone)]
pub struct IndexInfo {
    pub name: String,
    pub primaries: u32,
}

impl Http {
    pub fn new() -> Http {
        Http {
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()
                .expect("an HTTP client"),
        }
    }

    pub fn get_json(&self, url: &str) -> Result<Value, String> {
        let r = self
            .client
            .get(url)
            .send()
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = r.status();
        let body = r.text().map_err(|e| format!("GET {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}: {}", short(&body)));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {url}: {e}"))
    }

    pub fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<String>,
    ) -> Result<Value, String> {
        let mut req = self
            .client
            .request(method.clone(), url)
            .header("content-type", "application/json");
        if let Some(b) = body {
            req = req.body(b);
        }
        let r = req.send().map_err(|e| format!("{method} {url}: {e}"))?;
        let status = r.status();
        let text = r.text().map_err(|e| format!("{method} {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{method} {url}: HTTP {status}: {}", short(&text)));
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {url}: {e}"))
    }

    /// Every index, hidden ones included, sorted by name.
    pub fn indices(&self, base: &str) -> Result<Vec<IndexInfo>, String> {
        let v = self.get_json(&format!(
            "{base}/_cat/indices?format=json&expand_wildcards=all&h=index,pri"
        ))?;
        let mut out: Vec<IndexInfo> = v
            .as_array()
            .ok_or("_cat/indices did not answer a list")?
            .iter()
            .filter_map(|i| {
                Some(IndexInfo {
                    name: i["index"].as_str()?.to_string(),
                    primaries: i["pri"].as_str().and_then(|p| p.parse().ok()).unwrap_or(1),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Top-level documents of `indices` (refreshed first), by `_count`,
    /// which unlike `_cat/indices` does not count nested documents.
    pub fn count_docs(&self, base: &str, indices: &[String]) -> Result<u64, String> {
        self.send(
            reqwest::Method::POST,
            &format!("{base}/_refresh?expand_wildcards=all"),
            None,
        )?;
        let mut total = 0;
        for index in indices {
            let url = format!("{base}/{}/_count", encode(index));
            let v = self.get_json(&url)?;
            total += v["count"]
                .as_u64()
                .ok_or_else(|| format!("GET {url}: no count"))?;
        }
        Ok(total)
    }
}

/// Everything but unreserved characters is escaped in a path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes an index name for a URL path segment.
pub fn encode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}

fn short(s: &str) -> &str {
    let end = s.char_indices().nth(300).map_or(s.len(), |(i, _)| i);
    &s[..end]
}
