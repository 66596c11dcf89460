#!/bin/bash
# SPDX-License-Identifier: MIT
# System calls and context switches per operation, of hmmud and of its
# client, for the classes request, device-fault and device-fault-acc.
#
# usage: bench/opcounts.sh [-n OPS] [-r RUNS] [-w WORKERS] [-b BUILD_DIR]
#                          [-c CLASS,...]
#
# For each class and each run, two private hmmuds, each started under
# `perf stat -e raw_syscalls:sys_enter` (every thread it will have, from
# its start to its exit): one serves `hmmu-bench --ops 0 --classes CLASS`,
# the other `hmmu-bench --ops OPS --classes CLASS`, itself under perf stat.
# Both runs do the same setup (connect, mirror, memory, the first fault of
# a VMA), so (count with OPS - count with 0) / OPS is what one operation
# costs. hmmud's context switches are voluntary + involuntary, summed over
# /proc/PID/task/*/status when its client has exited, before it is
# stopped. With -r RUNS > 1, each figure is the median of the runs.
#
# What is not counted: io_uring operations hmmud submits (they are not
# system calls; its io_uring_enter is), and the daemon's timers, if any,
# during the longer run (a few ms with the defaults).
#
# device-fault-acc is one job on one page that takes one fault: its
# request is included (the class's own sample, device time, leaves it
# out); subtract the request row for the fault's own share.
#
# Needs perf (linux-perf on Debian) with the raw_syscalls tracepoints, and
# a userfaultfd (root, or /dev/userfaultfd). Prints a Markdown table.
set -euo pipefail

ops=2000
runs=1
workers=
build=build
classes=request,device-fault,device-fault-acc
while getopts "n:r:w:b:c:h" opt; do
	case $opt in
	n) ops=$OPTARG ;;
	r) runs=$OPTARG ;;
	w) workers=$OPTARG ;;
	b) build=$OPTARG ;;
	c) classes=$OPTARG ;;
	*) sed -n '3,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
[[ $ops =~ ^[1-9][0-9]*$ && $runs =~ ^[1-9][0-9]*$ ]] ||
	{ echo "opcounts: -n and -r take a positive number" >&2; exit 2; }

hmmud=$build/hmmud
bench=$build/bench/hmmu-bench
for f in "$hmmud" "$bench"; do
	[ -x "$f" ] || { echo "opcounts: no $f (build first, or -b BUILD_DIR)" >&2; exit 1; }
done
# Exit 77 (ctest's skip) where the counting cannot be done at all.
command -v perf >/dev/null ||
	{ echo "opcounts: needs perf (Debian: apt-get install linux-perf)" >&2; exit 77; }
perf stat -x, -e raw_syscalls:sys_enter -o /dev/null -- true 2>/dev/null ||
	{ echo "opcounts: perf cannot count raw_syscalls:sys_enter here" \
		"(root, or kernel.perf_event_paranoid <= -1)" >&2; exit 77; }

tmp=$(mktemp -d /tmp/hmmu-opcounts-XXXXXX)
perf_pid=
hmmud_pid=
cleanup() {
	# Only what this script started, by PID.
	[ -n "$hmmud_pid" ] && kill -TERM "$hmmud_pid" 2>/dev/null || true
	[ -n "$perf_pid" ] && wait "$perf_pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# A perf stat -x, file's count of EVENT.
count() { awk -F, -v ev="$2" '$3 == ev { print $1 }' "$1"; }

# One run: hmmud under perf, the client under perf with --ops $2 of class
# $1. Writes "hmmud_syscalls client_syscalls hmmud_vol hmmud_invol
# client_switches" to $3. Not in a subshell: cleanup() must see the PIDs.
one_run() {
	local class=$1 n=$2 dir=$tmp/run vol=0 invol=0 i status
	rm -rf "$dir"
	mkdir "$dir"
	perf stat -x, -e raw_syscalls:sys_enter -o "$dir/hmmud.perf" -- \
		"$hmmud" --foreground --socket "$dir/s" --log-level warning \
		${workers:+--workers "$workers"} 2>"$dir/hmmud.log" &
	perf_pid=$!
	for i in $(seq 200); do
		[ -S "$dir/s" ] && break
		sleep 0.05
	done
	[ -S "$dir/s" ] || { echo "opcounts: hmmud did not start:" >&2; cat "$dir/hmmud.log" >&2; exit 1; }
	hmmud_pid=$(cat "/proc/$perf_pid/task/$perf_pid/children")
	hmmud_pid=${hmmud_pid%% *}
	perf stat -x, -e raw_syscalls:sys_enter,context-switches \
		-o "$dir/client.perf" -- \
		"$bench" --ops "$n" --classes "$class" --socket "$dir/s" \
		>"$dir/client.out" 2>&1 || {
		status=$?
		echo "opcounts: hmmu-bench --ops $n --classes $class exited $status:" >&2
		cat "$dir/client.out" >&2
		exit $((status == 77 ? 77 : 1)) # 77: no userfaultfd here
	}
	for f in /proc/"$hmmud_pid"/task/*/status; do
		read -r a b < <(awk '/^voluntary_ctxt_switches/ { v = $2 }
			/^nonvoluntary_ctxt_switches/ { n = $2 }
			END { print v + 0, n + 0 }' "$f" 2>/dev/null || echo 0 0)
		vol=$((vol + a))
		invol=$((invol + b))
	done
	kill -TERM "$hmmud_pid"
	wait "$perf_pid" || true
	perf_pid=
	hmmud_pid=
	echo "$(count "$dir/hmmud.perf" raw_syscalls:sys_enter)" \
		"$(count "$dir/client.perf" raw_syscalls:sys_enter)" \
		"$vol" "$invol" \
		"$(count "$dir/client.perf" context-switches)" >"$3"
}

kernel=$(uname -r)
echo "opcounts: $ops operations a class, less a run of 0; median of $runs" \
	"run(s); hmmud ${workers:+--workers $workers}${workers:-default workers};" \
	"$(nproc) CPUs, Linux $kernel; $("$bench" --version)"
echo
echo "| class | hmmud syscalls | client syscalls | hmmud cs (vol+invol) | hmmud vol | hmmud invol | client cs |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
IFS=, read -ra list <<<"$classes"
for class in "${list[@]}"; do
	: >"$tmp/per-op"
	for r in $(seq "$runs"); do
		one_run "$class" 0 "$tmp/base"
		one_run "$class" "$ops" "$tmp/with"
		# Per operation, each of the five figures.
		paste <(tr ' ' '\n' <"$tmp/with") <(tr ' ' '\n' <"$tmp/base") |
			awk -v n="$ops" '{ printf "%s%.2f", (NR > 1 ? " " : ""), ($1 - $2) / n }
				END { print "" }' >>"$tmp/per-op"
	done
	# Medians, column by column; cs = vol + invol.
	awk -v class="$class" '
		{ for (i = 1; i <= 5; i++) v[i, NR] = $i }
		END {
			for (i = 1; i <= 5; i++) {
				n = 0
				for (k = 1; k <= NR; k++) a[++n] = v[i, k]
				for (x = 1; x <= n; x++)
					for (y = x + 1; y <= n; y++)
						if (a[y] < a[x]) { t = a[x]; a[x] = a[y]; a[y] = t }
				m[i] = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
			}
			printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
				class, m[1], m[2], m[3] + m[4], m[3], m[4], m[5]
		}' "$tmp/per-op"
done
echo
echo "Per operation: (run of $ops - run of 0) / $ops. syscalls: raw_syscalls:sys_enter" \
	"(perf stat, every thread); hmmud cs: /proc/PID/task/*/status; client cs:" \
	"perf's context-switches. device-fault-acc includes its job's request."
