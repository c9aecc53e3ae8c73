//! Compressed scrapes: `/metrics` answers gzip to a client that accepts it (Prometheus always does), and
//! a real Prometheus 2.42 scraping it reads the same values as an uncompressed scrape.

mod common;

use common::prom::{scrape_job, Prometheus};
use common::*;
use std::io::Read as _;
use std::time::Duration;

/// The derived series of an exposition (self metrics aside), sorted.
fn derived(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("hestyna_") && !l.starts_with("hestyna_obsd_"))
        .collect();
    lines.sort_unstable();
    lines
}

/// A daemon that has derived 5,000 generated events.
fn settled(dir: &std::path::Path) -> Daemon {
    let port = free_port();
    let config = generator_config(dir, port, "rate = 0.0\ncount = 5000\nseed = 3");
    let daemon = Daemon::start(&config, dir, port);
    wait_for("every event derived", Duration::from_secs(60), || {
        let m = daemon.scrape();
        let read = sum(
            &m,
            "hestyna_obsd_events_received_total",
            &["pipeline=\"metrics\""],
        );
        (read == 5000.0).then_some(())
    });
    daemon
}

#[test]
fn metrics_answers_gzip_when_asked_and_the_same_series() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = settled(dir.path());
    let (_, plain) = daemon.get("/metrics", Some((USER, PASSWORD)));
    let mut response = agent()
        .get(format!("http://{}/metrics", daemon.http))
        .header("Authorization", basic(USER, PASSWORD))
        .header("Accept-Encoding", "gzip")
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(header("vary").as_deref(), Some("accept-encoding"));
    let mut compressed = Vec::new();
    response
        .body_mut()
        .as_reader()
        .read_to_end(&mut compressed)
        .unwrap();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(!derived(&text).is_empty());
    assert_eq!(derived(&text), derived(&plain));
    assert!(
        compressed.len() * 5 <= text.len(),
        "{} bytes for {}",
        compressed.len(),
        text.len()
    );
    // Without Accept-Encoding, identity, and still the Vary header.
    let (status, headers, _) = http_get_full(daemon.http, "/metrics", Some(&basic(USER, PASSWORD)));
    assert_eq!(status, 200);
    assert!(!headers.contains_key("content-encoding"), "{headers:?}");
    assert_eq!(
        headers.get("vary").map(String::as_str),
        Some("accept-encoding")
    );
}

#[test]
fn prometheus_scrapes_compressed_and_reads_the_same_values() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = settled(dir.path());
    let (_, plain) = daemon.get("/metrics", Some((USER, PASSWORD)));
    let series = derived(&plain);
    let expected_sum: f64 = series
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    let config = format!(
        "global:\n  scrape_interval: 1s\n{}",
        scrape_job(daemon.http.port())
    );
    let prometheus = Prometheus::start(dir.path(), &config, &[]);
    let selector = r#"{__name__=~"hestyna_.+",__name__!~"hestyna_obsd_.+",job="hestyna-obsd"}"#;
    let (count, total) = wait_for(
        "Prometheus to hold the series",
        Duration::from_secs(60),
        || {
            let count = prometheus.value(&format!("count({selector})"))?;
            let total = prometheus.value(&format!("sum({selector})"))?;
            (count == series.len() as f64).then_some((count, total))
        },
    );
    assert_eq!(count, series.len() as f64);
    assert!(
        (total - expected_sum).abs() <= expected_sum.abs() * 1e-9,
        "{total} against {expected_sum}"
    );
    // Prometheus asked for gzip: the daemon counts what it sent, by encoding.
    let m = daemon.scrape();
    assert!(
        sum(
            &m,
            "hestyna_obsd_http_response_bytes_total",
            &["encoding=\"gzip\""]
        ) > 0.0
    );
    assert_eq!(prometheus.value("up{job=\"hestyna-obsd\"}"), Some(1.0));
}
