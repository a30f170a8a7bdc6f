//! The `esark` binary: parse the command line, run it, map the outcome to an
//! exit code (0 success, 1 failure, 2 usage error). Errors are one line on
//! stderr.

use std::process::ExitCode;

use clap::Parser;

/// `esark serve`: runs until SIGTERM or Ctrl-C.
async fn serve(args: esark::cli::ServeArgs) -> Result<ExitCode, esark::cli::CliError> {
    let (shutdown, _signals) = esark::cli::interrupt_signal();
    esark::serve::run(&args.config, shutdown)
        .await
        .map(|()| ExitCode::SUCCESS)
        .map_err(esark::cli::CliError::failure)
}

/// Keeps freed memory in the process for reuse. glibc's malloc otherwise
/// maps each large block (a page of hits, a bulk body: 1-10 MiB) afresh or
/// trims it off its heap once freed, and the kernel then zeroes a fresh
/// page for every 4 KiB touched by the next one: 12 % of a dump's client
/// CPU (`clear_page_erms`) in a profile of 100,000 documents. The peak
/// memory stays what the pipeline's bounds make it; only its release to
/// the system is deferred to the end of the run.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = esark::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ESARK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match cli.command {
        esark::cli::Command::Serve(args) => runtime.block_on(serve(args)),
        _ => runtime.block_on(esark::cli::run(cli)),
    };
    // A read of standard input (`restore --input -` stopped while its pipe
    // is silent) blocks a runtime thread until the next line: do not wait
    // for it to exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.line());
            ExitCode::from(e.code)
        }
    }
}
