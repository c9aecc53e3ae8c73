#!/usr/bin/env python3
"""Compares two Prometheus text expositions on the families of the second (the peer's).

Usage: bench_compare.py OURS PEER -> prints "agree N" or the first differences, exits 1 on any.
Counts and buckets must be equal; sums may differ by float rounding (relative 1e-9)."""
import re
import sys

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(path):
    out = {}
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(3) or "", m.group(4)
        try:
            number = float(value)
        except ValueError:
            continue  # not a sample (the replay summary above the exposition)
        pairs = dict(PAIR.findall(labels))
        if "le" in pairs:
            pairs["le"] = repr(float(pairs["le"].replace("+Inf", "inf")))
        out[(name, tuple(sorted(pairs.items())))] = number
    return out


def main():
    ours, peer = parse(sys.argv[1]), parse(sys.argv[2])
    if not peer:
        # Nothing to compare is not agreement (the peer's program matched no line).
        print("the peer produced no samples")
        sys.exit(1)
    families = {name for name, _ in peer}
    mine = {k: v for k, v in ours.items() if k[0] in families}
    problems = []
    for key in sorted(set(mine) | set(peer)):
        a, b = mine.get(key), peer.get(key)
        if a is None or b is None:
            problems.append(f"only in {'peer' if a is None else 'ours'}: {key}")
        elif key[0].endswith("_sum"):
            if abs(a - b) > 1e-9 * max(abs(a), abs(b), 1.0):
                problems.append(f"sum differs: {key}: {a} vs {b}")
        elif a != b:
            problems.append(f"differs: {key}: {a} vs {b}")
    if problems:
        print("\n".join(problems[:20]))
        print(f"{len(problems)} differences over {len(peer)} peer samples")
        sys.exit(1)
    print(f"agree {len(peer)}")


main()
