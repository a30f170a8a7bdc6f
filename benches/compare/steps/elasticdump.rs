//! The multielasticdump rows: its dumps (defaults and `--support-big-int`),
//! the note on integers its default dump rounded, and its loads of its own
//! dumps into a fresh osmem. Not run with `--rows storage`.

use std::path::Path;
use std::process::Command;

use super::{dir_size, failed, Bench};
use crate::report::{Row, RunStatus};

impl Bench {
    pub(super) fn elasticdump(&self) -> Command {
        self.command(
            self.cfg
                .elasticdump
                .join("node_modules/.bin/multielasticdump"),
        )
    }

    fn elasticdump_dir(big_int: bool) -> &'static str {
        if big_int {
            "dump-elasticdump-bigint"
        } else {
            "dump-elasticdump"
        }
    }

    pub(super) fn elasticdump_dump(&self, source: &str, big_int: bool) -> Row {
        let (key, tool) = if big_int {
            (
                "dump.elasticdump_bigint",
                "multielasticdump --support-big-int",
            )
        } else {
            ("dump.elasticdump", "multielasticdump (defaults)")
        };
        let mut row = Row::new(key, "dump", tool, self.expected);
        let out = self.path(Self::elasticdump_dir(big_int));
        let _ = std::fs::remove_dir_all(&out);
        if let Err(e) = std::fs::create_dir_all(&out) {
            row.runs.push(failed(format!("{}: {e}", out.display())));
            return row;
        }
        let mut cmd = self.elasticdump();
        cmd.args([
            "--direction=dump",
            "--match=.*",
            &format!("--input={source}"),
            &format!("--output={}", out.display()),
            "--limit=5000",
            "--parallel=2",
            r#"--searchBody={"query":{"match_all":{}},"track_total_hits":true}"#,
        ]);
        if big_int {
            cmd.arg("--support-big-int=true");
        }
        let name = if big_int {
            "dump-elasticdump-bigint"
        } else {
            "dump-elasticdump"
        };
        row.runs.push(
            self.measured(name, cmd, self.budget(120, 5.0), self.expected, |_| {
                count_elasticdump_lines(&out)
            }),
        );
        row.data_bytes = Some(dir_size(&out));
        row
    }

    /// Says so when elasticdump's default dump rounded integers above 2^53
    /// (the seed writes i64::MAX, which comes back as a double).
    pub(super) fn big_int_note(&mut self) {
        let dir = self.path(Self::elasticdump_dir(false));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut rounded = 0;
        for e in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                rounded += text.matches("9223372036854776000").count();
            }
        }
        if rounded > 0 {
            self.notes.push(format!(
                "elasticdump's default dump parses documents as JS numbers: {rounded} values of 9223372036854775807 (i64::MAX) \
                 in the source were written as 9223372036854776000, and other integers above 2^53 rounded. \
                 The `--support-big-int` rows keep them."
            ));
        }
    }

    pub(super) fn elasticdump_load(&self, big_int: bool) -> Row {
        let (key, tool, dump_key) = if big_int {
            (
                "restore.elasticdump_bigint",
                "multielasticdump --support-big-int → osmem",
                "dump.elasticdump_bigint",
            )
        } else {
            (
                "restore.elasticdump",
                "multielasticdump (defaults) → osmem",
                "dump.elasticdump",
            )
        };
        let mut row = Row::new(key, "restore", tool, self.expected);
        let input = self.path(Self::elasticdump_dir(big_int));
        row.data_bytes = Some(dir_size(&input));
        let dumped = self
            .rows
            .iter()
            .find(|r| r.key == dump_key)
            .and_then(|r| r.runs.last())
            .is_some_and(|r| !matches!(r.status, RunStatus::Failed(_)));
        if !dumped {
            row.runs.push(failed("its dump failed".into()));
            return row;
        }
        let name = if big_int {
            "restore-elasticdump-bigint"
        } else {
            "restore-elasticdump"
        };
        let target = match self.target(name) {
            Ok(t) => t,
            Err(e) => {
                row.runs.push(failed(e));
                return row;
            }
        };
        let mut cmd = self.elasticdump();
        cmd.args([
            "--direction=load",
            &format!("--input={}", input.display()),
            &format!("--output={}", target.url),
            "--limit=5000",
            "--parallel=2",
        ]);
        if big_int {
            cmd.arg("--support-big-int=true");
        }
        row.runs.push(
            self.measured(name, cmd, self.budget(120, 6.0), self.expected, |_| {
                self.http.count_docs(&target.url, &self.indices)
            }),
        );
        row
    }
}

/// Lines of elasticdump's data files: `<index>.json`, not the
/// `<index>.<mapping|settings|template|analyzer|alias|index>.json` ones.
pub(super) fn count_elasticdump_lines(dir: &Path) -> Result<u64, String> {
    const META: [&str; 6] = [
        "mapping", "settings", "template", "analyzer", "alias", "index",
    ];
    let mut total = 0;
    for e in std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        if META.iter().any(|m| stem.ends_with(&format!(".{m}"))) {
            continue;
        }
        let bytes = std::fs::read(e.path()).map_err(|err| format!("{name}: {err}"))?;
        total += bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64;
    }
    Ok(total)
}
