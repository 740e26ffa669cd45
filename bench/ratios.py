#!/usr/bin/env python3
"""Per-round ratios from bench/rotate.sh output (read on stdin).

    bench/rotate.sh ... | bench/ratios.py "A/B" ...

For each pair, every round's time of B divided by the same round's time of
A (each name is the start of a command's name in rotate.sh), and their
median: how many times faster A was, with the load of each round shared by
both. On a machine others use, that is steadier than a ratio of medians.
"""
import re
import statistics
import sys

runs = {}
for line in sys.stdin:
    m = re.match(r"(.*?)\s+median ([\d.]+)\s+runs (.*)", line.rstrip())
    if m:
        runs[m.group(1).strip()] = [float(x) for x in m.group(3).split()]
for name, t in runs.items():
    print(f"{name:28s} median {statistics.median(t):.3f}  min {min(t):.3f}")


def find(prefix):
    hits = [n for n in runs if n.startswith(prefix)]
    if not hits:
        sys.exit(f"no command named {prefix!r}")
    return hits[0]


for pair in sys.argv[1:]:
    a, b = (find(p) for p in pair.split("/", 1))
    r = [y / x for x, y in zip(runs[a], runs[b])]
    faster = sum(1 for v in r if v > 1)
    print(f"{b} / {a}: per-round median {statistics.median(r):.3f}, "
          f"{a} faster in {faster} of {len(r)} rounds")
