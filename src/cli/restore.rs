//! `esark restore` and `esark copy`: flags, resolution into a
//! [`RestoreConfig`], and the report (lines, or JSON with `--json`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use serde_json::json;

use super::dump::{check_page_size, interrupt_signal, parse_slices, DEFAULT_PAGE_SIZE};
use super::progress::Progress;
use super::select::{RenameArgs, SelectArgs};
use super::{parse_size, print_stdout, CliError, ConnectionArgs, SourceArgs, TargetArgs};
use crate::archive::reader;
use crate::cluster::Cluster;
use crate::restore::load::BulkSize;
use crate::restore::plan::{self, RestorePlan};
use crate::restore::report::{RestoreReport, Status};
use crate::restore::target::Mode;
use crate::restore::{RestoreConfig, RestoreError};
use crate::source::foreign::{self, ForeignError};
use crate::source::ReaderKind;

/// Default bulk concurrency: enough to keep a cluster's write queue busy
/// without queueing into 429s.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default documents per bulk request; `--bulk-bytes` (default 5 MiB, the
/// low end of the size Elasticsearch's tuning guide suggests) cuts first
/// for documents over ~5 KB.
///
/// Measured restoring the benchmark's 100,000 documents of ~0.9 KB into the
/// null sink (three runs each): 1000 documents per request used the same
/// CPU and wall time as 2000 or 5000 (0.25-0.33 s CPU), and peak memory
/// 21 MiB instead of 24 MiB (2000) or 39-46 MiB (5000 with 10 MiB bodies):
/// `--concurrency` requests are held while in flight, and what a slow
/// cluster does with a request does not depend on how it was cut.
pub const DEFAULT_BULK_DOCS: usize = 1000;

/// Options shared by `restore` and `copy`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub rename: RenameArgs,
    /// What to do when a target index already exists.
    #[arg(long, value_enum, default_value = "fail")]
    pub mode: Mode,
    /// Create indices with settings only; let the target infer mappings.
    #[arg(long)]
    pub no_mappings: bool,
    /// Restore metadata only (templates, indices, aliases), no documents.
    #[arg(long)]
    pub no_data: bool,
    /// Do not restore templates.
    #[arg(long)]
    pub no_templates: bool,
    /// Restore the indices without their aliases (a side copy stays out of
    /// production aliases).
    #[arg(long)]
    pub no_aliases: bool,
    /// Also put back persistent cluster settings (from an archive dumped
    /// with --include-cluster-settings).
    #[arg(long)]
    pub include_cluster_settings: bool,
    /// Load into a fresh index and switch the aliases (or an alias of the
    /// index's name) to it in one call at the end.
    #[arg(long)]
    pub atomic: bool,
    /// Bulk requests in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_name = "N")]
    pub concurrency: usize,
    /// Bytes per bulk request.
    #[arg(long, default_value = "5MiB", value_name = "SIZE", value_parser = parse_size)]
    pub bulk_bytes: u64,
    /// Documents per bulk request.
    #[arg(long, default_value_t = DEFAULT_BULK_DOCS, value_name = "N")]
    pub bulk_docs: usize,
    /// Maximum documents per second.
    #[arg(long, value_name = "DOCS_PER_S")]
    pub rate: Option<u64>,
    /// Maximum bytes per second (e.g. 5MiB).
    #[arg(long, value_name = "BYTES_PER_S", value_parser = parse_size)]
    pub rate_bytes: Option<u64>,
    /// Where rejected documents are written (created on the first reject).
    #[arg(long, default_value = "esark-rejects.jsonl", value_name = "FILE")]
    pub rejects: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bars and no report lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl LoadArgs {
    fn resolve(&self, connection: &ConnectionArgs) -> Result<RestoreConfig, CliError> {
        if self.atomic && self.mode == Mode::Merge {
            return Err(CliError::usage(anyhow::anyhow!(
                "--atomic loads into a fresh index: it cannot be combined with --mode merge"
            )));
        }
        if self.concurrency == 0 || self.bulk_docs == 0 || self.bulk_bytes == 0 {
            return Err(CliError::usage(anyhow::anyhow!(
                "--concurrency, --bulk-docs and --bulk-bytes must be positive"
            )));
        }
        if self.rate == Some(0) || self.rate_bytes == Some(0) {
            return Err(CliError::usage(anyhow::anyhow!(
                "--rate and --rate-bytes must be positive (leave them out for no limit)"
            )));
        }
        let target = self.target.resolve(connection)?;
        let on = |b: bool| if b { "on" } else { "off" }.to_string();
        let recorded = [
            ("--target", target.url.to_string()),
            (
                "--mode",
                self.mode
                    .to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default(),
            ),
            ("--atomic", on(self.atomic)),
            (
                "--rename",
                self.rename
                    .rename
                    .clone()
                    .unwrap_or_else(|| "(none)".into()),
            ),
            ("--prefix", or_none(&self.rename.prefix)),
            ("--suffix", or_none(&self.rename.suffix)),
            ("--no-mappings", on(self.no_mappings)),
            ("--no-data", on(self.no_data)),
            ("--no-templates", on(self.no_templates)),
            // Recorded only when given: a state written before the flag
            // existed still resumes.
            ("--no-aliases", on(self.no_aliases)),
            (
                "--include-cluster-settings",
                on(self.include_cluster_settings),
            ),
        ]
        .into_iter()
        .filter(|(k, v)| !(*k == "--no-aliases" && v == "off"))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Ok(RestoreConfig {
            target,
            mode: self.mode,
            atomic: self.atomic,
            mappings: !self.no_mappings,
            data: !self.no_data,
            templates: !self.no_templates,
            aliases: !self.no_aliases,
            concurrency: self.concurrency,
            bulk: BulkSize {
                bytes: usize::try_from(self.bulk_bytes).unwrap_or(usize::MAX),
                docs: self.bulk_docs,
            },
            rate_docs: self.rate,
            rate_bytes: self.rate_bytes,
            rejects: self.rejects.clone(),
            state: None,
            resume: false,
            discard_state: false,
            input: String::new(),
            recorded,
            cluster_settings: self.include_cluster_settings,
        })
    }
}

fn or_none(value: &str) -> String {
    if value.is_empty() {
        "(none)".into()
    } else {
        value.into()
    }
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive folder, or a dump written by another tool, recognised by
    /// its content: a multielasticdump folder, an elasticdump data file, a
    /// Kourou export (collection C of index I is restored into `I.C`) or a
    /// bulk NDJSON file.
    #[arg(long, short = 'i', value_name = "PATH")]
    pub input: PathBuf,
    /// The target index of an imported elasticdump or bulk file (instead of
    /// each document's `_index`), or of the one index of an imported folder.
    #[arg(long, value_name = "NAME")]
    pub index: Option<String>,
    /// Without --match: every index of the archive.
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Restore what is intact when some files are damaged (and report the rest).
    #[arg(long)]
    pub force: bool,
    /// Continue an interrupted restore: indices and chunks it finished are
    /// skipped, the rest is sent again (idempotent by id). The options that
    /// decide where and what is written must be the ones it was started with.
    #[arg(long)]
    pub resume: bool,
    /// Start over although an interrupted restore of this input into this
    /// cluster is recorded (its state is replaced; what it wrote stays).
    #[arg(long, conflicts_with = "resume")]
    pub discard_state: bool,
    /// Skip reading every data line before the first write (the checksums
    /// are still checked): faster on huge archives, but a broken line then
    /// stops the restore halfway.
    #[arg(long)]
    pub no_validate: bool,
    /// Where the restore records its progress [default: a file named after
    /// the input and the target in $ESARK_STATE_DIR, else
    /// $XDG_STATE_HOME/esark, else ~/.local/state/esark].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub lines: super::LineLimitArgs,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Without --match: every index whose name does not start with `.`.
    #[command(flatten)]
    pub select: SelectArgs,
    /// Slices per index on the source.
    #[arg(long, default_value = "auto", value_name = "N|auto")]
    pub slices: String,
    /// Documents per scroll page on the source.
    #[arg(long, default_value_t = DEFAULT_PAGE_SIZE, value_name = "N")]
    pub page_size: usize,
    /// How documents are read on the source (see `esark dump --help`).
    #[arg(long, value_enum, default_value = "auto")]
    pub reader: ReaderKind,
    /// Copy only the documents matching a query (as `esark dump --query`).
    #[arg(long, value_name = "JSON|@FILE")]
    pub query: Option<String>,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

pub async fn run_restore(args: RestoreArgs) -> Result<ExitCode, CliError> {
    let mut config = args.load.resolve(&args.connection)?;
    let selector = args.select.resolve(true)?;
    let renamer = args.load.rename.resolve()?;
    if args.index.as_deref() == Some("") {
        return Err(CliError::usage(anyhow::anyhow!("--index needs a name")));
    }
    if args.input.as_os_str() == "-" {
        let index = args.index.as_deref().ok_or_else(|| {
            CliError::usage(anyhow::anyhow!(
                "--input - reads one index from standard input: name it with --index"
            ))
        })?;
        // The header is checked before the target is even contacted: an
        // empty or foreign stream (a dump that failed) touches nothing.
        let input = crate::stream::StreamReader::open(tokio::io::stdin())
            .await
            .map_err(CliError::failure)?;
        // Nothing to resume from a pipe.
        let plan = plan::from_stdin(index, &renamer, crate::stream::StreamInput::new(input));
        let target = Arc::new(
            Cluster::connect(&config.target)
                .await
                .map_err(CliError::failure)?,
        );
        return execute(&args.load, &config, plan, target).await;
    }
    let (plan, foreign) = input_plan(
        &args.input,
        args.index.as_deref(),
        &selector,
        &renamer,
        args.force,
    )
    .await?;
    let mut plan = plan;
    args.lines.apply(&mut plan)?;
    args.select.keep_needed_templates(&mut plan);
    config.resume = args.resume;
    config.discard_state = args.discard_state;
    config.input = args.input.display().to_string();
    let selection = [
        ("--match", args.select.match_.clone()),
        ("--exclude", args.select.exclude.clone()),
        ("--index", args.index.clone()),
    ];
    for (flag, value) in selection {
        config
            .recorded
            .insert(flag.into(), value.unwrap_or_else(|| "(none)".into()));
    }
    config.recorded.insert(
        "--force".into(),
        if args.force { "on" } else { "off" }.into(),
    );
    // One pass over the selected data before the first write: lines and
    // checksums together, or checksums alone under --no-validate.
    if !args.load.no_data {
        if args.no_validate {
            plan::check_data_digests(&mut plan, args.force).await
        } else {
            plan::validate_data(&mut plan, args.force).await
        }
        .map_err(CliError::failure)?;
    }
    if let (Some(kind), false) = (foreign, args.load.quiet || args.load.json) {
        eprintln!("{}: importing {kind}", args.input.display());
    }
    let target = Arc::new(
        Cluster::connect(&config.target)
            .await
            .map_err(CliError::failure)?,
    );
    config.state = Some(match &args.state {
        Some(path) => path.clone(),
        None => default_state_path(&args.input, &target).map_err(CliError::failure)?,
    });
    execute(&args.load, &config, plan, target).await
}

/// The state file in the user's state folder, named after the input (its
/// path and its manifest, so a new archive at the same path is another
/// restore) and the target cluster (URL and uuid). Never in the archive:
/// it may be read-only, and reading a backup must not change it.
fn default_state_path(input: &std::path::Path, target: &Cluster) -> Result<PathBuf, RestoreError> {
    let dir = crate::restore::state::default_dir()?;
    create_private_dir(&dir).map_err(|e| crate::archive::ArchiveError::io(&dir, e))?;
    let identity = std::fs::read(input.join("manifest.json")).unwrap_or_default();
    Ok(crate::restore::state::default_path(
        &dir,
        input,
        &identity,
        target.url().as_str(),
        &target.info().cluster_uuid,
    ))
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Reads what `--input` names: an esark archive (any format version) or a
/// dump another tool wrote (detected). Also returns the detected kind.
pub(crate) async fn input_plan(
    input: &std::path::Path,
    index: Option<&str>,
    selector: &crate::catalog::IndexSelector,
    renamer: &crate::restore::plan::Renamer,
    force: bool,
) -> Result<(RestorePlan, Option<foreign::ForeignKind>), CliError> {
    let kind = foreign::detect(input).await;
    if kind.is_none() {
        if !foreign::looks_like_archive(input).await {
            return Err(CliError::failure(ForeignError::Unrecognized(
                input.to_path_buf(),
            )));
        }
        if index.is_some() {
            return Err(CliError::usage(anyhow::anyhow!(
                "--index applies to dumps of other tools, not to an esark archive: use --rename"
            )));
        }
    }
    // The input is checked whole before the target is even contacted.
    let (plan, names) = match kind {
        Some(kind) => (
            crate::restore::plan::from_foreign(input, kind, index, selector, renamer)
                .await
                .map_err(CliError::failure)?,
            None,
        ),
        None => {
            let archive = reader::open(input).await.map_err(CliError::failure)?;
            let m = archive.manifest();
            let names = m.indices.iter().map(|i| i.name.clone());
            let names: Vec<String> = names
                .chain(m.failed.iter().map(|f| f.name.clone()))
                .collect();
            (
                plan::from_archive(&archive, selector, renamer, force)
                    .await
                    .map_err(CliError::failure)?,
                Some(names),
            )
        }
    };
    if plan.indices.is_empty() && plan.damaged.is_empty() {
        super::select::refuse_empty(selector, names.as_deref(), input)?;
    }
    Ok((plan, kind))
}

pub async fn run_copy(args: CopyArgs) -> Result<ExitCode, CliError> {
    let config = args.load.resolve(&args.connection)?;
    let selector = args.select.resolve(false)?;
    let renamer = args.load.rename.resolve()?;
    let slices = parse_slices(&args.slices)?;
    check_page_size(args.page_size)?;
    let source_config = args.source.resolve(&args.connection)?;
    let source = Arc::new(
        Cluster::connect(&source_config)
            .await
            .map_err(CliError::failure)?,
    );
    let target = Arc::new(
        Cluster::connect(&config.target)
            .await
            .map_err(CliError::failure)?,
    );
    let progress = Progress::new(args.load.quiet || args.load.json, args.load.quiet);
    let plan = plan::from_cluster(
        source,
        &selector,
        &renamer,
        slices,
        args.page_size,
        args.reader,
        args.query
            .as_deref()
            .map(super::dump::parse_query)
            .transpose()?,
        &progress.events(),
    )
    .await
    .map_err(CliError::failure)?;
    execute(&args.load, &config, plan, target).await
}

async fn execute(
    args: &LoadArgs,
    config: &RestoreConfig,
    plan: RestorePlan,
    target: Arc<Cluster>,
) -> Result<ExitCode, CliError> {
    if let Some((first, second, name)) = plan.target_clash() {
        return Err(CliError::usage(anyhow::anyhow!(
            "indices {first:?} and {second:?} would both be restored as {name:?}; nothing was written (change --rename, or select one of them)"
        )));
    }
    let progress = Progress::new(args.quiet || args.json, args.quiet);
    let piped = plan
        .indices
        .iter()
        .any(|i| matches!(i.data, plan::DataOrigin::Stdin(_)));
    let (cancel, interrupt) = interrupt_signal();
    let result = crate::restore::run(config, plan, target, &progress.events(), cancel).await;
    interrupt.abort();
    progress.finish();
    let report = result.map_err(|e| match e {
        RestoreError::Unfinished { .. } | RestoreError::OptionsDiffer { .. } => CliError::usage(e),
        e => CliError::failure(e),
    })?;
    if args.json {
        print_stdout(&format!("{}\n", report_json(&report)))?;
    } else if !args.quiet {
        for line in report_lines(&report) {
            eprintln!("{line}");
        }
    }
    match report.exit_code() {
        0 => Ok(ExitCode::SUCCESS),
        code => {
            if report.interrupted && piped {
                eprintln!("error: interrupted: the restore from standard input is incomplete; run the pipe again with --mode replace");
            } else if report.interrupted && config.state.is_some() {
                eprintln!("error: interrupted: the restore is incomplete; continue it with `esark restore --resume` and the same options");
            } else if report.interrupted {
                eprintln!("error: interrupted: the copy is incomplete; run it again with --mode merge to finish it");
            } else if code == 1 {
                eprintln!(
                    "error: the restore did not complete: {}",
                    crate::restore::report::first_problem(&report)
                );
            }
            Ok(ExitCode::from(code))
        }
    }
}

/// `created`, `skipped: why`, `FAILED: why`: what happened to a template
/// or an extra, as the end of a sentence.
fn outcome(status: Status, reason: Option<&str>) -> String {
    match (status, reason) {
        (Status::Restored, Some(how)) => how.to_string(),
        (Status::Restored, None) => "restored".into(),
        (Status::Skipped, Some(why)) => format!("skipped: {why}"),
        (Status::Skipped, None) => "skipped".into(),
        (Status::Failed, Some(why)) => format!("FAILED: {why}"),
        (Status::Failed, None) => "FAILED".into(),
    }
}

fn report_lines(report: &RestoreReport) -> Vec<String> {
    let mut lines = Vec::new();
    // What the target does not offer is one line for the run, not one per
    // kind or item.
    let not_offered = |e: &&crate::restore::report::ExtraReport| {
        e.status == Status::Skipped
            && e.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("the target does not offer"))
    };
    let mut kinds: Vec<&str> = report
        .extras
        .iter()
        .filter(not_offered)
        .map(|e| e.kind)
        .collect();
    kinds.dedup();
    if !kinds.is_empty() {
        let items = report.extras.iter().filter(not_offered).count();
        lines.push(format!(
            "skipped {items} items: the target does not offer {}",
            kinds.join(", ")
        ));
    }
    for e in &report.extras {
        if e.status == Status::Restored || not_offered(&e) {
            continue;
        }
        lines.push(format!(
            "{} {:?}: {}",
            e.kind,
            e.name,
            outcome(e.status, e.reason.as_deref())
        ));
    }
    for t in &report.templates {
        lines.push(format!(
            "template {:?} ({}): {}",
            t.name,
            format!("{:?}", t.kind).to_lowercase(),
            outcome(t.status, t.reason.as_deref())
        ));
    }
    for i in &report.indices {
        let name = if i.name == i.target {
            format!("{:?}", i.name)
        } else {
            format!("{:?} -> {:?}", i.name, i.target)
        };
        let status = match i.status {
            Status::Restored => "restored",
            Status::Skipped => "skipped",
            Status::Failed => "FAILED",
        };
        let mut line = format!(
            "{status} {name}: {} of {} documents written",
            i.written, i.archive_docs
        );
        if i.rejected > 0 {
            line.push_str(&format!(", {} rejected", i.rejected));
        }
        if i.failed > 0 {
            line.push_str(&format!(", {} failed", i.failed));
        }
        if let Some(reason) = &i.reason {
            line.push_str(&format!(" ({reason})"));
        }
        for note in &i.notes {
            line.push_str(&format!("; {note}"));
        }
        lines.push(line);
        for index in &i.removed_indices {
            lines.push(format!("  removed index {index:?} (replaced)"));
        }
        for c in &i.alias_changes {
            let verb = if c.action == "add" {
                "added"
            } else {
                "removed"
            };
            lines.push(format!("  alias {:?}: {verb} {:?}", c.alias, c.index));
        }
        for alias in &i.joined_aliases {
            lines.push(format!(
                "  note: joined the existing alias {alias:?}, which has other members (--no-aliases keeps it out)"
            ));
        }
        for lost in &i.lost {
            lines.push(format!(
                "  lost: {} documents of {} ({})",
                lost.docs, lost.file, lost.problem
            ));
        }
    }
    for warning in &report.warnings {
        lines.push(format!("warning: {warning}"));
    }
    let failed: u64 = report.indices.iter().map(|i| i.failed).sum();
    let mut summary = format!(
        "{} indices, {} documents written, {} rejected{} in {:.1}s",
        report.indices.len(),
        report.written(),
        report.rejected(),
        if failed > 0 {
            format!(", {failed} not delivered")
        } else {
            String::new()
        },
        report.elapsed.as_secs_f64()
    );
    if let Some(path) = &report.rejects_file {
        summary.push_str(&format!("; rejected documents are in {}", path.display()));
    }
    lines.push(summary);
    lines
}

fn report_json(report: &RestoreReport) -> serde_json::Value {
    json!({
        "status": report.status_word(),
        "indices": report.indices,
        "templates": report.templates,
        "extras": report.extras,
        "rejects_file": report.rejects_file,
        "warnings": report.warnings,
        "written": report.written(),
        "rejected": report.rejected(),
        "failed": report.indices.iter().map(|i| i.failed).sum::<u64>(),
        "interrupted": report.interrupted,
        "elapsed_secs": report.elapsed.as_secs_f64(),
    })
}
