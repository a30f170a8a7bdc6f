//! `esark jobs`, the client of `esark serve`: archives down and up
//! against the service (byte-equal round trip, one-line errors), and the
//! jobs commands against a scripted stand-in for the jobs API.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::check::assert_one_error_line;
use crate::util::esark::{inspect, Esark, Output};
use crate::util::serve::Serve;
use crate::util::serve_archives::{
    archives, call, dump_into, files, json_of, seed, start, token, Stub,
};
use crate::util::server::TestCluster;

fn client(serve: &Serve, role: &str) -> Esark {
    Esark::new()
        .args(["jobs", "--server", &serve.url])
        .env("ESARK_TOKEN", &token(role))
        .timeout(Duration::from_secs(60))
}

#[test]
fn the_jobs_client_downloads_and_uploads_and_errors_in_one_line() {
    let cluster = TestCluster::start("serve-archives-client");
    let dir = tempfile::tempdir().unwrap();
    let index = seed(&cluster, 100);
    dump_into(&cluster, dir.path(), "b1", &index);
    let serve = start(dir.path(), None, &[]);
    let (_, _, served) = call(
        &serve,
        "GET",
        "/v1/archives/b1/download",
        Some("admin"),
        None,
    );
    let cwd = tempfile::tempdir().unwrap();

    client(&serve, "export")
        .args(["download", "b1"])
        .current_dir(cwd.path())
        .run()
        .assert_success();
    let downloaded = cwd.path().join("b1.tar");
    assert_eq!(std::fs::read(&downloaded).unwrap(), served);
    let named = cwd.path().join("other.tar");
    client(&serve, "admin")
        .args(["download", "b1", "-o"])
        .arg(&named)
        .run()
        .assert_success();
    assert_eq!(std::fs::read(&named).unwrap(), served);

    let up = client(&serve, "restore")
        .args(["upload", "b1-up"])
        .arg(&downloaded)
        .run();
    up.assert_success();
    assert_eq!(json_of(up.stdout.as_bytes())["docs"], 100, "{up}");
    inspect(&archives(dir.path()).join("b1-up")).assert_success();
    assert_eq!(
        files(&archives(dir.path()).join("b1-up")),
        files(&archives(dir.path()).join("b1"))
    );

    let forbidden = client(&serve, "view")
        .args(["download", "b1"])
        .current_dir(cwd.path())
        .run();
    let line = assert_one_error_line(&forbidden);
    assert!(
        line.contains("may not download archives") && line.contains("403"),
        "{line}"
    );
    assert!(!line.contains(&token("view")), "{line}");
    let exists = client(&serve, "restore")
        .args(["upload", "b1"])
        .arg(&downloaded)
        .run();
    assert!(assert_one_error_line(&exists).contains("409"), "{exists}");

    let unreachable: Output = Esark::new()
        .args(["jobs", "--server", "http://127.0.0.1:1", "list"])
        .run();
    let line = assert_one_error_line(&unreachable);
    assert!(line.contains("cannot reach http://127.0.0.1:1"), "{line}");
    let no_server = Esark::new().args(["jobs", "status", "x"]).run();
    assert_eq!(no_server.code, Some(2), "{no_server}");
}

/// The jobs commands of the client against a scripted stand-in for the
/// jobs API (the real one is another module's): the submitted body and
/// headers, `watch`'s exit codes, `list`'s lines.
#[test]
fn the_jobs_client_sends_jobs_and_exits_with_their_outcome() {
    let job = |id: &str, status: &str, done: u64| {
        json!({
            "id": id, "kind": "export", "status": status, "cluster": "prod", "archive": "nightly",
            "progress": {"docs_done": done, "docs_total": 10, "bytes_done": 0, "indices": []},
            "error": if status == "failed" { json!({"message": "the cluster went away"}) } else { Value::Null },
        })
        .to_string()
    };
    let stub =
        Stub::start(
            move |request, n| match (request.method.as_str(), request.path.as_str()) {
                ("POST", "/v1/jobs") => (202, job("j1", "queued", 0)),
                ("GET", "/v1/jobs/j1") if n < 3 => (200, job("j1", "running", 5)),
                ("GET", "/v1/jobs/j1") => (200, job("j1", "partial", 9)),
                ("GET", "/v1/jobs/j2") => (200, job("j2", "succeeded", 10)),
                ("GET", "/v1/jobs/j3") => (200, job("j3", "failed", 1)),
                ("GET", path) if path.starts_with("/v1/jobs?") => (
                    200,
                    format!(
                        r#"{{"jobs":[{},{}]}}"#,
                        job("j2", "succeeded", 10),
                        job("j3", "failed", 1)
                    ),
                ),
                _ => (404, r#"{"error":{"message":"no such job"}}"#.into()),
            },
        );
    let client = || {
        Esark::new()
            .args(["jobs", "--server", &stub.url])
            .env("ESARK_TOKEN", "stub-token")
            .timeout(Duration::from_secs(60))
    };
    let submit = client()
        .args([
            "submit",
            "--kind",
            "export",
            "--cluster",
            "prod",
            "--archive",
            "nightly",
        ])
        .args(["--option", "slices=4", "--option", "match=logs-*"])
        .args(["--option", "exclude=a", "--option", "exclude=b"])
        .args(["--idempotency-key", "k1", "--id-only"])
        .run();
    submit.assert_success();
    assert_eq!(submit.stdout, "j1\n");
    let sent = stub.requests.lock().unwrap()[0].clone();
    assert_eq!(
        serde_json::from_str::<Value>(&sent.body).unwrap(),
        json!({"kind": "export", "cluster": "prod", "archive": "nightly",
               "options": {"slices": 4, "match": "logs-*", "exclude": ["a", "b"]}})
    );
    assert_eq!(sent.headers["idempotency-key"], "k1");
    assert_eq!(sent.headers["authorization"], "Bearer stub-token");

    for (id, code) in [("j1", 3), ("j2", 0), ("j3", 1)] {
        let watch = client().args(["watch", id]).run();
        assert_eq!(watch.code, Some(code), "{watch}");
        assert_eq!(json_of(watch.stdout.as_bytes())["id"], id, "{watch}");
        if id == "j3" {
            assert!(watch.stderr.contains("the cluster went away"), "{watch}");
        }
    }
    let list = client().args(["list", "--status", "succeeded"]).run();
    list.assert_success();
    assert_eq!(list.stdout.lines().count(), 2, "{list}");
    assert!(
        list.stdout
            .lines()
            .next()
            .unwrap()
            .starts_with("j2\texport\tsucceeded\tprod\tnightly"),
        "{list}"
    );
    let listed = stub.requests.lock().unwrap().last().unwrap().path.clone();
    assert_eq!(listed, "/v1/jobs?status=succeeded");
    let missing = client().args(["status", "nope"]).run();
    assert!(
        assert_one_error_line(&missing).contains("no such job (HTTP 404)"),
        "{missing}"
    );
}
