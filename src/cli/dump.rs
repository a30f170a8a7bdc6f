//! `esark dump`: flags, their resolution into a [`DumpConfig`], and the
//! closing summary (a line, or JSON with `--json`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::progress::Progress;
use super::select::SelectArgs;
use super::{parse_size, print_stdout, CliError, ConnectionArgs, SourceArgs};
use crate::archive::compression::Compression;
use crate::archive::crypt::{Identities, Recipients};
use crate::archive::ArchiveError;
use crate::dump::{AskedOptions, DumpConfig, DumpError, DumpReport, SliceCount};
use crate::job::CancellationToken;
use crate::source::ReaderKind;

pub use crate::dump::{DEFAULT_FILE_SIZE, DEFAULT_PAGE_SIZE};

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Archive folder to create (must be empty or absent unless
    /// --overwrite), or `-`: one index as JSONL on stdout.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: PathBuf,
    /// Without --match: every index whose name does not start with `.`.
    #[command(flatten)]
    pub select: SelectArgs,
    /// Chunk compression [default: lz4]: zstd makes archives about 1.7
    /// times smaller for about twice the CPU of a dump and of a restore.
    #[arg(long, value_name = "lz4|zstd|gzip|none")]
    pub compression: Option<Compression>,
    /// Compression level (lz4 1-12, default 1; zstd 1-19, default 1;
    /// gzip 1-9, default 6).
    #[arg(long, value_name = "N")]
    pub level: Option<i32>,
    /// Slices per index (parallel readers), never more than its shards
    /// [default: auto].
    #[arg(long, value_name = "N|auto")]
    pub slices: Option<String>,
    /// Indices dumped at the same time.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub parallel: usize,
    /// Slices read at the same time, over all indices; raise it for a
    /// cluster with many nodes or cores.
    #[arg(long, default_value_t = crate::dump::DEFAULT_READERS, value_name = "N")]
    pub readers: usize,
    /// Documents per scroll page, fewer for big documents (pages of about
    /// 4 MiB) [default: 2000].
    #[arg(long, value_name = "N")]
    pub page_size: Option<usize>,
    /// Start a new chunk file once one reaches this size [default: 1GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub file_size: Option<u64>,
    /// Replace the archive in a non-empty output folder (it stays until the
    /// new one is whole); on object storage, what the prefix holds is
    /// deleted before the new archive is written.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Continue the interrupted dump in the output folder with the options
    /// it recorded (finished chunks are kept); an option given again must
    /// have its recorded value.
    #[arg(long)]
    pub resume: bool,
    /// How documents are read: point in time + search_after where the
    /// cluster has it (repeatable pages, resumable), else scroll
    /// [default: auto].
    #[arg(long, value_enum)]
    pub reader: Option<ReaderKind>,
    /// Dump only the documents matching a query: JSON (a search body with
    /// "query", as elasticdump's --searchBody, or a bare query), or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub query: Option<String>,
    /// Also dump the cluster's persistent settings.
    #[arg(long)]
    pub include_cluster_settings: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bars and no summary line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Encrypt every archive file but the manifest with age to this
    /// X25519 recipient (`age1…`); repeatable. A resumed dump keeps the
    /// recipients it started with.
    #[arg(long, value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Encrypt to the recipients in FILE (one a line; `#` comments and
    /// blank lines ignored); repeatable.
    #[arg(long, value_name = "FILE")]
    pub encrypt_to_file: Vec<PathBuf>,
    /// The age identity file that opens the checkpoint of an interrupted
    /// encrypted dump (with --resume).
    #[arg(long, value_name = "FILE", requires = "resume")]
    pub identity: Option<PathBuf>,
}

impl DumpArgs {
    pub fn resolve(&self) -> Result<DumpConfig, CliError> {
        let compression = self.compression.unwrap_or(Compression::DEFAULT);
        let slices = parse_slices(self.slices.as_deref().unwrap_or("auto"))?;
        let level = self.level.unwrap_or(compression.default_level());
        if !compression.level_range().contains(&level) {
            return Err(CliError::usage(anyhow::anyhow!(
                "invalid --level {level} for {}: {:?}",
                compression,
                compression.level_range()
            )));
        }
        for (flag, value) in [("parallel", self.parallel), ("readers", self.readers)] {
            if value == 0 {
                return Err(CliError::usage(anyhow::anyhow!(
                    "invalid --{flag} 0: at least 1"
                )));
            }
        }
        let page_size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        check_page_size(page_size)?;
        let query = self.query.as_deref().map(parse_query).transpose()?;
        let recipients =
            Recipients::parse(&self.encrypt_to, &self.encrypt_to_file).map_err(CliError::usage)?;
        if recipients.is_some() && self.output.as_os_str() == "-" {
            return Err(CliError::usage(anyhow::anyhow!(
                "--encrypt-to encrypts an archive's files; --output - writes no archive"
            )));
        }
        let identity =
            Identities::load_given(self.identity.as_deref()).map_err(CliError::failure)?;
        let output = super::parse_location(&self.output)?;
        Ok(DumpConfig {
            source: self.source.resolve(&self.connection)?,
            output,
            selector: self.select.resolve(false)?,
            compression,
            level,
            slices,
            parallel: self.parallel.max(1),
            readers: self.readers.max(1),
            page_size,
            file_size: self.file_size.unwrap_or(DEFAULT_FILE_SIZE),
            overwrite: self.overwrite,
            resume: self.resume,
            reader: self.reader.unwrap_or(ReaderKind::Auto),
            query: query.clone(),
            include_cluster_settings: self.include_cluster_settings,
            recipients,
            identity,
            asked: AskedOptions {
                compression: self.compression,
                level: self.level,
                slices: self.slices.clone(),
                page_size: self.page_size,
                file_size: self.file_size,
                match_: self.select.match_.clone(),
                exclude: self.select.exclude.clone(),
                query,
                reader: self.reader,
            },
        })
    }
}

/// A `--query` value: JSON or `@FILE`, a search body holding `"query"` or
/// a bare query object. Returns the raw JSON of the query object, as given
/// (numbers keep their text).
pub(crate) fn parse_query(arg: &str) -> Result<std::sync::Arc<str>, CliError> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(anyhow::anyhow!("cannot read --query file {path}: {e}"))
        })?,
        None => arg.to_string(),
    };
    let bad = |why: String| CliError::usage(anyhow::anyhow!("invalid --query: {why}"));
    let map: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON object: {e}")))?;
    match map.get("query") {
        Some(q) if q.get().trim_start().starts_with('{') => Ok(std::sync::Arc::from(q.get())),
        Some(_) => Err(bad("\"query\" is not an object".into())),
        None => Ok(std::sync::Arc::from(text.trim())),
    }
}

/// `auto` or a positive number.
pub(crate) fn parse_slices(s: &str) -> Result<SliceCount, CliError> {
    match s {
        "auto" => Ok(SliceCount::Auto),
        n => n
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .map(SliceCount::Fixed)
            .ok_or_else(|| {
                CliError::usage(anyhow::anyhow!(
                    "invalid --slices {n:?}: a positive number or auto"
                ))
            }),
    }
}

pub(crate) fn check_page_size(page_size: usize) -> Result<(), CliError> {
    if page_size == 0 || page_size > 10_000 {
        return Err(CliError::usage(anyhow::anyhow!(
            "invalid --page-size {page_size}: 1 to 10000 (the servers' default max_result_window)"
        )));
    }
    Ok(())
}

/// Cancels the run on the first Ctrl-C (SIGINT) or SIGTERM, the signal of
/// `kill`, `timeout`, systemd and Kubernetes: the run stops gracefully
/// (settings put back, progress kept for `--resume`). A second signal
/// exits at once.
pub fn interrupt_signal() -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let cancel_tx = cancel.clone();
    // Installed now, not when the task first runs: a signal that arrives
    // in between must not kill the process.
    let mut signals = StopSignals::install();
    let handle = tokio::spawn(async move {
        if let Some(name) = signals.next().await {
            cancel_tx.cancel();
            eprintln!(
                "interrupted by {name}: stopping (send it again, or press Ctrl-C, to stop at once)"
            );
            if let Some(again) = signals.next().await {
                std::process::exit(if again == "SIGTERM" { 143 } else { 130 });
            }
        }
    });
    (cancel, handle)
}

/// The signals that stop a run.
struct StopSignals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    fn install() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            StopSignals {
                unix: signal(SignalKind::interrupt())
                    .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                    .ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// The name of the next signal; `None` if none can be received.
    async fn next(&mut self) -> Option<&'static str> {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.unix {
            return tokio::select! {
                Some(()) = int.recv() => Some("Ctrl-C"),
                Some(()) = term.recv() => Some("SIGTERM"),
                else => None,
            };
        }
        tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
    }
}

pub async fn run(args: DumpArgs) -> Result<ExitCode, CliError> {
    let config = args.resolve()?;
    if args.output.as_os_str() == "-" {
        return run_pipe(&config).await;
    }
    let progress = Progress::new(args.quiet || args.json, args.quiet);
    let (cancel_rx, interrupt) = interrupt_signal();
    let result = crate::dump::run(&config, &progress.events(), cancel_rx).await;
    interrupt.abort();
    progress.finish();
    match result {
        Ok(report) => {
            if args.json {
                print_stdout(&format!("{}\n", summary_json(&report)))?;
            } else if !args.quiet {
                eprintln!("{}", summary_line(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(DumpError::Archive(
            e @ (ArchiveError::NotEmpty(_)
            | ArchiveError::UnfinishedDump(_)
            | ArchiveError::Locked { .. }
            | ArchiveError::NotADirectory(_)),
        )) => Err(CliError::usage(e)),
        Err(e @ DumpError::ResumeContradicts(_)) => Err(CliError::usage(e)),
        Err(e) => Err(CliError::failure(e)),
    }
}

/// `--output -`: one index as JSONL on stdout.
async fn run_pipe(config: &DumpConfig) -> Result<ExitCode, CliError> {
    let (cancel_rx, interrupt) = interrupt_signal();
    let mut stdout = tokio::io::BufWriter::with_capacity(1 << 20, tokio::io::stdout());
    let result = crate::dump::pipe::dump_to(config, &mut stdout, cancel_rx).await;
    interrupt.abort();
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e @ DumpError::Pipe(_)) if e.to_string().contains("writes exactly one") => {
            Err(CliError::usage(e))
        }
        Err(e) => Err(CliError::failure(e)),
    }
}

fn summary_line(report: &DumpReport) -> String {
    let m = &report.manifest;
    let docs = m.total_docs();
    let bytes: u64 = m.files().map(|f| f.bytes).sum();
    let secs = report.elapsed.as_secs_f64();
    let mut line = format!(
        "dumped {} indices, {docs} documents, {} in {secs:.1}s ({:.0} docs/s) to {}",
        m.indices.len(),
        bytesize::ByteSize::b(bytes).display().iec(),
        docs as f64 / secs.max(1e-9),
        report.output.display()
    );
    if !m.skipped.is_empty() {
        line.push_str(&format!("; skipped {} (closed)", m.skipped.len()));
    }
    line
}

/// The `--json` summary of a finished dump (also a service job's report).
pub(crate) fn summary_json(report: &DumpReport) -> serde_json::Value {
    let m = &report.manifest;
    json!({
        "status": "ok",
        "output": report.output.display().to_string(),
        "docs": m.total_docs(),
        "bytes": m.files().map(|f| f.bytes).sum::<u64>(),
        "indices": m.indices.iter().map(|i| json!({
            "name": i.name,
            "docs": i.docs,
            "expected_docs": i.expected_docs,
            "slices": i.slices,
            "files": i.files.len(),
            "bytes": i.files.iter().map(|f| f.bytes).sum::<u64>(),
        })).collect::<Vec<_>>(),
        "skipped": m.skipped,
        "elapsed_secs": report.elapsed.as_secs_f64(),
    })
}
