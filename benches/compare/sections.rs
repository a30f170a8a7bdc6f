//! Report sections of the rows added for "Performance, round two": the
//! restore of generated archives up to 1,000,000 documents (memory
//! flatness), and the many small indices with the requests each tool sends
//! per index, by kind. [`crate::results`] puts them in RESULTS.md, or
//! alone in RESULTS-flatness.md / RESULTS-indices.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::{mib, secs, table, Row};
use crate::steps::{Bench, Kinds, ManyIndices};

/// Why no dump row exists at the big size.
const NO_BIG_DUMP: &str = "- (not run: osmem holds ~30 KB per document, some 30 GB at 1M)";

fn rss(r: Option<&Row>) -> String {
    r.map_or("-".into(), |r| {
        format!("{} MiB ({})", mib(r.max_rss()), r.status())
    })
}

fn find<'a>(rows: &'a [Row], key: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.key == key)
}

/// The big-size line of the memory-flatness table of a full run, and the
/// generated-archive rows in full.
pub fn flatness_big_line(b: &Bench, s: &mut String) {
    if let Some(big) = find(&b.flat_rows, "flat.big") {
        let _ = writeln!(
            s,
            "| {} (generated archive) | {NO_BIG_DUMP} | {} |",
            big.expected,
            rss(Some(big))
        );
    }
}

/// The generated-archive rows in full, with how they were made.
pub fn flatness_generated(b: &Bench, s: &mut String) {
    if b.flat_rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nRestores of generated archives in full (`compare gen-archive`: a template archive, \
         a real esark dump of 1,000 esark-seed documents, copied with the same metadata, options \
         and slices, its data regenerated with esark's own chunk writer from the documents \
         esark-seed loads, checked by `esark inspect --json`; neither the generation nor the \
         check is timed):\n\n{}",
        table(&b.flat_rows)
    );
}

/// The whole section of `--rows flatness`: every size from a generated
/// archive.
pub fn flatness_only(b: &Bench, s: &mut String) {
    let _ = writeln!(s, "## Memory flatness (peak RSS, median of runs)\n");
    let _ = writeln!(
        s,
        "| documents | esark dump | esark restore → null sink (generated archive) |\n|---:|---:|---:|"
    );
    for key in ["flat.small", "flat.main", "flat.big"] {
        if let Some(r) = find(&b.flat_rows, key) {
            let dump = if key == "flat.big" {
                NO_BIG_DUMP
            } else {
                "- (not run: `--rows flatness`)"
            };
            let _ = writeln!(s, "| {} | {dump} | {} |", r.expected, rss(Some(r)));
        }
    }
    flatness_generated(b, s);
}

/// Row keys of the many-indices section with the column title of their
/// counted run.
const MANY_KEYS: [(&str, &str); 4] = [
    ("indices.dump.esark", "esark dump"),
    ("indices.dump.elasticdump", "multielasticdump dump"),
    ("indices.restore.esark", "esark restore"),
    ("indices.restore.elasticdump", "multielasticdump load"),
];

/// The indices the row of `key` took: multielasticdump's take only the
/// first [`ManyIndices::elasticdump_indices`].
fn indices_of(m: &ManyIndices, key: &str) -> u64 {
    match key.ends_with(".elasticdump") {
        true => m.elasticdump_indices,
        false => m.indices,
    }
}

pub fn indices_section(b: &Bench, s: &mut String) {
    let Some(m) = &b.many else {
        return;
    };
    let _ = writeln!(s, "## Many small indices\n");
    let _ = writeln!(
        s,
        "{} indices `tenant-0000`… of {} documents each (`ESARK_BENCH_INDICES`, `ESARK_BENCH_INDEX_DOCS`): \
         {} documents by `_count`, seeded by the harness in {:.1} s (a legacy template `tenant-*`: 1 shard, no replica; \
         indices created one by one, then `_bulk` requests of 3,000 esark-seed documents; not in any row). \
         multielasticdump's rows take the first {} of them (`ESARK_BENCH_ELASTICDUMP_INDICES`; \
         at some 1.5 s per index, all would take some 25 min per run). \
         Each row ran once; **time per index** is wall / the indices of the row; **requests** are those of one more, \
         untimed, run of the same command through the harness's counting proxy (restores: into \
         another fresh osmem), and **requests per index** those over the indices of the row.\n",
        m.indices, m.per_index, m.expected, m.seed_secs, m.elasticdump_indices
    );
    let kinds: BTreeMap<&str, &Kinds> = m.kinds.iter().map(|(k, v)| (*k, v)).collect();
    let total = |key: &str| -> Option<u64> {
        kinds
            .get(key)
            .and_then(|k| k.as_ref().ok())
            .map(|k| k.values().sum())
    };
    let _ = writeln!(
        s,
        "| side | tool | wall s | time per index ms | client CPU s | peak RSS MiB | data MiB | docs verified | requests | requests per index | status |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in &m.rows {
        let ok = r.status() == "ok" || r.status() == "INCOMPLETE";
        let num = |x: String| if ok { x } else { "-".into() };
        let req = total(r.key);
        let indices = indices_of(m, r.key);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.side,
            r.tool,
            num(secs(r.wall())),
            num(format!("{:.1}", r.wall() * 1000.0 / indices as f64)),
            num(secs(r.cpu())),
            num(mib(r.max_rss())),
            r.data_bytes.map_or("-".into(), |b| mib(b as f64)),
            r.runs.last().and_then(|x| x.verified).map_or(
                format!("-/{}", r.expected),
                |v| format!("{v}/{}", r.expected)
            ),
            req.map_or("-".into(), |t| t.to_string()),
            req.map_or("-".into(), |t| format!("{:.2}", t as f64 / indices as f64)),
            r.status(),
        );
    }
    request_kinds(m, s);
}

/// Requests by kind, per index (and in all), one column per counted run.
fn request_kinds(m: &ManyIndices, s: &mut String) {
    let columns: Vec<(String, Option<&BTreeMap<String, u64>>, u64)> = MANY_KEYS
        .iter()
        .map(|(key, title)| {
            let found = m
                .kinds
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.as_ref().ok());
            let indices = indices_of(m, key);
            let title = match indices == m.indices {
                true => title.to_string(),
                false => format!("{title} ({indices} indices)"),
            };
            (title, found, indices)
        })
        .collect();
    let mut all: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, kinds, _) in &columns {
        for (kind, n) in kinds.iter().flat_map(|k| k.iter()) {
            *all.entry(kind.as_str()).or_insert(0) += n;
        }
    }
    let mut order: Vec<(&str, u64)> = all.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let _ = writeln!(
        s,
        "\n### Requests per index, by kind\n\n\
         Method and path shape (segments starting with `_` kept, the first other one shown as \
         `{{index}}`, later ones as `{{name}}`; query parameter names without values). Each cell: \
         requests per index (requests in all).\n"
    );
    let mut header = String::from("| request |");
    let mut rule = String::from("|---|");
    for (title, _, _) in &columns {
        let _ = write!(header, " {title} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for (kind, _) in &order {
        let mut line = format!("| `{kind}` |");
        for (_, kinds, indices) in &columns {
            let cell = match kinds {
                None => "-".to_string(),
                Some(k) => match k.get(*kind) {
                    None | Some(0) => "".to_string(),
                    Some(n) => format!("{} ({n})", per_index(*n, *indices)),
                },
            };
            let _ = write!(line, " {cell} |");
        }
        let _ = writeln!(s, "{line}");
    }
    let mut line = String::from("| **all** |");
    for (_, kinds, indices) in &columns {
        let cell = kinds.map_or("-".into(), |k| {
            let n: u64 = k.values().sum();
            format!("**{}** ({n})", per_index(n, *indices))
        });
        let _ = write!(line, " {cell} |");
    }
    let _ = writeln!(s, "{line}");
    for ((key, title), (_, kinds, _)) in MANY_KEYS.iter().zip(&columns) {
        if kinds.is_none() {
            let why = m
                .kinds
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.as_ref().err())
                .map_or("not run", String::as_str);
            let _ = writeln!(s, "\n{title}: requests unknown: {why}");
        }
    }
}

fn per_index(n: u64, indices: u64) -> String {
    let x = n as f64 / indices.max(1) as f64;
    if x == x.round() {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

/// How the many-indices rows run (the end of the report).
pub const INDICES_ROWS: &str = r#"
Many-small-indices rows (section "Many small indices"):

- **seeding**: a fresh osmem; a legacy template `tenant` (`tenant-*`: 1 shard, no replica; without
  any template, multielasticdump's `GET /_template/*` gets a 404 from osmem and it stops), `PUT
  /tenant-NNNN` for each index, then
  `POST /_bulk` requests of 3,000 documents (esark-seed's sample documents, ids `%08d` per index,
  routing `eu` on every seventh), then `_refresh`. Its time is reported apart.
- **esark dump**: `esark dump --source URL --output DIR --match 'tenant-.*' --json -q` (defaults
  otherwise); verified with `esark inspect --json`.
- **multielasticdump dump**: as the main `--support-big-int` row (`--limit=5000 --parallel=2`,
  the `searchBody` with `track_total_hits`, `--support-big-int=true`: without it the load of its
  dump loses every document, see the main rows) with `--match=^(tenant-0000|tenant-0001|…)$` naming the first
  `ESARK_BENCH_ELASTICDUMP_INDICES` indices, a deadline of 20 min (FAILED "timed out" past
  it); verified by counting the lines of its data files.
- **esark restore**, **multielasticdump load**: of each tool's dump into a fresh osmem (esark's
  defaults; multielasticdump `--limit=5000 --parallel=2 --support-big-int=true`), 20 min deadline for multielasticdump;
  verified by `_count` per index after `_refresh`.
- **requests**: the same command once more through `compare count-proxy`
  (benches/compare/count_proxy.rs), a hyper proxy in front of the cluster (the source, or a fresh
  osmem for a restore) that counts every request by method and path shape; not timed.
"#;

/// How the generated-archive rows run.
pub const FLATNESS_ROWS: &str = r#"
Generated-archive rows (memory flatness beyond what osmem can hold):

- **template**: a fresh osmem seeded by `esark-seed --docs 1000`, dumped by esark (defaults, `--match '.*'`).
- **generation**: `compare gen-archive` (benches/compare/gen_archive.rs) writes an archive of N
  documents with esark's library: the template's cluster files, settings, mappings, aliases,
  options and slices, each index the template's share of N documents, data lines of esark-seed's
  documents pushed a page at a time through esark's `ChunkWriter` (the compression of the dump it copies, one frame per page), the
  manifest last through `ArchiveWriter`. Checked with `esark inspect --json` (sizes, sha256,
  counts) before any run, deleted after.
- **esark restore → null sink**: `esark restore --input DIR --target NULL_SINK --json -q`, as the
  main null-sink row.
"#;
