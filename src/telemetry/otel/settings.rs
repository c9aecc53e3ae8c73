//! `[telemetry.tracing]` and the standard `OTEL_*` variables, resolved into one [`Settings`].
//!
//! The environment wins over the file, key by key. Resolution is pure (the environment is a function
//! argument) so that `check-config` reports exactly what start-up would refuse, every fault at once.

use crate::shared::HostInfo as Host;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `[telemetry.tracing]`: OpenTelemetry traces of the daemon itself. Every key has an `OTEL_*`
/// counterpart that wins over it; with neither an exporter nor an endpoint set, nothing is exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// `otlp` or `none`; unset: `otlp` once an endpoint is set (`OTEL_TRACES_EXPORTER`).
    pub exporter: Option<String>,
    /// The collector's base URL; `/v1/traces` is appended for http/protobuf
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is taken as it is).
    pub endpoint: Option<String>,
    /// `http/protobuf` or `grpc` (`OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`).
    pub protocol: String,
    /// Headers sent with every export, such as an API key; never printed
    /// (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TRACES_HEADERS`: `key=value,...`).
    pub headers: BTreeMap<String, String>,
    /// How long one export may take, retries included (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds).
    pub timeout_ms: u64,
    /// `service.name` (`OTEL_SERVICE_NAME`, or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`); unset:
    /// `hestyna-obsd`.
    pub service_name: Option<String>,
    /// More resource attributes (`OTEL_RESOURCE_ATTRIBUTES`, which wins key by key).
    pub resource_attributes: BTreeMap<String, String>,
    /// `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off` or
    /// `parentbased_traceidratio` (`OTEL_TRACES_SAMPLER`).
    pub sampler: String,
    /// The ratio of the `traceidratio` samplers, 0 to 1 (`OTEL_TRACES_SAMPLER_ARG`).
    pub sampler_arg: Option<f64>,
    /// Span links per batch span, to the events' trace contexts; links past it are cut and counted.
    pub max_links_per_span: u32,
    /// Ended spans waiting for export; past it, spans are dropped and counted, never waited for
    /// (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub queue_spans: usize,
    /// Spans per export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub batch_spans: usize,
    /// How long an ended span may wait for a fuller export request, in milliseconds
    /// (`OTEL_BSP_SCHEDULE_DELAY`).
    pub schedule_delay_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            exporter: None,
            endpoint: None,
            protocol: "http/protobuf".into(),
            headers: BTreeMap::new(),
            timeout_ms: 10_000,
            service_name: None,
            resource_attributes: BTreeMap::new(),
            sampler: "parentbased_always_on".into(),
            sampler_arg: None,
            max_links_per_span: 128,
            queue_spans: 2048,
            batch_spans: 512,
            schedule_delay_ms: 5000,
        }
    }
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over HTTP with protobuf bodies (`POST <endpoint>/v1/traces`).
    HttpProtobuf,
    /// OTLP over gRPC.
    Grpc,
}

/// Which traces are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Every trace.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// This fraction of traces, by trace id.
    Ratio(f64),
    /// The parent's decision where there is one, else the inner rule.
    ParentBased(Root),
}

/// The rule for root spans under [`Sampling::ParentBased`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    /// Every root.
    AlwaysOn,
    /// No root.
    AlwaysOff,
    /// This fraction of roots.
    Ratio(f64),
}

/// Everything the exporter needs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The full URL spans are sent to (http: with `/v1/traces`).
    pub endpoint: String,
    /// http/protobuf or gRPC.
    pub protocol: Protocol,
    /// Headers (or gRPC metadata) of every export.
    pub headers: BTreeMap<String, String>,
    /// One export's deadline.
    pub timeout: Duration,
    /// The resource, `service.name` included, in key order.
    pub resource: BTreeMap<String, String>,
    /// Which traces are kept.
    pub sampling: Sampling,
    /// Links per batch span.
    pub max_links_per_span: u32,
    /// Spans waiting for export, at most.
    pub queue_spans: usize,
    /// Spans per export.
    pub batch_spans: usize,
    /// An ended span's longest wait for a fuller export.
    pub schedule_delay: Duration,
}

/// A value that cannot be used, at its key (`telemetry.tracing.protocol`) or variable
/// (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The configuration key or environment variable.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

/// The default `service.name`.
pub const SERVICE_NAME: &str = "hestyna-obsd";

/// Reads one variable; empty counts as unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The first of `names` that is set, with its name.
fn first(env: Env<'_>, names: &[&'static str]) -> Option<(&'static str, String)> {
    names.iter().find_map(|n| {
        env(n)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*n, v.trim().to_owned()))
    })
}

const KEY: &str = "telemetry.tracing";

/// Resolves the configuration against the environment: `None` when nothing is to be exported
/// (`OTEL_SDK_DISABLED=true`, exporter `none`, or no exporter and no endpoint set), else the settings;
/// or every fault found.
pub fn resolve(
    config: &TracingConfig,
    env: Env<'_>,
    host: &Host,
) -> Result<Option<Settings>, Vec<Fault>> {
    let mut faults = Vec::new();
    let mut fault = |key: &str, message: String| {
        faults.push(Fault {
            key: key.to_owned(),
            message,
        })
    };
    let disabled = match first(env, &["OTEL_SDK_DISABLED"]) {
        None => false,
        Some((_, v)) if v.eq_ignore_ascii_case("true") => true,
        Some((_, v)) if v.eq_ignore_ascii_case("false") => false,
        Some((key, v)) => {
            fault(key, format!("{v:?} is neither true nor false"));
            false
        }
    };
    let endpoint = first(
        env,
        &[
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ],
    );
    let exporter = match first(env, &["OTEL_TRACES_EXPORTER"]) {
        Some((key, v)) => Some((key.to_owned(), v)),
        None => config
            .exporter
            .clone()
            .map(|v| (format!("{KEY}.exporter"), v)),
    };
    let export = match exporter {
        Some((_, v)) if v == "otlp" => true,
        Some((_, v)) if v == "none" => false,
        Some((key, v)) => {
            fault(
                &key,
                format!(
                    "{v:?} is not supported: the daemon exports traces with \"otlp\", or \"none\""
                ),
            );
            false
        }
        None => endpoint.is_some() || config.endpoint.is_some(),
    };
    let protocol = protocol(config, env, &mut fault);
    let endpoint = full_endpoint(config, endpoint, protocol, &mut fault);
    let headers = headers(config, env, &mut fault);
    let timeout = millis(
        env,
        &[
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ],
        config.timeout_ms,
        "timeout_ms",
        &mut fault,
    );
    let schedule_delay = millis(
        env,
        &["OTEL_BSP_SCHEDULE_DELAY"],
        config.schedule_delay_ms,
        "schedule_delay_ms",
        &mut fault,
    );
    let queue_spans = count(
        env,
        "OTEL_BSP_MAX_QUEUE_SIZE",
        config.queue_spans,
        "queue_spans",
        &mut fault,
    );
    let batch_spans = count(
        env,
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        config.batch_spans,
        "batch_spans",
        &mut fault,
    );
    if batch_spans > queue_spans {
        fault(
            &format!("{KEY}.batch_spans"),
            format!("{batch_spans} spans per export cannot exceed the queue of {queue_spans}"),
        );
    }
    let sampling = sampling(config, env, &mut fault);
    let resource = resource(config, env, host, &mut fault);
    if !faults.is_empty() {
        return Err(faults);
    }
    if disabled || !export {
        return Ok(None);
    }
    Ok(Some(Settings {
        endpoint,
        protocol,
        headers,
        timeout,
        resource,
        sampling,
        max_links_per_span: config.max_links_per_span,
        queue_spans,
        batch_spans,
        schedule_delay,
    }))
}

type Report<'a> = dyn FnMut(&str, String) + 'a;

fn protocol(config: &TracingConfig, env: Env<'_>, fault: &mut Report<'_>) -> Protocol {
    let (key, value) = match first(
        env,
        &[
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ],
    ) {
        Some((key, v)) => (key.to_owned(), v),
        None => (format!("{KEY}.protocol"), config.protocol.clone()),
    };
    match value.as_str() {
        "http/protobuf" => Protocol::HttpProtobuf,
        "grpc" => Protocol::Grpc,
        other => {
            fault(
                &key,
                format!("{other:?} is not supported: use \"http/protobuf\" or \"grpc\""),
            );
            Protocol::HttpProtobuf
        }
    }
}

/// The URL spans go to: a signal endpoint as it is, a base endpoint with `/v1/traces` for http, or
/// the protocol's default on localhost.
fn full_endpoint(
    config: &TracingConfig,
    from_env: Option<(&'static str, String)>,
    protocol: Protocol,
    fault: &mut Report<'_>,
) -> String {
    let (key, url, as_is) = match from_env {
        Some((key, url)) => (key.to_owned(), url, key.contains("TRACES")),
        None => match &config.endpoint {
            Some(url) => (format!("{KEY}.endpoint"), url.trim().to_owned(), false),
            None => match protocol {
                Protocol::HttpProtobuf => (String::new(), "http://localhost:4318".into(), false),
                Protocol::Grpc => (String::new(), "http://localhost:4317".into(), false),
            },
        },
    };
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    if !scheme_ok || url.parse::<http::Uri>().is_err() {
        fault(
            &key,
            format!(
                "{:?} is not an http:// or https:// URL",
                crate::shared::mask_url(&url)
            ),
        );
        return url;
    }
    match (protocol, as_is) {
        (Protocol::HttpProtobuf, false) => format!("{}/v1/traces", url.trim_end_matches('/')),
        _ => url,
    }
}

/// The file's headers, then the environment's (`key=value,...`, values percent-decoded) over them.
fn headers(
    config: &TracingConfig,
    env: Env<'_>,
    fault: &mut Report<'_>,
) -> BTreeMap<String, String> {
    let mut given: Vec<(String, String, String)> = config
        .headers
        .iter()
        .map(|(name, value)| (format!("{KEY}.headers.{name}"), name.clone(), value.clone()))
        .collect();
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        if let Some((key, list)) = first(env, &[var]) {
            let parsed = pairs(key, &list, fault);
            given.extend(parsed.into_iter().map(|(n, v)| (key.to_owned(), n, v)));
        }
    }
    let mut out = BTreeMap::new();
    for (key, name, value) in given {
        let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && http::HeaderValue::from_str(&value).is_ok();
        if valid {
            out.insert(name.to_ascii_lowercase(), value);
        } else {
            // The value is a secret: name the header only.
            fault(&key, format!("header {name:?} is not a valid HTTP header"));
        }
    }
    out
}

/// Splits `key=value,...` (W3C baggage style, values percent-decoded); malformed entries are faults.
fn pairs(key: &str, list: &str, fault: &mut Report<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => match percent_decode(v.trim()) {
                Some(v) => out.push((k.trim().to_owned(), v)),
                None => fault(
                    key,
                    format!("the value of {:?} is badly percent-encoded", k.trim()),
                ),
            },
            _ => fault(key, "an entry is not key=value".to_owned()),
        }
    }
    out
}

/// `%XX` sequences decoded; `None` when one is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A duration in milliseconds from the first variable set, else the file's.
fn millis(
    env: Env<'_>,
    vars: &[&'static str],
    file: u64,
    file_key: &str,
    fault: &mut Report<'_>,
) -> Duration {
    let (key, value) = match first(env, vars) {
        Some((key, v)) => (key.to_owned(), v.parse::<u64>().map_err(|_| v)),
        None => (format!("{KEY}.{file_key}"), Ok(file)),
    };
    match value {
        Ok(0) => {
            fault(&key, "must be at least 1 millisecond".into());
            Duration::from_millis(1)
        }
        Ok(ms) => Duration::from_millis(ms),
        Err(v) => {
            fault(&key, format!("{v:?} is not a whole number of milliseconds"));
            Duration::from_millis(1)
        }
    }
}

/// A positive count from the variable, else the file's.
fn count(
    env: Env<'_>,
    var: &'static str,
    file: usize,
    file_key: &str,
    fault: &mut Report<'_>,
) -> usize {
    let (key, value) = match first(env, &[var]) {
        Some((key, v)) => (key.to_owned(), v.parse::<usize>().map_err(|_| v)),
        None => (format!("{KEY}.{file_key}"), Ok(file)),
    };
    match value {
        Ok(0) => {
            fault(&key, "must be at least 1".into());
            1
        }
        Ok(n) => n,
        Err(v) => {
            fault(&key, format!("{v:?} is not a positive whole number"));
            1
        }
    }
}

fn sampling(config: &TracingConfig, env: Env<'_>, fault: &mut Report<'_>) -> Sampling {
    let (key, name) = match first(env, &["OTEL_TRACES_SAMPLER"]) {
        Some((key, v)) => (key.to_owned(), v),
        None => (format!("{KEY}.sampler"), config.sampler.clone()),
    };
    let ratio = |fault: &mut Report<'_>| -> f64 {
        let (arg_key, arg) = match first(env, &["OTEL_TRACES_SAMPLER_ARG"]) {
            Some((k, v)) => (k.to_owned(), v.parse::<f64>().map_err(|_| v)),
            None => (
                format!("{KEY}.sampler_arg"),
                Ok(config.sampler_arg.unwrap_or(1.0)),
            ),
        };
        match arg {
            Ok(r) if (0.0..=1.0).contains(&r) => r,
            Ok(r) => {
                fault(&arg_key, format!("{r} is not a ratio between 0 and 1"));
                1.0
            }
            Err(v) => {
                fault(&arg_key, format!("{v:?} is not a ratio between 0 and 1"));
                1.0
            }
        }
    };
    match name.as_str() {
        "always_on" => Sampling::AlwaysOn,
        "always_off" => Sampling::AlwaysOff,
        "traceidratio" => Sampling::Ratio(ratio(fault)),
        "parentbased_always_on" => Sampling::ParentBased(Root::AlwaysOn),
        "parentbased_always_off" => Sampling::ParentBased(Root::AlwaysOff),
        "parentbased_traceidratio" => Sampling::ParentBased(Root::Ratio(ratio(fault))),
        other => {
            fault(&key, format!("{other:?} is not a sampler this daemon knows (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"));
            Sampling::AlwaysOn
        }
    }
}

/// Detected attributes, then the file's, then `OTEL_RESOURCE_ATTRIBUTES`; `service.name` from
/// `OTEL_SERVICE_NAME`, else those, else `service_name`, else [`SERVICE_NAME`].
fn resource(
    config: &TracingConfig,
    env: Env<'_>,
    host: &Host,
    fault: &mut Report<'_>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("service.name".to_owned(), SERVICE_NAME.to_owned());
    out.insert(
        "service.version".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    out.insert("service.instance.id".to_owned(), instance_id(host));
    let detected = [
        ("host.name", &host.host),
        ("k8s.pod.name", &host.pod),
        ("k8s.namespace.name", &host.namespace),
        ("k8s.node.name", &host.node),
    ];
    for (key, value) in detected {
        if let Some(v) = value {
            out.insert(key.to_owned(), v.clone());
        }
    }
    if let Some(name) = &config.service_name {
        out.insert("service.name".to_owned(), name.clone());
    }
    for (k, v) in &config.resource_attributes {
        out.insert(k.clone(), v.clone());
    }
    if let Some((key, list)) = first(env, &["OTEL_RESOURCE_ATTRIBUTES"]) {
        out.extend(pairs(key, &list, fault));
    }
    if let Some((_, name)) = first(env, &["OTEL_SERVICE_NAME"]) {
        out.insert("service.name".to_owned(), name);
    }
    out
}

/// The pod's name where there is one, else the host and process id: unique per running replica.
fn instance_id(host: &Host) -> String {
    match (&host.pod, &host.host) {
        (Some(pod), _) => pod.clone(),
        (None, Some(h)) => format!("{h}:{}", std::process::id()),
        (None, None) => std::process::id().to_string(),
    }
}

#[cfg(test)]
mod tests;
