//! Archives on S3 (issue 15), against a real S3 implementation: a private
//! `moto_server` per test ([`Moto`]). Dump -> inspect -> restore exact, a
//! chunk of several multipart parts, a missing bucket as a one-line error,
//! a tampered object refused before any write, two dumps into one prefix,
//! and `kill -9` then `--resume`. Submodules: [`prefix`] (`--overwrite`
//! and the dump lock), [`crypt`] (encrypted archives), [`interrupted`]
//! (`restore --resume` after a kill, aborted multipart uploads), [`requests`]
//! (what a dump and a restore ask of S3 per object).

mod crypt;
mod interrupted;
mod prefix;
mod requests;

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::util::check::assert_one_error_line;
use crate::util::esark::{Esark, Output};
use crate::util::fixture::Fixture;
use crate::util::moto::{Moto, SECRET};
use crate::util::restore_support::{
    assert_same_stored, docs_of, seed_index, target_args, target_cluster, try_count, Spawned,
};
use crate::util::server::TestCluster;

const BUCKET: &str = "bars";

/// `esark ARGS` with the environment that points it at `moto`.
fn esark(moto: &Moto) -> Esark {
    moto.env()
        .into_iter()
        .fold(Esark::new(), |e, (k, v)| e.env(k, &v))
}

fn dump(moto: &Moto, cluster: &TestCluster, index: &str, output: &str, extra: &[&str]) -> Output {
    esark(moto)
        .arg("dump")
        .args(cluster.source_args())
        .args(["--match", &Fixture::exactly(index), "--output", output])
        .args(extra)
        .timeout(Duration::from_secs(180))
        .run()
}

fn restore(moto: &Moto, input: &str, target: &TestCluster) -> Output {
    esark(moto)
        .args(["restore", "--input", input])
        .args(target_args(target))
        .timeout(Duration::from_secs(180))
        .run()
}

/// `n` documents of about `size` bytes each, not compressible to nothing.
fn docs(n: usize, size: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let filler: String = (0..size / 16)
                .map(|j| {
                    format!(
                        "{:016x}",
                        (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ j as u64
                    )
                })
                .collect();
            (
                format!("d{i}"),
                format!(r#"{{"i":{i},"big":9223372036854775807,"f":"{filler}"}}"#),
            )
        })
        .collect()
}

fn assert_no_local_folder(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(left.is_empty(), "wrote {left:?} locally");
}

#[test]
fn s3_dump_inspect_restore_round_trip_is_exact() {
    let Some(moto) = Moto::start("s3-round-trip") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let source = TestCluster::start("s3-round-trip");
    let Some(target) = target_cluster("s3-round-trip") else {
        return;
    };
    let index = source.name("logs");
    let body = json!({"settings": {"number_of_shards": 2, "number_of_replicas": 0}});
    let seeded = seed_index(&source, &index, &body, &docs(1500, 200));
    let url = format!("s3://{BUCKET}/backups/b1");
    let cwd = tempfile::tempdir().unwrap();
    let run = esark(&moto)
        .arg("dump")
        .args(source.source_args())
        .args(["--match", &Fixture::exactly(&index), "--output", &url])
        .args(["--file-size", "64KiB", "--compression", "none"])
        .current_dir(cwd.path())
        .run();
    run.assert_success();
    assert!(!run.stderr.contains(SECRET), "secret printed\n{run}");
    assert_no_local_folder(cwd.path());
    let keys = moto.keys(BUCKET, "backups/b1/");
    assert!(
        keys.contains(&"backups/b1/manifest.json".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.iter().filter(|k| k.contains("/data-")).count() > 3,
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains("checkpoint")),
        "checkpoint left: {keys:?}"
    );

    let inspect = esark(&moto).args(["inspect", &url, "--json"]).run();
    inspect.assert_success();
    let report: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(report["intact"], true, "{inspect}");

    restore(&moto, &url, &target).assert_success();
    assert_same_stored(&seeded, &docs_of(&target, &index), "restored from s3");
}

#[test]
fn s3_chunk_of_several_multipart_parts_round_trips() {
    let Some(moto) = Moto::start("s3-multipart") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let source = TestCluster::start("s3-multipart");
    let Some(target) = target_cluster("s3-multipart") else {
        return;
    };
    let index = source.name("big");
    let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}});
    // About 24 MiB uncompressed in one chunk: three parts of 8 MiB.
    let seeded = seed_index(&source, &index, &body, &docs(3000, 8192));
    let url = format!("s3://{BUCKET}/big");
    dump(&moto, &source, &index, &url, &["--compression", "none"]).assert_success();
    let data: Vec<String> = moto
        .keys(BUCKET, "big/")
        .into_iter()
        .filter(|k| k.contains("/data-"))
        .collect();
    assert_eq!(data.len(), 1, "one chunk expected: {data:?}");
    let size = moto.get_object(BUCKET, &data[0]).len();
    assert!(
        size > 2 * (8 << 20),
        "chunk of {size} bytes is not several parts"
    );
    restore(&moto, &url, &target).assert_success();
    assert_same_stored(&seeded, &docs_of(&target, &index), "multipart chunk");
}

#[test]
fn s3_missing_bucket_is_one_line_exit_1() {
    let Some(moto) = Moto::start("s3-missing-bucket") else {
        return;
    };
    let source = TestCluster::start("s3-missing-bucket");
    let index = source.name("x");
    seed_index(&source, &index, &json!({}), &docs(3, 10));
    let run = dump(&moto, &source, &index, "s3://no-such-bucket/p", &[]);
    let line = assert_one_error_line(&run);
    assert!(
        line.contains("no-such-bucket"),
        "must name the bucket: {line}"
    );
    assert!(line.contains("does not exist"), "must say why: {line}");
    assert!(!run.stderr.contains(SECRET));
    let run = esark(&moto)
        .args(["inspect", "s3://no-such-bucket/p"])
        .run();
    let line = assert_one_error_line(&run);
    assert!(line.contains("no-such-bucket"), "{line}");
}

#[test]
fn s3_missing_credentials_is_one_line_exit_1() {
    let Some(moto) = Moto::start("s3-no-credentials") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let run = Esark::new()
        .env("AWS_ENDPOINT_URL_S3", &moto.url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent/esark-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/esark-test")
        .env("AWS_ACCESS_KEY_ID", "")
        .env("AWS_SECRET_ACCESS_KEY", "")
        .args(["inspect", &format!("s3://{BUCKET}/p")])
        .run();
    let line = assert_one_error_line(&run);
    assert!(line.contains(&format!("s3://{BUCKET}")), "{line}");
    assert!(line.contains("credentials"), "{line}");
}

#[test]
fn s3_wrong_credentials_is_one_line_exit_1() {
    let Some(moto) = Moto::start_with_auth("s3-wrong-credentials") else {
        return;
    };
    let source = TestCluster::start("s3-wrong-credentials");
    let index = source.name("w");
    seed_index(&source, &index, &json!({}), &docs(3, 10));
    let cwd = tempfile::tempdir().unwrap();
    let run = esark(&moto)
        .arg("dump")
        .args(source.source_args())
        .args(["--match", &Fixture::exactly(&index), "--output"])
        .arg(format!("s3://{BUCKET}/w"))
        .current_dir(cwd.path())
        .run();
    let line = assert_one_error_line(&run);
    assert!(line.contains(BUCKET), "must name the bucket: {line}");
    assert!(line.contains("InvalidAccessKeyId"), "must say why: {line}");
    assert!(!run.stderr.contains(SECRET), "secret printed\n{run}");
    assert_no_local_folder(cwd.path());
}

#[test]
fn s3_tampered_object_is_refused_before_any_write() {
    let Some(moto) = Moto::start("s3-tampered") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let source = TestCluster::start("s3-tampered");
    let Some(target) = target_cluster("s3-tampered") else {
        return;
    };
    let index = source.name("t");
    seed_index(&source, &index, &json!({}), &docs(200, 100));
    let url = format!("s3://{BUCKET}/t");
    dump(&moto, &source, &index, &url, &["--compression", "none"]).assert_success();
    let key = moto
        .keys(BUCKET, "t/")
        .into_iter()
        .find(|k| k.contains("/data-"))
        .unwrap();
    let mut bytes = moto.get_object(BUCKET, &key);
    // Same size, one document changed.
    let at = bytes.iter().position(|b| *b == b'7').unwrap();
    bytes[at] = b'8';
    moto.put_object(BUCKET, &key, bytes);
    let run = restore(&moto, &url, &target);
    let line = assert_one_error_line(&run);
    let name = key.rsplit('/').next().unwrap();
    assert!(line.contains(name), "must name the object: {line}");
    assert_eq!(
        try_count(&target, &index),
        None,
        "restore wrote before refusing"
    );
    let inspect = esark(&moto).args(["inspect", &url]).run();
    assert_eq!(inspect.code, Some(1), "{inspect}");
}

#[test]
fn s3_two_dumps_into_one_prefix_one_is_refused() {
    let Some(moto) = Moto::start("s3-concurrent") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let source = TestCluster::start("s3-concurrent");
    let index = source.name("c");
    seed_index(&source, &index, &json!({}), &docs(2000, 100));
    let url = format!("s3://{BUCKET}/same");
    let env: Vec<(&str, String)> = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = |_: usize| {
        let mut a = vec!["dump".to_string()];
        a.extend(source.source_args());
        a.extend([
            "--match".into(),
            Fixture::exactly(&index),
            "--output".into(),
            url.clone(),
        ]);
        a.extend([
            "--file-size".into(),
            "32KiB".into(),
            "--compression".into(),
            "none".into(),
        ]);
        a
    };
    let first = Spawned::start_with_env(args(0), None, &env);
    let second = Spawned::start_with_env(args(1), None, &env);
    let runs = [
        first.wait(Duration::from_secs(180)),
        second.wait(Duration::from_secs(180)),
    ];
    let ok = runs.iter().filter(|r| r.success()).count();
    assert_eq!(
        ok, 1,
        "exactly one dump may own the prefix\n{}\n{}",
        runs[0], runs[1]
    );
    let refused = runs.iter().find(|r| !r.success()).unwrap();
    assert_ne!(refused.code, None, "{refused}");
    // One error line (warnings about what it could not finish may come
    // before it).
    let errors = refused
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("error:"))
        .count();
    assert_eq!(errors, 1, "{refused}");
    eprintln!("refused: {}", refused.stderr.trim());
    let inspect = esark(&moto).args(["inspect", &url]).run();
    inspect.assert_success();
}

#[test]
fn s3_kill9_mid_dump_leaves_no_manifest_and_resume_completes() {
    let Some(moto) = Moto::start("s3-kill9") else {
        return;
    };
    moto.create_bucket(BUCKET);
    let source = TestCluster::start("s3-kill9");
    let Some(target) = target_cluster("s3-kill9") else {
        return;
    };
    let index = source.name("k");
    let body = json!({"settings": {"number_of_shards": 2, "number_of_replicas": 0}});
    let seeded = seed_index(&source, &index, &body, &docs(9_000, 100));
    let url = format!("s3://{BUCKET}/k");
    let env: Vec<(&str, String)> = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = vec!["dump".to_string()];
    args.extend(source.source_args());
    args.extend([
        "--match".into(),
        Fixture::exactly(&index),
        "--output".into(),
        url.clone(),
    ]);
    args.extend(
        [
            "--file-size",
            "16KiB",
            "--compression",
            "none",
            "--page-size",
            "50",
            "--slices",
            "1",
        ]
        .map(String::from),
    );
    let mut run = Spawned::start_with_env(&args, None, &env);
    run.wait_until("two chunks on S3", Duration::from_secs(120), || {
        moto.keys(BUCKET, "k/")
            .iter()
            .filter(|k| k.contains("/data-"))
            .count()
            >= 2
    });
    run.kill9();
    let keys = moto.keys(BUCKET, "k/");
    assert!(
        !keys.contains(&"k/manifest.json".to_string()),
        "the dump finished before the kill: make it longer ({} keys)",
        keys.len()
    );
    let mut resume = args.clone();
    resume.push("--resume".into());
    let resumed = esark(&moto)
        .args(&resume)
        .timeout(Duration::from_secs(300))
        .run();
    resumed.assert_success();
    assert!(moto
        .keys(BUCKET, "k/")
        .contains(&"k/manifest.json".to_string()));
    restore(&moto, &url, &target).assert_success();
    let restored = docs_of(&target, &index);
    assert_eq!(restored.len(), seeded.len(), "every document, once");
    assert_same_stored(&seeded, &restored, "resumed dump");
}
