//! The raw baselines: the least a client must do, measured as child
//! processes exactly like the tools.
//!
//! - `raw-scroll --source URL [--workers 2] [--page-size 5000]`: lists every
//!   index (`_cat/indices`, hidden ones included), makes one task per
//!   (index, slice) with one slice per primary shard, at most 4 (what
//!   `esark dump --slices auto` does), and lets `--workers` threads take
//!   tasks from a shared queue. Each worker has its own blocking reqwest
//!   client, so one keep-alive connection per worker. A task opens a
//!   scroll (`size`, `sort:["_doc"]`, `slice` when sliced), follows it
//!   with `POST /_search/scroll` until a page comes back empty, clears it,
//!   and discards the documents: each page is parsed only far enough to
//!   count its hits (serde `IgnoredAny`). Prints `{"docs":N,"pages":N}`.
//! - `raw-bulk --target URL --dir DIR [--connections 2]`: sends the
//!   pre-built `_bulk` bodies of DIR (files `NNNNNN.ndjson`, built by
//!   [`prepare_bulk_bodies`] before the clock starts) with `--connections`
//!   threads, each with its own keep-alive connection, taking the next
//!   file from a shared counter; a body is read from the page cache just
//!   before it is sent. Every answer's `items` are counted and checked.
//!   Prints `{"docs":N,"bytes":N,"requests":N,"failed_items":N}`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::json;

use esark::sink::bulk::{BulkBuilder, BulkOp};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .pool_max_idle_per_host(1)
        .build()
        .expect("an HTTP client")
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[derive(Deserialize)]
struct ScrollPage {
    #[serde(rename = "_scroll_id")]
    scroll_id: Option<String>,
    hits: Hits,
}

#[derive(Deserialize)]
struct Hits {
    hits: Vec<IgnoredAny>,
}

/// `raw-scroll`: see the module doc.
pub fn scroll_main(args: &[String]) -> Result<(), String> {
    let base = flag(args, "--source").ok_or("--source URL is required")?;
    let workers: usize = flag(args, "--workers")
        .map_or(Ok(2), |w| w.parse())
        .map_err(|e| format!("--workers: {e}"))?;
    let page_size: usize = flag(args, "--page-size")
        .map_or(Ok(5000), |w| w.parse())
        .map_err(|e| format!("--page-size: {e}"))?;
    let http = super::servers::Http::new();
    let mut tasks = Vec::new();
    for index in http.indices(&base)? {
        let slices = index.primaries.clamp(1, 4);
        for id in 0..slices {
            tasks.push((index.name.clone(), id, slices));
        }
    }
    let queue = Arc::new(Mutex::new(tasks));
    let docs = Arc::new(AtomicU64::new(0));
    let pages = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (queue, docs, pages, base) =
                (queue.clone(), docs.clone(), pages.clone(), base.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let client = client();
                loop {
                    let Some((index, id, max)) = queue.lock().unwrap().pop() else {
                        return Ok(());
                    };
                    let mut body = json!({"size": page_size, "sort": ["_doc"]});
                    if max > 1 {
                        body["slice"] = json!({"id": id, "max": max});
                    }
                    let url = format!(
                        "{base}/{}/_search?scroll=5m",
                        super::servers::encode(&index)
                    );
                    let mut page: ScrollPage = post(&client, &url, &body)?;
                    loop {
                        pages.fetch_add(1, Ordering::Relaxed);
                        let n = page.hits.hits.len() as u64;
                        let id = page
                            .scroll_id
                            .take()
                            .ok_or_else(|| format!("{index}: no scroll id"))?;
                        if n == 0 {
                            let _ = client
                                .delete(format!("{base}/_search/scroll"))
                                .json(&json!({"scroll_id": [id]}))
                                .send();
                            break;
                        }
                        docs.fetch_add(n, Ordering::Relaxed);
                        page = post(
                            &client,
                            &format!("{base}/_search/scroll"),
                            &json!({"scroll": "5m", "scroll_id": id}),
                        )?;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a worker panicked".to_string())??;
    }
    println!(
        "{}",
        json!({"docs": docs.load(Ordering::Relaxed), "pages": pages.load(Ordering::Relaxed)})
    );
    Ok(())
}

fn post<T: serde::de::DeserializeOwned>(
    client: &reqwest::blocking::Client,
    url: &str,
    body: &serde_json::Value,
) -> Result<T, String> {
    let r = client
        .post(url)
        .json(body)
        .send()
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = r.status();
    let bytes = r.bytes().map_err(|e| format!("POST {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "POST {url}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("POST {url}: {e}"))
}

#[derive(Deserialize)]
struct BulkAnswer {
    #[serde(default)]
    errors: bool,
    items: Vec<BulkItem>,
}

#[derive(Deserialize)]
struct BulkItem {
    #[serde(alias = "index", alias = "create")]
    result: BulkItemResult,
}

#[derive(Deserialize)]
struct BulkItemResult {
    status: u16,
}

/// `raw-bulk`: see the module doc.
pub fn bulk_main(args: &[String]) -> Result<(), String> {
    let base = flag(args, "--target").ok_or("--target URL is required")?;
    let dir = PathBuf::from(flag(args, "--dir").ok_or("--dir DIR is required")?);
    let connections: usize = flag(args, "--connections")
        .map_or(Ok(2), |w| w.parse())
        .map_err(|e| format!("--connections: {e}"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    files.sort();
    let files = Arc::new(files);
    let next = Arc::new(AtomicUsize::new(0));
    let (docs, bytes, requests, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let threads: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let (files, next, base) = (files.clone(), next.clone(), base.clone());
            let (docs, bytes, requests, failed) = (
                docs.clone(),
                bytes.clone(),
                requests.clone(),
                failed.clone(),
            );
            std::thread::spawn(move || -> Result<(), String> {
                let client = client();
                let url = format!("{base}/_bulk");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(file) = files.get(i) else {
                        return Ok(());
                    };
                    let body =
                        std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
                    let len = body.len() as u64;
                    let r = client
                        .post(&url)
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .map_err(|e| format!("POST {url}: {e}"))?;
                    let status = r.status();
                    let answer = r.bytes().map_err(|e| format!("POST {url}: {e}"))?;
                    if !status.is_success() {
                        return Err(format!("POST {url}: HTTP {status}"));
                    }
                    let answer: BulkAnswer =
                        serde_json::from_slice(&answer).map_err(|e| format!("POST {url}: {e}"))?;
                    let bad = answer
                        .items
                        .iter()
                        .filter(|i| i.result.status >= 300)
                        .count() as u64;
                    if answer.errors || bad > 0 {
                        failed.fetch_add(bad, Ordering::Relaxed);
                    }
                    docs.fetch_add(answer.items.len() as u64 - bad, Ordering::Relaxed);
                    bytes.fetch_add(len, Ordering::Relaxed);
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a sender panicked".to_string())??;
    }
    println!(
        "{}",
        json!({
            "docs": docs.load(Ordering::Relaxed),
            "bytes": bytes.load(Ordering::Relaxed),
            "requests": requests.load(Ordering::Relaxed),
            "failed_items": failed.load(Ordering::Relaxed),
        })
    );
    Ok(())
}

/// What [`prepare_bulk_bodies`] wrote.
pub struct Prepared {
    pub files: usize,
    pub docs: u64,
    pub bytes: u64,
}

/// The content of a chunk of lz4 frames (one per page), as esark reads it.
fn lz4_frames(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut decoder = async_compression::tokio::bufread::Lz4Decoder::new(raw);
    decoder.multiple_members(true);
    let mut out = Vec::new();
    tokio::runtime::Builder::new_current_thread()
        .build()?
        .block_on(decoder.read_to_end(&mut out))?;
    Ok(out)
}

/// Builds `_bulk` bodies from an esark archive (its manifest and lz4 or zstd data
/// files) with esark's own [`BulkBuilder`], cut at `max_bytes`/`max_docs`
/// (the "~10 MB bodies": 10 MiB, 5000 documents), into `out` as
/// `NNNNNN.ndjson`. Counting the lines here also checks the dump.
pub fn prepare_bulk_bodies(
    archive: &Path,
    out: &Path,
    max_bytes: usize,
    max_docs: usize,
) -> Result<Prepared, String> {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(archive.join("manifest.json"))
            .map_err(|e| format!("{}: {e}", archive.display()))?,
    )
    .map_err(|e| format!("manifest.json: {e}"))?;
    let mut prepared = Prepared {
        files: 0,
        docs: 0,
        bytes: 0,
    };
    let write = |request: esark::sink::bulk::BulkRequest, p: &mut Prepared| -> Result<(), String> {
        let path = out.join(format!("{:06}.ndjson", p.files));
        std::fs::write(&path, request.body()).map_err(|e| format!("{}: {e}", path.display()))?;
        p.files += 1;
        p.docs += request.docs() as u64;
        p.bytes += request.bytes() as u64;
        Ok(())
    };
    for index in manifest["indices"]
        .as_array()
        .ok_or("manifest: no indices")?
    {
        let name = index["name"]
            .as_str()
            .ok_or("manifest: an index without a name")?;
        let mut builder = BulkBuilder::new(name, BulkOp::Index, max_bytes, max_docs);
        for file in index["files"].as_array().into_iter().flatten() {
            if file["kind"] != "data" {
                continue;
            }
            let path = archive.join(
                file["path"]
                    .as_str()
                    .ok_or("manifest: a file without a path")?,
            );
            let raw = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let lines = if path.extension().is_some_and(|x| x == "zst") {
                zstd::decode_all(&raw[..]).map_err(|e| format!("{}: {e}", path.display()))?
            } else if path.extension().is_some_and(|x| x == "lz4") {
                lz4_frames(&raw).map_err(|e| format!("{}: {e}", path.display()))?
            } else {
                raw
            };
            for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                if let Some(request) = builder
                    .push_line(line)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                {
                    write(request, &mut prepared)?;
                }
            }
        }
        if let Some(request) = builder.finish() {
            write(request, &mut prepared)?;
        }
    }
    Ok(prepared)
}
