//! `esark serve`, started as a process: config checks, health, tokens and
//! roles, idempotency keys, refused options, secrets, TLS and the OpenAPI
//! document. Jobs end to end (export, import, verify, kill -9, SIGTERM,
//! cancel, resume, the queue, rejects) are in [`jobs`].

// Jobs against osmem clusters, end to end.
mod jobs;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::serve::{
    base, export, id_of, proxy_table, seed, serve_with, slow_pages, token_digest, token_table,
    Serve,
};
use crate::util::server::TestCluster;

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

/// The archive endpoints' rows of the role matrix (`/v1/archives*`). The
/// role is checked before the archive is looked up: a caller without the
/// role gets 403 for an archive that does not exist, one with it 404 (the
/// answers with real archives are in `serve_archives`).
fn archive_rows() -> Vec<Row> {
    let row = |method, path: &str, body: Option<Value>, expected| Row {
        method,
        path: path.into(),
        body,
        expected,
    };
    vec![
        row("GET", "/v1/archives", None, [200, 200, 200, 200, 401]),
        row(
            "GET",
            "/v1/archives/none-such",
            None,
            [404, 404, 404, 404, 401],
        ),
        row(
            "GET",
            "/v1/archives/none-such/download",
            None,
            [403, 404, 403, 404, 401],
        ),
        // Not a tar: refused as such once the role allows the upload.
        row(
            "PUT",
            "/v1/archives/none-such",
            Some(json!({"not": "a tar"})),
            [403, 403, 400, 400, 401],
        ),
    ]
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
    let serve = serve_with(
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
