#!/usr/bin/env python3
"""Writes bench/REPORT.md from the figures scripts/bench measured (all in the same run)."""
import argparse
import re
import platform
import datetime
import json
import os
import statistics

p = argparse.ArgumentParser()
p.add_argument("--count", type=int, required=True)
p.add_argument("--replay", type=float, required=True, help="median seconds")
p.add_argument("--mtail", type=float, required=True, help="median seconds")
p.add_argument("--agree", required=True)
p.add_argument("--criterion", required=True)
p.add_argument("--bare", required=True, help="JSON lines of hestyna-obsd-bench consume")
p.add_argument("--e2e", required=True, help="JSON lines of bench_e2e.py, end to end from the broker")
p.add_argument("--noscrape", required=True)
p.add_argument("--scrape", required=True)
p.add_argument("--sweep", required=True, help="JSON lines: throughput at growing series counts")
p.add_argument("--freshness", required=True)
p.add_argument("--freshness-hist", required=True)
p.add_argument("--plots", required=True, help="folder for the PNG plots")
p.add_argument("--replay-traced", type=float, required=True,
               help="median seconds of replay exporting spans to a collector that is down")
a = p.parse_args()


def lines(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip()]
    except (OSError, ValueError):
        return []


def med(rows, key):
    values = [r[key] for r in rows if r.get(key)]
    return statistics.median(values) if values else None

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
no_exemplars = rate("events/metrics_decode_and_derive_without_exemplars")
decode = rate("events/decode")
forward = rate("events/forward_decode_enrich_redact_encode")
render = time_("render_100k_series/snapshot_and_format_text")
lock = time_("render_100k_series/snapshot_under_lock")
gzipped = time_("render_100k_series/snapshot_format_and_gzip")
sizes = re.search(r"render: \d+ sample lines, (\d+) bytes, (\d+) gzipped", open(a.criterion, encoding="utf-8").read())
shrink = None if sizes is None else int(sizes.group(1)) / int(sizes.group(2))
traced_rate = a.count / a.replay_traced


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
    ("... with the default rules' exemplars (events/s; the line above is with them)", fmt(metrics),
     "exemplars off " + fmt(no_exemplars),
     "n/a" if None in (metrics, no_exemplars) else f"{metrics / no_exemplars:.2f}x", ">= 0.9x",
     ok(None if None in (metrics, no_exemplars) else metrics >= 0.9 * no_exemplars)),
    ("decode alone, one core (events/s)", fmt(decode), "serde_json::Value parse " + fmt(value),
     "n/a" if None in (decode, value) else f"{decode / value:.2f}x", "", ""),
    ("forward hot path: decode + enrich + redact + encode, one core (events/s)", fmt(forward), "", "", ">= 300,000/s",
     ok(None if forward is None else forward >= 3e5)),
    ("/metrics with 100,000 series: copy under the lock + formatting (ms)", "n/a" if render is None else f"{render * 1e3:.1f}",
     "", "", "<= 50 ms", ok(None if render is None else render <= 0.05)),
    ("... of which the store is locked (ms)", "n/a" if lock is None else f"{lock * 1e3:.1f}", "", "", "", ""),
    ("/metrics with 100,000 series, gzip as Prometheus asks: copy + formatting + compression (ms)",
     "n/a" if gzipped is None else f"{gzipped * 1e3:.1f}", "", "", "<= 80 ms", ok(None if gzipped is None else gzipped <= 0.08)),
    ("... bytes: identity against gzip", "n/a" if sizes is None else f"{int(sizes.group(2)):,} B",
     "identity " + ("n/a" if sizes is None else f"{int(sizes.group(1)):,} B"),
     "n/a" if shrink is None else f"{shrink:.1f}x fewer", ">= 5x fewer", ok(None if shrink is None else shrink >= 5)),
    ("replay exporting its spans to an OTLP collector that is down (events/s)", fmt(traced_rate),
     "tracing off " + fmt(replay_rate), f"{traced_rate / replay_rate:.2f}x", ">= 0.9x", ok(traced_rate >= 0.9 * replay_rate)),
]

bare, e2e = med(lines(a.bare), "rate"), med(lines(a.e2e), "rate")
e2e_cpu = med(lines(a.e2e), "cpu_seconds")
noscrape, scrape = med(lines(a.noscrape), "rate"), med(lines(a.scrape), "rate")
rss = med(lines(a.noscrape), "rss_mib")
series = med(lines(a.noscrape), "derived_series")
sweep = lines(a.sweep)
fresh = (lines(a.freshness) or [{}])[0]
ratio = lambda x, y: "n/a" if None in (x, y) or not y else f"{x / y:.2f}x"
rows += [
    ("end to end from the broker: both pipelines, default rules, file SIEM sink (events/s)", fmt(e2e),
     "bare consumer " + fmt(bare), ratio(e2e, bare), ">= 0.8x", ok(None if None in (e2e, bare) else e2e >= 0.8 * bare)),
    ("... CPU per event end to end (µs, both pipelines and both consumers)",
     "n/a" if not e2e_cpu else f"{e2e_cpu * 1e6 / a.count:.1f}", "", "", "", ""),
    ("ingestion from a file at %s active series with a gzip scrape every second (events/s; %s scrapes in all)"
     % (fmt(series), fmt(sum(r["scrapes"] for r in lines(a.scrape)))), fmt(scrape),
     "no scrapes " + fmt(noscrape), ratio(scrape, noscrape), ">= 0.9x",
     ok(None if None in (scrape, noscrape) else scrape >= 0.9 * noscrape)),
    ("resident memory at %s active series (MiB)" % fmt(series), "n/a" if rss is None else f"{rss:.0f}", "", "",
     "<= 150 MiB", ok(None if rss is None else rss <= 150)),
    ("freshness at %s events/s: produce -> visible in /metrics, p99 (ms)" % fmt(fresh.get("load_events", 0) / 20 if fresh else None),
     "n/a" if not fresh else f"{fresh['p99_ms']:.0f}", "p50 %s, max %s, %s/%s probes seen" % (
         fresh.get("p50_ms"), fresh.get("max_ms"), fresh.get("seen"), fresh.get("probes")) if fresh else "",
     "", "<= 1000 ms", ok(None if not fresh else fresh["p99_ms"] <= 1000 and fresh["seen"] == fresh["probes"])),
]

# scripts/soak's run, when there is one: memory with the default configuration under broker load.
soak_file = os.path.join(os.path.dirname(a.e2e), "soak.json")
if os.path.exists(soak_file):
    soak = json.load(open(soak_file))
    rows.append((
        "resident memory, default configuration, %d min from the broker at %s events/s, %s series "
        "(scripts/soak; peak MiB)" % (soak["minutes"], fmt(soak["rate"]), fmt(soak["series"])),
        f"{soak['peak_mib']:.0f}", "second minute %.0f, last minute %.0f" % (
            soak["second_minute_mib"], soak["last_minute_mib"]),
        f"{soak['last_minute_mib'] / soak['second_minute_mib']:.2f}x", "<= 150 MiB, last <= 1.10x",
        ok(soak["peak_mib"] <= 150 and soak["last_minute_mib"] <= 1.1 * soak["second_minute_mib"])))

plots = []
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if sweep:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["derived_series"] for r in sweep], [r["rate"] for r in sweep], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("active series")
        ax.set_ylabel("events/s (file source, metrics)")
        ax.set_title("Throughput against active series")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(a.plots, "throughput-vs-series.png"), dpi=100)
        plots.append("throughput-vs-series.png")
    samples = [int(l) for l in open(a.freshness_hist) if l.strip()] if os.path.exists(a.freshness_hist) else []
    if samples:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(samples, bins=40)
        ax.axvline(sorted(samples)[int(0.99 * (len(samples) - 1))], color="red", linestyle="--", label="p99")
        ax.set_xlabel("ms from produce to /metrics")
        ax.set_ylabel("probes")
        ax.set_title("Freshness")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(a.plots, "freshness.png"), dpi=100)
        plots.append("freshness.png")
except ImportError:
    pass

print("# Benchmark report\n")
print(f"Made by `scripts/bench` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
      f"{platform.machine()}, {platform.system()}. Medians of 3 runs (criterion: its middle estimate); every "
      "ratio is against a baseline measured in the same run.\n")
print("| figure | value | baseline | ratio | target | result |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    print("| " + " | ".join(r) + " |")
if sweep:
    print("\nThroughput against active series (file source, metrics pipeline, %s events each):\n"
          % fmt(sweep[0]["records"]))
    print("| organizations | active series | events/s | resident MiB |")
    print("| --- | --- | --- | --- |")
    for r, orgs in zip(sweep, [10, 100, 1000, 5000, 20000]):
        print(f"| {orgs} | {r['derived_series']:,.0f} | {r['rate']:,.0f} | {r['rss_mib']:.0f} |")
for name in plots:
    print(f"\n![{name}]({name})")
