//! Jobs of `esark serve` end to end against osmem clusters: export, import
//! and verify exact, a kill -9 and a SIGTERM of the service during a slowed
//! export (interrupted, resumed, exact), cancel and resume, the queue of
//! one slot, rejected documents as NDJSON.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::faults::FaultProxy;
use crate::util::restore_support::{docs_of, target_cluster};
use crate::util::serve::{
    archive_ids, export, id_of, job_log, proxy_table, seed, serve_with, slow_pages, Serve,
};
use crate::util::server::{BulkBody, TestCluster};

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
    let serve = serve_with(
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

    // The archive downloaded, uploaded again under another name and
    // imported from there (renamed): every document once, exactly.
    let (status, _, tar) =
        serve.call_raw("GET", "/v1/archives/nightly-1/download", None, None, &[]);
    assert_eq!(status, 200);
    let (status, _, body) = serve.call_raw("PUT", "/v1/archives/nightly-up", None, Some(tar), &[]);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let import = serve.submit(
        None,
        &json!({"kind": "import", "cluster": "staging", "archive": "nightly-up",
                "options": {"prefix": "up-"}}),
    );
    let done = serve.wait_status(None, &id_of(&import), "succeeded");
    assert_eq!(done["report"]["written"], 900, "{done}");
    for name in [&a, &b] {
        let copied: BTreeSet<String> = docs_of(&target, &format!("up-{name}"))
            .into_keys()
            .collect();
        let original: BTreeSet<String> = docs_of(&source, name).into_keys().collect();
        assert_eq!(copied, original, "up-{name}");
    }

    let (_, list) = serve.call("GET", "/v1/jobs", None, None);
    let kinds: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["import", "verify", "import", "export"],
        "newest first"
    );
    let (_, list) = serve.call("GET", "/v1/jobs?kind=import&status=succeeded", None, None);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(serve.call("GET", "/v1/jobs?status=done", None, None).0, 400);
    let (status, metrics) = serve.call("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("esark_jobs{kind=\"export\",status=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("esark_documents_total{kind=\"import\"} 1800"),
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
fn slow_export(
    test: &str,
    dir: &Path,
    top: &str,
) -> (Serve, String, String, TestCluster, FaultProxy) {
    let cluster = TestCluster::start(test);
    let proxy = slow_pages(&cluster, 300);
    let index = cluster.name("slow");
    seed(&cluster, &index, 1_000);
    let serve = serve_with(dir, top, &[], &proxy_table("slow", &proxy));
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
    let (mut serve, id, index, _cluster, _proxy) =
        slow_export("serve_kill9", dir.path(), "max_jobs = 1");
    // Waiting for the one slot when the service dies: it runs after the
    // restart.
    let queued = id_of(&serve.submit(
        None,
        &export(
            "slow",
            "slow-2",
            json!({"match": format!("^{index}$"), "page_size": 100}),
        ),
    ));
    assert_eq!(serve.job(None, &queued)["status"], "queued");
    serve.kill_and_restart();
    let job = serve.job(None, &id);
    assert_eq!(job["status"], "interrupted", "{job}");
    // Found so at the start, not recorded by the killed service.
    assert!(!job_log(dir.path(), &id).contains("ended"));
    assert!(
        job["progress"]["docs_done"].as_u64().unwrap() >= 100,
        "progress was persisted: {job}"
    );
    serve.wait_status(None, &queued, "succeeded");
    assert_eq!(archive_ids(dir.path(), "slow-2", &index).len(), 1_000);
    resume_to_the_end(&serve, dir.path(), &id, &index);
}

#[test]
fn a_cancelled_export_is_cancelled_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, id, index, _cluster, _proxy) = slow_export("serve_cancel", dir.path(), "");
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
    let (mut serve, id, index, _cluster, _proxy) = slow_export("serve_sigterm", dir.path(), "");
    assert_eq!(
        serve.terminate(Duration::from_secs(60)),
        Some(0),
        "{}",
        serve.stderr()
    );
    // Recorded by the service as it stopped (not found at the next start).
    let log = job_log(dir.path(), &id);
    assert!(log.contains("ended interrupted"), "{log}");
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
    let serve = serve_with(
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
    let serve = serve_with(
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

/// Archives in a bucket (moto): an export job writes the archive there, a
/// second export to the same name is refused with 409 before it is queued,
/// and an import job from the bucket is exact.
#[test]
fn export_and_import_jobs_with_archives_on_s3() {
    use crate::util::moto::Moto;
    use crate::util::serve::cluster_table;
    let Some(moto) = Moto::start("serve-jobs-s3") else {
        return;
    };
    moto.create_bucket("jobs");
    let test = "serve_jobs_s3";
    let source = TestCluster::start(test);
    let Some(target) = target_cluster(test) else {
        return;
    };
    let index = source.name("s3");
    seed(&source, &index, 400);
    let dir = tempfile::tempdir().unwrap();
    let mut config = format!(
        "listen = \"127.0.0.1:0\"\nstate = \"{}\"\narchives = \"s3://jobs/archives\"\n",
        dir.path().join("state").display()
    );
    let mut envs: Vec<(String, String)> = moto
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for (name, cluster) in [("prod", &source), ("staging", &target)] {
        let (table, env) = cluster_table(name, cluster);
        config.push_str(&table);
        envs.extend(env);
    }
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let serve = Serve::start(dir.path(), &config, &envs);

    let only = format!("^{}$", regex::escape(&index));
    let job = serve.submit(None, &export("prod", "nightly", json!({"match": only})));
    let done = serve.wait_status(None, &id_of(&job), "succeeded");
    assert_eq!(done["progress"]["docs_done"], 400, "{done}");
    let manifest: Value =
        serde_json::from_slice(&moto.get_object("jobs", "archives/nightly/manifest.json")).unwrap();
    assert_eq!(manifest["indices"][0]["docs"], 400, "{manifest}");
    let (status, body) = serve.call(
        "POST",
        "/v1/jobs",
        None,
        Some(&export("prod", "nightly", json!({}))),
    );
    assert_eq!(status, 409, "{body}");

    let import = serve.submit(
        None,
        &json!({"kind": "import", "cluster": "staging", "archive": "nightly"}),
    );
    let done = serve.wait_status(None, &id_of(&import), "succeeded");
    assert_eq!(done["report"]["written"], 400, "{done}");
    let copied: BTreeSet<String> = docs_of(&target, &index).into_keys().collect();
    let original: BTreeSet<String> = docs_of(&source, &index).into_keys().collect();
    assert_eq!(copied, original);
}
