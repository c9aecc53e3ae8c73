//! Fixtures for integration tests: a real Kafka-compatible broker (tansu) and the daemon binary, each on
//! free loopback ports, stopped when dropped. Nothing is shared between tests and nothing is left
//! running.
#![allow(dead_code)]

pub mod otlp;
pub mod pki;
pub mod prom;
pub mod receiver;
pub mod system;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The test user of every daemon started here, and its password (bcrypt cost 4: fast scrapes).
pub const USER: &str = "prometheus";
pub const PASSWORD: &str = "scrape-secret";
pub const USER_HASH: &str = "$2b$04$XfX2Uk7ixuZtzijxbCAXwevpmcea6KjoggdY6rk3ys0Ia8/8/G46S";

/// How many times longer the fault runs are: `HESTYNA_SOAK_SCALE` (scripts/soak sets it), 1 in
/// `scripts/test`.
pub fn soak_scale() -> u64 {
    match std::env::var("HESTYNA_SOAK_SCALE") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .unwrap_or_else(|| panic!("HESTYNA_SOAK_SCALE={v:?}: a whole number, at least 1")),
        Err(_) => 1,
    }
}

/// `n` times the soak scale: the size of a fault test's corpus.
pub fn scaled(n: u64) -> u64 {
    n * soak_scale()
}

/// `secs` times the soak scale: how long to wait for a whole corpus.
pub fn patience(secs: u64) -> Duration {
    Duration::from_secs(secs * soak_scale())
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits until `f` returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tansu binary: $TANSU_BIN, or where scripts/test installs it.
pub fn tansu_bin() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let path = PathBuf::from(home).join(".cache/hestyna-obsd/tansu/bin/tansu");
    assert!(
        path.exists(),
        "tansu is not installed at {}: run scripts/test (it installs it), or set TANSU_BIN",
        path.display()
    );
    path
}

/// A tansu broker on a free loopback port, its storage in memory or (to survive a restart) in SQLite.
pub struct Broker {
    child: Option<Child>,
    pub addr: String,
    /// The namespace it runs in (none: the host's, on loopback).
    netns: Option<String>,
    storage: String,
    cluster: String,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker with in-memory storage and waits until it answers metadata requests.
    pub fn start() -> Broker {
        Self::start_on("memory://tansu/")
    }

    /// Starts a broker whose data lives in a SQLite file, so that [`Broker::restart`] keeps it.
    pub fn start_persistent() -> Broker {
        Self::start_on("sqlite://tansu.db")
    }

    /// Starts a broker with in-memory storage inside `netns`, reached through its veth pair: a link
    /// the test can cut or slow ([`system::NetNs`]).
    pub fn start_in(netns: &system::NetNs) -> Broker {
        Self::start_at(
            "memory://tansu/",
            netns.inside().to_string(),
            Some(netns.name().to_owned()),
        )
    }

    fn start_on(storage: &str) -> Broker {
        Self::start_at(storage, "127.0.0.1".to_owned(), None)
    }

    fn start_at(storage: &str, host: String, netns: Option<String>) -> Broker {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Broker {
            child: None,
            addr: format!("{host}:{port}"),
            netns,
            storage: storage.to_owned(),
            cluster: unique("cluster"),
            log: dir.path().join("tansu.log"),
            dir,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // `ip netns exec` execs the broker in place: the child's pid is the broker's.
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(tansu_bin());
                c
            }
            None => Command::new(tansu_bin()),
        };
        let child = command
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://{}", self.addr))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{}", self.addr))
            .arg("--storage-engine")
            .arg(&self.storage)
            .arg("--cluster-id")
            .arg(&self.cluster)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "warn")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(std::fs::File::create(self.dir.path().join("tansu.err")).unwrap())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        wait_for("the broker to listen", Duration::from_secs(30), || {
            TcpStream::connect(&self.addr).ok()
        });
        let consumer: BaseConsumer = self.client_config().create().unwrap();
        wait_for(
            "the broker to answer metadata",
            Duration::from_secs(30),
            || consumer.fetch_metadata(None, Duration::from_secs(2)).ok(),
        );
    }

    /// Kills the broker (SIGKILL: no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage (after [`Broker::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The offsets `group` has committed on `topic`'s partitions (absent: none committed).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
        let mut c = self.client_config();
        c.set("group.id", group).set("enable.auto.commit", "false");
        let consumer: BaseConsumer = c.create().unwrap();
        let mut list = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap();
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.addr);
        c
    }

    /// Creates a topic.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let results = rt
            .block_on(admin.create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .unwrap();
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
        let consumer: BaseConsumer = self.client_config().create().unwrap();
        wait_for("the topic's metadata", Duration::from_secs(20), || {
            let md = consumer
                .fetch_metadata(Some(name), Duration::from_secs(2))
                .ok()?;
            let t = md.topics().iter().find(|t| t.name() == name)?;
            (t.error().is_none() && t.partitions().len() == partitions as usize).then_some(())
        });
    }

    /// A producer for this broker.
    ///
    /// One record per batch: tansu 0.6 answers a fetch from an offset inside a record batch with the
    /// *next* batch, skipping the rest of that one (seen here: a fetch from offset 1 of a 177-record batch
    /// returned offset 177 first). Consumers resume mid-batch after a pause, a rebalance or a restart, so
    /// with larger batches the broker itself would lose records.
    pub fn producer(&self) -> ThreadedProducer<DefaultProducerContext> {
        producer_for(&self.addr)
    }

    /// Produces records (key, payload, headers) and waits until all are acknowledged.
    pub fn produce(&self, topic: &str, records: &[Produced]) {
        let producer = self.producer();
        for r in records {
            send(&producer, topic, r);
        }
        flush(&producer);
    }

    /// Reads `count` records of a topic from the start (a new consumer group), or panics after `timeout`.
    pub fn consume(&self, topic: &str, count: usize, timeout: Duration) -> Vec<Consumed> {
        let mut c = self.client_config();
        c.set("group.id", unique("reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = c.create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        while out.len() < count {
            assert!(
                Instant::now() < deadline,
                "read {} of {count} records of {topic}",
                out.len()
            );
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Consumed {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                    partition: m.partition(),
                });
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(&self.log) {
                eprintln!(
                    "--- tansu log (last 4 KiB) ---\n{}",
                    &log[log.len().saturating_sub(4096)..]
                );
            }
        }
    }
}

/// A broker with an input topic of `partitions` partitions and a dead-letter topic: (broker, topic, dlq).
pub fn broker_with_topics(partitions: i32) -> (Broker, String, String) {
    let broker = Broker::start();
    let (topic, dlq) = topics(&broker, partitions);
    (broker, topic, dlq)
}

/// Creates an input topic of `partitions` partitions and a dead-letter topic on `broker`: (topic, dlq).
pub fn topics(broker: &Broker, partitions: i32) -> (String, String) {
    let (topic, dlq) = (unique("events"), unique("dlq"));
    broker.create_topic(&topic, partitions);
    broker.create_topic(&dlq, 1);
    (topic, dlq)
}

/// A daemon reading `topic`, with these `[forward]` tables (see [`kafka_config_with_sinks`]), ready.
pub fn start_forwarding(
    broker: &Broker,
    topic: &str,
    dlq: &str,
    dir: &Path,
    forward: &str,
) -> Daemon {
    let port = free_port();
    let config = kafka_config_with_sinks(broker, topic, &unique("g"), dlq, port, forward);
    Daemon::start_with(&config, dir, port, "/readyz")
}

/// The `event_id`s of the records that have one.
pub fn event_ids(records: &[Produced]) -> std::collections::HashSet<String> {
    records
        .iter()
        .filter_map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&p.payload).ok()?;
            Some(v["event_id"].as_str()?.to_owned())
        })
        .collect()
}

/// A producer for the broker at `addr` (one record per batch: see [`Broker::producer`]).
pub fn producer_for(addr: &str) -> ThreadedProducer<DefaultProducerContext> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .set("acks", "all")
        .set("batch.num.messages", "1");
    c.create().unwrap()
}

/// Waits until everything produced is acknowledged (a minute, times the soak scale: tansu takes one
/// record per batch, and a soak's corpus is larger).
pub fn flush(producer: &ThreadedProducer<DefaultProducerContext>) {
    producer.flush(Timeout::After(patience(60))).unwrap();
}

/// A record to produce.
#[derive(Debug, Clone)]
pub struct Produced {
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Sends one record, waiting while the producer's queue is full.
pub fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, r: &Produced) {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let mut record = BaseRecord::<[u8], [u8]>::to(topic)
        .payload(r.payload.as_slice())
        .headers(headers);
    if let Some(key) = &r.key {
        record = record.key(key.as_bytes());
    }
    hestyna_obsd::produce::send_blocking(producer, record).unwrap();
}

/// A record read back.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub partition: i32,
}

/// A Hestyna event of `kind` for `organization` that happened at `at`, with `fields` (a JSON object)
/// besides the envelope, as a record to produce (keyed by its `request_id` when it has one).
pub fn event_at(
    kind: &str,
    organization: &str,
    at: chrono::DateTime<chrono::Utc>,
    fields: serde_json::Value,
) -> Produced {
    let mut e = serde_json::json!({
        "event_id": unique("ev"),
        "type": kind,
        "occurred_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "organization": organization,
    });
    let object = e.as_object_mut().unwrap();
    object.extend(fields.as_object().unwrap().clone());
    let key = e["request_id"].as_str().map(str::to_owned);
    Produced {
        key,
        payload: e.to_string().into_bytes(),
        headers: Vec::new(),
    }
}

/// Generated events as records to produce.
pub fn generated(seed: u64, count: u64, unknown_ratio: f64) -> Vec<Produced> {
    use hestyna_obsd::source::generator::{EventGenerator, GeneratorSettings};
    EventGenerator::new(GeneratorSettings {
        seed,
        count: Some(count),
        unknown_ratio,
        invalid_ratio: 0.0,
        ..Default::default()
    })
    .map(|g| Produced {
        key: Some(g.key),
        payload: g.payload,
        headers: g.headers,
    })
    .collect()
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub http: SocketAddr,
    pub dir: PathBuf,
    stderr: PathBuf,
}

/// A daemon reading `topic` with [`kafka_config`] on a free port, its own consumer groups, ready.
pub fn kafka_daemon(broker: &Broker, topic: &str, dlq: &str, dir: &Path) -> Daemon {
    let port = free_port();
    let config = kafka_config(broker, topic, &unique("g"), dlq, dir, port);
    Daemon::start_with(&config, dir, port, "/readyz")
}

/// The configuration of a daemon reading `topic` from `broker`, with its files under `dir` and a file
/// SIEM sink `siem.jsonl`.
pub fn kafka_config(
    broker: &Broker,
    topic: &str,
    groups: &str,
    dlq: &str,
    dir: &Path,
    http_port: u16,
) -> String {
    let sinks = format!(
        "[forward.sinks.siem]\nkind = \"file\"\npath = \"{}\"\n",
        dir.join("siem.jsonl").display()
    );
    kafka_config_with_sinks(broker, topic, groups, dlq, http_port, &sinks)
}

/// [`kafka_config`] with these `[forward]` tables (sinks, and anything else of `[forward]` after them).
pub fn kafka_config_with_sinks(
    broker: &Broker,
    topic: &str,
    groups: &str,
    dlq: &str,
    http_port: u16,
    sinks: &str,
) -> String {
    format!(
        r#"
[source]
kind = "kafka"
batch_max_records = 500
batch_max_wait_ms = 20

[kafka]
brokers = "{brokers}"
topics = ["{topic}"]

[kafka.consumer_properties]
"fetch.wait.max.ms" = "10"
"session.timeout.ms" = "10000"
"heartbeat.interval.ms" = "1000"
"topic.metadata.refresh.interval.ms" = "1000"

[pipelines.metrics]
group_id = "{groups}-metrics"

[pipelines.forward]
group_id = "{groups}-forward"

[dead_letter]
kind = "kafka"
topic = "{dlq}"

[http]
listen = "127.0.0.1:{http_port}"

[http.basic_auth_users]
{USER} = "{USER_HASH}"

[forward]
environment = "test"

{sinks}

[telemetry]
log_level = "info,librdkafka=warn,rdkafka=warn"

[shutdown]
drain_timeout_secs = 20
revoke_drain_ms = 3000
"#,
        brokers = broker.addr,
    )
}

impl Daemon {
    /// Starts the binary on this configuration and waits until `/livez` answers.
    pub fn start(config: &str, dir: &Path, http_port: u16) -> Daemon {
        Self::start_with(config, dir, http_port, "/livez")
    }

    /// Starts and waits until `path` answers 200.
    pub fn start_with(config: &str, dir: &Path, http_port: u16, ready_path: &str) -> Daemon {
        Self::start_env(config, dir, http_port, ready_path, &[])
    }

    /// [`Daemon::start_with`], with these environment variables set for the daemon.
    pub fn start_env(
        config: &str,
        dir: &Path,
        http_port: u16,
        ready_path: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        std::fs::create_dir_all(dir).unwrap();
        let config_path = dir.join(format!("config-{http_port}.toml"));
        std::fs::write(&config_path, config).unwrap();
        let stderr = dir.join(format!("daemon-{http_port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
            .arg("--config")
            .arg(&config_path)
            .arg("run")
            .env("POD_NAME", "obsd-test-0")
            .env("POD_NAMESPACE", "observability")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&stderr)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        Daemon::adopt(
            child,
            SocketAddr::from(([127, 0, 0, 1], http_port)),
            dir,
            ready_path,
        )
    }

    /// Wraps a daemon started elsewhere; waits until `ready` answers 200 on its listener (`PATH@health`:
    /// on the plain health listener, found in the log; empty: no wait).
    pub fn adopt(child: Child, http: SocketAddr, dir: &Path, ready: &str) -> Daemon {
        let stderr = dir.join(format!("daemon-{}.log", http.port()));
        let mut daemon = Daemon {
            child: Some(child),
            http,
            dir: dir.to_owned(),
            stderr,
        };
        if ready.is_empty() {
            wait_for("the daemon to start", Duration::from_secs(60), || {
                daemon.log().contains("started").then_some(())
            });
            return daemon;
        }
        wait_for(
            &format!("the daemon's {ready}"),
            Duration::from_secs(60),
            || {
                if let Some(status) = daemon
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!("the daemon exited with {status}:\n{}", daemon.log());
                }
                if ready.ends_with("@health") {
                    return daemon.log().contains("started").then_some(());
                }
                (daemon.get(ready, None).0 == 200).then_some(())
            },
        );
        daemon
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal to the daemon.
    #[allow(unsafe_code)] // kill(2) only: see the SAFETY comment inside.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) with a pid we own; no memory is touched.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// GET `path`, with basic credentials if given: (status, body).
    pub fn get(&self, path: &str, credentials: Option<(&str, &str)>) -> (u16, String) {
        http_get(
            self.http,
            path,
            credentials.map(|(u, p)| basic(u, p)).as_deref(),
        )
    }

    /// Scrapes `/metrics` with the test credentials.
    pub fn scrape(&self) -> BTreeMap<String, f64> {
        let (status, body) = self.get("/metrics", Some((USER, PASSWORD)));
        assert_eq!(status, 200, "{body}");
        parse_metrics(&body)
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGKILL (no drain, no commit), and waits for the exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    #[allow(unsafe_code)] // kill(2) only: see the SAFETY comment inside.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) with a pid we own; no memory is touched.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "the daemon did not stop within 60 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            eprintln!(
                "--- daemon log (last 8 KiB) ---\n{}",
                &log[log.len().saturating_sub(8192)..]
            );
        }
    }
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A minimal HTTP/1.1 GET over a fresh connection: (status, body).
pub fn http_get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String) {
    let (status, _, body) = http_get_full(addr, path, authorization);
    (status, body)
}

/// An HTTP client for the tests: every status is an answer, not an error; 30 s for a request.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// GET with the response headers: (status, headers lower-cased, body).
pub fn http_get_full(
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> (u16, BTreeMap<String, String>, String) {
    let agent = agent();
    let mut request = agent.get(format!("http://{addr}{path}"));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    match request.call() {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        v.to_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            let mut body = String::new();
            let _ = response.body_mut().as_reader().read_to_string(&mut body);
            (status, headers, body)
        }
        Err(_) => (0, BTreeMap::new(), String::new()),
    }
}

/// Runs a tool to its end: (succeeded, stdout + stderr).
pub fn output(command: &mut Command) -> (bool, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} (scripts/test installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs a command to its end and asserts it succeeded (its stderr in the message); what it printed.
pub fn run_ok(command: &mut Command) -> std::process::Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `replay --quiet --print-metrics` of `events` with `config`; asserts it succeeds and returns what
/// it printed (the summary, a blank line, then the exposition).
pub fn replay(config: &Path, events: &Path) -> String {
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
            .arg("--config")
            .arg(config)
            .args(["replay", "--quiet", "--print-metrics"])
            .arg(events),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parses the Prometheus text format into `series -> value` (`name{labels as written}`).
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let series = if series.ends_with('}') {
            series.to_owned()
        } else {
            format!("{series}{{}}")
        };
        out.insert(series, value);
    }
    out
}

/// Sums every series of `name` whose labels contain all of `with` (`key="value"` fragments).
pub fn sum(metrics: &BTreeMap<String, f64>, name: &str, with: &[&str]) -> f64 {
    metrics
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && with.iter().all(|w| k.contains(w)))
        .map(|(_, v)| v)
        .sum()
}

/// The whole (newline-terminated) lines of a JSONL file, parsed.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Only whole lines: a last line without its newline is a write still going on (a 10 MiB record
    // is appended in more than one write), read again at the next look.
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A generator-fed daemon's configuration: file dead letters and SIEM file under `dir`, basic auth.
pub fn generator_config(dir: &Path, port: u16, generator: &str) -> String {
    format!(
        r#"
[source]
kind = "generator"
[source.generator]
{generator}
[dead_letter]
kind = "file"
path = "{dlq}"
[http]
listen = "127.0.0.1:{port}"
[http.basic_auth_users]
{USER} = "{USER_HASH}"
[forward.sinks.siem]
kind = "file"
path = "{siem}"
"#,
        dlq = dir.join("dlq.jsonl").display(),
        siem = dir.join("siem.jsonl").display(),
    )
}

/// Waits until two instances of one group share `partitions` partitions of the metrics pipeline, each
/// holding at least one, and `also` holds for their scrapes.
pub fn wait_shared(
    a: &Daemon,
    b: &Daemon,
    partitions: f64,
    also: impl Fn(&BTreeMap<String, f64>, &BTreeMap<String, f64>) -> bool,
) {
    wait_for(
        "the partitions to be shared",
        Duration::from_secs(60),
        || {
            let (ma, mb) = (a.scrape(), b.scrape());
            let share = |m: &BTreeMap<String, f64>, p: &str| {
                sum(
                    m,
                    "hestyna_obsd_assigned_partitions",
                    &[&format!("pipeline=\"{p}\"")],
                )
            };
            let (pa, pb) = (share(&ma, "metrics"), share(&mb, "metrics"));
            (pa >= 1.0 && pb >= 1.0 && pa + pb == partitions && also(&ma, &mb)).then_some(())
        },
    );
}
