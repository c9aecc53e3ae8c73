//! OpenTelemetry traces of the daemon itself: spans per batch, sink request, dead-letter write and
//! changelog restore, exported over OTLP (http/protobuf, or gRPC) through a bounded queue.
//!
//! Off unless an exporter or an endpoint is set ([`settings::resolve`]); when off, no layer is
//! installed and the span helpers in [`spans`] hand out disabled spans, so the pipelines pay one
//! relaxed atomic load per batch.

mod client;
mod queue;
pub mod settings;
pub mod spans;
mod stats;

pub use settings::{resolve, Protocol, Settings, TracingConfig};
pub use stats::{NAMES, STATS};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use queue::{QueueLimits, QueueProcessor};
use settings::{Root, Sampling};
use std::time::Duration;

/// The installed tracer provider; [`Tracing::shutdown`] exports what is queued.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts the exporter and the provider for `settings`.
    pub fn start(settings: &Settings) -> Result<Tracing, String> {
        let resource = Resource::builder_empty()
            .with_detector(Box::new(
                opentelemetry_sdk::resource::TelemetryResourceDetector,
            ))
            .with_attributes(
                settings
                    .resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build();
        let limits = QueueLimits {
            queue_spans: settings.queue_spans,
            batch_spans: settings.batch_spans,
            schedule_delay: settings.schedule_delay,
            timeout: settings.timeout,
        };
        let for_exporter = settings.clone();
        let exporter_resource = resource.clone();
        let processor = QueueProcessor::start(limits, move || {
            let mut exporter = exporter(&for_exporter).map_err(|e| e.to_string())?;
            opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &exporter_resource);
            Ok(exporter)
        })?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .with_sampler(sampler(settings.sampling))
            .with_max_links_per_span(settings.max_links_per_span)
            .build();
        spans::enable(settings.max_links_per_span);
        Ok(Tracing { provider })
    }

    /// The `tracing` layer that turns the daemon's spans into OpenTelemetry spans.
    pub fn layer<S>(
        &self,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("hestyna-obsd"))
            .with_threads(false)
            .with_tracked_inactivity(false)
    }

    /// Exports what is queued (waiting at most `timeout`) and stops the exporter.
    pub fn shutdown(self, timeout: Duration) {
        spans::disable();
        if let Err(error) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(%error, "the span exporter did not finish before shutdown");
        }
    }
}

/// The OTLP exporter for the protocol.
fn exporter(
    s: &Settings,
) -> Result<opentelemetry_otlp::SpanExporter, Box<dyn std::error::Error + Send + Sync>> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match s.protocol {
        Protocol::HttpProtobuf => builder
            .with_http()
            .with_http_client(client::Client::new(s.timeout)?)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(s.endpoint.clone())
            .with_timeout(s.timeout)
            .with_headers(s.headers.clone().into_iter().collect())
            .with_retry_policy(no_retries())
            .build()?,
        Protocol::Grpc => {
            let mut headers = http::HeaderMap::new();
            for (k, v) in &s.headers {
                headers.insert(http::HeaderName::from_bytes(k.as_bytes())?, v.parse()?);
            }
            let metadata =
                opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers);
            let mut grpc = builder
                .with_tonic()
                .with_endpoint(s.endpoint.clone())
                .with_timeout(s.timeout)
                .with_metadata(metadata)
                .with_retry_policy(no_retries());
            if s.endpoint.starts_with("https://") {
                grpc = grpc.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_native_roots(),
                );
            }
            grpc.build()?
        }
    };
    Ok(exporter)
}

/// One attempt per request: a failed export drops its spans (counted) rather than hold the exporting
/// thread in backoff while the queue fills, and shutdown waits for at most one attempt.
fn no_retries() -> opentelemetry_otlp::RetryPolicy {
    opentelemetry_otlp::RetryPolicy::disabled()
}

fn sampler(s: Sampling) -> Sampler {
    let root = |r: Root| match r {
        Root::AlwaysOn => Sampler::AlwaysOn,
        Root::AlwaysOff => Sampler::AlwaysOff,
        Root::Ratio(x) => Sampler::TraceIdRatioBased(x),
    };
    match s {
        Sampling::AlwaysOn => Sampler::AlwaysOn,
        Sampling::AlwaysOff => Sampler::AlwaysOff,
        Sampling::Ratio(x) => Sampler::TraceIdRatioBased(x),
        Sampling::ParentBased(r) => Sampler::ParentBased(Box::new(root(r))),
    }
}
