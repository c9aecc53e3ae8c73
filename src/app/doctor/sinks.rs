//! The sink checks: every SIEM sink reachable, its certificate's expiry, and the kind's health
//! request where it has one (Splunk HEC's `/services/collector/health`).

use super::{Check, DoctorOptions};
use crate::config::{ClientTlsConfig, Config, HttpEncoding, SinkConfig};
use crate::forward::sink::SinkInputs;
use std::sync::Arc;
use std::time::Duration;

/// A certificate with less than this left is a warning.
const EXPIRY_WARNING_SECS: i64 = 14 * 86_400;

pub(super) async fn checks(config: &Config, options: &DoctorOptions) -> Vec<Check> {
    let mut out = Vec::new();
    for (name, sink) in &config.forward.sinks {
        let check = format!("sink.{name}");
        let inputs = match SinkInputs::read(sink) {
            Ok(i) => i,
            Err(faults) => {
                let message = faults
                    .iter()
                    .map(|(k, m)| format!("{k}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                out.push(Check::fail(
                    check,
                    message,
                    "fix the sink's files and secrets",
                ));
                continue;
            }
        };
        out.push(match sink {
            SinkConfig::Stdout(_) => Check::ok(check, "standard output"),
            SinkConfig::File(f) => file_check(check, &f.path),
            SinkConfig::Http(h) => http_check(check, h, inputs, options.timeout).await,
            SinkConfig::Syslog(s) => {
                let tls = s.tls.as_ref().zip(inputs.tls);
                connect_check(check, &s.address, tls, options.timeout).await
            }
            SinkConfig::Kafka(k) => kafka_check(check, config, k, options.timeout).await,
        });
    }
    out
}

fn file_check(check: String, path: &std::path::Path) -> Check {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        let message = format!("{} does not exist", dir.display());
        return Check::fail(
            check,
            message,
            "create the directory, writable by the daemon's user",
        );
    }
    if path.exists() {
        if let Err(e) = std::fs::OpenOptions::new().append(true).open(path) {
            return Check::fail(
                check,
                format!("{}: {e}", path.display()),
                "the daemon's user must be able to append to it",
            );
        }
    }
    Check::ok(check, format!("{} is writable", path.display()))
}

async fn http_check(
    check: String,
    h: &crate::config::HttpSinkConfig,
    inputs: SinkInputs,
    timeout: Duration,
) -> Check {
    let Ok(url) = reqwest::Url::parse(&h.url) else {
        return Check::fail(check, "the URL does not parse", "fix url");
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Check::fail(check, "the URL has no host", "fix url");
    };
    let address = format!("{host}:{port}");
    let tls = (url.scheme() == "https")
        .then_some(&h.tls)
        .zip(inputs.tls.clone());
    let reached = connect_check(check.clone(), &address, tls, timeout).await;
    if reached.status == super::Status::Fail || h.encoding != HttpEncoding::SplunkHec {
        return reached;
    }
    // Splunk HEC's health endpoint needs no token: 200 when HEC accepts events.
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(tls) = inputs.tls {
        builder = builder.use_preconfigured_tls(tls);
    }
    let Ok(client) = builder.build() else {
        return reached;
    };
    let health = format!("{}/services/collector/health", h.url.trim_end_matches('/'));
    match client.get(&health).send().await {
        Ok(r) if r.status().is_success() => {
            Check::ok(check, format!("{}; HEC healthy", reached.message))
        }
        Ok(r) => Check::fail(
            check,
            format!("HEC health answers {}", r.status().as_u16()),
            "HEC is disabled, or the indexers are down: see Splunk's HEC status",
        ),
        Err(e) => Check::fail(
            check,
            e.without_url().to_string(),
            "HEC's health endpoint did not answer",
        ),
    }
}

/// TCP connect (and TLS handshake, with the sink's settings) within `timeout`; the certificate's expiry.
async fn connect_check(
    check: String,
    address: &str,
    tls: Option<(&ClientTlsConfig, rustls::ClientConfig)>,
    timeout: Duration,
) -> Check {
    let connect = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await;
    let stream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Check::fail(
                check,
                format!("{address}: {e}"),
                "is the SIEM up and reachable from here (firewalls, DNS)?",
            )
        }
        Err(_) => {
            return Check::fail(
                check,
                format!("{address}: no answer in {timeout:?}"),
                "is the SIEM up and reachable from here (firewalls)?",
            )
        }
    };
    let Some((settings, config)) = tls else {
        return Check::ok(check, format!("{address} accepts connections"));
    };
    tls_check(check, address, stream, settings, config, timeout).await
}

/// The TLS handshake with the sink's settings, and the days its certificate has left.
async fn tls_check(
    check: String,
    address: &str,
    stream: tokio::net::TcpStream,
    settings: &ClientTlsConfig,
    config: rustls::ClientConfig,
    timeout: Duration,
) -> Check {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_matches(['[', ']']);
    let name = settings.server_name.as_deref().unwrap_or(host).to_owned();
    let Ok(server) = rustls::pki_types::ServerName::try_from(name.clone()) else {
        return Check::fail(
            check,
            format!("{name:?} is not a server name"),
            "set tls.server_name",
        );
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let session = match tokio::time::timeout(timeout, connector.connect(server, stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let hint = "check tls.ca_file and tls.server_name against the SIEM's certificate";
            return Check::fail(check, format!("{address}: TLS: {e}"), hint);
        }
        Err(_) => {
            return Check::fail(
                check,
                format!("{address}: TLS handshake timed out"),
                "is it a TLS port?",
            )
        }
    };
    let peer = session.get_ref().1.peer_certificates();
    let expiry = peer
        .and_then(|c| c.first())
        .and_then(|c| crate::shared::certificate_not_after(c));
    let Some(expiry) = expiry else {
        return Check::ok(check, format!("{address}: TLS verified"));
    };
    let left = expiry - chrono::Utc::now().timestamp();
    let message = format!(
        "{address}: TLS verified, its certificate expires in {} days",
        left / 86_400
    );
    match left < EXPIRY_WARNING_SECS {
        true => Check::warn(
            check,
            message,
            "the SIEM's certificate must be renewed soon",
        ),
        false => Check::ok(check, message),
    }
}

async fn kafka_check(
    check: String,
    config: &Config,
    k: &crate::config::KafkaSinkConfig,
    timeout: Duration,
) -> Check {
    use rdkafka::producer::{BaseProducer, Producer};
    let mut c = rdkafka::ClientConfig::new();
    for (key, value) in config.kafka.producer_properties() {
        c.set(key, value);
    }
    if let Some(brokers) = &k.brokers {
        c.set("bootstrap.servers", brokers);
    }
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    let topic = k.topic.clone();
    let found = tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = c.create().map_err(|e| e.to_string())?;
        let metadata = producer
            .client()
            .fetch_metadata(Some(&topic), timeout)
            .map_err(|e| e.to_string())?;
        let t = metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty());
        Ok::<bool, String>(t.is_some())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match found {
        Ok(true) => Check::ok(check, format!("topic {:?} is there", k.topic)),
        Ok(false) => Check::fail(
            check,
            format!("topic {:?} does not exist", k.topic),
            "create it, or correct topic",
        ),
        Err(e) => Check::fail(check, e, "check brokers and properties of the sink"),
    }
}
