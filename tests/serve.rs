//! `esark serve`, started as a process: config checks, health, tokens and
//! roles, jobs end to end against osmem clusters (export, import, verify,
//! errors), kill -9, SIGTERM, cancel and resume, the queue, options,
//! secrets, TLS and the OpenAPI document.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::archive::Archive;
use crate::util::faults::{Fault, FaultProxy, Route, Rule, When};
use crate::util::restore_support::{docs_of, target_cluster};
use crate::util::serve::{cluster_table, token_digest, token_table, Serve};
use crate::util::server::{BulkBody, TestCluster};

fn base(dir: &std::path::Path) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nstate = \"{}\"\narchives = \"{}\"\n",
        dir.join("state").display(),
        dir.join("archives").display()
    )
}

/// A service in `dir` with `clusters` (name, cluster) and `extra` TOML
/// (tokens, max_jobs) after the base keys.
fn start(dir: &Path, top: &str, clusters: &[(&str, &TestCluster)], tail: &str) -> Serve {
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
fn seed(cluster: &TestCluster, index: &str, n: usize) {
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
fn slow_pages(cluster: &TestCluster, delay_ms: u64) -> FaultProxy {
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
fn proxy_table(name: &str, proxy: &FaultProxy) -> String {
    format!("[clusters.{name}]\nurl = \"{}\"\n", proxy.url())
}

/// The ids of `index` in the archive `name` of the service in `dir`: each
/// once.
fn archive_ids(dir: &Path, name: &str, index: &str) -> BTreeSet<String> {
    let ids: Vec<String> = Archive::open(&dir.join("archives").join(name))
        .docs(index)
        .into_iter()
        .map(|d| d.id)
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "an id twice in the archive");
    unique
}

fn export(cluster: &str, archive: &str, options: Value) -> Value {
    json!({"kind": "export", "cluster": cluster, "archive": archive, "options": options})
}

fn id_of(job: &Value) -> String {
    job["id"].as_str().expect("a job id").to_string()
}

#[test]
fn health_answers_without_a_token_and_other_routes_need_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[tokens]]\nname = \"ci\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
        base(dir.path()),
        token_digest("ci-secret")
    );
    let serve = Serve::start(dir.path(), &config, &[]);
    assert_eq!(
        serve.call("GET", "/v1/health", None, None),
        (200, json!({"status": "ok"}))
    );
    assert_eq!(serve.call("GET", "/v1/jobs", None, None).0, 401);
    assert_eq!(serve.call("GET", "/v1/jobs", Some("nope"), None).0, 401);
    assert_eq!(
        serve.call("GET", "/v1/jobs", Some("ci-secret"), None).0,
        200
    );
}

#[test]
fn a_non_loopback_listener_without_tokens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = base(dir.path()).replace("127.0.0.1:0", "0.0.0.0:0");
    let (code, stderr) = Serve::refused(dir.path(), &config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// One row of the role matrix: a request and its status for the tokens
/// viewer, exporter, restorer, admin, and none.
struct Row {
    method: &'static str,
    path: String,
    body: Option<Value>,
    expected: [u16; 5],
}

/// The archive endpoints' rows of the role matrix (`/v1/archives*`, served
/// by `archives::routes()`): added here when that module is merged.
fn archive_rows() -> Vec<Row> {
    Vec::new()
}

#[test]
fn the_role_matrix_of_the_job_and_metrics_endpoints() {
    let cluster = TestCluster::start("serve_roles");
    // One slot, held by an export slowed to a crawl: every other job stays
    // queued, so cancel and resume answers do not depend on timing.
    let proxy = slow_pages(&cluster, 20_000);
    let index = cluster.name("roles");
    seed(&cluster, &index, 10);
    let dir = tempfile::tempdir().unwrap();
    let tokens: String = [
        ("v", "viewer"),
        ("e", "exporter"),
        ("r", "restorer"),
        ("a", "admin"),
    ]
    .iter()
    .map(|(n, r)| token_table(n, r))
    .chain([token_table("p", "exporter") + "clusters = [\"prod\"]\n"])
    .collect();
    let serve = start(
        dir.path(),
        "max_jobs = 1",
        &[("prod", &cluster)],
        &format!("{}{tokens}", proxy_table("slow", &proxy)),
    );
    let blocker = serve.submit(
        Some("a-secret"),
        &export(
            "slow",
            "blocker",
            json!({"match": format!("^{index}$"), "page_size": 1}),
        ),
    );
    serve.wait_status(Some("a-secret"), &id_of(&blocker), "running");
    let admin_job = id_of(&serve.submit(Some("a-secret"), &export("prod", "admin-1", json!({}))));
    let own_export = id_of(&serve.submit(Some("e-secret"), &export("prod", "e-1", json!({}))));
    let own_import = id_of(&serve.submit(
        Some("r-secret"),
        &json!({"kind": "import", "cluster": "prod", "archive": "admin-1"}),
    ));
    let job_body = |kind: &str, archive: &str| match kind {
        "copy" => json!({"kind": "copy", "cluster": "prod", "target_cluster": "prod",
            "options": {"match": "^nothing$"}}),
        _ => json!({"kind": kind, "cluster": "prod", "archive": archive}),
    };
    let mut rows = vec![
        Row {
            method: "GET",
            path: "/v1/jobs".into(),
            body: None,
            expected: [200, 200, 200, 200, 401],
        },
        Row {
            method: "GET",
            path: format!("/v1/jobs/{admin_job}"),
            body: None,
            expected: [200, 200, 200, 200, 401],
        },
        Row {
            method: "GET",
            path: format!("/v1/jobs/{admin_job}/errors"),
            body: None,
            expected: [200, 200, 200, 200, 401],
        },
        Row {
            method: "GET",
            path: "/metrics".into(),
            body: None,
            expected: [200, 200, 200, 200, 401],
        },
        Row {
            method: "GET",
            path: "/v1/openapi.json".into(),
            body: None,
            expected: [200, 200, 200, 200, 200],
        },
        Row {
            method: "GET",
            path: "/v1/health".into(),
            body: None,
            expected: [200, 200, 200, 200, 200],
        },
    ];
    for (kind, expected) in [
        ("export", [403, 202, 403, 202, 401]),
        ("import", [403, 403, 202, 202, 401]),
        ("verify", [403, 202, 202, 202, 401]),
        ("copy", [403, 403, 202, 202, 401]),
    ] {
        // One archive name per caller: two exports may not share one.
        for (i, token) in ["v", "e", "r", "a", "none"].iter().enumerate() {
            let mut only = [0u16; 5];
            only[i] = expected[i];
            rows.push(Row {
                method: "POST",
                path: "/v1/jobs".into(),
                body: Some(job_body(kind, &format!("{kind}-{token}"))),
                expected: only,
            });
        }
    }
    rows.extend([
        // Others' jobs: admin only.
        Row {
            method: "POST",
            path: format!("/v1/jobs/{admin_job}/cancel"),
            body: None,
            expected: [403, 403, 403, 202, 401],
        },
        Row {
            method: "POST",
            path: format!("/v1/jobs/{admin_job}/resume"),
            body: None,
            expected: [403, 403, 403, 202, 401],
        },
        // Their own: exporters and restorers too.
        Row {
            method: "POST",
            path: format!("/v1/jobs/{own_export}/cancel"),
            body: None,
            expected: [403, 202, 403, 0, 401],
        },
        Row {
            method: "POST",
            path: format!("/v1/jobs/{own_import}/cancel"),
            body: None,
            expected: [403, 403, 202, 0, 401],
        },
    ]);
    rows.extend(archive_rows());
    let tokens = [
        Some("v-secret"),
        Some("e-secret"),
        Some("r-secret"),
        Some("a-secret"),
        None,
    ];
    let mut wrong = Vec::new();
    for row in &rows {
        for (token, expected) in tokens.iter().zip(row.expected) {
            if expected == 0 {
                continue; // Not part of this row (it would change the job).
            }
            let (status, body) = serve.call(row.method, &row.path, *token, row.body.as_ref());
            if status != expected {
                wrong.push(format!(
                    "{} {} as {token:?}: {status}, expected {expected}: {body}",
                    row.method, row.path
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // A token limited to some clusters is refused the others.
    let (status, body) = serve.call(
        "POST",
        "/v1/jobs",
        Some("p-secret"),
        Some(&export("slow", "x", json!({}))),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = serve.call(
        "POST",
        "/v1/jobs",
        Some("p-secret"),
        Some(&export("prod", "x", json!({}))),
    );
    assert_eq!(status, 202, "{body}");
    let (status, _) = serve.call(
        "POST",
        &format!("/v1/jobs/{}/cancel", id_of(&blocker)),
        Some("a-secret"),
        None,
    );
    assert_eq!(status, 202);
}

#[test]
fn export_then_import_and_verify_through_jobs_are_exact() {
    let test = "serve_round_trip";
    let source = TestCluster::start(test);
    let Some(target) = target_cluster(test) else {
        return;
    };
    let (a, b) = (source.name("trip-a"), source.name("trip-b"));
    seed(&source, &a, 600);
    seed(&source, &b, 300);
    let dir = tempfile::tempdir().unwrap();
    let serve = start(
        dir.path(),
        "",
        &[("prod", &source), ("staging", &target)],
        "",
    );
    let job = serve.submit(
        None,
        &export(
            "prod",
            "nightly-1",
            json!({"match": format!("^({a}|{b})$"), "page_size": 100}),
        ),
    );
    assert_eq!(job["status"], "queued", "{job}");
    assert_eq!(job["created_by"], "local");
    let id = id_of(&job);
    let done = serve.wait_status(None, &id, "succeeded");
    let progress = &done["progress"];
    assert_eq!(
        (
            progress["docs_done"].as_u64(),
            progress["docs_total"].as_u64()
        ),
        (Some(900), Some(900)),
        "{done}"
    );
    assert!(
        progress["bytes_done"].as_u64().unwrap() > 900 * 20,
        "{done}"
    );
    for (name, n) in [(&a, 600), (&b, 300)] {
        let entry = progress["indices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name.as_str())
            .unwrap();
        assert_eq!(
            (
                entry["status"].as_str(),
                entry["docs_done"].as_u64(),
                entry["docs_total"].as_u64()
            ),
            (Some("done"), Some(n), Some(n)),
            "{entry}"
        );
        assert_eq!(archive_ids(dir.path(), "nightly-1", name).len() as u64, n);
    }
    assert_eq!(done["report"]["docs"], 900, "{done}");
    assert!(
        done["started_at"].is_string() && done["finished_at"].is_string(),
        "{done}"
    );
    assert_eq!(done["error"], Value::Null);

    let import = serve.submit(
        None,
        &json!({"kind": "import", "cluster": "staging", "archive": "nightly-1"}),
    );
    let done = serve.wait_status(None, &id_of(&import), "succeeded");
    assert_eq!(done["progress"]["docs_done"], 900, "{done}");
    assert_eq!(done["report"]["written"], 900, "{done}");
    for name in [&a, &b] {
        let copied: BTreeSet<String> = docs_of(&target, name).into_keys().collect();
        let original: BTreeSet<String> = docs_of(&source, name).into_keys().collect();
        assert_eq!(copied, original, "{name}");
    }
    let verify = serve.submit(
        None,
        &json!({"kind": "verify", "cluster": "staging", "archive": "nightly-1"}),
    );
    let done = serve.wait_status(None, &id_of(&verify), "succeeded");
    assert_eq!(done["report"]["status"], "match", "{done}");

    let (_, list) = serve.call("GET", "/v1/jobs", None, None);
    let kinds: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["verify", "import", "export"], "newest first");
    let (_, list) = serve.call("GET", "/v1/jobs?kind=import&status=succeeded", None, None);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(serve.call("GET", "/v1/jobs?status=done", None, None).0, 400);
    let (status, metrics) = serve.call("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("esark_jobs{kind=\"export\",status=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("esark_documents_total{kind=\"import\"} 900"),
        "{metrics}"
    );
    // The same archive name again: refused, the archive is kept.
    let (status, body) = serve.call(
        "POST",
        "/v1/jobs",
        None,
        Some(&export("prod", "nightly-1", json!({}))),
    );
    assert_eq!(status, 409, "{body}");
}

/// A slow export of 1,000 documents (pages of 50, each delayed) that has
/// started moving documents: the service, the job id, the index, and the
/// proxy (kept alive by the caller).
fn slow_export(test: &str, dir: &Path) -> (Serve, String, String, TestCluster, FaultProxy) {
    let cluster = TestCluster::start(test);
    let proxy = slow_pages(&cluster, 300);
    let index = cluster.name("slow");
    seed(&cluster, &index, 1_000);
    let serve = start(dir, "", &[], &proxy_table("slow", &proxy));
    let job = serve.submit(
        None,
        &export(
            "slow",
            "slow-1",
            json!({"match": format!("^{index}$"), "page_size": 50, "slices": 1}),
        ),
    );
    let id = id_of(&job);
    serve.wait_job(
        None,
        &id,
        Duration::from_secs(60),
        "moving documents",
        |j| j["progress"]["docs_done"].as_u64().unwrap_or(0) >= 100,
    );
    // Progress is written every second: let it reach the database.
    std::thread::sleep(Duration::from_millis(1_500));
    (serve, id, index, cluster, proxy)
}

/// Resumes job `id`, waits for it, and checks the archive holds every
/// document of `index` once.
fn resume_to_the_end(serve: &Serve, dir: &Path, id: &str, index: &str) {
    let (status, job) = serve.call("POST", &format!("/v1/jobs/{id}/resume"), None, None);
    assert_eq!(status, 202, "{job}");
    let done = serve.wait_status(None, id, "succeeded");
    assert_eq!(done["report"]["docs"], 1_000, "{done}");
    assert_eq!(archive_ids(dir, "slow-1", index).len(), 1_000);
    // Finished jobs do not resume.
    assert_eq!(
        serve
            .call("POST", &format!("/v1/jobs/{id}/resume"), None, None)
            .0,
        409
    );
}

#[test]
fn a_job_killed_with_the_server_is_interrupted_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut serve, id, index, _cluster, _proxy) = slow_export("serve_kill9", dir.path());
    serve.kill_and_restart();
    let job = serve.job(None, &id);
    assert_eq!(job["status"], "interrupted", "{job}");
    assert!(
        job["progress"]["docs_done"].as_u64().unwrap() >= 100,
        "progress was persisted: {job}"
    );
    resume_to_the_end(&serve, dir.path(), &id, &index);
}

#[test]
fn a_cancelled_export_is_cancelled_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, id, index, _cluster, _proxy) = slow_export("serve_cancel", dir.path());
    let (status, job) = serve.call("POST", &format!("/v1/jobs/{id}/cancel"), None, None);
    assert_eq!(status, 202, "{job}");
    assert!(
        ["cancelling", "cancelled"].contains(&job["status"].as_str().unwrap()),
        "{job}"
    );
    serve.wait_status(None, &id, "cancelled");
    assert_eq!(
        serve
            .call("POST", &format!("/v1/jobs/{id}/cancel"), None, None)
            .0,
        409
    );
    resume_to_the_end(&serve, dir.path(), &id, &index);
}

#[test]
fn sigterm_stops_the_server_and_leaves_the_job_interrupted_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let (mut serve, id, index, _cluster, _proxy) = slow_export("serve_sigterm", dir.path());
    assert_eq!(
        serve.terminate(Duration::from_secs(60)),
        Some(0),
        "{}",
        serve.stderr()
    );
    serve.restart();
    let job = serve.job(None, &id);
    assert_eq!(job["status"], "interrupted", "{job}");
    resume_to_the_end(&serve, dir.path(), &id, &index);
}

#[test]
fn with_one_slot_the_second_job_waits_queued() {
    let cluster = TestCluster::start("serve_queue");
    let proxy = slow_pages(&cluster, 20_000);
    let index = cluster.name("queue");
    seed(&cluster, &index, 10);
    let dir = tempfile::tempdir().unwrap();
    let serve = start(
        dir.path(),
        "max_jobs = 1",
        &[],
        &proxy_table("slow", &proxy),
    );
    let options = json!({"match": format!("^{index}$"), "page_size": 1});
    let first = id_of(&serve.submit(None, &export("slow", "q-1", options.clone())));
    serve.wait_status(None, &first, "running");
    let second = id_of(&serve.submit(None, &export("slow", "q-2", options)));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(serve.job(None, &second)["status"], "queued");
    assert_eq!(serve.job(None, &first)["status"], "running");
    // Cancelled while queued: it never runs.
    assert_eq!(
        serve
            .call("POST", &format!("/v1/jobs/{second}/cancel"), None, None)
            .0,
        202
    );
    assert_eq!(serve.job(None, &second)["status"], "cancelled");
    assert_eq!(serve.job(None, &second)["started_at"], Value::Null);
}

#[test]
fn an_idempotency_key_returns_the_same_job() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[clusters.prod]\nurl = \"http://127.0.0.1:9\"\n",
        base(dir.path())
    );
    let serve = Serve::start(dir.path(), &config, &[]);
    let body = export("prod", "idem", json!({})).to_string().into_bytes();
    let submit = || {
        let (status, headers, text) = serve.call_raw(
            "POST",
            "/v1/jobs",
            None,
            Some(body.clone()),
            &[("Idempotency-Key", "nightly-2026-12-01")],
        );
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&text));
        let job: Value = serde_json::from_slice(&text).unwrap();
        let location = headers["location"].to_str().unwrap().to_string();
        assert_eq!(
            location,
            format!("/v1/jobs/{}", job["id"].as_str().unwrap())
        );
        id_of(&job)
    };
    let first = submit();
    let second = submit();
    assert_eq!(first, second);
    let (_, list) = serve.call("GET", "/v1/jobs", None, None);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn bad_requests_are_refused_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[clusters.prod]\nurl = \"http://127.0.0.1:9\"\n",
        base(dir.path())
    );
    let serve = Serve::start(dir.path(), &config, &[]);
    for (body, status, expected) in [
        (
            export("prod", "a", json!({"page_sise": 10})),
            400,
            "\"page_sise\"",
        ),
        (
            export("prod", "a", json!({"page_size": "many"})),
            400,
            "\"page_size\"",
        ),
        (
            export("prod", "a", json!({"compression": "lzma"})),
            400,
            "\"compression\"",
        ),
        (
            export("prod", "a", json!({"output": "/etc"})),
            400,
            "\"output\"",
        ),
        (
            export("prod", "a", json!({"source_password_file": "/etc/shadow"})),
            400,
            "not allowed",
        ),
        (
            export("prod", "a", json!({"query": "@/etc/passwd"})),
            400,
            "\"query\"",
        ),
        (
            json!({"kind": "import", "cluster": "prod", "archive": "a", "options": {"rejects": "/tmp/x"}}),
            400,
            "\"rejects\"",
        ),
        (export("prod", "../etc", json!({})), 400, "archive name"),
        (export("prod", ".hidden", json!({})), 400, "archive name"),
        (export("nope", "a", json!({})), 400, "unknown cluster"),
        (
            json!({"kind": "backup", "cluster": "prod"}),
            400,
            "unknown kind",
        ),
        (
            json!({"kind": "copy", "cluster": "prod"}),
            400,
            "target_cluster",
        ),
    ] {
        let (got, answer) = serve.call("POST", "/v1/jobs", None, Some(&body));
        let message = answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert_eq!(got, status, "{body}: {answer}");
        assert!(message.contains(expected), "{body}: {message}");
    }
    let huge = format!("{{\"kind\":\"export\",\"cluster\":\"prod\",\"archive\":\"a\",\"options\":{{\"match\":\"{}\"}}}}", "x".repeat(1_100_000));
    let (status, _, text) = serve.call_raw("POST", "/v1/jobs", None, Some(huge.into_bytes()), &[]);
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&text));
    let (_, list) = serve.call("GET", "/v1/jobs", None, None);
    assert_eq!(list["jobs"], json!([]), "nothing was created");
}

#[test]
fn a_failing_job_leaks_no_cluster_secret() {
    let cluster = TestCluster::start("serve_secrets");
    let proxy = crate::util::proxy::AuthProxy::start(&cluster, "backup", "the-right-one");
    let dir = tempfile::tempdir().unwrap();
    let secret = "hunter2-S3CRET-pw";
    let config = format!(
        "{}[clusters.prod]\nurl = \"{}\"\nuser = \"backup\"\npassword_env = \"ESARK_TEST_SERVE_SECRET\"\n",
        base(dir.path()),
        proxy.url()
    );
    let serve = Serve::start(dir.path(), &config, &[("ESARK_TEST_SERVE_SECRET", secret)]);
    let id = id_of(&serve.submit(None, &export("prod", "s-1", json!({}))));
    let failed = serve.wait_status(None, &id, "failed");
    assert!(failed["error"]["message"].is_string(), "{failed}");
    let mut answers = vec![failed.to_string()];
    for path in [
        "/v1/jobs".to_string(),
        format!("/v1/jobs/{id}/errors"),
        "/metrics".into(),
        "/v1/openapi.json".into(),
    ] {
        answers.push(serve.call("GET", &path, None, None).1.to_string());
    }
    answers.push(serve.stderr());
    for answer in &answers {
        assert!(
            !answer.contains(secret),
            "the password in an answer: {answer}"
        );
    }
    let mut files = vec![dir.path().join("state")];
    let mut seen = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            seen += 1;
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the password in {}",
                path.display()
            );
        }
    }
    assert!(seen >= 2, "the database and the job's log were read");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("state/jobs"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn rejected_documents_of_an_import_are_served_as_ndjson() {
    let test = "serve_rejects";
    let source = TestCluster::start(test);
    let Some(target) = target_cluster(test) else {
        return;
    };
    let name = source.name("strict");
    let mut body = BulkBody::new();
    for i in 0..20 {
        body.index(
            &name,
            &format!("s{i:02}"),
            None,
            &format!(r#"{{"a":"v{i}"}}"#),
        );
    }
    body.index(&name, "s-extra", None, r#"{"a":"x","extra":1}"#);
    source.create_index(&name, &json!({"settings": {"number_of_replicas": 0}}));
    source.bulk(body.as_str());
    source.refresh(&name);
    // The target's index is strict, without `extra`: merging into it
    // rejects that one document with a 400.
    target.create_index(
        &name,
        &json!({"settings": {"number_of_replicas": 0},
                "mappings": {"dynamic": "strict", "properties": {"a": {"type": "keyword"}}}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let serve = start(
        dir.path(),
        "",
        &[("prod", &source), ("staging", &target)],
        "",
    );
    let export_id = id_of(&serve.submit(
        None,
        &export("prod", "strict", json!({"match": format!("^{name}$")})),
    ));
    serve.wait_status(None, &export_id, "succeeded");
    let import = serve.submit(
        None,
        &json!({"kind": "import", "cluster": "staging", "archive": "strict", "options": {"mode": "merge"}}),
    );
    let id = id_of(&import);
    let done = serve.wait_status(None, &id, "partial");
    assert_eq!(done["report"]["rejected"], 1, "{done}");
    assert_eq!(done["report"]["written"], 20, "{done}");
    let (status, headers, text) =
        serve.call_raw("GET", &format!("/v1/jobs/{id}/errors"), None, None, &[]);
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let text = String::from_utf8(text).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(
        (
            lines[0]["index"].as_str(),
            lines[0]["id"].as_str(),
            lines[0]["status"].as_u64()
        ),
        (Some(name.as_str()), Some("s-extra"), Some(400)),
        "{text}"
    );
    assert!(
        lines[0]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{text}"
    );
    // Imports are not cancelled twice nor resumed once partial.
    assert_eq!(
        serve
            .call("POST", &format!("/v1/jobs/{id}/resume"), None, None)
            .0,
        409
    );
}

#[test]
fn tls_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let config = format!(
        "{}tls_cert = \"{}\"\ntls_key = \"{}\"\n{}",
        base(dir.path()),
        cert_path.display(),
        key_path.display(),
        token_table("v", "viewer")
    );
    let serve = Serve::start(dir.path(), &config, &[]).trust(&cert_path);
    assert!(serve.url.starts_with("https://127.0.0.1:"), "{}", serve.url);
    assert_eq!(serve.call("GET", "/v1/health", None, None).0, 200);
    assert_eq!(serve.call("GET", "/v1/jobs", Some("v-secret"), None).0, 200);
    assert_eq!(serve.call("GET", "/v1/jobs", None, None).0, 401);
    // Plain HTTP on the TLS port gets no answer.
    let plain = serve.url.replace("https://", "http://");
    let answer = reqwest::blocking::Client::new()
        .get(format!("{plain}/v1/health"))
        .timeout(Duration::from_secs(10))
        .send();
    assert!(answer.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[test]
fn the_openapi_document_lists_every_endpoint_with_bearer_security() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &base(dir.path()), &[]);
    let (status, doc) = serve.call("GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "/v1/health",
        "/metrics",
        "/v1/openapi.json",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/errors",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/resume",
        "/v1/archives",
        "/v1/archives/{name}",
        "/v1/archives/{name}/download",
    ]
    .into_iter()
    .collect();
    assert_eq!(paths, expected);
    assert!(doc["paths"]["/v1/archives/{name}"]["put"].is_object());
    assert!(
        doc["paths"]["/v1/jobs"]["post"].is_object() && doc["paths"]["/v1/jobs"]["get"].is_object()
    );
}
