//! Memory flatness: peak RSS as the number of documents grows. esark
//! dump and restore → null sink at a tenth of the documents (a second
//! source), compared with the main rows; and esark restore → null sink at
//! `ESARK_BENCH_BIG_DOCS` (1,000,000) documents from a *generated* archive
//! ([`crate::gen_archive`]): osmem holds ~30 KB per document, so no
//! cluster here can be dumped at that size. With `--rows flatness`, only
//! generated archives are restored, at a tenth of `--docs`, `--docs` and
//! the big size, so the three points come from the same generator.
//!
//! The generator copies a template archive: a real esark dump of 1,000
//! documents of `esark-seed` (untimed, like the generation).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::storage::Archive;
use super::{dir_size, failed, progress, Bench};
use crate::report::{Row, RunStatus};
use crate::servers::Server;
use crate::Rows;

/// Documents of the template archive's cluster.
const TEMPLATE_DOCS: u64 = 1000;

impl Bench {
    /// esark dump and restore → null sink at a tenth of the documents, from
    /// a second source.
    pub(super) fn flatness(&mut self) {
        let small = (self.cfg.docs / 10).max(10);
        self.small_docs = small;
        let source = match Server::osmem(
            &self.cfg.osmem,
            "small source",
            &self.logs.join("osmem-small.log"),
        ) {
            Ok(s) => s,
            Err(e) => {
                self.notes
                    .push(format!("Memory flatness: no small source: {e}"));
                return;
            }
        };
        progress(&format!(
            "small source at {}; seeding {small} documents",
            source.url
        ));
        let expected = match self
            .seed(&source.url, small, "seed-small")
            .and_then(|()| self.http.count_docs(&source.url, &self.indices))
        {
            Ok(n) => n,
            Err(e) => {
                self.notes
                    .push(format!("Memory flatness: seeding failed: {e}"));
                return;
            }
        };
        let out = self.path("dump-esark-small");
        let folder = Archive::Folder(out.clone());
        let mut dump = Row::new("small.dump", "dump", "esark dump (lz4, defaults)", expected);
        let mut restore = Row::new(
            "small.null",
            "restore",
            "esark restore → null sink",
            expected,
        );
        for r in 1..=self.cfg.repeat {
            dump.runs.push(self.esark_dump(
                &source.url,
                &folder,
                &format!("small-dump-esark-{r}"),
                expected,
            ));
        }
        dump.data_bytes = Some(dir_size(&out));
        drop(source);
        let dumped = matches!(dump.runs.last().map(|r| &r.status), Some(RunStatus::Ok));
        for r in 1..=self.cfg.repeat {
            restore.runs.push(if dumped {
                self.esark_restore_null(&folder, &format!("small-restore-null-{r}"), expected)
            } else {
                failed("no complete small esark dump".into())
            });
        }
        restore.data_bytes = Some(dir_size(&out));
        self.small_rows = vec![dump, restore];
    }

    /// esark restore → null sink from generated archives: at the big size,
    /// and with `--rows flatness` at a tenth of `--docs` and `--docs` too.
    /// Each archive is checked with `esark inspect` first and deleted after.
    pub(super) fn big_flatness(&mut self) {
        let docs = self.cfg.docs;
        let sizes: Vec<(&'static str, u64)> = if self.cfg.rows == Rows::Flatness {
            vec![
                ("flat.small", (docs / 10).max(10)),
                ("flat.main", docs),
                ("flat.big", self.cfg.big_docs),
            ]
        } else {
            vec![("flat.big", self.cfg.big_docs)]
        };
        let template = self.template_archive();
        if let Err(e) = &template {
            progress(&format!("no template archive: {e}"));
        }
        for (key, size) in sizes {
            let mut row = Row::new(
                key,
                "restore",
                "esark restore → null sink (generated archive)",
                size,
            );
            let out = self.path(&format!("generated-{size}"));
            let name = format!("generate-{size}");
            let t = Instant::now();
            let generated = template.clone().and_then(|template| {
                let mut cmd = self.own("gen-archive");
                cmd.arg("--template")
                    .arg(&template)
                    .arg("--output")
                    .arg(&out)
                    .args(["--docs", &size.to_string()])
                    .args(["--seed", &self.cfg.seed.to_string()]);
                let timeout =
                    Duration::from_secs(120) + Duration::from_secs_f64(size as f64 * 0.2 / 1000.0);
                self.helper(&name, cmd, timeout)?;
                let secs = t.elapsed().as_secs_f64();
                let found = self.inspect(&Archive::Folder(out.clone()), &name)?;
                if found != size {
                    return Err(format!("the generated archive holds {found} documents"));
                }
                Ok(secs)
            });
            row.data_bytes = Some(dir_size(&out));
            match generated {
                Ok(secs) => {
                    progress(&format!(
                        "generated {size} documents ({:.1} MiB) in {secs:.1} s",
                        dir_size(&out) as f64 / 1048576.0
                    ));
                    self.notes.push(format!(
                        "Generated archive of {size} documents: {:.1} MiB, written in {secs:.1} s and \
                         checked by `esark inspect --json` before the restores (neither timed).",
                        dir_size(&out) as f64 / 1048576.0
                    ));
                    for r in 1..=self.cfg.repeat {
                        let run = self.esark_restore_null(
                            &Archive::Folder(out.clone()),
                            &format!("{name}-restore-null-{r}"),
                            size,
                        );
                        row.runs.push(run);
                    }
                }
                Err(e) => row.runs.push(failed(format!("no generated archive: {e}"))),
            }
            let _ = std::fs::remove_dir_all(&out);
            self.flat_rows.push(row);
        }
    }

    /// A real esark dump of [`TEMPLATE_DOCS`] documents of esark-seed, for
    /// the generator to copy: metadata, options, slices, shares of documents.
    fn template_archive(&self) -> Result<PathBuf, String> {
        let server = Server::osmem(
            &self.cfg.osmem,
            "template source",
            &self.logs.join("osmem-template.log"),
        )?;
        self.seed(&server.url, TEMPLATE_DOCS, "seed-template")?;
        let out = self.path("template");
        let _ = std::fs::remove_dir_all(&out);
        let mut cmd = self.command(&self.cfg.esark);
        cmd.args(["dump", "--source", &server.url, "--output"])
            .arg(&out)
            .args(["--match", ".*", "--json", "-q"]);
        self.helper("dump-template", cmd, Duration::from_secs(300))?;
        Ok(out)
    }
}
