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
p.add_argument("--e2e-metrics", required=True,
               help="JSON lines of bench_e2e.py, end to end from the broker, metrics pipeline alone")
p.add_argument("--replay-1core", type=float, required=True, help="median seconds of replay on one core")
p.add_argument("--replay-2cores", type=float, required=True, help="median seconds of replay on two cores")
p.add_argument("--forward-count", type=int, required=True, help="events of each forward-only replay")
p.add_argument("--forward-plain", type=float, required=True,
               help="median CPU seconds of forward-only replay, generated corpus")
p.add_argument("--forward-harder", type=float, required=True,
               help="median CPU seconds of forward-only replay, corpus with escapes, offsets, nested fields")
p.add_argument("--profiles", help="folder of perf reports (NAME.threads.txt and NAME.functions.txt a run) for the missed targets")
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
noscrape, scrape = med(lines(a.noscrape), "rate"), med(lines(a.scrape), "rate")
rss = med(lines(a.noscrape), "rss_mib")
series = med(lines(a.noscrape), "derived_series")
sweep = lines(a.sweep)
fresh = (lines(a.freshness) or [{}])[0]
ratio = lambda x, y: "n/a" if None in (x, y) or not y else f"{x / y:.2f}x"
rows += [
    ("end to end from the broker: both pipelines, default rules, file SIEM sink (events/s)", fmt(e2e),
     "bare consumer " + fmt(bare), ratio(e2e, bare), "restated as CPU per event, below", ""),
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

# The plumbing's cost (issue 17): CPU per event against the work it carries, measured in this run.
us = lambda per_second: None if not per_second else 1e6 / per_second
per_event = lambda rows: (lambda cpu: None if not cpu else cpu * 1e6 / a.count)(med(rows, "cpu_seconds"))
bare_us = per_event(lines(a.bare))
both_us = per_event(lines(a.e2e))
metrics_only_us = per_event(lines(a.e2e_metrics))
metrics_only = med(lines(a.e2e_metrics), "rate")
floor_both = None if None in (bare_us, metrics, forward) else 2 * bare_us + us(metrics) + us(forward)
floor_metrics = None if None in (bare_us, metrics) else bare_us + us(metrics)
forward_plain_us = a.forward_plain * 1e6 / a.forward_count
forward_harder_us = a.forward_harder * 1e6 / a.forward_count
one_core, two_cores = a.count / a.replay_1core, a.count / a.replay_2cores
micro = lambda x: "n/a" if x is None else f"{x:.2f}"
# The broker's share: CPU per event, and cores in use (client + broker CPU over the run's length; the
# client's CPU includes its start-up, so this is an upper bound). Runs without the figure read n/a.
broker_runs = [lines(a.bare), lines(a.e2e_metrics), lines(a.e2e)]
broker_us = lambda rows: (lambda cpu: None if cpu is None else cpu * 1e6 / a.count)(
    med(rows, "broker_cpu_seconds"))
busy = lambda rows: (lambda b, c, r: None if None in (b, c) or not r else (b + c) * r / a.count)(
    med(rows, "broker_cpu_seconds"), med(rows, "cpu_seconds"), med(rows, "rate"))
within = lambda x, floor, limit: ok(None if None in (x, floor) else x <= limit * floor)
rows += [
    ("end to end from the broker, metrics pipeline alone (events/s)", fmt(metrics_only),
     "bare consumer " + fmt(bare), ratio(metrics_only, bare), "", ""),
    ("bare consumer: CPU per event (µs, the daemon's librdkafka settings)", micro(bare_us), "", "", "", ""),
    ("end to end, both pipelines: CPU per event (µs)", micro(both_us),
     "2 x bare %s + metrics hot %s + forward hot %s = %s" % (
         micro(bare_us), micro(us(metrics)), micro(us(forward)), micro(floor_both)),
     ratio(both_us, floor_both), "<= 1.25x", within(both_us, floor_both, 1.25)),
    ("end to end, metrics pipeline alone (the sidecar's setting): CPU per event (µs)", micro(metrics_only_us),
     "bare %s + metrics hot %s = %s" % (micro(bare_us), micro(us(metrics)), micro(floor_metrics)),
     ratio(metrics_only_us, floor_metrics), "<= 1.25x", within(metrics_only_us, floor_metrics, 1.25)),
    ("forward pipeline alone, replay of %s generated events into a file SIEM sink: CPU per event (µs)"
     % fmt(a.forward_count), micro(forward_plain_us), "forward hot path " + micro(us(forward)),
     ratio(forward_plain_us, us(forward)), "<= 1.5x", within(forward_plain_us, us(forward), 1.5)),
    ("... the same events with escapes, +02:00 offsets and nested unknown fields (µs)", micro(forward_harder_us),
     "forward hot path " + micro(us(forward)), ratio(forward_harder_us, us(forward)), "<= 1.5x",
     within(forward_harder_us, us(forward), 1.5)),
    ("broker (tansu, on the same two cores): CPU per event (µs) during the bare consumer / the metrics "
     "pipeline alone / both pipelines", " / ".join(micro(broker_us(r)) for r in broker_runs), "", "", "", ""),
    ("cores busy over each of those runs, daemon (or bare consumer) + broker, of 2",
     " / ".join(micro(busy(r)) for r in broker_runs), "", "", "", ""),
    ("replay of %d events on two cores (two decode workers; events/s)" % a.count, fmt(two_cores),
     "one core " + fmt(one_core), ratio(two_cores, one_core), ">= 1.6x", ok(two_cores >= 1.6 * one_core)),
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
    def bars(name, title, ylabel, labels, series, limits=()):
        """Grouped bars: series is [(legend, values, stacked parts or None)], limits [(x, y, label)]."""
        fig, ax = plt.subplots(figsize=(7.5, 3.8))
        width = 0.8 / len(series)
        for i, (legend, values, parts) in enumerate(series):
            xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
            if parts:
                bottom = [0.0] * len(labels)
                for part, heights in parts:
                    heights = [h or 0 for h in heights]
                    ax.bar(xs, heights, width, bottom=bottom, label=part)
                    bottom = [b + h for b, h in zip(bottom, heights)]
            else:
                ax.bar(xs, [v or 0 for v in values], width, label=legend, color="dimgray")
        for x, y, label in limits:
            if y:
                ax.hlines(y, x - 0.45, x + 0.45, colors="red", linestyles="--")
                ax.annotate(label, (x - 0.45, y), fontsize=7, color="red", va="bottom", ha="left")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(a.plots, name), dpi=100)
        plots.append(name)

    zero = lambda x: x or 0
    bars("cpu-per-event.png", "CPU per event: measured against the work it carries (floor)", "µs per event",
         ["both pipelines\nfrom the broker", "metrics alone\nfrom the broker", "forward replay\ngenerated",
          "forward replay\nharder corpus"],
         [("floor", None, [
             ("bare consumer (x2 for both)", [2 * zero(bare_us), zero(bare_us), 0, 0]),
             ("metrics hot path", [zero(us(metrics)), zero(us(metrics)), 0, 0]),
             ("forward hot path", [zero(us(forward)), 0, zero(us(forward)), zero(us(forward))])]),
          ("measured", [both_us, metrics_only_us, forward_plain_us, forward_harder_us], None)],
         [(0, floor_both and 1.25 * floor_both, "target 1.25x"),
          (1, floor_metrics and 1.25 * floor_metrics, "target 1.25x"),
          (2, us(forward) and 1.5 * us(forward), "target 1.5x"),
          (3, us(forward) and 1.5 * us(forward), "target 1.5x")])
    bars("e2e-vs-bare.png", "End to end from the broker against a bare consumer", "events/s",
         ["bare consumer", "metrics pipeline alone", "both pipelines"],
         [("events/s", [bare, metrics_only, e2e], None)])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([1, 2], [one_core, two_cores], marker="o", label="replay, measured")
    ax.plot([1, 2], [one_core, 2 * one_core], linestyle=":", color="grey", label="linear")
    ax.axhline(1.6 * one_core, color="red", linestyle="--", label="target 1.6x")
    ax.set_xticks([1, 2])
    ax.set_xlabel("cores = decode workers")
    ax.set_ylabel("events/s")
    ax.set_title("Replay throughput against workers")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(a.plots, "throughput-vs-workers.png"), dpi=100)
    plots.append("throughput-vs-workers.png")
    if sizes is not None and render and gzipped:
        fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.3))
        left.bar(["identity", "gzip"], [int(sizes.group(1)) / 1e6, int(sizes.group(2)) / 1e6])
        left.set_ylabel("MB per scrape")
        left.set_title("bytes, 100,000 series", fontsize=9)
        right.bar(["identity", "gzip"], [render * 1e3, gzipped * 1e3])
        right.axhline(80, color="red", linestyle="--", label="gzip target 80 ms")
        right.axhline(50, color="orange", linestyle=":", label="identity target 50 ms")
        right.set_ylabel("ms per scrape")
        right.set_title("render time, 100,000 series", fontsize=9)
        right.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(a.plots, "scrape-identity-vs-gzip.png"), dpi=100)
        plots.append("scrape-identity-vs-gzip.png")
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

PROFILES = [
    ("e2e-both", "End to end from the broker, both pipelines (CPU per event target)"),
    ("e2e-metrics", "End to end from the broker, metrics pipeline alone (CPU per event target)"),
    ("forward-harder", "Forward pipeline alone, harder corpus (forward overhead target)"),
    ("replay-2cores", "Replay on two cores (workers target)"),
]
have = lambda n: os.path.exists(os.path.join(a.profiles, n)) and os.path.getsize(os.path.join(a.profiles, n))
if a.profiles and any(have(n + ".functions.txt") for n, _ in PROFILES):
    print("\n## Profiles\n")
    print("Flat `perf record -e cpu-clock` profiles of one more run each, made by this run: share of the "
          "samples by thread, then by function (self time; at least 2% and 1.5%). What they say about the "
          "missed targets, and what would move them: [ANALYSIS.md](ANALYSIS.md).")
    for name, title in PROFILES:
        for part in ("threads", "functions"):
            if have(f"{name}.{part}.txt"):
                if part == "threads":
                    print(f"\n### {title}\n")
                print("```\n" + open(os.path.join(a.profiles, f"{name}.{part}.txt")).read().rstrip() + "\n```")
