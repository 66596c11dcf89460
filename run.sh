#!/usr/bin/env bash
# hmmu's one entry point on a fresh Debian machine.
#
#   ./run.sh demo    install what is missing, build, and run the demo:
#                    a private hmmud, devices mirroring a client's memory,
#                    the accelerator at work, a fault-latency summary
#   ./run.sh test    install what is missing, build, and run the whole test
#                    suite: plain, then under ASan + UBSan; then the clang
#                    build, the daemon under ThreadSanitizer, and a short
#                    run of each fuzzer
#
# Builds go to build/ and build-sanitize/. Needs root (or sudo) only to
# install packages and to create userfaultfds (see docs/operations.md).
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake make gcc clang pkg-config python3 libcriterion-dev liburing-dev
	  libseccomp-dev
	  libsystemd-dev libhwloc-dev libnuma-dev systemd gnuplot-nox groff)

install_missing() {
	local missing=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return
	echo "run.sh: installing ${missing[*]}"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

build() { # build DIR [cmake options...]
	local dir=$1
	shift
	cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
	cmake --build "$dir" -j "$(nproc)"
}

DEMO_DIR=""
DEMO_PID=""
stop_demo_daemon() {
	[ -n "$DEMO_PID" ] && kill -TERM "$DEMO_PID" 2>/dev/null && wait "$DEMO_PID" || true
	[ -n "$DEMO_DIR" ] && rm -rf "$DEMO_DIR"
}

run_demo() {
	build build
	DEMO_DIR=$(mktemp -d /tmp/hmmu-demo-XXXXXX)
	trap stop_demo_daemon EXIT
	# A private daemon, stopped however the demo ends.
	build/hmmud --foreground --socket "$DEMO_DIR/hmmud.sock" --log-level warning &
	DEMO_PID=$!
	for _ in $(seq 100); do
		[ -S "$DEMO_DIR/hmmud.sock" ] && break
		sleep 0.05
	done
	build/hmmu-demo "$DEMO_DIR/hmmud.sock"
	echo
	# The same daemon, measured: per-fault latency against the kernel's own.
	build/bench/hmmu-bench --socket "$DEMO_DIR/hmmud.sock" --summary \
		--pages 1024 --stream-mib 64 --stream-reps 3
}

run_tests() {
	build build
	ctest --test-dir build --output-on-failure -j 2
	build build-sanitize -DHMMU_SANITIZE=ON
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir build-sanitize --output-on-failure -j 2
	bash tests/ci/clang.sh   # the tree builds with clang, -Werror
	bash tests/ci/tsan.sh    # e2e tests and a stress client, TSan hmmud
	bash tests/fuzz/smoke.sh # a minute of each fuzzer, ASan hmmud
}

case "${1:-}" in
demo) install_missing; run_demo ;;
test) install_missing; run_tests ;;
*) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
