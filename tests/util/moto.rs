//! A private `moto_server` (an S3 implementation, PyPI `moto[server]`,
//! pinned by `scripts/install-moto.sh`) for one test: started on
//! `127.0.0.1` at a free port, killed and reaped on drop. Each test has its
//! own server, so buckets never collide.
//!
//! [`Moto::env`] is what esark needs to use it (endpoint, region, keys);
//! the small blocking client ([`Moto::create_bucket`], [`Moto::keys`],
//! [`Moto::put_object`], ...) looks at the bucket from the side. Its
//! requests carry an `Authorization` header with a dummy signature: moto
//! checks no signature unless told to, but refuses anonymous reads (403).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::skip::skip;

/// The access key esark is given; moto accepts any without authentication.
pub const KEY_ID: &str = "AKIAESARKTEST0000001";
pub const SECRET: &str = "esark-test-secret-NEVER-PRINTED-9f3b";

/// A private `moto_server` child process, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl Moto {
    fn binary() -> PathBuf {
        match std::env::var_os("ESARK_MOTO_BIN") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"),
        }
    }

    /// Starts a server, or `None` after a visible skip when the binary is
    /// missing and `ESARK_SKIP_MOTO` says that is expected (the test
    /// command installs it, so normally a missing binary fails the test).
    pub fn start(test: &str) -> Option<Moto> {
        Moto::launch(test, false)
    }

    /// [`Moto::start`] with authentication on: moto then checks every
    /// request's access key and signature against its IAM users, of which
    /// there are none, so every request is refused (`InvalidAccessKeyId`).
    pub fn start_with_auth(test: &str) -> Option<Moto> {
        Moto::launch(test, true)
    }

    fn launch(test: &str, auth: bool) -> Option<Moto> {
        let bin = Self::binary();
        if !bin.exists() {
            if std::env::var_os("ESARK_SKIP_MOTO").is_some_and(|v| !v.is_empty()) {
                skip(test, "moto_server not installed and ESARK_SKIP_MOTO is set");
                return None;
            }
            panic!(
                "moto_server not found at {}: run ./scripts/install-moto.sh \
                 (or set ESARK_MOTO_BIN; ESARK_SKIP_MOTO=1 skips these tests)",
                bin.display()
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let port = free_port();
        let mut command = Command::new(&bin);
        if auth {
            // moto's switch: authenticate every request after the first N.
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("moto.err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .default_headers(signed())
                .build()
                .unwrap(),
        };
        let started = Instant::now();
        while moto.http.get(&moto.url).send().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on {} within 60 s:\n{}",
                moto.url,
                moto.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    /// The environment that points esark at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_S3", self.url.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            // Not the developer's profiles.
            ("AWS_CONFIG_FILE", "/nonexistent/esark-test".into()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/esark-test".into(),
            ),
        ]
    }

    pub fn create_bucket(&self, bucket: &str) {
        let resp = self
            .http
            .put(format!("{}/{bucket}", self.url))
            .send()
            .unwrap();
        assert!(
            resp.status().is_success(),
            "create bucket {bucket}: {resp:?}"
        );
    }

    /// Every key under `prefix`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let text = self
            .http
            .get(format!("{}/{bucket}?list-type=2&prefix={prefix}", self.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(!text.contains("IsTruncated>true"), "more than one page");
        let mut keys: Vec<String> = text
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let resp = self
            .http
            .get(format!("{}/{bucket}/{key}", self.url))
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "get {key}: {resp:?}");
        resp.bytes().unwrap().to_vec()
    }

    pub fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) {
        let resp = self
            .http
            .put(format!("{}/{bucket}/{key}", self.url))
            .body(body)
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "put {key}: {resp:?}");
    }

    /// The keys of the multipart uploads in progress (started, neither
    /// completed nor aborted) in `bucket`: S3's `ListMultipartUploads`.
    pub fn open_uploads(&self, bucket: &str) -> Vec<String> {
        let resp = self
            .http
            .get(format!("{}/{bucket}?uploads", self.url))
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "list uploads: {resp:?}");
        let text = resp.text().unwrap();
        assert!(
            text.contains("ListMultipartUploadsResult"),
            "not a list of uploads: {text}"
        );
        assert!(!text.contains("IsTruncated>true"), "more than one page");
        text.split("<Upload>")
            .skip(1)
            .filter_map(|u| u.split("<Key>").nth(1)?.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// What the server logged, for failure messages.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SigV4 `Authorization` header whose signature moto does not check.
fn signed() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!(
        "AWS4-HMAC-SHA256 Credential={KEY_ID}/20260101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=00"
    );
    headers.insert(reqwest::header::AUTHORIZATION, value.parse().unwrap());
    headers
}

/// A port free on 127.0.0.1 now (moto takes a port number, not `:0`).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
