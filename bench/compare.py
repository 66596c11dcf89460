#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compare hmmu-bench JSON files of two builds (or of two settings).

Usage: compare.py A.json[,A2.json...] B.json[,B2.json...]

Each side may be several runs, comma-separated: their figures are reduced
to the median per class, which is what to do on a noisy machine (run A and
B alternately, a few times each). Prints which build wrote each side (its
"version" and "commit"), then, per class, p50 (GB/s for the stream) and the
ratio to the same-run floor on each side, and the change.
The floors' own change says how much the machine moved between the runs:
trust a class's change only where it is well above that.
"""
import json
import statistics
import sys


def load(arg):
    runs = []
    for path in arg.split(","):
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    return runs


def figure(entry):
    if not isinstance(entry, dict) or "skipped" in entry:
        return None
    return entry.get("gbps") if "gbps" in entry else entry.get("p50_ns")


def builds(runs):
    """The builds that wrote @runs: "0.1.0 (4acd2a32ca43)", ..."""
    seen = []
    for run in runs:
        commit = run.get("commit")
        # Format 1 had no commit, and "version" was the format's.
        build = (f"{run.get('version')} ({commit})" if commit
                 else "unknown (written before hmmu-bench said)")
        if build not in seen:
            seen.append(build)
    return ", ".join(seen)


def median_of(runs, section, name, key):
    values = []
    for run in runs:
        entry = run.get(section, {}).get(name)
        value = figure(entry) if key is None else (entry or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values.append(value)
    return statistics.median(values) if values else None


def show(v, bandwidth):
    if v is None:
        return "-"
    return f"{v:.2f} GB/s" if bandwidth else f"{v / 1000:.2f} us"


def change(a, b, bandwidth):
    if a is None or b is None or a == 0:
        return "-"
    pct = (b - a) / a * 100
    better = pct > 0 if bandwidth else pct < 0
    return f"{pct:+.1f}%" + (" better" if better and abs(pct) >= 1 else "")


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    a, b = load(sys.argv[1]), load(sys.argv[2])
    print(f"A: hmmu-bench {builds(a)}, {len(a)} run(s)")
    print(f"B: hmmu-bench {builds(b)}, {len(b)} run(s)\n")
    names = list(a[0].get("classes", {}))
    print(f"{'class':22} {'A p50':>12} {'B p50':>12} {'change':>14}"
          f"   {'A ratio':>8} {'B ratio':>8}")
    for name in names:
        bw = "gbps" in (a[0]["classes"].get(name) or {})
        va = median_of(a, "classes", name, None)
        vb = median_of(b, "classes", name, None)
        ra = median_of(a, "classes", name, "ratio")
        rb = median_of(b, "classes", name, "ratio")
        rs = [f"{r:.2f}x" if r is not None else "-" for r in (ra, rb)]
        print(f"{name:22} {show(va, bw):>12} {show(vb, bw):>12} "
              f"{change(va, vb, bw):>14}   {rs[0]:>8} {rs[1]:>8}")
    print(f"\n{'floor (the machine)':22} {'A p50':>12} {'B p50':>12} "
          f"{'change':>14}")
    for name in a[0].get("floors", {}):
        bw = "gbps" in (a[0]["floors"].get(name) or {})
        va = median_of(a, "floors", name, None)
        vb = median_of(b, "floors", name, None)
        print(f"{name:22} {show(va, bw):>12} {show(vb, bw):>12} "
              f"{change(va, vb, bw):>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
