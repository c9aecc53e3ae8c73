//! The syslog sink against a real rsyslog (Debian's, installed by scripts/test): RFC 5424 with octet
//! counting over TCP and over TLS (RFC 5425, rsyslog's GnuTLS driver), parsed by rsyslog and written by
//! it to a file that the test reads; and a receiver restart in the middle.

mod common;

use common::pki::pki;
use common::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// rsyslogd on a free loopback port, writing what it parses to `received.log`, one line per message:
/// `timestamp|hostname|app-name|procid|msgid|facility|severity|msg`.
struct Rsyslog {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    conf: PathBuf,
}

impl Rsyslog {
    /// Plain TCP, or TLS with this server certificate and key (and CA file).
    fn start(dir: &Path, tls: Option<(&Path, &Path, &Path)>) -> Rsyslog {
        let port = free_port();
        let dir = dir.join(format!("rsyslog-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (global_tls, module_tls) = match tls {
            Some((ca, cert, key)) => (
                format!(
                    " defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
                    ca.display(),
                    cert.display(),
                    key.display()
                ),
                " streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\"",
            ),
            None => (String::new(), ""),
        };
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{dir}" maxMessageSize="256k"{global_tls})
module(load="imtcp"{module_tls})
template(name="fields" type="string" string="%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%syslogfacility%|%syslogseverity%|%msg%\n")
ruleset(name="siem") {{
  action(type="omfile" file="{dir}/received.log" template="fields")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="siem")
"#,
                dir = dir.display()
            ),
        )
        .unwrap();
        let mut r = Rsyslog {
            child: None,
            port,
            dir,
            conf,
        };
        r.run();
        r
    }

    fn run(&mut self) {
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(self.dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("rsyslogd (scripts/install-debian-tools installs it)");
        self.child = Some(child);
        wait_for("rsyslogd to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    /// Stops it (SIGTERM: it writes what it has read, then exits).
    #[allow(unsafe_code)] // kill(2) only: see the SAFETY comment inside.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) with the pid of a child we own and have not reaped; no memory is touched.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// The messages written so far.
    fn messages(&self) -> Vec<Message> {
        std::fs::read_to_string(self.dir.join("received.log"))
            .unwrap_or_default()
            .lines()
            .map(Message::parse)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One message as rsyslog parsed it.
#[derive(Debug)]
struct Message {
    timestamp: String,
    hostname: String,
    app: String,
    procid: String,
    msgid: String,
    facility: u8,
    severity: u8,
    record: serde_json::Value,
}

impl Message {
    fn parse(line: &str) -> Message {
        let parts: Vec<&str> = line.splitn(8, '|').collect();
        assert_eq!(parts.len(), 8, "{line}");
        Message {
            timestamp: parts[0].to_owned(),
            hostname: parts[1].to_owned(),
            app: parts[2].to_owned(),
            procid: parts[3].to_owned(),
            msgid: parts[4].to_owned(),
            facility: parts[5].parse().unwrap(),
            severity: parts[6].parse().unwrap(),
            record: serde_json::from_str(parts[7]).unwrap_or_else(|e| panic!("{e}: {line}")),
        }
    }
}

/// Events with a failure, an invalid record and non-ASCII text among them.
fn events(seed: u64, n: u64) -> Vec<Produced> {
    let mut events = generated(seed, n, 0.0);
    events.push(Produced {
        key: None,
        payload: "{\"event_id\":\"naïve-1\",\"type\":\"request_lifecycle\",\"occurred_at\":\"2026-11-27T08:00:00.5Z\",\"organization\":\"société\",\"request_id\":\"q\",\"stage\":\"intake\",\"note\":\"café ☕\"}".as_bytes().to_vec(),
        headers: vec![],
    });
    events.push(Produced {
        key: None,
        payload: b"{\"not\":\"an event\"}".to_vec(),
        headers: vec![],
    });
    events
}

fn ids(messages: &[Message]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for m in messages {
        *out.entry(m.record["event"]["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    out
}

#[test]
fn rsyslog_parses_every_record_and_a_restart_loses_none() {
    let (broker, topic, dlq) = broker_with_topics(2);
    let dir = tempfile::tempdir().unwrap();
    let mut rsyslog = Rsyslog::start(dir.path(), None);
    let sink = format!(
        r#"
[forward.sinks.syslog]
kind = "syslog"
address = "127.0.0.1:{}"
batch = {{ max_events = 100, timeout_ms = 20 }}
retry = {{ initial_backoff_ms = 50, max_backoff_ms = 300 }}
"#,
        rsyslog.port
    );
    let daemon = start_forwarding(&broker, &topic, &dlq, dir.path(), &sink);
    let first = events(21, 400);
    broker.produce(&topic, &first);
    let messages = wait_for("402 messages at rsyslog", Duration::from_secs(60), || {
        let m = rsyslog.messages();
        (m.len() >= first.len()).then_some(m)
    });
    assert_eq!(messages.len(), first.len());
    let want = event_ids(&first);
    let got = ids(&messages);
    assert!(want.iter().all(|id| got.contains_key(id)));
    let pid = daemon_pid(&daemon);
    for m in &messages {
        let outcome = m.record["event"]["outcome"].as_str().unwrap_or("");
        let severity = match outcome {
            "failure" => 4,
            "invalid" => 3,
            _ => 6,
        };
        assert_eq!(m.severity, severity, "{m:?}");
        assert_eq!(m.facility, 13);
        assert_eq!(m.app, "hestyna-obsd");
        assert_eq!(m.procid, pid);
        assert_eq!(
            m.msgid,
            if outcome == "invalid" {
                "invalid"
            } else {
                "event"
            }
        );
        assert!(!m.hostname.is_empty() && m.hostname != "-");
        assert_eq!(
            m.timestamp,
            m.record["@timestamp"].as_str().unwrap(),
            "header timestamp = @timestamp"
        );
    }
    let naive = messages
        .iter()
        .find(|m| m.record["event"]["id"] == "naïve-1")
        .unwrap();
    assert_eq!(naive.record["hestyna"]["note"], "café ☕", "UTF-8 intact");
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.record["event"]["outcome"] == "invalid")
            .count(),
        1
    );

    // The receiver goes away and comes back: nothing is lost.
    rsyslog.stop();
    let second = events(22, 300);
    broker.produce(&topic, &second);
    std::thread::sleep(Duration::from_secs(2));
    let during = daemon.scrape();
    assert!(
        sum(
            &during,
            "hestyna_obsd_sink_retries_total",
            &["sink=\"syslog\""]
        ) > 0.0,
        "refused connections retried"
    );
    rsyslog.run();
    let want: HashSet<String> = event_ids(&second);
    let got = wait_for("the second batch", Duration::from_secs(60), || {
        let got = ids(&rsyslog.messages());
        want.iter().all(|id| got.contains_key(id)).then_some(got)
    });
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    eprintln!(
        "syslog: {} + {} records through a receiver restart, {duplicates} duplicates",
        first.len(),
        second.len()
    );
}

#[test]
fn rsyslog_over_tls_verifies_and_receives() {
    let (broker, topic, dlq) = broker_with_topics(1);
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rsyslog = Rsyslog::start(
        dir.path(),
        Some((&pki.ca, &pki.server_cert, &pki.server_key)),
    );
    let sink = format!(
        r#"
[forward.sinks.syslog]
kind = "syslog"
address = "127.0.0.1:{}"
tls = {{ ca_file = "{}", server_name = "localhost" }}
batch = {{ max_events = 50, timeout_ms = 20 }}
"#,
        rsyslog.port,
        pki.ca.display()
    );
    let daemon = start_forwarding(&broker, &topic, &dlq, dir.path(), &sink);
    let events = events(23, 200);
    broker.produce(&topic, &events);
    let messages = wait_for("202 messages over TLS", Duration::from_secs(60), || {
        let m = rsyslog.messages();
        (m.len() >= events.len()).then_some(m)
    });
    let got = ids(&messages);
    assert!(event_ids(&events).iter().all(|id| got.contains_key(id)));
    let m = daemon.scrape();
    assert_eq!(sum(&m, "hestyna_obsd_sink_up", &["sink=\"syslog\""]), 1.0);
}

#[test]
fn a_syslog_receiver_with_an_unknown_certificate_is_refused() {
    let (broker, topic, dlq) = broker_with_topics(1);
    let dir = tempfile::tempdir().unwrap();
    let server = pki(&mkdir(dir.path().join("server-pki")));
    let other = pki(&mkdir(dir.path().join("other-pki")));
    let rsyslog = Rsyslog::start(
        dir.path(),
        Some((&server.ca, &server.server_cert, &server.server_key)),
    );
    let sink = format!(
        r#"
[forward.sinks.syslog]
kind = "syslog"
address = "127.0.0.1:{}"
tls = {{ ca_file = "{}", server_name = "localhost" }}
retry = {{ initial_backoff_ms = 50, max_backoff_ms = 200 }}
"#,
        rsyslog.port,
        other.ca.display()
    );
    let daemon = start_forwarding(&broker, &topic, &dlq, dir.path(), &sink);
    broker.produce(&topic, &events(24, 20));
    wait_for("TLS failures counted", Duration::from_secs(30), || {
        let m = daemon.scrape();
        (sum(&m, "hestyna_obsd_sink_retries_total", &["class=\"tls\""]) >= 2.0).then_some(())
    });
    assert!(
        rsyslog.messages().is_empty(),
        "nothing sent to an unverified receiver"
    );
}

fn mkdir(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn daemon_pid(daemon: &Daemon) -> String {
    daemon.pid().to_string()
}
