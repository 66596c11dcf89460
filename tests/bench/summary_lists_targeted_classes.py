#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""hmmu-bench --summary lists exactly the classes run that have a target,
each with its floor, the ratio of the JSON and its verdict; "missed" is
said of nothing else. The JSON says which build wrote it, as --version.

Usage: summary_lists_targeted_classes.py HMMU_BENCH

Short runs on private daemons; no timing is judged. Exits 77 (skipped)
where hmmu-bench is (no usable userfaultfd).
"""
import json
import os
import re
import subprocess
import sys
import tempfile

SKIP = 77
# The classes with a target (class_defs in bench/hmmu-bench.c).
TARGETED = ["device-fault", "device-fault-acc", "device-stream",
            "cpu-write-invalidate", "cpu-fault-devmem", "request",
            "queue-request", "cpu-write-coarse", "device-stream-zc"]
ALL = TARGETED + ["unmap-invalidate", "register", "register-first"]
SHORT = ["--pages", "64", "--rounds", "1", "--stream-mib", "4",
         "--stream-reps", "1"]

failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}")


def run(bench, *args):
    """stdout of hmmu-bench --summary ARGS; exits 77 if it skipped."""
    with tempfile.TemporaryFile() as err:
        p = subprocess.run([bench, "--summary", *SHORT, *args],
                           stdout=subprocess.PIPE, stderr=err, timeout=600)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if p.returncode == SKIP:
        print(f"skipped: {stderr.strip()}")
        sys.exit(SKIP)
    out = p.stdout.decode()
    print(f"$ hmmu-bench --summary {' '.join(SHORT + list(args))}\n{out}"
          f"{stderr}", end="")
    if p.returncode != 0:
        fail(f"exit status {p.returncode}")
    # Not a terminal: no progress line, nor any '\r' of one.
    if "\r" in stderr or "\r" in out:
        fail("a progress line ('\\r') with stderr not a terminal")
    return out


def rows(out):
    """{class: its row} of the summary's table."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"  (\S+) ", line)
        if m and m.group(1) in ALL:
            found[m.group(1)] = line
    return found


def only_rows_say_missed(out, table):
    for line in out.splitlines():
        if re.search(r"\bmissed\b", line) and line not in table.values():
            fail(f"'missed' outside a targeted class's row: {line!r}")


def check_all_classes(bench):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.json")
        out = run(bench, "--json", path)
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)

    version = subprocess.run([bench, "--version"], stdout=subprocess.PIPE,
                             check=True).stdout.decode()
    m = re.fullmatch(r"hmmu-bench (\S+) \((\S+)\)\n", version)
    if not m:
        fail(f"--version printed {version!r}")
    elif (doc.get("version"), doc.get("commit")) != m.groups():
        fail(f"the JSON's version and commit are {doc.get('version')!r}, "
             f"{doc.get('commit')!r}; --version says {version.strip()!r}")

    table = rows(out)
    if sorted(table) != sorted(TARGETED):
        fail(f"rows for {sorted(table)}, not {sorted(TARGETED)}")
    for name, line in table.items():
        entry = doc["classes"].get(name, {})
        if "skipped" in entry:
            if re.search(r"\b(met|missed)\b", line):
                fail(f"{name} was not measured but has a verdict: {line!r}")
            continue
        target = entry.get("target")
        if not isinstance(target, dict):
            fail(f"{name} has a row, but no target in the JSON")
            continue
        if entry["floor"] not in line:
            fail(f"{name}: its floor {entry['floor']} is not named: {line!r}")
        met = target.get("met")
        if met is None:
            if re.search(r"\b(met|missed)\b", line):
                fail(f"{name}: no verdict in the JSON, one in {line!r}")
            continue
        verdict = "met" if met else "missed"
        shown = re.search(r" (\d+\.\d\d)x ", line)
        # The row rounds to 2 decimals what the JSON has to 6 digits.
        if (not shown or abs(float(shown.group(1)) - entry["ratio"]) > 0.0051
                or not line.endswith(f"  {verdict}")):
            fail(f"{name}: the JSON says {entry['ratio']:.2f}x, {verdict}: "
                 f"{line!r}")
    # A class without a target has a "target" in the JSON neither.
    for name in ALL:
        if name not in TARGETED and "target" in doc["classes"].get(name, {}):
            fail(f"{name} has a target in the JSON: update TARGETED")
    only_rows_say_missed(out, table)


def check_selected(bench):
    # Classes not run have no row, targeted or not.
    out = run(bench, "--classes", "register,device-fault")
    table = rows(out)
    if list(table) != ["device-fault"]:
        fail(f"--classes register,device-fault: rows for {list(table)}")
    only_rows_say_missed(out, table)
    # None with a target: no table, no verdict.
    out = run(bench, "--classes", "unmap-invalidate,register")
    if rows(out) or re.search(r"\b(met|missed)\b", out):
        fail(f"--classes unmap-invalidate,register: {out!r}")
    if "none of the classes run has a target" not in out:
        fail("--classes unmap-invalidate,register does not say no class "
             "has a target")


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    check_all_classes(sys.argv[1])
    check_selected(sys.argv[1])
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
