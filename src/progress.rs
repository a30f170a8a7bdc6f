//! Progress: bars per index and in total on a terminal, nothing otherwise
//! (the caller prints one summary line at the end instead).
//!
//! Only the indices being worked on have a bar (a finished one is removed),
//! so that a run over many indices shows a bounded number of bars plus the
//! total; no bar is left above the summary. Rates are whole documents per
//! second, and a bar with nothing to expect shows a count, not a full bar.

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
        total.set_style(style(TOTAL_COUNT));
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
        if expected > 0 {
            self.total.set_style(style(TOTAL_BAR));
        }
    }

    /// Counts `docs` on the total without an index bar (an index an
    /// interrupted run already finished).
    pub fn count(&self, docs: u64) {
        self.total.inc(docs);
    }

    /// Takes back `docs` expected documents that will not come (an index
    /// skipped, failed, or already done by an interrupted run).
    pub fn unexpect(&self, docs: u64) {
        let length = self.total.length().unwrap_or(0);
        self.total.set_length(length.saturating_sub(docs));
    }

    /// A bar for one index.
    pub fn index(&self, name: &str, expected: u64) -> IndexProgress {
        let bar = match &self.multi {
            Some(m) => {
                let bar = m.insert_before(&self.total, ProgressBar::new(expected));
                bar.set_style(style(if expected > 0 { INDEX_BAR } else { INDEX_COUNT }));
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

    /// Documents counted on this bar.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Removes the bar: only active indices have one.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

const TOTAL_BAR: &str =
    "{prefix:>24.bold} [{bar:30.green/white}] {human_pos}/{human_len} docs {rate} ETA {eta}";
const TOTAL_COUNT: &str = "{prefix:>24.bold} {human_pos} docs {rate}";
const INDEX_BAR: &str =
    "{prefix:>24} [{bar:30.cyan/blue}] {human_pos}/{human_len} {rate} ETA {eta}";
const INDEX_COUNT: &str = "{prefix:>24} {human_pos} docs {rate}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", rate(state.per_sec()));
            },
        )
        .progress_chars("=> ")
}

/// Documents per second, rounded to a whole number.
fn rate(per_sec: f64) -> String {
    if per_sec.is_finite() && per_sec > 0.0 {
        format!("{:.0}", per_sec)
    } else {
        "0".into()
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn rates_are_whole_numbers() {
        assert_eq!(super::rate(1234.5678), "1235");
        assert_eq!(super::rate(0.4), "0");
        assert_eq!(super::rate(f64::NAN), "0");
        assert_eq!(super::rate(f64::INFINITY), "0");
    }
}
