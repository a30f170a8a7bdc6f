//! An AWS SigV4 verifier for the signing tests: what Amazon OpenSearch
//! Service checks before it looks at a request, written here from the
//! specification independently of the `aws-sigv4` crate esark signs with,
//! so that the two must agree.
//!
//! [`SigV4Verifier::verify`] rebuilds the canonical request from what came
//! over the wire (method, raw request target, the headers named in
//! `SignedHeaders` as received, the body bytes), recomputes the signature
//! with the known test credentials and compares. It also checks the
//! credential scope, the date, `x-amz-content-sha256` against the body and
//! the session token. [`super::front::sigv4`] puts it in
//! front of a test cluster.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// The credentials and scope requests must be signed with.
pub struct SigV4Verifier {
    pub access_key: String,
    pub secret: String,
    pub session_token: Option<String>,
    pub region: String,
    pub service: String,
    /// Requests whose signature matched.
    verified: AtomicUsize,
    /// Of those, requests with a non-empty body.
    with_body: AtomicUsize,
}

impl SigV4Verifier {
    pub fn new(
        access_key: &str,
        secret: &str,
        session_token: Option<&str>,
        region: &str,
        service: &str,
    ) -> SigV4Verifier {
        SigV4Verifier {
            access_key: access_key.into(),
            secret: secret.into(),
            session_token: session_token.map(str::to_string),
            region: region.into(),
            service: service.into(),
            verified: AtomicUsize::new(0),
            with_body: AtomicUsize::new(0),
        }
    }

    pub fn verified(&self) -> usize {
        self.verified.load(Ordering::SeqCst)
    }

    pub fn verified_with_body(&self) -> usize {
        self.with_body.load(Ordering::SeqCst)
    }

    /// Checks one received request now; `Err` carries the reason a 403
    /// answer gives.
    pub fn verify(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), String> {
        self.verify_at(method, target, headers, body, SystemTime::now())
    }

    /// [`SigV4Verifier::verify`] with the clock given (for the published
    /// test vectors, signed in 2015).
    pub fn verify_at(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), String> {
        let header = |name: &str| -> Option<String> {
            let values: Vec<String> = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        let auth = header("authorization")
            .ok_or("Missing Authentication Token (no Authorization header)")?;
        let auth = auth
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or("Authorization is not AWS4-HMAC-SHA256")?;
        let field = |key: &str| -> Result<String, String> {
            auth.split(',')
                .map(str::trim)
                .find_map(|part| part.strip_prefix(key))
                .map(str::to_string)
                .ok_or_else(|| format!("Authorization has no {key}"))
        };
        let credential = field("Credential=")?;
        let signed_headers = field("SignedHeaders=")?;
        let signature = field("Signature=")?;

        let scope: Vec<&str> = credential.split('/').collect();
        let [key, day, region, service, terminator] = scope[..] else {
            return Err(format!("malformed credential {credential:?}"));
        };
        if key != self.access_key {
            return Err(
                "The security token included in the request is invalid (unknown access key)".into(),
            );
        }
        if region != self.region || service != self.service || terminator != "aws4_request" {
            return Err(format!(
                "Credential should be scoped to {}/{}, not {region}/{service}",
                self.region, self.service
            ));
        }
        let amz_date = header("x-amz-date").ok_or("no X-Amz-Date header")?;
        if !amz_date.starts_with(day) {
            return Err("X-Amz-Date is not the credential's date".into());
        }
        let sent_at = parse_amz_date(&amz_date).ok_or("malformed X-Amz-Date")?;
        let skew = now
            .duration_since(sent_at)
            .or_else(|_| sent_at.duration_since(now))
            .unwrap_or_default();
        if skew > Duration::from_secs(5 * 60) {
            return Err("Signature expired (X-Amz-Date more than 5 minutes off)".into());
        }

        let body_hash = hex::encode(Sha256::digest(body));
        match header("x-amz-content-sha256") {
            Some(h) if h == body_hash => {}
            Some(_) => return Err("X-Amz-Content-Sha256 is not the body's sha256".into()),
            None => return Err("no X-Amz-Content-Sha256 header".into()),
        }
        if header("x-amz-security-token") != self.session_token {
            return Err("The security token included in the request is invalid".into());
        }

        let names: Vec<&str> = signed_headers.split(';').collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        if names != sorted || names.iter().any(|n| *n != n.to_ascii_lowercase()) {
            return Err("SignedHeaders are not sorted lowercase names".into());
        }
        let mut must_sign = vec!["host", "x-amz-content-sha256", "x-amz-date"];
        if self.session_token.is_some() {
            must_sign.push("x-amz-security-token");
        }
        if let Some(missing) = must_sign.iter().find(|n| !names.contains(n)) {
            return Err(format!("{missing} is not signed"));
        }
        let mut canonical_headers = String::new();
        for name in &names {
            let value = header(name).ok_or_else(|| format!("signed header {name} was not sent"))?;
            canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
        }

        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let canonical = format!(
            "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{body_hash}",
            canonical_uri(path),
            canonical_query(query)
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{day}/{region}/{service}/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", self.secret).as_bytes(), day.as_bytes());
        for part in [region, service, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        if expected != signature {
            return Err(
                "The request signature we calculated does not match the signature you provided. \
                 Check your AWS Secret Access Key and signing method."
                    .into(),
            );
        }
        self.verified.fetch_add(1, Ordering::SeqCst);
        if !body.is_empty() {
            self.with_body.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// RFC 3986 unreserved characters stay, every other byte is `%XX`
/// (uppercase): SigV4's URI encoding.
fn uri_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The path as received, each segment encoded once more: for services
/// other than S3, SigV4 encodes the (already encoded) path a second time.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Parameters decoded, encoded the SigV4 way and sorted by name, then
/// value.
fn canonical_query(query: &str) -> String {
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (uri_encode(&decode(k)), uri_encode(&decode(v)))
        })
        .collect();
    params.sort();
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

/// `20150830T123600Z` as a time.
pub fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let t = chrono::NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ").ok()?;
    let secs = u64::try_from(t.and_utc().timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}
