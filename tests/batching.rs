//! Derived counters and histograms are invariant to how a stream is cut into batches and spread over
//! partitions: any split into partitions (each keeping its own order) interleaved any way, observed in
//! any batch sizes, renders the same series as the stream observed in one go.

use hestyna_obsd::decode::decode;
use hestyna_obsd::derive::{default_rules, Format, Plan};
use hestyna_obsd::source::generator::{EventGenerator, GeneratorSettings};
use proptest::prelude::*;
use std::sync::LazyLock;

static PLAN: LazyLock<Plan> = LazyLock::new(|| Plan::compile(&default_rules()).unwrap());

fn stream(seed: u64, count: u64) -> Vec<Vec<u8>> {
    EventGenerator::new(GeneratorSettings {
        seed,
        count: Some(count),
        unknown_ratio: 0.05,
        invalid_ratio: 0.05,
        ..Default::default()
    })
    .map(|g| g.payload)
    .collect()
}

/// The counters and histograms of a store fed `payloads` in `batches` (the window quantiles, which
/// follow the wall clock, are left out).
fn rendered(payloads: &[&[u8]], batches: &[usize]) -> String {
    let mut store = PLAN.new_store();
    let mut rest = payloads;
    let mut sizes = batches.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        let (batch, tail) = rest.split_at(n);
        for payload in batch {
            if let Ok(event) = decode(payload, None) {
                PLAN.observe(&mut store, &event);
            }
        }
        // What the pipeline does after each batch.
        store.take_owned_counts();
        rest = tail;
    }
    let mut out = String::new();
    store.snapshot().render(&mut out, Format::Text, None);
    out.lines()
        .filter(|l| !l.contains("_window_"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The samples of an exposition: (series, value), in order.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn counters_do_not_depend_on_batches_or_partitions(
        seed in 0u64..1_000,
        partitions in 1usize..6,
        batches in prop::collection::vec(1usize..300, 1..6),
        interleaving in prop::collection::vec(any::<prop::sample::Index>(), 600),
    ) {
        let events = stream(seed, 600);
        let whole: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        let expected = rendered(&whole, &[whole.len()]);
        // Spread over partitions round-robin (each keeps its order), then interleaved as the choices say.
        let mut queues: Vec<std::collections::VecDeque<&[u8]>> = vec![Default::default(); partitions];
        for (i, e) in whole.iter().enumerate() {
            queues[i % partitions].push_back(e);
        }
        let mut mixed = Vec::with_capacity(whole.len());
        let mut choices = interleaving.iter().cycle();
        while mixed.len() < whole.len() {
            let open: Vec<usize> = (0..partitions).filter(|&p| !queues[p].is_empty()).collect();
            let p = open[choices.next().unwrap().index(open.len())];
            mixed.push(queues[p].pop_front().unwrap());
        }
        let got = rendered(&mixed, &batches);
        let (got, expected) = (samples(&got), samples(&expected));
        prop_assert_eq!(got.len(), expected.len());
        for ((series, a), (other, b)) in got.iter().zip(&expected) {
            prop_assert_eq!(series, other);
            // Counts are exact; a histogram's `_sum` adds floats, whose rounding follows the order.
            let close = a == b || (series.contains("_sum") && (a - b).abs() <= 1e-9 * b.abs());
            prop_assert!(close, "{}: {} against {}", series, a, b);
        }
    }
}
