//! A client certificate and its private key for mutual TLS
//! (`--source-client-cert FILE --source-client-key FILE`).
//!
//! The `elasticsearch` crate takes both as one PEM buffer
//! (`ClientCertificate::Pem`) and only parses it when the transport is
//! built, with an error that names neither file. [`ClientCert::load`]
//! therefore reads and checks each file first, and then tries the pair the
//! way the transport will (a throwaway rustls client), so that a bad file or
//! a key that does not belong to the certificate is one line naming the
//! file. Neither [`ClientCert`]'s `Debug` nor any error shows the key.

use std::fmt;
use std::path::Path;

use elasticsearch::auth::Credentials;
use elasticsearch::http::headers::HeaderValue;

/// Why a client certificate or key cannot be used. Messages name the files,
/// never their contents.
#[derive(Debug, thiserror::Error)]
pub enum ClientCertError {
    #[error("cannot read client certificate {path}: {reason}")]
    ReadCert { path: String, reason: String },
    #[error("cannot read client key {path}: {reason}")]
    ReadKey { path: String, reason: String },
    #[error("client certificate {path} holds no PEM certificate")]
    NoCert { path: String },
    #[error("client key {path} holds no usable PEM private key (PKCS#8, RSA or EC): {reason}")]
    BadKey { path: String, reason: String },
    #[error("client certificate {cert} and key {key} cannot be used together: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
}

/// A client certificate (chain) and its private key, PEM, ready for the
/// transport. `Debug` shows the paths only.
#[derive(Clone)]
pub struct ClientCert {
    pub cert_path: String,
    pub key_path: String,
    /// The certificate chain followed by the key: what
    /// `ClientCertificate::Pem` expects.
    pub pem: Vec<u8>,
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientCert({}, key {})", self.cert_path, self.key_path)
    }
}

impl ClientCert {
    /// Reads and checks the certificate and key files.
    pub fn load(cert: &Path, key: &Path) -> Result<ClientCert, ClientCertError> {
        let cert_path = cert.display().to_string();
        let key_path = key.display().to_string();
        let cert_pem = std::fs::read(cert).map_err(|e| ClientCertError::ReadCert {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
        let key_pem = std::fs::read(key).map_err(|e| ClientCertError::ReadKey {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        match reqwest::Certificate::from_pem_bundle(&cert_pem) {
            Ok(certs) if !certs.is_empty() => {}
            _ => return Err(ClientCertError::NoCert { path: cert_path }),
        }
        if !has_private_key_block(&key_pem) {
            return Err(ClientCertError::BadKey {
                path: key_path,
                reason: "no BEGIN … PRIVATE KEY block".into(),
            });
        }
        let mut pem = cert_pem;
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        pem.extend_from_slice(&key_pem);
        // The certificate file parsed on its own: a failure here is the key's.
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| ClientCertError::BadKey {
            path: key_path.clone(),
            reason: error_chain(&e),
        })?;
        // What the transport will do when it is built: rustls loads the key
        // and checks that it belongs to the certificate.
        reqwest::Client::builder()
            .use_rustls_tls()
            .identity(identity)
            .build()
            .map_err(|e| ClientCertError::Mismatch {
                cert: cert_path.clone(),
                key: key_path.clone(),
                reason: error_chain(&e),
            })?;
        Ok(ClientCert {
            cert_path,
            key_path,
            pem,
        })
    }
}

/// The `Authorization` value the transport would send for `credentials`
/// (used when a client certificate occupies the transport's credentials),
/// marked sensitive; `None` if it is not a valid header value.
pub(crate) fn authorization_header(credentials: &Credentials) -> Option<HeaderValue> {
    use base64::Engine;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let text = match credentials {
        Credentials::Basic(user, password) => {
            format!("Basic {}", b64(format!("{user}:{password}")))
        }
        Credentials::ApiKey(id, key) => format!("ApiKey {}", b64(format!("{id}:{key}"))),
        Credentials::EncodedApiKey(key) => format!("ApiKey {key}"),
        Credentials::Bearer(token) => format!("Bearer {token}"),
        Credentials::AuthorizationHeader(value) => value.clone(),
        Credentials::Certificate(_) => return None,
    };
    let mut value = HeaderValue::from_str(&text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Whether `pem` has a `-----BEGIN … PRIVATE KEY-----` line.
fn has_private_key_block(pem: &[u8]) -> bool {
    String::from_utf8_lossy(pem)
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with("PRIVATE KEY-----"))
}

/// An error and its sources on one line (reqwest's own message is only
/// "builder error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["client".to_string()]).unwrap();
        let cert_path = dir.path().join("client.pem");
        let key_path = dir.path().join("client.key");
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
        (dir, cert_path, key_path)
    }

    #[test]
    fn a_matching_pair_loads_and_debug_shows_no_key() {
        let (_dir, cert, key) = pair();
        let loaded = ClientCert::load(&cert, &key).unwrap();
        let debug = format!("{loaded:?}");
        assert!(debug.contains("client.pem"), "{debug}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
        assert!(String::from_utf8_lossy(&loaded.pem).contains("PRIVATE KEY"));
    }

    #[test]
    fn bad_files_are_named() {
        let (dir, cert, key) = pair();
        let missing = dir.path().join("nope.key");
        let e = ClientCert::load(&cert, &missing).unwrap_err();
        assert!(matches!(e, ClientCertError::ReadKey { .. }), "{e}");
        assert!(e.to_string().contains("nope.key"), "{e}");

        // Certificate and key swapped: each file is wrong for its flag.
        let e = ClientCert::load(&key, &cert).unwrap_err();
        assert!(matches!(e, ClientCertError::NoCert { .. }), "{e}");
        assert!(e.to_string().contains("client.key"), "{e}");

        let e = ClientCert::load(&cert, &cert).unwrap_err();
        assert!(matches!(e, ClientCertError::BadKey { .. }), "{e}");

        // A key of another certificate.
        let (_other_dir, _other_cert, other_key) = pair();
        let e = ClientCert::load(&cert, &other_key).unwrap_err();
        assert!(matches!(e, ClientCertError::Mismatch { .. }), "{e}");
        assert!(!e.to_string().contains("PRIVATE"), "{e}");
    }
}
