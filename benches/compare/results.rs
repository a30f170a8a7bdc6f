//! The report of a run: printed to stdout and written to `RESULTS.md`
//! (with `--rows storage`, `indices` or `flatness`, run.sh's default is
//! `RESULTS-storage.md`, `RESULTS-indices.md` or `RESULTS-flatness.md`:
//! that section alone, saying which rows ran). The sections of the
//! generated archives and the many indices are in [`crate::sections`].

use std::fmt::Write as _;

use crate::report::{machine, mib, npm_version, output, ratio, table, Row};
use crate::sections;
use crate::steps::Bench;
use crate::{Config, Rows};

/// Tool versions, read before the run starts.
pub fn versions(cfg: &Config) -> Vec<(String, String)> {
    let repo = std::env::var("ESARK_BENCH_REPO").unwrap_or_else(|_| ".".into());
    let git = output("git", &["-C", &repo, "describe", "--always", "--dirty"]);
    vec![
        (
            "esark".into(),
            format!("{} (git {git})", output(&cfg.esark, &["--version"])),
        ),
        ("osmem-server".into(), output(&cfg.osmem, &["-version"])),
        (
            "elasticdump".into(),
            format!(
                "{} (node {})",
                npm_version(
                    &cfg.elasticdump
                        .join("node_modules/elasticdump/package.json")
                ),
                output("node", &["--version"])
            ),
        ),
        ("rustc".into(), output("rustc", &["--version"])),
    ]
    .into_iter()
    .filter(|(k, _)| matches!(cfg.rows, Rows::All | Rows::Indices) || k != "elasticdump")
    .chain(
        matches!(cfg.rows, Rows::All | Rows::Storage).then(|| ("moto".into(), moto_version(cfg))),
    )
    .collect()
}

/// moto's version, from the Python next to `moto_server`.
fn moto_version(cfg: &Config) -> String {
    match &cfg.moto {
        Ok(bin) => match bin.parent() {
            Some(dir) => format!(
                "moto[server] {} (PyPI, scripts/install-moto.sh)",
                output(
                    dir.join("python"),
                    &["-c", "import moto; print(moto.__version__)"]
                )
            ),
            None => "unknown".into(),
        },
        Err(why) => format!("not available: {why}"),
    }
}

fn find<'a>(rows: &'a [Row], key: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.key == key)
}

/// `a` vs `b` in docs/s, naming rows that are not complete.
fn docs_ratio(rows: &[Row], a: &str, b: &str) -> String {
    match (find(rows, a), find(rows, b)) {
        (Some(x), Some(y)) => {
            let mut s = ratio(x.docs_per_s(), y.docs_per_s());
            for r in [x, y] {
                if r.status() != "ok" {
                    let _ = write!(s, " ({} is {})", r.tool, r.status());
                }
            }
            s
        }
        _ => "-".into(),
    }
}

fn cpu_ratio(rows: &[Row], a: &str, b: &str) -> String {
    match (find(rows, a), find(rows, b)) {
        (Some(x), Some(y)) => ratio(x.cpu(), y.cpu()),
        _ => "-".into(),
    }
}

pub fn write(b: &Bench, versions: &[(String, String)]) -> Result<(), String> {
    let rows = b.cfg.rows;
    let all = rows == Rows::All;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# esark benchmark results{}\n",
        match rows {
            Rows::All => "",
            Rows::Storage => ": archives on object storage and encryption",
            Rows::Indices => ": many small indices",
            Rows::Flatness => ": memory flatness up to 1,000,000 documents",
        }
    );
    let _ = writeln!(
        s,
        "Written by `./benches/run.sh{}{}` on {} (the whole run took {:.1} min). \
         Everything ran on 127.0.0.1 of one machine; the servers are osmem-server \
         (in-memory, OpenSearch-compatible), so restore rows into osmem are bounded by its indexing speed.\n",
        if b.cfg.quick { " --quick" } else { "" },
        if all { String::new() } else { format!(" --rows {}", rows.name()) },
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        b.started.elapsed().as_secs_f64() / 60.0
    );
    match rows {
        Rows::All => {}
        Rows::Storage => {
            let _ = writeln!(
                s,
                "Rows run: `storage` only: esark dump to a folder, to S3 (moto) and to a folder with \
                 `--encrypt-to`, and esark restore into the null sink from each of those archives. \
                 Not run: the raw baselines, multielasticdump, the restores into osmem and the memory \
                 flatness runs; [RESULTS.md](RESULTS.md) holds those from a full run.\n"
            );
        }
        Rows::Indices => {
            let _ = writeln!(
                s,
                "Rows run: `indices` only: esark and multielasticdump, dump and restore, on a cluster \
                 of many small indices; [RESULTS.md](RESULTS.md) holds the other rows from a full run.\n"
            );
        }
        Rows::Flatness => {
            let _ = writeln!(
                s,
                "Rows run: `flatness` only: esark restore into the null sink from generated archives \
                 at three sizes; [RESULTS.md](RESULTS.md) holds the other rows from a full run.\n"
            );
        }
    }
    let _ = writeln!(s, "## Machine and versions\n");
    for (k, v) in machine().iter().chain(versions) {
        let _ = writeln!(s, "- {k}: {v}");
    }
    let _ = writeln!(s);
    if matches!(rows, Rows::All | Rows::Storage) {
        main_data_set(b, &mut s);
        storage_section(b, &mut s);
    }
    if rows == Rows::Flatness {
        sections::flatness_only(b, &mut s);
    }
    if matches!(rows, Rows::All | Rows::Indices) {
        sections::indices_section(b, &mut s);
    }
    let problems: Vec<String> = b
        .rows
        .iter()
        .chain(&b.small_rows)
        .chain(&b.storage_rows)
        .chain(&b.flat_rows)
        .chain(b.many.iter().flat_map(|m| &m.rows))
        .flat_map(|r| {
            r.problems()
                .into_iter()
                .map(move |p| format!("{} / {}: {p}", r.side, r.tool))
        })
        .collect();
    if !b.notes.is_empty() || !problems.is_empty() {
        let _ = writeln!(s, "\n## Notes and problems\n");
        for n in b.notes.iter().chain(&problems) {
            let _ = writeln!(s, "- {n}");
        }
    }
    s.push_str(METHOD);
    if all {
        s.push_str(TOOL_ROWS);
    }
    if matches!(rows, Rows::All | Rows::Storage) {
        s.push_str(STORAGE_ROWS);
    }
    if matches!(rows, Rows::All | Rows::Flatness) {
        s.push_str(sections::FLATNESS_ROWS);
    }
    if matches!(rows, Rows::All | Rows::Indices) {
        s.push_str(sections::INDICES_ROWS);
    }
    println!("\n{s}");
    std::fs::write(&b.cfg.results, &s).map_err(|e| format!("{}: {e}", b.cfg.results.display()))?;
    eprintln!("wrote {}", b.cfg.results.display());
    Ok(())
}

/// The esark-seed data set of the main rows, then (full run) the tool
/// comparison.
fn main_data_set(b: &Bench, s: &mut String) {
    let all = b.cfg.rows == Rows::All;
    let _ = writeln!(
        s,
        "## Data set\n\n`esark-seed --docs {} --seed {}`: {} documents (by `_count`) in {} indices ({}), seeded in {:.1} s. ",
        b.cfg.docs,
        b.cfg.seed,
        b.expected,
        b.indices.len(),
        b.indices.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "),
        b.seed_secs,
    );
    s.pop();
    if all {
        let _ = writeln!(
            s,
            "The raw scroll and esark dump rows ran {} time(s) each, alternating (`ESARK_BENCH_DUMP_REPEAT`), the \
             raw bulk and esark restore rows {} time(s) (`ESARK_BENCH_REPEAT`), elasticdump once; the table shows medians.\n",
            b.cfg.dump_repeat, b.cfg.repeat
        );
        tool_sections(b, s);
    } else {
        let _ = writeln!(
            s,
            "The esark dump rows ran {} time(s) each (`ESARK_BENCH_DUMP_REPEAT`), the restore rows {} time(s) \
             (`ESARK_BENCH_REPEAT`), in rounds as described below; the tables show medians.\n",
            b.cfg.dump_repeat, b.cfg.repeat
        );
    }
}

/// The tool comparison: the main table, its ratios, memory flatness.
fn tool_sections(b: &Bench, s: &mut String) {
    let rows = &b.rows;
    let _ = writeln!(s, "## Results\n\n{}", table(rows));
    let _ = writeln!(s, "### Ratios (docs/s of the first over the second)\n");
    for (label, a, bb) in [
        ("dump: esark vs raw scroll", "dump.esark", "dump.raw"),
        (
            "dump: esark vs elasticdump (defaults)",
            "dump.esark",
            "dump.elasticdump",
        ),
        (
            "dump: esark vs elasticdump --support-big-int",
            "dump.esark",
            "dump.elasticdump_bigint",
        ),
        (
            "restore: esark vs raw bulk (both into osmem)",
            "restore.esark",
            "restore.raw",
        ),
        (
            "restore: esark vs elasticdump (defaults)",
            "restore.esark",
            "restore.elasticdump",
        ),
        (
            "restore: esark vs elasticdump --support-big-int",
            "restore.esark",
            "restore.elasticdump_bigint",
        ),
        (
            "restore: esark into the null sink vs into osmem",
            "restore.null",
            "restore.esark",
        ),
    ] {
        let _ = writeln!(s, "- {label}: {}", docs_ratio(rows, a, bb));
    }
    let _ = writeln!(
        s,
        "- client CPU, elasticdump --support-big-int over esark: dump {}, restore {}",
        cpu_ratio(rows, "dump.elasticdump_bigint", "dump.esark"),
        cpu_ratio(rows, "restore.elasticdump_bigint", "restore.esark")
    );
    let _ = writeln!(s, "\n### Memory flatness (peak RSS, median of runs)\n");
    let _ = writeln!(
        s,
        "| documents | esark dump | esark restore → null sink |\n|---:|---:|---:|"
    );
    let rss = |r: Option<&Row>| {
        r.map_or("-".into(), |r| {
            format!("{} MiB ({})", mib(r.max_rss()), r.status())
        })
    };
    let _ = writeln!(
        s,
        "| {} | {} | {} |",
        b.small_docs,
        rss(find(&b.small_rows, "small.dump")),
        rss(find(&b.small_rows, "small.null"))
    );
    let _ = writeln!(
        s,
        "| {} | {} | {} |",
        b.expected,
        rss(find(rows, "dump.esark")),
        rss(find(rows, "restore.null"))
    );
    sections::flatness_big_line(b, s);
    if !b.small_rows.is_empty() {
        let _ = writeln!(
            s,
            "\nThe runs at {} documents in full:\n\n{}",
            b.small_docs,
            table(&b.small_rows)
        );
    }
    sections::flatness_generated(b, s);
}

/// The storage rows next to the folder rows they are compared with, and
/// the ratios the object-storage issue asks for.
fn storage_section(b: &Bench, s: &mut String) {
    let _ = writeln!(s, "## Archives on object storage and encryption\n");
    let _ = writeln!(
        s,
        "The same source and options as the folder rows (`--match '.*'`, esark's defaults otherwise), \
         written to S3 (moto on 127.0.0.1) and to a folder encrypted with age; each round runs folder, \
         S3 and encrypted back to back. The restores read each archive into the **null sink**, not \
         osmem, so the server's indexing speed does not hide the cost of reading the archive.\n"
    );
    let rows: Vec<Row> = STORAGE_KEYS
        .iter()
        .filter_map(|k| find(&b.rows, k).or_else(|| find(&b.storage_rows, k)))
        .cloned()
        .collect();
    let _ = writeln!(s, "{}", table(&rows));
    let _ = writeln!(s, "### Ratios (first over second, medians)\n");
    let _ = writeln!(
        s,
        "| comparison | wall | docs/s | client CPU | peak RSS MiB | peak RSS difference |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    for (label, a, base) in STORAGE_RATIOS {
        let (Some(x), Some(y)) = (find(&rows, a), find(&rows, base)) else {
            let _ = writeln!(s, "| {label} | - | - | - | - | - |");
            continue;
        };
        let diff = x.max_rss() - y.max_rss();
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} | {} vs {} | {} |",
            ratio(x.wall(), y.wall()),
            docs_ratio(&rows, a, base),
            ratio(x.cpu(), y.cpu()),
            mib(x.max_rss()),
            mib(y.max_rss()),
            if diff.is_finite() {
                format!("{:+.1} MiB", diff / 1048576.0)
            } else {
                "-".into()
            }
        );
    }
}

/// The storage section's rows: each folder row, then what it is compared with.
const STORAGE_KEYS: [&str; 6] = [
    "dump.esark",
    "dump.s3",
    "dump.encrypted",
    "restore.null",
    "restore.null_s3",
    "restore.null_encrypted",
];

const STORAGE_RATIOS: [(&str, &str, &str); 4] = [
    ("dump: S3 / folder", "dump.s3", "dump.esark"),
    (
        "dump: encrypted / plain (folders)",
        "dump.encrypted",
        "dump.esark",
    ),
    (
        "restore → null sink: S3 / folder",
        "restore.null_s3",
        "restore.null",
    ),
    (
        "restore → null sink: encrypted / plain (folders)",
        "restore.null_encrypted",
        "restore.null",
    ),
];

const METHOD: &str = r#"
## How each row is measured

- **wall s**: from spawning the tool to reaping it; **docs/s**: verified documents / median wall time.
- **runs**: the dump rows' source osmem runs with `GODEBUG=gctrace=1` and reports each of its
  garbage collections (0.6-1.5 s of wall time, a second or more of its CPU at 100,000 documents,
  about once every 3-4 dumps, whichever tool dumps: 3 in 9 raw scrolls and 3 in 9 esark dumps
  in a row each). A run that overlapped one is counted in **runs** ("N met a server GC") and in
  the wall range but left out of the medians, as long as the row keeps at least two runs without
  one; the notes list every dump run with the server's CPU time and the collections it met.
- **client CPU s**: user + system time of the tool's process tree, from `wait4()` on the child
  (Linux adds every descendant the child reaped, so elasticdump's forked workers count).
  Servers (osmem, the null sink) are separate processes and never counted.
- **peak RSS**: `ru_maxrss` from the same `wait4()`: the largest single process of the tree.
  **tree RSS**: the largest sum of the RSS of every process of the tool's process group,
  sampled from `/proc` every 50 ms (differs from peak RSS only for multi-process tools).
- **data MiB**: dump rows, the output folder on disk; restore rows, the input read
  (raw bulk: the request bodies).
- **docs verified**: dump rows count what was written (esark: `esark inspect --json` checks every
  file's size and sha256, then the manifest's per-index counts are summed; elasticdump: lines of
  its `<index>.json` data files; raw scroll: hits received). Restore rows count documents in the
  target with `_count` per index after `_refresh`; the null sink counts what it received and must
  agree with esark's `written`. A row is INCOMPLETE when any run is short, FAILED when a tool
  exits non-zero, times out or cannot be verified, SKIPPED when it could not run at all (the S3
  rows without moto; the reason is in the notes).
- Every restore row gets a fresh target (osmem or null sink).
"#;

const TOOL_ROWS: &str = r#"
Rows:

- **raw scroll**: `compare raw-scroll` (benches/compare/raw.rs): 2 threads, one keep-alive
  connection each, take (index, slice) tasks from a queue (one slice per primary shard, at most 4,
  as `esark dump --slices auto`), scroll with `size: 5000`, `sort: ["_doc"]` until an empty page,
  count the hits (parsed with serde `IgnoredAny`) and discard them.
- **esark dump**: `esark dump --source URL --output DIR --match '.*' --json -q` into a fresh folder,
  otherwise esark's defaults (the options its manifest records are in the notes above).
- **multielasticdump**: `multielasticdump --direction=dump --match='.*' --input=URL --output=DIR
  --limit=5000 --parallel=2 --searchBody='{"query":{"match_all":{}},"track_total_hits":true}'`
  (osmem caps `hits.total` at 10,000 inside a scroll and elasticdump stops at `hits.total`, hence
  `track_total_hits`); the second row adds `--support-big-int=true`.
- **raw _bulk**: bodies built before the clock starts with esark's own `BulkBuilder` from the esark
  archive (10 MiB / 5000 documents per request, one index per request), one file each; 2 threads,
  one keep-alive connection each, send them as `POST /_bulk`. Before the clock, the target gets
  the same indices and templates (`esark restore --no-data`) and `refresh_interval: -1`.
- **esark restore**: `esark restore --input DIR --target URL --json -q`, otherwise esark's defaults
  (when written: 4 requests in flight, 5 MiB / 1000 documents per request).
- **null sink**: the same restore into `compare null-sink` (benches/compare/null_sink.rs), a
  hyper HTTP/1.1 server answering like OpenSearch 2.11 and acknowledging every bulk item without
  storing anything: esark's own ceiling.
- **multielasticdump load**: `multielasticdump --direction=load --input=DIR --output=URL
  --limit=5000 --parallel=2` of its own dump (`--limit` raised from its default of 100 to match
  the dump side), plus `--support-big-int=true` for the second row.
- **Memory flatness**: esark dump and esark restore into the null sink, run on a second source
  seeded with a tenth of the documents, compared with the main rows.
"#;

const STORAGE_ROWS: &str = r#"
Storage rows (section "Archives on object storage and encryption"):

- **folder rows**: `esark dump --source URL --output DIR --match '.*' --json -q` into a fresh
  folder, and `esark restore --input DIR --target NULL_SINK --json -q` into a fresh null sink.
- **esark dump → S3 (moto)**: the same dump with `--output s3://esark-bench/dump-N` (a fresh prefix
  per run) and `AWS_ENDPOINT_URL_S3`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
  naming moto (`moto_server`, pinned by `scripts/install-moto.sh`, in memory, on 127.0.0.1,
  started by the harness with one bucket and stopped at the end). Verified with
  `esark inspect s3://… --json`; data MiB is the objects' total size (ListObjectsV2).
- **esark dump --encrypt-to**: the same dump into a folder with `--encrypt-to age1…`, an X25519
  key pair the harness generates for the run; verified with `esark inspect DIR --json --identity FILE`.
- **esark restore from S3 / --identity → null sink**: `esark restore --input s3://…` (the last
  complete S3 dump) or `--input DIR --identity FILE` (the encrypted folder), into a fresh null
  sink, so the read cost is not hidden behind a server's indexing speed.
- Each round runs the folder, S3 and encrypted row back to back (dump rounds also hold the raw
  scroll run in a full run; restore rounds the restores into osmem). moto is a separate process:
  its CPU is not in client CPU (the notes give it).
"#;
