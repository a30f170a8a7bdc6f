//! `compare`: the end-to-end benchmark of esark against elasticdump and raw
//! baselines, all on 127.0.0.1. Start it with `./benches/run.sh`, which
//! installs the pinned tools and builds esark first; `cargo bench` alone
//! only prints how.
//!
//! One binary, several roles (the first argument):
//!
//! | role | module |
//! |---|---|
//! | `run`: the orchestrator (servers, seeding, every row, the report) | [`steps`], [`report`] |
//! | `raw-scroll`, `raw-bulk`: the raw baselines, run as measured children | [`raw`] |
//! | `null-sink`: the null bulk sink server | [`null_sink`] |
//! | measuring a child: wall, CPU of its tree, peak RSS, deadline; `launch`: the launcher | [`measure`] |
//! | osmem and null-sink processes, the harness's own HTTP calls | [`servers`] |
//! | the S3 test server (moto) of the storage rows | [`moto`] |
//! | `gen-archive`: an esark archive of N documents written without a cluster | [`gen_archive`] |
//! | `count-proxy`: a proxy counting requests by kind (many-indices rows) | [`count_proxy`] |

mod count_proxy;
mod gen_archive;
mod measure;
mod moto;
mod null_sink;
mod raw;
mod report;
mod results;
mod sections;
mod servers;
mod steps;

use std::path::PathBuf;
use std::process::ExitCode;

/// Everything a `run` needs, resolved by run.sh and passed as flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// Documents to seed into the source.
    pub docs: u64,
    /// Runs of each esark and raw row (the median is reported).
    pub repeat: usize,
    /// Runs of each dump row (raw scroll, esark): a dump takes about a
    /// second, and some runs meet a burst of server CPU.
    pub dump_repeat: usize,
    /// Seed of the data set.
    pub seed: u64,
    /// Scratch directory (dumps, bulk bodies, logs); wiped per run.
    pub work: PathBuf,
    /// Where the report goes.
    pub results: PathBuf,
    pub esark: PathBuf,
    pub esark_seed: PathBuf,
    pub osmem: PathBuf,
    /// The npm prefix holding node_modules/elasticdump.
    pub elasticdump: PathBuf,
    /// `--quick`: only a label in the report.
    pub quick: bool,
    /// Which rows run (`--rows`).
    pub rows: Rows,
    /// The many-indices rows: indices, and documents in each.
    pub index_count: u64,
    pub index_docs: u64,
    /// Documents of the generated archive of the memory-flatness row.
    pub big_docs: u64,
    /// `moto_server` for the S3 rows, or why there is none (`--moto-skip`):
    /// those rows are then reported as skipped, with this reason.
    pub moto: Result<PathBuf, String>,
}

/// The rows a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Every row (the default).
    All,
    /// The storage rows only (S3, encryption) and the folder rows they are
    /// compared with: esark dump to a folder, esark restore → null sink.
    Storage,
    /// The many-small-indices rows only.
    Indices,
    /// esark restore → null sink from generated archives only.
    Flatness,
}

impl Rows {
    pub fn name(self) -> &'static str {
        match self {
            Rows::All => "all",
            Rows::Storage => "storage",
            Rows::Indices => "indices",
            Rows::Flatness => "flatness",
        }
    }
}

const USAGE: &str = "\
compare: esark's end-to-end benchmark. Run it with ./benches/run.sh [--quick] [--rows all|storage|indices|flatness].

  compare run --docs N --repeat R [--dump-repeat D] --seed S --work DIR --results FILE \\
              --esark BIN --esark-seed BIN --osmem BIN --elasticdump NPM_PREFIX \\
              (--moto BIN | --moto-skip REASON) [--rows all|storage|indices|flatness] \\
              [--indices N] [--index-docs N] [--big-docs N] [--quick]
  compare raw-scroll --source URL [--workers 2] [--page-size 5000]
  compare raw-bulk --target URL --dir DIR [--connections 2]
  compare null-sink
  compare count-proxy --upstream URL
  compare gen-archive --template DIR --output DIR --docs N --seed S
  compare launch PROGRAM [ARGS...]   (used by run: reports the rusage of PROGRAM)";

fn main() -> ExitCode {
    // `cargo bench` appends `--bench` to every bench binary's arguments
    // (the launcher is started directly and keeps all of its own).
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("launch")
        && args.last().map(String::as_str) == Some("--bench")
    {
        args.pop();
    }
    let result = match args.first().map(String::as_str) {
        Some("run") => parse_run(&args[1..]).and_then(|config| {
            measure::install_guards();
            steps::run(config)
        }),
        Some("raw-scroll") => raw::scroll_main(&args[1..]),
        Some("raw-bulk") => raw::bulk_main(&args[1..]),
        Some("null-sink") => return null_sink::main(),
        Some("count-proxy") => return count_proxy::main(&args[1..]),
        Some("gen-archive") => gen_archive::main(&args[1..]),
        Some("launch") => return measure::launch_main(&args[1..]),
        _ => {
            // Plain `cargo bench` / `cargo test --benches` land here.
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_run(args: &[String]) -> Result<Config, String> {
    let value = |name: &str| -> Result<String, String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .ok_or_else(|| format!("{name} is required\n\n{USAGE}"))
    };
    let number = |name: &str| -> Result<u64, String> {
        value(name)?.parse().map_err(|e| format!("{name}: {e}"))
    };
    let optional = |name: &str, default: u64| -> Result<u64, String> {
        match value(name) {
            Ok(_) => number(name),
            Err(_) => Ok(default),
        }
    };
    let config = Config {
        docs: number("--docs")?,
        repeat: number("--repeat")?.max(1) as usize,
        dump_repeat: match value("--dump-repeat") {
            Ok(_) => number("--dump-repeat")?.max(1) as usize,
            Err(_) => number("--repeat")?.max(1) as usize,
        },
        seed: number("--seed")?,
        work: value("--work")?.into(),
        results: value("--results")?.into(),
        esark: value("--esark")?.into(),
        esark_seed: value("--esark-seed")?.into(),
        osmem: value("--osmem")?.into(),
        elasticdump: value("--elasticdump")?.into(),
        quick: args.iter().any(|a| a == "--quick"),
        rows: match value("--rows").as_deref() {
            Err(_) | Ok("all") => Rows::All,
            Ok("storage") => Rows::Storage,
            Ok("indices") => Rows::Indices,
            Ok("flatness") => Rows::Flatness,
            Ok(other) => return Err(format!("--rows {other}: all, storage, indices or flatness")),
        },
        index_count: optional("--indices", 1000)?.max(1),
        index_docs: optional("--index-docs", 100)?.max(1),
        big_docs: optional("--big-docs", 1_000_000)?.max(10),
        moto: match (value("--moto"), value("--moto-skip")) {
            (Ok(bin), _) => Ok(bin.into()),
            (Err(_), Ok(reason)) => Err(reason),
            (Err(_), Err(_)) => Err("the harness was given no --moto".into()),
        },
    };
    if config.docs < 10 {
        return Err("--docs must be at least 10".into());
    }
    Ok(config)
}
