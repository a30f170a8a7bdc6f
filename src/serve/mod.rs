//! `esark serve`: dumps and restores as HTTP jobs, the second front end of
//! the job library (the command line is the first). A job is one of the
//! library calls ([`crate::dump::run`], [`crate::restore::job`],
//! [`crate::verify::job`]) run in the background; its events are folded
//! into progress and persisted, its cancellation token is the API's
//! `cancel`.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the TOML file: listener, state, archives, clusters, tokens |
//! | [`auth`] | bearer tokens, roles, the per-request check |
//! | [`error`] | API errors as JSON answers |
//! | [`archives`] | the archive endpoints: list, summary, download, upload |
//! | [`tarball`] | archives as tar streams, out and in |
//!
//! Front ends sit side by side: this module may use the command line's
//! option parsing ([`crate::cli`]), nothing below may use this module
//! (`scripts/import-graph.py` checks it).

pub mod archives;
pub mod auth;
pub mod config;
pub mod error;
pub mod tarball;

use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use auth::{Caller, Tokens};
use config::{ConfigError, ServeConfig};
use error::ApiError;

/// Why the service stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServeConfig>,
    pub tokens: Arc<Tokens>,
    /// Archive names being uploaded, refused to a second upload.
    pub uploads: Arc<archives::Uploads>,
}

impl AppState {
    pub fn new(config: ServeConfig) -> AppState {
        AppState {
            tokens: Arc::new(Tokens::new(config.tokens.clone())),
            uploads: Arc::default(),
            config: Arc::new(config),
        }
    }
}

/// The caller of a request, from its `Authorization` header: a handler
/// that takes a `Caller` is answered 401 without a known token.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        Ok(state.tokens.authenticate(header)?)
    }
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .merge(archives::routes())
        .with_state(state)
}

async fn health(State(_): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Loads the config at `path` and serves until `shutdown` is cancelled.
/// The first line on stdout is `{"listen": "http://ADDR"}` (the address
/// actually bound, so `127.0.0.1:0` can be used by tests and scripts).
pub async fn run(path: &Path, shutdown: CancellationToken) -> Result<(), ServeError> {
    let config = ServeConfig::load(path)?;
    let addr = config.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Listen { addr, source })?;
    let app = router(AppState::new(config));
    println!(
        "{}",
        serde_json::json!({ "listen": format!("http://{bound}") })
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ServeError::Serve)
}
