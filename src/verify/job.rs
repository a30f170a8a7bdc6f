//! Verify as a library call: [`verify`] reads a [`VerifyJob`]'s input (an
//! esark archive or another tool's dump) as a restore would, connects the
//! target and compares, reporting through [`Events`] and stopping on its
//! [`CancellationToken`].

use std::sync::Arc;

use super::{run, VerifyError, VerifyReport};
use crate::archive::store::Location;
use crate::catalog::IndexSelector;
use crate::cluster::{Cluster, ClusterConfig};
use crate::job::{CancellationToken, Event, Events, JobKind, JobOutcome};
use crate::plan::{input, Renamer};

/// What to compare with what.
#[derive(Debug, Clone)]
pub struct VerifyJob {
    pub target: ClusterConfig,
    /// An esark archive (a folder, or a prefix of a bucket), or another
    /// tool's dump.
    pub input: Location,
    /// The index a foreign dump of one index went to (`--index`).
    pub index: Option<String>,
    pub selector: IndexSelector,
    /// The names the indices were restored under.
    pub renamer: Renamer,
    /// Compare templates too.
    pub templates: bool,
    /// Documents per page read from the target.
    pub page_size: usize,
    /// The longest document line accepted from the input.
    pub max_line: u64,
    /// What opens an encrypted archive (`--identity`).
    pub identity: Option<crate::archive::crypt::Identities>,
}

/// Compares `job.input` with `job.target`. The report says what differs;
/// an error is a verification that could not be made.
pub async fn verify(
    job: VerifyJob,
    events: &Events,
    cancel: CancellationToken,
) -> Result<VerifyReport, VerifyError> {
    events.emit(Event::JobStarted {
        kind: JobKind::Verify,
    });
    let result = compare(job, events, cancel).await;
    events.emit(Event::JobFinished {
        outcome: match &result {
            Ok(report) if report.matches() => JobOutcome::Succeeded,
            Ok(_) => JobOutcome::Failed {
                message: "the target differs from the archive".into(),
            },
            Err(VerifyError::Interrupted) => JobOutcome::Cancelled,
            Err(e) => JobOutcome::Failed {
                message: e.to_string(),
            },
        },
    });
    result
}

async fn compare(
    job: VerifyJob,
    events: &Events,
    cancel: CancellationToken,
) -> Result<VerifyReport, VerifyError> {
    let (mut plan, _) = input::from_location(
        &job.input,
        job.index.as_deref(),
        &job.selector,
        &job.renamer,
        false,
        job.identity.as_ref(),
        // One read of the data: nothing to keep.
        None,
    )
    .await?;
    input::limit_lines(&mut plan, job.max_line);
    let target = Arc::new(Cluster::connect(&job.target).await?);
    run(&plan, target, job.templates, job.page_size, events, &cancel).await
}
