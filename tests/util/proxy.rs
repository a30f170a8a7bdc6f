//! An HTTP/1.1 proxy that demands Basic authentication, for the credential
//! tests: osmem has no security, so [`AuthProxy`] plays the part of an
//! Elasticsearch cluster with security enabled. Started with
//! [`AuthProxy::start_sigv4`], it plays Amazon OpenSearch Service instead:
//! a request whose AWS SigV4 signature [`SigV4Verifier`] does not accept
//! gets `403` and `{"message": reason}`, as AWS answers.
//!
//! Started with [`AuthProxy::start_bearer`], it accepts
//! `Authorization: Bearer <token>` for one token instead.
//!
//! A request without `Authorization: Basic base64(user:password)` for the
//! configured user (or the configured bearer token), or with a wrong one,
//! gets what Elasticsearch answers:
//! `401`, `WWW-Authenticate: Basic realm="security"` and a
//! `security_exception` body. Any other request is forwarded to the upstream
//! cluster (with the upstream's own credentials, if it has any) and its
//! response relayed. Connections are kept alive; the proxy stops on drop.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use reqwest::blocking::Client;

use super::data_streams::DataStreams;
use super::server::TestCluster;
use super::sigv4::SigV4Verifier;

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
];

/// Counters a test can check to see which path its requests took.
#[derive(Default)]
struct Stats {
    /// Requests answered with 401.
    rejected: AtomicUsize,
    /// Requests forwarded upstream (whatever upstream answered).
    forwarded: AtomicUsize,
    /// Requests with the right credentials, forwarded or not.
    authorized: AtomicUsize,
    /// Requests with an `Authorization: Bearer …` header, right or wrong.
    bearer: AtomicUsize,
}

struct Shared {
    upstream: String,
    upstream_credentials: Option<(String, String)>,
    /// `Basic base64(user:password)` or `Bearer <token>`: the only accepted
    /// Authorization value.
    expected: String,
    /// When set, requests are checked for an AWS SigV4 signature instead.
    sigv4: Option<Arc<SigV4Verifier>>,
    /// When set, no credentials are asked for and data stream requests are
    /// answered by the emulation ([`AuthProxy::start_data_streams`]).
    data_streams: Option<Arc<DataStreams>>,
    client: Client,
    stats: Stats,
    /// Right credentials are refused once `authorized` reaches this
    /// (see [`AuthProxy::revoke_after`]).
    limit: AtomicUsize,
    /// Set on drop: the accept loop and idle connections end.
    stop: AtomicBool,
}

/// A running proxy in front of a [`TestCluster`], stopped on drop.
pub struct AuthProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl AuthProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `cluster` that accepts
    /// only `user` / `password`.
    pub fn start(cluster: &TestCluster, user: &str, password: &str) -> AuthProxy {
        let expected = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
        AuthProxy::spawn(cluster, expected, None, None)
    }

    /// Starts a proxy on `127.0.0.1:0` in front of `cluster` that accepts
    /// only `Authorization: Bearer <token>`.
    pub fn start_bearer(cluster: &TestCluster, token: &str) -> AuthProxy {
        AuthProxy::spawn(cluster, format!("Bearer {token}"), None, None)
    }

    /// Starts a proxy on `127.0.0.1:0` in front of `cluster` that accepts
    /// only requests `verifier` finds signed with its credentials.
    pub fn start_sigv4(cluster: &TestCluster, verifier: Arc<SigV4Verifier>) -> AuthProxy {
        AuthProxy::spawn(cluster, String::new(), Some(verifier), None)
    }

    /// Starts a proxy on `127.0.0.1:0` in front of `cluster` that asks for
    /// no credentials and emulates Elasticsearch's data streams
    /// ([`DataStreams`]), which osmem lacks.
    pub fn start_data_streams(cluster: &TestCluster) -> AuthProxy {
        AuthProxy::spawn(
            cluster,
            String::new(),
            None,
            Some(Arc::new(DataStreams::default())),
        )
    }

    /// The data stream emulation, if this proxy has one.
    pub fn data_streams(&self) -> &DataStreams {
        self.shared
            .data_streams
            .as_deref()
            .expect("a proxy started with start_data_streams")
    }

    fn spawn(
        cluster: &TestCluster,
        expected: String,
        sigv4: Option<Arc<SigV4Verifier>>,
        data_streams: Option<Arc<DataStreams>>,
    ) -> AuthProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = Client::builder()
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            upstream: cluster.base_url().to_string(),
            upstream_credentials: cluster
                .credentials()
                .map(|(u, p)| (u.to_string(), p.to_string())),
            expected,
            sigv4,
            data_streams,
            client,
            stats: Stats::default(),
            limit: AtomicUsize::new(usize::MAX),
            stop: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        let accept_thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let conn_shared = accept_shared.clone();
                std::thread::spawn(move || {
                    let _ = serve_connection(stream, &conn_shared);
                });
            }
        });
        AuthProxy {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://user:password@127.0.0.1:<port>` (userinfo percent-encoded).
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        let mut url = url::Url::parse(&self.url()).unwrap();
        url.set_username(user).unwrap();
        url.set_password(Some(password)).unwrap();
        url.as_str().trim_end_matches('/').to_string()
    }

    /// How many requests got a 401.
    pub fn rejected(&self) -> usize {
        self.shared.stats.rejected.load(Ordering::SeqCst)
    }

    /// How many requests came with the right credentials.
    pub fn authorized(&self) -> usize {
        self.shared.stats.authorized.load(Ordering::SeqCst)
    }

    /// How many requests carried `Authorization: Bearer …` (right or wrong).
    pub fn bearer_requests(&self) -> usize {
        self.shared.stats.bearer.load(Ordering::SeqCst)
    }

    /// How many requests were forwarded upstream.
    pub fn forwarded(&self) -> usize {
        self.shared.stats.forwarded.load(Ordering::SeqCst)
    }

    /// Lets `n` more requests with the right credentials through, then
    /// answers 401 to everything: credentials revoked in the middle of a run.
    pub fn revoke_after(&self, n: usize) {
        let seen = self.shared.stats.authorized.load(Ordering::SeqCst);
        self.shared.limit.store(seen + n, Ordering::SeqCst);
    }
}

impl Drop for AuthProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

fn serve_connection(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        // Wait for the next request, but give up when the proxy stops.
        if reader.buffer().is_empty() {
            reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_millis(200)))?;
            loop {
                if shared.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let mut probe = [0u8; 1];
                match reader.get_ref().peek(&mut probe) {
                    Ok(0) => return Ok(()),
                    Ok(_) => break,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(60)))?;
        let Some(req) = read_request(&mut reader)? else {
            return Ok(());
        };
        let close = req.close;
        let response = handle(req, shared);
        writer.write_all(&response)?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut close = version == Some("HTTP/1.0");
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if let Some(c) = header("connection") {
        close = c.eq_ignore_ascii_case("close");
    }
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut t = String::new();
                    if reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "bad content-length"))?;
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
        close,
    }))
}

/// Answers one request: a 401 (403 for SigV4), or the relayed upstream
/// response.
fn handle(req: Request, shared: &Shared) -> Vec<u8> {
    if let Some(streams) = &shared.data_streams {
        let answer = streams.intercept(
            &req.method,
            &req.target,
            &req.body,
            &shared.upstream,
            &shared.client,
        );
        return match answer {
            Some((status, body)) => response(
                status,
                if status < 300 { "OK" } else { "Error" },
                &[("content-type".into(), "application/json".into())],
                body.to_string().as_bytes(),
                req.method == "HEAD",
                None,
            ),
            None => relay(&req, shared),
        };
    }
    if let Some(verifier) = &shared.sigv4 {
        if let Err(reason) = verifier.verify(&req.method, &req.target, &req.headers, &req.body) {
            shared.stats.rejected.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::json!({ "message": reason }).to_string();
            return response(
                403,
                "Forbidden",
                &[("content-type".into(), "application/json".into())],
                body.as_bytes(),
                req.method == "HEAD",
                None,
            );
        }
        shared.stats.authorized.fetch_add(1, Ordering::SeqCst);
        return relay(&req, shared);
    }
    let auth = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str());
    let path = req.target.split('?').next().unwrap_or("/").to_string();
    if auth.is_some_and(|a| a.starts_with("Bearer ")) {
        shared.stats.bearer.fetch_add(1, Ordering::SeqCst);
    }
    let revoked = auth == Some(shared.expected.as_str())
        && shared.stats.authorized.fetch_add(1, Ordering::SeqCst)
            >= shared.limit.load(Ordering::SeqCst);
    if auth != Some(shared.expected.as_str()) || revoked {
        shared.stats.rejected.fetch_add(1, Ordering::SeqCst);
        let reason = match (auth, auth.and_then(basic_user)) {
            (_, Some(user)) => {
                format!("unable to authenticate user [{user}] for REST request [{path}]")
            }
            (Some(a), None) if a.starts_with("Bearer ") => {
                format!(
                    "unable to authenticate with provided credentials for REST request [{path}]"
                )
            }
            _ => format!("missing authentication credentials for REST request [{path}]"),
        };
        let body = serde_json::json!({
            "error": {
                "root_cause": [{"type": "security_exception", "reason": reason,
                    "header": {"WWW-Authenticate": "Basic realm=\"security\""}}],
                "type": "security_exception",
                "reason": reason,
                "header": {"WWW-Authenticate": "Basic realm=\"security\""}
            },
            "status": 401
        })
        .to_string();
        return response(
            401,
            "Unauthorized",
            &[
                ("WWW-Authenticate".into(), "Basic realm=\"security\"".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body.as_bytes(),
            req.method == "HEAD",
            None,
        );
    }
    relay(&req, shared)
}

/// Forwards an accepted request and relays the answer (502 if upstream
/// cannot be reached).
fn relay(req: &Request, shared: &Shared) -> Vec<u8> {
    shared.stats.forwarded.fetch_add(1, Ordering::SeqCst);
    match forward(req, shared) {
        Ok((status, reason, headers, body, head_len)) => response(
            status,
            &reason,
            &headers,
            &body,
            req.method == "HEAD",
            head_len,
        ),
        Err(e) => {
            let body = serde_json::json!({"error": format!("proxy: {e}"), "status": 502});
            response(
                502,
                "Bad Gateway",
                &[("content-type".into(), "application/json".into())],
                body.to_string().as_bytes(),
                req.method == "HEAD",
                None,
            )
        }
    }
}

type Relayed = (u16, String, Vec<(String, String)>, Vec<u8>, Option<String>);

fn forward(req: &Request, shared: &Shared) -> reqwest::Result<Relayed> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut out = shared
        .client
        .request(method, format!("{}{}", shared.upstream, req.target));
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) || lower == "authorization" {
            continue;
        }
        out = out.header(name.as_str(), value.as_str());
    }
    if let Some((user, password)) = &shared.upstream_credentials {
        out = out.basic_auth(user, Some(password));
    }
    if !req.body.is_empty() {
        out = out.body(req.body.clone());
    }
    let resp = out.send()?;
    let status = resp.status();
    let mut headers = Vec::new();
    let mut head_len = None;
    for (name, value) in resp.headers() {
        let lower = name.as_str();
        if lower == "content-length" {
            head_len = value.to_str().ok().map(str::to_string);
        }
        if HOP_BY_HOP.contains(&lower) {
            continue;
        }
        headers.push((
            name.as_str().to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    }
    let body = resp.bytes()?.to_vec();
    Ok((
        status.as_u16(),
        status.canonical_reason().unwrap_or("").to_string(),
        headers,
        body,
        head_len,
    ))
}

/// Serializes a response with an explicit `content-length` (for HEAD, the
/// upstream's length and no body).
fn response(
    status: u16,
    reason: &str,
    headers: &[(String, String)],
    body: &[u8],
    head: bool,
    head_len: Option<String>,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let len = if head {
        head_len.unwrap_or_else(|| body.len().to_string())
    } else {
        body.len().to_string()
    };
    out.extend_from_slice(format!("content-length: {len}\r\n\r\n").as_bytes());
    if !head {
        out.extend_from_slice(body);
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The user of a `Basic ...` Authorization value, if it decodes.
fn basic_user(auth: &str) -> Option<String> {
    let encoded = auth.strip_prefix("Basic ")?.trim();
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut bytes = Vec::new();
    for c in encoded.bytes().take_while(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c)? as u32;
        bits = bits << 6 | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    let text = String::from_utf8(bytes).ok()?;
    Some(
        text.split_once(':')
            .map(|(u, _)| u)
            .unwrap_or(&text)
            .to_string(),
    )
}
