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
//! | [`openapi`] | the route table (the router and the OpenAPI document both read it) |
//! | [`jobs_api`] | the `/v1/jobs*` handlers |
//! | [`options`] | a job's options parsed as the CLI's flags into its config |
//! | [`status`] | job kinds, statuses and their transition table |
//! | [`db`] | the SQLite job database in the state folder |
//! | [`runner`] | the job queue: slots, events into progress, cancel, shutdown |
//! | [`progress`] | events folded into a job's progress |
//! | [`metrics`] | `/metrics` (Prometheus) |
//! | [`secrets`] | cluster secrets scrubbed from what jobs record |
//!
//! Front ends sit side by side: this module may use the command line's
//! option parsing ([`crate::cli`]), nothing below may use this module
//! (`scripts/import-graph.py` checks it).

pub mod archives;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod jobs_api;
pub mod metrics;
pub mod openapi;
pub mod options;
pub mod progress;
pub mod runner;
pub mod secrets;
pub mod status;
pub mod tarball;

use std::path::Path;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use auth::{Action, Caller, Tokens};
use config::{ConfigError, ServeConfig};
use db::{Db, DbError};
use error::ApiError;
use metrics::Metrics;
use openapi::{Endpoint, Route, ROUTES};
use runner::Runner;

/// Why the service stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: cannot load {} and {}: {source}", cert.display(), key.display())]
    Tls {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
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
    /// The job database (in the config's `state` folder).
    pub db: Arc<Db>,
    /// Runs the queued jobs; holds the running ones' cancellation tokens.
    pub runner: Arc<Runner>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Opens the job database of `config` (creating its state folder).
    /// No job is started: [`run`] recovers and starts them.
    pub fn new(config: ServeConfig) -> Result<AppState, ServeError> {
        let config = Arc::new(config);
        let db = Arc::new(Db::open(&config.state)?);
        let metrics = Arc::new(Metrics::new());
        Ok(AppState {
            tokens: Arc::new(Tokens::new(config.tokens.clone())),
            uploads: Arc::default(),
            runner: Arc::new(Runner::new(db.clone(), config.clone(), metrics.clone())),
            db,
            metrics,
            config,
        })
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

/// The handler of a route of [`ROUTES`]; `None` for the routes another
/// module's router serves (merged in [`router`]).
fn handler(route: &Route) -> Option<MethodRouter<AppState>> {
    let filter = MethodFilter::try_from(route.method.clone()).expect("a standard method");
    Some(match route.endpoint {
        Endpoint::Health => on(filter, health),
        Endpoint::Metrics => on(filter, metrics),
        Endpoint::OpenApi => on(filter, openapi),
        Endpoint::SubmitJob => on(filter, jobs_api::submit),
        Endpoint::ListJobs => on(filter, jobs_api::list),
        Endpoint::GetJob => on(filter, jobs_api::get),
        Endpoint::JobErrors => on(filter, jobs_api::errors),
        Endpoint::CancelJob => on(filter, jobs_api::cancel),
        Endpoint::ResumeJob => on(filter, jobs_api::resume),
        Endpoint::Archives => return None,
    })
}

/// Every route of the API, from the table of [`openapi::ROUTES`].
pub fn router(state: AppState) -> Router {
    let mut jobs = Router::new();
    for route in ROUTES {
        if let Some(handler) = handler(route) {
            jobs = jobs.route(route.path, handler);
        }
    }
    // The job routes take small JSON bodies; archive uploads (merged
    // below) set their own limit.
    let jobs = jobs.layer(DefaultBodyLimit::max(jobs_api::MAX_BODY));
    Router::new()
        .merge(jobs)
        .merge(archives::routes())
        .with_state(state)
}

async fn health(State(_): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi::document())
}

async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::response::Response, ApiError> {
    caller.check(Action::ReadMetrics, &[])?;
    let text = state
        .metrics
        .render(&state.db)
        .map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Loads the config at `path` and serves until `shutdown` is cancelled.
/// The first line on stdout is `{"listen": "http://ADDR"}` (`https://`
/// with TLS; the address actually bound, so `127.0.0.1:0` can be used by
/// tests and scripts). Jobs left running by a crash become `interrupted`,
/// queued ones start. At shutdown running jobs are cancelled (they
/// checkpoint and are recorded `interrupted`) and waited for.
pub async fn run(path: &Path, shutdown: CancellationToken) -> Result<(), ServeError> {
    let config = ServeConfig::load(path)?;
    let addr = config.listen;
    let listen = |source| ServeError::Listen { addr, source };
    let tls = match &config.tls {
        Some(files) => {
            // The process's rustls provider: ring, the one compiled in.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                    .await
                    .map_err(|source| ServeError::Tls {
                        cert: files.cert.clone(),
                        key: files.key.clone(),
                        source,
                    })?,
            )
        }
        None => None,
    };
    let state = AppState::new(config)?;
    for id in state.db.recover()? {
        state.runner.enqueue(id);
    }
    let runner = state.runner.clone();
    let app = router(state);
    let listener = std::net::TcpListener::bind(addr).map_err(listen)?;
    listener.set_nonblocking(true).map_err(listen)?;
    let bound = listener.local_addr().map_err(listen)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "{}",
        serde_json::json!({ "listen": format!("{scheme}://{bound}") })
    );
    // Jobs are told at once (not after the open connections close).
    let stop_all = shutdown.clone();
    let stop_jobs = {
        let (runner, shutdown) = (runner.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            runner.shutdown().await;
        })
    };
    let served = match tls {
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                signal.cancelled().await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            axum_server::from_tcp_rustls(listener, tls)
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
        None => {
            let listener = tokio::net::TcpListener::from_std(listener).map_err(listen)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        }
    };
    // Also when serving failed: the jobs still stop cleanly.
    stop_all.cancel();
    let _ = stop_jobs.await;
    served.map_err(ServeError::Serve)
}
