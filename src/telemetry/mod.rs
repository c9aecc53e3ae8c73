//! Telemetry: the daemon's own logs and self metrics.
//!
//! Every self-observability event is one struct in [`events`] that both counts (in [`SelfMetrics`], exposed
//! on `/metrics` under `hestyna_obsd_`) and logs, rate-limited where it could repeat per record: the hot
//! path never logs per event.

pub mod events;
mod metrics;
mod ratelimit;

pub use metrics::{SelfMetrics, BUILD_COMMIT};
pub use ratelimit::RateLimit;

use serde::{Deserialize, Serialize};
use tracing_subscriber::{fmt, EnvFilter};

/// How logs are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Installs the global `tracing` subscriber. `RUST_LOG`, when set, overrides `level`.
pub fn init_logging(format: LogFormat, level: &str) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => env,
        _ => level.to_owned(),
    };
    let filter =
        EnvFilter::try_new(&filter).map_err(|source| TelemetryError::Filter { filter, source })?;
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInstalled)
}
