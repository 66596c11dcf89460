#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""hmmu-bench's progress line is for a terminal only, and leaves nothing
behind: with stderr a terminal and --json -, standard output is the JSON
alone, and every line left on the terminal is a whole message (the
progress line was erased before anything else was written). With stderr
redirected there is no progress line at all.

Usage: progress_line_only_on_terminal.py HMMU_BENCH

Whether the line shows at all depends on how long a class runs (it waits
250 ms): that is reported, not judged. Exits 77 where hmmu-bench skips.
"""
import json
import os
import pty
import subprocess
import sys
import threading

SKIP = 77
ARGS = ["--classes", "request,register", "--pages", "4096", "--rounds", "2",
        "--json", "-"]


def screen_lines(data):
    """The lines a terminal keeps of @data: '\\r' returns to column 0 and
    the next characters overwrite, '\\n' ends the line."""
    lines, line, col = [], [], 0
    for ch in data:
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        else:
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    return lines, "".join(line).rstrip()


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    bench = sys.argv[1]
    failures = 0

    master, slave = pty.openpty()
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last holder of the slave closed it
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    p = subprocess.run([bench, *ARGS], stdout=subprocess.PIPE, stderr=slave,
                       timeout=600)
    os.close(slave)
    reader.join()
    os.close(master)
    term = b"".join(chunks).decode(errors="replace")
    if p.returncode == SKIP:
        print(f"skipped: {term.strip()}")
        return SKIP

    out = p.stdout.decode(errors="replace")
    try:
        doc = json.loads(out)
        print(f"standard output: JSON of hmmu-bench {doc.get('version')} "
              f"({doc.get('commit')})")
    except ValueError as e:
        print(f"FAIL: standard output is not JSON alone ({e}): {out[:200]!r}")
        failures += 1
    if "\r" in out:
        print("FAIL: a '\\r' in standard output")
        failures += 1

    lines, pending = screen_lines(term)
    drawn = term.count("hmmu-bench: [")
    print(f"the progress line was drawn {drawn} time(s) on the terminal")
    for line in lines + [pending]:
        if line.startswith("hmmu-bench: ["):
            print(f"FAIL: a progress line left on the terminal: {line!r}")
            failures += 1
    if p.returncode != 0:
        print(f"FAIL: exit status {p.returncode}:\n{term}")
        failures += 1

    # Redirected: not a byte of it.
    p = subprocess.run([bench, *ARGS], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=600)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0 or "\r" in err or "hmmu-bench: [" in err:
        print(f"FAIL: stderr redirected, status {p.returncode}: {err!r}")
        failures += 1
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
