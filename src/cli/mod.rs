//! The command line: `clap` structs that only parse ([`Cli`]), and the
//! resolution of their values into the configs the stages run with
//! ([`crate::dump::DumpConfig`]…): URLs parsed, credentials loaded, regexes
//! compiled. Output for people (summary lines) and for machines (`--json`)
//! is printed here too, and the events of a running job are drawn as
//! progress bars ([`progress`]).

mod cluster_args;
pub(crate) mod dump;
mod inspect;
pub mod jobs;
pub mod progress;
pub(crate) mod restore;
mod select;
pub(crate) mod verify;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::archive::store::Location;

pub use cluster_args::{ConnectionArgs, SourceArgs, TargetArgs};
pub use dump::interrupt_signal;

/// Streaming Elasticsearch/OpenSearch dump and restore.
#[derive(Debug, Parser)]
#[command(name = "esark", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream indices, their metadata and the cluster's templates into an archive.
    Dump(dump::DumpArgs),
    /// Rebuild indices, their metadata and templates from an archive.
    Restore(restore::RestoreArgs),
    /// Stream indices from one cluster to another, no files in between.
    Copy(restore::CopyArgs),
    /// Compare an archive with a cluster: documents, settings, mappings, aliases, templates.
    Verify(verify::VerifyArgs),
    /// Show an archive's manifest and check every file's checksum.
    Inspect(inspect::InspectArgs),
    /// Run the HTTP job service (export, import, verify and copy jobs).
    Serve(ServeArgs),
    /// A client of `esark serve`: submit, watch, list and control jobs; download and upload archives.
    Jobs(jobs::JobsArgs),
}

/// `esark serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The service's TOML config file (listener, state, archives, clusters, tokens).
    #[arg(long, value_name = "FILE")]
    pub config: std::path::PathBuf,
}

/// A failure with the exit code it maps to: 1 for a failed run, 2 for a
/// usage error found after parsing.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub error: anyhow::Error,
    /// The run already printed its `--json` summary (a verify that found
    /// differences): [`run`] does not print a failure summary as well.
    pub summarized: bool,
}

impl CliError {
    pub fn failure(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: 1,
            error: error.into(),
            summarized: false,
        }
    }

    pub fn usage(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: 2,
            error: error.into(),
            summarized: false,
        }
    }

    /// Marks an error whose run already printed its `--json` summary.
    pub fn summarized(mut self) -> CliError {
        self.summarized = true;
        self
    }

    /// The error as one line: causes joined by `: `, newlines folded.
    pub fn line(&self) -> String {
        format!("{:#}", self.error)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Parses an archive location (`--output`, `--input`, `inspect`'s
/// argument); a scheme esark does not serve is a usage error.
pub(crate) fn parse_location(raw: &std::path::Path) -> Result<Location, CliError> {
    Location::parse(raw.as_os_str()).map_err(CliError::usage)
}

/// Runs a parsed command line.
/// With `--json`, a run that fails with an error still prints a summary
/// on stdout: `{"status": "failed", "error": …, "exit_code": …}` (the
/// error line is on stderr as well).
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let json = match &cli.command {
        // `--output -`: stdout carries the documents.
        Command::Dump(args) => args.json && args.output.as_os_str() != "-",
        Command::Restore(args) => args.load.json,
        Command::Copy(args) => args.load.json,
        Command::Verify(args) => args.json,
        Command::Inspect(_) | Command::Serve(_) | Command::Jobs(_) => false,
    };
    let result = match cli.command {
        Command::Dump(args) => dump::run(args).await,
        Command::Restore(args) => restore::run_restore(args).await,
        Command::Copy(args) => restore::run_copy(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Inspect(args) => inspect::run(args).await,
        Command::Jobs(args) => jobs::run(args).await,
        // The service is another front end: `main` starts it.
        Command::Serve(_) => Err(CliError::usage(anyhow::anyhow!(
            "esark serve is started by the binary's main, not by cli::run"
        ))),
    };
    match result {
        Err(e) if json && !e.summarized => {
            let summary = serde_json::json!({
                "status": "failed",
                "error": e.line(),
                "exit_code": e.code,
            });
            print_stdout(&format!("{summary}\n"))?;
            Err(e)
        }
        other => other,
    }
}

/// Prints to stdout; a closed pipe (`esark … | head`) is not an error.
pub(crate) fn print_stdout(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::failure(anyhow::anyhow!("writing to stdout: {e}"))),
    }
}

/// `--max-line-size` of restore and verify.
#[derive(Debug, Clone, Args)]
pub struct LineLimitArgs {
    /// Longest archive line (one document) read; a longer one is refused,
    /// naming its file and line, before it is read into memory
    /// [default: 100MiB, the servers' http.max_content_length].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_line_size: Option<u64>,
}

impl LineLimitArgs {
    /// Sets the limit on every archive chunk of `plan`.
    /// The longest line accepted.
    pub(crate) fn max_line(&self) -> Result<u64, CliError> {
        let max = self
            .max_line_size
            .unwrap_or(crate::source::archive::DEFAULT_MAX_LINE);
        if max == 0 {
            return Err(CliError::usage(anyhow::anyhow!(
                "invalid --max-line-size 0: a size such as 100MiB"
            )));
        }
        Ok(max)
    }
}

/// Parses sizes such as `1GiB`, `64KiB`, `10MB` or `4096`.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let trimmed = s.trim();
    if let Ok(n) = trimmed.parse::<u64>() {
        return Ok(n);
    }
    trimmed
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("invalid size {s:?} (examples: 1GiB, 64KiB, 10MB, 4096)"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("lots").is_err());
    }
}
