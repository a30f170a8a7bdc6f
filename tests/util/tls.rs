//! A TLS front for a test server: terminates TLS with a freshly generated
//! self-signed certificate for the names given, and pipes the plain bytes
//! to the upstream (an osmem). Stops on Drop.
//!
//! [`TlsFront::start_mutual`] also demands a client certificate signed by a
//! [`TestCa`] (rustls' `WebPkiClientVerifier`), as a cluster with
//! `xpack.security.http.ssl.client_authentication: required` does; the
//! handshake fails without one, or with one of another CA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

pub struct TlsFront {
    pub url: String,
    /// The certificate, PEM, in a temporary folder (for `--ca-cert`).
    pub cert_pem: PathBuf,
    _dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
    /// TCP connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl TlsFront {
    /// The TCP connections the front has accepted: one per attempt of a
    /// client that cannot keep its connection.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `names`: the subject alternative names of the certificate (DNS names
    /// or IP addresses as text).
    pub fn start(upstream: &str, names: &[&str]) -> TlsFront {
        TlsFront::spawn(upstream, names, None, false)
    }

    /// Like [`TlsFront::start`], and demands a client certificate signed
    /// by `client_ca`.
    pub fn start_mutual(upstream: &str, names: &[&str], client_ca: &TestCa) -> TlsFront {
        TlsFront::spawn(upstream, names, Some(client_ca), false)
    }

    /// A front that completes each handshake and closes the connection
    /// at once, without a TLS alert and before any request is read: what a
    /// client sees of a server that refused its certificate when the
    /// server's alert is lost to the race of TLS 1.3 (the client has
    /// finished its side of the handshake before the server judged the
    /// certificate).
    pub fn start_closing(names: &[&str]) -> TlsFront {
        TlsFront::spawn("127.0.0.1:9", names, None, true)
    }

    fn spawn(
        upstream: &str,
        names: &[&str],
        client_ca: Option<&TestCa>,
        close_after_handshake: bool,
    ) -> TlsFront {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream host:port");
        let cert = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("certificate");
        let dir = tempfile::tempdir().unwrap();
        let cert_pem = dir.path().join("ca.pem");
        std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
        let chain = vec![CertificateDer::from(cert.cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots
                    .add(CertificateDer::from(ca.cert.der().to_vec()))
                    .unwrap();
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key).unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake.
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    if close_after_handshake {
                        let _ = tokio::io::AsyncWriteExt::flush(&mut tls).await;
                        drop(tls);
                        return;
                    }
                    let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront {
            url: format!("https://127.0.0.1:{port}"),
            cert_pem,
            _dir: dir,
            runtime: Some(runtime),
            accepted,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A certificate authority for client certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    /// Issues a client certificate for `name` and writes it and its key
    /// (PKCS#8) as `<name>.pem` and `<name>.key` in `dir`.
    pub fn issue_client(&self, dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}
