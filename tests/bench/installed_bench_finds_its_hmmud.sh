#!/bin/bash
# SPDX-License-Identifier: MIT
# An installed hmmu-bench runs on its own: it is in the install component
# "daemon" (package hmmu), finds the installed libhmmu (RPATH) and, by default, starts the
# hmmud installed beside it, not the build tree's; --version is the
# build's.
#
# usage: installed_bench_finds_its_hmmud.sh BUILD_DIR
# Exits 77 (skipped) where the bench cannot run (no usable userfaultfd).
set -euo pipefail

build=$1
tmp=$(mktemp -d /tmp/hmmu-bench-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# DESTDIR keeps whatever ignores the prefix inside $tmp, not in the system.
prefix=/opt/hmmu-bench-test

# The component alone holds hmmu-bench.
DESTDIR=$tmp/component cmake --install "$build" --component daemon \
	--prefix "$prefix" >"$tmp/component.log"
[ -x "$tmp/component$prefix/bin/hmmu-bench" ] ||
	{ echo "FAIL: hmmu-bench is not in install component daemon"; exit 1; }

# The whole tree, moved after installing: nothing may point back at the
# build tree or at the prefix it was installed with.
DESTDIR=$tmp/stage cmake --install "$build" --prefix "$prefix" \
	>"$tmp/install.log"
mv "$tmp/stage$prefix" "$tmp/moved"
root=$tmp/moved
bench=$root/bin/hmmu-bench

want=$("$build/bench/hmmu-bench" --version)
got=$("$bench" --version)
[ "$got" = "$want" ] ||
	{ echo "FAIL: installed --version '$got', the build's '$want'"; exit 1; }
echo "$got"
grep -q "libhmmu.so.1 => $root/" <<<"$(ldd "$bench")" ||
	{ echo "FAIL: the installed hmmu-bench does not load the installed libhmmu"; exit 1; }

hmmud=$(realpath "$root/sbin/hmmud")
"$bench" --help | grep -qF "(default $hmmud)" ||
	{ echo "FAIL: its default hmmud is not $hmmud:"; "$bench" --help | grep -- --hmmud; exit 1; }

# Without hmmud beside it, it says so and where it looked, and runs nothing.
mv "$root/sbin/hmmud" "$tmp/hmmud"
if "$bench" --summary --classes request --pages 8 2>"$tmp/err"; then
	echo "FAIL: ran without an hmmud"; exit 1
fi
grep -q "no hmmud at .*--hmmud PATH" "$tmp/err" ||
	{ echo "FAIL: no clear message without an hmmud:"; cat "$tmp/err"; exit 1; }
mv "$tmp/hmmud" "$root/sbin/hmmud"

# A short real run: the private daemon it starts is the installed one.
status=0
"$bench" --summary --classes request,device-fault --pages 8 --rounds 1 \
	--json "$tmp/run.json" >"$tmp/out" 2>&1 || status=$?
[ $status -eq 77 ] && { cat "$tmp/out"; exit 77; }
[ $status -eq 0 ] || { echo "FAIL: the installed bench exited $status:"; cat "$tmp/out"; exit 1; }
cat "$tmp/out"
echo "the installed hmmu-bench ran on the installed hmmud ($hmmud)"
