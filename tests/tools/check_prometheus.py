#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check `hmmuctl metrics` output, line by line, against the Prometheus text
exposition format (0.0.4), more strictly than a scraper would:

- UTF-8, every line ends with a line feed, no blank line, no carriage return;
- each family is "# HELP name text", then "# TYPE name counter|gauge", then
  all of its samples (at least one), and appears once; no other comment;
- names match [a-zA-Z_:][a-zA-Z0-9_:]* and start with hmmu_; a sample's
  name is its family's (counters and gauges have no suffixed series);
- counters end in _total, gauges do not; counter values are whole numbers
  >= 0, every value is a finite number; no timestamps;
- label names match [a-zA-Z_][a-zA-Z0-9_]* and do not start with __; label
  values escape backslash, double quote and line feed, and nothing else;
  no label twice in a sample, no label set twice in a family;
- HELP text escapes only backslash and line feed.

On success prints the parsed families as JSON on stdout:
{"name": {"type": "gauge", "help": "...", "samples": [{"labels": {...},
"value": 1.0}, ...]}, ...}; otherwise every error on stderr, and exit 1.

usage: check_prometheus.py [FILE]   (default: stdin)
"""
import json
import math
import re
import sys

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's strconv.ParseFloat, as Prometheus reads a value: decimal or
# exponent forms, and the special values.
VALUE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z|[+-]?Inf\Z|NaN\Z")


class Bad(Exception):
    pass


def unescape(text, allowed):
    """Undo the format's escapes; any escape not in @allowed is an error."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in allowed:
                raise Bad("bad escape in %r" % text)
            out.append({"\\": "\\", "n": "\n", '"': '"'}[text[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_labels(text, i):
    """Labels from text[i] == '{' on: (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if text.startswith("}", i):
            return labels, i + 1
        m = LABEL_NAME.match(text, i)
        if not m:
            raise Bad("bad label name at column %d" % (i + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise Bad("label name %s is reserved" % name)
        if name in labels:
            raise Bad("label %s twice" % name)
        i = m.end()
        if not text.startswith('="', i):
            raise Bad("label %s: expected =\" at column %d" % (name, i + 1))
        i += 2
        start = i
        while i < len(text) and text[i] != '"':
            if text[i] == "\n":
                raise Bad("raw line feed in a label value")
            i += 2 if text[i] == "\\" else 1
        if i >= len(text):
            raise Bad("label %s: unterminated value" % name)
        labels[name] = unescape(text[start:i], '\\"n')
        i += 1
        if text.startswith(",", i):
            i += 1
            if text.startswith("}", i):
                return labels, i + 1  # a trailing comma is allowed
        elif not text.startswith("}", i):
            raise Bad("expected , or } at column %d" % (i + 1))


def check(data):
    errors = []
    families = {}
    family = None  # the family whose samples may come now
    pending_help = None  # a HELP line waiting for its TYPE

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, ["not UTF-8: %s" % e]
    if not text:
        return None, ["empty"]
    if not text.endswith("\n"):
        errors.append("the last line does not end with a line feed")
    for number, line in enumerate(text.split("\n")[:-1], 1):
        try:
            if not line:
                raise Bad("blank line")
            if "\r" in line:
                raise Bad("carriage return")
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
                    raise Bad("a comment that is neither HELP nor TYPE")
                name = parts[2]
                if not METRIC_NAME.match(name):
                    raise Bad("bad metric name %r" % name)
                if parts[1] == "HELP":
                    if pending_help:
                        raise Bad("HELP %s without its TYPE" % pending_help[0])
                    if family and not families[family]["samples"]:
                        raise Bad("family %s has no sample" % family)
                    if name in families:
                        raise Bad("family %s appears twice" % name)
                    pending_help = (name, unescape(parts[3] if len(parts) > 3 else "", "\\n"))
                    family = None
                    continue
                if not pending_help or pending_help[0] != name:
                    raise Bad("TYPE %s does not follow its HELP" % name)
                if len(parts) != 4 or parts[3] not in ("counter", "gauge"):
                    raise Bad("TYPE %s: not counter or gauge" % name)
                kind = parts[3]
                if kind == "counter" and not name.endswith("_total"):
                    raise Bad("counter %s does not end in _total" % name)
                if kind == "gauge" and name.endswith("_total"):
                    raise Bad("gauge %s ends in _total" % name)
                if not name.startswith("hmmu_"):
                    raise Bad("%s is not named hmmu_..." % name)
                families[name] = {"type": kind, "help": pending_help[1], "samples": []}
                family = name
                pending_help = None
                continue

            m = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(line)
            if not m:
                raise Bad("a sample without a valid name")
            name = m.group(0)
            if family is None:
                raise Bad("sample %s before its family's HELP and TYPE" % name)
            if name != family:
                raise Bad("sample %s in family %s" % (name, family))
            labels, i = ({}, m.end())
            if line.startswith("{", i):
                labels, i = parse_labels(line, i)
            if not line.startswith(" ", i):
                raise Bad("expected a space before the value")
            fields = line[i + 1:].split(" ")
            if len(fields) != 1:
                raise Bad("a timestamp, or more than a value")
            if not VALUE.match(fields[0]):
                raise Bad("value %r is not a number" % fields[0])
            value = float(fields[0].replace("Inf", "inf").replace("NaN", "nan"))
            if not math.isfinite(value):
                raise Bad("value %s is not finite" % fields[0])
            if families[family]["type"] == "counter" and (value < 0 or value != int(value)):
                raise Bad("counter value %s is not a whole number >= 0" % fields[0])
            if any(s["labels"] == labels for s in families[family]["samples"]):
                raise Bad("label set %r twice in %s" % (labels, family))
            families[family]["samples"].append({"labels": labels, "value": value})
        except Bad as e:
            errors.append("line %d: %s: %r" % (number, e, line))
    if pending_help:
        errors.append("HELP %s without its TYPE at the end" % pending_help[0])
    if family and not families[family]["samples"]:
        errors.append("family %s has no sample" % family)
    if not families:
        errors.append("no family")
    return families, errors


def main():
    if len(sys.argv) > 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    if len(sys.argv) == 2:
        with open(sys.argv[1], "rb") as f:
            data = f.read()
    else:
        data = sys.stdin.buffer.read()
    families, errors = check(data)
    for e in errors:
        print("check_prometheus: " + e, file=sys.stderr)
    if errors:
        return 1
    json.dump(families, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
