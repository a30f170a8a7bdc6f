//! Helpers of the archive endpoint tests (`tests/serve_archives.rs`): a
//! service with one token per role, archives dumped into its folder, tars
//! made and read with the `tar` command, and hand-made hostile tars.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::esark::dump;
use super::fixture::Fixture;
use super::restore_support::seed_index;
use super::serve::{token_digest, Serve};
use super::server::TestCluster;

/// One token per role: `(name, role)`; the token is `NAME-secret`.
pub const ROLES: &[(&str, &str)] = &[
    ("view", "viewer"),
    ("export", "exporter"),
    ("restore", "restorer"),
    ("admin", "admin"),
];

/// The token of the role's entry in [`ROLES`].
pub fn token(name: &str) -> String {
    format!("{name}-secret")
}

/// The archives folder of a service started by [`start`] in `dir`.
pub fn archives(dir: &Path) -> PathBuf {
    dir.join("archives")
}

/// `esark serve` in `dir` with every token of [`ROLES`]; archives in
/// `dir/archives`, or at `archives_at` (an `s3://` URL) with `envs`.
pub fn start(dir: &Path, archives_at: Option<&str>, envs: &[(&str, &str)]) -> Serve {
    let location = archives_at
        .map(String::from)
        .unwrap_or_else(|| archives(dir).display().to_string());
    let mut config = format!(
        "listen = \"127.0.0.1:0\"\nstate = \"{}\"\narchives = \"{location}\"\n",
        dir.join("state").display(),
    );
    for (name, role) in ROLES {
        config.push_str(&format!(
            "\n[[tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            token_digest(&token(name))
        ));
    }
    Serve::start(dir, &config, envs)
}

/// Runs `tar ARGS`, panicking with its stderr on failure.
pub fn tar(args: &[&str]) {
    let out = Command::new("tar").args(args).output().expect("run tar");
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Extracts tar bytes into `dir`.
pub fn extract(bytes: &[u8], dir: &Path) {
    let file = dir.join("extract-input.tar");
    std::fs::write(&file, bytes).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    tar(&["-xf", file.to_str().unwrap(), "-C", dir.to_str().unwrap()]);
    std::fs::remove_file(file).unwrap();
}

/// Every file under `dir`, by `/`-separated relative path, with its bytes.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                let key = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(key, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// A tar of hand-made entries: `(path, type flag, data, link target)`,
/// written as raw ustar headers so that paths the `tar` command would
/// clean (`../x`, `/abs`) reach the service as given.
pub fn raw_tar(entries: &[(&str, u8, &[u8], &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, data, link) in entries {
        let mut header = [0u8; 512];
        header[..path.len()].copy_from_slice(path.as_bytes());
        header[100..108].copy_from_slice(b"0000644\0");
        header[108..116].copy_from_slice(b"0000000\0");
        header[116..124].copy_from_slice(b"0000000\0");
        header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        header[136..148].copy_from_slice(b"00000000000\0");
        header[148..156].copy_from_slice(b"        ");
        header[156] = *kind;
        header[157..157 + link.len()].copy_from_slice(link.as_bytes());
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        let sum: u32 = header.iter().map(|b| *b as u32).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// An index of `n` documents of about 130 bytes in `cluster`.
pub fn seed(cluster: &TestCluster, n: usize) -> String {
    let index = cluster.name("logs");
    let docs: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("d{i}"),
                format!(r#"{{"i":{i},"text":"{}"}}"#, "x".repeat(100)),
            )
        })
        .collect();
    seed_index(cluster, &index, &json!({}), &docs);
    index
}

/// `index` dumped into `archives/NAME` uncompressed in chunks of 16 KiB
/// (several files).
pub fn dump_into(cluster: &TestCluster, dir: &Path, name: &str, index: &str) {
    dump(
        cluster,
        &archives(dir).join(name),
        &[
            "--match",
            &Fixture::exactly(index),
            "--file-size",
            "16KiB",
            "--compression",
            "none",
        ],
    )
    .assert_success();
}

/// `GET`/`PUT` with a role's token: status, headers, body bytes.
pub fn call(
    serve: &Serve,
    method: &str,
    path: &str,
    role: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let token = role.map(token);
    serve.call_raw(method, path, token.as_deref(), body, &[])
}

pub fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(bytes)))
}

pub fn message(bytes: &[u8]) -> String {
    json_of(bytes)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}
