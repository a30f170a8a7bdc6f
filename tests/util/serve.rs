//! `esark serve` as a child process for the service tests: a config file
//! written into a temporary folder (state and archives beside it), the
//! bound URL read from the first stdout line, a blocking JSON client with
//! a bearer token, and `kill -9` / SIGTERM for the restart tests. The
//! process is killed when the handle is dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::archive::Archive;
use super::faults::{Fault, FaultProxy, Route, Rule, When};
use super::server::{BulkBody, TestCluster};

/// A running `esark serve`.
pub struct Serve {
    child: Option<Child>,
    pub url: String,
    /// The folder of the config file (state and archives are relative to it
    /// unless the config says otherwise).
    pub dir: PathBuf,
    pub config: PathBuf,
    stderr: Arc<Mutex<String>>,
    envs: Vec<(String, String)>,
    /// A CA certificate (PEM) the client trusts: the service's own
    /// self-signed one in the TLS tests.
    ca: Option<Vec<u8>>,
}

/// The sha256 (hex) of a token, as a `[[tokens]]` entry wants it.
pub fn token_digest(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

impl Serve {
    /// Writes `config` (a whole TOML file) into `dir/esark-serve.toml` and
    /// starts the service with it; `envs` are added to its environment
    /// (cluster passwords, AWS settings).
    pub fn start(dir: &Path, config: &str, envs: &[(&str, &str)]) -> Serve {
        let path = dir.join("esark-serve.toml");
        std::fs::write(&path, config).unwrap();
        Serve::start_with(
            dir,
            path,
            envs.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn start_with(dir: &Path, config: PathBuf, envs: Vec<(String, String)>) -> Serve {
        let bin = env!("CARGO_BIN_EXE_esark");
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ESARK_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("ESARK_STATE_DIR", super::esark::test_state_dir());
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut pipe = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the service never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "esark serve did not print its address; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let url = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["listen"].as_str().map(String::from))
            .unwrap_or_else(|| panic!("unexpected first line of esark serve: {line}"));
        Serve {
            child: Some(child),
            url,
            dir: dir.to_path_buf(),
            config,
            stderr,
            envs,
            ca: None,
        }
    }

    /// Trusts `pem` (a CA or self-signed certificate) in [`Serve::call`].
    pub fn trust(mut self, pem: &Path) -> Serve {
        self.ca = Some(std::fs::read(pem).unwrap());
        self
    }

    /// Runs `esark serve --config FILE` expecting it to refuse to start:
    /// its exit code and stderr.
    pub fn refused(dir: &Path, config: &str) -> (Option<i32>, String) {
        let path = dir.join("esark-serve.toml");
        std::fs::write(&path, config).unwrap();
        let out = super::esark::Esark::new()
            .args(["serve", "--config"])
            .arg(&path)
            .timeout(Duration::from_secs(30))
            .run();
        (out.code, out.stderr)
    }

    /// What the service wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `kill -9`, then starts it again on the same config. The config's
    /// `listen` should be a fixed port for clients to find it again, or
    /// the caller reads [`Serve::url`] anew.
    pub fn kill_and_restart(&mut self) {
        self.kill9();
        self.restart();
    }

    /// Starts the service again on the same config (after [`Serve::kill9`]
    /// or [`Serve::terminate`]); the URL is read anew.
    pub fn restart(&mut self) {
        let mut restarted = Serve::start_with(&self.dir, self.config.clone(), self.envs.clone());
        restarted.ca = self.ca.take();
        *self = restarted;
    }

    /// `kill -9` (no clean up by the service).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (up to `timeout`) for the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("esark serve did not stop within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A request with an optional bearer token: status and body (JSON when
    /// it parses, else a string value).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, _, text) = self.call_raw(
            method,
            path,
            token,
            body.map(|b| b.to_string().into_bytes()),
            &[],
        );
        let value = serde_json::from_slice(&text)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&text).into()));
        (status, value)
    }

    /// A request with raw body and extra headers: status, headers, body.
    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let mut client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60));
        if let Some(pem) = &self.ca {
            client = client.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
        }
        let client = client.build().unwrap();
        let mut request = client.request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().unwrap().to_vec();
        (status, headers, bytes)
    }
}

/// A `[clusters.NAME]` table reaching `cluster`, and the environment its
/// password needs (a shared cluster's credentials go through a variable:
/// the service refuses them in the URL).
pub fn cluster_table(name: &str, cluster: &TestCluster) -> (String, Vec<(String, String)>) {
    let mut table = format!("[clusters.{name}]\nurl = \"{}\"\n", cluster.base_url());
    let mut envs = Vec::new();
    if let Some((user, password)) = cluster.credentials() {
        let var = format!("ESARK_TEST_SERVE_PW_{}", name.to_uppercase());
        table.push_str(&format!("user = \"{user}\"\npassword_env = \"{var}\"\n"));
        envs.push((var, password.to_string()));
    }
    match cluster.tls_args().as_slice() {
        [flag] if flag == "--insecure" => table.push_str("insecure = true\n"),
        [_, ca] => table.push_str(&format!("ca_cert = \"{ca}\"\n")),
        _ => {}
    }
    (table, envs)
}

/// A `[[tokens]]` entry for token `NAME-secret`.
pub fn token_table(name: &str, role: &str) -> String {
    format!(
        "[[tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
        token_digest(&format!("{name}-secret"))
    )
}

impl Serve {
    /// `POST /v1/jobs` that must be accepted: the job.
    pub fn submit(&self, token: Option<&str>, body: &Value) -> Value {
        let (status, job) = self.call("POST", "/v1/jobs", token, Some(body));
        assert_eq!(status, 202, "submit {body}: {job}\n{}", self.stderr());
        job
    }

    /// The job `id`.
    pub fn job(&self, token: Option<&str>, id: &str) -> Value {
        let (status, job) = self.call("GET", &format!("/v1/jobs/{id}"), token, None);
        assert_eq!(status, 200, "{job}");
        job
    }

    /// Polls job `id` until `done` holds (panics after `timeout`).
    pub fn wait_job(
        &self,
        token: Option<&str>,
        id: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let job = self.job(token, id);
            if done(&job) {
                return job;
            }
            if start.elapsed() > timeout {
                panic!(
                    "job {id}: not {what} after {timeout:?}: {job}\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls job `id` until it has status `status`.
    pub fn wait_status(&self, token: Option<&str>, id: &str, status: &str) -> Value {
        let finals = ["succeeded", "partial", "failed", "cancelled", "interrupted"];
        self.wait_job(token, id, Duration::from_secs(120), status, |j| {
            let now = j["status"].as_str().unwrap_or("");
            assert!(
                now == status || !finals.contains(&now),
                "job {id} ended {now}, expected {status}: {j}"
            );
            now == status
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---- configs, data and jobs of the service tests ----------------------------

/// `listen` (loopback, any port), `state` and `archives` in `dir`.
pub fn base(dir: &Path) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nstate = \"{}\"\narchives = \"{}\"\n",
        dir.join("state").display(),
        dir.join("archives").display()
    )
}

/// A service in `dir`: the base keys, `top` (max_jobs, TLS), the
/// `clusters` (name, cluster), then `tail` (more clusters, tokens).
pub fn serve_with(dir: &Path, top: &str, clusters: &[(&str, &TestCluster)], tail: &str) -> Serve {
    let mut config = format!("{}{top}\n", base(dir));
    let mut envs = Vec::new();
    for (name, cluster) in clusters {
        let (table, env) = cluster_table(name, cluster);
        config.push_str(&table);
        envs.extend(env);
    }
    config.push_str(tail);
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Serve::start(dir, &config, &envs)
}

/// `n` documents into `index`, ids `0..n`.
pub fn seed(cluster: &TestCluster, index: &str, n: usize) {
    cluster.create_index(index, &json!({"settings": {"number_of_shards": 2}}));
    let mut body = BulkBody::new();
    for i in 0..n {
        body.index(
            index,
            &i.to_string(),
            None,
            &format!(r#"{{"n":{i},"text":"document {i}"}}"#),
        );
    }
    cluster.bulk(body.as_str());
    cluster.refresh(index);
}

/// A proxy in front of `cluster` that delays every page of a dump.
pub fn slow_pages(cluster: &TestCluster, delay_ms: u64) -> FaultProxy {
    FaultProxy::start(
        cluster.base_url(),
        vec![Rule::new(
            "slow-pages",
            Route::pages(),
            When::Every {
                every: 1,
                max: 100_000,
            },
            Fault::Slow(Duration::from_millis(delay_ms)),
        )],
    )
}

/// A `[clusters.slow]` table for the slowed proxy (plain http, no credentials).
pub fn proxy_table(name: &str, proxy: &FaultProxy) -> String {
    format!("[clusters.{name}]\nurl = \"{}\"\n", proxy.url())
}

/// The ids of `index` in the archive `name` of the service in `dir`: each
/// once.
pub fn archive_ids(dir: &Path, name: &str, index: &str) -> BTreeSet<String> {
    let ids: Vec<String> = Archive::open(&dir.join("archives").join(name))
        .docs(index)
        .into_iter()
        .map(|d| d.id)
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "an id twice in the archive");
    unique
}

/// The log of job `id` of the service in `dir`.
pub fn job_log(dir: &Path, id: &str) -> String {
    std::fs::read_to_string(dir.join("state/jobs").join(id).join("log.txt")).unwrap_or_default()
}

/// An export job's request.
pub fn export(cluster: &str, archive: &str, options: Value) -> Value {
    json!({"kind": "export", "cluster": cluster, "archive": archive, "options": options})
}

/// A job's id.
pub fn id_of(job: &Value) -> String {
    job["id"].as_str().expect("a job id").to_string()
}
