#!/usr/bin/env python3
"""Runs the daemon on a configuration until both pipelines finished COUNT records; prints one JSON line:
the end-to-end rate (from the first record seen to the last one done), and the resident memory at the end;
the daemon's CPU seconds, and with --broker-pid the broker's over the same run (from the daemon's start
to its end).

The run is not watched through /metrics while it goes: with ~100,000 series a scrape is megabytes, and
scraping every few milliseconds would be the heaviest load of the run. The daemon's CPU time (from
/proc) is sampled instead; when it goes idle, one scrape checks that every record is counted, and the
run ended where the idle stretch began.

With --scrape-every S, also scrapes /metrics every S seconds from another thread (Prometheus-style) for
the whole run."""
import argparse
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("--bin", required=True)
p.add_argument("--config", required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--count", type=int, required=True)
p.add_argument("--sink", default="siem", help="the sink whose records are counted ('' for none)")
p.add_argument("--scrape-every", type=float, default=0.0)
p.add_argument("--timeout", type=float, default=300.0)
p.add_argument("--perf", help="also profile the daemon (perf record -e cpu-clock) into this file")
p.add_argument("--broker-pid", type=int,
               help="also report this process's CPU seconds over the run (the broker on the same cores)")
a = p.parse_args()

url = f"http://127.0.0.1:{a.port}/metrics"


def scrape():
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def total(text, name, label):
    return sum(float(m.group(1)) for m in re.finditer(
        r"^%s\{[^}]*%s[^}]*\} (\S+)$" % (re.escape(name), re.escape(label)), text, re.M))


def process_cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


broker_start = process_cpu_seconds(a.broker_pid) if a.broker_pid else None
daemon = subprocess.Popen([a.bin, "--config", a.config, "run"], stdout=subprocess.DEVNULL,
                          stderr=open(a.config + ".log", "w"))
# Attached to the daemon (not its parent): stopped with SIGINT once the run is measured, so it writes
# its file while the daemon still runs.
perf = None if not a.perf else subprocess.Popen(
    ["perf", "record", "-q", "-F", "997", "-e", "cpu-clock", "-o", a.perf, "-p", str(daemon.pid)],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
stop = threading.Event()
scrapes = []


def scraper():
    # curl, not urllib: the scraper shares this machine's cores with the daemon, and Python reading
    # megabytes per second would cost the run more than a Prometheus server elsewhere would. It asks
    # for gzip as Prometheus does (and, like Prometheus' decoder elsewhere, does not inflate here).
    while not stop.wait(a.scrape_every):
        t = time.monotonic()
        done = subprocess.run(["curl", "-sf", "-H", "Accept-Encoding: gzip", "-o", "/dev/null",
                               "-w", "%{size_download}", url],
                              capture_output=True, text=True)
        if done.returncode == 0:
            scrapes.append((time.monotonic() - t, int(done.stdout or 0)))


def cpu_seconds():
    return process_cpu_seconds(daemon.pid)


def finished(text):
    metrics = total(text, "hestyna_obsd_events_received_total", 'pipeline="metrics"')
    forwarded = total(text, "hestyna_obsd_sink_records_total", f'sink="{a.sink}"') if a.sink else a.count
    return metrics >= a.count and forwarded >= a.count


# Idle: less than this share of one core over the window.
IDLE_WINDOW, IDLE_SHARE, SAMPLE = 0.3, 0.3, 0.05

try:
    deadline = time.monotonic() + a.timeout
    first = None
    while first is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out; see {a.config}.log")
        try:
            text = scrape()
        except OSError:
            time.sleep(0.05)
            continue
        received = total(text, "hestyna_obsd_events_received_total", 'pipeline="metrics"')
        if received > 0:
            # A fast source (a file) may be well into its records by the first successful scrape: the
            # rate counts only the records after it.
            first, base = time.monotonic(), received
            if a.scrape_every > 0:
                threading.Thread(target=scraper, daemon=True).start()
        else:
            time.sleep(0.005)
    samples = []  # (time, cpu seconds)
    done = None
    while done is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out; see {a.config}.log")
        time.sleep(SAMPLE)
        samples.append((time.monotonic(), cpu_seconds()))
        # The latest sample at least a window back.
        earlier = [s for s in samples if s[0] <= samples[-1][0] - IDLE_WINDOW]
        if not earlier:
            continue
        start = earlier[-1]
        span = samples[-1][0] - start[0]
        if samples[-1][1] - start[1] < IDLE_SHARE * span:
            text = scrape()
            if finished(text):
                done = start[0]
    stop.set()
    rss_kib = 0
    for line in open(f"/proc/{daemon.pid}/status"):
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    cpu = cpu_seconds()
    broker = None if broker_start is None else process_cpu_seconds(a.broker_pid) - broker_start
    series = total(text, "hestyna_obsd_derived_series", "")
    print(json.dumps({
        "records": a.count,
        "seconds": done - first,
        "counted_from": base,
        "rate": (a.count - base) / (done - first),
        "rss_mib": rss_kib / 1024,
        "cpu_seconds": cpu,
        "broker_cpu_seconds": broker,
        "derived_series": series,
        "scrapes": len(scrapes),
        "scrape_max_ms": max((s[0] for s in scrapes), default=0) * 1e3,
    }))
finally:
    stop.set()
    if perf is not None:
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=60)
    daemon.terminate()
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
