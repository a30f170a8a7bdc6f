//! `esark inspect`: the manifest as a table (or JSON) and a checksum of
//! every file. Exit 0 only when every file is intact and no index failed
//! during the dump.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{print_stdout, CliError};
use crate::archive::crypt::Identities;
use crate::inspect::InspectReport;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The archive folder.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the manifest and the check results as JSON.
    #[arg(long)]
    pub json: bool,
    /// An age identity file (`AGE-SECRET-KEY-1…` lines) that opens an
    /// encrypted archive: checked
    /// to open it (the checksums need no key).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

pub async fn run(args: InspectArgs) -> Result<ExitCode, CliError> {
    let identities = Identities::load_given(args.identity.as_deref()).map_err(CliError::failure)?;
    let location = super::parse_location(&args.dir)?;
    let report = crate::inspect::run_at(&location, identities)
        .await
        .map_err(CliError::failure)?;
    if args.json {
        let value = json!({
            "intact": report.is_intact(),
            "files_checked": report.checked,
            "problems": report.problems.iter().map(|(p, c)| json!({"path": p, "problem": c.to_string()})).collect::<Vec<_>>(),
            "manifest": report.manifest,
        });
        print_stdout(&format!("{value:#}\n"))?;
    } else {
        print_stdout(&table(&report))?;
    }
    let failed = &report.manifest.failed;
    if report.is_intact() && failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else if report.is_intact() {
        Err(CliError::failure(anyhow::anyhow!(
            "{}: every file is intact, but the dump failed on {} of its indices: {}",
            args.dir.display(),
            failed.len(),
            failed
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    } else {
        let (path, problem) = &report.problems[0];
        Err(CliError::failure(anyhow::anyhow!(
            "{}: {} of {} files failed the check; first: {path}: {problem}",
            args.dir.display(),
            report.problems.len(),
            report.checked
        )))
    }
}

fn table(report: &InspectReport) -> String {
    let m = &report.manifest;
    let mut out = String::new();
    let s = &m.source;
    out.push_str(&format!(
        "archive   {} v{} (esark {}), created {}, completed {}\n",
        m.format,
        u32::from(m.format_version),
        m.tool_version,
        m.created_at,
        m.completed_at
    ));
    out.push_str(&format!(
        "source    {} {} cluster {:?} ({}) at {}\n",
        s.flavor, s.version, s.cluster_name, s.cluster_uuid, s.url
    ));
    if let Some(e) = &m.encryption {
        // Public keys only: which identity the files need.
        out.push_str(&format!(
            "encrypted {} to {}\n",
            e.scheme,
            e.recipients.join(", ")
        ));
    }
    out.push_str(&format!(
        "options   compression {} level {}, slices {}, page size {}, file size {}\n\n",
        m.options.compression,
        m.options.level,
        m.options.slices,
        m.options.page_size,
        bytesize::ByteSize::b(m.options.file_size).display().iec()
    ));
    let width = m
        .indices
        .iter()
        .map(|i| label(i).chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "{:<width$}  {:>12}  {:>12}  {:>6}  {:>6}  {:>10}  check\n",
        "index", "docs", "_count", "slices", "files", "size"
    ));
    for index in &m.indices {
        let bytes: u64 = index.files.iter().map(|f| f.bytes).sum();
        let bad = report
            .problems
            .iter()
            .filter(|(p, _)| index.files.iter().any(|f| &f.path == p))
            .count();
        out.push_str(&format!(
            "{:<width$}  {:>12}  {:>12}  {:>6}  {:>6}  {:>10}  {}\n",
            label(index),
            index.docs,
            index.expected_docs,
            index.slices,
            index.files.len(),
            bytesize::ByteSize::b(bytes).display().iec().to_string(),
            if bad == 0 {
                "ok".to_string()
            } else {
                format!("{bad} BAD")
            }
        ));
    }
    out.push('\n');
    for file in &m.cluster_files {
        let bad = report.problems.iter().any(|(p, _)| p == &file.path);
        out.push_str(&format!(
            "{:<40}  {:>10}  {}\n",
            file.path,
            bytesize::ByteSize::b(file.bytes)
                .display()
                .iec()
                .to_string(),
            if bad { "BAD" } else { "ok" }
        ));
    }
    for skipped in &m.skipped {
        out.push_str(&format!(
            "skipped   {:?}: {}\n",
            skipped.name, skipped.reason
        ));
    }
    for failed in &m.failed {
        out.push_str(&format!(
            "FAILED    {:?}: not in the archive, the dump failed on it: {}\n",
            failed.name, failed.reason
        ));
    }
    out.push_str(&format!(
        "\n{} indices, {} documents, {} files checked, {}\n",
        m.indices.len(),
        m.total_docs(),
        report.checked,
        if report.is_intact() {
            "all intact".to_string()
        } else {
            format!("{} FAILED", report.problems.len())
        }
    ));
    for (path, problem) in &report.problems {
        out.push_str(&format!("BAD {path}: {problem}\n"));
    }
    out
}

/// An index's name; a data stream's is followed by `(data stream)`.
fn label(index: &crate::archive::manifest::IndexEntry) -> String {
    if index.data_stream {
        format!("{} (data stream)", index.name)
    } else {
        index.name.clone()
    }
}
