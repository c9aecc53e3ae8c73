//! HTTP: `/metrics` (Prometheus text, or OpenMetrics when asked) and `/api/v1/quantiles`, behind the
//! listener's [`Security`]; `/livez` and `/readyz`, open and revealing nothing (also on an optional
//! separate plain listener, for probes when the main one needs client certificates).
//!
//! Each connection, at accept and before any TLS or HTTP work: a peer outside `allowed_networks` ∪
//! `trusted_proxies` is closed, then a cap per client address (IPv6 by /64) and one in total. Then TLS
//! (with a handshake deadline), then HTTP/1.1 with a header deadline, a header size limit, a deadline on
//! every write (a reader that stops reading is cut off) and a lifetime (then closed gracefully). Each
//! request is then admitted: the client's address against the allowlist (with every `X-Forwarded-For`
//! line believed only from trusted proxies, so this runs per request too), then credentials (401 with
//! `WWW-Authenticate`; 429 for a throttled client, see `auth`), then the answer, limited to the
//! principal's organizations. Refusals are counted by reason and never log secrets.

mod auth;
mod conn;
pub mod security;
mod stream;

pub use auth::{Access, AuthFailure, FailureLimiter, DEMO_PASSWORD};
pub use security::Security;

use crate::derive::{Format, Store};
use crate::lifecycle::{Health, Shutdown};
use crate::telemetry::SelfMetrics;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use stream::Chunks;

/// Limits of a careful server.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEADER_BYTES: usize = 16 * 1024;
const MAX_CONNECTIONS: usize = 512;
/// Connections one client address (IPv6: one /64) may hold open (a Prometheus holds one or two).
const MAX_CONNECTIONS_PER_ADDRESS: usize = 8;
/// Past `MAX_CONNECTIONS`, this many more for addresses that hold no connection at all: many addresses
/// holding connections cannot lock out a scraper that holds none.
const RESERVED_CONNECTIONS: usize = 128;
/// How long a write may wait for the reader before the connection is cut.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection lives before it is closed gracefully (after the request in progress).
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// Failed attempts an address may make per minute before 429.
const MAX_FAILURES: u32 = 10;

/// The security in force, replaced whole on reload.
pub type LiveSecurity = Arc<parking_lot::RwLock<Arc<Security>>>;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// Derived series.
    pub store: Arc<parking_lot::Mutex<Store>>,
    /// Self metrics.
    pub metrics: Arc<SelfMetrics>,
    /// Readiness.
    pub health: Arc<Health>,
    /// Security in force.
    pub security: LiveSecurity,
    /// The throttle on failed attempts.
    pub limiter: Arc<FailureLimiter>,
    /// The bcrypt verifications that may run at once.
    pub bcrypt: Arc<tokio::sync::Semaphore>,
}

impl HttpState {
    /// State with a fresh throttle.
    pub fn new(
        store: Arc<parking_lot::Mutex<Store>>,
        metrics: Arc<SelfMetrics>,
        health: Arc<Health>,
        security: LiveSecurity,
    ) -> Self {
        HttpState {
            store,
            metrics,
            health,
            security,
            limiter: Arc::new(FailureLimiter::new(MAX_FAILURES, Duration::from_secs(60))),
            bcrypt: Arc::new(tokio::sync::Semaphore::new(auth::bcrypt_permits())),
        }
    }
}

/// The connection a request came on.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The router of the main listener.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(landing_page))
        .route("/metrics", get(metrics))
        .route("/api/v1/quantiles", get(quantiles))
        .merge(health_routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard_body_and_headers,
        ))
        .with_state(state)
}

/// The exporter convention's landing page: what this is and where to look; no data, no credentials.
async fn landing_page() -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>hestyna-obsd</title></head>\n\
         <body><h1>hestyna-obsd</h1>\n<p>Version {} (commit {}). Derives Prometheus metrics from Hestyna's \
         events and forwards them, enriched and redacted, to SIEMs.</p>\n<ul>\n\
         <li><a href=\"metrics\">/metrics</a> (Prometheus text or OpenMetrics)</li>\n\
         <li><a href=\"livez\">/livez</a></li>\n<li><a href=\"readyz\">/readyz</a></li>\n\
         </ul></body></html>\n",
        env!("CARGO_PKG_VERSION"),
        crate::telemetry::BUILD_COMMIT,
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

fn health_routes() -> Router<HttpState> {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
}

/// Binds a listener (so a busy port fails start-up, before anything is consumed).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, HttpError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves the main listener until shutdown: TLS and the allowlist as the security in force says.
pub async fn serve(listener: tokio::net::TcpListener, state: HttpState, shutdown: Shutdown) {
    warm(state.security.read().clone());
    let metrics = state.metrics.clone();
    accept_loop(
        listener,
        router(state.clone()),
        Some(state),
        metrics,
        shutdown,
    )
    .await
}

/// Makes the security's dummy bcrypt hash on a blocking thread, before the first unknown user.
fn warm(security: Arc<Security>) {
    tokio::task::spawn_blocking(move || security.auth.warm());
}

/// Serves `/livez` and `/readyz` alone, plain HTTP, until shutdown (the connection caps apply).
pub async fn serve_health(listener: tokio::net::TcpListener, state: HttpState, shutdown: Shutdown) {
    let metrics = state.metrics.clone();
    accept_loop(
        listener,
        health_routes().with_state(state),
        None,
        metrics,
        shutdown,
    )
    .await
}

/// Why a connection was closed at accept: the label values of
/// `hestyna_obsd_http_connections_refused_total`.
pub const CONNECTION_REFUSALS: [&str; 3] = ["forbidden_network", "address_limit", "total_limit"];

/// Accepts and serves until shutdown; `secured` (the main listener) adds the network refusal and TLS.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    secured: Option<HttpState>,
    metrics: Arc<SelfMetrics>,
    shutdown: Shutdown,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let reserved = Arc::new(tokio::sync::Semaphore::new(RESERVED_CONNECTIONS));
    let per_address = conn::AddressSlots::new(MAX_CONNECTIONS_PER_ADDRESS);
    for reason in CONNECTION_REFUSALS {
        metrics
            .http_connections_refused
            .with_label_values(&[reason]);
    }
    let refuse = |reason: &str| {
        metrics
            .http_connections_refused
            .with_label_values(&[reason])
            .inc();
    };
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        // Refused by closing, before TLS or HTTP costs anything; never queued without bound.
        if let Some(s) = &secured {
            if !s.security.read().accepts_peer(peer.ip()) {
                refuse("forbidden_network");
                continue;
            }
        }
        let Some(address_slot) = per_address.try_take(peer.ip()) else {
            refuse("address_limit");
            continue;
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) if address_slot.is_first() => match reserved.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    refuse("total_limit");
                    continue;
                }
            },
            Err(_) => {
                refuse("total_limit");
                continue;
            }
        };
        let (app, secured, shutdown) = (app.clone(), secured.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _slots = (slot, address_slot);
            let _ = stream.set_nodelay(true);
            let stream = conn::WriteDeadline::new(stream, WRITE_TIMEOUT);
            let tls = secured.as_ref().and_then(|s| s.security.read().tls.clone());
            match tls {
                None => connection(TokioIo::new(stream), peer, app, shutdown).await,
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => connection(TokioIo::new(tls), peer, app, shutdown).await,
                        Ok(Err(error)) => {
                            if let Some(s) = &secured {
                                s.metrics.tls_handshake_failures.inc();
                            }
                            tracing::debug!(%error, %peer, "TLS handshake failed");
                        }
                        Err(_) => {
                            if let Some(s) = &secured {
                                s.metrics.tls_handshake_failures.inc();
                            }
                        }
                    }
                }
            }
        });
    }
}

async fn connection<I>(io: TokioIo<I>, peer: SocketAddr, app: Router, shutdown: Shutdown)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            let app = app.clone();
            async move {
                use tower::ServiceExt;
                let response = match tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    app.oneshot(request.map(axum::body::Body::new)),
                )
                .await
                {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.wait() => {}
        _ = tokio::time::sleep(MAX_CONNECTION_AGE) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
}

/// Refuses request bodies (nothing here takes one) and adds the configured response headers.
async fn guard_body_and_headers(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Response {
    let has_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v != "0")
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    let mut response = if has_body {
        StatusCode::PAYLOAD_TOO_LARGE.into_response()
    } else {
        next.run(request).await
    };
    let security = state.security.read().clone();
    for (name, value) in &security.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// Alive unless a vital task (a source, a pipeline) has died: then 503 naming it, so that the kubelet
/// restarts the pod rather than leave it serving with nothing flowing.
async fn livez(State(state): State<HttpState>) -> Response {
    let dead = state.health.dead();
    if dead.is_empty() {
        return (StatusCode::OK, "ok\n").into_response();
    }
    let body = format!("dead: {}\n", dead.join(", "));
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if state.health.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Network, throttle and credentials, in that order; the refusal to send otherwise.
async fn admit(
    state: &HttpState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Access, Response> {
    let security = state.security.read().clone();
    // Every line, in order: a proxy may add a line rather than append to the last one. A line that is
    // not text ends what can be believed, as a malformed hop does.
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map_while(|v| v.to_str().ok())
        .collect();
    let forwarded = (!lines.is_empty()).then(|| lines.join(","));
    let client: IpAddr = security.client_ip(peer.ip(), forwarded.as_deref());
    let refuse = |reason: AuthFailure| {
        state
            .metrics
            .http_auth_failures
            .with_label_values(&[reason.as_str()])
            .inc();
    };
    if !security.network_allows(client) {
        refuse(AuthFailure::ForbiddenNetwork);
        return Err((StatusCode::FORBIDDEN, "forbidden\n").into_response());
    }
    match security
        .auth
        .authenticate(
            headers.get(header::AUTHORIZATION),
            &state.limiter,
            client,
            &state.bcrypt,
        )
        .await
    {
        Ok(access) => Ok(access),
        Err(AuthFailure::RateLimited) => {
            refuse(AuthFailure::RateLimited);
            let wait = state.limiter.blocked(client).unwrap_or(1);
            Err((
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, wait.to_string())],
                "too many failed attempts\n",
            )
                .into_response())
        }
        Err(reason) => {
            refuse(reason);
            let challenge = if security.auth.accepts_tokens() {
                "Basic realm=\"hestyna-obsd\", charset=\"UTF-8\", Bearer realm=\"hestyna-obsd\""
            } else {
                "Basic realm=\"hestyna-obsd\", charset=\"UTF-8\""
            };
            Err((
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
                "unauthorized\n",
            )
                .into_response())
        }
    }
}

/// Renders the series a reader may see, then (for unscoped readers) the self metrics, in `format`. The
/// store is held only while it is copied.
pub fn render(
    store: &parking_lot::Mutex<Store>,
    metrics: &SelfMetrics,
    format: Format,
    access: Option<&Access>,
) -> String {
    let full = access.and_then(|a| a.organizations.as_deref()).is_none();
    let mut out = String::with_capacity(render_capacity(store.lock().render_hint(), full));
    render_chunked(
        store,
        metrics,
        format,
        access,
        &mut out,
        usize::MAX,
        &mut |_| {},
    );
    if full {
        store.lock().set_render_hint(out.len());
    }
    out
}

/// [`render`] into `out`, handed to `take` whenever it holds `chunk` bytes or more (after a whole
/// series); what is left at the end stays in `out`.
fn render_chunked(
    store: &parking_lot::Mutex<Store>,
    metrics: &SelfMetrics,
    format: Format,
    access: Option<&Access>,
    out: &mut String,
    chunk: usize,
    take: &mut dyn FnMut(&mut String),
) {
    let scope = access.and_then(|a| a.organizations.as_deref());
    let snapshot = {
        let store = store.lock();
        for (name, count) in store.series_counts() {
            metrics
                .derived_series
                .with_label_values(&[name])
                .set(count as i64);
        }
        for (name, count) in store.exemplar_counts() {
            let gauge = metrics.derived_exemplars.with_label_values(&[name]);
            gauge.set(count as i64);
        }
        store.snapshot_for(format)
    };
    if let Some(stats) = crate::shared::alloc::stats() {
        for (state, bytes) in stats.states() {
            let gauge = metrics.allocator_bytes.with_label_values(&[state]);
            gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
    snapshot.render_chunked(out, format, scope, chunk, take);
    if scope.is_none() {
        metrics.render(out, format);
    }
    crate::shared::exposition::Writer::new(out, format).finish();
}

/// The buffer a render starts with: for a full exposition, the last one's length and an eighth more
/// (series come and go), so that it is written into one allocation. Growing by doubling instead held
/// the old and the new buffer at once: 32 and 64 MiB at 90,510 series (heaptrack, in the memory soak).
/// A scoped render (one organization's series) starts small.
fn render_capacity(last_full: usize, full: bool) -> usize {
    const SMALL: usize = 64 * 1024;
    match full {
        true => (last_full + last_full / 8).max(SMALL),
        false => SMALL,
    }
}

async fn metrics(
    State(state): State<HttpState>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let metrics = state.metrics.clone();
    admitted_render(
        state,
        peer,
        &headers,
        format.content_type(),
        move |store, access, text, chunks| {
            let mut take = |t: &mut String| chunks.take(t);
            let chunk = stream::CHUNK;
            render_chunked(
                store,
                &metrics,
                format,
                Some(access),
                text,
                chunk,
                &mut take,
            )
        },
    )
    .await
}

/// The window quantiles as JSON, within the reader's organizations.
async fn quantiles(
    State(state): State<HttpState>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    admitted_render(
        state,
        peer,
        &headers,
        "application/json",
        |store, access, text, _| {
            let snapshot = store.lock().snapshot();
            let scope = access.organizations.as_deref();
            *text = snapshot.quantiles_json(scope).to_string();
        },
    )
    .await
}

/// Admits the request, then renders the body on a blocking thread (formatting a large exposition, or
/// computing window quantiles, is CPU work: off the async workers) and sends it as it is written
/// (see [`stream`]), gzip-compressed on a second thread when the client accepts it (Prometheus always
/// does).
async fn admitted_render<F>(
    state: HttpState,
    peer: SocketAddr,
    headers: &HeaderMap,
    content_type: &'static str,
    body: F,
) -> Result<Response, Response>
where
    F: FnOnce(&parking_lot::Mutex<Store>, &Access, &mut String, &mut Chunks) + Send + 'static,
{
    let access = admit(&state, peer, headers).await?;
    let store = state.store.clone();
    let compress = crate::shared::gzip::accepts_gzip(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let rendering = stream::start(
        move |text, chunks| body(&store, &access, text, chunks),
        compress,
    );
    let Some((body, sent)) = rendering.body().await else {
        // Never a 200 with an empty body: Prometheus would take every series as gone.
        tracing::error!("rendering failed (a panic); answered 500");
        return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
    };
    let encoding = if compress { "gzip" } else { "identity" };
    let counter = state
        .metrics
        .http_response_bytes
        .with_label_values(&[encoding]);
    tokio::spawn(async move { counter.inc_by(sent.await.unwrap_or(0)) });
    let mut response = (
        [(header::CONTENT_TYPE, content_type)],
        axum::body::Body::new(body),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::VARY,
        header::HeaderValue::from_static("accept-encoding"),
    );
    if compress {
        headers.insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
    }
    Ok(response)
}

/// Why serving `security` on `listen` is refused, if it is: the one rule applied at start-up and to
/// every reload. `demo` are its users whose password is the public demo password
/// (`security.auth.demo_users()`: bcrypt work, so only where `/metrics` will be served).
/// `must_protect` is the configuration's `http.must_protect()` (off loopback, and unauthenticated
/// access not asked for).
pub fn refusal(
    security: &Security,
    demo: &[String],
    listen: SocketAddr,
    must_protect: bool,
) -> Option<String> {
    if must_protect && !security.is_protected() {
        return Some(format!(
            "/metrics on the non-loopback address {listen} would be open to anyone: set users, tokens, allowed networks or client certificates (or set http.allow_unauthenticated = true)"
        ));
    }
    if !demo.is_empty() && !listen.ip().is_loopback() {
        return Some(format!(
            "the public demo password is configured for {demo:?} while /metrics listens on {listen}, which is not loopback: set real credentials"
        ));
    }
    None
}

/// Sets `hestyna_obsd_tls_certificate_expiry_timestamp_seconds{listener="main"}` from the security in
/// force; without TLS the series is removed.
pub fn record_certificate(security: &Security, metrics: &SelfMetrics) {
    let gauge = &metrics.tls_certificate_expiry;
    match security.certificate_expiry {
        Some(t) => gauge.with_label_values(&["main", ""]).set(t as f64),
        None => {
            let _ = gauge.remove_label_values(&["main", ""]);
        }
    }
}

/// Re-reads the web configuration file on SIGHUP and when it, or a file it names, changes. A file that
/// does not load, or that start-up would refuse ([`refusal`]), keeps the security in force; either way
/// the outcome is logged and counted.
pub async fn watch_security(
    path: PathBuf,
    live: LiveSecurity,
    metrics: Arc<SelfMetrics>,
    (listen, must_protect): (SocketAddr, bool),
    shutdown: Shutdown,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    let mut seen = security::fingerprint(&live.read().files);
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        let forced = tokio::select! {
            _ = shutdown.wait() => return,
            _ = hangup => true,
            _ = poll.tick() => false,
        };
        let now = security::fingerprint(&live.read().files);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        let loaded = Security::load(&path).map_err(|e| e.to_string());
        let refused = (loaded.as_ref().ok())
            .and_then(|new| refusal(new, &new.auth.demo_users(), listen, must_protect));
        match loaded {
            Ok(_) if refused.is_some() => {
                metrics
                    .web_config_reloads
                    .with_label_values(&["failure"])
                    .inc();
                let reason = refused.unwrap_or_default();
                tracing::error!(path = %path.display(), %reason, "the new web configuration is refused; keeping the old one");
            }
            Ok(new) => {
                seen = security::fingerprint(&new.files);
                record_certificate(&new, &metrics);
                let new = Arc::new(new);
                warm(new.clone());
                *live.write() = new;
                metrics
                    .web_config_reloads
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(path = %path.display(), "web configuration reloaded");
            }
            Err(error) => {
                metrics
                    .web_config_reloads
                    .with_label_values(&["failure"])
                    .inc();
                tracing::error!(%error, "the new web configuration is invalid; keeping the old one");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_render_is_written_into_one_buffer_sized_by_the_last() {
        let plan = crate::derive::Plan::compile(&crate::derive::default_rules()).unwrap();
        let mut store = plan.new_store();
        for org in 0..2_000 {
            let event = format!(
                r#"{{"event_id":"e","type":"llm_run","occurred_at":"2026-01-01T00:00:00Z","organization":"org-{org}","run_id":"r","intent":"triage","outcome":"success","latency_ms":120,"tokens_prompt":100,"tokens_completion":7}}"#
            );
            plan.observe(
                &mut store,
                &crate::decode::decode(event.as_bytes(), None).unwrap(),
            );
        }
        let store = parking_lot::Mutex::new(store);
        let metrics = SelfMetrics::new();
        let first = render(&store, &metrics, Format::Text, None);
        assert_eq!(store.lock().render_hint(), first.len());
        let second = render(&store, &metrics, Format::Text, None);
        assert!(
            first.len() > 1 << 20,
            "large enough to have grown: {}",
            first.len()
        );
        // Doubling from 64 KiB would leave up to twice the length allocated.
        let bound = second.len() + second.len() / 8;
        assert!(
            second.capacity() <= bound,
            "{} allocated for {} bytes",
            second.capacity(),
            second.len()
        );
        assert_eq!(render_capacity(first.len(), false), 64 * 1024, "scoped");
    }

    #[test]
    fn a_render_in_chunks_is_the_same_text_cut_at_line_ends() {
        let plan = crate::derive::Plan::compile(&crate::derive::default_rules()).unwrap();
        let mut store = plan.new_store();
        for org in 0..2_000 {
            let event = format!(
                r#"{{"event_id":"e","type":"llm_run","occurred_at":"2026-01-01T00:00:00Z","organization":"org-{org}","run_id":"r","intent":"triage","outcome":"success","latency_ms":120}}"#
            );
            plan.observe(
                &mut store,
                &crate::decode::decode(event.as_bytes(), None).unwrap(),
            );
        }
        let store = parking_lot::Mutex::new(store);
        let metrics = SelfMetrics::new();
        let mut pieces = Vec::new();
        let mut rest = String::new();
        let mut take = |t: &mut String| pieces.push(std::mem::take(t));
        render_chunked(
            &store,
            &metrics,
            Format::Text,
            None,
            &mut rest,
            4096,
            &mut take,
        );
        assert!(pieces.len() > 100, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.len() >= 4096 && p.ends_with('\n')));
        // The allocator's figures are read at each render (this test allocates through jemalloc too).
        let steady = |text: &str| {
            let lines = text.lines();
            let kept = lines.filter(|l| !l.starts_with("hestyna_obsd_allocator_bytes{"));
            kept.collect::<Vec<_>>().join("\n")
        };
        let whole = render(&store, &metrics, Format::Text, None);
        assert_eq!(steady(&(pieces.concat() + &rest)), steady(&whole));
    }

    #[tokio::test]
    async fn livez_fails_naming_the_dead_task_once_one_has_died() {
        let plan = crate::derive::Plan::compile(&crate::derive::default_rules()).unwrap();
        let security = Arc::new(Security::basic(Default::default()));
        let health = Arc::new(Health::default());
        let state = HttpState::new(
            Arc::new(parking_lot::Mutex::new(plan.new_store())),
            Arc::new(SelfMetrics::new()),
            health.clone(),
            Arc::new(parking_lot::RwLock::new(security)),
        );
        let alive = health.vital("pipeline-forward");
        assert_eq!(livez(State(state.clone())).await.status(), StatusCode::OK);
        drop(alive);
        let response = livez(State(state)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"dead: pipeline-forward\n");
    }
}
