//! Progress: bars per index and in total on a terminal, nothing otherwise
//! (the caller prints one summary line at the end instead).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The set of bars for one run. Hidden when stderr is not a terminal or
/// `--quiet`/`--json` was given; every method is then a no-op.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
    total: ProgressBar,
    /// `--quiet`: warnings are not printed either.
    quiet: bool,
}

impl Progress {
    /// `hide_bars`: no bars (`--quiet`, `--json`); `quiet`: no warning
    /// lines either (`--quiet`).
    pub fn new(hide_bars: bool, quiet: bool) -> Progress {
        if hide_bars || !std::io::stderr().is_terminal() {
            return Progress {
                multi: None,
                total: ProgressBar::hidden(),
                quiet,
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let total = multi.add(ProgressBar::new(0));
        total.set_style(style("{prefix:>24.bold} [{bar:30.green/white}] {human_pos}/{human_len} docs {per_sec} ETA {eta}"));
        total.set_prefix("total");
        total.enable_steady_tick(Duration::from_millis(250));
        Progress {
            multi: Some(multi),
            total,
            quiet,
        }
    }

    /// Adds `expected` documents to the total.
    pub fn expect(&self, expected: u64) {
        self.total.inc_length(expected);
    }

    /// A bar for one index.
    pub fn index(&self, name: &str, expected: u64) -> IndexProgress {
        let bar = match &self.multi {
            Some(m) => {
                let bar = m.insert_before(&self.total, ProgressBar::new(expected));
                bar.set_style(style(
                    "{prefix:>24} [{bar:30.cyan/blue}] {human_pos}/{human_len} {per_sec} ETA {eta}",
                ));
                bar.set_prefix(short(name));
                bar
            }
            None => ProgressBar::hidden(),
        };
        IndexProgress {
            bar,
            total: self.total.clone(),
        }
    }

    /// Prints a line above the bars (or to stderr when there are none),
    /// unless quiet.
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        self.total.finish_and_clear();
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

/// The bar of one index; counts go to the total as well.
#[derive(Clone)]
pub struct IndexProgress {
    bar: ProgressBar,
    total: ProgressBar,
}

impl IndexProgress {
    pub fn inc(&self, docs: u64) {
        self.bar.inc(docs);
        self.total.inc(docs);
    }

    /// Takes back documents counted before a slice was read again.
    pub fn dec(&self, docs: u64) {
        self.bar.dec(docs);
        self.total.dec(docs);
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn short(name: &str) -> String {
    if name.chars().count() > 24 {
        let tail: String = name
            .chars()
            .rev()
            .take(23)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    } else {
        name.to_string()
    }
}
