//! Memory is bounded by the series limits: a stream of 1,000,000 distinct organizations through every
//! default rule leaves the series count at the limits and resident memory flat once they are reached.
//! (One test in its own process, so that the resident set measured is this stream's alone.)

use hestyna_obsd::decode::decode;
use hestyna_obsd::derive::{default_rules, Plan};

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn event(i: u32) -> String {
    let intents = ["billing", "refund", "shipping"];
    format!(
        r#"{{"event_id":"e{i}","type":"llm_run","occurred_at":"2026-11-27T08:00:00Z","organization":"org-{i}","run_id":"r{i}","intent":"{}","outcome":"success","latency_ms":{},"tokens_prompt":10,"tokens_completion":3}}"#,
        intents[i as usize % 3],
        i % 7000
    )
}

#[test]
fn a_million_organizations_leave_series_and_memory_bounded() {
    let plan = Plan::compile(&default_rules()).unwrap();
    let mut store = plan.new_store();
    let mut feed = |from: u32, to: u32| {
        for i in from..to {
            let text = event(i);
            plan.observe(&mut store, &decode(text.as_bytes(), None).unwrap());
        }
    };
    // Past every limit (10,000 series per rule, 500 windowed series), then measure.
    feed(0, 100_000);
    let settled = rss();
    feed(100_000, 1_000_000);
    let end = rss();
    let counts: Vec<(String, usize)> = store
        .series_counts()
        .into_iter()
        .map(|(n, c)| (n.to_owned(), c))
        .collect();
    for (name, count) in &counts {
        let limit = if name.contains("window") { 500 } else { 10_000 };
        assert!(*count <= limit + 1, "{name}: {count} series");
    }
    let runs = counts
        .iter()
        .find(|(n, _)| n == "hestyna_llm_runs_total")
        .unwrap()
        .1;
    assert_eq!(runs, 10_001, "the limit and the overflow series");
    let overflowed = store
        .take_counts()
        .iter()
        .find(|(n, _)| *n == "hestyna_llm_runs_total")
        .unwrap()
        .1
        .overflowed;
    assert_eq!(overflowed, 990_000);
    let growth = end as f64 / settled as f64;
    eprintln!(
        "rss after 100k organizations: {} MiB; after 1M: {} MiB ({growth:.3}x)",
        settled >> 20,
        end >> 20
    );
    assert!(
        growth <= 1.10,
        "memory grew {growth:.3}x after the limits were reached"
    );
}
