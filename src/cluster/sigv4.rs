//! AWS Signature Version 4 request signing, for Amazon OpenSearch Service
//! domains (service `es`) and OpenSearch Serverless collections (`aoss`).
//!
//! [`Cluster::request`](super::Cluster::request) asks a [`SigV4Signer`] for
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
//! [`super::aws_credentials`].
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

use super::aws_credentials::{profile_name, resolve_region, AwsEnv, AwsError, CredentialCache};

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

impl FromStr for AwsService {
    type Err = String;

    fn from_str(s: &str) -> Result<AwsService, String> {
        match s {
            "es" => Ok(AwsService::Es),
            "aoss" => Ok(AwsService::Aoss),
            _ => Err(format!(
                "unknown AWS service {s:?}: es (OpenSearch Service domains) or aoss (OpenSearch Serverless)"
            )),
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

    fn authorization(signed_headers: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders={signed_headers}, Signature={signature}"
        )
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

    #[test]
    fn suite_get_vanilla() {
        let h = sign_suite(
            "GET",
            "https://example.amazonaws.com/",
            &[],
            b"",
            None,
            PayloadHeader::Omit,
        );
        assert_eq!(header(&h, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            header(&h, "authorization").unwrap(),
            authorization(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
        assert_eq!(header(&h, "x-amz-security-token"), None);
        assert_eq!(header(&h, "host"), None, "hyper sends the host");
    }

    #[test]
    fn suite_get_vanilla_query_order_key_case() {
        // Parameters sent as Param2, Param1: signed sorted.
        let h = sign_suite(
            "GET",
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            &[],
            b"",
            None,
            PayloadHeader::Omit,
        );
        assert_eq!(
            header(&h, "authorization").unwrap(),
            authorization(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    #[test]
    fn suite_get_vanilla_utf8_query() {
        // `/?ሴ=bar`: the URL percent-encodes the key as it goes on the wire.
        let h = sign_suite(
            "GET",
            "https://example.amazonaws.com/?ሴ=bar",
            &[],
            b"",
            None,
            PayloadHeader::Omit,
        );
        assert_eq!(
            header(&h, "authorization").unwrap(),
            authorization(
                "host;x-amz-date",
                "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"
            )
        );
    }

    #[test]
    fn suite_post_vanilla() {
        let h = sign_suite(
            "POST",
            "https://example.amazonaws.com/",
            &[],
            b"",
            None,
            PayloadHeader::Omit,
        );
        assert_eq!(
            header(&h, "authorization").unwrap(),
            authorization(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn suite_post_x_www_form_urlencoded_signs_the_body_hash() {
        // The case with `sign_body: true`: what esark does for every request.
        let body = b"Param1=value1";
        let h = sign_suite(
            "POST",
            "https://example.amazonaws.com/",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("content-length", "13"),
            ],
            body,
            None,
            PayloadHeader::Send,
        );
        assert_eq!(
            header(&h, "x-amz-content-sha256"),
            Some("9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e")
        );
        assert_eq!(
            header(&h, "authorization").unwrap(),
            authorization(
                "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
                "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
            )
        );
    }

    #[test]
    fn suite_post_sts_header_before() {
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        let h = sign_suite(
            "POST",
            "https://example.amazonaws.com/",
            &[],
            b"",
            Some(token),
            PayloadHeader::Omit,
        );
        assert_eq!(header(&h, "x-amz-security-token"), Some(token));
        assert_eq!(
            header(&h, "authorization").unwrap(),
            authorization(
                "host;x-amz-date;x-amz-security-token",
                "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
            )
        );
    }

    #[test]
    fn suite_get_vanilla_with_session_token() {
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let h = sign_suite(
            "GET",
            "https://example.amazonaws.com/",
            &[],
            b"",
            Some(token),
            PayloadHeader::Omit,
        );
        assert_eq!(
            header(&h, "authorization").unwrap(),
            authorization(
                "host;x-amz-date;x-amz-security-token",
                "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
            )
        );
    }

    #[test]
    fn suite_double_url_encode() {
        // A path segment already percent-encoded on the wire (`%3A`) is
        // encoded again in the canonical request (`%253A`): the case of
        // esark's `%25kuzzle`.
        let url = Url::parse(
            "https://lambda.us-east-2.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A892717189312%3Afunction%3Amy-rusty-fun/invocations",
        )
        .unwrap();
        let request = Signable {
            method: "POST",
            url: &url,
            headers: &[],
            body: b"",
        };
        // 20210511T154045Z.
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_620_747_645);
        let h = signing_headers(
            &request,
            &credentials(None),
            "us-east-2",
            "lambda",
            PayloadHeader::Omit,
            time,
        )
        .unwrap();
        assert_eq!(
            header(&h, "authorization").unwrap(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20210511/us-east-2/lambda/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=4b93abbcc68be32bd64c18e2c71150660ab4c29bbd6c32a383a7517a88fc1804"
        );
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
