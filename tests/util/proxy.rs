//! An authenticating proxy for the credential tests: a
//! [`super::front::Front`] before a [`TestCluster`]. osmem has no
//! security, so [`AuthProxy`] plays the part of an Elasticsearch cluster
//! with security enabled ([`AuthProxy::start`]: Basic authentication for
//! one user; [`AuthProxy::start_bearer`]: one bearer token; see
//! [`super::front::auth`]). Started with [`AuthProxy::start_sigv4`], it
//! plays Amazon OpenSearch Service instead ([`super::front::sigv4`]), and
//! with [`AuthProxy::start_data_streams`] an Elasticsearch with data
//! streams ([`super::front::data_streams`]).
//!
//! Accepted requests are forwarded to the upstream cluster (with the
//! upstream's own credentials, if it has any) and its response relayed.
//! The proxy stops on drop.

use std::sync::Arc;

use super::front::auth::AuthLayer;
use super::front::data_streams::DataStreams;
use super::front::sigv4::SigV4Layer;
use super::front::{Front, Layer, Upstream};
use super::server::TestCluster;
use super::sigv4::SigV4Verifier;

/// The layer an [`AuthProxy`] was started with.
enum Guard {
    Auth(Arc<AuthLayer>),
    SigV4(Arc<SigV4Layer>),
    DataStreams(Arc<DataStreams>),
}

/// A running proxy in front of a [`TestCluster`], stopped on drop.
pub struct AuthProxy {
    front: Front,
    guard: Guard,
}

impl AuthProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `cluster` that accepts
    /// only `user` / `password`.
    pub fn start(cluster: &TestCluster, user: &str, password: &str) -> AuthProxy {
        AuthProxy::spawn(
            cluster,
            Guard::Auth(Arc::new(AuthLayer::basic(user, password))),
        )
    }

    /// Starts a proxy on `127.0.0.1:0` in front of `cluster` that accepts
    /// only `Authorization: Bearer <token>`.
    pub fn start_bearer(cluster: &TestCluster, token: &str) -> AuthProxy {
        AuthProxy::spawn(cluster, Guard::Auth(Arc::new(AuthLayer::bearer(token))))
    }

    /// Starts a proxy on `127.0.0.1:0` in front of `cluster` that accepts
    /// only requests `verifier` finds signed with its credentials.
    pub fn start_sigv4(cluster: &TestCluster, verifier: Arc<SigV4Verifier>) -> AuthProxy {
        AuthProxy::spawn(cluster, Guard::SigV4(Arc::new(SigV4Layer::new(verifier))))
    }

    /// Starts a proxy on `127.0.0.1:0` in front of `cluster` that asks for
    /// no credentials and emulates Elasticsearch's data streams
    /// ([`DataStreams`]), which osmem lacks.
    pub fn start_data_streams(cluster: &TestCluster) -> AuthProxy {
        AuthProxy::spawn(
            cluster,
            Guard::DataStreams(Arc::new(DataStreams::default())),
        )
    }

    fn spawn(cluster: &TestCluster, guard: Guard) -> AuthProxy {
        let credentials = cluster
            .credentials()
            .map(|(u, p)| (u.to_string(), p.to_string()));
        let upstream = Upstream::new(cluster.base_url(), credentials);
        let layer: Arc<dyn Layer> = match &guard {
            Guard::Auth(l) => l.clone(),
            Guard::SigV4(l) => l.clone(),
            Guard::DataStreams(l) => l.clone(),
        };
        let front = Front::start(Some(upstream), vec![layer]);
        AuthProxy { front, guard }
    }

    /// The data stream emulation, if this proxy has one.
    pub fn data_streams(&self) -> &DataStreams {
        match &self.guard {
            Guard::DataStreams(d) => d,
            _ => panic!("a proxy started with start_data_streams"),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.front.url()
    }

    /// `http://user:password@127.0.0.1:<port>` (userinfo percent-encoded).
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        let mut url = url::Url::parse(&self.url()).unwrap();
        url.set_username(user).unwrap();
        url.set_password(Some(password)).unwrap();
        url.as_str().trim_end_matches('/').to_string()
    }

    /// How many requests got a 401 (403 for SigV4).
    pub fn rejected(&self) -> usize {
        match &self.guard {
            Guard::Auth(l) => l.rejected(),
            Guard::SigV4(l) => l.rejected(),
            Guard::DataStreams(_) => 0,
        }
    }

    /// How many requests came with the right credentials.
    pub fn authorized(&self) -> usize {
        match &self.guard {
            Guard::Auth(l) => l.authorized(),
            Guard::SigV4(l) => l.authorized(),
            Guard::DataStreams(_) => 0,
        }
    }

    /// How many requests carried `Authorization: Bearer …` (right or wrong).
    pub fn bearer_requests(&self) -> usize {
        match &self.guard {
            Guard::Auth(l) => l.bearer_requests(),
            _ => 0,
        }
    }

    /// How many requests were forwarded upstream.
    pub fn forwarded(&self) -> usize {
        self.front.forwarded()
    }

    /// Lets `n` more requests with the right credentials through, then
    /// answers 401 to everything: credentials revoked in the middle of a run.
    pub fn revoke_after(&self, n: usize) {
        match &self.guard {
            Guard::Auth(l) => l.revoke_after(n),
            _ => panic!("revoke_after needs a proxy started with start or start_bearer"),
        }
    }
}
