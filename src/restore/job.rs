//! Restore and copy as library calls: [`restore`] takes a [`RestoreJob`]
//! (an input on disk: an esark archive of any format version, or a dump
//! another tool wrote) and [`copy`] a [`CopyJob`] (a source cluster); each
//! plans, checks the input whole before the target is touched, connects
//! the target, and runs the plan ([`super::run`]), reporting through
//! [`Events`] and stopping on its [`CancellationToken`]. The command line
//! and the HTTP service are two callers of these.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::report::RestoreReport;
use super::{RestoreConfig, RestoreError};
use crate::archive::store::spool::{Spool, SpoolConfig, SpoolStore};
use crate::archive::store::{ArchiveStore, Location};
use crate::archive::ArchiveError;
use crate::catalog::IndexSelector;
use crate::cluster::{Cluster, ClusterConfig};
use crate::job::{CancellationToken, Event, Events};
use crate::plan::{self, input, Renamer, SourceReading};

/// A restore of what is on disk at `input`.
#[derive(Debug, Clone)]
pub struct RestoreJob {
    pub config: RestoreConfig,
    /// An esark archive (a folder, or a prefix of a bucket), or another
    /// tool's dump (file or folder).
    pub input: Location,
    /// The index a foreign dump of one index goes to (`--index`).
    pub index: Option<String>,
    pub selector: IndexSelector,
    pub renamer: Renamer,
    /// Restore what is intact of a damaged archive (`--force`).
    pub force: bool,
    /// Read every selected line before the first write; `false` checks
    /// checksums only (`--no-validate`).
    pub validate: bool,
    /// The longest document line accepted (`--max-line-size`).
    pub max_line: u64,
    /// What opens an encrypted archive (`--identity`).
    pub identity: Option<crate::archive::crypt::Identities>,
    /// Where an archive on object storage is kept while it is restored,
    /// so that each object is downloaded once (`--spool-dir`,
    /// `--spool-limit`).
    pub spool: SpoolConfig,
}

/// A copy from a live cluster.
#[derive(Debug, Clone)]
pub struct CopyJob {
    pub config: RestoreConfig,
    pub source: ClusterConfig,
    pub selector: IndexSelector,
    pub renamer: Renamer,
    /// Slices, page size, reader, query.
    pub reading: SourceReading,
}

/// Restores `job.input` into `job.config.target`. Nothing is written
/// before the input is read whole (its manifest, selection, checksums and,
/// unless `validate` is off, every selected line). With a state file
/// (`config.state`, or the default one in the user's state folder when
/// `None`), an interrupted restore is continued by `config.resume`.
pub async fn restore(
    mut job: RestoreJob,
    events: &Events,
    cancel: CancellationToken,
) -> Result<RestoreReport, RestoreError> {
    // What was selected is recorded with the state: a resumed run must
    // select the same.
    let selection = [
        (
            "--match",
            job.selector
                .include
                .as_ref()
                .map(|r| r.as_str().to_string()),
        ),
        (
            "--exclude",
            job.selector
                .exclude
                .as_ref()
                .map(|r| r.as_str().to_string()),
        ),
        ("--index", job.index.clone()),
    ];
    for (flag, value) in selection {
        job.config
            .recorded
            .insert(flag.into(), value.unwrap_or_else(|| "(none)".into()));
    }
    job.config.recorded.insert(
        "--force".into(),
        if job.force { "on" } else { "off" }.into(),
    );
    // An archive on object storage is opened once, through a spool: what
    // the checks read whole (the metadata, the data) is read again from
    // the local copy (the parse, the load, the state file's name).
    let (spool, store) = match &job.input {
        Location::Object(_) => {
            let spool = open_spool(&job.spool)?;
            let mut store = job.input.open().await.map_err(ArchiveError::from)?;
            if let Some(spool) = &spool {
                store = Arc::new(SpoolStore::new(store, spool.clone()));
            }
            (spool, Some(store))
        }
        Location::Local(_) => (None, None),
    };
    let (mut plan, kind) = input::from_location(
        &job.input,
        job.index.as_deref(),
        &job.selector,
        &job.renamer,
        job.force,
        job.identity.as_ref(),
        store.clone(),
    )
    .await?;
    input::limit_lines(&mut plan, job.max_line);
    if job.config.data {
        if job.validate {
            plan::validate_data(&mut plan, job.force).await?
        } else {
            plan::check_data_digests(&mut plan, job.force).await?
        }
    }
    if let Some(kind) = kind {
        events.emit(Event::Info {
            message: format!("{}: importing {kind}", job.input),
        });
    }
    let target = Arc::new(Cluster::connect(&job.config.target).await?);
    if job.config.state.is_none() {
        job.config.state = Some(default_state_path(&job.input, store.as_deref(), &target).await?);
    }
    job.config.input = job.input.to_string();
    if let Some(spool) = &spool {
        tracing::info!(
            "spool: {} held in {} for the load",
            bytesize::ByteSize(spool.held()),
            spool.path().display()
        );
    }
    let report = super::run(&job.config, plan, target, events, cancel).await;
    if let Some(spool) = &spool {
        tracing::info!("spool: {} reads served from it", spool.served());
    }
    report
}

/// The spool of `config`. One that cannot be made in the default folder
/// is no spool (the objects are downloaded for each read); one in a folder
/// given by `--spool-dir` is an error.
fn open_spool(config: &SpoolConfig) -> Result<Option<Arc<Spool>>, RestoreError> {
    match Spool::open(config) {
        Ok(spool) => Ok(spool),
        Err(e) if config.dir.is_none() => {
            tracing::warn!("{e}; each object is downloaded for each read");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Copies what `job.selector` selects of `job.source` into
/// `job.config.target`: templates, cluster metadata, and per index its
/// metadata and documents, read with sliced scrolls or a point in time.
pub async fn copy(
    job: CopyJob,
    events: &Events,
    cancel: CancellationToken,
) -> Result<RestoreReport, RestoreError> {
    let source = Arc::new(Cluster::connect(&job.source).await?);
    let target = Arc::new(Cluster::connect(&job.config.target).await?);
    let plan =
        plan::from_cluster(source, &job.selector, &job.renamer, &job.reading, events).await?;
    super::run(&job.config, plan, target, events, cancel).await
}

/// The state file in the user's state folder, named after the input (its
/// path and its manifest, so a new archive at the same path is another
/// restore) and the target cluster (URL and uuid). Never in the archive:
/// it may be read-only, and reading a backup must not change it.
/// `opened` is the store of an input on object storage, as the restore
/// opened it.
async fn default_state_path(
    input: &Location,
    opened: Option<&dyn ArchiveStore>,
    target: &Cluster,
) -> Result<PathBuf, RestoreError> {
    let dir = super::state::default_dir()?;
    create_private_dir(&dir).map_err(|e| crate::archive::ArchiveError::io(&dir, e))?;
    let identity = match (input, opened) {
        (Location::Local(path), _) => std::fs::read(path.join("manifest.json")).unwrap_or_default(),
        (Location::Object(_), Some(store)) => store
            .get(crate::archive::MANIFEST_FILE)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default(),
        (Location::Object(_), None) => Vec::new(),
    };
    Ok(super::state::default_path(
        &dir,
        &input.to_path(),
        &identity,
        target.url().as_str(),
        &target.info().cluster_uuid,
    ))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
