//! `count-proxy --upstream URL`: an HTTP/1.1 proxy (hyper 1 on tokio, with
//! reqwest towards the upstream) that forwards every request to one
//! cluster and counts them by *kind*: method and path shape, so that one
//! can see what a tool asks per index (the many-indices rows). A tool runs
//! through it once more after its timed run; the proxy's own cost is never
//! in a measurement.
//!
//! The shape of a path keeps every segment that starts with `_` (the
//! API's words), and a plain lowercase word right after one of those
//! (`_search/scroll`, `_cat/indices`, `_cluster/settings`); it replaces
//! the others: the first with `{index}`, later ones with `{name}` (a
//! scroll id, a template, alias or document name). The query keeps its
//! parameter names, sorted, without values:
//! `GET /tenant-0001/_mapping?human` → `GET /{index}/_mapping?human`.
//!
//! - `GET /_count_proxy/stats`: `{"requests":N,"kinds":{"KIND":N,…}}`
//!   (not forwarded, not counted).
//!
//! It prints `{"url":"http://127.0.0.1:PORT"}` once listening and exits
//! when its parent process goes away.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Headers passed on in each direction; others (hop-by-hop ones,
/// `content-length`, `accept-encoding`) are left to each side's client.
const FORWARDED: [&str; 3] = ["content-type", "authorization", "accept"];

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    kinds: Mutex<BTreeMap<String, u64>>,
}

pub fn main(args: &[String]) -> std::process::ExitCode {
    let upstream = match args.iter().position(|a| a == "--upstream") {
        Some(i) if i + 1 < args.len() => args[i + 1].trim_end_matches('/').to_string(),
        _ => {
            eprintln!("count-proxy: --upstream URL is required");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(serve(upstream)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("count proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(upstream: String) -> std::io::Result<()> {
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

    let proxy = Arc::new(Proxy {
        upstream,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(std::io::Error::other)?,
        kinds: Mutex::new(BTreeMap::new()),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, proxy.clone()));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                if !e.is_incomplete_message() {
                    eprintln!("count proxy: connection: {e}");
                }
            }
        });
    }
}

/// The kind of a request: its method and the shape of its path and query.
pub fn kind(method: &str, path: &str, query: Option<&str>) -> String {
    let mut shape = String::new();
    let mut after_api_word = false;
    for (i, segment) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
        shape.push('/');
        let word = segment.bytes().all(|b| b.is_ascii_lowercase());
        shape.push_str(match segment {
            s if s.starts_with('_') => s,
            s if after_api_word && word => s,
            _ if i == 0 => "{index}",
            _ => "{name}",
        });
        after_api_word = segment.starts_with('_');
    }
    if shape.is_empty() {
        shape.push('/');
    }
    let mut params: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split('=').next().unwrap_or(p))
        .collect();
    params.sort_unstable();
    params.dedup();
    if !params.is_empty() {
        shape.push('?');
        shape.push_str(&params.join("&"));
    }
    format!("{method} {shape}")
}

async fn handle(
    req: Request<Incoming>,
    proxy: Arc<Proxy>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    if uri.path() == "/_count_proxy/stats" {
        let kinds = proxy.kinds.lock().expect("not poisoned").clone();
        let body = serde_json::json!({"requests": kinds.values().sum::<u64>(), "kinds": kinds});
        return Ok(reply(StatusCode::OK, body.to_string(), None));
    }
    *proxy
        .kinds
        .lock()
        .expect("not poisoned")
        .entry(kind(method.as_str(), uri.path(), uri.query()))
        .or_insert(0) += 1;
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, e.to_string(), None)),
    };
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(m) = reqwest::Method::from_bytes(method.as_str().as_bytes()) else {
        return Ok(reply(StatusCode::BAD_REQUEST, "bad method", None));
    };
    let mut forward = proxy
        .client
        .request(m, format!("{}{path_and_query}", proxy.upstream))
        .body(body);
    for name in FORWARDED {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            forward = forward.header(name, v);
        }
    }
    let answer = match forward.send().await {
        Ok(a) => a,
        Err(e) => return Ok(reply(StatusCode::BAD_GATEWAY, e.to_string(), None)),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::OK);
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match answer.bytes().await {
        Ok(b) => Ok(reply(status, b, content_type)),
        Err(e) => Ok(reply(StatusCode::BAD_GATEWAY, e.to_string(), None)),
    }
}

fn reply(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: Option<String>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(
            "content-type",
            content_type.unwrap_or_else(|| "application/json; charset=UTF-8".into()),
        )
        .body(Full::new(body.into()))
        .expect("a valid response")
}
