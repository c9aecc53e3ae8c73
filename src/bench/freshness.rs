//! Freshness: how long an event takes from being produced to being visible in `/metrics`.
//!
//! A load thread produces generated events at a steady rate; every `1 / probes_per_sec` a probe event
//! (an `llm_run` of its own organization, `probe-<n>`) is produced and its produce time kept. A scraper
//! fetches `/metrics` every 20 ms and records, for each probe seen for the first time, the time since it
//! was produced, in an hdrhistogram. The scrape interval bounds the resolution (20 ms plus one scrape).

use super::BenchError;
use crate::source::generator::{EventGenerator, GeneratorSettings};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to do.
#[derive(Debug, Clone)]
pub struct FreshnessSettings {
    /// Producer properties, `bootstrap.servers` included.
    pub producer_properties: Vec<(String, String)>,
    /// The topic the daemon reads.
    pub topic: String,
    /// Load events per second.
    pub rate: f64,
    /// Probe events per second.
    pub probes_per_sec: f64,
    /// How long to produce.
    pub duration: Duration,
    /// `http://host:port/metrics`.
    pub metrics_url: String,
    /// Basic credentials for the scrape.
    pub credentials: Option<(String, String)>,
}

/// What was measured, in milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Freshness {
    /// Probe events produced.
    pub probes: u64,
    /// Probes seen in `/metrics`.
    pub seen: u64,
    /// Load events produced besides the probes.
    pub load_events: u64,
    /// Median time from produce to visible, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, in milliseconds.
    pub p90_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
    /// The slowest probe, in milliseconds.
    pub max_ms: f64,
    /// Every probe's latency, in the order seen.
    #[serde(skip)]
    pub samples_ms: Vec<u64>,
}

fn producer(
    properties: &[(String, String)],
) -> Result<ThreadedProducer<DefaultProducerContext>, BenchError> {
    let mut config = ClientConfig::new();
    config.set("linger.ms", "5").set("acks", "1");
    for (k, v) in properties {
        config.set(k, v);
    }
    Ok(config.create()?)
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: &str,
    payload: &[u8],
) {
    let mut record = BaseRecord::<str, [u8]>::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Produces generated events at `rate` until `stop`, on its own thread; how many it produced.
fn start_load(
    settings: &FreshnessSettings,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<u64>, BenchError> {
    let producer = producer(&settings.producer_properties)?;
    let (topic, rate) = (settings.topic.clone(), settings.rate);
    Ok(std::thread::spawn(move || {
        let started = Instant::now();
        let mut n = 0u64;
        let events = EventGenerator::new(GeneratorSettings {
            seed: 99,
            invalid_ratio: 0.0,
            ..GeneratorSettings::default()
        });
        for event in events {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let due = Duration::from_secs_f64(n as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            send(&producer, &topic, &event.key, &event.payload);
            n += 1;
        }
        let _ = producer.flush(rdkafka::util::Timeout::After(Duration::from_secs(30)));
        n
    }))
}

/// A probe event: an LLM run of its own organization, `probe-<n>`, stamped now.
fn probe_event(n: u64) -> String {
    serde_json::json!({
        "event_id": format!("probe-{n}"),
        "type": "llm_run",
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "organization": format!("probe-{n}"),
        "run_id": format!("probe-run-{n}"),
        "intent": "probe",
        "outcome": "success",
        "latency_ms": 1.0,
    })
    .to_string()
}

/// Runs the load, the probes and the scraper for `settings.duration` (plus up to 5 s for the last
/// probes to show), and reports.
pub fn run(settings: &FreshnessSettings) -> Result<Freshness, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(settings, stop.clone())?;
    let probes = producer(&settings.producer_properties)?;
    let produced: Arc<parking_lot::Mutex<HashMap<u64, Instant>>> = Default::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Failed(e.to_string()))?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000, 3)
        .map_err(|e| BenchError::Failed(e.to_string()))?;
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / settings.probes_per_sec);
    let mut next_probe = started;
    let mut probe = 0u64;
    let mut next_scrape = started;
    let mut samples = Vec::new();
    let end = started + settings.duration;
    loop {
        let now = Instant::now();
        if now < end && now >= next_probe {
            let org = format!("probe-{probe}");
            let payload = probe_event(probe);
            send(&probes, &settings.topic, &org, payload.as_bytes());
            produced.lock().insert(probe, Instant::now());
            probe += 1;
            next_probe += interval;
        }
        if now >= next_scrape {
            next_scrape = now + Duration::from_millis(20);
            let mut request = client.get(&settings.metrics_url);
            if let Some((user, password)) = &settings.credentials {
                request = request.basic_auth(user, Some(password));
            }
            let body = runtime.block_on(async { request.send().await?.text().await })?;
            let seen_at = Instant::now();
            let mut waiting = produced.lock();
            for found in body.split("organization=\"probe-").skip(1) {
                let id = found.split('"').next().and_then(|n| n.parse::<u64>().ok());
                if let Some(at) = id.and_then(|id| waiting.remove(&id)) {
                    let ms = seen_at.duration_since(at).as_millis().max(1) as u64;
                    histogram.saturating_record(ms);
                    samples.push(ms);
                }
            }
            if now >= end && (waiting.is_empty() || now >= end + Duration::from_secs(5)) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    let load_events = load
        .join()
        .map_err(|_| BenchError::Failed("load thread panicked".into()))?;
    let _ = probes.flush(rdkafka::util::Timeout::After(Duration::from_secs(10)));
    let q = |p: f64| histogram.value_at_quantile(p) as f64;
    Ok(Freshness {
        probes: probe,
        seen: histogram.len(),
        load_events,
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p99_ms: q(0.99),
        max_ms: histogram.max() as f64,
        samples_ms: samples,
    })
}
