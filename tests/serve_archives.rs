//! `esark serve`'s archive endpoints (issue 13) against archives made by
//! `esark dump` into the service's folder: list (complete and not),
//! summary, tar download (extracted by `tar`, inspected, byte-equal),
//! checked upload (restored exactly), refused tars leaving nothing,
//! roles, archives on S3 (moto).

use std::time::Duration;

use serde_json::json;

use crate::util::esark::{inspect, Esark};
use crate::util::fixture::Fixture;
use crate::util::restore_support::{target_args, target_cluster, try_count};
use crate::util::serve_archives::{
    archives, call, dump_into, extract, files, json_of, message, raw_tar, seed, start, tar,
};
use crate::util::server::TestCluster;

#[test]
fn archives_are_listed_summarised_downloaded_and_uploaded_exactly() {
    let cluster = TestCluster::start("serve-archives-round-trip");
    let Some(target) = target_cluster("serve-archives-round-trip") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let index = seed(&cluster, 400);
    dump_into(&cluster, dir.path(), "b1", &index);
    dump_into(&cluster, dir.path(), "b2", &index);
    // An unfinished dump: chunks, no manifest.
    std::fs::remove_file(archives(dir.path()).join("b2/manifest.json")).unwrap();
    let serve = start(dir.path(), None, &[]);

    let (status, _, body) = call(&serve, "GET", "/v1/archives", Some("view"), None);
    assert_eq!(status, 200);
    let list = json_of(&body);
    let entries = list["archives"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{list}");
    assert_eq!(entries[0]["name"], "b1");
    assert_eq!(entries[0]["complete"], true);
    assert_eq!(entries[0]["docs"], 400);
    assert!(entries[0]["bytes"].as_u64().unwrap() > 16 * 1024, "{list}");
    assert!(entries[0]["created_at"].is_string(), "{list}");
    assert_eq!(
        entries[1],
        json!({"name": "b2", "complete": false, "created_at": null, "docs": null, "bytes": null})
    );

    let (status, _, body) = call(&serve, "GET", "/v1/archives/b1", Some("view"), None);
    assert_eq!(status, 200);
    let summary = json_of(&body);
    assert_eq!(summary["docs"], 400);
    assert_eq!(summary["encrypted"], false);
    assert_eq!(summary["format_version"], 4);
    assert_eq!(summary["indices"][0]["name"], index.as_str());
    assert_eq!(summary["indices"][0]["docs"], 400);
    assert!(summary["source"]["url"].is_string(), "{summary}");
    for (path, expected) in [
        ("/v1/archives/nope", 404),
        ("/v1/archives/b2", 409),
        ("/v1/archives/.b1", 400),
        ("/v1/archives/b2/download", 409),
    ] {
        let (status, _, body) = call(&serve, "GET", path, Some("admin"), None);
        assert_eq!(
            status,
            expected,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    let (status, headers, tar_bytes) = call(
        &serve,
        "GET",
        "/v1/archives/b1/download",
        Some("export"),
        None,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&tar_bytes));
    assert_eq!(headers["content-type"], "application/x-tar");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"b1.tar\""
    );
    let out = tempfile::tempdir().unwrap();
    extract(&tar_bytes, out.path());
    inspect(&out.path().join("b1")).assert_success();
    let original = files(&archives(dir.path()).join("b1"));
    assert!(original.len() > 4, "{:?}", original.keys());
    assert_eq!(files(&out.path().join("b1")), original);
    // Downloading does not consume the archive: the same bytes again.
    let (status, _, again) = call(
        &serve,
        "GET",
        "/v1/archives/b1/download",
        Some("admin"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(again, tar_bytes);
    assert_eq!(files(&archives(dir.path()).join("b1")), original);

    let (status, _, body) = call(
        &serve,
        "PUT",
        "/v1/archives/b1-copy",
        Some("restore"),
        Some(tar_bytes.clone()),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["docs"], 400);
    let copy = archives(dir.path()).join("b1-copy");
    inspect(&copy).assert_success();
    assert_eq!(files(&copy), original);
    let (status, _, body) = call(
        &serve,
        "PUT",
        "/v1/archives/b1",
        Some("admin"),
        Some(tar_bytes),
    );
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    assert_eq!(files(&archives(dir.path()).join("b1")), original);

    Esark::new()
        .args(["restore", "--input"])
        .arg(&copy)
        .args(target_args(&target))
        .timeout(Duration::from_secs(120))
        .run()
        .assert_success();
    target.refresh(&index);
    assert_eq!(try_count(&target, &index), Some(400));
}

#[test]
fn each_role_gets_only_its_archive_endpoints() {
    let cluster = TestCluster::start("serve-archives-roles");
    let dir = tempfile::tempdir().unwrap();
    let index = seed(&cluster, 20);
    dump_into(&cluster, dir.path(), "b1", &index);
    let serve = start(dir.path(), None, &[]);
    let (_, _, tar_bytes) = call(
        &serve,
        "GET",
        "/v1/archives/b1/download",
        Some("admin"),
        None,
    );
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        ("GET", "/v1/archives", None, 401),
        ("GET", "/v1/archives/b1/download", None, 401),
        ("GET", "/v1/archives", Some("view"), 200),
        ("GET", "/v1/archives/b1", Some("view"), 200),
        ("GET", "/v1/archives/b1/download", Some("view"), 403),
        ("PUT", "/v1/archives/v", Some("view"), 403),
        ("GET", "/v1/archives/b1/download", Some("export"), 200),
        ("PUT", "/v1/archives/e", Some("export"), 403),
        ("GET", "/v1/archives/b1/download", Some("restore"), 403),
        ("PUT", "/v1/archives/r", Some("restore"), 201),
        ("PUT", "/v1/archives/a", Some("admin"), 201),
    ];
    for (method, path, role, expected) in cases {
        let body = (*method == "PUT").then(|| tar_bytes.clone());
        let (status, _, answer) = call(&serve, method, path, *role, body);
        assert_eq!(
            status,
            *expected,
            "{method} {path} as {role:?}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    for refused in ["v", "e"] {
        assert!(!archives(dir.path()).join(refused).exists());
    }
}

#[test]
fn refused_uploads_name_the_entry_and_leave_nothing() {
    let cluster = TestCluster::start("serve-archives-refused");
    let dir = tempfile::tempdir().unwrap();
    let index = seed(&cluster, 200);
    dump_into(&cluster, dir.path(), "b1", &index);
    let serve = start(dir.path(), None, &[]);
    let (_, _, good) = call(
        &serve,
        "GET",
        "/v1/archives/b1/download",
        Some("admin"),
        None,
    );
    let original = files(&archives(dir.path()).join("b1"));
    let chunk = original
        .keys()
        .find(|k| k.contains("/data-"))
        .unwrap()
        .clone();

    // One byte of a chunk flipped (the tar stays a valid tar).
    let chunk_bytes = &original[&chunk];
    let at = good
        .windows(chunk_bytes.len())
        .position(|w| w == &chunk_bytes[..])
        .unwrap();
    let mut tampered = good.clone();
    tampered[at + chunk_bytes.len() / 2] ^= 0x01;

    // A file the manifest does not list, under the tar command's layout
    // (directory entries first, then files).
    let work = tempfile::tempdir().unwrap();
    extract(&good, work.path());
    std::fs::write(work.path().join("b1/extra.txt"), b"hello").unwrap();
    let with_extra = work.path().join("extra.tar");
    tar(&[
        "-C",
        work.path().to_str().unwrap(),
        "-cf",
        with_extra.to_str().unwrap(),
        "b1",
    ]);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", raw_tar(&[("../x", b'0', b"x", "")]), "../x"),
        ("absolute", raw_tar(&[("/tmp/x", b'0', b"x", "")]), "/tmp/x"),
        (
            "symlink",
            raw_tar(&[("b1/link", b'2', b"", "/etc/passwd")]),
            "b1/link",
        ),
        (
            "hardlink",
            raw_tar(&[("b1/hard", b'1', b"", "b1/x")]),
            "b1/hard",
        ),
        ("fifo", raw_tar(&[("b1/fifo", b'6', b"", "")]), "b1/fifo"),
        ("tampered", tampered, &chunk),
        ("extra", std::fs::read(&with_extra).unwrap(), "extra.txt"),
        ("notar", b"hello, not a tar".repeat(100), "tar"),
        (
            "nomanifest",
            raw_tar(&[("b1/indices/a", b'0', b"x", "")]),
            "no manifest.json",
        ),
    ];
    for (name, body, named) in cases {
        let (status, _, answer) = call(
            &serve,
            "PUT",
            &format!("/v1/archives/{name}"),
            Some("restore"),
            Some(body),
        );
        assert_eq!(status, 400, "{name}: {}", String::from_utf8_lossy(&answer));
        let line = message(&answer);
        assert!(line.contains(named), "{name}: {line}");
        assert!(!line.contains('\n'), "{name}: {line}");
        assert!(
            !archives(dir.path()).join(name).exists(),
            "{name}: left {:?}",
            files(&archives(dir.path()).join(name)).keys()
        );
    }

    // The same archive tarred from inside its folder (entries at the root).
    let rooted = work.path().join("rooted.tar");
    std::fs::remove_file(work.path().join("b1/extra.txt")).unwrap();
    let inside = work.path().join("b1");
    tar(&[
        "-C",
        inside.to_str().unwrap(),
        "-cf",
        rooted.to_str().unwrap(),
        ".",
    ]);
    let (status, _, answer) = call(
        &serve,
        "PUT",
        "/v1/archives/rooted",
        Some("restore"),
        Some(std::fs::read(&rooted).unwrap()),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(files(&archives(dir.path()).join("rooted")), original);
}

#[test]
fn archives_on_s3_are_listed_downloaded_and_uploaded() {
    use crate::util::moto::Moto;
    let Some(moto) = Moto::start("serve-archives-s3") else {
        return;
    };
    moto.create_bucket("bars");
    let cluster = TestCluster::start("serve-archives-s3");
    let index = seed(&cluster, 150);
    let env = moto.env();
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.iter()
        .fold(Esark::new(), |e, (k, v)| e.env(k, v))
        .arg("dump")
        .args(cluster.source_args())
        .args(["--match", &Fixture::exactly(&index), "--file-size", "16KiB"])
        .args(["--output", "s3://bars/archives/b1"])
        .run()
        .assert_success();
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path(), Some("s3://bars/archives"), &envs);

    let (status, _, body) = call(&serve, "GET", "/v1/archives", Some("view"), None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let list = json_of(&body);
    assert_eq!(list["archives"][0]["name"], "b1", "{list}");
    assert_eq!(list["archives"][0]["complete"], true, "{list}");
    assert_eq!(list["archives"][0]["docs"], 150, "{list}");

    let (status, _, tar_bytes) = call(
        &serve,
        "GET",
        "/v1/archives/b1/download",
        Some("export"),
        None,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&tar_bytes));
    let out = tempfile::tempdir().unwrap();
    extract(&tar_bytes, out.path());
    inspect(&out.path().join("b1")).assert_success();
    let extracted = files(&out.path().join("b1"));
    for (key, bytes) in &extracted {
        assert_eq!(
            &moto.get_object("bars", &format!("archives/b1/{key}")),
            bytes,
            "{key}"
        );
    }

    let (status, _, body) = call(
        &serve,
        "PUT",
        "/v1/archives/b2",
        Some("restore"),
        Some(tar_bytes),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let keys = moto.keys("bars", "archives/b2/");
    assert_eq!(keys.len(), extracted.len(), "{keys:?}");
    assert!(
        keys.contains(&"archives/b2/manifest.json".to_string()),
        "{keys:?}"
    );
    assert!(!archives(dir.path()).exists(), "wrote a local folder");
}
