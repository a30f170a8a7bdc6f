//! A job's kind and status, and the one table of the status changes the
//! service makes (meilisearch's index-scheduler keeps its task states the
//! same way: stored before a task runs, changed only along known edges).
//!
//! ```text
//! queued ──> running ──> succeeded | partial | failed
//!   │           │──> cancelling ──> cancelled | interrupted | (finished anyway)
//!   │           │──> cancelled | interrupted
//!   └──> cancelled
//! interrupted | failed | cancelled ──(resume)──> queued
//! running | cancelling ──(found at startup)──> interrupted
//! ```

use serde::{Deserialize, Serialize};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A cluster dumped into an archive of the service.
    Export,
    /// An archive of the service restored into a cluster.
    Import,
    /// An archive compared with a cluster.
    Verify,
    /// A cluster streamed into another.
    Copy,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Export, Kind::Import, Kind::Verify, Kind::Copy];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Export => "export",
            Kind::Import => "import",
            Kind::Verify => "verify",
            Kind::Copy => "copy",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Whether an unfinished job of this kind continues from a checkpoint
    /// (a dump's checkpoint, a restore's state file).
    pub fn resumable(self) -> bool {
        matches!(self, Kind::Export | Kind::Import)
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    /// Finished, but some documents were rejected.
    Partial,
    Failed,
    /// Asked to stop; its requests in flight are finishing.
    Cancelling,
    Cancelled,
    /// Stopped by the service going away (SIGTERM, or a crash found at
    /// the next start): resumable.
    Interrupted,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Partial,
        Status::Failed,
        Status::Cancelling,
        Status::Cancelled,
        Status::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Partial => "partial",
            Status::Failed => "failed",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the job is over (for now: some of these resume).
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running | Status::Cancelling)
    }

    /// Whether the service may move a job from `self` to `to`: the state
    /// machine of the module doc, in one place.
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        match (self, to) {
            (Queued, Running | Cancelled) => true,
            (Running, Succeeded | Partial | Failed | Cancelling | Cancelled | Interrupted) => true,
            // A job asked to stop may still finish first: its outcome wins.
            (Cancelling, Succeeded | Partial | Failed | Cancelled | Interrupted) => true,
            (Interrupted | Failed | Cancelled, Queued) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_table() {
        use Status::*;
        let allowed = [
            (Queued, Running),
            (Queued, Cancelled),
            (Running, Succeeded),
            (Running, Partial),
            (Running, Failed),
            (Running, Cancelling),
            (Running, Cancelled),
            (Running, Interrupted),
            (Cancelling, Succeeded),
            (Cancelling, Partial),
            (Cancelling, Failed),
            (Cancelling, Cancelled),
            (Cancelling, Interrupted),
            (Interrupted, Queued),
            (Failed, Queued),
            (Cancelled, Queued),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
        // Finished jobs never run again without a resume (through queued).
        for done in [Succeeded, Partial] {
            assert!(Status::ALL.iter().all(|to| !done.can_become(*to)));
        }
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Status::parse("done"), None);
    }
}
