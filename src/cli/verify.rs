//! `esark verify`: compare an archive with a cluster; exit 0 only when
//! everything matches.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::select::{RenameArgs, SelectArgs};
use super::{print_stdout, CliError, ConnectionArgs, TargetArgs};
use crate::archive::crypt::Identities;
use crate::plan::PlanError;
use crate::verify::job::VerifyJob;
use crate::verify::{VerifyError, VerifyReport};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The archive folder.
    #[arg(long, short = 'i', value_name = "DIR")]
    pub input: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Without --match: every index of the archive.
    #[command(flatten)]
    pub select: SelectArgs,
    /// The same renaming the restore used.
    #[command(flatten)]
    pub rename: RenameArgs,
    /// For a dump of another tool: the index its documents went to (as
    /// with `restore --index`).
    #[arg(long, value_name = "NAME")]
    pub index: Option<String>,
    /// Do not compare templates.
    #[arg(long)]
    pub no_templates: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Documents per page read from the target, never more than an
    /// index's max_result_window [default: 2000].
    #[arg(long, value_name = "N")]
    pub page_size: Option<usize>,
    #[command(flatten)]
    pub lines: super::LineLimitArgs,
    /// Print the comparison as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// An age identity file (`AGE-SECRET-KEY-1…` lines) that opens an
    /// encrypted archive.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

pub async fn run(args: VerifyArgs) -> Result<ExitCode, CliError> {
    let input = super::parse_location(&args.input)?;
    let selector = args.select.resolve(true)?;
    let renamer = args.rename.resolve()?;
    let target_config = args.target.resolve(&args.connection)?;
    let page_size = args.page_size.unwrap_or(super::dump::DEFAULT_PAGE_SIZE);
    super::dump::check_page_size(page_size)?;
    let job = VerifyJob {
        target: target_config,
        input,
        index: args.index.clone(),
        selector,
        renamer,
        templates: !args.no_templates,
        page_size,
        max_line: args.lines.max_line()?,
        identity: Identities::load_given(args.identity.as_deref()).map_err(CliError::failure)?,
    };
    let progress = super::progress::Progress::new(args.json, false);
    let (cancel, interrupt) = super::dump::interrupt_signal();
    let result = crate::verify::job::verify(job, &progress.events(), cancel).await;
    interrupt.abort();
    progress.finish();
    let report = result.map_err(|e| match e {
        VerifyError::Plan(PlanError::IndexOnArchive) => CliError::usage(e),
        e => CliError::failure(e),
    })?;
    if args.json {
        print_stdout(&format!("{}\n", report_json(&report)))?;
    } else {
        print_stdout(&text(&report))?;
    }
    if report.matches() {
        Ok(ExitCode::SUCCESS)
    } else {
        let failed = report.indices.iter().filter(|i| i.error.is_some()).count();
        let differing = report.indices.iter().filter(|i| !i.matches()).count() - failed;
        Err(CliError::failure(anyhow::anyhow!(
            "the target differs from the archive: {differing} of {} indices differ{}{}",
            report.indices.len(),
            if failed > 0 {
                format!(", {failed} could not be verified")
            } else {
                String::new()
            },
            if report.differences.is_empty() {
                String::new()
            } else {
                format!(", {} cluster-level differences", report.differences.len())
            }
        ))
        .summarized())
    }
}

/// The `--json` comparison (also a service job's report).
pub(crate) fn report_json(report: &VerifyReport) -> serde_json::Value {
    json!({
        "status": if report.matches() { "match" } else { "differ" },
        "indices": report.indices,
        "templates_match": report.templates_match,
        "differences": report.differences,
    })
}

fn text(report: &VerifyReport) -> String {
    let mut out = String::new();
    for d in &report.differences {
        out.push_str(&format!("DIFFERS {d}\n"));
    }
    for i in &report.indices {
        let name = if i.name == i.target {
            format!("{:?}", i.name)
        } else {
            format!("{:?} -> {:?}", i.name, i.target)
        };
        if let Some(why) = &i.error {
            out.push_str(&format!("FAILED {name}: not verified: {why}\n"));
        } else if i.matches() {
            out.push_str(&format!(
                "ok {name}: {} documents, settings, mappings and aliases match\n",
                i.archive_docs
            ));
        } else {
            out.push_str(&format!("DIFFERS {name}:\n"));
            for d in &i.differences {
                out.push_str(&format!("  {d}\n"));
            }
        }
    }
    out.push_str(if report.matches() {
        "the target matches the archive\n"
    } else {
        "the target does NOT match the archive\n"
    });
    out
}
