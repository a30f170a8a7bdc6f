//! The cluster a test talks to, and a small blocking JSON client for it.
//!
//! [`TestCluster::start`] starts a private `osmem-server` (an in-memory
//! OpenSearch-compatible server) on `127.0.0.1:0`, or, when `ESARK_TEST_URL`
//! is set, uses that shared cluster (its URL may carry `user:password`).
//! Either way every test names what it creates with its own prefix
//! ([`TestCluster::prefix`], always lowercase because index names must be),
//! and on a shared cluster the indices and templates created through the
//! tracking methods ([`TestCluster::create_index`], ...) are deleted on drop.
//!
//! Environment:
//! - `ESARK_OSMEM_BIN`: the osmem binary (default `.venv/bin/osmem-server`,
//!   installed by `./scripts/install-osmem.sh`).
//! - `ESARK_TEST_URL`: a real cluster to use instead of osmem.
//! - `ESARK_TEST_TARGET_URL`: a second real cluster, the target of the
//!   restore, copy and verify tests ([`TestCluster::start_shared_target`]);
//!   it should be dedicated to the tests, as they list all its indices.
//! - `ESARK_TEST_CA_CERT`: CA certificate for an https `ESARK_TEST_URL`
//!   (passed to esark as `--ca-cert`; without it esark gets `--insecure`).

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::Value;

use super::osmem::Osmem;

/// Bytes kept as-is in a path segment: the RFC 3986 unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes an index (or template, alias) name for use as one path
/// segment: `%kuzzle` -> `%25kuzzle`, `a b` -> `a%20b`.
pub fn enc(name: &str) -> String {
    utf8_percent_encode(name, PATH_SEGMENT).to_string()
}

/// A random lowercase hex string, different on every call.
pub fn random_hex(len: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::new();
    while out.len() < len {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(len);
    out
}

/// What a test created on the cluster, deleted on drop on a shared cluster.
#[derive(Default)]
struct Created {
    indices: Vec<String>,
    legacy_templates: Vec<String>,
    index_templates: Vec<String>,
    component_templates: Vec<String>,
}

/// A cluster for one test: a private osmem, or the shared `ESARK_TEST_URL`.
pub struct TestCluster {
    /// The URL handed to esark: as given, possibly with `user:password@`.
    url: String,
    /// The URL without credentials and without a trailing slash.
    base: String,
    credentials: Option<(String, String)>,
    client: Client,
    prefix: String,
    /// The private server; `None` on a shared cluster.
    osmem: Option<Osmem>,
    /// Mutex because the tracking methods take `&self`.
    created: Mutex<Created>,
    /// Set on the shared target cluster ([`TestCluster::start_shared_target`]).
    target_scope: Option<TargetScope>,
}

/// What the shared target held before the test, and the lock that keeps
/// the other target tests out until this one is cleaned up.
struct TargetScope {
    before: BTreeSet<String>,
    _guard: TargetLease,
}

/// The right to use the shared target, one test at a time; released on
/// drop. (Not a `MutexGuard`, which may not move to another thread.)
struct TargetLease;

static TARGET_BUSY: Mutex<bool> = Mutex::new(false);
static TARGET_FREED: Condvar = Condvar::new();

impl TargetLease {
    fn acquire() -> TargetLease {
        // A test that panicked elsewhere poisons nothing that matters here.
        let mut busy = TARGET_BUSY.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = TARGET_FREED.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy = true;
        TargetLease
    }
}

impl Drop for TargetLease {
    fn drop(&mut self) {
        *TARGET_BUSY.lock().unwrap_or_else(|e| e.into_inner()) = false;
        TARGET_FREED.notify_one();
    }
}

/// `esark-test-<test_name, lowercase, non-alphanumerics as ->-<random>`.
fn prefix_for(test_name: &str) -> String {
    let slug: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("esark-test-{}-{}", slug, random_hex(6))
}

/// A non-empty URL from the environment variable `var`.
fn env_url(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
}

/// `v[list][*][field]` (or `v[*][field]` without `list`) as strings.
fn field_list(v: &Value, list: Option<&str>, field: &str) -> Vec<String> {
    let items = match list {
        Some(list) => &v[list],
        None => v,
    };
    items
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i[field].as_str().map(str::to_string))
        .collect()
}

impl TestCluster {
    /// A cluster for the test `test_name`, whose resources are named
    /// `esark-test-<test_name>-<random>` (see [`TestCluster::prefix`]).
    pub fn start(test_name: &str) -> TestCluster {
        let prefix = prefix_for(test_name);
        let (url, osmem) = match env_url("ESARK_TEST_URL") {
            Some(url) => (url, None),
            None => {
                let osmem = Osmem::start();
                (osmem.url.clone(), Some(osmem))
            }
        };
        TestCluster::at(url, osmem, prefix)
    }

    /// The shared target cluster `ESARK_TEST_TARGET_URL`, for a test that
    /// restores or copies into a second cluster; `None` when it is not set.
    ///
    /// Tests that write into it run one at a time (within this process):
    /// they restore under fixed names and list every index of the cluster.
    /// What exists when one starts is remembered; [`TestCluster::is_new`]
    /// tells what appeared since, and that is deleted on drop.
    pub fn start_shared_target(test_name: &str) -> Option<TestCluster> {
        let url = env_url("ESARK_TEST_TARGET_URL")?;
        let guard = TargetLease::acquire();
        let mut cluster = TestCluster::at(url, None, prefix_for(test_name));
        let before = cluster.snapshot();
        cluster.target_scope = Some(TargetScope {
            before,
            _guard: guard,
        });
        Some(cluster)
    }

    fn at(url: String, osmem: Option<Osmem>, prefix: String) -> TestCluster {
        let parsed = url::Url::parse(&url).unwrap_or_else(|e| panic!("bad test URL {url:?}: {e}"));
        let credentials = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            Some((
                decode(parsed.username()),
                decode(parsed.password().unwrap_or("")),
            ))
        };
        let mut bare = parsed.clone();
        bare.set_username("").unwrap();
        bare.set_password(None).unwrap();
        let base = bare.as_str().trim_end_matches('/').to_string();
        let client = Client::builder()
            .timeout(Duration::from_secs(120))
            // Test-only: a shared https cluster often has a self-signed cert.
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        TestCluster {
            url,
            base,
            credentials,
            client,
            prefix,
            osmem,
            created: Mutex::new(Created::default()),
            target_scope: None,
        }
    }

    /// Every index (`index:NAME`), data stream (`data_stream:NAME`) and
    /// template (`legacy:`, `index_template:`, `component:`) on the cluster.
    fn snapshot(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut names = |path: &str, kind: &str, list: fn(&Value) -> Vec<String>| {
            if let (200, v) = self.request(Method::GET, path, "", None) {
                out.extend(list(&v).into_iter().map(|n| format!("{kind}:{n}")));
            }
        };
        names(
            "/_cat/indices?format=json&expand_wildcards=all&h=index",
            "index",
            |v| field_list(v, None, "index"),
        );
        names("/_data_stream", "data_stream", |v| {
            field_list(v, Some("data_streams"), "name")
        });
        names("/_template", "legacy", |v| {
            v.as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        });
        names("/_index_template", "index_template", |v| {
            field_list(v, Some("index_templates"), "name")
        });
        names("/_component_template", "component", |v| {
            field_list(v, Some("component_templates"), "name")
        });
        out
    }

    /// Whether `kind:name` (as in [`TestCluster::snapshot`]) was created by
    /// the running test: always on a private osmem; on the shared target,
    /// when it was not there as the test started.
    pub fn is_new(&self, kind: &str, name: &str) -> bool {
        match &self.target_scope {
            Some(scope) => !scope.before.contains(&format!("{kind}:{name}")),
            None => true,
        }
    }

    /// True on the shared `ESARK_TEST_URL` cluster, false on a private osmem.
    pub fn is_shared(&self) -> bool {
        self.osmem.is_none()
    }

    /// The URL as given, possibly with credentials: what esark gets.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL without credentials and without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `user`, `password` of the URL, if it has any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The per-test name prefix, e.g. `esark-test-dump-json-3fa9c1`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>-<suffix>`.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{}", self.prefix, suffix)
    }

    /// The esark arguments that point `dump` at this cluster: `--source URL`
    /// plus the TLS options a shared https cluster needs.
    pub fn source_args(&self) -> Vec<String> {
        let mut args = vec!["--source".to_string(), self.url.clone()];
        args.extend(self.tls_args());
        args
    }

    /// TLS options for esark when the cluster is https (empty otherwise).
    pub fn tls_args(&self) -> Vec<String> {
        if !self.base.starts_with("https:") {
            return Vec::new();
        }
        match std::env::var("ESARK_TEST_CA_CERT") {
            Ok(ca) if !ca.is_empty() => vec!["--ca-cert".to_string(), ca],
            _ => vec!["--insecure".to_string()],
        }
    }

    /// The last lines osmem wrote, for failure messages.
    pub fn server_log(&self) -> String {
        self.osmem.as_ref().map(|o| o.log()).unwrap_or_default()
    }

    // ---- raw requests -------------------------------------------------

    /// Sends a request; `path` starts with `/` and has its names already
    /// encoded with [`enc`]. Returns the status and the body as JSON
    /// (`Value::Null` for an empty body, a string for a non-JSON one).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<String>,
    ) -> (u16, Value) {
        let (status, text) = self.request_text(method, path, content_type, body);
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Like [`TestCluster::request`], returning the body as text.
    pub fn request_text(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<String>,
    ) -> (u16, String) {
        let url = format!("{}{}", self.base, path);
        let mut req = self.client.request(method.clone(), &url);
        if let Some((user, password)) = &self.credentials {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            req = req.header("content-type", content_type).body(body);
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {url}: {e}\n{}", self.server_log()));
        let status = resp.status().as_u16();
        (status, resp.text().unwrap())
    }

    /// GET returning the body text (exact bytes as the server sent them).
    pub fn get_text(&self, path: &str) -> String {
        let (status, text) = self.request_text(Method::GET, path, "", None);
        assert!(
            (200..300).contains(&status),
            "GET {path} -> {status}: {text}"
        );
        text
    }

    fn expect_ok(&self, method: Method, path: &str, ctype: &str, body: Option<String>) -> Value {
        let (status, value) = self.request(method.clone(), path, ctype, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path} -> {status}: {value}"
        );
        value
    }

    pub fn get(&self, path: &str) -> Value {
        self.expect_ok(Method::GET, path, "", None)
    }

    /// PUT with a JSON body (`Value::Null` sends no body).
    pub fn put(&self, path: &str, body: &Value) -> Value {
        self.expect_ok(Method::PUT, path, "application/json", json_body(body))
    }

    /// POST with a JSON body (`Value::Null` sends no body).
    pub fn post(&self, path: &str, body: &Value) -> Value {
        self.expect_ok(Method::POST, path, "application/json", json_body(body))
    }

    /// DELETE that tolerates 404 (already gone); other failures panic.
    pub fn delete(&self, path: &str) -> Value {
        let (status, value) = self.request(Method::DELETE, path, "", None);
        assert!(
            (200..300).contains(&status) || status == 404,
            "DELETE {path} -> {status}: {value}"
        );
        value
    }

    /// Sends an NDJSON `_bulk` body with `refresh=true` and panics if any
    /// item failed. Returns the response.
    pub fn bulk(&self, ndjson: &str) -> Value {
        let resp = self.expect_ok(
            Method::POST,
            "/_bulk?refresh=true",
            "application/x-ndjson",
            Some(ndjson.to_string()),
        );
        if resp["errors"] != Value::Bool(false) {
            let first = resp["items"]
                .as_array()
                .and_then(|items| {
                    items.iter().find(|i| {
                        i.as_object()
                            .and_then(|o| o.values().next())
                            .map(|r| r.get("error").is_some())
                            .unwrap_or(false)
                    })
                })
                .cloned()
                .unwrap_or(Value::Null);
            panic!("bulk had errors; first failed item: {first}");
        }
        resp
    }

    pub fn refresh(&self, index: &str) {
        self.post(&format!("/{}/_refresh", enc(index)), &Value::Null);
    }

    /// `GET /`: name, uuid, version of the cluster.
    pub fn info(&self) -> Value {
        self.get("/")
    }

    /// `"opensearch"` or `"elasticsearch"`, from `GET /`.
    pub fn flavor(&self) -> &'static str {
        if self.info()["version"]["distribution"] == "opensearch" {
            "opensearch"
        } else {
            "elasticsearch"
        }
    }

    // ---- tracked resources ----------------------------------------------

    /// `PUT /<name>` with `body` (settings, mappings, aliases).
    pub fn create_index(&self, name: &str, body: &Value) {
        self.created.lock().unwrap().indices.push(name.to_string());
        self.put(&format!("/{}", enc(name)), body);
    }

    pub fn close_index(&self, name: &str) {
        self.post(&format!("/{}/_close", enc(name)), &Value::Null);
    }

    pub fn open_index(&self, name: &str) {
        self.post(&format!("/{}/_open", enc(name)), &Value::Null);
    }

    /// `PUT /_template/<name>` (legacy template).
    pub fn put_legacy_template(&self, name: &str, body: &Value) {
        let mut created = self.created.lock().unwrap();
        created.legacy_templates.push(name.to_string());
        drop(created);
        self.put(&format!("/_template/{}", enc(name)), body);
    }

    /// `PUT /_index_template/<name>` (composable template).
    pub fn put_index_template(&self, name: &str, body: &Value) {
        let mut created = self.created.lock().unwrap();
        created.index_templates.push(name.to_string());
        drop(created);
        self.put(&format!("/_index_template/{}", enc(name)), body);
    }

    /// `PUT /_component_template/<name>`.
    pub fn put_component_template(&self, name: &str, body: &Value) {
        let mut created = self.created.lock().unwrap();
        created.component_templates.push(name.to_string());
        drop(created);
        self.put(&format!("/_component_template/{}", enc(name)), body);
    }

    // ---- reads ------------------------------------------------------------

    pub fn count(&self, index: &str) -> u64 {
        self.get(&format!("/{}/_count", enc(index)))["count"]
            .as_u64()
            .unwrap()
    }

    /// `GET /<idx>/_settings` -> `.<idx>.settings` (`{"index": {...}}`).
    pub fn settings(&self, index: &str) -> Value {
        self.get(&format!("/{}/_settings", enc(index)))[index]["settings"].clone()
    }

    /// `GET /<idx>/_mapping` -> `.<idx>.mappings`.
    pub fn mappings(&self, index: &str) -> Value {
        self.get(&format!("/{}/_mapping", enc(index)))[index]["mappings"].clone()
    }

    /// `GET /<idx>/_alias` -> `.<idx>.aliases`.
    pub fn aliases(&self, index: &str) -> Value {
        self.get(&format!("/{}/_alias", enc(index)))[index]["aliases"].clone()
    }

    /// `GET /_template/<name>` -> `.<name>`.
    pub fn legacy_template(&self, name: &str) -> Value {
        self.get(&format!("/_template/{}", enc(name)))[name].clone()
    }

    /// `GET /_index_template/<name>` -> the `index_template` object.
    pub fn index_template(&self, name: &str) -> Value {
        let v = self.get(&format!("/_index_template/{}", enc(name)));
        find_named(&v["index_templates"], name, "index_template")
    }

    /// `GET /_component_template/<name>` -> the `component_template` object.
    pub fn component_template(&self, name: &str) -> Value {
        let v = self.get(&format!("/_component_template/{}", enc(name)));
        find_named(&v["component_templates"], name, "component_template")
    }
}

fn json_body(body: &Value) -> Option<String> {
    (!body.is_null()).then(|| body.to_string())
}

fn find_named(list: &Value, name: &str, field: &str) -> Value {
    list.as_array()
        .and_then(|l| l.iter().find(|t| t["name"] == name))
        .map(|t| t[field].clone())
        .unwrap_or_else(|| panic!("{field} {name} not found in {list}"))
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.osmem.is_some() {
            // The private server dies with everything in it.
            return;
        }
        if let Some(scope) = &self.target_scope {
            // Everything the test left on the shared target: data streams
            // before their backing indices, index templates before the
            // component templates they use.
            let now = self.snapshot();
            let order = [
                "data_stream",
                "index",
                "index_template",
                "component",
                "legacy",
            ];
            for kind in order {
                for entry in now.difference(&scope.before) {
                    let Some(name) = entry.strip_prefix(&format!("{kind}:")) else {
                        continue;
                    };
                    // What the cluster creates for itself meanwhile (`.tasks`,
                    // `.ds-ilm-history-…`) is not the test's to delete.
                    if name.starts_with('.') && !name.contains("esark-test") {
                        continue;
                    }
                    let path = match kind {
                        "data_stream" => format!("/_data_stream/{}", enc(name)),
                        "index" => format!("/{}", enc(name)),
                        "index_template" => format!("/_index_template/{}", enc(name)),
                        "component" => format!("/_component_template/{}", enc(name)),
                        _ => format!("/_template/{}", enc(name)),
                    };
                    let _ = self.client_delete(&path);
                }
            }
        }
        let created = std::mem::take(&mut *self.created.lock().unwrap());
        // Best effort, and never a panic inside a panic: index templates
        // before the component templates they use.
        let delete = |path: String| {
            let _ = self.client_delete(&path);
        };
        for name in created.indices {
            delete(format!("/{}", enc(&name)));
        }
        for name in created.index_templates {
            delete(format!("/_index_template/{}", enc(&name)));
        }
        for name in created.component_templates {
            delete(format!("/_component_template/{}", enc(&name)));
        }
        for name in created.legacy_templates {
            delete(format!("/_template/{}", enc(&name)));
        }
    }
}

impl TestCluster {
    fn client_delete(&self, path: &str) -> reqwest::Result<()> {
        let mut req = self.client.delete(format!("{}{}", self.base, path));
        if let Some((user, password)) = &self.credentials {
            req = req.basic_auth(user, Some(password));
        }
        req.send().map(|_| ())
    }
}

/// Builds an NDJSON `_bulk` body. Sources are passed as literal JSON text so
/// a test knows their exact bytes.
#[derive(Default)]
pub struct BulkBody {
    text: String,
    docs: usize,
}

impl BulkBody {
    pub fn new() -> BulkBody {
        BulkBody::default()
    }

    /// Adds an `index` action for `source` (one line of JSON text).
    pub fn index(&mut self, index: &str, id: &str, routing: Option<&str>, source: &str) {
        assert!(
            !source.contains('\n'),
            "a bulk source must be one line: {source}"
        );
        let mut action = serde_json::Map::new();
        action.insert("_index".into(), index.into());
        action.insert("_id".into(), id.into());
        if let Some(r) = routing {
            action.insert("routing".into(), r.into());
        }
        let action = serde_json::json!({ "index": action });
        self.text.push_str(&action.to_string());
        self.text.push('\n');
        self.text.push_str(source);
        self.text.push('\n');
        self.docs += 1;
    }

    pub fn len(&self) -> usize {
        self.docs
    }

    pub fn is_empty(&self) -> bool {
        self.docs == 0
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}
