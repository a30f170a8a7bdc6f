//! A job's progress, folded from its events ([`crate::job::Event`]): per
//! index what was planned and what is done, and the job's totals. Events
//! carry running totals, so the fold keeps the last of each index (a slice
//! read again may take documents back); bytes are this run's.

use serde::{Deserialize, Serialize};

use crate::job::{Event, IndexOutcome};

/// One index of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexProgress {
    pub name: String,
    /// `planned`, `running`, `done`, `skipped` or `failed`.
    pub status: String,
    pub docs_done: u64,
    pub docs_total: u64,
    #[serde(skip)]
    bytes: u64,
}

/// A job's progress as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub docs_done: u64,
    pub docs_total: u64,
    pub bytes_done: u64,
    pub indices: Vec<IndexProgress>,
    /// Documents the target refused for good.
    #[serde(default)]
    pub rejected: u64,
}

impl Progress {
    /// Takes one event into account.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::IndexPlanned { index, docs, .. } => {
                let entry = self.index(index);
                entry.docs_total = *docs;
                if entry.status.is_empty() {
                    entry.status = "planned".into();
                }
            }
            Event::IndexStarted { index } => self.index(index).status = "running".into(),
            Event::IndexProgress { index, docs, bytes } => {
                let entry = self.index(index);
                entry.docs_done = *docs;
                entry.bytes = *bytes;
            }
            Event::IndexFinished {
                index,
                docs,
                outcome,
            } => {
                let entry = self.index(index);
                entry.docs_done = *docs;
                entry.status = match outcome {
                    IndexOutcome::Done => "done",
                    IndexOutcome::Skipped { .. } => "skipped",
                    IndexOutcome::Failed { .. } => "failed",
                }
                .into();
            }
            Event::DocumentRejected { .. } => self.rejected += 1,
            _ => return,
        }
        self.docs_done = self.indices.iter().map(|i| i.docs_done).sum();
        self.docs_total = self.indices.iter().map(|i| i.docs_total).sum();
        self.bytes_done = self.indices.iter().map(|i| i.bytes).sum();
    }

    fn index(&mut self, name: &str) -> &mut IndexProgress {
        match self.indices.iter().position(|i| i.name == name) {
            Some(at) => &mut self.indices[at],
            None => {
                self.indices.push(IndexProgress {
                    name: name.to_string(),
                    ..Default::default()
                });
                self.indices.last_mut().expect("just pushed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Events;

    #[test]
    fn the_fold_keeps_the_last_totals() {
        let (events, mut rx) = Events::channel();
        events.plan("a", None, 10);
        events.plan("b", None, 5);
        let counter = events.start("a", 0, 0);
        counter.add(6, 600);
        counter.take_back(2, 200);
        events.finish("a", 10, IndexOutcome::Done);
        events.finish(
            "b",
            0,
            IndexOutcome::Failed {
                reason: "gone".into(),
            },
        );
        let mut progress = Progress::default();
        while let Ok(e) = rx.try_recv() {
            progress.apply(&e);
        }
        assert_eq!(
            (progress.docs_done, progress.docs_total, progress.bytes_done),
            (10, 15, 400)
        );
        let statuses: Vec<&str> = progress.indices.iter().map(|i| i.status.as_str()).collect();
        assert_eq!(statuses, ["done", "failed"]);
        let json = serde_json::to_value(&progress).unwrap();
        assert_eq!(json["indices"][0]["docs_total"], 10);
        assert!(json["indices"][0].get("bytes").is_none());
    }
}
