use super::*;
use crate::decode::decode;
use crate::derive::store::OVERFLOW;
use crate::derive::{default_rules, LabelSource};
use crate::derive::{Cursor, Prepared};

fn spec(name: &str) -> RuleSpec {
    default_rules()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap()
}

fn render(store: &Store) -> String {
    let mut out = String::new();
    store.render(&mut out, crate::derive::Format::Text);
    out
}

fn llm(org: &str, intent: &str, outcome: &str, latency: f64) -> String {
    format!(
        r#"{{"event_id":"e","type":"llm_run","occurred_at":"2026-01-01T00:00:00Z","organization":{},"run_id":"r","intent":"{intent}","outcome":"{outcome}","latency_ms":{latency},"tokens_prompt":100,"tokens_completion":7}}"#,
        serde_json::to_string(org).unwrap()
    )
}

fn feed(plan: &Plan, store: &mut Store, text: &str) {
    plan.observe(store, &decode(text.as_bytes(), None).unwrap());
}

#[test]
fn the_default_rules_compile() {
    Plan::compile(&default_rules()).unwrap();
}

#[test]
fn reports_every_fault_of_every_rule_with_its_key() {
    let mut bad = spec("hestyna_llm_latency_seconds");
    bad.name = "bad name".into();
    bad.labels
        .insert("x".into(), LabelSource::Field("no_such_field".into()));
    bad.buckets = vec![2.0, 1.0];
    let mut counter = spec("hestyna_llm_runs_total");
    counter.event_type = "nope".into();
    let errors = Plan::compile(&[bad, counter]).unwrap_err();
    let keys: Vec<(usize, &str)> = errors.iter().map(|e| (e.rule, e.key.as_str())).collect();
    assert_eq!(
        keys,
        vec![
            (0, "name"),
            (0, "labels.x"),
            (0, "buckets"),
            (1, "event_type")
        ],
        "{errors:#?}"
    );
}

#[test]
fn a_condition_selects_events() {
    let plan = Plan::compile(&[spec("hestyna_integration_failures_total")]).unwrap();
    let mut store = plan.new_store();
    for outcome in ["failure", "success", "failure"] {
        feed(
            &plan,
            &mut store,
            &format!(
                r#"{{"event_id":"e","type":"integration_call","occurred_at":"2026-01-01T00:00:00Z","organization":"o","integration":"stripe","outcome":"{outcome}"}}"#
            ),
        );
    }
    assert!(render(&store).contains(
        "hestyna_integration_failures_total{integration=\"stripe\",organization=\"o\"} 2\n"
    ));
}

#[test]
fn a_duration_without_its_start_is_skipped_and_counted() {
    let plan = Plan::compile(&[spec("hestyna_requests_resolution_seconds")]).unwrap();
    let mut store = plan.new_store();
    let ev = |extra: &str| {
        format!(
            r#"{{"event_id":"e","type":"request_lifecycle","occurred_at":"2026-01-01T01:00:00Z","organization":"o","request_id":"r","stage":"resolved","channel":"chat"{extra}}}"#
        )
    };
    feed(&plan, &mut store, &ev(""));
    feed(
        &plan,
        &mut store,
        &ev(r#","intake_at":"2026-01-01T02:00:00Z""#),
    );
    feed(
        &plan,
        &mut store,
        &ev(r#","intake_at":"2026-01-01T00:00:00+00:00""#),
    );
    let counts = store.take_counts();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].1.skipped, [1, 1]);
    let out = render(&store);
    assert!(out.contains("hestyna_requests_resolution_seconds_bucket{channel=\"chat\",organization=\"o\",le=\"3600\"} 1\n"), "{out}");
    assert!(out.contains("hestyna_requests_resolution_seconds_bucket{channel=\"chat\",organization=\"o\",le=\"1800\"} 0\n"), "{out}");
    assert!(
        out.contains(
            "hestyna_requests_resolution_seconds_sum{channel=\"chat\",organization=\"o\"} 3600\n"
        ),
        "{out}"
    );
}

#[test]
fn renders_the_exact_exposition() {
    let plan = Plan::compile(&[
        spec("hestyna_llm_runs_total"),
        spec("hestyna_llm_latency_seconds"),
    ])
    .unwrap();
    let mut store = plan.new_store();
    feed(
        &plan,
        &mut store,
        &llm("acme", "billing", "success", 1200.0),
    );
    feed(
        &plan,
        &mut store,
        &llm("acme", "billing", "failure", 6000.0),
    );
    feed(
        &plan,
        &mut store,
        &llm("glo\"bex", "refund", "success", 6001.0),
    );
    let out = render(&store);
    let runs = "\
# HELP hestyna_llm_runs_total LLM runs by intent and outcome.
# TYPE hestyna_llm_runs_total counter
hestyna_llm_runs_total{intent=\"billing\",organization=\"acme\",outcome=\"failure\"} 1
hestyna_llm_runs_total{intent=\"billing\",organization=\"acme\",outcome=\"success\"} 1
hestyna_llm_runs_total{intent=\"refund\",organization=\"glo\\\"bex\",outcome=\"success\"} 1
# HELP hestyna_llm_latency_seconds Model latency of LLM runs; the P95 objective is 6 seconds.
# TYPE hestyna_llm_latency_seconds histogram
";
    assert!(out.starts_with(runs), "{out}");
    assert!(out.contains(
        "hestyna_llm_latency_seconds_bucket{intent=\"billing\",organization=\"acme\",le=\"5\"} 1\n"
    ));
    assert!(out.contains("hestyna_llm_latency_seconds_bucket{intent=\"billing\",organization=\"acme\",le=\"6\"} 2\n"), "6000 ms lands in le=6");
    assert!(out.contains("hestyna_llm_latency_seconds_bucket{intent=\"refund\",organization=\"glo\\\"bex\",le=\"6\"} 0\n"));
    assert!(out.contains("hestyna_llm_latency_seconds_bucket{intent=\"refund\",organization=\"glo\\\"bex\",le=\"+Inf\"} 1\n"));
    assert!(out.contains(
        "hestyna_llm_latency_seconds_sum{intent=\"billing\",organization=\"acme\"} 7.2\n"
    ));
    assert!(out.contains(
        "hestyna_llm_latency_seconds_count{intent=\"billing\",organization=\"acme\"} 2\n"
    ));
    assert!(out.contains("# TYPE hestyna_llm_latency_window_seconds summary\n"));
}

#[test]
fn rules_with_constant_labels_share_a_family() {
    let plan = Plan::compile(&default_rules()).unwrap();
    let mut store = plan.new_store();
    feed(&plan, &mut store, &llm("acme", "billing", "success", 10.0));
    feed(&plan, &mut store, &llm("acme", "billing", "success", 10.0));
    let out = render(&store);
    assert_eq!(
        out.matches("# TYPE hestyna_llm_tokens_total counter")
            .count(),
        1
    );
    assert!(out.contains("hestyna_llm_tokens_total{intent=\"billing\",kind=\"completion\",organization=\"acme\"} 14\n"), "{out}");
    assert!(out.contains("hestyna_llm_tokens_total{intent=\"billing\",kind=\"prompt\",organization=\"acme\"} 200\n"), "{out}");
}

#[test]
fn a_label_default_fills_an_absent_field() {
    let plan = Plan::compile(&[spec("hestyna_llm_failures_total")]).unwrap();
    let mut store = plan.new_store();
    feed(
        &plan,
        &mut store,
        &llm("acme", "billing", "timeout", 30000.0),
    );
    feed(&plan, &mut store, &llm("acme", "billing", "success", 30.0));
    let with_reason = llm("acme", "billing", "failure", 30.0).replace(
        "\"run_id\"",
        "\"failure_reason\":\"rate_limited\",\"run_id\"",
    );
    feed(&plan, &mut store, &with_reason);
    let out = render(&store);
    assert!(out.contains("hestyna_llm_failures_total{intent=\"billing\",organization=\"acme\",reason=\"unspecified\"} 1\n"), "{out}");
    assert!(out.contains("hestyna_llm_failures_total{intent=\"billing\",organization=\"acme\",reason=\"rate_limited\"} 1\n"), "{out}");
}

#[test]
fn label_sets_past_the_limit_fold_into_one_overflow_series_and_totals_stay_exact() {
    let mut rule = spec("hestyna_llm_runs_total");
    rule.max_series = 10;
    let plan = Plan::compile(&[rule]).unwrap();
    let mut store = plan.new_store();
    for i in 0..1000 {
        feed(
            &plan,
            &mut store,
            &llm(&format!("org-{i}"), "billing", "success", 1.0),
        );
    }
    assert_eq!(
        store.series_counts()[0].1,
        11,
        "ten series and the overflow series"
    );
    let out = render(&store);
    assert!(out.contains(&format!("hestyna_llm_runs_total{{intent=\"{OVERFLOW}\",organization=\"{OVERFLOW}\",outcome=\"{OVERFLOW}\"}} 990\n")), "{out}");
    let total: f64 = out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 1000.0);
    assert_eq!(store.take_counts()[0].1.overflowed, 990);
    // An existing series keeps counting; it is not folded.
    feed(&plan, &mut store, &llm("org-0", "billing", "success", 1.0));
    assert!(render(&store).contains("organization=\"org-0\",outcome=\"success\"} 2\n"));
}

#[test]
fn one_noisy_organization_overflows_into_its_own_series_and_leaves_room_for_the_others() {
    let mut rule = spec("hestyna_llm_runs_total");
    rule.max_series = 8;
    rule.max_series_per_organization = Some(3);
    let plan = Plan::compile(&[rule]).unwrap();
    let mut store = plan.new_store();
    for i in 0..500 {
        feed(
            &plan,
            &mut store,
            &llm("noisy", &format!("intent-{i}"), "success", 1.0),
        );
    }
    for intent in ["billing", "refunds"] {
        feed(&plan, &mut store, &llm("quiet", intent, "success", 1.0));
    }
    let out = render(&store);
    assert!(
        out.contains("{intent=\"billing\",organization=\"quiet\",outcome=\"success\"} 1\n"),
        "{out}"
    );
    assert!(
        out.contains("{intent=\"refunds\",organization=\"quiet\",outcome=\"success\"} 1\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{{intent=\"{OVERFLOW}\",organization=\"noisy\",outcome=\"{OVERFLOW}\"}} 497\n"
        )),
        "the noisy organization keeps its name on its overflow: {out}"
    );
    assert!(
        !out.contains(&format!("organization=\"{OVERFLOW}\"")),
        "{out}"
    );
    assert_eq!(store.series_counts()[0].1, 3 + 1 + 2);
    assert_eq!(store.take_counts()[0].1.overflowed, 497);
    // The rule's own limit still holds: organizations beyond it fold into the family's overflow.
    for i in 0..10 {
        feed(
            &plan,
            &mut store,
            &llm(&format!("org-{i}"), "billing", "success", 1.0),
        );
    }
    let out = render(&store);
    let live = out
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains(OVERFLOW))
        .count();
    assert_eq!(live, 8, "{out}");
    assert!(
        out.contains(&format!(
            "{{intent=\"{OVERFLOW}\",organization=\"{OVERFLOW}\",outcome=\"{OVERFLOW}\"}} 7\n"
        )),
        "{out}"
    );
}

#[test]
fn label_values_are_sanitised() {
    let mut rule = spec("hestyna_llm_runs_total");
    rule.max_label_length = 8;
    let plan = Plan::compile(&[rule]).unwrap();
    let mut store = plan.new_store();
    feed(
        &plan,
        &mut store,
        &llm("ac\u{0007}me\nco", "billing", "success", 1.0),
    );
    feed(&plan, &mut store, &llm("ééééé", "billing", "success", 1.0));
    let out = render(&store);
    assert!(
        out.contains("organization=\"ac\u{fffd}me\""),
        "cleaned, then cut to 8 bytes: {out}"
    );
    assert!(
        out.contains("organization=\"éééé\""),
        "cut at a character boundary: {out}"
    );
    assert_eq!(store.take_counts()[0].1.sanitized, 2);
    let (same, changed) = sanitize(Cow::Borrowed("plain"), 8);
    assert!(matches!(same, Cow::Borrowed(_)) && !changed);
}

#[test]
fn idle_series_expire_and_come_back_from_zero() {
    let mut rule = spec("hestyna_llm_runs_total");
    rule.expire_after_secs = 60;
    let plan = Plan::compile(&[rule, spec("hestyna_integration_failures_total")]).unwrap();
    let mut store = plan.new_store();
    store.set_now(1000);
    feed(&plan, &mut store, &llm("a", "billing", "success", 1.0));
    feed(&plan, &mut store, &llm("a", "billing", "success", 1.0));
    store.set_now(1030);
    feed(&plan, &mut store, &llm("b", "billing", "success", 1.0));
    assert_eq!(store.sweep(1059), 0);
    assert_eq!(store.sweep(1060), 1, "a has been idle for 60 s");
    assert!(!render(&store).contains("organization=\"a\""));
    assert!(render(&store).contains("organization=\"b\""));
    feed(&plan, &mut store, &llm("a", "billing", "success", 1.0));
    assert!(render(&store).contains(
        "hestyna_llm_runs_total{intent=\"billing\",organization=\"a\",outcome=\"success\"} 1\n"
    ));
    assert_eq!(store.take_counts()[0].1.expired, 1);
}

#[test]
fn window_quantiles_match_exact_ones_within_the_precision() {
    let plan = Plan::compile(&[spec("hestyna_llm_latency_seconds")]).unwrap();
    let mut store = plan.new_store();
    let t0 = 1_000_000;
    // 3 minutes of latencies, then 4 more minutes of a different distribution. The window is the current
    // (partial) one-minute slice and the four before it: only observations in those slices count.
    let mut inside = Vec::new();
    let mut state = 12345u64;
    for second in 0..420u64 {
        store.set_now(t0 + second);
        for _ in 0..20 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let base = if second < 180 { 200.0 } else { 1500.0 };
            let ms = (base + (state >> 33) as f64 % 9000.0).round();
            feed(&plan, &mut store, &llm("acme", "billing", "success", ms));
            if (t0 + second) / 60 + 5 > (t0 + 419) / 60 {
                inside.push(ms / 1000.0);
            }
        }
    }
    store.set_now(t0 + 419);
    inside.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let json = store.quantiles_json();
    let series = &json["metrics"][0]["series"][0];
    assert_eq!(
        series["count"],
        inside.len() as u64,
        "only the window's observations"
    );
    for q in [0.5, 0.95, 0.99] {
        let rank = ((q * inside.len() as f64).ceil() as usize).max(1) - 1;
        let exact = inside[rank];
        let got = series["quantiles"][crate::derive::format_value(q)]
            .as_f64()
            .unwrap();
        assert!(
            (got - exact).abs() <= exact * 1e-3 + 0.001,
            "p{q}: {got} vs exact {exact}"
        );
    }
    let out = render(&store);
    assert!(out.contains("hestyna_llm_latency_window_seconds{intent=\"billing\",organization=\"acme\",quantile=\"0.95\"} "), "{out}");
    // Once the window has passed, the series goes.
    store.sweep(t0 + 419 + 400);
    assert_eq!(
        store
            .series_counts()
            .iter()
            .find(|(n, _)| n.contains("window"))
            .unwrap()
            .1,
        0
    );
}

#[test]
fn open_metrics_rendering() {
    let plan = Plan::compile(&[spec("hestyna_llm_runs_total")]).unwrap();
    let mut store = plan.new_store();
    feed(&plan, &mut store, &llm("acme", "billing", "success", 1.0));
    let mut out = String::new();
    store.render(&mut out, crate::derive::Format::OpenMetrics);
    assert!(out.starts_with("# HELP hestyna_llm_runs LLM runs by intent and outcome.\n# TYPE hestyna_llm_runs counter\nhestyna_llm_runs_total{"), "{out}");
}

/// An LLM run with a trace id and a run id of these lengths, `latency` ms, at 2026-01-01T00:00:0`second`Z.
fn traced(run_id: &str, latency: f64, second: u32) -> String {
    format!(
        r#"{{"event_id":"e","type":"llm_run","occurred_at":"2026-01-01T00:00:0{second}.250Z","organization":"acme","run_id":"{run_id}","intent":"billing","outcome":"success","latency_ms":{latency},"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}}"#
    )
}

#[test]
fn exemplars_keep_the_latest_event_of_each_bucket_in_open_metrics_only() {
    let plan = Plan::compile(&[spec("hestyna_llm_latency_seconds")]).unwrap();
    let mut store = plan.new_store();
    store.set_now(100);
    feed(&plan, &mut store, &traced("run-1", 5500.0, 1));
    // In the same second a bucket keeps the exemplar it has; a second later it takes the next one.
    feed(&plan, &mut store, &traced("run-1b", 5600.0, 1));
    store.set_now(101);
    feed(&plan, &mut store, &traced("run-2", 5800.0, 2));
    feed(&plan, &mut store, &traced("run-3", 7000.0, 3));
    let mut om = String::new();
    store.render(&mut om, crate::derive::Format::OpenMetrics);
    let bucket = |le: &str| {
        let prefix = format!("hestyna_llm_latency_seconds_bucket{{intent=\"billing\",organization=\"acme\",le=\"{le}\"}}");
        om.lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap()
            .to_owned()
    };
    let trace = "trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"";
    // The (5, 6] bucket saw run-1 and run-1b, then run-2 a second later: run-2 is kept, with its
    // value and time.
    assert_eq!(bucket("6"), format!("hestyna_llm_latency_seconds_bucket{{intent=\"billing\",organization=\"acme\",le=\"6\"}} 3 # {{{trace},run_id=\"run-2\"}} 5.8 1767225602.250"));
    assert_eq!(bucket("8"), format!("hestyna_llm_latency_seconds_bucket{{intent=\"billing\",organization=\"acme\",le=\"8\"}} 4 # {{{trace},run_id=\"run-3\"}} 7 1767225603.250"));
    // A bucket nothing landed in has none.
    assert!(!bucket("5").contains('#'), "{}", bucket("5"));
    assert!(
        !render(&store).contains(" # {"),
        "the text format has no exemplars"
    );
}

#[test]
fn an_exemplar_never_exceeds_128_characters_and_unknown_fields_are_refused() {
    let plan = Plan::compile(&[spec("hestyna_llm_latency_seconds")]).unwrap();
    let mut store = plan.new_store();
    let long = "r".repeat(300);
    feed(&plan, &mut store, &traced(&long, 500.0, 1));
    let mut om = String::new();
    store.render(&mut om, crate::derive::Format::OpenMetrics);
    let line = om.lines().find(|l| l.contains(" # {")).unwrap();
    let labels = line
        .split(" # {")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap();
    // trace_id (8) + its value (32) + run_id (6): 82 characters of the run id are left.
    let want = format!(
        "trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",run_id=\"{}\"",
        "r".repeat(82)
    );
    assert_eq!(labels, want);
    let mut bad = spec("hestyna_llm_latency_seconds");
    bad.exemplar = vec!["trace_id".into(), "no_such_field".into(), "trace_id".into()];
    let errors = Plan::compile(&[bad]).unwrap_err();
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["exemplar[1]", "exemplar[2]"], "{errors:#?}");
}

/// A control character in an exemplar value (a NUL, a newline) becomes U+FFFD, as in a label value: a
/// NUL would otherwise end the value where the writer splits names from values, and turn the rest of
/// it into a label name of its own, which no parser accepts.
#[test]
fn control_characters_in_exemplar_values_are_replaced() {
    let plan = Plan::compile(&[spec("hestyna_llm_latency_seconds")]).unwrap();
    let mut store = plan.new_store();
    feed(
        &plan,
        &mut store,
        &traced("a\\u0000bad name!\\nx", 500.0, 1),
    );
    let mut om = String::new();
    store.render(&mut om, crate::derive::Format::OpenMetrics);
    let line = om.lines().find(|l| l.contains(" # {")).unwrap();
    assert!(
        line.contains(",run_id=\"a\u{fffd}bad name!\u{fffd}x\"} "),
        "{line}"
    );
}

#[test]
fn exemplar_pairs_are_cut_at_a_character_boundary() {
    use crate::derive::store::{push_exemplar_pair, unpack_exemplar};
    let names = ["id".to_owned(), "more".to_owned()];
    let mut packed = Vec::new();
    let left = push_exemplar_pair(&mut packed, 0, "id", "ééééé", 5);
    assert_eq!(left, 0);
    let left = push_exemplar_pair(&mut packed, 1, "more", "x", left);
    assert_eq!(left, 0, "nothing fits");
    let mut pairs = String::new();
    unpack_exemplar(&packed, &names, &mut pairs);
    assert_eq!(pairs, "id\0ééé\0");
}

proptest::proptest! {
    /// The word-at-a-time check is the byte-by-byte one, on bytes near both ends of the range.
    #[test]
    fn printable_ascii_is_the_byte_by_byte_check(bytes in proptest::collection::vec(
        proptest::prop_oneof![0x1eu8..0x22, 0x7cu8..0x82, 0x20u8..0x7f, proptest::num::u8::ANY], 0..40))
    {
        let want = bytes.iter().all(|b| (0x20..0x7f).contains(b));
        proptest::prop_assert_eq!(super::printable_ascii(&bytes), want);
    }

    /// The ASCII fast check changes nothing: the result is the char-by-char one, and never holds a control
    /// character (the store's keys rely on it: no NUL).
    #[test]
    fn sanitize_is_the_char_by_char_cleaning(value in "(\\PC|[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}]){0,24}", max in 8usize..32) {
        let (got, changed) = sanitize(Cow::Borrowed(value.as_str()), max);
        let mut want = String::new();
        for c in value.chars() {
            let c = if c.is_control() { '\u{fffd}' } else { c };
            if want.len() + c.len_utf8() > max {
                break;
            }
            want.push(c);
        }
        proptest::prop_assert_eq!(got.as_ref(), want.as_str());
        proptest::prop_assert_eq!(changed, want != value);
        proptest::prop_assert!(!got.chars().any(char::is_control));
    }
}

/// One event of a mix that exercises every path of the plan: matches and misses, skips of both
/// reasons, label values to sanitise, exemplars, windows and overflow (the rules below have small
/// limits).
fn mixed_event(kind: u8, org: u8, n: u16) -> String {
    // As JSON text: the second holds an escaped control character.
    let org = ["acme", "ac\\u0007me", "globex-with-a-long-name", "ö"][org as usize % 4];
    let second = n % 10;
    match kind % 5 {
        0 => traced(
            &format!("run-{n}"),
            f64::from(n % 97) * 150.0,
            u32::from(second),
        ),
        1 => format!(
            r#"{{"event_id":"e","type":"llm_run","occurred_at":"2026-01-01T00:00:00Z","organization":"{org}","run_id":"r","intent":"i{}","outcome":"{}","latency_ms":{n}}}"#,
            n % 7,
            ["success", "failure", "timeout"][n as usize % 3]
        ),
        2 => format!(
            r#"{{"event_id":"e","type":"integration_call","occurred_at":"2026-01-01T00:00:00Z","organization":"{org}","integration":"i{}","outcome":"failure"}}"#,
            n % 11
        ),
        3 => format!(
            r#"{{"event_id":"e","type":"request_lifecycle","occurred_at":"2026-01-01T01:00:00Z","organization":"{org}","request_id":"r{n}","stage":"resolved","channel":"chat"{}}}"#,
            [
                "",
                r#","intake_at":"2026-01-01T02:00:00Z""#,
                r#","intake_at":"2026-01-01T00:30:00Z""#
            ][n as usize % 3]
        ),
        _ => format!(
            r#"{{"event_id":"e","type":"automation_run","occurred_at":"2026-01-01T00:00:00Z","organization":"{org}","automation_id":"a{}","automation_version":1,"outcome":"success","duration_ms":{n}}}"#,
            n % 13
        ),
    }
}

/// The default rules, with limits small enough for the mix to overflow them.
fn small_limits() -> Plan {
    let rules: Vec<RuleSpec> = default_rules()
        .into_iter()
        .map(|mut r| {
            r.max_series = 6;
            r.max_series_per_organization = None;
            r.max_label_length = 12;
            r
        })
        .collect();
    Plan::compile(&rules).unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// What a decode worker prepares for a batch, applied in order by the pipeline's task, with some
    /// events left to that task (as the intake join's are), leaves the store exactly as observing each
    /// event in turn: the same exposition, exemplars included, and the same counts.
    #[test]
    fn a_prepared_batch_applies_as_its_events_observed_one_by_one(
        events in proptest::collection::vec((0u8..5, 0u8..4, 0u16..400, proptest::bool::ANY), 0..120)
    ) {
        let plan = small_limits();
        let texts: Vec<String> = events.iter().map(|&(k, o, n, _)| mixed_event(k, o, n)).collect();
        let decoded: Vec<_> = texts.iter().map(|t| decode(t.as_bytes(), None).unwrap()).collect();
        let (mut one_by_one, mut batched) = (plan.new_store(), plan.new_store());
        one_by_one.set_now(100);
        batched.set_now(100);
        for ev in &decoded {
            plan.observe(&mut one_by_one, ev);
        }
        let mut prepared = Prepared::default();
        for (at, ev) in decoded.iter().enumerate() {
            match events[at].3 {
                true => prepared.defer(at),
                false => plan.prepare(at, ev, &mut prepared),
            }
        }
        let mut cursor = Cursor::default();
        for (at, ev) in decoded.iter().enumerate() {
            if prepared.is_deferred(at) {
                plan.observe(&mut batched, ev);
            } else {
                plan.apply(&mut batched, at, ev, &prepared, &mut cursor);
            }
        }
        let open_metrics = |store: &Store| {
            let mut out = String::new();
            store.render(&mut out, crate::derive::Format::OpenMetrics);
            out
        };
        proptest::prop_assert_eq!(open_metrics(&batched), open_metrics(&one_by_one));
        proptest::prop_assert_eq!(batched.take_counts(), one_by_one.take_counts());
    }
}
