//! AWS Signature Version 4 request signing, for Amazon OpenSearch Service
//! domains (service `es`) and OpenSearch Serverless collections (`aoss`).
//!
//! The cluster client (`Cluster::request`) asks a [`SigV4Signer`] for
//! the headers of every request just before handing it to the transport:
//! `Authorization`, `X-Amz-Date`, `X-Amz-Content-Sha256` (the body's
//! sha256; Serverless requires it, managed domains accept it) and
//! `X-Amz-Security-Token` with temporary credentials. A retried request is
//! signed again, with a fresh date.
//!
//! What is signed is what goes on the wire: [`request_url`] builds the URL
//! exactly as the `elasticsearch` transport does, the host is the URL's
//! (with a non-default port, as hyper sends it), and only `host` and the
//! `x-amz-*` headers are signed: the transport adds `content-type`,
//! `accept` and `user-agent` itself, and a proxy on the way may change them.
//!
//! The signature itself is computed by the `aws-sigv4` crate; this module
//! is the glue ([`signing_headers`], tested against the published AWS
//! SigV4 test suite) and credentials come from
//! [`super::credentials`] through [`super::cache`].
//!
//! Docs: <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>,
//! <https://docs.aws.amazon.com/opensearch-service/latest/developerguide/request-signing.html>.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody,
    SignableRequest, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use elasticsearch::http::headers::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::cache::CredentialCache;
use super::credentials::{profile_name, resolve_region};
use super::{AwsEnv, AwsError};

/// The AWS service a signature is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsService {
    /// Amazon OpenSearch Service (and Amazon Elasticsearch Service) domains.
    Es,
    /// Amazon OpenSearch Serverless collections.
    Aoss,
}

impl AwsService {
    /// The name in the credential scope.
    pub fn signing_name(self) -> &'static str {
        match self {
            AwsService::Es => "es",
            AwsService::Aoss => "aoss",
        }
    }
}

impl fmt::Display for AwsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.signing_name())
    }
}

/// A service name that is neither `es` nor `aoss`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown AWS service {0:?}: es (OpenSearch Service domains) or aoss (OpenSearch Serverless)"
)]
pub struct UnknownService(pub String);

impl FromStr for AwsService {
    type Err = UnknownService;

    fn from_str(s: &str) -> Result<AwsService, UnknownService> {
        match s {
            "es" => Ok(AwsService::Es),
            "aoss" => Ok(AwsService::Aoss),
            _ => Err(UnknownService(s.to_string())),
        }
    }
}

/// The URL a request goes to, built as the `elasticsearch` crate's
/// `Transport::request_builder` builds it: the base URL (whose path ends
/// with `/`) joined with `path` without its leading slashes. `Url::join`
/// normalizes (`.` segments, characters a URL may not hold are
/// percent-encoded), so signing this URL signs what is sent.
pub fn request_url(base: &Url, path: &str) -> Result<Url, url::ParseError> {
    base.join(path.trim_start_matches('/'))
}

/// The `Host` header hyper sends for `url`: the host, and the port when it
/// is not the scheme's default (`Url` already drops a default port).
pub fn host_header(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// One request as it will be sent.
pub struct Signable<'a> {
    pub method: &'a str,
    pub url: &'a Url,
    /// Headers to sign besides `host` and the `x-amz-*` ones (none for
    /// esark's requests; the test vectors sign `content-type`).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Whether the body's sha256 is sent (and signed) as `x-amz-content-sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadHeader {
    Send,
    Omit,
}

/// The headers that sign `request` at `time`, as (name, value) pairs to add
/// to the request (`host` is not among them: hyper sends it).
pub fn signing_headers(
    request: &Signable<'_>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    payload: PayloadHeader,
    time: SystemTime,
) -> Result<Vec<(&'static str, String)>, AwsError> {
    let signing = |reason: String| AwsError::Signing { reason };
    let host = host_header(request.url).ok_or_else(|| signing("the URL has no host".into()))?;
    let mut headers: Vec<(&str, &str)> = vec![("host", &host)];
    headers.extend(request.headers.iter().copied());

    let mut settings = SigningSettings::default();
    // For every service but S3, SigV4 URI-encodes each path segment twice:
    // the path as sent (`/%25kuzzle`) is encoded once more in the canonical
    // request (`/%2525kuzzle`). This is what the AWS SDKs and botocore (so
    // opensearch-py's signer) do for `es` and `aoss`.
    settings.percent_encoding_mode = PercentEncodingMode::Double;
    // `.` and `..` segments removed, as for every service but S3 (the URL
    // has none left after `Url::join` anyway).
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
    settings.payload_checksum_kind = match payload {
        PayloadHeader::Send => PayloadChecksumKind::XAmzSha256,
        PayloadHeader::Omit => PayloadChecksumKind::NoHeader,
    };
    // The session token is sent as `x-amz-security-token` and signed.
    settings.session_token_mode = SessionTokenMode::Include;

    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| signing(e.to_string()))?
        .into();
    // The query string is canonicalized by the crate: parameters decoded,
    // encoded again and sorted. (It reads `+` as a space, as form encoding
    // does; esark's queries carry none.)
    let signable = SignableRequest::new(
        request.method,
        request.url.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|e| signing(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| signing(e.to_string()))?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name(), h.value().to_string()))
        .collect())
}

/// Signs a cluster's requests: region, service and the credentials, kept
/// fresh by a [`CredentialCache`]. `Debug` prints no secret.
#[derive(Debug)]
pub struct SigV4Signer {
    region: String,
    service: AwsService,
    credentials: CredentialCache,
}

impl SigV4Signer {
    /// Resolves the region (`region`, else the chain's) and reads the
    /// credentials once, so that a missing one is an error before the
    /// first request.
    pub async fn load(
        region: Option<&str>,
        service: AwsService,
        env: AwsEnv,
    ) -> Result<SigV4Signer, AwsError> {
        let region = match region.map(str::trim).filter(|r| !r.is_empty()) {
            Some(region) => region.to_string(),
            None => resolve_region(&env)
                .await?
                .ok_or_else(|| AwsError::NoRegion {
                    profile: profile_name(&env),
                })?,
        };
        let credentials = CredentialCache::load(env, &region).await?;
        Ok(SigV4Signer {
            region,
            service,
            credentials,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The headers to send with `method url` and `body`, signed now.
    pub async fn headers(
        &self,
        method: &str,
        url: &Url,
        body: &[u8],
    ) -> Result<HeaderMap, AwsError> {
        let credentials = self.credentials.get().await?;
        let request = Signable {
            method,
            url,
            headers: &[],
            body,
        };
        let pairs = signing_headers(
            &request,
            &credentials,
            &self.region,
            self.service.signing_name(),
            PayloadHeader::Send,
            SystemTime::now(),
        )?;
        let mut map = HeaderMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            let mut value = HeaderValue::from_str(&value).map_err(|_| AwsError::Signing {
                reason: format!("header {name} is not a valid header value"),
            })?;
            if name.eq_ignore_ascii_case("authorization")
                || name.eq_ignore_ascii_case("x-amz-security-token")
            {
                value.set_sensitive(true);
            }
            map.insert(HeaderName::from_static(name), value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    // Cases of the AWS SigV4 test suite (aws-sig-v4-test-suite, as shipped
    // in the aws-sigv4 crate's `aws-signing-test-suite/v4/<name>/`):
    // credentials, scope and time below, request from `request.txt`,
    // expected values from `header-signed-request.txt`.
    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// 20150830T123600Z.
    fn suite_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160)
    }

    fn credentials(token: Option<&str>) -> Credentials {
        Credentials::new(AKID, SECRET, token.map(str::to_string), None, "test")
    }

    fn sign_suite(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        token: Option<&str>,
        payload: PayloadHeader,
    ) -> Vec<(&'static str, String)> {
        let url = Url::parse(url).unwrap();
        let request = Signable {
            method,
            url: &url,
            headers,
            body,
        };
        signing_headers(
            &request,
            &credentials(token),
            "us-east-1",
            "service",
            payload,
            suite_time(),
        )
        .unwrap()
    }

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A case of the suite, as `sigv4_suite.json` holds it.
    #[derive(serde::Deserialize)]
    struct SuiteCase {
        name: String,
        method: String,
        url: String,
        #[serde(default)]
        headers: Vec<(String, String)>,
        #[serde(default)]
        body: String,
        token: Option<String>,
        /// `send` for an `x-amz-content-sha256` header.
        payload: Option<String>,
        region: Option<String>,
        service: Option<String>,
        /// Unix seconds; the suite's 20150830T123600Z by default.
        time: Option<u64>,
        content_sha256: Option<String>,
        signed_headers: String,
        signature: String,
    }

    /// Every case of the suite kept as data: the headers esark sends
    /// carry the suite's signature.
    #[test]
    fn the_aws_sigv4_test_suite() {
        let cases: Vec<SuiteCase> = serde_json::from_str(include_str!("sigv4_suite.json")).unwrap();
        assert!(cases.len() >= 8);
        for case in cases {
            let url = Url::parse(&case.url).unwrap();
            let headers: Vec<(&str, &str)> = case
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let request = Signable {
                method: &case.method,
                url: &url,
                headers: &headers,
                body: case.body.as_bytes(),
            };
            let region = case.region.as_deref().unwrap_or("us-east-1");
            let service = case.service.as_deref().unwrap_or("service");
            let time = case.time.map_or_else(suite_time, |t| {
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t)
            });
            let payload = match case.payload.as_deref() {
                Some("send") => PayloadHeader::Send,
                _ => PayloadHeader::Omit,
            };
            let h = signing_headers(
                &request,
                &credentials(case.token.as_deref()),
                region,
                service,
                payload,
                time,
            )
            .unwrap();
            let date = &header(&h, "x-amz-date").unwrap()[..8];
            assert_eq!(
                header(&h, "authorization").unwrap(),
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{date}/{region}/{service}/aws4_request, \
                     SignedHeaders={}, Signature={}",
                    case.signed_headers, case.signature
                ),
                "{}",
                case.name
            );
            assert_eq!(
                header(&h, "x-amz-security-token"),
                case.token.as_deref(),
                "{}",
                case.name
            );
            assert_eq!(
                header(&h, "x-amz-content-sha256"),
                case.content_sha256.as_deref(),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn the_date_is_the_signing_time_and_the_host_is_left_to_hyper() {
        let h = sign_suite(
            "GET",
            "https://example.amazonaws.com/",
            &[],
            b"",
            None,
            PayloadHeader::Omit,
        );
        assert_eq!(header(&h, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(header(&h, "host"), None, "hyper sends the host");
    }

    /// The signature of a canonical request written out by hand, with the
    /// crate's key derivation (checked against the suite below).
    fn signature_of(canonical: &str, region: &str, service: &str) -> String {
        let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/{region}/{service}/aws4_request\n{hash}"
        );
        let key = v4::generate_signing_key(SECRET, suite_time(), region, service);
        v4::calculate_signature(key, string_to_sign.as_bytes())
    }

    #[test]
    fn hand_written_canonical_request_matches_the_suite() {
        // get-vanilla's header-canonical-request.txt.
        let canonical = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
                         host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            signature_of(canonical, "us-east-1", "service"),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn esark_request_behind_a_base_path_with_port_percent_name_and_query() {
        // What Cluster::request signs for `POST %25kuzzle/_search?size=100&scroll=1m`
        // on a cluster at https://search-demo…:9443/base (behind a proxy).
        let base = Url::parse("https://search-demo.eu-west-1.es.amazonaws.com:9443/base/").unwrap();
        let url = request_url(&base, "/%25kuzzle/_search?size=100&scroll=1m").unwrap();
        assert_eq!(
            url.as_str(),
            "https://search-demo.eu-west-1.es.amazonaws.com:9443/base/%25kuzzle/_search?size=100&scroll=1m"
        );
        let body = br#"{"query":{"match_all":{}}}"#;
        let body_hash = hex::encode(Sha256::digest(body));
        let request = Signable {
            method: "POST",
            url: &url,
            headers: &[],
            body,
        };
        let h = signing_headers(
            &request,
            &credentials(None),
            "eu-west-1",
            "es",
            PayloadHeader::Send,
            suite_time(),
        )
        .unwrap();
        // Path encoded twice, query sorted, port in the host.
        let canonical = format!(
            "POST\n/base/%2525kuzzle/_search\nscroll=1m&size=100\n\
             host:search-demo.eu-west-1.es.amazonaws.com:9443\n\
             x-amz-content-sha256:{body_hash}\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-content-sha256;x-amz-date\n{body_hash}"
        );
        assert_eq!(header(&h, "x-amz-content-sha256"), Some(body_hash.as_str()));
        assert_eq!(
            header(&h, "authorization").unwrap(),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/es/aws4_request, \
                 SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={}",
                signature_of(&canonical, "eu-west-1", "es")
            )
        );
    }

    #[test]
    fn default_port_is_not_in_the_host() {
        for (url, host) in [
            ("https://h.example:443/", "h.example"),
            ("http://h.example:80/", "h.example"),
            ("http://h.example:9200/", "h.example:9200"),
            ("http://[::1]:9200/", "[::1]:9200"),
            ("https://H.Example/", "h.example"),
        ] {
            assert_eq!(
                host_header(&Url::parse(url).unwrap()).as_deref(),
                Some(host),
                "{url}"
            );
        }
    }

    #[test]
    fn empty_body_hash_and_services() {
        let h = sign_suite(
            "GET",
            "http://127.0.0.1:9200/",
            &[],
            b"",
            None,
            PayloadHeader::Send,
        );
        assert_eq!(
            header(&h, "x-amz-content-sha256"),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!("es".parse::<AwsService>(), Ok(AwsService::Es));
        assert_eq!("aoss".parse::<AwsService>(), Ok(AwsService::Aoss));
        assert!("s3".parse::<AwsService>().is_err());
    }

    #[tokio::test]
    async fn signer_headers_are_sensitive_and_debug_has_no_secret() {
        let env = AwsEnv::from_pairs([
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", "tok3n-value"),
            ("AWS_CONFIG_FILE", "/nonexistent/config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ]);
        let signer = SigV4Signer::load(Some("eu-west-1"), AwsService::Aoss, env)
            .await
            .unwrap();
        let url = Url::parse("https://abc.eu-west-1.aoss.amazonaws.com/_bulk").unwrap();
        let headers = signer.headers("POST", &url, b"{}\n").await.unwrap();
        let auth = headers.get("authorization").unwrap();
        assert!(auth.is_sensitive());
        assert!(auth
            .to_str()
            .unwrap()
            .contains("/eu-west-1/aoss/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
        assert!(headers.get("x-amz-security-token").unwrap().is_sensitive());
        let debug = format!("{signer:?}");
        assert!(
            !debug.contains(SECRET) && !debug.contains("tok3n"),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn missing_region_is_named() {
        let env = AwsEnv::from_pairs([
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_CONFIG_FILE", "/nonexistent/config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ]);
        let e = SigV4Signer::load(None, AwsService::Es, env)
            .await
            .unwrap_err();
        assert!(matches!(e, AwsError::NoRegion { .. }), "{e}");
        assert!(e.to_string().contains("AWS_REGION"), "{e}");
    }
}
