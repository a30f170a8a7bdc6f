//! Helpers for the `restore`, `verify` and `copy` tests.
//!
//! - [`target_cluster`]: a second cluster to restore into: a private osmem,
//!   or `ESARK_TEST_TARGET_URL`; skipped visibly when `ESARK_TEST_URL` is
//!   set without it (every cluster would be the same one).
//! - [`dump_archive`], [`restore_cmd`], [`verify_cmd`], [`copy_cmd`]: the
//!   esark invocations, ready for more flags.
//! - [`Spawned`]: an esark run in the background (for watching the target
//!   while it runs) or in a chosen working directory (for the default
//!   rejects file).
//! - readers of the target side: [`docs_of`] (every document with its raw
//!   `_source` text), [`all_index_names`], [`all_template_names`],
//!   [`flatten`] for comparing settings key by key.
//! - [`json_report`]: the `--json` summary of a run, parsed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::esark::{capture, text, Esark, Output};
use super::server::{enc, TestCluster};
use super::skip::skip;

/// A cluster to restore into: a fresh private osmem, or the shared
/// `ESARK_TEST_TARGET_URL` when it is set ([`TestCluster::start_shared_target`]).
/// `None`, after a visible [`skip`], when `ESARK_TEST_URL` is set without
/// `ESARK_TEST_TARGET_URL`: source and target would be one cluster, and a
/// restore under the same names would collide with the source indices.
pub fn target_cluster(test_name: &str) -> Option<TestCluster> {
    let name = format!("{test_name}-target");
    if let Some(target) = TestCluster::start_shared_target(&name) {
        return Some(target);
    }
    if std::env::var("ESARK_TEST_URL").is_ok_and(|u| !u.trim().is_empty()) {
        skip(
            test_name,
            "needs a second cluster as the target: ESARK_TEST_URL is set but \
             ESARK_TEST_TARGET_URL is not",
        );
        return None;
    }
    Some(TestCluster::start(&name))
}

/// The arguments pointing esark's `--target` at `cluster`.
pub fn target_args(cluster: &TestCluster) -> Vec<String> {
    let mut args = vec!["--target".to_string(), cluster.url().to_string()];
    args.extend(cluster.tls_args());
    args
}

/// `esark dump --source <cluster> --output <out> --match <regex>`; panics
/// unless it succeeds.
pub fn dump_archive(cluster: &TestCluster, out: &Path, regex: &str) {
    Esark::new()
        .arg("dump")
        .args(cluster.source_args())
        .arg("--output")
        .arg(out)
        .args(["--match", regex])
        .run()
        .assert_success();
}

/// Like [`dump_archive`], uncompressed and cut into chunks of `file_size`
/// (`"32KiB"`): many small chunks, for tests that interrupt a restore.
pub fn dump_small_chunks(cluster: &TestCluster, out: &Path, regex: &str, file_size: &str) {
    Esark::new()
        .arg("dump")
        .args(cluster.source_args())
        .arg("--output")
        .arg(out)
        .args(["--match", regex])
        .args(["--compression", "none", "--file-size", file_size])
        .run()
        .assert_success();
}

/// `esark restore --input <archive> --target <target>`, ready for more flags.
pub fn restore_cmd(archive: &Path, target: &TestCluster) -> Esark {
    Esark::new()
        .arg("restore")
        .arg("--input")
        .arg(archive)
        .args(target_args(target))
}

/// `esark verify --input <archive> --target <target>`, ready for more flags.
pub fn verify_cmd(archive: &Path, target: &TestCluster) -> Esark {
    Esark::new()
        .arg("verify")
        .arg("--input")
        .arg(archive)
        .args(target_args(target))
}

/// `esark copy --source <source> --target <target>`, ready for more flags.
pub fn copy_cmd(source: &TestCluster, target: &TestCluster) -> Esark {
    Esark::new()
        .arg("copy")
        .args(source.source_args())
        .args(target_args(target))
}

/// The `--json` summary on stdout, parsed; panics with the whole run if
/// stdout is not one JSON document.
pub fn json_report(output: &Output) -> Value {
    serde_json::from_str(output.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{output}"))
}

/// The entry of `report.indices` whose `name` is `name`.
pub fn report_index<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["indices"]
        .as_array()
        .unwrap_or_else(|| panic!("report has no indices array: {report}"))
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("index {name:?} not in report: {report}"))
}

/// The ids listed under `report_index[field]` (`missing`, `changed`, ...).
pub fn id_list(entry: &Value, field: &str) -> Vec<String> {
    entry[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is not an array in {entry}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{field}: id {v} is not a string"))
                .to_string()
        })
        .collect()
}

// ---- the target side ------------------------------------------------------

/// One document as the server returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub routing: Option<String>,
    /// The `_source` text exactly as the server sent it.
    pub source: String,
}

#[derive(Deserialize)]
struct SearchResponse {
    hits: Hits,
}

#[derive(Deserialize)]
struct Hits {
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    _id: String,
    #[serde(default)]
    _routing: Option<String>,
    _source: Box<RawValue>,
}

/// Every document of `index` (at most 10,000), id -> routing and raw
/// `_source`. Refreshes first so a just-finished restore is visible.
pub fn docs_of(cluster: &TestCluster, index: &str) -> BTreeMap<String, Stored> {
    cluster.refresh(index);
    let total = cluster.count(index);
    assert!(
        total <= 10_000,
        "{index}: {total} docs, too many for one page"
    );
    let text = cluster.get_text(&format!(
        "/{}/_search?size=10000&expand_wildcards=all",
        enc(index)
    ));
    let resp: SearchResponse = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("search of {index}: {e}: {text:.500}"));
    let mut out = BTreeMap::new();
    for hit in resp.hits.hits {
        let previous = out.insert(
            hit._id.clone(),
            Stored {
                routing: hit._routing,
                source: hit._source.get().to_string(),
            },
        );
        assert!(previous.is_none(), "{index}: id {} returned twice", hit._id);
    }
    assert_eq!(out.len() as u64, total, "{index}: hits vs _count");
    out
}

/// `GET /<index>/_doc/<id>?routing=..`: the raw `_source` text, or `None`
/// when the document is not found.
pub fn get_source(
    cluster: &TestCluster,
    index: &str,
    id: &str,
    routing: Option<&str>,
) -> Option<String> {
    let mut path = format!("/{}/_doc/{}", enc(index), enc(id));
    if let Some(r) = routing {
        path.push_str(&format!("?routing={}", enc(r)));
    }
    let (status, text) = cluster.request_text(reqwest::Method::GET, &path, "", None);
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "GET {path}: {text}");
    let fields: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"));
    if fields.get("found").map(|f| f.get()) == Some("false") {
        return None;
    }
    Some(
        fields
            .get("_source")
            .unwrap_or_else(|| panic!("GET {path}: no _source: {text}"))
            .get()
            .to_string(),
    )
}

/// Every index of the cluster, hidden and dot ones included, sorted; on
/// the shared target, those the running test created ([`TestCluster::is_new`]).
pub fn all_index_names(cluster: &TestCluster) -> Vec<String> {
    let list = cluster.get("/_cat/indices?format=json&expand_wildcards=all");
    let mut names: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("_cat/indices: {list}"))
        .iter()
        .map(|i| i["index"].as_str().unwrap().to_string())
        .filter(|n| created_by_test(cluster, "index", n))
        .collect();
    names.sort();
    names
}

/// On a private osmem, everything; on the shared target, what appeared
/// since the test started ([`TestCluster::is_new`]), less the system
/// indices and templates (`.`-names) the cluster may create meanwhile.
fn created_by_test(cluster: &TestCluster, kind: &str, name: &str) -> bool {
    cluster.is_new(kind, name)
        && !(cluster.is_shared() && name.starts_with('.') && !name.contains("esark-test"))
}

/// Every template of the cluster as `kind:name` (`legacy`, `index`,
/// `component`), sorted; on the shared target, those the running test
/// created.
pub fn all_template_names(cluster: &TestCluster) -> Vec<String> {
    let mut out = Vec::new();
    let legacy = cluster.get("/_template");
    for name in legacy.as_object().map(|o| o.keys()).into_iter().flatten() {
        if created_by_test(cluster, "legacy", name) {
            out.push(format!("legacy:{name}"));
        }
    }
    for (kind, path, field) in [
        ("index", "/_index_template", "index_templates"),
        ("component", "/_component_template", "component_templates"),
    ] {
        let v = cluster.get(path);
        for t in v[field].as_array().into_iter().flatten() {
            let name = t["name"].as_str().unwrap_or("?");
            let snapshot_kind = if kind == "index" {
                "index_template"
            } else {
                kind
            };
            if created_by_test(cluster, snapshot_kind, name) {
                out.push(format!("{kind}:{name}"));
            }
        }
    }
    out.sort();
    out
}

/// `GET /_alias/<name>`: the concrete indices the alias points to, with
/// its definition on each; empty when no alias has that name.
pub fn alias_targets(cluster: &TestCluster, alias: &str) -> BTreeMap<String, Value> {
    let (status, v) = cluster.request(
        reqwest::Method::GET,
        &format!("/_alias/{}", enc(alias)),
        "",
        None,
    );
    if status == 404 {
        return BTreeMap::new();
    }
    assert_eq!(status, 200, "GET /_alias/{alias}: {v}");
    v.as_object()
        .unwrap()
        .iter()
        .map(|(index, body)| (index.clone(), body["aliases"][alias].clone()))
        .collect()
}

/// `_count` through a name that may be an index or an alias; `None` when
/// the request fails (the name does not resolve).
pub fn try_count(cluster: &TestCluster, name: &str) -> Option<u64> {
    let (status, v) = cluster.request(
        reqwest::Method::GET,
        &format!("/{}/_count", enc(name)),
        "",
        None,
    );
    (status == 200).then(|| v["count"].as_u64()).flatten()
}

/// Settings flattened to dotted keys (`index.analysis.filter.x.type`), with
/// every leaf as a string, as the servers return them.
pub fn flatten(value: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// Asserts that every key of `expected` (flattened) has the same value in
/// `actual`: the verify contract for settings.
pub fn assert_settings_subset(expected: &Value, actual: &Value, what: &str) {
    let actual = flatten(actual);
    let differing: Vec<String> = flatten(expected)
        .into_iter()
        .filter(|(k, v)| actual.get(k) != Some(v))
        .map(|(k, v)| format!("{k}: expected {v}, target has {:?}", actual.get(&k)))
        .collect();
    assert!(
        differing.is_empty(),
        "{what}: settings differ:\n  {}",
        differing.join("\n  ")
    );
}

// ---- background runs --------------------------------------------------------

/// An esark process running in the background.
pub struct Spawned {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    command: String,
    started: Instant,
    /// Set once the child has exited.
    code: Option<Option<i32>>,
}

impl Spawned {
    /// Starts `esark <args>` in `cwd` (the test's own directory when
    /// `None`), with the same clean environment as [`Esark::run`].
    pub fn start<I, S>(args: I, cwd: Option<&Path>) -> Spawned
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Spawned::start_with_env(args, cwd, &[])
    }

    /// [`Spawned::start`] with environment variables added.
    pub fn start_with_env<I, S>(args: I, cwd: Option<&Path>, envs: &[(&str, &str)]) -> Spawned
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let bin = env!("CARGO_BIN_EXE_esark");
        let args: Vec<OsString> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let command = std::iter::once(bin.to_string())
            .chain(args.iter().map(|a| {
                let a = super::esark::redact(&a.to_string_lossy());
                if a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b))
                    && !a.is_empty()
                {
                    a
                } else {
                    format!("'{}'", a.replace('\'', "'\\''"))
                }
            }))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ESARK_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("NO_COLOR", "1");
        cmd.env("ESARK_STATE_DIR", super::esark::test_state_dir());
        cmd.env("ESARK_SPOOL_DIR", super::esark::test_spool_dir());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
        let stdout = capture(child.stdout.take().unwrap());
        let stderr = capture(child.stderr.take().unwrap());
        Spawned {
            child,
            stdout,
            stderr,
            command,
            started: Instant::now(),
            code: None,
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        if self.code.is_none() {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.code = Some(status.code());
            }
        }
        self.code.is_none()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until `ready` holds, polling; panics (with `what`) if the
    /// process ends first or `timeout` passes.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return;
            }
            assert!(
                self.is_running(),
                "esark ended before {what}: {}\n--- stderr ---\n{}",
                self.command,
                text(&self.stderr)
            );
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}: {}",
                self.command
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        assert!(self.is_running(), "esark already ended: {}", self.command);
        self.child.kill().unwrap();
    }

    /// One SIGTERM, as `kill`, `timeout` or a service manager sends.
    pub fn sigterm(&mut self) {
        assert!(self.is_running(), "esark already ended: {}", self.command);
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed");
    }

    /// One SIGINT, as a Ctrl-C.
    pub fn sigint(&mut self) {
        assert!(self.is_running(), "esark already ended: {}", self.command);
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill -INT");
        assert!(status.success(), "kill -INT failed");
    }

    /// Waits for the exit (killing it and panicking after `timeout` from the
    /// start) and returns what it did.
    pub fn wait(mut self, timeout: Duration) -> Output {
        while self.is_running() {
            if self.started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "esark did not finish within {timeout:?}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.command,
                    text(&self.stdout),
                    text(&self.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while (Arc::strong_count(&self.stdout) > 1 || Arc::strong_count(&self.stderr) > 1)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        Output {
            code: self.code.unwrap(),
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
            command: self.command.clone(),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // A test that panics mid-run must not leave the process behind.
        if self.code.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---- seeding and comparing --------------------------------------------------

/// Creates `name` with `body` and indexes `docs` (id, compact `_source`
/// text), refreshed. Returns them as [`docs_of`] should read them back.
pub fn seed_index(
    cluster: &TestCluster,
    name: &str,
    body: &Value,
    docs: &[(String, String)],
) -> BTreeMap<String, Stored> {
    cluster.create_index(name, body);
    let mut out = BTreeMap::new();
    for chunk in docs.chunks(2000) {
        let mut bulk = super::server::BulkBody::new();
        for (id, source) in chunk {
            bulk.index(name, id, None, source);
            out.insert(
                id.clone(),
                Stored {
                    routing: None,
                    source: source.clone(),
                },
            );
        }
        cluster.bulk(bulk.as_str());
    }
    assert_eq!(cluster.count(name), docs.len() as u64, "seeded {name}");
    out
}

/// Asserts two id -> document maps are equal, listing the first differences
/// (rather than printing both maps whole).
pub fn assert_same_stored(
    expected: &BTreeMap<String, Stored>,
    actual: &BTreeMap<String, Stored>,
    what: &str,
) {
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .collect();
    let unexpected: Vec<&String> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    let changed: Vec<String> = expected
        .iter()
        .filter_map(|(id, e)| {
            actual
                .get(id)
                .filter(|a| *a != e)
                .map(|a| format!("{id:?}\n    expected: {e:?}\n    actual:   {a:?}"))
        })
        .collect();
    assert!(
        missing.is_empty() && unexpected.is_empty() && changed.is_empty(),
        "{what}: documents differ ({} expected, {} actual)\nmissing ({}): {:?}\n\
         unexpected ({}): {:?}\nchanged ({}):\n  {}",
        expected.len(),
        actual.len(),
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        unexpected.len(),
        unexpected.iter().take(5).collect::<Vec<_>>(),
        changed.len(),
        changed
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  "),
    );
}

/// Copies a folder tree (an archive) to `to`, which must not exist.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Chunks acknowledged in the restore state file at `path` (0 while it
/// does not exist): the `acked` lines of a journal (state format 3), or
/// the `chunks` of each index of the one JSON object esark wrote before.
pub fn acked_chunks_in_state(path: &Path) -> usize {
    let Ok(bytes) = std::fs::read(path) else {
        return 0;
    };
    if let Ok(state) = serde_json::from_slice::<Value>(&bytes) {
        return state["indices"]
            .as_object()
            .into_iter()
            .flat_map(|i| i.values())
            .map(|i| i["chunks"].as_object().map_or(0, |c| c.len()))
            .sum();
    }
    let chunks: std::collections::HashSet<(String, String)> = bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(|change| change["change"] == "acked")
        .map(|change| (change["index"].to_string(), change["chunk"].to_string()))
        .collect();
    chunks.len()
}
