#!/usr/bin/env python3
"""Turns generated events (stdin, one JSON object a line) into the harder corpus of scripts/bench's
forward runs (stdout): the same events, with

- occurred_at written at a +02:00 offset (the same instant), so enrichment normalises every timestamp;
- a nested object of fields the daemon does not know (arrays, numbers, booleans, nulls), which the
  forward pipeline carries through as it is;
- strings with escapes in it: quotes, backslashes, tabs, newlines, and non-ASCII text written as
  \\uXXXX escapes (a surrogate pair among them), so the redaction quick check cannot take the plain
  ASCII path and the encoder has escapes to write.

No personal data is added: the generated events' own share of redaction matches stays as it is, so the
corpus differs from the plain one only in how its text is written.

Deterministic: event N gets the same additions on every run."""
import datetime
import json
import sys

OFFSET = datetime.timezone(datetime.timedelta(hours=2))
NOTES = [
    'customer wrote: "my invoice is wrong"\tplease check\nthanks',
    "path C:\\Users\\ops\\export.csv was not found",
    "réclamation reçue — Zürich office 🚀",
    "plain note without anything special",
]


def harder(event, n):
    at = datetime.datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    event["occurred_at"] = at.astimezone(OFFSET).isoformat(timespec="milliseconds")
    event["client"] = {
        "note": NOTES[n % len(NOTES)],
        "tags": ["web", "tier\t2", None, n % 7 == 0],
        "geo": {"lat": 47.37 + (n % 100) / 1000, "lon": 8.54, "city": "Zürich"},
    }
    return event


for n, line in enumerate(sys.stdin):
    event = json.loads(line)
    sys.stdout.write(json.dumps(harder(event, n), ensure_ascii=True, separators=(",", ":")) + "\n")
