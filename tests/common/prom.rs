//! A real Prometheus server and a real Alertmanager (Debian's packages; scripts/test installs them) on
//! free loopback ports, each with its data in a test directory, stopped when dropped.

use super::{free_port, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `$name` from the environment (scripts/test exports the tools' paths), else `default` on the PATH.
pub fn tool(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// What `promtool check metrics` says of an exposition: empty when it is valid and lint-clean.
pub fn check_metrics(body: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(tool("PROMTOOL", "promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.success() {
        true => report.trim().to_owned(),
        false => format!("promtool failed ({}): {report}", out.status),
    }
}

/// A child process killed and reaped when dropped; its log printed if the test is failing.
struct Owned {
    child: Child,
    log: PathBuf,
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(&self.log) {
                let tail = &log[log.len().saturating_sub(4096)..];
                eprintln!("--- {} (last 4 KiB) ---\n{tail}", self.log.display());
            }
        }
    }
}

/// Starts `program` (`$env`, else `default`) with `args`, its stderr in `dir/<name>.log`, and waits until
/// it answers `/-/ready` on `port` (both servers have it).
fn serve(dir: &Path, (env, default): (&str, &str), args: &[String], port: u16) -> Owned {
    let program = tool(env, default);
    let log = dir.join(format!("{default}.log"));
    let child = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} (scripts/test installs it): {e}"));
    let process = Owned { child, log };
    let ready = format!("http://127.0.0.1:{port}/-/ready");
    wait_for(
        &format!("{default} to be ready"),
        Duration::from_secs(30),
        || ureq::get(&ready).call().ok().map(|_| ()),
    );
    process
}

/// The scrape job of a test daemon on `port`: job="hestyna-obsd" (as the rules expect), the test
/// credentials.
pub fn scrape_job(port: u16) -> String {
    format!(
        "scrape_configs:\n  - job_name: hestyna-obsd\n    basic_auth:\n      username: {}\n      password: {}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
        super::USER,
        super::PASSWORD
    )
}

/// Percent-encodes a query parameter.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GET `url`: the JSON body, whatever the status.
pub fn get_json(url: &str) -> Option<serde_json::Value> {
    let mut answer = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .ok()?;
    serde_json::from_str(&answer.body_mut().read_to_string().ok()?).ok()
}

/// A Prometheus server.
pub struct Prometheus {
    pub port: u16,
    _process: Owned,
}

impl Prometheus {
    /// Starts Prometheus on `config` (its YAML text, written to `dir`), with `extra` flags, and waits
    /// until it is ready.
    pub fn start(dir: &Path, config: &str, extra: &[&str]) -> Prometheus {
        let port = free_port();
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let mut args = vec![
            format!("--config.file={}", file.display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let process = serve(dir, ("PROMETHEUS", "prometheus"), &args, port);
        Prometheus {
            port,
            _process: process,
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `data` of an instant query at `time` (Unix seconds; now if `None`), or the error Prometheus
    /// gave.
    pub fn query_at(&self, query: &str, time: Option<f64>) -> Result<serde_json::Value, String> {
        let mut url = format!("{}/api/v1/query?query={}", self.url(), encode(query));
        if let Some(t) = time {
            url.push_str(&format!("&time={t:.3}"));
        }
        let answer = get_json(&url).ok_or_else(|| format!("no answer to {url}"))?;
        if answer["status"] == "success" {
            Ok(answer["data"].clone())
        } else {
            Err(format!("{}: {}", answer["errorType"], answer["error"]))
        }
    }

    /// The result vector of an instant query now (empty on error).
    pub fn vector(&self, query: &str) -> Vec<serde_json::Value> {
        match self.query_at(query, None) {
            Ok(data) => data["result"].as_array().cloned().unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// The value of the first sample of an instant query now.
    pub fn value(&self, query: &str) -> Option<f64> {
        self.vector(query).first()?["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    /// The alerts Prometheus holds (`/api/v1/alerts`).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        get_json(&format!("{}/api/v1/alerts", self.url()))
            .and_then(|a| a["data"]["alerts"].as_array().cloned())
            .unwrap_or_default()
    }
}

/// An Alertmanager, clustering off.
pub struct Alertmanager {
    pub port: u16,
    _process: Owned,
}

impl Alertmanager {
    /// Starts Alertmanager on `config` (a file) and waits until it is ready.
    pub fn start(dir: &Path, config: &Path) -> Alertmanager {
        let port = free_port();
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.join("alertmanager").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // No gossip: it would listen on every interface.
            "--cluster.listen-address=".to_string(),
        ];
        let process = serve(
            dir,
            ("ALERTMANAGER", "prometheus-alertmanager"),
            &args,
            port,
        );
        Alertmanager {
            port,
            _process: process,
        }
    }

    /// Posts alerts (label and annotation maps) as Prometheus does, through `/api/v2/alerts`.
    pub fn post_alerts(&self, alerts: &serde_json::Value) {
        let url = format!("http://127.0.0.1:{}/api/v2/alerts", self.port);
        let body = alerts.to_string();
        let answer = ureq::post(&url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert_eq!(answer.status().as_u16(), 200);
    }

    /// The alerts it holds, with their status (`active`, `suppressed`, `inhibitedBy`).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/api/v2/alerts", self.port);
        get_json(&url)
            .and_then(|a| a.as_array().cloned())
            .unwrap_or_default()
    }
}
