//! AWS SigV4 signing (Amazon OpenSearch Service): esark runs against a
//! test cluster behind [`AuthProxy::start_sigv4`], whose verifier
//! (`util::sigv4`, written from the specification) recomputes every
//! signature from what came over the wire and answers 403 to a wrong one.
//!
//! Credentials reach esark as they would in production, through the
//! environment or a profile file of the child process; the machine's own
//! `~/.aws` files and `AWS_*` variables are kept out of every run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::util::archive::Archive;
use crate::util::check::{assert_no_secret, assert_one_error_line, assert_same_docs, no_manifest};
use crate::util::esark::Esark;
use crate::util::fixture::Fixture;
use crate::util::proxy::AuthProxy;
use crate::util::restore_support::{
    assert_same_stored, docs_of, dump_archive, json_report, report_index, target_cluster,
};
use crate::util::sigv4::{parse_amz_date, SigV4Verifier};

const KEY_ID: &str = "AKIDESARKTEST0000001";
const SECRET: &str = "esArkTestSecret/Key+0123456789abcdefghij";
/// A session token with characters that need care in a header.
const TOKEN: &str = "FwoGZXIvYXdzEPT//////////wEaDEsark+Test/Token==";
const WRONG_SECRET: &str = "wrongSecret/Key+9876543210zyxwvutsrqpo";

/// `esark` with the AWS variables it reads all set: the test's keys (empty
/// strings count as unset) and profile files that do not exist, so that
/// nothing of the machine's AWS setup leaks in.
fn aws_esark(key: &str, secret: &str, token: &str) -> Esark {
    Esark::new()
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_SESSION_TOKEN", token)
        .env("AWS_PROFILE", "")
        .env("AWS_REGION", "")
        .env("AWS_DEFAULT_REGION", "")
        .env("AWS_CONFIG_FILE", "/nonexistent/esark-test/aws/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/esark-test/aws/credentials",
        )
}

fn secrets() -> [&'static str; 3] {
    [SECRET, WRONG_SECRET, TOKEN]
}

// ---- the verifier itself ------------------------------------------------------------

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn sigv4_verifier_accepts_the_published_vector_and_rejects_tampering() {
    // post-x-www-form-urlencoded of the AWS SigV4 test suite (the case that
    // signs the body hash, as esark does).
    let verifier = SigV4Verifier::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        "us-east-1",
        "service",
    );
    let now = parse_amz_date("20150830T123600Z").unwrap();
    let request = |content_type: &str| {
        headers(&[
            ("Content-Type", content_type),
            ("Host", "example.amazonaws.com"),
            ("Content-Length", "13"),
            ("X-Amz-Date", "20150830T123600Z"),
            ("x-amz-content-sha256", "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"),
        ])
    };
    let form = "application/x-www-form-urlencoded";
    let body = b"Param1=value1";
    verifier
        .verify_at("POST", "/", &request(form), body, now)
        .unwrap();
    let reject = |method: &str, target: &str, h: &[(String, String)], body: &[u8], now| {
        verifier
            .verify_at(method, target, h, body, now)
            .expect_err("tampered request accepted")
    };
    assert!(reject("POST", "/", &request(form), b"Param1=value2", now).contains("sha256"));
    assert!(reject("POST", "/", &request("text/plain"), body, now).contains("signature"));
    assert!(reject("POST", "/?a=b", &request(form), body, now).contains("signature"));
    assert!(reject("PUT", "/", &request(form), body, now).contains("signature"));
    let late = now + Duration::from_secs(600);
    assert!(reject("POST", "/", &request(form), body, late).contains("expired"));
    assert_eq!(verifier.verified(), 1);
}

#[test]
fn sigv4_esark_signatures_pass_the_independent_verifier() {
    // esark's signing glue and the test verifier, written apart, agree on
    // the hard cases: a `%` index name (the path encoded twice), an
    // unsorted query, a session token, a port.
    use esark::aws::sigv4::{request_url, signing_headers, PayloadHeader, Signable};
    let credentials =
        aws_credential_types::Credentials::new(KEY_ID, SECRET, Some(TOKEN.into()), None, "test");
    let base = url::Url::parse("http://127.0.0.1:9200/").unwrap();
    let verifier = SigV4Verifier::new(KEY_ID, SECRET, Some(TOKEN), "eu-west-3", "es");
    for (method, path, body) in [
        ("GET", "", &b""[..]),
        (
            "POST",
            "%25kuzzle/_search?size=100&scroll=1m",
            br#"{"query":{"match_all":{}}}"#,
        ),
        (
            "PUT",
            "/a%20b%2Fc/_doc/%C3%A9t%C3%A9?routing=r%2B1&refresh=true",
            b"{}",
        ),
        ("HEAD", "_index_template/x", b""),
    ] {
        let url = request_url(&base, path).unwrap();
        let signed = signing_headers(
            &Signable {
                method,
                url: &url,
                headers: &[],
                body,
            },
            &credentials,
            "eu-west-3",
            "es",
            PayloadHeader::Send,
            SystemTime::now(),
        )
        .unwrap();
        let mut received = headers(&[
            ("host", "127.0.0.1:9200"),
            ("content-type", "application/json"),
        ]);
        received.extend(signed.iter().map(|(n, v)| (n.to_string(), v.clone())));
        let target = &url[url::Position::BeforePath..];
        verifier
            .verify(method, target, &received, body)
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
    }
}

// ---- dump ---------------------------------------------------------------------------

#[test]
fn sigv4_dump_through_a_verifying_proxy_keeps_every_document() {
    let f = Fixture::seed("sigv4-dump", 300);
    let verifier = Arc::new(SigV4Verifier::new(
        KEY_ID,
        SECRET,
        Some(TOKEN),
        "eu-west-3",
        "es",
    ));
    let proxy = AuthProxy::start_sigv4(&f.cluster, verifier.clone());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    let run = aws_esark(KEY_ID, SECRET, TOKEN)
        .args(["dump", "--source", &proxy.url(), "--source-aws-sigv4"])
        .args([
            "--source-aws-region",
            "eu-west-3",
            "--match",
            &f.match_all(),
        ])
        .args(["--slices", "2", "--page-size", "50"])
        .arg("--output")
        .arg(&out)
        .run();
    run.assert_success();
    assert_no_secret(&run, &secrets());
    assert_eq!(proxy.rejected(), 0, "a request was not signed right\n{run}");
    // Every open index, `%<p>-kuzzle` too, with all its documents.
    let archive = Archive::open(&out);
    let mut expected: Vec<String> = f.open_indices().iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(archive.index_names(), expected);
    assert_same_docs(&archive, &f.sent);
    assert!(
        verifier.verified() > 10,
        "{} requests verified",
        verifier.verified()
    );
    assert!(
        verifier.verified_with_body() > 0,
        "no request with a body was signed"
    );
}

#[test]
fn sigv4_dump_with_a_wrong_secret_fails_with_one_line() {
    let f = Fixture::seed("sigv4-wrong", 5);
    let verifier = Arc::new(SigV4Verifier::new(
        KEY_ID,
        SECRET,
        Some(TOKEN),
        "eu-west-3",
        "es",
    ));
    let proxy = AuthProxy::start_sigv4(&f.cluster, verifier);
    let tmp = tempfile::tempdir().unwrap();
    for (label, key, secret, region) in [
        ("wrong secret", KEY_ID, WRONG_SECRET, "eu-west-3"),
        ("unknown key", "AKIDSOMEONEELSE00000", SECRET, "eu-west-3"),
        ("wrong region", KEY_ID, SECRET, "us-east-1"),
    ] {
        let out = tmp.path().join(label.replace(' ', "-"));
        let run = aws_esark(key, secret, TOKEN)
            .args(["dump", "--source", &proxy.url(), "--source-aws-sigv4"])
            .args(["--source-aws-region", region, "--match", &f.match_all()])
            .arg("--output")
            .arg(&out)
            .run();
        let line = assert_one_error_line(&run);
        eprintln!("{label}: {line}");
        assert!(
            line.contains("403"),
            "{label}: the error must name the 403\n{run}"
        );
        assert_no_secret(&run, &secrets());
        assert!(no_manifest(&out), "{label}: manifest.json left behind");
    }
    assert_eq!(
        proxy.forwarded(),
        0,
        "nothing may pass with a wrong signature"
    );
    assert!(proxy.rejected() >= 3);
}

#[test]
fn sigv4_missing_credentials_region_or_mixed_auth_are_one_line_errors() {
    // No cluster is reached: the port is closed, and every error comes first.
    let closed = "http://127.0.0.1:9";
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("archive");
    let dump = |esark: Esark, extra: &[&str]| {
        esark
            .args(["dump", "--source", closed, "--source-aws-sigv4"])
            .args(extra)
            .arg("--output")
            .arg(&out)
            .run()
    };

    let run = dump(aws_esark("", "", ""), &["--source-aws-region", "eu-west-3"]);
    let line = assert_one_error_line(&run);
    assert!(line.contains("no AWS credentials found"), "{run}");
    assert!(
        line.contains("AWS_ACCESS_KEY_ID") && line.contains("profile \"default\""),
        "{run}"
    );

    // Half the keys: the secret is what is missing.
    let run = dump(
        aws_esark(KEY_ID, "", ""),
        &["--source-aws-region", "eu-west-3"],
    );
    let line = assert_one_error_line(&run);
    assert!(line.contains("AWS_SECRET_ACCESS_KEY not"), "{run}");

    let run = dump(aws_esark(KEY_ID, SECRET, TOKEN), &[]);
    let line = assert_one_error_line(&run);
    assert!(
        line.contains("no AWS region") && line.contains("AWS_REGION"),
        "{run}"
    );
    assert_no_secret(&run, &secrets());

    // SigV4 and another kind of credentials: a usage error (exit 2).
    for (label, esark, extra) in [
        (
            "user",
            aws_esark(KEY_ID, SECRET, ""),
            vec!["--source-user", "elastic"],
        ),
        (
            "api key",
            aws_esark(KEY_ID, SECRET, ""),
            vec!["--source-api-key", "id:key"],
        ),
        (
            "env api key",
            aws_esark(KEY_ID, SECRET, "").env("ESARK_SOURCE_API_KEY", "id:key"),
            vec![],
        ),
    ] {
        let run = dump(esark, &extra);
        assert_eq!(run.code, Some(2), "{label}\n{run}");
        let lines = run.stderr_lines();
        assert_eq!(lines.len(), 1, "{label}\n{run}");
        assert!(
            lines[0].contains("--source-aws-sigv4 cannot be combined"),
            "{label}\n{run}"
        );
    }
    let run = aws_esark(KEY_ID, SECRET, "")
        .args([
            "dump",
            "--source",
            "http://elastic:pw@127.0.0.1:9",
            "--source-aws-sigv4",
        ])
        .arg("--output")
        .arg(&out)
        .run();
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("credentials in the URL"), "{run}");
}

// ---- restore and copy ---------------------------------------------------------------

/// A credentials file with a named profile, for the runs that read their
/// credentials from a profile instead of the environment.
fn profile_files(dir: &Path, profile: &str, region: &str) -> (String, String) {
    let credentials = dir.join("credentials");
    let config = dir.join("config");
    std::fs::write(
        &credentials,
        format!(
            "[{profile}]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n\
             aws_session_token = {TOKEN}\n"
        ),
    )
    .unwrap();
    std::fs::write(&config, format!("[profile {profile}]\nregion = {region}\n")).unwrap();
    (
        credentials.display().to_string(),
        config.display().to_string(),
    )
}

#[test]
fn sigv4_restore_to_serverless_with_profile_credentials() {
    let Some(target) = target_cluster("sigv4-restore") else {
        return;
    };
    let f = Fixture::seed("sigv4-restore", 200);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&f.cluster, &archive, &f.match_all());

    // OpenSearch Serverless: service `aoss`; region and keys from a profile.
    let verifier = Arc::new(SigV4Verifier::new(
        KEY_ID,
        SECRET,
        Some(TOKEN),
        "ap-south-2",
        "aoss",
    ));
    let proxy = AuthProxy::start_sigv4(&target, verifier.clone());
    let (credentials, config) = profile_files(tmp.path(), "restorer", "ap-south-2");
    let run = aws_esark("", "", "")
        .env("AWS_PROFILE", "restorer")
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", &config)
        .args(["restore", "--input"])
        .arg(&archive)
        .args(["--target", &proxy.url(), "--target-aws-sigv4"])
        .args(["--target-aws-service", "aoss", "--json"])
        .args(["--bulk-docs", "40", "--concurrency", "3"])
        .run();
    run.assert_success();
    assert_no_secret(&run, &secrets());
    assert_eq!(proxy.rejected(), 0, "{run}");
    let report = json_report(&run);
    for name in f.open_indices() {
        let entry = report_index(&report, name);
        assert_eq!(entry["status"], "restored", "{entry}");
        assert_same_stored(
            &docs_of(&f.cluster, name),
            &docs_of(&target, name),
            &format!("{name}: source vs signed restore"),
        );
    }
    assert!(
        verifier.verified_with_body() > 5,
        "bulk requests were not signed"
    );
}

#[test]
fn sigv4_copy_signs_source_and_target_each_for_its_region() {
    let Some(target) = target_cluster("sigv4-copy") else {
        return;
    };
    let f = Fixture::seed("sigv4-copy", 150);
    let source_verifier = Arc::new(SigV4Verifier::new(KEY_ID, SECRET, None, "eu-west-3", "es"));
    let target_verifier = Arc::new(SigV4Verifier::new(KEY_ID, SECRET, None, "us-west-2", "es"));
    let source_proxy = AuthProxy::start_sigv4(&f.cluster, source_verifier.clone());
    let target_proxy = AuthProxy::start_sigv4(&target, target_verifier.clone());
    let run = aws_esark(KEY_ID, SECRET, "")
        // The target's region from the environment, the source's from its flag.
        .env("AWS_REGION", "us-west-2")
        .args([
            "copy",
            "--source",
            &source_proxy.url(),
            "--source-aws-sigv4",
        ])
        .args(["--source-aws-region", "eu-west-3"])
        .args(["--target", &target_proxy.url(), "--target-aws-sigv4"])
        .args(["--match", &f.match_all(), "--json"])
        .run();
    run.assert_success();
    assert_eq!(
        source_proxy.rejected() + target_proxy.rejected(),
        0,
        "{run}"
    );
    for name in f.open_indices() {
        assert_same_stored(
            &docs_of(&f.cluster, name),
            &docs_of(&target, name),
            &format!("{name}: copy"),
        );
    }
    assert!(source_verifier.verified() > 0 && target_verifier.verified_with_body() > 0);
}
