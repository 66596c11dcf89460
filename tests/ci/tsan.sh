#!/usr/bin/env bash
# hmmud under ThreadSanitizer.
#
# Criterion's runner crashes under TSan here (a SEGV inside libcriterion),
# so the test suite stays plain and only what runs outside it is built so:
#
#   1. build-tsan/: hmmud, and hmmu-stress with its libhmmu, with
#      -DHMMU_TSAN=ON;
#   2. build/ (reused if configured, else made): the plain test suite;
#   3. the plain end-to-end tests, each starting the TSan hmmud
#      ($HMMU_TEST_HMMUD, honoured by tests/e2e/harness.c);
#   4. hmmu-stress: many client processes and threads, some SIGKILLed,
#      against one TSan hmmud for $STRESS_SECONDS (default 20); the
#      clients are TSan-built too, so libhmmu's multiplexer is checked
#      under many threads on the way;
#   5. fails if TSan wrote any report (daemon or client), printing them.
#
# Reports go to files (log_path), not to the daemon's stderr, so that they
# neither mix with the log lines some tests count nor get lost with the
# test's temporary directory; halt_on_error=0 lets a run show every race,
# not just the first. The harness stops its daemon in Criterion's .fini,
# whose assertion failures do not fail the test, so the report files are
# what decides, not the tests' status.
#
# Environment: STRESS_SECONDS, STRESS_PROCS (default 4), TSAN_DIR (default
# build-tsan), PLAIN_DIR (default build).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

TSAN_DIR=${TSAN_DIR:-build-tsan}
PLAIN_DIR=${PLAIN_DIR:-build}
STRESS_SECONDS=${STRESS_SECONDS:-20}
STRESS_PROCS=${STRESS_PROCS:-4}
LOG_DIR=$ROOT/$TSAN_DIR/tsan-reports
SUPP=$ROOT/tests/ci/tsan.supp
JOBS=$(nproc)
STARTED=$SECONDS

phase() { echo "tsan.sh: [$((SECONDS - STARTED)) s] $*"; }

# ---- 1. the TSan daemon and clients -----------------------------------------
phase "building hmmud and hmmu-stress with ThreadSanitizer in $TSAN_DIR"
cmake -S . -B "$TSAN_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHMMU_TSAN=ON >/dev/null
cmake --build "$TSAN_DIR" -j "$JOBS" --target hmmud hmmu-stress
HMMUD=$ROOT/$TSAN_DIR/hmmud
STRESS=$ROOT/$TSAN_DIR/tests/hmmu-stress

# An older TSan runtime cannot map its shadow with the kernel's larger
# mmap randomization: say so now rather than as a failed daemon start.
if ! out=$("$HMMUD" --help 2>&1); then
	echo "$out" | head -5 >&2
	echo "tsan.sh: the TSan hmmud does not start; if it says 'unexpected" \
	     "memory mapping', try: sysctl vm.mmap_rnd_bits=28" >&2
	exit 1
fi

# ---- 2. the plain tests ------------------------------------------------------
if [ -f "$PLAIN_DIR/CMakeCache.txt" ]; then
	if grep -q '^HMMU_TSAN:BOOL=ON' "$PLAIN_DIR/CMakeCache.txt"; then
		echo "tsan.sh: $PLAIN_DIR is a TSan build; Criterion cannot run" \
		     "there (set PLAIN_DIR)" >&2
		exit 1
	fi
	phase "reusing $PLAIN_DIR for the plain tests"
else
	phase "configuring $PLAIN_DIR for the plain tests"
	cmake -S . -B "$PLAIN_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$PLAIN_DIR" -j "$JOBS"

rm -rf "$LOG_DIR"
mkdir -p "$LOG_DIR"
export TSAN_OPTIONS="halt_on_error=0 exitcode=66 log_path=$LOG_DIR/tsan second_deadlock_stack=1 suppressions=$SUPP"
failed=0

# ---- 3. the end-to-end tests against the TSan daemon -------------------------
# Left out: socket_activation, whose daemon is started by
# systemd-socket-activate from the plain build's path, with only the
# environment it passes (so neither the TSan build nor TSAN_OPTIONS); the
# unit tests and the packaging and bench tests, which start no daemon.
phase "end-to-end tests against $HMMUD"
HMMU_TEST_HMMUD=$HMMUD ctest --test-dir "$PLAIN_DIR" -L e2e \
	-E '^socket_activation/' --output-on-failure -j "$JOBS" || failed=1

# ---- 4. the stress run -------------------------------------------------------
STRESS_DIR=$(mktemp -d /tmp/hmmu-tsan-stress-XXXXXX)
DAEMON_PID=""
stop_daemon() { # on any exit
	if [ -n "$DAEMON_PID" ]; then
		kill -TERM "$DAEMON_PID" 2>/dev/null || true
		wait "$DAEMON_PID" 2>/dev/null || true
	fi
	rm -rf "$STRESS_DIR"
}
trap stop_daemon EXIT

phase "hmmu-stress: $STRESS_PROCS processes for $STRESS_SECONDS s against one TSan hmmud"
"$HMMUD" --foreground --socket "$STRESS_DIR/hmmud.sock" --log-level warning \
	2>"$LOG_DIR/stress-hmmud.log" &
DAEMON_PID=$!
for _ in $(seq 200); do
	[ -S "$STRESS_DIR/hmmud.sock" ] && break
	sleep 0.05
done
"$STRESS" --socket "$STRESS_DIR/hmmud.sock" \
	--procs "$STRESS_PROCS" --seconds "$STRESS_SECONDS" || failed=1
kill -TERM "$DAEMON_PID" 2>/dev/null || true # it may have died: see below
status=0
wait "$DAEMON_PID" || status=$?
DAEMON_PID=""
# 66 is TSan's exit code for "reported something": step 5 shows what (a
# client that reported exits 66 too, and hmmu-stress counts it a failure).
if [ "$status" -ne 0 ] && [ "$status" -ne 66 ]; then
	echo "tsan.sh: the stress run's hmmud exited with $status; its log:" >&2
	tail -50 "$LOG_DIR/stress-hmmud.log" >&2
	failed=1
fi

# ---- 5. the verdict ----------------------------------------------------------
shopt -s nullglob
reports=("$LOG_DIR"/tsan.*)
if [ ${#reports[@]} -gt 0 ]; then
	for r in "${reports[@]}"; do
		echo "==== $r"
		cat "$r"
	done
	echo "tsan.sh: ${#reports[@]} process(es) wrote TSan reports:" >&2
	cat "${reports[@]}" | grep '^SUMMARY' | sort | uniq -c >&2
	failed=1
fi
phase "done: $([ $failed -eq 0 ] && echo ok || echo FAILED)"
exit $failed
