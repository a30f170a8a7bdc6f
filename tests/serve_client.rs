//! `esark jobs`, the client of `esark serve`: archives down and up
//! against the service (byte-equal round trip, one-line errors), and the
//! jobs commands against the service's jobs.

use std::time::Duration;

use crate::util::check::assert_one_error_line;
use crate::util::esark::{inspect, Esark, Output};
use crate::util::fixture::Fixture;
use crate::util::serve::{
    archive_ids, proxy_table, seed as seed_docs, serve_with, slow_pages, token_table, Serve,
};
use crate::util::serve_archives::{archives, call, dump_into, files, json_of, seed, start, token};
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

/// The jobs commands of the client against the real service: submit
/// (options, idempotency key), watch (progress, exit code), status, list,
/// cancel and resume of a running export (slowed by the fault proxy), and
/// the service's refusals as one line.
#[test]
fn the_jobs_client_drives_jobs_of_the_service() {
    let cluster = TestCluster::start("serve-client-jobs");
    let index = cluster.name("docs");
    seed_docs(&cluster, &index, 300);
    let proxy = slow_pages(&cluster, 300);
    let dir = tempfile::tempdir().unwrap();
    let tail = format!(
        "{}{}",
        proxy_table("slow", &proxy),
        token_table("ops", "admin")
    );
    let serve = serve_with(dir.path(), "", &[("prod", &cluster)], &tail);
    let client = || {
        Esark::new()
            .args(["jobs", "--server", &serve.url])
            .env("ESARK_TOKEN", "ops-secret")
            .timeout(Duration::from_secs(120))
    };
    let only = Fixture::exactly(&index);
    let submit = |cluster: &str, archive: &str, key: &str| {
        let run = client()
            .args(["submit", "--kind", "export", "--cluster", cluster])
            .args(["--archive", archive, "--option"])
            .arg(format!("match={only}"))
            .args(["--option", "page_size=50", "--option", "slices=1"])
            .args(["--idempotency-key", key, "--id-only"])
            .run();
        run.assert_success();
        run.stdout.trim().to_string()
    };

    // A job to completion: watch exits 0, status and list agree.
    let id = submit("prod", "nightly", "k1");
    assert_eq!(submit("prod", "nightly", "k1"), id, "same key, same job");
    let watch = client().args(["watch", &id]).run();
    watch.assert_success();
    let job = json_of(watch.stdout.as_bytes());
    assert_eq!(job["status"], "succeeded", "{watch}");
    assert_eq!(job["progress"]["docs_done"], 300, "{watch}");
    let status = client().args(["status", &id]).run();
    status.assert_success();
    assert_eq!(json_of(status.stdout.as_bytes())["id"], id.as_str());
    let list = client().args(["list", "--kind", "export"]).run();
    list.assert_success();
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{id}\texport\tsucceeded"))),
        "{list}"
    );
    assert_eq!(archive_ids(dir.path(), "nightly", &index).len(), 300);

    // A slow job: cancel, then resume to completion, every document once.
    let slow = submit("slow", "slow-1", "k2");
    serve.wait_job(
        Some("ops-secret"),
        &slow,
        Duration::from_secs(60),
        "under way",
        |j| j["progress"]["docs_done"].as_u64().unwrap_or(0) > 0,
    );
    client().args(["cancel", &slow]).run().assert_success();
    serve.wait_status(Some("ops-secret"), &slow, "cancelled");
    let watch = client().args(["watch", &slow]).run();
    assert_eq!(watch.code, Some(1), "a cancelled job exits 1\n{watch}");
    client().args(["resume", &slow]).run().assert_success();
    let watch = client().args(["watch", &slow]).run();
    watch.assert_success();
    assert_eq!(archive_ids(dir.path(), "slow-1", &index).len(), 300);

    // The service's refusals, one line each.
    let again = client().args(["resume", &slow]).run();
    assert!(assert_one_error_line(&again).contains("409"), "{again}");
    let unknown = client()
        .args(["submit", "--kind", "export", "--cluster", "prod"])
        .args(["--archive", "x", "--option", "no_such_option=1"])
        .run();
    let line = assert_one_error_line(&unknown);
    assert!(
        line.contains("no_such_option") && line.contains("400"),
        "{line}"
    );
    let missing = client().args(["status", "nope"]).run();
    assert!(assert_one_error_line(&missing).contains("404"), "{missing}");
}
