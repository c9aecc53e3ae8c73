//! The generator source: realistic synthetic Hestyna events, deterministic for a given seed and start
//! time, at a given rate, so the main job runs (and is benchmarked) with no broker.
//!
//! The mix follows what the platform emits: LLM runs most, integration calls, automation runs, and request
//! lifecycles that move from intake to resolution. A configurable share is invalid (every class of fault
//! the decoder knows) or of a type this version does not know.

use super::{FanOut, Headers, Origin, Outputs, Record, SourceResult, SourceSummary};
use bytes::Bytes;
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorSettings {
    /// Seed of the random stream: the same seed and start give the same events.
    pub seed: u64,
    /// How many events; `None` for no end.
    pub count: Option<u64>,
    /// Events per second; 0 for as fast as possible.
    pub rate: f64,
    /// How many organizations the events spread over.
    pub organizations: usize,
    /// Share of invalid records, 0..=1.
    pub invalid_ratio: f64,
    /// Share of events of a type this version does not know, 0..=1.
    pub unknown_ratio: f64,
    /// `occurred_at` of the first event.
    pub start: DateTime<Utc>,
    /// Time between two events' `occurred_at`.
    pub step: Duration,
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        GeneratorSettings {
            seed: 1,
            count: None,
            rate: 1000.0,
            organizations: 8,
            invalid_ratio: 0.0,
            unknown_ratio: 0.0,
            start: DateTime::parse_from_rfc3339("2026-11-27T08:00:00Z")
                .expect("constant")
                .with_timezone(&Utc),
            step: Duration::from_millis(10),
        }
    }
}

/// One generated record.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The Kafka key: the request id for lifecycle events (so a request stays on one partition), else the
    /// organization.
    pub key: String,
    /// The JSON bytes.
    pub payload: Vec<u8>,
    /// Kafka headers (a `traceparent` on some LLM runs that carry no ids in the body).
    pub headers: Vec<(String, String)>,
}

const ORGANIZATIONS: &[&str] = &[
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "vandelay",
];
const INTENTS: &[&str] = &[
    "billing",
    "refund",
    "order_status",
    "password_reset",
    "shipping",
    "complaint",
    "cancel_subscription",
    "technical_support",
];
const MODELS: &[&str] = &["gpt-4o", "claude-sonnet", "mistral-large"];
const FAILURE_REASONS: &[&str] = &[
    "rate_limited",
    "context_too_long",
    "content_filter",
    "upstream_error",
];
const INTEGRATIONS: &[&str] = &[
    "salesforce",
    "zendesk",
    "stripe",
    "hubspot",
    "slack",
    "shopify",
    "jira",
    "twilio",
];
const TRIGGERS: &[&str] = &["schedule", "webhook", "manual", "request"];
const CHANNELS: &[&str] = &["email", "chat", "phone", "web"];

struct OpenRequest {
    organization: usize,
    id: u64,
    stage: usize,
    channel: usize,
}

const STAGES: &[&str] = &["intake", "assigned", "in_progress", "waiting", "resolved"];

/// At most this many requests are open at once. (Requests that are never resolved are the intake
/// join's `ttl_secs` and `max_entries` to bound, tested with their own events: a generator that
/// abandoned requests would make every long run's pending intakes grow.)
const MAX_OPEN: usize = 10_000;

/// An endless (or `count`-long) iterator of generated records.
pub struct EventGenerator {
    settings: GeneratorSettings,
    rng: ChaCha8Rng,
    seq: u64,
    next_request: u64,
    open: Vec<OpenRequest>,
}

impl EventGenerator {
    /// A generator with these settings.
    pub fn new(settings: GeneratorSettings) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(settings.seed);
        EventGenerator {
            settings,
            rng,
            seq: 0,
            next_request: 1,
            open: Vec::new(),
        }
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.random_range(0..items.len())]
    }

    fn organization(&self, index: usize) -> String {
        let base = ORGANIZATIONS[index % ORGANIZATIONS.len()];
        match index / ORGANIZATIONS.len() {
            0 => base.to_owned(),
            n => format!("{base}-{n}"),
        }
    }

    fn hex(&mut self, digits: usize) -> String {
        (0..digits)
            .map(|_| char::from_digit(self.rng.random_range(0..16), 16).expect("< 16"))
            .collect()
    }

    /// Log-normal milliseconds with the given median.
    fn lognormal_ms(&mut self, median_ms: f64, sigma: f64) -> f64 {
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        ((median_ms.ln() + sigma * z).exp() * 10.0).round() / 10.0
    }

    fn base(&mut self, kind: &str, organization: &str, at: DateTime<Utc>) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "event_id".into(),
            json!(format!("evt-{:016x}-{}", self.settings.seed, self.seq)),
        );
        m.insert("type".into(), json!(kind));
        m.insert(
            "occurred_at".into(),
            json!(at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        m.insert("organization".into(), json!(organization));
        m.insert("schema_version".into(), json!(1));
        m
    }

    fn llm_run(
        &mut self,
        org: &str,
        at: DateTime<Utc>,
        headers: &mut Vec<(String, String)>,
    ) -> Map<String, Value> {
        let mut m = self.base("llm_run", org, at);
        let intent = self.pick(INTENTS);
        let roll: f64 = self.rng.random();
        let outcome = if roll < 0.90 {
            "success"
        } else if roll < 0.95 {
            "failure"
        } else if roll < 0.98 {
            "timeout"
        } else {
            "cancelled"
        };
        let latency = if outcome == "timeout" {
            30_000.0
        } else {
            self.lognormal_ms(1800.0, 0.7)
        };
        m.insert("run_id".into(), json!(format!("run-{}", self.seq)));
        m.insert("intent".into(), json!(intent));
        m.insert("outcome".into(), json!(outcome));
        m.insert("latency_ms".into(), json!(latency));
        m.insert("model".into(), json!(self.pick(MODELS)));
        m.insert(
            "tokens_prompt".into(),
            json!(self.rng.random_range(200..4000u64)),
        );
        if outcome == "success" {
            m.insert(
                "tokens_completion".into(),
                json!(self.rng.random_range(20..800u64)),
            );
        }
        if outcome == "failure" {
            m.insert("failure_reason".into(), json!(self.pick(FAILURE_REASONS)));
        }
        if self.rng.random_bool(0.3) {
            m.insert(
                "automation_id".into(),
                json!(format!("auto-{}", self.rng.random_range(1..20u32))),
            );
        }
        let (trace, span) = (self.hex(32), self.hex(16));
        if self.rng.random_bool(0.2) {
            headers.push(("traceparent".into(), format!("00-{trace}-{span}-01")));
        } else {
            m.insert("trace_id".into(), json!(trace));
            m.insert("span_id".into(), json!(span));
        }
        m
    }

    fn integration_call(&mut self, org: &str, at: DateTime<Utc>) -> Map<String, Value> {
        let mut m = self.base("integration_call", org, at);
        let integration = self.pick(INTEGRATIONS);
        let failed = self.rng.random_bool(0.08);
        m.insert("integration".into(), json!(integration));
        m.insert(
            "outcome".into(),
            json!(if failed { "failure" } else { "success" }),
        );
        m.insert("latency_ms".into(), json!(self.lognormal_ms(180.0, 0.6)));
        m.insert(
            "status_code".into(),
            json!(if failed {
                [401u64, 429, 500, 502, 503][self.rng.random_range(0..5)]
            } else {
                200
            }),
        );
        if failed {
            m.insert("error".into(), json!("upstream returned an error"));
        }
        m
    }

    fn automation_run(&mut self, org: &str, at: DateTime<Utc>) -> Map<String, Value> {
        let mut m = self.base("automation_run", org, at);
        let roll: f64 = self.rng.random();
        m.insert(
            "automation_id".into(),
            json!(format!("auto-{}", self.rng.random_range(1..20u32))),
        );
        let version = self.rng.random_range(1..5u64);
        // Producers send the version either way.
        m.insert(
            "automation_version".into(),
            if self.rng.random_bool(0.5) {
                json!(version)
            } else {
                json!(version.to_string())
            },
        );
        m.insert(
            "outcome".into(),
            json!(if roll < 0.93 {
                "success"
            } else if roll < 0.98 {
                "failure"
            } else {
                "cancelled"
            }),
        );
        m.insert("duration_ms".into(), json!(self.lognormal_ms(4000.0, 0.9)));
        m.insert("trigger".into(), json!(self.pick(TRIGGERS)));
        m
    }

    fn request_lifecycle(&mut self, at: DateTime<Utc>) -> (String, Map<String, Value>) {
        // A full open set only advances: every request opened is resolved in the end, and the open
        // set (and with it the daemon's pending intakes) is stationary however long the run.
        let advance =
            !self.open.is_empty() && (self.open.len() >= MAX_OPEN || self.rng.random_bool(0.7));
        let request = if advance {
            let index = self.rng.random_range(0..self.open.len());
            let mut r = self.open.swap_remove(index);
            r.stage = match r.stage {
                2 if self.rng.random_bool(0.3) => 3,
                2 | 3 => 4,
                s => s + 1,
            };
            r
        } else {
            let organization = self.rng.random_range(0..self.settings.organizations.max(1));
            let channel = self.rng.random_range(0..CHANNELS.len());
            self.next_request += 1;
            OpenRequest {
                organization,
                id: self.next_request - 1,
                stage: 0,
                channel,
            }
        };
        let org = self.organization(request.organization);
        let request_id = format!("req-{:x}-{}", self.settings.seed, request.id);
        let mut m = self.base("request_lifecycle", &org, at);
        m.insert("request_id".into(), json!(request_id));
        m.insert("stage".into(), json!(STAGES[request.stage]));
        m.insert("channel".into(), json!(CHANNELS[request.channel]));
        if request.stage == 4 {
            // Resolution takes minutes to days; most producers send when the request was taken in.
            if self.rng.random_bool(0.9) {
                let took = ChronoDuration::milliseconds(self.lognormal_ms(3_600_000.0, 1.5) as i64);
                let intake = at - took.max(ChronoDuration::zero());
                m.insert(
                    "intake_at".into(),
                    json!(intake.to_rfc3339_opts(SecondsFormat::Millis, true)),
                );
            }
        } else {
            self.open.push(request);
        }
        (request_id, m)
    }

    fn invalid(&mut self, at: DateTime<Utc>) -> Vec<u8> {
        let seq = self.seq;
        let stamp = at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let text = match self.rng.random_range(0..7) {
            0 => format!("{{\"event_id\":\"bad-{seq}\",\"type\":\"llm_run\""),
            1 => format!("[\"bad-{seq}\"]"),
            2 => format!("{{\"event_id\":\"bad-{seq}\",\"type\":\"llm_run\",\"occurred_at\":\"{stamp}\",\"organization\":\"acme\",\"run_id\":\"r\",\"outcome\":\"success\",\"latency_ms\":5}}"),
            3 => format!("{{\"event_id\":\"bad-{seq}\",\"type\":\"llm_run\",\"occurred_at\":\"{stamp}\",\"organization\":\"acme\",\"run_id\":\"r\",\"intent\":\"billing\",\"outcome\":\"success\",\"latency_ms\":\"fast\"}}"),
            4 => format!("{{\"event_id\":\"bad-{seq}\",\"type\":\"integration_call\",\"occurred_at\":\"yesterday\",\"organization\":\"acme\",\"integration\":\"stripe\",\"outcome\":\"success\"}}"),
            5 => format!("{{\"event_id\":\"bad-{seq}\",\"type\":\"automation_run\",\"occurred_at\":\"{stamp}\",\"organization\":\"acme\",\"automation_id\":\"a\",\"automation_version\":1,\"outcome\":\"exploded\"}}"),
            _ => format!("{{\"event_id\":\"bad-{seq}\",\"event_id\":\"again\",\"type\":\"llm_run\"}}"),
        };
        text.into_bytes()
    }
}

impl Iterator for EventGenerator {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        if self.settings.count.is_some_and(|count| self.seq >= count) {
            return None;
        }
        let step = ChronoDuration::from_std(self.settings.step).unwrap_or(ChronoDuration::zero());
        let at = self.settings.start + step * (self.seq.min(i32::MAX as u64) as i32);
        let org_index = self.rng.random_range(0..self.settings.organizations.max(1));
        let org = self.organization(org_index);
        let mut headers = Vec::new();
        let roll: f64 = self.rng.random();
        let (key, payload) = if roll < self.settings.invalid_ratio {
            (org, self.invalid(at))
        } else if roll < self.settings.invalid_ratio + self.settings.unknown_ratio {
            let mut m = self.base("billing_tick", &org, at);
            m.insert(
                "amount_cents".into(),
                json!(self.rng.random_range(0..10_000u64)),
            );
            (org, serde_json::to_vec(&m).expect("maps serialize"))
        } else {
            let kind: f64 = self.rng.random();
            let (key, map) = if kind < 0.40 {
                let m = self.llm_run(&org, at, &mut headers);
                (org, m)
            } else if kind < 0.70 {
                let m = self.integration_call(&org, at);
                (org, m)
            } else if kind < 0.85 {
                let m = self.automation_run(&org, at);
                (org, m)
            } else {
                self.request_lifecycle(at)
            };
            (key, serde_json::to_vec(&map).expect("maps serialize"))
        };
        self.seq += 1;
        Some(Generated {
            key,
            payload,
            headers,
        })
    }
}

/// The generator as a pipeline source.
pub struct GeneratorSource {
    /// What to generate, and how fast.
    pub settings: GeneratorSettings,
    /// Events per batch at most (at least 1).
    pub batch_max_records: usize,
}

impl FanOut for GeneratorSource {
    /// Generates at the configured rate until the count is reached or `stop` is set.
    fn run(self: Box<Self>, outputs: Outputs, stop: Arc<AtomicBool>) -> SourceResult {
        let rate = self.settings.rate;
        // At a low rate, small batches keep events fresh: at most ~20 batches a second.
        let per_batch = if rate > 0.0 {
            ((rate / 20.0).ceil() as usize).clamp(1, self.batch_max_records)
        } else {
            self.batch_max_records
        };
        let mut events = EventGenerator::new(self.settings).peekable();
        let started = Instant::now();
        let mut summary = SourceSummary::default();
        while !stop.load(Ordering::Acquire) && events.peek().is_some() {
            let records: Vec<Record> = events
                .by_ref()
                .take(per_batch)
                .enumerate()
                .map(|(i, g)| {
                    let mut r = Record::new(
                        g.payload,
                        Origin::Generator {
                            seq: summary.records + i as u64,
                        },
                    );
                    r.key = Some(Bytes::from(g.key.into_bytes()));
                    r.headers = Headers::from_pairs(g.headers);
                    r
                })
                .collect();
            summary.records += records.len() as u64;
            if !outputs.send_blocking(records, None) {
                break;
            }
            if rate > 0.0 {
                let due = Duration::from_secs_f64(summary.records as f64 / rate);
                while let Some(wait) = due.checked_sub(started.elapsed()) {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    std::thread::sleep(wait.min(Duration::from_millis(100)));
                }
            }
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, Body, EventType};

    fn settings(invalid: f64) -> GeneratorSettings {
        GeneratorSettings {
            count: Some(5000),
            invalid_ratio: invalid,
            unknown_ratio: 0.01,
            ..Default::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let a: Vec<_> = EventGenerator::new(settings(0.05)).collect();
        let b: Vec<_> = EventGenerator::new(settings(0.05)).collect();
        assert_eq!(a, b);
        let c: Vec<_> = EventGenerator::new(GeneratorSettings {
            seed: 2,
            ..settings(0.05)
        })
        .collect();
        assert_ne!(a, c);
    }

    #[test]
    fn valid_events_decode_and_cover_every_type_and_stage() {
        let mut types = std::collections::BTreeSet::new();
        let mut resolved = 0;
        for g in EventGenerator::new(settings(0.0)) {
            let traceparent = g
                .headers
                .iter()
                .find(|(k, _)| k == "traceparent")
                .map(|(_, v)| v.as_bytes());
            let ev = decode(&g.payload, traceparent)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&g.payload)));
            types.insert(ev.event_type());
            if let Body::LlmRun(_) = ev.body {
                assert!(
                    ev.trace_id.is_some(),
                    "body or traceparent gives every run a trace id"
                );
            }
            if let Body::RequestLifecycle(r) = &ev.body {
                resolved += (r.stage == crate::decode::Stage::Resolved) as u32;
            }
        }
        assert_eq!(types.len(), 5, "{types:?}");
        assert!(types.contains(&EventType::Unknown));
        assert!(resolved > 10, "{resolved}");
    }

    #[test]
    fn every_request_opened_is_resolved_in_the_end() {
        let mut g = EventGenerator::new(settings(0.0));
        let at = g.settings.start;
        let mut open = std::collections::HashSet::new();
        for _ in 0..300_000 {
            let (id, event) = g.request_lifecycle(at);
            match event["stage"].as_str() {
                Some("intake") => assert!(open.insert(id)),
                Some("resolved") => assert!(open.remove(&id), "{id} resolved but not open"),
                _ => assert!(open.contains(&id), "{id} moved on but not open"),
            }
            assert!(open.len() <= MAX_OPEN, "{} requests open", open.len());
        }
        // Stationary: the generator's open set is exactly the requests neither forgotten nor done.
        assert_eq!(open.len(), g.open.len());
    }

    #[test]
    fn invalid_share_is_invalid() {
        let invalid = EventGenerator::new(settings(0.1))
            .filter(|g| decode(&g.payload, None).is_err())
            .count();
        assert!((350..650).contains(&invalid), "{invalid} of 5000");
    }
}
