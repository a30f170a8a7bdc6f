//! The many-small-indices rows (`--rows indices`, and part of a full run):
//! a cluster of `ESARK_BENCH_INDICES` indices of `ESARK_BENCH_INDEX_DOCS`
//! documents each (1,000 × 100 by default: an index per tenant), seeded
//! here with `_bulk` requests of a few thousand documents (esark-seed makes
//! four indices), dumped and restored by esark and by multielasticdump.
//!
//! Each tool runs once timed, then once more through the counting proxy
//! ([`crate::count_proxy`], untimed, into a fresh osmem for the restores),
//! which gives the requests it sends per index by kind: where the cost of
//! an index goes (metadata, scroll setup, clear-scroll, bulk).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::storage::Archive;
use super::{dir_size, failed, progress, Bench};
use crate::report::{Row, Run, RunStatus};
use crate::servers::{encode, Server};

/// Documents per seeding `_bulk` request.
const SEED_BATCH: u64 = 3000;

/// multielasticdump's deadline per row, 20 min unless
/// `ESARK_BENCH_ELASTICDUMP_DEADLINE` (seconds) says otherwise: it is
/// reported as FAILED, "timed out", rather than waited for.
fn elasticdump_deadline() -> Duration {
    let secs = std::env::var("ESARK_BENCH_ELASTICDUMP_DEADLINE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20 * 60);
    Duration::from_secs(secs)
}

/// How many of the indices the multielasticdump rows take (the first
/// ones by name): 100 unless `ESARK_BENCH_ELASTICDUMP_INDICES` says
/// otherwise. It spends some 1.5 s per index (benches/RESULTS.md of
/// cb2dd33: 14.1 MiB of its 87 MiB dumped when its 240 s deadline ended
/// the run over 1,000), so all 1,000 would take some 25 min per run, and
/// each row runs twice (timed, then counted).
fn elasticdump_indices(all: u64) -> u64 {
    std::env::var("ESARK_BENCH_ELASTICDUMP_INDICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100u64)
        .clamp(1, all)
}

/// Why a row's counted run is not run: its timed run hit the deadline,
/// which the counted one would hit too.
fn timed_out(row: &Row) -> Option<String> {
    row.runs
        .last()
        .is_some_and(|r| matches!(&r.status, RunStatus::Failed(e) if e.starts_with("timed out")))
        .then(|| "not counted: its timed run did not finish".to_string())
}

/// Requests by kind (`METHOD /shape`) one tool sent, or why they are unknown.
pub type Kinds = Result<BTreeMap<String, u64>, String>;

/// What the many-indices rows found.
#[derive(Debug, Default)]
pub struct ManyIndices {
    /// Indices and documents per index asked for.
    pub indices: u64,
    pub per_index: u64,
    /// Indices of the multielasticdump rows ([`elasticdump_indices`]).
    pub elasticdump_indices: u64,
    /// Documents in the source by `_count`.
    pub expected: u64,
    pub seed_secs: f64,
    pub rows: Vec<Row>,
    /// Per row key, the requests of its counted run.
    pub kinds: Vec<(&'static str, Kinds)>,
}

impl Bench {
    fn tenant_names(&self) -> Vec<String> {
        (0..self.cfg.index_count)
            .map(|i| format!("tenant-{i:04}"))
            .collect()
    }

    /// A deadline of `base` seconds, plus 1 s per index and `per_doc_ms`
    /// per document.
    fn many_budget(&self, base: u64, per_doc_ms: f64) -> Duration {
        let docs = self.cfg.index_count * self.cfg.index_docs;
        Duration::from_secs(base + self.cfg.index_count)
            + Duration::from_secs_f64(docs as f64 * per_doc_ms / 1000.0)
    }

    pub(super) fn many_indices(&mut self) {
        let names = self.tenant_names();
        let mut many = ManyIndices {
            indices: self.cfg.index_count,
            per_index: self.cfg.index_docs,
            elasticdump_indices: elasticdump_indices(self.cfg.index_count),
            seed_secs: f64::NAN,
            ..ManyIndices::default()
        };
        let source = match self.target("indices-source") {
            Ok(s) => s,
            Err(e) => {
                self.notes.push(format!("Many indices: no source: {e}"));
                self.many = Some(many);
                return;
            }
        };
        progress(&format!(
            "many indices: seeding {} indices × {} documents into {}",
            many.indices, many.per_index, source.url
        ));
        let t = Instant::now();
        let seeded = self
            .seed_indices(&source.url, &names)
            .and_then(|()| self.http.count_docs(&source.url, &names));
        many.seed_secs = t.elapsed().as_secs_f64();
        match seeded {
            Ok(n) => many.expected = n,
            Err(e) => {
                self.notes
                    .push(format!("Many indices: seeding failed: {e}"));
                self.many = Some(many);
                return;
            }
        }
        progress(&format!(
            "many indices: seeded {} documents in {:.1} s",
            many.expected, many.seed_secs
        ));
        let n = many.expected;
        let esark_dir = self.path("indices-esark");
        let med_dir = self.path("indices-elasticdump");

        let mut row = Row::new("indices.dump.esark", "dump", "esark dump (defaults)", n);
        row.runs
            .push(self.many_esark_dump(&source.url, &esark_dir, n));
        row.data_bytes = Some(dir_size(&esark_dir));
        many.rows.push(row);
        many.kinds.push(("indices.dump.esark", {
            let out = self.path("indices-esark-counted");
            let kinds = self.counted(&source.url, "indices-dump-esark-counted", |url| {
                (self.esark_dump_cmd(url, &out), self.many_budget(120, 2.0))
            });
            let _ = std::fs::remove_dir_all(&out);
            kinds
        }));

        // multielasticdump takes the first of the indices only.
        let med_names = &names[..many.elasticdump_indices as usize];
        let med_n = many.elasticdump_indices * many.per_index;
        let med_match = format!("^({})$", med_names.join("|"));
        let med_tool = |what: &str| match med_names.len() == names.len() {
            true => what.to_string(),
            false => format!("{what} ({} of the indices)", med_names.len()),
        };
        let mut row = Row::new(
            "indices.dump.elasticdump",
            "dump",
            med_tool("multielasticdump"),
            med_n,
        );
        row.runs
            .push(self.many_elasticdump_dump(&source.url, &med_dir, &med_match, med_n));
        row.data_bytes = Some(dir_size(&med_dir));
        let skip = timed_out(&row);
        many.rows.push(row);
        many.kinds.push(("indices.dump.elasticdump", {
            let out = self.path("indices-elasticdump-counted");
            let kinds = match skip {
                Some(why) => Err(why),
                None => self.counted(&source.url, "indices-dump-elasticdump-counted", |url| {
                    (
                        self.elasticdump_dump_cmd(url, &out, &med_match),
                        elasticdump_deadline(),
                    )
                }),
            };
            let _ = std::fs::remove_dir_all(&out);
            kinds
        }));
        drop(source);

        let dumped = |rows: &[Row], key: &str| {
            rows.iter()
                .find(|r| r.key == key)
                .is_some_and(|r| r.status() != "FAILED")
        };
        let esark_ok = dumped(&many.rows, "indices.dump.esark");
        let med_ok = dumped(&many.rows, "indices.dump.elasticdump");

        let mut row = Row::new(
            "indices.restore.esark",
            "restore",
            "esark restore → osmem",
            n,
        );
        row.data_bytes = Some(dir_size(&esark_dir));
        row.runs.push(if esark_ok {
            self.many_restore("indices-restore-esark", n, &names, |url| {
                (
                    self.esark_restore_cmd(&esark_dir, url),
                    self.many_budget(120, 6.0),
                )
            })
        } else {
            failed("its dump failed".into())
        });
        many.rows.push(row);
        many.kinds.push(("indices.restore.esark", {
            if esark_ok {
                self.counted_restore("indices-restore-esark-counted", |url| {
                    (
                        self.esark_restore_cmd(&esark_dir, url),
                        self.many_budget(120, 6.0),
                    )
                })
            } else {
                Err("its dump failed".into())
            }
        }));

        let mut row = Row::new(
            "indices.restore.elasticdump",
            "restore",
            med_tool("multielasticdump load → osmem"),
            med_n,
        );
        row.data_bytes = Some(dir_size(&med_dir));
        row.runs.push(if med_ok {
            self.many_restore("indices-restore-elasticdump", med_n, med_names, |url| {
                (
                    self.elasticdump_load_cmd(&med_dir, url),
                    elasticdump_deadline(),
                )
            })
        } else {
            failed("its dump failed".into())
        });
        let skip = timed_out(&row);
        many.rows.push(row);
        many.kinds.push(("indices.restore.elasticdump", {
            if let Some(why) = skip {
                Err(why)
            } else if med_ok {
                self.counted_restore("indices-restore-elasticdump-counted", |url| {
                    (
                        self.elasticdump_load_cmd(&med_dir, url),
                        elasticdump_deadline(),
                    )
                })
            } else {
                Err("its dump failed".into())
            }
        }));
        let _ = std::fs::remove_dir_all(&esark_dir);
        let _ = std::fs::remove_dir_all(&med_dir);
        self.many = Some(many);
    }

    /// Puts a legacy template for the tenants (1 shard, no replica; a
    /// platform with an index per tenant has one, and multielasticdump's
    /// `GET /_template/*` fails on osmem without any), creates every index,
    /// then loads its documents (the sample documents of esark-seed, ids
    /// `%08d` per index, routing `eu` on every seventh) in `_bulk`
    /// requests of [`SEED_BATCH`].
    fn seed_indices(&self, url: &str, names: &[String]) -> Result<(), String> {
        let template = r#"{"index_patterns":["tenant-*"],"order":1,"settings":{"number_of_shards":1,"number_of_replicas":0}}"#;
        self.http.send(
            reqwest::Method::PUT,
            &format!("{url}/_template/tenant"),
            Some(template.to_string()),
        )?;
        for name in names {
            self.http.send(
                reqwest::Method::PUT,
                &format!("{url}/{}", encode(name)),
                Some("{}".to_string()),
            )?;
        }
        let mut rng = fastrand::Rng::with_seed(self.cfg.seed);
        let mut body = String::new();
        let mut in_body = 0;
        let flush = |body: &mut String| -> Result<(), String> {
            let v = self.http.send(
                reqwest::Method::POST,
                &format!("{url}/_bulk"),
                Some(std::mem::take(body)),
            )?;
            if v["errors"].as_bool() != Some(false) {
                return Err(format!("seeding _bulk: items failed: {}", v["items"][0]));
            }
            Ok(())
        };
        for name in names {
            for k in 0..self.cfg.index_docs {
                let routing = if k % 7 == 0 { r#","routing":"eu""# } else { "" };
                body.push_str(&format!(
                    "{{\"index\":{{\"_index\":\"{name}\",\"_id\":\"{k:08}\"{routing}}}}}\n"
                ));
                body.push_str(&esark::sample::document(&mut rng, k));
                body.push('\n');
                in_body += 1;
                if in_body == SEED_BATCH {
                    flush(&mut body)?;
                    in_body = 0;
                }
            }
        }
        if in_body > 0 {
            flush(&mut body)?;
        }
        Ok(())
    }

    fn esark_dump_cmd(&self, source: &str, out: &Path) -> Command {
        let _ = std::fs::remove_dir_all(out);
        let mut cmd = self.command(&self.cfg.esark);
        cmd.args(["dump", "--source", source, "--output"])
            .arg(out)
            .args(["--match", "tenant-.*", "--json", "-q"]);
        cmd
    }

    fn esark_restore_cmd(&self, archive: &Path, target: &str) -> Command {
        let mut cmd = self.command(&self.cfg.esark);
        cmd.args(["restore", "--input"])
            .arg(archive)
            .args(["--target", target, "--json", "-q"]);
        cmd
    }

    /// As the main multielasticdump dump row, selecting the indices
    /// `regex` matches.
    fn elasticdump_dump_cmd(&self, source: &str, out: &Path, regex: &str) -> Command {
        let _ = std::fs::remove_dir_all(out);
        let _ = std::fs::create_dir_all(out);
        let mut cmd = self.elasticdump();
        cmd.args([
            "--direction=dump",
            &format!("--match={regex}"),
            &format!("--input={source}"),
            &format!("--output={}", out.display()),
            "--limit=5000",
            "--parallel=2",
            r#"--searchBody={"query":{"match_all":{}},"track_total_hits":true}"#,
            // Without it the load of its own dump loses every document
            // (benches/RESULTS.md: the sample's i64::MAX, rounded to
            // 9223372036854776000, is refused by the `long` mapping).
            "--support-big-int=true",
        ]);
        cmd
    }

    fn elasticdump_load_cmd(&self, input: &Path, target: &str) -> Command {
        let mut cmd = self.elasticdump();
        cmd.args([
            "--direction=load",
            &format!("--input={}", input.display()),
            &format!("--output={target}"),
            "--limit=5000",
            "--parallel=2",
            "--support-big-int=true",
        ]);
        cmd
    }

    fn many_esark_dump(&self, source: &str, out: &Path, n: u64) -> Run {
        let cmd = self.esark_dump_cmd(source, out);
        let name = "indices-dump-esark";
        self.measured(name, cmd, self.many_budget(120, 2.0), n, |_| {
            self.inspect(&Archive::Folder(out.to_path_buf()), name)
        })
    }

    fn many_elasticdump_dump(&self, source: &str, out: &Path, regex: &str, n: u64) -> Run {
        let cmd = self.elasticdump_dump_cmd(source, out, regex);
        self.measured(
            "indices-dump-elasticdump",
            cmd,
            elasticdump_deadline(),
            n,
            |_| super::elasticdump::count_elasticdump_lines(out),
        )
    }

    /// One timed restore into a fresh osmem, verified by `_count` per index.
    fn many_restore(
        &self,
        name: &str,
        n: u64,
        names: &[String],
        cmd: impl FnOnce(&str) -> (Command, Duration),
    ) -> Run {
        let target = match self.target(name) {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
        let (cmd, timeout) = cmd(&target.url);
        self.measured(name, cmd, timeout, n, |_| {
            self.http.count_docs(&target.url, names)
        })
    }

    /// Runs a tool once more, untimed, through a counting proxy in front
    /// of `upstream`; the requests it sent, by kind.
    fn counted(
        &self,
        upstream: &str,
        name: &str,
        cmd: impl FnOnce(&str) -> (Command, Duration),
    ) -> Kinds {
        let mut proxy = self.own("count-proxy");
        proxy.args(["--upstream", upstream]);
        let proxy = Server::start(
            "count proxy",
            proxy,
            &self.logs.join(format!("{name}-proxy.log")),
        )?;
        let (cmd, timeout) = cmd(&proxy.url);
        let t = Instant::now();
        let done = self.helper(name, cmd, timeout);
        progress(&format!(
            "{name}: {:.1} s through the counting proxy{}",
            t.elapsed().as_secs_f64(),
            done.as_ref()
                .err()
                .map_or(String::new(), |e| format!(": {e}"))
        ));
        done?;
        let stats = self
            .http
            .get_json(&format!("{}/_count_proxy/stats", proxy.url))?;
        serde_json::from_value(stats["kinds"].clone()).map_err(|e| format!("proxy stats: {e}"))
    }

    /// [`Bench::counted`] for a restore: into a fresh osmem of its own.
    fn counted_restore(&self, name: &str, cmd: impl FnOnce(&str) -> (Command, Duration)) -> Kinds {
        let target = self.target(name)?;
        self.counted(&target.url, name, cmd)
    }
}
