#!/usr/bin/env python3
"""Runs the daemon on a configuration until both pipelines finished COUNT records, watching /metrics;
prints one JSON line: the end-to-end rate (from the first record seen to the last one done), and the
resident memory at the end.

With --scrape-every S, also scrapes /metrics every S seconds from another thread (Prometheus-style) for
the whole run."""
import argparse
import json
import os
import re
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
a = p.parse_args()

url = f"http://127.0.0.1:{a.port}/metrics"


def scrape():
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def total(text, name, label):
    return sum(float(m.group(1)) for m in re.finditer(
        r"^%s\{[^}]*%s[^}]*\} (\S+)$" % (re.escape(name), re.escape(label)), text, re.M))


daemon = subprocess.Popen([a.bin, "--config", a.config, "run"], stdout=subprocess.DEVNULL,
                          stderr=open(a.config + ".log", "w"))
stop = threading.Event()
scrapes = []


def scraper():
    while not stop.wait(a.scrape_every):
        t = time.monotonic()
        try:
            body = scrape()
            scrapes.append((time.monotonic() - t, len(body)))
        except OSError:
            pass


try:
    deadline = time.monotonic() + a.timeout
    first = None
    while True:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out; see {a.config}.log")
        try:
            text = scrape()
        except OSError:
            time.sleep(0.05)
            continue
        metrics = total(text, "hestyna_obsd_events_received_total", 'pipeline="metrics"')
        if first is None and metrics > 0:
            first = time.monotonic()
            if a.scrape_every > 0:
                threading.Thread(target=scraper, daemon=True).start()
        forwarded = total(text, "hestyna_obsd_sink_records_total", f'sink="{a.sink}"') if a.sink else a.count
        if metrics >= a.count and forwarded >= a.count:
            done = time.monotonic()
            break
        time.sleep(0.02)
    stop.set()
    rss_kib = 0
    for line in open(f"/proc/{daemon.pid}/status"):
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    ticks = os.sysconf("SC_CLK_TCK")
    fields = open(f"/proc/{daemon.pid}/stat").read().rsplit(")", 1)[1].split()
    cpu_seconds = (int(fields[11]) + int(fields[12])) / ticks
    series = total(text, "hestyna_obsd_derived_series", "")
    print(json.dumps({
        "records": a.count,
        "seconds": done - first,
        "rate": a.count / (done - first),
        "rss_mib": rss_kib / 1024,
        "cpu_seconds": cpu_seconds,
        "derived_series": series,
        "scrapes": len(scrapes),
        "scrape_max_ms": max((s[0] for s in scrapes), default=0) * 1e3,
    }))
finally:
    stop.set()
    daemon.terminate()
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
