//! The restore report: per index, documents in the archive, written,
//! rejected, failed; per template, what happened. An empty rejects count
//! and no failure means a complete restore.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::templates::TemplateKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Restored,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexReport {
    /// The name in the archive (or on the source).
    pub name: String,
    /// The name on the target.
    pub target: String,
    /// The concrete index written (differs from `target` with `--atomic`).
    pub concrete: Option<String>,
    pub archive_docs: u64,
    pub written: u64,
    pub rejected: u64,
    pub failed: u64,
    pub status: Status,
    pub reason: Option<String>,
    /// What was adapted for the target (settings it refused), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Every alias membership this index's restore added or removed.
    #[serde(default)]
    pub alias_changes: Vec<AliasChange>,
    /// Indices deleted because this one replaced them (`--atomic --mode
    /// replace`: the old concrete index, or an earlier `-esark-<ts>` copy).
    #[serde(default)]
    pub removed_indices: Vec<String>,
    /// Aliases that already had other members on the target and that the
    /// restored index joined (a side copy in a production alias).
    #[serde(default)]
    pub joined_aliases: Vec<String>,
    /// Data files left out under `--force` because they are damaged: their
    /// documents are lost to this restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<LostFile>,
}

impl IndexReport {
    /// An entry for `name` restored as `target`, nothing done yet.
    pub fn new(name: &str, target: &str, archive_docs: u64) -> IndexReport {
        IndexReport {
            name: name.to_string(),
            target: target.to_string(),
            concrete: None,
            archive_docs,
            written: 0,
            rejected: 0,
            failed: 0,
            status: Status::Failed,
            reason: None,
            notes: Vec::new(),
            alias_changes: Vec::new(),
            removed_indices: Vec::new(),
            joined_aliases: Vec::new(),
            lost: Vec::new(),
        }
    }
}

/// One alias membership added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasChange {
    /// `add` or `remove`.
    pub action: String,
    pub alias: String,
    pub index: String,
}

pub use crate::plan::LostFile;

#[derive(Debug, Clone, Serialize)]
pub struct TemplateReport {
    pub kind: TemplateKind,
    pub name: String,
    pub status: Status,
    pub reason: Option<String>,
}

/// A lifecycle policy, pipeline, script, data stream or cluster setting.
#[derive(Debug, Clone, Serialize)]
pub struct ExtraReport {
    /// What it is, e.g. "ingest pipelines".
    pub kind: &'static str,
    pub name: String,
    pub status: Status,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub indices: Vec<IndexReport>,
    pub templates: Vec<TemplateReport>,
    /// Cluster metadata beyond templates.
    pub extras: Vec<ExtraReport>,
    /// Where rejected documents were written, if any was.
    pub rejects_file: Option<PathBuf>,
    /// What the operator should know although nothing failed (a target
    /// template that outranks the archive's, say).
    pub warnings: Vec<String>,
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
    /// Set when the run was stopped by Ctrl-C.
    pub interrupted: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl RestoreReport {
    pub fn failed(&self) -> bool {
        self.interrupted
            || self
                .indices
                .iter()
                .any(|i| i.status == Status::Failed || i.failed > 0)
            || self.templates.iter().any(|t| t.status == Status::Failed)
            || self.extras.iter().any(|t| t.status == Status::Failed)
    }

    pub fn rejected(&self) -> u64 {
        self.indices.iter().map(|i| i.rejected).sum()
    }

    /// 0 all restored, 1 failure, 3 finished with rejected documents.
    pub fn exit_code(&self) -> u8 {
        if self.failed() {
            1
        } else if self.rejected() > 0 {
            3
        } else {
            0
        }
    }

    pub fn status_word(&self) -> &'static str {
        match self.exit_code() {
            0 => "ok",
            3 => "rejected",
            _ => "failed",
        }
    }

    pub fn written(&self) -> u64 {
        self.indices.iter().map(|i| i.written).sum()
    }
}

/// The first thing that went wrong, as `index "logs": why`.
pub fn first_problem(report: &RestoreReport) -> String {
    report
        .indices
        .iter()
        .find(|i| i.status == Status::Failed || i.failed > 0)
        .map(|i| {
            format!(
                "index {:?}: {}",
                i.name,
                i.reason.as_deref().unwrap_or("failed")
            )
        })
        .or_else(|| {
            report
                .templates
                .iter()
                .find(|t| t.status == Status::Failed)
                .map(|t| {
                    format!(
                        "template {:?}: {}",
                        t.name,
                        t.reason.as_deref().unwrap_or("failed")
                    )
                })
        })
        .unwrap_or_else(|| "interrupted".into())
}
