#!/usr/bin/env python3
"""Writes bench/REPORT.md from the figures scripts/bench measured (all in the same run)."""
import argparse
import re
import platform
import datetime

p = argparse.ArgumentParser()
p.add_argument("--count", type=int, required=True)
p.add_argument("--replay", type=float, required=True, help="median seconds")
p.add_argument("--mtail", type=float, required=True, help="median seconds")
p.add_argument("--agree", required=True)
p.add_argument("--criterion", required=True)
a = p.parse_args()

UNITS = {"elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9}
TIMES = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1}


def criterion(path):
    """name -> (throughput per second or None, time in seconds), middle estimates."""
    out, name = {}, None
    for line in open(path, encoding="utf-8"):
        head = re.match(r"^([A-Za-z0-9_]+/[A-Za-z0-9_]+)", line)
        if head:
            name = head.group(1)
        t = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
        if t and name:
            out.setdefault(name, [None, None])[1] = float(t.group(1)) * TIMES[t.group(2)]
        r = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
        if r and name and "%" not in line:
            out.setdefault(name, [None, None])[0] = float(r.group(1)) * UNITS[r.group(2)]
    return out


c = criterion(a.criterion)
rate = lambda k: c.get(k, [None, None])[0]
time_ = lambda k: c.get(k, [None, None])[1]
replay_rate, mtail_rate = a.count / a.replay, a.count / a.mtail
value = rate("events/baseline_parse_to_serde_json_value")
metrics = rate("events/metrics_decode_and_derive")
decode = rate("events/decode")
forward = rate("events/forward_decode_enrich_redact_encode")
render = time_("render_100k_series/snapshot_and_format_text")
lock = time_("render_100k_series/snapshot_under_lock")


def fmt(x, unit=""):
    return "n/a" if x is None else f"{x:,.0f}{unit}"


def ok(cond):
    return "n/a" if cond is None else ("pass" if cond else "**fail**")


rows = [
    ("replay of %d events, default rules (events/s)" % a.count, fmt(replay_rate), "mtail " + fmt(mtail_rate),
     f"{replay_rate / mtail_rate:.1f}x", ">= 30x", ok(replay_rate / mtail_rate >= 30)),
    ("replay and mtail agree on every count", a.agree, "", "", "agree", ok(a.agree.startswith("agree"))),
    ("metrics hot path: decode + derive, one core (events/s)", fmt(metrics), "serde_json::Value parse " + fmt(value),
     "n/a" if None in (metrics, value) else f"{metrics / value:.2f}x", ">= 1,000,000/s and >= 1.0x",
     ok(None if None in (metrics, value) else metrics >= 1e6 and metrics >= value)),
    ("decode alone, one core (events/s)", fmt(decode), "serde_json::Value parse " + fmt(value),
     "n/a" if None in (decode, value) else f"{decode / value:.2f}x", "", ""),
    ("forward hot path: decode + enrich + redact + encode, one core (events/s)", fmt(forward), "", "", ">= 300,000/s",
     ok(None if forward is None else forward >= 3e5)),
    ("/metrics with 100,000 series: copy under the lock + formatting (ms)", "n/a" if render is None else f"{render * 1e3:.1f}",
     "", "", "<= 50 ms", ok(None if render is None else render <= 0.05)),
    ("... of which the store is locked (ms)", "n/a" if lock is None else f"{lock * 1e3:.1f}", "", "", "", ""),
]

print("# Benchmark report\n")
print(f"Made by `scripts/bench` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
      f"{platform.machine()}, {platform.system()}. Medians of 3 runs (criterion: its middle estimate); every "
      "ratio is against a baseline measured in the same run.\n")
print("| figure | value | baseline | ratio | target | result |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    print("| " + " | ".join(r) + " |")
print("\nNot measured yet (issue 6): end to end from the broker against a bare consumer; ingestion while "
      "scrapes run every second; resident memory with 100,000 series; freshness at half the maximum rate; "
      "the PNG plots.")
