//! The `esark` binary: parse the command line, run it, map the outcome to an
//! exit code (0 success, 1 failure, 2 usage error). Errors are one line on
//! stderr.

use std::process::ExitCode;

use clap::Parser;

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
    match runtime.block_on(esark::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.line());
            ExitCode::from(e.code)
        }
    }
}
