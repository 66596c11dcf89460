#!/bin/bash
# SPDX-License-Identifier: MIT
# hmmuctl's outputs for scripts and monitoring, against a private hmmud with
# a client that keeps two mirrors faulting, and a device whose name needs
# escaping (quote, backslash, tab, line feed, UTF-8, and a byte that is not
# UTF-8):
#  - --json of every command is one JSON document with the devices, the
#    client's pid and mirrors, and the counters, the odd name intact;
#  - metrics passes check_prometheus.py, with the figures and labels wanted;
#  - watch --count 2 prints two frames, the second with faults/s; --json
#    watch one document a line; SIGTERM ends watch at once, with status 0;
#  - --version prints project(VERSION); errors and usage errors exit 1 and 2.
#
# usage: hmmuctl_outputs.sh HMMUD HMMUCTL FAULTING_CLIENT PYTHON CHECKER VERSION
set -euo pipefail

hmmud=$1 hmmuctl=$2 client_bin=$3 python=$4 checker=$5 version=$6
tmp=$(mktemp -d /tmp/hmmuctl-test-XXXXXX)
daemon="" client="" watcher=""
# Our own processes only, by their pid: other tests run hmmud too.
cleanup() {
	for pid in $watcher $client $daemon; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	echo "--- hmmud's log:"
	cat "$tmp/hmmud.log" 2>/dev/null || true
	exit 1
}
ctl() { "$hmmuctl" --socket "$tmp/sock" "$@"; }
py() { "$python" -c "$@"; }

odd=$'odd"\\\t\n\xc3\xa9\xff'
"$hmmud" --foreground --socket "$tmp/sock" --log-level warning \
	--device dmirror:name=dmirror0 --device dmirror:name=dmirror1 \
	--device accel:name=acc0 --device "dmirror:name=$odd,mem=16M" \
	2>"$tmp/hmmud.log" &
daemon=$!
for _ in $(seq 200); do [ -S "$tmp/sock" ] && break; sleep 0.05; done
[ -S "$tmp/sock" ] || fail "hmmud did not listen"

"$client_bin" "$tmp/sock" dmirror0 dmirror1 >"$tmp/client.out" 2>"$tmp/client.err" &
client=$!
for _ in $(seq 200); do grep -q '^ready' "$tmp/client.out" && break; sleep 0.05; done
if ! grep -q "^ready $client\$" "$tmp/client.out"; then
	set +e
	kill -0 "$client" 2>/dev/null || { wait "$client"; status=$?; }
	set -e
	if [ "${status:-}" = 77 ]; then
		echo "SKIP: $(cat "$tmp/client.err")"
		client=""
		exit 77
	fi
	fail "the client did not register its mirrors: $(cat "$tmp/client.err")"
fi
# Let it fault a few times.
for _ in $(seq 200); do
	[ "$(ctl --json stats | py 'import json,sys; print(json.load(sys.stdin)["device_faults"] > 2)')" = True ] && break
	sleep 0.05
done
export CLIENT=$client ODD=$odd

# --json: one document per command, with what the daemon holds.
for cmd in devices processes mirrors stats; do
	ctl --json "$cmd" >"$tmp/$cmd.json" || fail "--json $cmd exited $?"
	py 'import json,sys; json.load(sys.stdin)' <"$tmp/$cmd.json" ||
		fail "--json $cmd is not JSON: $(cat "$tmp/$cmd.json")"
done
py '
import json, os, sys
odd = os.environ["ODD"].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
devices = json.load(open(sys.argv[1]))["devices"]
names = [d["name"] for d in devices]
assert names == ["dmirror0", "dmirror1", "acc0", odd], names
for d in devices:
    assert isinstance(d["mem_bytes"], int) and d["mem_bytes"] > 0, d
    assert d["page_size_bytes"] > 0 and d["model"] in ("dmirror", "accel"), d
    assert d["numa_node"] is None or d["numa_node"] >= 0, d
assert devices[3]["mem_bytes"] == 16 << 20, devices[3]
' "$tmp/devices.json" || fail "--json devices: $(cat "$tmp/devices.json")"
py '
import json, os, sys
pid = int(os.environ["CLIENT"])
procs = json.load(open(sys.argv[1]))["processes"]
assert [(p["pid"], p["mirrors"]) for p in procs] == [(pid, 2)], procs
mirrors = json.load(open(sys.argv[2]))["mirrors"]
assert sorted((m["pid"], m["device"]) for m in mirrors) == [(pid, "dmirror0"), (pid, "dmirror1")], mirrors
assert all(isinstance(m["device_pages"], int) and m["uid"] == os.getuid() for m in mirrors), mirrors
stats = json.load(open(sys.argv[3]))
keys = ["connections", "processes", "mirrors", "device_pages", "device_mem_pages",
        "device_faults", "cpu_faults", "invalidations", "migrated_to_device_pages",
        "migrated_to_system_pages", "releases", "fault_batches", "fault_entries",
        "fault_duplicates", "fault_blocks", "fault_runs", "density_fetches",
        "fault_window_pages", "fault_density_pct", "fault_batch_max", "fault_block_pages"]
assert list(stats) == keys, list(stats)
assert all(isinstance(v, int) and v >= 0 for v in stats.values()), stats
assert stats["processes"] == 1 and stats["mirrors"] == 2 and stats["device_faults"] > 0, stats
' "$tmp/processes.json" "$tmp/mirrors.json" "$tmp/stats.json" ||
	fail "--json processes, mirrors or stats: $(cat "$tmp"/{processes,mirrors,stats}.json)"

# metrics: the format, strictly, then the figures.
ctl metrics >"$tmp/metrics.txt" || fail "metrics exited $?"
"$python" "$checker" "$tmp/metrics.txt" >"$tmp/metrics.json" ||
	fail "metrics breaks the format: $(cat "$tmp/metrics.txt")"
py '
import json, os, sys
odd = os.environ["ODD"].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
f = json.load(open(sys.argv[1]))
def value(name, **labels):
    return [s["value"] for s in f[name]["samples"] if s["labels"] == labels][0]
for counter in ("hmmu_device_faults_total", "hmmu_cpu_faults_total",
                "hmmu_invalidations_total", "hmmu_migrated_to_device_pages_total",
                "hmmu_migrated_to_system_pages_total", "hmmu_mirror_releases_total"):
    assert f[counter]["type"] == "counter", counter
for gauge in ("hmmu_connections", "hmmu_processes", "hmmu_mirrors",
              "hmmu_device_table_pages", "hmmu_device_memory_used_bytes"):
    assert f[gauge]["type"] == "gauge", gauge
assert value("hmmu_device_faults_total") > 0
assert value("hmmu_mirrors") == 2 and value("hmmu_processes") == 1
assert value("hmmu_device_mirrors", device="dmirror0") == 1
assert value("hmmu_device_mirrors", device="acc0") == 0
assert value("hmmu_device_memory_bytes", device=odd) == 16 << 20
info = f["hmmu_device_info"]["samples"]
assert [s["labels"]["device"] for s in info] == ["dmirror0", "dmirror1", "acc0", odd], info
assert all(s["value"] == 1 and s["labels"]["model"] in ("dmirror", "accel") for s in info), info
' "$tmp/metrics.json" || fail "metrics figures: $(cat "$tmp/metrics.txt")"
set +e
ctl --json metrics >/dev/null 2>"$tmp/err"
status=$?
set -e
[ "$status" = 2 ] || fail "--json metrics: status $status, not a usage error"

# watch, not on a terminal: two whole frames, a blank line between them.
ctl watch --count 2 -n 0.2 >"$tmp/watch.txt" || fail "watch exited $?"
[ "$(grep -c '^hmmud ' "$tmp/watch.txt")" = 2 ] || fail "watch: not two frames: $(cat "$tmp/watch.txt")"
[ "$(grep -c '^faults/s: ' "$tmp/watch.txt")" = 2 ] || fail "watch: a frame without faults/s"
grep -q "$(printf '\033')" "$tmp/watch.txt" && fail "watch clears the screen of a file"
awk '/^hmmud / && NR > 1 && prev != "" { bad = 1 } { prev = $0 } END { exit bad }' \
	"$tmp/watch.txt" || fail "watch: frames not separated by a blank line"
second=$(grep '^faults/s: ' "$tmp/watch.txt" | sed -n 2p)
[[ "$second" =~ ^faults/s:\ device\ ([0-9]+\.[0-9])\ \ cpu\ [0-9]+\.[0-9] ]] ||
	fail "watch: the second frame has no faults/s figure: $second"
py 'import sys; assert float(sys.argv[1]) > 0' "${BASH_REMATCH[1]}" ||
	fail "watch: no device faults/s while the client faults: $second"
grep -q "^$client  *$(id -u)  *2\$" "$tmp/watch.txt" || fail "watch: the client's process is missing"
grep -q "^dmirror0  *dmirror .* 1  *[0-9][0-9]*\$" "$tmp/watch.txt" ||
	fail "watch: dmirror0's use is missing"

# --json watch: one document a line; rates from the second on.
ctl --json watch --count 2 --interval 0.2 >"$tmp/watch.jsonl" || fail "--json watch exited $?"
py '
import json, os, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 2, lines
first, second = (json.loads(l) for l in lines)
assert first["rates"]["device_faults_per_s"] is None, first["rates"]
assert second["rates"]["device_faults_per_s"] > 0, second["rates"]
assert 0.1 < second["elapsed_s"] < 5, second["elapsed_s"]
assert [p["pid"] for p in second["processes"]] == [int(os.environ["CLIENT"])]
assert [d["mirrors"] for d in second["devices"]] == [1, 1, 0, 0], second["devices"]
' "$tmp/watch.jsonl" || fail "--json watch: $(cat "$tmp/watch.jsonl")"

# SIGTERM ends watch in its sleep, at once, with status 0.
"$hmmuctl" --socket "$tmp/sock" watch -n 30 >"$tmp/watch-term.txt" &
watcher=$!
for _ in $(seq 200); do grep -q '^PID' "$tmp/watch-term.txt" 2>/dev/null && break; sleep 0.05; done
start=$(date +%s%N)
kill -TERM "$watcher"
set +e
wait "$watcher"
status=$?
set -e
watcher=""
[ "$status" = 0 ] || fail "watch ended by SIGTERM with status $status"
[ $(( ($(date +%s%N) - start) / 1000000 )) -lt 5000 ] || fail "watch did not end at SIGTERM"

# --version; errors and usage errors.
ctl --version >"$tmp/version"
grep -qE "^hmmuctl ${version//./\\.} \([^)]+\), libhmmu ${version//./\\.}\$" "$tmp/version" ||
	fail "--version: $(cat "$tmp/version")"
# version: the daemon's too, as it named itself in the handshake.
ctl version >"$tmp/versions"
grep -qE "^hmmud +${version//./\\.} \(git [^)]+\)\$" "$tmp/versions" ||
	fail "version: no daemon version: $(cat "$tmp/versions")"
ctl --json version | "$python" -c '
import json, sys
d = json.load(sys.stdin)
assert d["hmmuctl"] == d["libhmmu"] == sys.argv[1], d
assert d["hmmud"].startswith(sys.argv[1] + " (git "), d
' "$version" || fail "--json version"
set +e
"$hmmuctl" --socket "$tmp/nobody" devices >/dev/null 2>"$tmp/err"
status=$?
set -e
[ "$status" = 1 ] && grep -q "^hmmuctl: connect: No such file or directory" "$tmp/err" ||
	fail "no daemon: status $status, $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/err")" = 1 ] || fail "no daemon: more than one line: $(cat "$tmp/err")"
for args in "bogus" "-n 1 devices" "watch -n 0" "watch --count 0" "devices stats" ""; do
	set +e
	# shellcheck disable=SC2086 # word splitting wanted
	ctl $args >/dev/null 2>&1
	status=$?
	set -e
	[ "$status" = 2 ] || fail "'hmmuctl $args': status $status, not 2"
done
ctl --help | grep -q "metrics" || fail "--help does not list metrics"

kill "$client"
wait "$client" || fail "the client failed: $(cat "$tmp/client.err")"
client=""
kill "$daemon"
wait "$daemon" || fail "hmmud did not stop cleanly"
daemon=""
# At --log-level warning, every line is a warning or an error.
[ ! -s "$tmp/hmmud.log" ] || fail "hmmud logged what the test did not expect"
echo "PASS"
