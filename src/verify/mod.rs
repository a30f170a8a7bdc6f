//! The verify command: prove that a cluster holds what an archive holds.
//!
//! Per index: the document count and an order-independent digest of
//! (`_id`, canonical `_source`) computed on both sides while streaming
//! ([`digest`]); where they differ, only the differing buckets are read
//! again to name the missing, changed and unexpected documents
//! ([`documents`]). Settings, mappings, aliases and templates are compared
//! too ([`metadata`]). Memory stays bounded: one page or line at a time,
//! plus the ids of the differing buckets. [`job::verify`] is the command as
//! a library call (input on disk, events, cancellation).

pub mod digest;
pub mod documents;
pub mod job;
pub mod metadata;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::catalog::{read_index_metadata, IndexMetadata};
use crate::cluster::{Cluster, ClusterError};
use crate::job::{CancellationToken, Events, IndexCounter, IndexOutcome};
use crate::plan::{IndexPlan, PlanError, RestorePlan};
use crate::source::{LineReadError, ReadError};
use documents::DocumentError;
use metadata::{compare_metadata, compare_templates};

/// Ids listed per kind of difference and index; the counts are exact.
pub const MAX_LISTED: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A file of the archive or dump could not be read.
    #[error(transparent)]
    Lines(#[from] LineReadError),
    #[error("{}: line {line}: {error}", path.display())]
    BadLine {
        path: PathBuf,
        line: u64,
        error: DocumentError,
    },
    #[error("index {index:?}: {error}")]
    BadDocument { index: String, error: DocumentError },
    /// Reading a slice of the target failed.
    #[error("{0}")]
    Slice(ReadError),
    #[error("{0}")]
    Panicked(tokio::task::JoinError),
    #[error("standard input can be read only once: verify needs an archive or a dump file")]
    StdinOnce,
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("interrupted: the verification did not finish")]
    Interrupted,
}

/// The comparison of one index.
#[derive(Debug, Clone, Serialize)]
pub struct IndexVerdict {
    pub name: String,
    pub target: String,
    pub archive_docs: u64,
    pub target_docs: u64,
    pub documents_match: bool,
    pub missing: Vec<String>,
    pub changed: Vec<String>,
    pub unexpected: Vec<String>,
    pub settings_match: bool,
    pub mappings_match: bool,
    pub aliases_match: bool,
    pub differences: Vec<String>,
    /// Why the index could not be compared (the others still are).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl IndexVerdict {
    fn new(index: &IndexPlan) -> IndexVerdict {
        IndexVerdict {
            name: index.name.clone(),
            target: index.target.clone(),
            archive_docs: index.docs,
            target_docs: 0,
            documents_match: false,
            missing: Vec::new(),
            changed: Vec::new(),
            unexpected: Vec::new(),
            settings_match: false,
            mappings_match: false,
            aliases_match: false,
            differences: Vec::new(),
            error: None,
        }
    }

    pub fn matches(&self) -> bool {
        self.error.is_none()
            && self.documents_match
            && self.settings_match
            && self.mappings_match
            && self.aliases_match
            && self.differences.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub indices: Vec<IndexVerdict>,
    pub templates_match: bool,
    pub differences: Vec<String>,
}

impl VerifyReport {
    pub fn matches(&self) -> bool {
        self.templates_match
            && self.differences.is_empty()
            && self.indices.iter().all(|i| i.matches())
    }
}

/// Compares `plan` (read from an archive) with `target`, reading the
/// target `page_size` documents at a time (at most each index's
/// `max_result_window`). An index that cannot be compared is reported as
/// such and the others are still compared. Each index is reported through
/// `events` (planned with the archive's count, progress of the target's
/// documents read, finished `Done` when it matches); cancelling `cancel`
/// stops with [`VerifyError::Interrupted`].
pub async fn run(
    plan: &RestorePlan,
    target: Arc<Cluster>,
    templates: bool,
    page_size: usize,
    events: &Events,
    cancel: &CancellationToken,
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        indices: Vec::new(),
        templates_match: true,
        differences: Vec::new(),
    };
    for (name, why) in &plan.damaged {
        report
            .differences
            .push(format!("{name}: damaged in the archive: {why}"));
    }
    if templates {
        let diffs = compare_templates(&plan.templates, &target).await?;
        report.templates_match = diffs.is_empty();
        report.differences.extend(diffs);
    }
    for index in &plan.indices {
        events.plan(&index.name, Some(&index.target), index.docs);
    }
    for index in &plan.indices {
        if cancel.is_cancelled() {
            return Err(VerifyError::Interrupted);
        }
        let counter = events.start(&index.name, 0, 0);
        let verdict = match verify_index(index, &target, page_size, (&counter, cancel)).await {
            Ok(v) => v,
            Err(VerifyError::Interrupted) => return Err(VerifyError::Interrupted),
            Err(e) => IndexVerdict {
                error: Some(e.to_string()),
                ..IndexVerdict::new(index)
            },
        };
        let outcome = match &verdict.error {
            Some(why) => IndexOutcome::Failed {
                reason: format!("not verified: {why}"),
            },
            None if verdict.matches() => IndexOutcome::Done,
            None => IndexOutcome::Failed {
                reason: "differs from the archive".into(),
            },
        };
        events.finish(&index.name, verdict.target_docs, outcome);
        report.indices.push(verdict);
    }
    Ok(report)
}

async fn verify_index(
    index: &IndexPlan,
    target: &Arc<Cluster>,
    page_size: usize,
    progress: (&IndexCounter, &CancellationToken),
) -> Result<IndexVerdict, VerifyError> {
    let mut verdict = IndexVerdict::new(index);
    let meta = if index.data_stream {
        // Its mappings and settings are its index template's, compared
        // with the templates; only its documents are compared here.
        if !target.data_stream_exists(&index.target).await? {
            verdict.differences.push(format!(
                "data stream {:?} does not exist on the target",
                index.target
            ));
            return Ok(verdict);
        }
        verdict.settings_match = true;
        verdict.mappings_match = true;
        verdict.aliases_match = true;
        IndexMetadata {
            settings: serde_json::Value::Null,
            mappings: serde_json::Value::Null,
            aliases: serde_json::Value::Null,
        }
    } else {
        let (meta, _) = match read_index_metadata(target, &index.target).await {
            Ok(m) => m,
            Err(e) if e.status() == Some(404) => {
                verdict.differences.push(format!(
                    "index {:?} does not exist on the target",
                    index.target
                ));
                return Ok(verdict);
            }
            Err(e) => return Err(e.into()),
        };
        compare_metadata(&index.meta, &meta, &index.target, &mut verdict);
        meta
    };

    documents::compare_documents(index, target, &meta, page_size, &mut verdict, progress).await?;
    Ok(verdict)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn verdict() -> IndexVerdict {
        IndexVerdict {
            name: "i".into(),
            target: "i".into(),
            archive_docs: 0,
            target_docs: 0,
            documents_match: true,
            missing: vec![],
            changed: vec![],
            unexpected: vec![],
            settings_match: false,
            mappings_match: false,
            aliases_match: false,
            differences: vec![],
            error: None,
        }
    }
}
