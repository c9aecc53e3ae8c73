//! Telemetry: the daemon's own logs and self metrics.
//!
//! Every self-observability event is one struct in [`events`] that both counts (in [`SelfMetrics`], exposed
//! on `/metrics` under `hestyna_obsd_`) and logs, rate-limited where it could repeat per record: the hot
//! path never logs per event. [`otel`] exports the daemon's own spans over OTLP, when asked to.

pub mod events;
mod metrics;
pub mod otel;
mod ratelimit;

pub use metrics::{SelfMetrics, BUILD_COMMIT};
pub use ratelimit::RateLimit;

use serde::{Deserialize, Serialize};
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

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
    #[error("cannot start the OTLP span exporter: {0}")]
    Exporter(String),
}

/// Installs the global `tracing` subscriber: log lines on stderr (`RUST_LOG`, when set, overrides
/// `level`) and, with `tracing`, the daemon's spans exported over OTLP. Hold the returned value until
/// the end and shut it down, so that queued spans are exported.
pub fn init_logging(
    format: LogFormat,
    level: &str,
    tracing: Option<&otel::Settings>,
) -> Result<Option<otel::Tracing>, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => env,
        _ => level.to_owned(),
    };
    let filter =
        EnvFilter::try_new(&filter).map_err(|source| TelemetryError::Filter { filter, source })?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_span_events(FmtSpan::NONE);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .map_event_format(WithTraceIds)
            .boxed(),
    };
    let tracing = tracing
        .map(otel::Tracing::start)
        .transpose()
        .map_err(TelemetryError::Exporter)?;
    let spans = tracing.as_ref().map(|t| {
        t.layer()
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target().starts_with("hestyna_obsd")
            }))
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(tracing)
}

/// A JSON log line with the `trace_id` and `span_id` of the exported span it was written in.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = otel::spans::current_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // The JSON format writes one object and a newline: the ids go before its closing brace.
        match line.trim_end().strip_suffix('}') {
            Some(object) => writeln!(
                writer,
                "{object},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
            ),
            None => writer.write_str(&line),
        }
    }
}
