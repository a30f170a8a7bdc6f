//! One test HTTP front: a hyper server on `127.0.0.1:0` that passes each
//! request down a stack of [`Layer`]s and, at the bottom, forwards it to an
//! [`Upstream`] cluster (or answers 502 when it has none: a front of
//! [`scripted`] answers only).
//!
//! The layers, one file each:
//! - [`auth`]: Basic or bearer authentication, as Elasticsearch with
//!   security enabled asks for it;
//! - [`sigv4`]: AWS SigV4 verification, as Amazon OpenSearch Service does;
//! - [`data_streams`]: Elasticsearch's data stream API, which osmem lacks;
//! - [`faults`]: seeded, bounded fault injection after a plan of
//!   [`plan::Rule`]s;
//! - [`scripted`]: answers from a script, for a client tested alone.
//!
//! hyper reads and writes HTTP (keep-alive, chunked bodies, `HEAD`); a
//! layer sees a whole [`Request`] and returns a whole [`Reply`], so it can
//! rewrite either. The front runs on its own small tokio runtime (tests
//! that drive it may be synchronous) and stops on drop.

pub mod auth;
pub mod data_streams;
pub mod faults;
pub mod plan;
pub mod scripted;
pub mod sigv4;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Request and response headers that belong to one hop, never relayed.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    // Not hop-by-hop, but kept out so that answers come back uncompressed
    // and a layer can rewrite them.
    "accept-encoding",
];

/// A request as received, body read whole.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as the client sent them (still percent-encoded).
    pub target: String,
    /// Names lowercase, values as received, repeated names kept.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Request {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        path_of(&self.target)
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Drops every value of header `name` (a credential consumed here).
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

/// The path of a request target, without the query string.
pub fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or("/")
}

/// A response, body whole; hyper sets `content-length` from the body
/// (for `HEAD`, from a `content-length` header kept here).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Response {
    /// A JSON answer.
    pub fn json(status: u16, body: &Value) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body.to_string()),
        }
    }
}

/// What a layer sends back for a request.
#[derive(Debug)]
pub enum Reply {
    Answer(Response),
    /// Reset the client connection (TCP RST) without answering.
    Reset,
}

impl Reply {
    /// The status answered, for logs (`None` for a reset).
    pub fn status(&self) -> Option<u16> {
        match self {
            Reply::Answer(r) => Some(r.status),
            Reply::Reset => None,
        }
    }
}

/// One layer of the front: answers a request itself, or passes it (maybe
/// changed) to `next` and returns (maybe changed) what comes back.
pub trait Layer: Send + Sync + 'static {
    fn handle<'a>(&'a self, req: Request, next: Next<'a>) -> BoxFuture<'a, Reply>;
}

/// The rest of the stack below a layer, ending at the upstream.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    layers: &'a [Arc<dyn Layer>],
    shared: &'a Shared,
}

impl<'a> Next<'a> {
    /// Passes `req` to the next layer, or forwards it upstream.
    pub fn run(self, req: Request) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            match self.layers.split_first() {
                Some((layer, rest)) => {
                    let next = Next {
                        layers: rest,
                        shared: self.shared,
                    };
                    layer.handle(req, next).await
                }
                None => Reply::Answer(self.shared.forward(req).await),
            }
        })
    }

    /// The upstream at the bottom of the stack, if there is one (for a
    /// layer that must ask it something of its own).
    pub fn upstream(&self) -> Option<&'a Upstream> {
        self.shared.upstream.as_ref()
    }
}

/// The cluster a front forwards to.
pub struct Upstream {
    url: String,
    /// Sent as Basic authentication instead of whatever the client sent.
    credentials: Option<(String, String)>,
    client: reqwest::Client,
}

impl Upstream {
    /// `url` is a base URL without credentials.
    pub fn new(url: &str, credentials: Option<(String, String)>) -> Upstream {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            // Test-only: a shared https cluster often has a self-signed cert.
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        Upstream {
            url: url.trim_end_matches('/').to_string(),
            credentials,
            client,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A request of the front's own to `path` (with the upstream's
    /// credentials).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let out = self.client.request(method, format!("{}{path}", self.url));
        match &self.credentials {
            Some((user, password)) => out.basic_auth(user, Some(password)),
            None => out,
        }
    }

    /// Sends `req` on and reads the whole answer.
    async fn send(&self, req: &Request) -> reqwest::Result<Response> {
        let method =
            reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut out = self.request(method, &req.target);
        for (name, value) in &req.headers {
            let lower = name.to_ascii_lowercase();
            let replaced = lower == "authorization" && self.credentials.is_some();
            if !HOP_BY_HOP.contains(&lower.as_str()) && !replaced {
                out = out.header(name.as_str(), value.as_str());
            }
        }
        if !req.body.is_empty() {
            out = out.body(req.body.clone());
        }
        let resp = out.send().await?;
        let status = resp.status().as_u16();
        let head = req.method == "HEAD";
        let headers = resp
            .headers()
            .iter()
            .filter(|(name, _)| {
                // A HEAD answer keeps upstream's length: it has no body to
                // take one from.
                !HOP_BY_HOP.contains(&name.as_str()) || (head && *name == "content-length")
            })
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect();
        let body = resp.bytes().await?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// What the connections of one front share.
struct Shared {
    layers: Vec<Arc<dyn Layer>>,
    upstream: Option<Upstream>,
    /// Requests that reached the upstream (whatever it answered).
    forwarded: AtomicUsize,
}

impl Shared {
    /// The bottom of the stack: upstream's answer, or 502.
    async fn forward(&self, req: Request) -> Response {
        let Some(upstream) = &self.upstream else {
            let body = serde_json::json!({"error": format!(
                "front: no upstream and no layer answered {} {}", req.method, req.target),
                "status": 502});
            return Response::json(502, &body);
        };
        self.forwarded.fetch_add(1, Ordering::SeqCst);
        match upstream.send(&req).await {
            Ok(response) => response,
            Err(e) => Response::json(
                502,
                &serde_json::json!({"error": format!("proxy: {e}"), "status": 502}),
            ),
        }
    }
}

/// A running front, stopped on drop.
pub struct Front {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Front {
    /// Starts a front on `127.0.0.1:0`: requests go down `layers` (the
    /// first sees them first), then to `upstream`.
    pub fn start(upstream: Option<Upstream>, layers: Vec<Arc<dyn Layer>>) -> Front {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-front")
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            layers,
            upstream,
            forwarded: AtomicUsize::new(0),
        });
        // Bound here, outside the runtime: a front may be started from
        // inside another runtime, where `block_on` is not allowed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accept_shared = shared.clone();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors, most likely: let connections end.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, accept_shared.clone()));
            }
        });
        Front {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests were forwarded upstream.
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Drops every task: the listener and all connections close.
            rt.shutdown_background();
        }
    }
}

/// The error a service returns to make hyper drop the connection unanswered.
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the test front")
    }
}

impl std::error::Error for ResetConnection {}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(Resettable {
        stream,
        reset: reset.clone(),
    });
    let service = service_fn(move |req| {
        let (shared, reset) = (shared.clone(), reset.clone());
        async move {
            let req = match read_request(req).await {
                Ok(req) => req,
                Err(_) => return Err(ResetConnection),
            };
            let next = Next {
                layers: &shared.layers,
                shared: &shared,
            };
            match next.run(req).await {
                Reply::Answer(response) => Ok(to_hyper(response)),
                Reply::Reset => {
                    reset.store(true, Ordering::SeqCst);
                    Err(ResetConnection)
                }
            }
        }
    });
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
}

async fn read_request(req: hyper::Request<hyper::body::Incoming>) -> Result<Request, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.as_str().to_string(), value)
        })
        .collect();
    Ok(Request {
        method: parts.method.as_str().to_string(),
        target,
        headers,
        body,
    })
}

fn to_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        out = out.header(name.as_str(), value.as_str());
    }
    out.body(Full::new(response.body))
        .unwrap_or_else(|e| panic!("test front: a response hyper refuses: {e}"))
}

/// A client connection that closes with a TCP reset (SO_LINGER 0) instead
/// of a FIN when a layer asked for [`Reply::Reset`].
struct Resettable {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for Resettable {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for Resettable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Resettable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A layer's answer in Elasticsearch's error shape.
pub fn es_error(status: u16, kind: &str, reason: &str) -> Response {
    Response::json(
        status,
        &serde_json::json!({
            "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
            "status": status
        }),
    )
}
