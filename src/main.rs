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

fn main() -> ExitCode {
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
