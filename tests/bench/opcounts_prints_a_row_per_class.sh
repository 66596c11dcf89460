#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/opcounts.sh prints one row per class it counts (request,
# device-fault, device-fault-acc), each with six numbers, and leaves no
# daemon behind. No figure is judged: counts vary with the kernel.
#
# usage: opcounts_prints_a_row_per_class.sh SOURCE_DIR BUILD_DIR
# Exits 77 (skipped) where opcounts.sh does: no perf, perf may not count
# system calls, or no usable userfaultfd.
set -uo pipefail

src=$1
build=$2
out=$(mktemp /tmp/hmmu-opcounts-test-XXXXXX)
trap 'rm -f "$out"' EXIT

bash "$src/bench/opcounts.sh" -n 20 -b "$build" >"$out" 2>&1
status=$?
cat "$out"
[ $status -eq 77 ] && exit 77
[ $status -eq 0 ] || { echo "FAIL: opcounts.sh exited $status"; exit 1; }
fail=0
for class in request device-fault device-fault-acc; do
	grep -Eq "^\| $class( \| -?[0-9]+\.[0-9]{2}){6} \|$" "$out" ||
		{ echo "FAIL: no row of six figures for $class"; fail=1; }
done
# A baseline of 0 operations is subtracted: the request's client makes
# at least a send and a receive per operation.
awk -F'|' '$2 == " request " && $4 + 0 < 2 { exit 1 }' "$out" ||
	{ echo "FAIL: fewer than 2 client system calls per request"; fail=1; }
exit $fail
