#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check that hmmu-bench --json wrote every class and floor, well formed,
and says which hmmu-bench wrote it ("version", "commit"). A floor that
needs a kernel feature (KERNEL_DEPENDENT) may instead say "no figure: why".

Usage: check_json.py FILE [--may-skip CLASS,...]

Shapes and signs only: no timing thresholds (the machine decides those).
Exits 0 if the file is complete, 1 with one line per problem otherwise,
77 (skipped) if there is no file: hmmu-bench removes it before it runs and
writes none when it is skipped for want of a userfaultfd.
"""
import argparse
import json
import math
import sys

CLASSES = [
    "device-fault", "device-fault-acc", "device-stream",
    "cpu-write-invalidate", "cpu-fault-devmem", "unmap-invalidate",
    "request", "register", "register-first", "queue-request",
    "cpu-write-coarse", "device-stream-zc",
]
FLOORS = [
    "uffd-missing", "uffd-wp", "uffd-unmap", "pvm-read-4k", "pvm-write-4k",
    "wp-4k", "pvm-read-bulk", "anon-first-touch", "ipc-rtt",
    "rpc-fault", "window-16", "uffd-wp-async", "futex-rtt",
    "pvm-read-4k+wp-4k", "ipc-rtt-x2",
]
# Floors and classes that need a kernel feature: where it is missing they have no
# figure, and must say so ("no figure: why") instead.
KERNEL_DEPENDENT = {"uffd-wp-async", "cpu-write-coarse"}
BANDWIDTH = {"device-stream", "device-stream-zc", "pvm-read-bulk"}
SKIP = 77  # ctest's SKIP_RETURN_CODE for this check
FORMAT = 2  # the document's layout: "format" in it
FIGURES = ["count", "min_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns",
           "max_ns"]


def positive(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and v > 0)


def check_figures(where, entry, problems):
    for key in FIGURES:
        if not positive(entry.get(key)):
            problems.append(f"{where}: {key} is {entry.get(key)!r}, "
                            "not a positive number")
    values = [entry.get(k) for k in FIGURES[1:]]
    if all(positive(v) for v in values) and values != sorted(values):
        problems.append(f"{where}: min <= p50 <= ... <= max does not hold")
    if not isinstance(entry.get("count"), int):
        problems.append(f"{where}: count is not an integer")


def check(doc, may_skip):
    problems = []
    if not isinstance(doc, dict):
        return ["the document is not a JSON object"]
    if doc.get("format") != FORMAT:
        problems.append(f"format is {doc.get('format')!r}, not {FORMAT}")
    # Which build measured: hmmu-bench --version says the same.
    for key in ("version", "commit"):
        value = doc.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{key} is {value!r}, not a non-empty string")
    classes = doc.get("classes")
    floors = doc.get("floors")
    if not isinstance(classes, dict) or not isinstance(floors, dict):
        return problems + ['"classes" and "floors" must both be objects']

    for name in FLOORS:
        entry = floors.get(name)
        where = f"floor {name}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: missing")
            continue
        if "skipped" in entry:
            reason = entry["skipped"]
            if (name not in KERNEL_DEPENDENT or not isinstance(reason, str)
                    or not reason.startswith("no figure: ")
                    or len(reason) <= len("no figure: ")):
                problems.append(f"{where}: skipped ({reason})")
            else:
                print(f"check_json: {where}: {reason}")
            continue
        check_figures(where, entry, problems)
        if name in BANDWIDTH and not positive(entry.get("gbps")):
            problems.append(f"{where}: gbps is {entry.get('gbps')!r}")

    for name in CLASSES:
        entry = classes.get(name)
        where = f"class {name}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: missing")
            continue
        if "skipped" in entry:
            reason = entry["skipped"]
            if not isinstance(reason, str) or not reason:
                problems.append(f"{where}: skipped without a reason")
            elif name not in may_skip and name not in KERNEL_DEPENDENT:
                problems.append(f"{where}: skipped ({reason})")
            continue
        check_figures(where, entry, problems)
        floor = entry.get("floor")
        ratio = entry.get("ratio", "absent")
        if not isinstance(floor, str):
            problems.append(f"{where}: floor is {floor!r}, not a name")
        elif floor == "none":
            if ratio is not None:
                problems.append(f"{where}: no floor, so ratio must be null")
        else:
            if floor not in floors:
                problems.append(f"{where}: floor {floor} is not in floors")
            if not positive(ratio):
                problems.append(f"{where}: ratio is {ratio!r}")
        if name in BANDWIDTH and not positive(entry.get("gbps")):
            problems.append(f"{where}: gbps is {entry.get('gbps')!r}")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--may-skip", default="",
                    help="classes that may be skipped, comma-separated")
    args = ap.parse_args()
    may_skip = {c for c in args.may_skip.split(",") if c}
    try:
        with open(args.file, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        # hmmu-bench removes it first: it was skipped (no userfaultfd).
        print(f"check_json: {args.file}: none written, nothing to check")
        return SKIP
    except (OSError, ValueError) as e:
        print(f"check_json: {args.file}: {e}")
        return 1
    problems = check(doc, may_skip)
    for p in problems:
        print(f"check_json: {p}")
    if not problems:
        print(f"check_json: {args.file}: hmmu-bench {doc['version']} "
              f"({doc['commit']}), {len(CLASSES)} classes and "
              f"{len(FLOORS)} floors, complete")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
