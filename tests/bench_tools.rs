//! The benchmark tools: the bare consumer reads exactly what was produced.

mod common;

use common::*;
use std::process::Command;

#[test]
fn the_bare_consumer_reads_every_record_and_reports_a_rate() {
    let broker = Broker::start();
    let topic = unique("bench");
    broker.create_topic(&topic, 2);
    broker.produce(&topic, &generated(31, 500, 0.0));
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_hestyna-obsd-bench"))
            .args(["consume", "--brokers", &broker.addr, "--topic", &topic])
            .args(["--count", "500", "--property", "fetch.wait.max.ms=10"])
            .args(["--timeout-secs", "60"]),
    );
    let measured: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(measured["records"], 500);
    assert!(measured["rate"].as_f64().unwrap() > 0.0);

    // Asked for more than there is, it gives up at its timeout and says so.
    let out = Command::new(env!("CARGO_BIN_EXE_hestyna-obsd-bench"))
        .args(["consume", "--brokers", &broker.addr, "--topic", &topic])
        .args(["--count", "501", "--timeout-secs", "5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("read 500 of 501"));
}
