//! Hostile conditions: TLS certificates that do not check out, and a disk
//! that fills up during a dump. Each ends with one clear error line, a
//! non-zero exit, no credential printed and no manifest.

use crate::util::esark::Esark;
use crate::util::server::TestCluster;
use crate::util::skip::skip;
use crate::util::tls::TlsFront;

fn dump_through(url: &str, out: &std::path::Path, extra: &[&str]) -> crate::util::esark::Output {
    Esark::new()
        .args(["dump", "--source", url, "--output"])
        .arg(out)
        .args(["--match", ".*", "--quiet"])
        .args(extra)
        .run()
}

fn one_error_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0]
}

#[test]
fn tls_certificate_problems_are_clear_errors_and_the_right_ca_works() {
    let cluster = TestCluster::start("tls");
    if cluster.is_shared() {
        skip("tls", "the TLS front needs a private osmem");
        return;
    }
    cluster.create_index(&cluster.name("i"), &serde_json::json!({}));
    let dir = tempfile::tempdir().unwrap();
    let secret_url = |front: &TlsFront| front.url.replace("https://", "https://user:tls-s3cret@");

    // A certificate nobody vouches for.
    let front = TlsFront::start(cluster.base_url(), &["127.0.0.1"]);
    let out = dump_through(&secret_url(&front), &dir.path().join("a"), &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = one_error_line(&out.stderr);
    assert!(
        line.contains("cannot connect") && line.to_lowercase().contains("certificate"),
        "{line}"
    );
    assert!(!out.stderr.contains("tls-s3cret"));
    assert!(!dir.path().join("a").join("manifest.json").exists());

    // Trusted, but issued for another name.
    let wrong_name = TlsFront::start(cluster.base_url(), &["elsewhere.invalid"]);
    let out = dump_through(
        &wrong_name.url,
        &dir.path().join("b"),
        &["--ca-cert", wrong_name.cert_pem.to_str().unwrap()],
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = one_error_line(&out.stderr);
    assert!(line.to_lowercase().contains("certificate"), "{line}");

    // The right CA for the right name works, and so does --insecure.
    let out = dump_through(
        &front.url,
        &dir.path().join("c"),
        &["--ca-cert", front.cert_pem.to_str().unwrap()],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(dir.path().join("c").join("manifest.json").exists());
    let out = dump_through(&wrong_name.url, &dir.path().join("d"), &["--insecure"]);
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn a_full_disk_fails_the_dump_without_a_manifest() {
    let cluster = TestCluster::start("diskfull");
    let index = cluster.name("big");
    cluster.create_index(
        &index,
        &serde_json::json!({"settings": {"number_of_shards": 1}}),
    );
    let mut body = String::new();
    for i in 0..1500 {
        body.push_str(&format!(
            "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"{i}\"}}}}\n"
        ));
        body.push_str(&format!(
            "{{\"n\":{i},\"pad\":\"{}\"}}\n",
            format!("{i:x}").repeat(60)
        ));
    }
    cluster.bulk(&body);
    cluster.refresh(&index);

    let mount = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(mount.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        skip("full-disk", "cannot mount a small tmpfs here (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.path().to_path_buf());
    let out_dir = mount.path().join("backup");
    let mut args = cluster.source_args();
    args.extend(["--output".into(), out_dir.display().to_string()]);
    args.extend([
        "--match".into(),
        format!("^{index}$"),
        "--compression".into(),
        "none".into(),
        "-q".into(),
    ]);
    let out = Esark::new().arg("dump").args(&args).run();
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = one_error_line(&out.stderr);
    assert!(line.contains("No space left on device"), "{line}");
    assert!(!out_dir.join("manifest.json").exists());
}

#[test]
fn a_server_that_is_not_a_search_engine_is_named_as_such() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = r#"{"status":"ok","service":"something else"}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dump_through(
        &format!("http://user:n0t-es@{addr}"),
        &dir.path().join("x"),
        &[],
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = one_error_line(&out.stderr);
    assert!(
        line.contains("does not look like Elasticsearch or OpenSearch"),
        "{line}"
    );
    assert!(!out.stderr.contains("n0t-es"));
    assert!(
        !dir.path().join("x").exists(),
        "no folder for a failed connection"
    );
}

#[test]
fn archive_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = TestCluster::start("perms");
    let index = cluster.name("p");
    cluster.create_index(&index, &serde_json::json!({}));
    cluster.bulk(&format!(
        "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"1\"}}}}\n{{\"a\":1}}\n"
    ));
    cluster.refresh(&index);
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("backup");
    let mut args = cluster.source_args();
    args.extend([
        "--output".into(),
        out_dir.display().to_string(),
        "--match".into(),
        format!("^{index}$"),
        "-q".into(),
    ]);
    let out = Esark::new().arg("dump").args(&args).run();
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut stack = vec![out_dir];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode, 0o600, "{}", path.display());
            files += 1;
        }
    }
    assert!(files >= 5, "{files} files");
}
