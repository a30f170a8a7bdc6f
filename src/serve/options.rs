//! A job's `options` object turned into the config its library call runs
//! with, through the command line's own parsing: `{"page_size": 500}`
//! becomes `--page-size=500` and is parsed by the clap struct of the
//! matching command (`DumpArgs`, `RestoreArgs`, `CopyArgs`, `VerifyArgs`)
//! and resolved as the CLI resolves it, so names, defaults and checks are
//! the CLI's. `true` is the bare flag, `false` and `null` leave it out, an
//! array repeats it.
//!
//! Only options that shape the work are accepted, per kind ([`allowed`]).
//! Whatever reaches the server's files, connections or secrets is refused
//! ([`FORBIDDEN`]): the server sets the archive location, the state and
//! rejects files, and the clusters (with their credentials) come from its
//! config, replacing whatever the parse produced.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::{Map, Value};

use super::status::Kind;
use crate::archive::store::spool::SpoolConfig;
use crate::archive::store::{Location, ObjectLocation};
use crate::cli::dump::DumpArgs;
use crate::cli::restore::{CopyArgs, RestoreArgs};
use crate::cli::verify::VerifyArgs;
use crate::cli::CliError;
use crate::cluster::ClusterConfig;
use crate::dump::DumpConfig;
use crate::plan::SourceReading;
use crate::restore::job::{CopyJob, RestoreJob};
use crate::verify::job::VerifyJob;

/// Why a job's options or archive name are refused (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("unknown option {0:?}")]
    Unknown(String),
    #[error("option {0:?} does not apply to {1} jobs")]
    NotForKind(String, &'static str),
    #[error("option {0:?} is not allowed in a job: the service sets it (connections, credentials and files stay on the server)")]
    Forbidden(String),
    #[error("option {name:?}: {message}")]
    BadValue { name: String, message: String },
    #[error("options must be a JSON object")]
    NotAnObject,
    #[error("invalid archive name {0:?}: letters, digits, `.`, `_` and `-`, not starting with `.`, at most 200 characters")]
    ArchiveName(String),
}

/// Command-line options a job may never set: they name the server's files,
/// its connections or secrets, or the service decides them.
pub const FORBIDDEN: &[&str] = &[
    "source",
    "source_user",
    "source_password_file",
    "source_api_key",
    "source_bearer_token",
    "source_client_cert",
    "source_client_key",
    "source_aws_sigv4",
    "source_aws_region",
    "source_aws_service",
    "target",
    "target_user",
    "target_password_file",
    "target_api_key",
    "target_bearer_token",
    "target_client_cert",
    "target_client_key",
    "target_aws_sigv4",
    "target_aws_region",
    "target_aws_service",
    "output",
    "input",
    "ca_cert",
    "insecure",
    "timeout",
    "identity",
    "encrypt_to_file",
    "rejects",
    "state",
    "resume",
    "overwrite",
    "discard_state",
    "spool_dir",
    "spool_limit",
    "json",
    "quiet",
];

/// The options of `restore` and `copy` that shape the load.
const LOAD: &[&str] = &[
    "match",
    "exclude",
    "rename",
    "prefix",
    "suffix",
    "mode",
    "no_mappings",
    "no_data",
    "no_templates",
    "no_aliases",
    "include_cluster_settings",
    "atomic",
    "concurrency",
    "bulk_bytes",
    "bulk_docs",
    "rate",
    "rate_bytes",
];

/// The options a job of `kind` accepts.
pub fn allowed(kind: Kind) -> Vec<&'static str> {
    match kind {
        Kind::Export => vec![
            "match",
            "exclude",
            "compression",
            "level",
            "slices",
            "parallel",
            "readers",
            "page_size",
            "file_size",
            "reader",
            "query",
            "include_cluster_settings",
            "encrypt_to",
        ],
        Kind::Import => [LOAD, &["index", "force", "no_validate", "max_line_size"]].concat(),
        Kind::Copy => [LOAD, &["slices", "page_size", "reader", "query"]].concat(),
        Kind::Verify => vec![
            "match",
            "exclude",
            "rename",
            "prefix",
            "suffix",
            "index",
            "no_templates",
            "page_size",
            "max_line_size",
        ],
    }
}

/// An archive name of the service: one path component, no hidden file.
pub fn check_archive_name(name: &str) -> Result<(), OptionsError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(OptionsError::ArchiveName(name.to_string()))
    }
}

/// Archive `name` under the service's `archives` location.
pub fn archive_location(archives: &Location, name: &str) -> Location {
    match archives {
        Location::Local(root) => Location::Local(root.join(name)),
        Location::Object(object) => Location::Object(ObjectLocation {
            service: object.service,
            bucket: object.bucket.clone(),
            prefix: if object.prefix.is_empty() {
                name.to_string()
            } else {
                format!("{}/{name}", object.prefix)
            },
        }),
    }
}

/// What a job runs with, resolved.
#[derive(Debug)]
pub enum Prepared {
    Export(Box<DumpConfig>),
    Import(Box<RestoreJob>),
    Copy(Box<CopyJob>),
    Verify(Box<VerifyJob>),
}

/// Where a job's configs point: from the service's config, never from a
/// request.
pub struct Context<'a> {
    pub cluster: &'a ClusterConfig,
    pub target_cluster: Option<&'a ClusterConfig>,
    /// The archive (export, import, verify).
    pub archive: Option<Location>,
    /// The job's own folder: restore state and rejects.
    pub job_dir: &'a Path,
}

/// Checks `options` for `kind` and resolves them into the job's config.
pub fn prepare(kind: Kind, options: &Value, ctx: &Context<'_>) -> Result<Prepared, OptionsError> {
    let options = match options {
        Value::Null => &Map::new(),
        Value::Object(map) => map,
        _ => return Err(OptionsError::NotAnObject),
    };
    let argv = to_argv(kind, options)?;
    // Placeholders for the flags clap requires: replaced below by the
    // service's own clusters and archive.
    let placeholder = "http://esark-serve.invalid:9200";
    let archive = ctx
        .archive
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let bad = |e: CliError| resolve_error(options, &e.line());
    match kind {
        Kind::Export => {
            let args = parse::<DumpWrap>(
                ["--source", placeholder, "--output", &archive],
                argv,
                options,
            )?
            .args;
            let mut config = args.resolve().map_err(bad)?;
            config.source = ctx.cluster.clone();
            config.output = ctx.archive.clone().expect("an export names its archive");
            Ok(Prepared::Export(Box::new(config)))
        }
        Kind::Import => {
            let args = parse::<RestoreWrap>(
                ["--target", placeholder, "--input", &archive],
                argv,
                options,
            )?
            .args;
            let mut config = args.load.resolve(&args.connection).map_err(bad)?;
            config.target = ctx.cluster.clone();
            config.state = Some(ctx.job_dir.join("restore.state"));
            config.rejects = ctx.job_dir.join("rejects.jsonl");
            if args.index.as_deref() == Some("") {
                return Err(resolve_error(options, "--index needs a name"));
            }
            Ok(Prepared::Import(Box::new(RestoreJob {
                config,
                input: ctx.archive.clone().expect("an import names its archive"),
                index: args.index.clone(),
                selector: args.select.resolve(true).map_err(bad)?,
                renamer: args.load.rename.resolve().map_err(bad)?,
                force: args.force,
                validate: !args.no_validate,
                max_line: args.lines.max_line().map_err(bad)?,
                identity: None,
                // In the job's folder, removed when the job ends.
                spool: SpoolConfig {
                    dir: Some(ctx.job_dir.to_path_buf()),
                    limit: None,
                },
            })))
        }
        Kind::Copy => {
            let args = parse::<CopyWrap>(
                ["--source", placeholder, "--target", placeholder],
                argv,
                options,
            )?
            .args;
            let mut config = args.load.resolve(&args.connection).map_err(bad)?;
            config.target = ctx.target_cluster.expect("a copy names its target").clone();
            config.state = Some(ctx.job_dir.join("restore.state"));
            config.rejects = ctx.job_dir.join("rejects.jsonl");
            crate::cli::dump::check_page_size(args.page_size).map_err(bad)?;
            let query = args
                .query
                .as_deref()
                .map(crate::cli::dump::parse_query)
                .transpose()
                .map_err(bad)?;
            Ok(Prepared::Copy(Box::new(CopyJob {
                config,
                source: ctx.cluster.clone(),
                selector: args.select.resolve(false).map_err(bad)?,
                renamer: args.load.rename.resolve().map_err(bad)?,
                reading: SourceReading {
                    slices: crate::cli::dump::parse_slices(&args.slices).map_err(bad)?,
                    page_size: args.page_size,
                    reader: args.reader,
                    query,
                },
            })))
        }
        Kind::Verify => {
            let args = parse::<VerifyWrap>(
                ["--target", placeholder, "--input", &archive],
                argv,
                options,
            )?
            .args;
            let page_size = args.page_size.unwrap_or(crate::dump::DEFAULT_PAGE_SIZE);
            crate::cli::dump::check_page_size(page_size).map_err(bad)?;
            Ok(Prepared::Verify(Box::new(VerifyJob {
                target: ctx.cluster.clone(),
                input: ctx.archive.clone().expect("a verify names its archive"),
                index: args.index.clone(),
                selector: args.select.resolve(true).map_err(bad)?,
                renamer: args.rename.resolve().map_err(bad)?,
                templates: !args.no_templates,
                page_size,
                max_line: args.lines.max_line().map_err(bad)?,
                identity: None,
            })))
        }
    }
}

#[derive(Parser)]
#[command(name = "esark")]
struct DumpWrap {
    #[command(flatten)]
    args: DumpArgs,
}

#[derive(Parser)]
#[command(name = "esark")]
struct RestoreWrap {
    #[command(flatten)]
    args: RestoreArgs,
}

#[derive(Parser)]
#[command(name = "esark")]
struct CopyWrap {
    #[command(flatten)]
    args: CopyArgs,
}

#[derive(Parser)]
#[command(name = "esark")]
struct VerifyWrap {
    #[command(flatten)]
    args: VerifyArgs,
}

/// The command line of `options`: checked against the allowlist of `kind`.
pub fn to_argv(kind: Kind, options: &Map<String, Value>) -> Result<Vec<String>, OptionsError> {
    let allowed = allowed(kind);
    let mut argv = Vec::new();
    for (name, value) in options {
        if FORBIDDEN.contains(&name.as_str()) {
            return Err(OptionsError::Forbidden(name.clone()));
        }
        if !allowed.contains(&name.as_str()) {
            return Err(if Kind::ALL.iter().any(|k| allowed_in(*k, name)) {
                OptionsError::NotForKind(name.clone(), kind.as_str())
            } else {
                OptionsError::Unknown(name.clone())
            });
        }
        let flag = format!("--{}", name.replace('_', "-"));
        let bad = |message: &str| OptionsError::BadValue {
            name: name.clone(),
            message: message.to_string(),
        };
        // `--query @FILE` would read a file of the server.
        if name == "query" {
            let text = match value {
                Value::String(s) if s.trim_start().starts_with('@') => {
                    return Err(bad(
                        "@FILE reads the server's files: give the query as JSON",
                    ))
                }
                Value::String(s) => s.clone(),
                Value::Object(_) => value.to_string(),
                _ => return Err(bad("a query object or its JSON text")),
            };
            argv.push(format!("{flag}={text}"));
            continue;
        }
        let values: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for value in values {
            match value {
                Value::Bool(true) => argv.push(flag.clone()),
                Value::Bool(false) | Value::Null => {}
                // `=`: a value starting with `-` stays a value.
                Value::String(s) => argv.push(format!("{flag}={s}")),
                Value::Number(n) => argv.push(format!("{flag}={n}")),
                Value::Array(_) | Value::Object(_) => {
                    return Err(bad("a string, number, boolean or array of them"))
                }
            }
        }
    }
    Ok(argv)
}

fn allowed_in(kind: Kind, name: &str) -> bool {
    allowed(kind).contains(&name)
}

/// Parses `fixed` then `argv` with the clap struct `P`; a clap error names
/// the option it is about.
fn parse<P: Parser>(
    fixed: [&str; 4],
    argv: Vec<String>,
    options: &Map<String, Value>,
) -> Result<P, OptionsError> {
    let line = std::iter::once("esark".to_string())
        .chain(fixed.iter().map(|s| s.to_string()))
        .chain(argv);
    P::try_parse_from(line).map_err(|e| {
        let first = e
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        resolve_error(options, &first)
    })
}

/// A parse or resolution message about the first `--flag` it names that
/// the request gave: said as that option's error.
fn resolve_error(options: &Map<String, Value>, message: &str) -> OptionsError {
    let name = message
        .match_indices("--")
        .map(|(at, _)| {
            message[at + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
                .replace('-', "_")
        })
        .find(|n| options.contains_key(n))
        .unwrap_or_else(|| "options".to_string());
    OptionsError::BadValue {
        name,
        message: message.to_string(),
    }
}

/// The job folder of job `id` under the service's state folder.
pub fn job_dir(state: &Path, id: &str) -> PathBuf {
    state.join("jobs").join(id)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx_prepare(kind: Kind, options: Value) -> Result<Prepared, OptionsError> {
        let cluster = ClusterConfig::new("http://real:9200").unwrap();
        let ctx = Context {
            cluster: &cluster,
            target_cluster: Some(&cluster),
            archive: Some(Location::Local("/srv/archives/a".into())),
            job_dir: Path::new("/srv/state/jobs/1"),
        };
        prepare(kind, &options, &ctx)
    }

    #[test]
    fn options_become_the_cli_flags_and_configs() {
        let options = json!({"page_size": 500, "match": "^logs", "include_cluster_settings": true,
            "encrypt_to": [], "level": null, "query": {"term": {"a": 1}}});
        let argv = to_argv(Kind::Export, options.as_object().unwrap()).unwrap();
        assert_eq!(
            argv,
            vec![
                "--include-cluster-settings",
                "--match=^logs",
                "--page-size=500",
                "--query={\"term\":{\"a\":1}}"
            ]
        );
        let Ok(Prepared::Export(config)) = ctx_prepare(Kind::Export, options) else {
            panic!("an export")
        };
        assert_eq!(config.page_size, 500);
        assert_eq!(config.source.url.host_str(), Some("real"));
        let Ok(Prepared::Import(job)) =
            ctx_prepare(Kind::Import, json!({"mode": "replace", "prefix": "-x"}))
        else {
            panic!("an import")
        };
        assert_eq!(job.renamer.prefix, "-x");
        assert_eq!(
            job.config.rejects,
            Path::new("/srv/state/jobs/1/rejects.jsonl")
        );
        assert_eq!(job.config.target.url.host_str(), Some("real"));
    }

    #[test]
    fn unknown_forbidden_and_bad_options_are_named() {
        for (kind, options, expected) in [
            (
                Kind::Export,
                json!({"pagesize": 1}),
                OptionsError::Unknown("pagesize".into()),
            ),
            (
                Kind::Export,
                json!({"output": "/etc"}),
                OptionsError::Forbidden("output".into()),
            ),
            (
                Kind::Import,
                json!({"state": "/x"}),
                OptionsError::Forbidden("state".into()),
            ),
            (
                Kind::Copy,
                json!({"source_user": "u"}),
                OptionsError::Forbidden("source_user".into()),
            ),
            (
                Kind::Import,
                json!({"encrypt_to": "age1x"}),
                OptionsError::NotForKind("encrypt_to".into(), "import"),
            ),
        ] {
            assert_eq!(ctx_prepare(kind, options).unwrap_err(), expected);
        }
        for (kind, options, name) in [
            (Kind::Export, json!({"page_size": "lots"}), "page_size"),
            (Kind::Export, json!({"page_size": 0}), "page_size"),
            (Kind::Export, json!({"match": "(("}), "match"),
            (Kind::Import, json!({"mode": "sideways"}), "mode"),
            (Kind::Export, json!({"query": "@/etc/passwd"}), "query"),
            (Kind::Verify, json!({"page_size": [1, 2]}), "page_size"),
        ] {
            match ctx_prepare(kind, options.clone()) {
                Err(OptionsError::BadValue { name: got, .. }) => assert_eq!(got, name, "{options}"),
                other => panic!("{options}: {other:?}"),
            }
        }
        assert_eq!(
            ctx_prepare(Kind::Export, json!([1])).unwrap_err(),
            OptionsError::NotAnObject
        );
    }

    #[test]
    fn archive_names() {
        for ok in ["nightly-1", "a.b_c", "A9"] {
            assert!(check_archive_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(201)] {
            assert!(check_archive_name(bad).is_err(), "{bad}");
        }
        let bucket = Location::parse("s3://b/base".as_ref()).unwrap();
        assert_eq!(archive_location(&bucket, "n").to_string(), "s3://b/base/n");
    }
}
