//! The hot paths on one core, on a corpus of realistic generated events (~300 bytes each), with the
//! baseline that matters measured beside them: parsing each event into a `serde_json::Value`.
//!
//! `cargo bench --bench hot_paths`; throughput is in events per second.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hestyna_obsd::config::RedactionConfig;
use hestyna_obsd::decode::decode;
use hestyna_obsd::derive::{default_rules, gzip, Format, GzipStream, Plan};
use hestyna_obsd::forward::enrich::BatchContext;
use hestyna_obsd::forward::sink::encode_line;
use hestyna_obsd::forward::{Enricher, HostInfo, OrganizationTable, Redactor};
use hestyna_obsd::source::generator::{EventGenerator, GeneratorSettings};
use hestyna_obsd::source::{Origin, Record};
use std::hint::black_box;
use std::sync::Arc;

/// jemalloc by default (see `hestyna_obsd::alloc`).
#[global_allocator]
static ALLOCATOR: hestyna_obsd::alloc::Allocator = hestyna_obsd::alloc::ALLOCATOR;

fn corpus(n: u64) -> Vec<Record> {
    let settings = GeneratorSettings {
        count: Some(n),
        invalid_ratio: 0.005,
        unknown_ratio: 0.005,
        ..Default::default()
    };
    let topic: Arc<str> = Arc::from("hestyna.events");
    EventGenerator::new(settings)
        .enumerate()
        .map(|(i, g)| {
            let mut r = Record::new(
                g.payload,
                Origin::Kafka {
                    topic: topic.clone(),
                    partition: 0,
                    offset: i as i64,
                },
            );
            r.headers = hestyna_obsd::source::Headers::from_pairs(g.headers);
            r
        })
        .collect()
}

/// `record` with a nested object of escaped text added to its JSON object (others unchanged).
fn with_escapes(record: &Record) -> Record {
    const CLIENT: &[u8] = br#","client":{"note":"customer wrote: \"my invoice is wrong\"\tr\u00e9clamation \ud83d\ude80\nthanks","tags":["web","tier\t2",null,true]}}"#;
    let mut r = record.clone();
    if let Some(end) = r.payload.iter().rposition(|&b| b == b'}') {
        r.payload = [&r.payload[..end], CLIENT].concat().into();
    }
    r
}

fn hot_paths(c: &mut Criterion) {
    let records = corpus(20_000);
    let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    eprintln!(
        "corpus: {} events, {} bytes on average",
        records.len(),
        bytes / records.len()
    );
    let plan = Plan::compile(&default_rules()).unwrap();
    let enricher = Enricher::new(
        HostInfo::from_env(),
        "hestyna",
        "bench",
        "https://traces.example/trace/{trace_id}",
    );
    let redactor = Redactor::new(&RedactionConfig::default()).unwrap();
    let organizations = OrganizationTable::default();

    let mut group = c.benchmark_group("events");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("baseline_parse_to_serde_json_value", |b| {
        b.iter(|| {
            for r in &records {
                black_box(serde_json::from_slice::<serde_json::Value>(&r.payload).ok());
            }
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            for r in &records {
                black_box(decode(&r.payload, r.traceparent()).ok());
            }
        })
    });
    // Decode and derive into a fresh store, with the default rules and with their exemplars off:
    // what keeping exemplars costs.
    let without: Vec<_> = default_rules()
        .into_iter()
        .map(|mut r| {
            r.exemplar.clear();
            r
        })
        .collect();
    let plain = Plan::compile(&without).unwrap();
    for (name, plan) in [
        ("metrics_decode_and_derive", &plan),
        ("metrics_decode_and_derive_without_exemplars", &plain),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || plan.new_store(),
                |store| {
                    for r in &records {
                        if let Ok(ev) = decode(&r.payload, r.traceparent()) {
                            plan.observe(store, &ev);
                        }
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    // The same events, each with a nested object of text written with escapes (quotes, a tab, a
    // newline, non-ASCII as `\uXXXX`, a surrogate pair), as `scripts/bench_corpus.py` writes them.
    let escaped: Vec<Record> = records.iter().map(with_escapes).collect();
    for (name, corpus) in [
        ("forward_decode_enrich_redact_encode", &records),
        ("forward_decode_enrich_redact_encode_escaped", &escaped),
    ] {
        group.bench_function(name, |b| {
            let ctx = BatchContext::new(chrono::Utc::now(), &organizations);
            let mut tally = vec![0; redactor.rule_names().len()];
            b.iter(|| {
                let mut out = Vec::with_capacity(bytes * 4);
                for r in corpus {
                    if let Ok(ev) = decode(&r.payload, r.traceparent()) {
                        let doc = enricher.enrich(&ev, r, &ctx);
                        let doc = redactor.redact(doc, &mut tally).expect("readable");
                        encode_line(&doc, &mut out);
                    }
                }
                black_box(out)
            })
        });
    }
    let ctx = BatchContext::new(chrono::Utc::now(), &organizations);
    let docs: Vec<_> = records
        .iter()
        .filter_map(|r| Some(enricher.enrich(&decode(&r.payload, r.traceparent()).ok()?, r, &ctx)))
        .collect();
    group.bench_function("redact_default_patterns", |b| {
        let mut tally = vec![0; redactor.rule_names().len()];
        b.iter_batched(
            || docs.clone(),
            |docs| {
                for doc in docs {
                    black_box(redactor.redact(doc, &mut tally).is_ok());
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();

    // Rendering /metrics with 100,000 time series (sample lines, as Prometheus counts them): the copy
    // taken under the lock, and the formatting done after it.
    let mut rules: Vec<_> = default_rules()
        .into_iter()
        .filter(|r| r.name == "hestyna_llm_runs_total")
        .collect();
    rules[0].max_series = 200_000;
    let plan = Plan::compile(&rules).unwrap();
    let mut store = plan.new_store();
    for i in 0..100_000u32 {
        let text = format!(
            r#"{{"event_id":"e{i}","type":"llm_run","occurred_at":"2026-11-27T08:00:00Z","organization":"org-{}","run_id":"r","intent":"intent-{}","outcome":"success","latency_ms":{}}}"#,
            i / 100,
            i % 100,
            i % 9000
        );
        plan.observe(&mut store, &decode(text.as_bytes(), None).unwrap());
    }
    let mut out = String::new();
    store.snapshot().render(&mut out, Format::Text, None);
    let compressed = gzip(out.as_bytes()).len();
    eprintln!(
        "render: {} sample lines, {} bytes, {} gzipped ({:.1}x fewer)",
        out.lines().filter(|l| !l.starts_with('#')).count(),
        out.len(),
        compressed,
        out.len() as f64 / compressed as f64
    );
    let mut group = c.benchmark_group("render_100k_series");
    group.sample_size(20);
    group.bench_function("snapshot_under_lock", |b| {
        b.iter(|| black_box(store.snapshot()))
    });
    group.bench_function("snapshot_and_format_text", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(16 << 20);
            store.snapshot().render(&mut out, Format::Text, None);
            black_box(out.len())
        })
    });
    // What a Prometheus scrape costs (it always sends Accept-Encoding: gzip), as `/metrics` serves it:
    // rendered in chunks of 256 KiB, each compressed on a second thread while the next is rendered.
    group.bench_function("snapshot_format_and_gzip", |b| {
        b.iter(|| black_box(scrape_gzip(&store)))
    });
    group.finish();
}

/// A compressed scrape's body length, rendered and compressed as `/metrics` does it.
fn scrape_gzip(store: &hestyna_obsd::derive::Store) -> usize {
    const CHUNK: usize = 256 * 1024; // http::stream::CHUNK
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(2);
    let compressor = std::thread::spawn(move || {
        let mut stream = GzipStream::default();
        let mut len = 0;
        for text in rx {
            len += stream.write(text.as_bytes()).len();
        }
        len + stream.finish().len()
    });
    let mut out = String::with_capacity(CHUNK + CHUNK / 4);
    let mut take = |t: &mut String| tx.send(std::mem::take(t)).unwrap();
    store
        .snapshot()
        .render_chunked(&mut out, Format::Text, None, CHUNK, &mut take);
    take(&mut out);
    drop(tx);
    compressor.join().unwrap()
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
