//! HTTP: `/metrics` (basic auth), `/livez` and `/readyz` (open, no data).

mod auth;

pub use auth::{BasicAuth, DEMO_PASSWORD, DEMO_USER};

use crate::derive::Store;
use crate::pipeline::{Health, Shutdown};
use crate::telemetry::SelfMetrics;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

/// The content type of the Prometheus text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// Derived series.
    pub store: Arc<parking_lot::Mutex<Store>>,
    /// Self metrics.
    pub metrics: Arc<SelfMetrics>,
    /// Readiness.
    pub health: Arc<Health>,
    /// Credentials for `/metrics`.
    pub auth: Arc<BasicAuth>,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Binds the listener (so a busy port fails start-up, before anything is consumed).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, HttpError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves until shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: Shutdown,
) -> Result<(), HttpError> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await
    .map_err(HttpError::Serve)
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if state.health.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Renders every derived series, then the self metrics.
pub fn render(store: &parking_lot::Mutex<Store>, metrics: &SelfMetrics) -> String {
    let mut out = String::with_capacity(64 * 1024);
    {
        let store = store.lock();
        store.render(&mut out);
        for (name, count) in store.series_counts() {
            metrics
                .derived_series
                .with_label_values(&[name])
                .set(count as i64);
        }
    }
    metrics.render(&mut out);
    out
}

async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(refusal) = state.auth.check(headers.get(header::AUTHORIZATION)).await {
        return refusal;
    }
    let body = render(&state.store, &state.metrics);
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response()
}
