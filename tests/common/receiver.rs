//! A SIEM stand-in on a free loopback port: answers NDJSON posts, Splunk HEC (events and indexer
//! acknowledgements) and Elasticsearch bulk requests the way those servers do, records every request
//! (gzip bodies inflated), and fails on demand: a status for every request, or refused connections.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Like the real server.
    Accept,
    /// This status (and a short body) for every request.
    Status(u16),
    /// No listener: connections are refused, and open ones are closed at their next request.
    Refuse,
    /// Answers like the real server, but only after this long.
    Slow(Duration),
    /// `307 Temporary Redirect` to this location, for every request.
    Redirect(String),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    /// The body, inflated if it was gzip.
    pub body: Vec<u8>,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    requests: Vec<Received>,
    /// Records accepted (HEC: the `event` of each envelope; bulk and NDJSON: each record).
    accepted: Vec<serde_json::Value>,
    /// Bulk: records with these `event.id`s are refused as a mapping error.
    bulk_refuse: HashSet<String>,
    /// Bulk: the next this-many items answer 429 (then accepted when sent again).
    bulk_throttle: usize,
    /// HEC: ack ids issued, and how many polls each has seen.
    hec_next_ack: u64,
    hec_polls: BTreeMap<u64, u32>,
}

/// The receiver; stopped when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<parking_lot::Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    /// Starts on a free loopback port, in `Accept` mode.
    pub fn start() -> Receiver {
        Self::start_with(None)
    }

    /// Starts serving HTTPS with this PEM certificate chain and key.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Receiver {
        let chain = rustls_pemfile::certs(&mut std::fs::read(cert).unwrap().as_slice())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut std::fs::read(key).unwrap().as_slice())
            .unwrap()
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(parking_lot::Mutex::new(State {
            mode: Some(Mode::Accept),
            ..State::default()
        }));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(serve(listener, addr, state.clone(), tls));
        Receiver {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://localhost:port` (the name of the test certificates).
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Changes how it answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().mode = Some(mode);
    }

    /// Bulk: refuse the records with these event ids.
    pub fn bulk_refuse(&self, ids: impl IntoIterator<Item = String>) {
        self.state.lock().bulk_refuse.extend(ids);
    }

    /// Bulk: answer 429 to the next `n` items.
    pub fn bulk_throttle(&self, n: usize) {
        self.state.lock().bulk_throttle = n;
    }

    /// The records accepted so far.
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.state.lock().accepted.clone()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().requests.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

async fn serve(
    mut listener: tokio::net::TcpListener,
    addr: SocketAddr,
    state: Arc<parking_lot::Mutex<State>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        if state.lock().mode == Some(Mode::Refuse) {
            drop(listener);
            while state.lock().mode == Some(Mode::Refuse) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            listener = loop {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
        }
        let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
        let Ok(Ok((stream, _))) = accepted else {
            continue;
        };
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { handle(req, &state).await }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }
                }
            }
        });
    }
}

type Answer = Result<Response<Full<Bytes>>, std::io::Error>;

fn reply(status: u16, body: impl Into<Bytes>) -> Answer {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap())
}

async fn handle(req: Request<hyper::body::Incoming>, state: &parking_lot::Mutex<State>) -> Answer {
    let path = req.uri().path().to_owned();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let raw = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let body = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(std::io::Error::other)?;
        out
    } else {
        raw.to_vec()
    };
    let slow = match state.lock().mode.clone() {
        Some(Mode::Slow(delay)) => Some(delay),
        _ => None,
    };
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    let mut s = state.lock();
    let mode = s.mode.clone().unwrap_or(Mode::Accept);
    let (status, answer) = match mode {
        // Close this connection: the client sees it reset.
        Mode::Refuse => return Err(std::io::Error::other("refusing")),
        Mode::Status(code) => (code, format!("{{\"error\":\"status {code} on demand\"}}")),
        Mode::Redirect(location) => {
            s.requests.push(Received {
                path,
                headers,
                body,
                status: 307,
            });
            return Ok(Response::builder()
                .status(307)
                .header("location", location)
                .body(Full::new(Bytes::new()))
                .unwrap());
        }
        Mode::Accept | Mode::Slow(_) => match path.as_str() {
            "/services/collector/event" => {
                let events: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&body)
                    .into_iter()
                    .map(|v| v.unwrap())
                    .collect();
                for e in &events {
                    s.accepted.push(e["event"].clone());
                }
                s.hec_next_ack += 1;
                let id = s.hec_next_ack;
                (
                    200,
                    format!("{{\"text\":\"Success\",\"code\":0,\"ackId\":{id}}}"),
                )
            }
            "/services/collector/ack" => {
                let asked: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let mut acks = serde_json::Map::new();
                for id in asked["acks"].as_array().unwrap() {
                    let id = id.as_u64().unwrap();
                    let polls = s.hec_polls.entry(id).or_default();
                    *polls += 1;
                    // Indexed at the second poll.
                    acks.insert(id.to_string(), serde_json::Value::Bool(*polls >= 2));
                }
                (200, serde_json::json!({ "acks": acks }).to_string())
            }
            "/_bulk" => {
                let text = String::from_utf8(body.clone()).unwrap();
                let lines: Vec<&str> = text.lines().collect();
                let mut items = Vec::new();
                let mut errors = false;
                for pair in lines.chunks(2) {
                    let action: serde_json::Value = serde_json::from_str(pair[0]).unwrap();
                    let doc: serde_json::Value = serde_json::from_str(pair[1]).unwrap();
                    let id = action["index"]["_id"].as_str().unwrap_or("").to_owned();
                    let item = if s.bulk_refuse.contains(&id) {
                        errors = true;
                        serde_json::json!({"index": {"_id": id, "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [latency_ms]"}}})
                    } else if s.bulk_throttle > 0 {
                        s.bulk_throttle -= 1;
                        errors = true;
                        serde_json::json!({"index": {"_id": id, "status": 429, "error": {"type": "es_rejected_execution_exception"}}})
                    } else {
                        s.accepted.push(doc);
                        serde_json::json!({"index": {"_id": id, "status": 201, "result": "created"}})
                    };
                    items.push(item);
                }
                (
                    200,
                    serde_json::json!({"took": 1, "errors": errors, "items": items}).to_string(),
                )
            }
            _ => {
                let text = String::from_utf8(body.clone()).unwrap();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    s.accepted.push(serde_json::from_str(line).unwrap());
                }
                (200, "{}".to_string())
            }
        },
    };
    s.requests.push(Received {
        path,
        headers,
        body,
        status,
    });
    drop(s);
    reply(status, answer)
}
