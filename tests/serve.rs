//! `esark serve`, started as a process: config checks, health, tokens.

use serde_json::json;

use crate::util::serve::{token_digest, Serve};

fn base(dir: &std::path::Path) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nstate = \"{}\"\narchives = \"{}\"\n",
        dir.join("state").display(),
        dir.join("archives").display()
    )
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
