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
use crate::archive::crypt::Identities;
use crate::archive::store::spool::SpoolConfig;
use crate::cluster::Cluster;
use crate::job::{CancellationToken, Events};
use crate::plan::{self, SourceReading};
use crate::restore::job::{self, CopyJob, RestoreJob};
use crate::restore::load::BulkSize;
use crate::restore::report::{RestoreReport, Status};
use crate::restore::target::Mode;
use crate::restore::{RestoreConfig, RestoreError};
use crate::source::ReaderKind;

pub use crate::restore::{DEFAULT_BULK_DOCS, DEFAULT_CONCURRENCY};

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
    pub(crate) fn resolve(&self, connection: &ConnectionArgs) -> Result<RestoreConfig, CliError> {
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
    /// An age identity file (`AGE-SECRET-KEY-1…` lines) that opens an
    /// encrypted archive.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Where an archive on object storage is kept, as stored (encrypted
    /// if it is), between the check before the first write and the load,
    /// so that each object is downloaded once; removed at the end
    /// [default: $XDG_CACHE_HOME/esark/spool, else ~/.cache/esark/spool;
    /// none if that is in memory (tmpfs)].
    #[arg(long, value_name = "DIR", env = "ESARK_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// The most the spool holds; objects beyond it are downloaded again
    /// for the load. 0 turns the spool off [default: half the free space
    /// of the spool's folder].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub spool_limit: Option<u64>,
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
        return execute(&args.load, Run::Pipe, |events, cancel| async move {
            crate::restore::run(&config, plan, target, &events, cancel).await
        })
        .await;
    }
    let input = super::parse_location(&args.input)?;
    config.resume = args.resume;
    config.discard_state = args.discard_state;
    config.state = args.state.clone();
    let job = RestoreJob {
        config: config.clone(),
        input,
        index: args.index.clone(),
        selector,
        renamer,
        force: args.force,
        validate: !args.no_validate,
        max_line: args.lines.max_line()?,
        identity: Identities::load_given(args.identity.as_deref()).map_err(CliError::failure)?,
        spool: SpoolConfig {
            dir: args.spool_dir.clone(),
            limit: args.spool_limit,
        },
    };
    execute(&args.load, Run::Restore, |events, cancel| async move {
        job::restore(job, &events, cancel).await
    })
    .await
}

pub async fn run_copy(args: CopyArgs) -> Result<ExitCode, CliError> {
    let config = args.load.resolve(&args.connection)?;
    check_page_size(args.page_size)?;
    let job = CopyJob {
        config: config.clone(),
        source: args.source.resolve(&args.connection)?,
        selector: args.select.resolve(false)?,
        renamer: args.load.rename.resolve()?,
        reading: SourceReading {
            slices: parse_slices(&args.slices)?,
            page_size: args.page_size,
            reader: args.reader,
            query: args
                .query
                .as_deref()
                .map(super::dump::parse_query)
                .transpose()?,
        },
    };
    execute(&args.load, Run::Copy, |events, cancel| async move {
        job::copy(job, &events, cancel).await
    })
    .await
}

/// Which job [`execute`] runs: what an interrupted one says to do next.
#[derive(PartialEq)]
enum Run {
    /// A restore from standard input.
    Pipe,
    Restore,
    Copy,
}

/// Runs a restore or copy job with bars, Ctrl-C and the report printed.
async fn execute<F, Fut>(args: &LoadArgs, run: Run, job: F) -> Result<ExitCode, CliError>
where
    F: FnOnce(Events, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<RestoreReport, RestoreError>>,
{
    let progress = Progress::new(args.quiet || args.json, args.quiet);
    let (cancel, interrupt) = interrupt_signal();
    let result = job(progress.events(), cancel).await;
    interrupt.abort();
    progress.finish();
    let report = result.map_err(|e| {
        if e.is_usage() {
            CliError::usage(e)
        } else {
            CliError::failure(e)
        }
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
            if report.interrupted && run == Run::Pipe {
                eprintln!("error: interrupted: the restore from standard input is incomplete; run the pipe again with --mode replace");
            } else if report.interrupted && run == Run::Restore {
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

/// The `--json` report of a restore or copy (also a service job's report).
pub(crate) fn report_json(report: &RestoreReport) -> serde_json::Value {
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
