#!/usr/bin/env bash
# hmmu's one entry point on a fresh Debian machine.
#
#   ./run.sh demo    install what the build needs, build (without the
#                    tests), and run the demo: a private hmmud, devices
#                    mirroring a client's memory, the accelerator at work,
#                    a fault-latency summary
#   ./run.sh test    install what the build and the tests need, build, and
#                    run the whole test suite: plain, then under ASan +
#                    UBSan; then the clang build, the daemon under
#                    ThreadSanitizer, a short run of each fuzzer, and the
#                    Debian packages built, installed, run and purged
#
# Builds go to build/ (the demo's too: the test run adds the tests to it),
# build-sanitize/ and build-deb/. Needs root (or sudo) to install packages
# and to create userfaultfds (see docs/operations.md).
set -euo pipefail
cd "$(dirname "$0")"

# What building hmmu needs: all that "./run.sh demo" installs.
BUILD_PACKAGES=(cmake make gcc pkg-config liburing-dev libsystemd-dev
		libhwloc-dev libnuma-dev)
# What the tests need besides, each for its own job.
TEST_PACKAGES=(
	libcriterion-dev # the test suite
	python3          # bench_smoke_json
	libseccomp-dev   # e2e_under_unit_seccomp_filter
	systemd          # systemd-analyze and systemd-sysusers: the units' tests
	clang            # tests/ci/clang.sh, the fuzzers
	gnuplot-nox      # hmmu-bench --plot
	linux-perf       # bench_opcounts_prints_a_row_per_class: bench/opcounts.sh
	dpkg-dev file    # tests/ci/deb.sh: dpkg-shlibdeps, dpkg-gensymbols; CPack runs file
	groff            # man_pages_lint_clean: groff -ww
)

install_missing() { # PACKAGE...
	local missing=()
	for p in "$@"; do
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
	build build -DHMMU_BUILD_TESTS=OFF
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
	build build -DHMMU_BUILD_TESTS=ON
	ctest --test-dir build --output-on-failure -j 2
	build build-sanitize -DHMMU_SANITIZE=ON -DHMMU_BUILD_TESTS=ON
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir build-sanitize --output-on-failure -j 2
	bash tests/ci/clang.sh   # the tree builds with clang, -Werror
	bash tests/ci/tsan.sh    # e2e tests and a stress client, TSan hmmud
	bash tests/fuzz/smoke.sh # a minute of each fuzzer, ASan hmmud
	bash tests/ci/deb.sh     # the .debs: built, checked, installed, run, purged
}

case "${1:-}" in
demo) install_missing "${BUILD_PACKAGES[@]}"; run_demo ;;
test) install_missing "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"; run_tests ;;
*) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
