//! `/metrics` keeps serving Prometheus under attack: one legitimate scraper, once a second, while from
//! other loopback addresses a password brute-forcer, 64 concurrent unknown-user requests (each a bcrypt
//! verification at cost 10) and 700 slowloris connections run. Every legitimate scrape must succeed;
//! their latencies are printed (p50, p99, max) for the closing note and `scripts/attack`, which runs this
//! against a release build. Bounded: 20 s of attack; loopback only (127.0.0.x).

mod common;

use common::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ATTACK: Duration = Duration::from_secs(20);

fn source(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

async fn connect(from: IpAddr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// One GET with basic auth on a new connection: the status (0 when the connection failed).
async fn get(from: IpAddr, to: SocketAddr, user: &str, password: &str) -> u16 {
    let Ok(mut stream) = connect(from, to).await else {
        return 0;
    };
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: obsd\r\nAuthorization: {}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        basic(user, password)
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    let mut answer = Vec::new();
    if stream.read_to_end(&mut answer).await.is_err() {
        return 0;
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // A 200 must carry the exposition, not an empty body.
    if status == 200 && !text.contains("hestyna_obsd_build_info") {
        return 0;
    }
    status
}

/// Requests in a loop until `stop`, counting them.
fn flood(
    from: IpAddr,
    to: SocketAddr,
    user: &'static str,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let _ = get(from, to, user, &format!("guess-{n}")).await;
            sent.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// A connection that sends its headers a byte every few seconds, reconnecting when cut off.
fn slowloris(from: IpAddr, to: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut stream) = connect(from, to).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let _ = stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: obsd\r\n")
                .await;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(3)).await;
                if stream.write_all(b"X-a: b\r\n").await.is_err() {
                    break;
                }
            }
        }
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[test]
fn prometheus_keeps_scraping_through_brute_force_bcrypt_floods_and_slowloris() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hash = bcrypt::hash(PASSWORD, 10).unwrap();
    let config = generator_config(dir.path(), port, "rate = 200.0").replace(USER_HASH, &hash);
    let daemon = Daemon::start(&config, dir.path(), port);
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (latencies, failures, guesses) = rt.block_on(async {
        let legit = source(1);
        // Prometheus was scraping before the attack began.
        assert_eq!(get(legit, target, USER, PASSWORD).await, 200);
        let stop = Arc::new(AtomicBool::new(false));
        let guesses = Arc::new(AtomicU64::new(0));
        let mut attackers = Vec::new();
        for _ in 0..8 {
            attackers.push(flood(
                source(2),
                target,
                USER,
                stop.clone(),
                guesses.clone(),
            ));
        }
        for i in 0..64u8 {
            let from = source(10 + i % 8);
            attackers.push(flood(from, target, "nobody", stop.clone(), guesses.clone()));
        }
        for i in 0..700u32 {
            // 7 from each of 100 addresses: under every address's cap, and together more than the
            // server's total, so the scraper gets in only through the connections kept for addresses
            // that hold none.
            attackers.push(slowloris(
                source(100 + (i % 100) as u8),
                target,
                stop.clone(),
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (mut latencies, mut failures) = (Vec::new(), Vec::new());
        let started = Instant::now();
        while started.elapsed() < ATTACK {
            let t = Instant::now();
            let answer =
                tokio::time::timeout(Duration::from_secs(10), get(legit, target, USER, PASSWORD))
                    .await;
            let took = t.elapsed();
            match answer {
                Ok(200) => latencies.push(took),
                other => failures.push(format!("{other:?} after {took:?}")),
            }
            tokio::time::sleep(Duration::from_secs(1).saturating_sub(took)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for a in attackers {
            a.abort();
        }
        (latencies, failures, guesses.load(Ordering::Relaxed))
    });
    let mut sorted = latencies.clone();
    sorted.sort();
    let total = latencies.len() + failures.len();
    let m = daemon.scrape();
    println!(
        "legitimate scrapes ok {}/{total}; p50 {:?}, p99 {:?}, max {:?}; attack requests answered {guesses}; \
         refused at accept: address_limit {}, total_limit {}; auth failures: rate_limited {}, wrong_password {}, unknown_user {}",
        latencies.len(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        sorted.last().unwrap(),
        sum(&m, "hestyna_obsd_http_connections_refused_total", &["reason=\"address_limit\""]),
        sum(&m, "hestyna_obsd_http_connections_refused_total", &["reason=\"total_limit\""]),
        sum(&m, "hestyna_obsd_http_auth_failures_total", &["reason=\"rate_limited\""]),
        sum(&m, "hestyna_obsd_http_auth_failures_total", &["reason=\"wrong_password\""]),
        sum(&m, "hestyna_obsd_http_auth_failures_total", &["reason=\"unknown_user\""]),
    );
    assert!(
        failures.is_empty(),
        "failed legitimate scrapes: {failures:?}"
    );
    assert!(total >= 15, "the scraper ran through the attack: {total}");
    // The attack was real: the brute-forcer was throttled, addresses were capped and the total filled.
    let refused = |reason: &str| {
        let label = format!("reason=\"{reason}\"");
        sum(&m, "hestyna_obsd_http_connections_refused_total", &[&label])
    };
    let throttled = sum(
        &m,
        "hestyna_obsd_http_auth_failures_total",
        &["reason=\"rate_limited\""],
    );
    assert!(throttled > 0.0);
    assert!(refused("address_limit") > 0.0);
    assert!(refused("total_limit") > 0.0);
}
