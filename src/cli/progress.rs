//! Progress: a job's events drawn as bars per index and in total on a
//! terminal, with its warnings as lines above them; on anything else only
//! the warning lines (the caller prints one summary line at the end).
//!
//! Only the indices being worked on have a bar (a finished one is removed),
//! so that a run over many indices shows a bounded number of bars plus the
//! total; no bar is left above the summary. Rates are whole documents per
//! second, and a bar with nothing to expect shows a count, not a full bar.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::job::{Event, Events};

/// The set of bars for one run. Hidden when stderr is not a terminal or
/// `--quiet`/`--json` was given; the bars are then no-ops, and warnings
/// are plain lines on stderr (none with `--quiet`).
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
    total: ProgressBar,
    /// `--quiet`: warnings are not printed either.
    quiet: bool,
    /// Informational lines are printed (not with `--quiet` or `--json`).
    chatty: bool,
    /// The indices planned, by name: what each was expected to hold, what
    /// was counted on the total for it, and its bar once started.
    indices: Arc<Mutex<HashMap<String, Shown>>>,
}

/// What the bars show of one index.
#[derive(Default)]
struct Shown {
    label: Option<String>,
    planned: u64,
    counted: u64,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `hide_bars`: no bars (`--quiet`, `--json`); `quiet`: no warning
    /// lines either (`--quiet`).
    pub fn new(hide_bars: bool, quiet: bool) -> Progress {
        let indices = Arc::default();
        if hide_bars || !std::io::stderr().is_terminal() {
            return Progress {
                multi: None,
                // Counts kept though not drawn (a hidden bar's length
                // would not be).
                total: ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden()),
                quiet,
                chatty: !hide_bars,
                indices,
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
            chatty: true,
            indices,
        }
    }

    /// The events of a job, drawn as these bars and lines.
    pub fn events(&self) -> Events {
        let me = self.clone();
        Events::new(move |event| me.show(event))
    }

    fn show(&self, event: Event) {
        match event {
            Event::Warning { message } => self.println(&format!("warning: {message}")),
            Event::Info { message } if self.chatty => self.println(&message),
            Event::Info { .. } => {}
            Event::IndexPlanned {
                index,
                target,
                docs,
            } => {
                self.total.inc_length(docs);
                if docs > 0 {
                    self.total.set_style(style(TOTAL_BAR));
                }
                let mut indices = self.lock();
                let shown = indices.entry(index).or_default();
                shown.planned += docs;
                shown.label = target;
            }
            Event::IndexStarted { index } => {
                let mut indices = self.lock();
                let shown = indices.entry(index.clone()).or_default();
                if let Some(m) = &self.multi {
                    let bar = m.insert_before(&self.total, ProgressBar::new(shown.planned));
                    bar.set_style(style(if shown.planned > 0 {
                        INDEX_BAR
                    } else {
                        INDEX_COUNT
                    }));
                    bar.set_prefix(short(shown.label.as_deref().unwrap_or(&index)));
                    shown.bar = Some(bar);
                }
            }
            Event::IndexProgress { index, docs, .. } => {
                let mut indices = self.lock();
                let shown = indices.entry(index).or_default();
                self.recount(shown, docs);
                if let Some(bar) = &shown.bar {
                    bar.set_position(docs);
                }
            }
            Event::IndexFinished { index, docs, .. } => {
                let mut indices = self.lock();
                let shown = indices.entry(index).or_default();
                self.recount(shown, docs);
                // The total expects what the index turned out to hold.
                let length = self.total.length().unwrap_or(0);
                self.total
                    .set_length((length + docs).saturating_sub(shown.planned));
                shown.planned = docs;
                // Only the indices being worked on have a bar.
                if let Some(bar) = shown.bar.take() {
                    bar.finish_and_clear();
                }
            }
            Event::JobStarted { .. }
            | Event::JobFinished { .. }
            | Event::DocumentRejected { .. } => {}
        }
    }

    /// Moves the total by what the index's count changed.
    fn recount(&self, shown: &mut Shown, docs: u64) {
        if docs >= shown.counted {
            self.total.inc(docs - shown.counted);
        } else {
            self.total.dec(shown.counted - docs);
        }
        shown.counted = docs;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shown>> {
        self.indices.lock().unwrap_or_else(|p| p.into_inner())
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
        for shown in self.lock().values_mut() {
            if let Some(bar) = shown.bar.take() {
                bar.finish_and_clear();
            }
        }
        self.total.finish_and_clear();
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
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
    use super::*;
    use crate::job::IndexOutcome;

    #[test]
    fn the_total_follows_the_events_of_every_index() {
        let progress = Progress::new(true, true);
        let events = progress.events();
        events.plan("a", None, 10);
        events.plan("b", None, 5);
        assert_eq!(progress.total.length(), Some(15));
        let a = events.start("a", 0, 0);
        a.add(6, 60);
        a.take_back(2, 20);
        assert_eq!(progress.total.position(), 4);
        a.add(4, 40);
        events.finish("a", 8, IndexOutcome::Done);
        // A finished index expects what it held.
        assert_eq!(progress.total.position(), 8);
        assert_eq!(progress.total.length(), Some(13));
        events.finish(
            "b",
            0,
            IndexOutcome::Failed {
                reason: "gone".into(),
            },
        );
        assert_eq!(progress.total.length(), Some(8));
    }

    #[test]
    fn rates_are_whole_numbers() {
        assert_eq!(super::rate(1234.5678), "1235");
        assert_eq!(super::rate(0.4), "0");
        assert_eq!(super::rate(f64::NAN), "0");
        assert_eq!(super::rate(f64::INFINITY), "0");
    }
}
