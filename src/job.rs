//! What every job shares: the typed [`Event`]s it reports through, and the
//! [`CancellationToken`] that stops it.
//!
//! A job (dump, restore, copy, verify) is a library call: it takes its
//! resolved config, an [`Events`] handle and a cancellation token, and
//! returns a typed report. It never prints and never draws a bar: the
//! events are its only voice while it runs. The command line renders them
//! as progress bars and warning lines (`cli::progress`); the HTTP service
//! stores them as a job's progress. Ctrl-C, SIGTERM and a service's cancel
//! request all cancel the token the same way: requests in flight finish,
//! settings are put back, and what was done is kept for `--resume`.
//!
//! # The events of one job
//!
//! ```text
//! JobStarted
//!   (per index) IndexPlanned -> IndexStarted -> IndexProgress* -> IndexFinished
//!   Warning*, Info*, DocumentRejected*    (any time)
//! JobFinished
//! ```
//!
//! A restore plans all its indices first; a dump plans each index when it
//! reaches it (its document count is read then). An index an interrupted
//! run already finished is planned and finished without being started.
//! [`Event::IndexProgress`] carries the index's running totals, not
//! increments: a slice read again from its start takes back what it had
//! counted, so the count can go down, and a consumer keeps the last one.
//! The `docs` of [`Event::IndexFinished`] are final: a dump's are the
//! documents in the archive (the manifest's count), a restore's those
//! accounted for (written, rejected or not delivered).

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;
pub use tokio_util::sync::CancellationToken;

/// Which job emits the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Dump,
    Restore,
    Copy,
    Verify,
}

/// How one index ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IndexOutcome {
    Done,
    Skipped { reason: String },
    Failed { reason: String },
}

/// How a job ended, as its report says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum JobOutcome {
    Succeeded,
    /// Finished, but some documents were rejected or some indices failed.
    Partial,
    Failed {
        message: String,
    },
    /// Stopped by its cancellation token; resumable where the job is.
    Cancelled,
}

/// One thing a job reports. Serialized with an `event` tag, as the
/// service stores it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    JobStarted {
        kind: JobKind,
    },
    /// An index the job will work on, with the documents it expects
    /// (`_count` for a dump or copy, the manifest's count for a restore).
    IndexPlanned {
        index: String,
        /// Where it goes, when that is another name (a renamed restore).
        target: Option<String>,
        docs: u64,
    },
    IndexStarted {
        index: String,
    },
    /// Running totals of the index in this job: documents, and the bytes
    /// this run moved (a dump: pages read, as JSON lines; a restore: bulk
    /// bodies sent). Documents a resumed run found done are counted
    /// without bytes.
    IndexProgress {
        index: String,
        docs: u64,
        bytes: u64,
    },
    IndexFinished {
        index: String,
        docs: u64,
        outcome: IndexOutcome,
    },
    /// Something the user should know that does not stop the job.
    Warning {
        message: String,
    },
    /// A fact worth a line (the kind of input detected), not a warning.
    Info {
        message: String,
    },
    /// A document the target refused for good (also in the rejects file).
    DocumentRejected {
        index: String,
        id: Option<String>,
        status: u16,
        reason: String,
    },
    JobFinished {
        outcome: JobOutcome,
    },
}

/// The sending side of a job's events: cheap to clone, shared by every
/// task of the job. Emitting never blocks and never fails; a consumer that
/// went away only stops hearing.
#[derive(Clone)]
pub struct Events {
    emit: Arc<dyn Fn(Event) + Send + Sync>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

impl Events {
    /// Events handed to `consume` on the emitting task, in order. It must
    /// be quick (a bar update, a counter): it runs on the job's tasks.
    pub fn new(consume: impl Fn(Event) + Send + Sync + 'static) -> Events {
        Events {
            emit: Arc::new(consume),
        }
    }

    /// Events sent into a channel. Unbounded, as emitting must not block
    /// a job: a job emits one event per page or bulk request, not per
    /// document, and the receiver is expected to keep up.
    pub fn channel() -> (Events, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Events::new(move |event| {
                let _ = tx.send(event);
            }),
            rx,
        )
    }

    /// Events nobody listens to.
    pub fn discard() -> Events {
        Events::new(|_| {})
    }

    pub fn emit(&self, event: Event) {
        (self.emit)(event)
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.emit(Event::Warning {
            message: message.into(),
        })
    }

    /// Plans `index` (emits [`Event::IndexPlanned`]).
    pub fn plan(&self, index: &str, target: Option<&str>, docs: u64) {
        self.emit(Event::IndexPlanned {
            index: index.to_string(),
            target: target.filter(|t| *t != index).map(str::to_string),
            docs,
        })
    }

    /// Starts `index` (emits [`Event::IndexStarted`]) and returns its
    /// counter, starting from `docs` and `bytes` already done.
    pub fn start(&self, index: &str, docs: u64, bytes: u64) -> IndexCounter {
        self.emit(Event::IndexStarted {
            index: index.to_string(),
        });
        let counter = IndexCounter {
            events: self.clone(),
            index: Arc::from(index),
            totals: Arc::new(Mutex::new((0, 0))),
        };
        if docs > 0 || bytes > 0 {
            counter.add(docs, bytes);
        }
        counter
    }

    pub fn finish(&self, index: &str, docs: u64, outcome: IndexOutcome) {
        self.emit(Event::IndexFinished {
            index: index.to_string(),
            docs,
            outcome,
        })
    }
}

/// The running totals of one index, shared by its slices or bulk
/// requests. Each change emits [`Event::IndexProgress`] with the new
/// totals while holding the lock, so that the events of concurrent
/// changes arrive in the order of their totals.
#[derive(Clone)]
pub struct IndexCounter {
    events: Events,
    index: Arc<str>,
    /// (documents, bytes).
    totals: Arc<Mutex<(u64, u64)>>,
}

impl IndexCounter {
    pub fn add(&self, docs: u64, bytes: u64) {
        self.change(|t| {
            t.0 += docs;
            t.1 += bytes;
        })
    }

    /// Takes back what was counted before a slice was read again.
    pub fn take_back(&self, docs: u64, bytes: u64) {
        self.change(|t| {
            t.0 = t.0.saturating_sub(docs);
            t.1 = t.1.saturating_sub(bytes);
        })
    }

    /// Documents counted so far.
    pub fn docs(&self) -> u64 {
        self.lock().0
    }

    fn change(&self, apply: impl FnOnce(&mut (u64, u64))) {
        let mut totals = self.lock();
        apply(&mut totals);
        self.events.emit(Event::IndexProgress {
            index: self.index.to_string(),
            docs: totals.0,
            bytes: totals.1,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        // A panic elsewhere while counting leaves numbers still worth
        // reporting.
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_carries_running_totals_that_can_go_back() {
        let (events, mut rx) = Events::channel();
        events.plan("logs", Some("logs"), 10);
        let counter = events.start("logs", 2, 20);
        counter.add(5, 50);
        counter.take_back(3, 30);
        events.finish("logs", 4, IndexOutcome::Done);
        let mut seen = Vec::new();
        while let Ok(e) = rx.try_recv() {
            seen.push(e);
        }
        assert_eq!(
            seen,
            vec![
                Event::IndexPlanned {
                    index: "logs".into(),
                    target: None,
                    docs: 10
                },
                Event::IndexStarted {
                    index: "logs".into()
                },
                Event::IndexProgress {
                    index: "logs".into(),
                    docs: 2,
                    bytes: 20
                },
                Event::IndexProgress {
                    index: "logs".into(),
                    docs: 7,
                    bytes: 70
                },
                Event::IndexProgress {
                    index: "logs".into(),
                    docs: 4,
                    bytes: 40
                },
                Event::IndexFinished {
                    index: "logs".into(),
                    docs: 4,
                    outcome: IndexOutcome::Done
                },
            ]
        );
    }

    #[test]
    fn events_serialize_with_a_tag() {
        let e = Event::IndexFinished {
            index: "a".into(),
            docs: 1,
            outcome: IndexOutcome::Failed {
                reason: "gone".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"index_finished","index":"a","docs":1,"outcome":{"status":"failed","reason":"gone"}}"#
        );
    }

    #[test]
    fn a_consumer_gone_does_not_stop_the_job() {
        let (events, rx) = Events::channel();
        drop(rx);
        events.warn("nobody hears this");
        events.start("a", 0, 0).add(1, 1);
    }
}
