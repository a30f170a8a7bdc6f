//! The S3 test server of the storage rows: moto (`moto_server`, PyPI
//! `moto[server]`, installed pinned by `scripts/install-moto.sh`), as the
//! tests use it (tests/util/moto.rs): on 127.0.0.1 at a free port, one
//! bucket, no signature checks.
//!
//! moto cannot be told our pid and does not watch its parent, so it is
//! started with `PR_SET_PDEATHSIG`: the kernel kills it when the harness
//! dies, SIGKILL included. Dropping a [`Moto`] kills and reaps it.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::Server;

/// The access key esark is given; moto accepts any without authentication.
const KEY_ID: &str = "AKIAESARKBENCH000001";
const SECRET: &str = "esark-bench-secret-not-checked";

/// A running `moto_server`, killed on drop.
pub struct Moto {
    server: Server,
    /// Sends a SigV4 `Authorization` header whose signature moto does not
    /// check: it refuses anonymous requests (403) but checks no signature.
    http: reqwest::blocking::Client,
}

impl Moto {
    /// Starts `bin` and waits (at most 60 s) until it answers.
    pub fn start(bin: &Path, log: &Path) -> Result<Moto, String> {
        // moto takes a port number, not `:0`: a port free right now.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?
            .port();
        let err = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let out = err
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        // SAFETY: getpid has no preconditions.
        let harness = unsafe { libc::getpid() };
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        // SAFETY: prctl, getppid and _exit are async-signal-safe syscalls,
        // fine between fork and exec; the death signal survives the exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // The harness may have died before the prctl took effect.
                if libc::getppid() != harness {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let moto = Moto {
            server: Server::adopt(child, format!("http://127.0.0.1:{port}")),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .default_headers(signed())
                .build()
                .map_err(|e| format!("an HTTP client: {e}"))?,
        };
        let started = Instant::now();
        while moto.http.get(moto.url()).send().is_err() {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "moto_server did not answer on {} within 60 s (log: {})",
                    moto.url(),
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// CPU seconds moto has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.server.cpu_seconds()
    }

    /// The environment that points esark at this server, and nowhere else
    /// (not the developer's AWS profiles).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_S3", self.url().to_string()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_CONFIG_FILE", "/nonexistent/esark-bench".into()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/esark-bench".into(),
            ),
        ]
    }

    pub fn create_bucket(&self, bucket: &str) -> Result<(), String> {
        let url = format!("{}/{bucket}", self.url());
        let resp = self
            .http
            .put(&url)
            .send()
            .map_err(|e| format!("PUT {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("PUT {url}: HTTP {}", resp.status()));
        }
        Ok(())
    }

    /// Total size of the objects under `prefix` (ListObjectsV2, every page).
    pub fn prefix_bytes(&self, bucket: &str, prefix: &str) -> Result<u64, String> {
        let mut total = 0;
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .http
                .get(format!("{}/{bucket}", self.url()))
                .query(&[("list-type", "2"), ("prefix", prefix)]);
            if let Some(t) = &token {
                req = req.query(&[("continuation-token", t)]);
            }
            let text = req
                .send()
                .and_then(|r| r.error_for_status())
                .and_then(|r| r.text())
                .map_err(|e| format!("listing s3://{bucket}/{prefix}: {e}"))?;
            for size in elements(&text, "Size") {
                total += size
                    .parse::<u64>()
                    .map_err(|e| format!("listing: <Size>{size}</Size>: {e}"))?;
            }
            token = elements(&text, "NextContinuationToken")
                .first()
                .map(|t| t.to_string());
            if !text.contains("<IsTruncated>true</IsTruncated>") || token.is_none() {
                return Ok(total);
            }
        }
    }
}

/// The texts of every `<tag>…</tag>` of an XML answer (flat elements only,
/// which is all ListObjectsV2's sizes and token are).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|s| s.split(close.as_str()).next())
        .collect()
}

/// A SigV4 `Authorization` header whose signature moto does not check.
fn signed() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!(
        "AWS4-HMAC-SHA256 Credential={KEY_ID}/20260101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=00"
    );
    headers.insert(
        reqwest::header::AUTHORIZATION,
        value.parse().expect("an ASCII header value"),
    );
    headers
}
