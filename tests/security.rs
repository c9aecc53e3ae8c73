//! The secured endpoint: credentials, bearer tokens, organization scopes, networks and X-Forwarded-For,
//! TLS and mutual TLS, reloads, the throttle, the separate health listener; and a real Prometheus
//! scraping over HTTPS with basic auth.

mod common;

use common::pki::{pki, Pki};
use common::prom::Prometheus;
use common::*;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

const TOKEN: &str = "grafana-acme-3d1f0c9b8a7e6d5c";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A generator-fed daemon whose listener is secured by `web_config` (YAML), on `listen`.
fn daemon(dir: &Path, web_config: &str, listen: SocketAddr, extra: &str, ready: &str) -> Daemon {
    let web = dir.join("web.yml");
    std::fs::write(&web, web_config).unwrap();
    let config = format!(
        r#"
[source]
kind = "generator"
[source.generator]
rate = 0.0
count = 3000
organizations = 4
[dead_letter]
kind = "file"
path = "{dlq}"
[http]
listen = "{listen}"
web_config_file = "{web}"
{extra}
[pipelines.forward]
enabled = false
"#,
        dlq = dir.join("dlq.jsonl").display(),
        web = web.display(),
    );
    let port = listen.port();
    let path = dir.join(format!("config-{port}.toml"));
    std::fs::write(&path, config).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
        .arg("--config")
        .arg(&path)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("daemon-{port}.log"))).unwrap())
        .spawn()
        .unwrap();
    Daemon::adopt(child, listen, dir, ready)
}

fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
    http_get(addr, path, auth)
}

/// A raw HTTP/1.1 GET from a chosen loopback source address (to test network rules).
fn get_from(source: IpAddr, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = if source.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response).await;
        response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    })
}

fn users(extra: &str) -> String {
    format!(
        "basic_auth_users:\n  {USER}: \"{USER_HASH}\"\n  team-acme: \"{USER_HASH}\"\nbearer_tokens:\n  grafana-acme: {}\norganizations:\n  {USER}: [\"*\"]\n  grafana-acme: [acme]\n  team-acme: [acme]\n{extra}",
        sha256_hex(TOKEN)
    )
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn credentials_tokens_and_organization_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let addr = loopback(free_port());
    let d = daemon(dir.path(), &users(""), addr, "", "/livez");
    let (status, headers, _) = http_get_full(addr, "/metrics", None);
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"].contains("Basic realm=")
            && headers["www-authenticate"].contains("Bearer")
    );
    assert_eq!(get(addr, "/metrics", Some("Basic @@@")).0, 401, "malformed");
    assert_eq!(
        get(addr, "/metrics", Some(&basic(USER, "nope"))).0,
        401,
        "wrong password"
    );
    assert_eq!(
        get(addr, "/metrics", Some(&basic("mallory", PASSWORD))).0,
        401,
        "unknown user"
    );
    assert_eq!(
        get(addr, "/metrics", Some("Bearer not-the-token")).0,
        401,
        "wrong token"
    );

    let full = wait_for(
        "every organization's series",
        Duration::from_secs(30),
        || {
            let (status, body) = get(addr, "/metrics", Some(&basic(USER, PASSWORD)));
            assert_eq!(status, 200);
            ["acme", "globex", "initech", "umbrella"]
                .iter()
                .all(|o| body.contains(&format!("organization=\"{o}\"")))
                .then_some(body)
        },
    );
    assert!(full.contains("hestyna_obsd_events_received_total"));

    for auth in [format!("Bearer {TOKEN}"), basic("team-acme", PASSWORD)] {
        let (status, body) = get(addr, "/metrics", Some(&auth));
        assert_eq!(status, 200);
        assert!(body.contains("organization=\"acme\""), "{body}");
        for other in ["globex", "initech", "umbrella", "__overflow__"] {
            assert!(
                !body.contains(&format!("organization=\"{other}\"")),
                "{other} leaked to a scoped reader"
            );
        }
        assert!(
            !body.contains("hestyna_obsd_"),
            "self metrics are not a scoped reader's"
        );
        let (status, json) = get(addr, "/api/v1/quantiles", Some(&auth));
        assert_eq!(status, 200);
        assert!(
            json.contains("\"acme\"") && !json.contains("\"globex\""),
            "{json}"
        );
    }

    let m = d.scrape();
    for reason in [
        "missing",
        "malformed",
        "wrong_password",
        "unknown_user",
        "bad_token",
    ] {
        assert!(
            m[&format!("hestyna_obsd_http_auth_failures_total{{reason=\"{reason}\"}}")] >= 1.0,
            "{reason}"
        );
    }
    assert!(
        !d.log().contains(PASSWORD) && !d.log().contains(TOKEN),
        "secrets never logged"
    );
}

#[test]
fn networks_and_forwarded_for() {
    let dir = tempfile::tempdir().unwrap();
    let addr = loopback(free_port());
    let rules = "allowed_networks: [127.0.0.2/32, \"::1/128\"]\ntrusted_proxies: [127.0.0.3/32]\n";
    // Peers outside the networks are closed at accept, probes from them included: probes go to the
    // plain health listener.
    let health = loopback(free_port());
    let extra = format!("health_listen = \"{health}\"");
    let _d = daemon(dir.path(), rules, addr, &extra, "/livez@health");
    let at = |ip: &str| ip.parse::<IpAddr>().unwrap();
    assert_eq!(
        get_from(at("127.0.0.2"), addr, "/metrics", &[]),
        200,
        "inside"
    );
    assert_eq!(
        get_from(at("127.0.0.1"), addr, "/metrics", &[]),
        0,
        "outside: closed at accept, no answer"
    );
    assert_eq!(
        get_from(
            at("127.0.0.1"),
            addr,
            "/metrics",
            &[("X-Forwarded-For", "127.0.0.2")]
        ),
        0,
        "spoofed by an untrusted peer"
    );
    assert_eq!(
        get_from(
            at("127.0.0.3"),
            addr,
            "/metrics",
            &[
                ("X-Forwarded-For", "127.0.0.2"),
                ("X-Forwarded-For", "127.0.0.9")
            ]
        ),
        403,
        "every line is read: the right-most hop of the last one is the client"
    );
    assert_eq!(
        get_from(
            at("127.0.0.3"),
            addr,
            "/metrics",
            &[
                ("X-Forwarded-For", "127.0.0.9"),
                ("X-Forwarded-For", "127.0.0.2")
            ]
        ),
        200,
        "a proxy that adds a line"
    );
    assert_eq!(
        get_from(
            at("127.0.0.3"),
            addr,
            "/metrics",
            &[("X-Forwarded-For", "127.0.0.2")]
        ),
        200,
        "through a trusted proxy"
    );
    assert_eq!(
        get_from(
            at("127.0.0.3"),
            addr,
            "/metrics",
            &[("X-Forwarded-For", "127.0.0.9")]
        ),
        403
    );
    assert_eq!(
        get_from(at("127.0.0.3"), addr, "/metrics", &[]),
        403,
        "the proxy itself is outside"
    );
    assert_eq!(
        get_from(at("127.0.0.1"), health, "/livez", &[]),
        200,
        "health stays open on its own listener"
    );

    // IPv6: a daemon on [::1].
    let dir6 = tempfile::tempdir().unwrap();
    let addr6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, free_port()));
    let _d6 = daemon(
        dir6.path(),
        "allowed_networks: [\"::1/128\"]\n",
        addr6,
        "",
        "/livez",
    );
    assert_eq!(get_from(at("::1"), addr6, "/metrics", &[]), 200);
    let dir7 = tempfile::tempdir().unwrap();
    let addr7 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, free_port()));
    let health7 = format!("health_listen = \"{}\"", loopback(free_port()));
    let _d7 = daemon(
        dir7.path(),
        "allowed_networks: [\"fd00::/8\"]\n",
        addr7,
        &health7,
        "/livez@health",
    );
    assert_eq!(
        get_from(at("::1"), addr7, "/metrics", &[]),
        0,
        "closed at accept"
    );
}

fn tls_agent(pki: &Pki, with_client_cert: bool) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let ca = Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let mut tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[ca]));
    if with_client_cert {
        let cert = Certificate::from_pem(&std::fs::read(&pki.client_cert).unwrap()).unwrap();
        let key = PrivateKey::from_pem(&std::fs::read(&pki.client_key).unwrap()).unwrap();
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .build()
        .new_agent()
}

#[test]
fn tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let addr = loopback(free_port());
    let health = loopback(free_port());
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_ca_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS12\nhttp_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n{}",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display(),
        users("")
    );
    let _d = daemon(
        dir.path(),
        &web,
        addr,
        &format!("health_listen = \"{health}\""),
        "/livez@health",
    );
    let url = format!("https://127.0.0.1:{}/metrics", addr.port());

    let with_cert = tls_agent(&pki, true);
    let mut response = with_cert
        .get(&url)
        .header("Authorization", basic(USER, PASSWORD))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert!(response
        .body_mut()
        .read_to_string()
        .unwrap()
        .contains("hestyna_obsd_build_info"));
    assert_eq!(
        with_cert.get(&url).call().unwrap().status(),
        401,
        "a certificate is not a password"
    );

    assert!(
        tls_agent(&pki, false)
            .get(&url)
            .header("Authorization", basic(USER, PASSWORD))
            .call()
            .is_err(),
        "no client certificate: refused"
    );
    assert_eq!(
        get(addr, "/metrics", Some(&basic(USER, PASSWORD))).0,
        0,
        "plain HTTP on the TLS port fails"
    );
    assert_eq!(
        get(health, "/livez", None).0,
        200,
        "probes use the plain health listener"
    );
    assert_eq!(get(health, "/readyz", None).0, 200);
    assert_eq!(get(health, "/metrics", None).0, 404, "nothing else there");
}

#[test]
fn a_changed_file_is_reloaded_and_a_broken_one_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let addr = loopback(free_port());
    let d = daemon(
        dir.path(),
        &format!("basic_auth_users:\n  old: \"{USER_HASH}\"\n"),
        addr,
        "",
        "/livez",
    );
    assert_eq!(get(addr, "/metrics", Some(&basic("old", PASSWORD))).0, 200);
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  new: \"{USER_HASH}\"\n")).unwrap();
    // Wait on the log, not by trying the new user: failed attempts would trip the throttle.
    let reloads = |d: &Daemon| d.log().matches("web configuration reloaded").count();
    wait_for("the reload", Duration::from_secs(15), || {
        (reloads(&d) == 1).then_some(())
    });
    assert_eq!(get(addr, "/metrics", Some(&basic("new", PASSWORD))).0, 200);
    assert_eq!(get(addr, "/metrics", Some(&basic("old", PASSWORD))).0, 401);

    std::fs::write(&web, "basic_auth_users: [this is not a map\n").unwrap();
    wait_for(
        "the failed reload to be counted",
        Duration::from_secs(15),
        || {
            let (_, body) = get(addr, "/metrics", Some(&basic("new", PASSWORD)));
            body.contains("hestyna_obsd_web_config_reloads_total{result=\"failure\"} 1")
                .then_some(())
        },
    );
    assert_eq!(
        get(addr, "/metrics", Some(&basic("new", PASSWORD))).0,
        200,
        "the old file stays in force"
    );

    // SIGHUP re-reads even when the file looks unchanged to the poller: same length, same mtime.
    std::fs::write(&web, format!("basic_auth_users:\n  new: \"{USER_HASH}\"\n")).unwrap();
    wait_for("the repaired file", Duration::from_secs(15), || {
        (reloads(&d) == 2).then_some(())
    });
    let mtime = std::fs::metadata(&web).unwrap().modified().unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  hup: \"{USER_HASH}\"\n")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&web)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(reloads(&d), 2, "the poller saw nothing");
    d.signal(libc::SIGHUP);
    wait_for("the reload on SIGHUP", Duration::from_secs(15), || {
        (reloads(&d) == 3).then_some(())
    });
    assert_eq!(get(addr, "/metrics", Some(&basic("hup", PASSWORD))).0, 200);
}

#[test]
fn repeated_failures_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let addr = loopback(free_port());
    let _d = daemon(dir.path(), &users(""), addr, "", "/livez");
    for _ in 0..10 {
        assert_eq!(get(addr, "/metrics", Some(&basic(USER, "guess"))).0, 401);
    }
    let (status, headers, _) = http_get_full(addr, "/metrics", Some(&basic(USER, PASSWORD)));
    assert_eq!(status, 429, "even the right password, once throttled");
    assert!(headers["retry-after"].parse::<u64>().unwrap() <= 60);
    assert_eq!(get(addr, "/livez", None).0, 200);
}

#[test]
fn a_real_prometheus_scrapes_over_https_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let addr = loopback(free_port());
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {USER}: \"{USER_HASH}\"\n",
        pki.server_cert.display(),
        pki.server_key.display()
    );
    let _d = daemon(dir.path(), &web, addr, "", "");
    let agent = tls_agent(&pki, false);
    let url = format!("https://127.0.0.1:{}/metrics", addr.port());
    let scrape = || {
        let body = agent
            .get(&url)
            .header("Authorization", basic(USER, PASSWORD))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        Some(parse_metrics(&body))
    };
    // The generator stops after 3,000 events: once the metrics pipeline has read them all and finished
    // its last batch (counted as read before it is derived), the values settle.
    wait_for("the generator to finish", Duration::from_secs(30), || {
        let m = scrape()?;
        let read = sum(
            &m,
            "hestyna_obsd_events_received_total",
            &["pipeline=\"metrics\""],
        );
        (read == 3000.0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let ours = scrape().expect("a scrape");
    // The served certificate is watched for expiry.
    let expiry =
        "hestyna_obsd_tls_certificate_expiry_timestamp_seconds{listener=\"main\",sink=\"\"}";
    assert_eq!(ours[expiry], common::pki::not_after(&pki.server_cert));

    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: hestyna\n    scheme: https\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: {USER}\n      password: {PASSWORD}\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        pki.ca.display(),
        addr.port()
    );
    let prometheus = Prometheus::start(dir.path(), &config, &[]);
    let query = |q: &str| prometheus.value(q);
    wait_for(
        "the target to be up in Prometheus",
        Duration::from_secs(60),
        || (query("up{job=\"hestyna\"}") == Some(1.0)).then_some(()),
    );
    for metric in [
        "hestyna_llm_runs_total",
        "hestyna_integration_calls_total",
        "hestyna_automation_runs_total",
        "hestyna_llm_latency_seconds_count",
    ] {
        let want = sum(&ours, metric, &[]);
        let got = wait_for(metric, Duration::from_secs(30), || {
            query(&format!("sum({metric})"))
        });
        assert_eq!(got, want, "{metric} in Prometheus");
    }
    let acme = sum(&ours, "hestyna_llm_runs_total", &["organization=\"acme\""]);
    assert_eq!(
        query("sum(hestyna_llm_runs_total{organization=\"acme\"})"),
        Some(acme)
    );
}

#[test]
fn slow_headers_are_cut_off_and_bodies_refused() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let addr = loopback(free_port());
    let _d = daemon(dir.path(), &users(""), addr, "", "/livez");
    // Slowloris: a request line, then nothing. The server gives up on the headers after 10 s.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(19),
        "the connection was closed by the server after {waited:?}"
    );
    // A body, where none is taken.
    let mut post = std::net::TcpStream::connect(addr).unwrap();
    post.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    let mut answer = String::new();
    post.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Oversized headers.
    let mut big = std::net::TcpStream::connect(addr).unwrap();
    let filler = "a".repeat(64 * 1024);
    let _ = big.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n").as_bytes(),
    );
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(
        !answer.starts_with("HTTP/1.1 200") && !answer.starts_with("HTTP/1.1 401"),
        "{}",
        &answer[..answer.len().min(80)]
    );
}
