//! `esark jobs`: a client of `esark serve` (`--server URL` or
//! `ESARK_SERVER`, the token in `ESARK_TOKEN`, never printed). Submits,
//! follows, lists and controls jobs, and moves archives in and out as tar
//! streams. An error is one line: the server's `error.message` with the
//! HTTP status, or why the server could not be reached; exit 1.
//!
//! `watch` exits with the job's outcome: 0 succeeded, 3 partial, 1
//! otherwise (failed, cancelled, interrupted).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use futures::TryStreamExt;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use super::{print_stdout, CliError};

/// `esark jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The service's URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "ESARK_SERVER", global = true, value_name = "URL")]
    pub server: Option<String>,
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Submit a job; prints it as JSON.
    Submit(SubmitArgs),
    /// Print a job as JSON.
    Status { id: String },
    /// Follow a job with a progress bar until it ends; exit 0 succeeded, 3 partial, 1 otherwise.
    Watch { id: String },
    /// One line per job.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        kind: Option<String>,
    },
    /// Cancel a job.
    Cancel { id: String },
    /// Resume an interrupted or failed job.
    Resume { id: String },
    /// Download an archive as a tar (streamed).
    Download {
        name: String,
        /// Where to write it (default NAME.tar; `-`: stdout).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Upload a tar of an archive under NAME (streamed); the service checks it.
    Upload { name: String, file: PathBuf },
}

/// `esark jobs submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// export, import, verify or copy.
    #[arg(long)]
    pub kind: String,
    /// A cluster named in the service's config.
    #[arg(long)]
    pub cluster: Option<String>,
    /// An archive name under the service's archives location.
    #[arg(long)]
    pub archive: Option<String>,
    /// The target cluster of a copy.
    #[arg(long)]
    pub target_cluster: Option<String>,
    /// A job option KEY=VALUE (repeatable; VALUE is JSON when it parses,
    /// else a string; a key given twice makes an array).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Sent as Idempotency-Key: submitting again with it returns the same job.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Print only the job's id.
    #[arg(long)]
    pub id_only: bool,
}

/// Job states after which nothing changes.
const FINAL: &[&str] = &["succeeded", "partial", "failed", "cancelled", "interrupted"];

/// The service and the token.
struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

pub async fn run(args: JobsArgs) -> Result<ExitCode, CliError> {
    let server = args.server.ok_or_else(|| {
        CliError::usage(anyhow!("no service: pass --server URL or set ESARK_SERVER"))
    })?;
    let client = Client::new(&server)?;
    match args.command {
        JobsCommand::Submit(submit) => {
            let job = client.submit(&submit).await?;
            if submit.id_only {
                print_stdout(&format!("{}\n", job["id"].as_str().unwrap_or_default()))?;
            } else {
                print_json(&job)?;
            }
        }
        JobsCommand::Status { id } => print_json(&client.job(&id).await?)?,
        JobsCommand::Watch { id } => return client.watch(&id).await,
        JobsCommand::List { status, kind } => client.list(status, kind).await?,
        JobsCommand::Cancel { id } => print_json(&client.control(&id, "cancel").await?)?,
        JobsCommand::Resume { id } => print_json(&client.control(&id, "resume").await?)?,
        JobsCommand::Download { name, output } => {
            let output = output.unwrap_or_else(|| PathBuf::from(format!("{name}.tar")));
            client.download(&name, &output).await?;
        }
        JobsCommand::Upload { name, file } => print_json(&client.upload(&name, &file).await?)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(value: &Value) -> Result<(), CliError> {
    print_stdout(&format!("{value:#}\n"))
}

/// `KEY=VALUE` options as a JSON object: a key given once maps to its
/// value, a key given several times to the array of its values.
fn options(pairs: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut given: Vec<(String, Vec<Value>)> = Vec::new();
    for pair in pairs {
        let (key, raw) = pair
            .split_once('=')
            .ok_or_else(|| CliError::usage(anyhow!("--option {pair:?}: expected KEY=VALUE")))?;
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.into()));
        match given.iter_mut().find(|(k, _)| k == key) {
            Some((_, values)) => values.push(value),
            None => given.push((key.to_string(), vec![value])),
        }
    }
    Ok(given
        .into_iter()
        .map(|(key, mut values)| {
            let value = if values.len() == 1 {
                values.remove(0)
            } else {
                Value::Array(values)
            };
            (key, value)
        })
        .collect())
}

fn segment(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

impl Client {
    fn new(server: &str) -> Result<Client, CliError> {
        let base = server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::usage(anyhow!(
                "--server {server:?}: an http:// or https:// URL"
            )));
        }
        // No overall timeout: downloads and uploads last as long as they
        // need; a connection that cannot be made fails fast.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(CliError::failure)?;
        let token = std::env::var("ESARK_TOKEN").ok().filter(|t| !t.is_empty());
        Ok(Client { http, base, token })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request; an answer that is not 2xx becomes its one line.
    async fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        Err(CliError::failure(anyhow!(
            "{message} (HTTP {})",
            status.as_u16()
        )))
    }

    /// The cause of a failed request, innermost first, without the URL's
    /// query (nothing secret is in it, but it says nothing either).
    fn unreachable(&self, error: reqwest::Error) -> CliError {
        let mut cause: &dyn std::error::Error = &error;
        while let Some(next) = cause.source() {
            cause = next;
        }
        CliError::failure(anyhow!("cannot reach {}: {cause}", self.base))
    }

    async fn json(&self, request: RequestBuilder) -> Result<Value, CliError> {
        let response = self.send(request).await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::failure(anyhow!("the service's answer is not JSON: {e}")))
    }

    async fn submit(&self, args: &SubmitArgs) -> Result<Value, CliError> {
        let mut body = Map::new();
        body.insert("kind".into(), Value::String(args.kind.clone()));
        for (key, value) in [
            ("cluster", &args.cluster),
            ("archive", &args.archive),
            ("target_cluster", &args.target_cluster),
        ] {
            if let Some(value) = value {
                body.insert(key.into(), Value::String(value.clone()));
            }
        }
        body.insert("options".into(), Value::Object(options(&args.options)?));
        let mut request = self
            .request(Method::POST, "/v1/jobs")
            .header("content-type", "application/json")
            .body(Value::Object(body).to_string());
        if let Some(key) = &args.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.json(request).await
    }

    async fn job(&self, id: &str) -> Result<Value, CliError> {
        self.json(self.request(Method::GET, &format!("/v1/jobs/{}", segment(id))))
            .await
    }

    async fn control(&self, id: &str, what: &str) -> Result<Value, CliError> {
        let path = format!("/v1/jobs/{}/{what}", segment(id));
        self.json(self.request(Method::POST, &path)).await
    }

    async fn list(&self, status: Option<String>, kind: Option<String>) -> Result<(), CliError> {
        let mut query = Vec::new();
        if let Some(status) = status {
            query.push(("status", status));
        }
        if let Some(kind) = kind {
            query.push(("kind", kind));
        }
        let answer = self
            .json(self.request(Method::GET, "/v1/jobs").query(&query))
            .await?;
        let field = |job: &Value, key: &str| match &job[key] {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        let mut text = String::new();
        for job in answer["jobs"].as_array().into_iter().flatten() {
            let progress = &job["progress"];
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}/{}\t{}\n",
                field(job, "id"),
                field(job, "kind"),
                field(job, "status"),
                field(job, "cluster"),
                field(job, "archive"),
                progress["docs_done"].as_u64().unwrap_or(0),
                progress["docs_total"].as_u64().unwrap_or(0),
                field(job, "created_at"),
            ));
        }
        print_stdout(&text)
    }

    /// Polls the job every second, drawing docs_done / docs_total on
    /// stderr, until it ends; prints it then and exits with its outcome.
    async fn watch(&self, id: &str) -> Result<ExitCode, CliError> {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} docs ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let job = loop {
            let job = self.job(id).await?;
            let status = job["status"].as_str().unwrap_or("unknown").to_string();
            let progress = &job["progress"];
            bar.set_length(progress["docs_total"].as_u64().unwrap_or(0));
            bar.set_position(progress["docs_done"].as_u64().unwrap_or(0));
            bar.set_message(status.clone());
            if FINAL.contains(&status.as_str()) {
                break job;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        bar.finish_and_clear();
        print_json(&job)?;
        let status = job["status"].as_str().unwrap_or_default();
        let code = match status {
            "succeeded" => 0,
            "partial" => 3,
            _ => 1,
        };
        if code != 0 {
            let why = job["error"]["message"].as_str().unwrap_or("");
            let sep = if why.is_empty() { "" } else { ": " };
            eprintln!("job {id} {status}{sep}{why}");
        }
        Ok(ExitCode::from(code))
    }

    /// Streams the tar into `output` (`-`: stdout). A file is written
    /// beside as `FILE.partial` and renamed when whole, so an interrupted
    /// download never leaves a complete-looking FILE.
    async fn download(&self, name: &str, output: &Path) -> Result<(), CliError> {
        let path = format!("/v1/archives/{}/download", segment(name));
        let response = self.send(self.request(Method::GET, &path)).await?;
        let mut stream = response.bytes_stream();
        let failure =
            |e: std::io::Error, what: &Path| CliError::failure(anyhow!("{}: {e}", what.display()));
        if output.as_os_str() == "-" {
            let mut out = tokio::io::stdout();
            while let Some(chunk) = stream.try_next().await.map_err(|e| self.cut(e))? {
                match out.write_all(&chunk).await {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    other => other.map_err(|e| failure(e, Path::new("stdout")))?,
                }
            }
            out.flush()
                .await
                .map_err(|e| failure(e, Path::new("stdout")))?;
            return Ok(());
        }
        let partial = PathBuf::from(format!("{}.partial", output.display()));
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| failure(e, &partial))?;
        let copied: Result<(), CliError> = async {
            while let Some(chunk) = stream.try_next().await.map_err(|e| self.cut(e))? {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| failure(e, &partial))?;
            }
            file.sync_all().await.map_err(|e| failure(e, &partial))
        }
        .await;
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        tokio::fs::rename(&partial, output)
            .await
            .map_err(|e| failure(e, output))
    }

    /// A transfer that broke after it started.
    fn cut(&self, error: reqwest::Error) -> CliError {
        CliError::failure(anyhow!(
            "the transfer from {} stopped before the end: {error}",
            self.base
        ))
    }

    async fn upload(&self, name: &str, file: &Path) -> Result<Value, CliError> {
        let opened = tokio::fs::File::open(file)
            .await
            .with_context(|| file.display().to_string())
            .map_err(CliError::failure)?;
        let size = opened
            .metadata()
            .await
            .with_context(|| file.display().to_string())
            .map_err(CliError::failure)?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            opened,
            256 * 1024,
        ));
        let path = format!("/v1/archives/{}", segment(name));
        let request = self
            .request(Method::PUT, &path)
            .header("content-type", "application/x-tar")
            .header("content-length", size)
            .body(body);
        self.json(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_are_json_when_they_parse_and_repeat_into_arrays() {
        let given: Vec<String> = [
            "slices=4",
            "match=logs-*",
            "overwrite=true",
            "query={\"term\":{\"a\":1}}",
            "exclude=a",
            "exclude=b",
            "exclude=c",
            "list=[1,2]",
            "nested=[1,2]",
            "nested=3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            Value::Object(options(&given).unwrap()),
            json!({
                "slices": 4,
                "match": "logs-*",
                "overwrite": true,
                "query": {"term": {"a": 1}},
                "exclude": ["a", "b", "c"],
                "list": [1, 2],
                "nested": [[1, 2], 3],
            })
        );
        assert!(options(&["novalue".to_string()]).is_err());
    }
}
