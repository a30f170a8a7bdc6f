//! The null bulk sink: a small HTTP/1.1 server (hyper 1 on tokio) that
//! answers what `esark restore` asks of an OpenSearch 2.x cluster and
//! throws the documents away, so a restore into it measures esark's own
//! ceiling rather than the server's indexing speed.
//!
//! - `GET /`: an OpenSearch 2.11.0 root answer.
//! - `GET /{index}/_alias` (and any other GET): 404 `index_not_found_exception`,
//!   so every index looks missing and is created.
//! - `PUT /{index}`, `PUT /{index}/_settings`, `POST /_aliases`,
//!   `POST /{index}/_refresh`, `PUT /_template|_index_template|_component_template/{name}`:
//!   `{"acknowledged":true}`. Any other non-GET request too, logged to stderr.
//! - `POST|PUT /_bulk` (or `/{index}/_bulk`): the body's non-empty lines
//!   are counted; every other one is an action line, so there are half as
//!   many documents, and the answer has exactly one `201` item per document.
//! - `GET /_null_sink/stats`: `{"docs":N,"requests":N,"bytes":N,"odd_bodies":N}`.
//!
//! It prints `{"url":"http://127.0.0.1:PORT"}` once listening and exits
//! when its parent process goes away.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const ROOT: &str = r#"{"name":"null","cluster_name":"null","cluster_uuid":"null","version":{"distribution":"opensearch","number":"2.11.0","lucene_version":"9.7.0","minimum_wire_compatibility_version":"7.10.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"The OpenSearch Project: https://opensearch.org/"}"#;
const NOT_FOUND: &str =
    r#"{"error":{"type":"index_not_found_exception","reason":"no such index"},"status":404}"#;
const ACK: &str = r#"{"acknowledged":true}"#;
const ITEM: &[u8] = br#"{"index":{"_id":"null","status":201}}"#;

/// Counters over the sink's whole life.
#[derive(Default)]
struct Stats {
    docs: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
    /// Bulk bodies with an odd number of non-empty lines (malformed).
    odd_bodies: AtomicU64,
}

pub fn main() -> std::process::ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(serve()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("null sink: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{{\"url\":\"http://{}\"}}", listener.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;

    // Exit with the parent: it may have been killed before it could kill us.
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            // SAFETY: as above.
            if unsafe { libc::getppid() } != parent {
                std::process::exit(0);
            }
        }
    });

    let stats = Arc::new(Stats::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let stats = stats.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, stats.clone()));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                // Clients closing idle keep-alive connections end up here.
                if !e.is_incomplete_message() {
                    eprintln!("null sink: connection: {e}");
                }
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    stats: Arc<Stats>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                format!("{{\"error\":\"{e}\"}}"),
            ))
        }
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let is_bulk = segments.last() == Some(&"_bulk") && segments.len() <= 2;
    Ok(match (&method, segments.as_slice()) {
        (&Method::GET | &Method::HEAD, []) => reply(StatusCode::OK, ROOT),
        (&Method::GET, ["_null_sink", "stats"]) => reply(
            StatusCode::OK,
            format!(
                "{{\"docs\":{},\"requests\":{},\"bytes\":{},\"odd_bodies\":{}}}",
                stats.docs.load(Ordering::Relaxed),
                stats.requests.load(Ordering::Relaxed),
                stats.bytes.load(Ordering::Relaxed),
                stats.odd_bodies.load(Ordering::Relaxed)
            ),
        ),
        (&Method::POST | &Method::PUT, _) if is_bulk => bulk(&body, &stats),
        (&Method::GET, [_, "_alias"]) => reply(StatusCode::NOT_FOUND, NOT_FOUND),
        (&Method::GET, _) => {
            eprintln!("null sink: unexpected GET {path}: answered 404");
            reply(StatusCode::NOT_FOUND, NOT_FOUND)
        }
        (&Method::PUT, [_])
        | (&Method::PUT, [_, "_settings"])
        | (&Method::POST, ["_aliases"])
        | (&Method::POST, [_, "_refresh"])
        | (&Method::PUT, ["_template" | "_index_template" | "_component_template", _]) => {
            reply(StatusCode::OK, ACK)
        }
        _ => {
            eprintln!("null sink: unexpected {method} {path}: acknowledged");
            reply(StatusCode::OK, ACK)
        }
    })
}

/// Counts the documents of a bulk body and acknowledges each one.
fn bulk(body: &[u8], stats: &Stats) -> Response<Full<Bytes>> {
    let lines = body
        .split(|&b| b == b'\n')
        .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
        .count();
    if lines % 2 == 1 {
        stats.odd_bodies.fetch_add(1, Ordering::Relaxed);
    }
    let docs = lines / 2;
    stats.docs.fetch_add(docs as u64, Ordering::Relaxed);
    stats.requests.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let mut out = Vec::with_capacity(40 + docs * (ITEM.len() + 1));
    out.extend_from_slice(br#"{"took":0,"errors":false,"items":["#);
    for i in 0..docs {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(ITEM);
    }
    out.extend_from_slice(b"]}");
    reply(StatusCode::OK, out)
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Full::new(body.into()))
        .expect("a valid response")
}
