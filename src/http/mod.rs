//! HTTP: `/metrics` (basic auth; Prometheus text or OpenMetrics, as the scraper asks) and
//! `/api/v1/quantiles` (same auth), `/livez` and `/readyz` (open, no data).

mod auth;

pub use auth::{BasicAuth, DEMO_PASSWORD, DEMO_USER};

use crate::derive::{Format, Store};
use crate::pipeline::{Health, Shutdown};
use crate::telemetry::SelfMetrics;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

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
        .route("/api/v1/quantiles", get(quantiles))
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

/// Renders every derived series, then the self metrics, in `format`.
pub fn render(store: &parking_lot::Mutex<Store>, metrics: &SelfMetrics, format: Format) -> String {
    let mut out = String::with_capacity(64 * 1024);
    {
        let store = store.lock();
        store.render(&mut out, format);
        for (name, count) in store.series_counts() {
            metrics
                .derived_series
                .with_label_values(&[name])
                .set(count as i64);
        }
    }
    metrics.render(&mut out, format);
    crate::derive::exposition::Writer::new(&mut out, format).finish();
    out
}

async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(refusal) = state.auth.check(headers.get(header::AUTHORIZATION)).await {
        return refusal;
    }
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = render(&state.store, &state.metrics, format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// The window quantiles as JSON (same credentials as `/metrics`).
async fn quantiles(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(refusal) = state.auth.check(headers.get(header::AUTHORIZATION)).await {
        return refusal;
    }
    let body = state.store.lock().quantiles_json().to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
