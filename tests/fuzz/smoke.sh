#!/usr/bin/env bash
# Fuzzing smoke test (docs/testing.md): builds an ASan+UBSan hmmud and the
# fuzzers, runs the wire-decoder fuzzer and the socket fuzzer for a minute
# each, and fails on any finding.
#
#   tests/fuzz/smoke.sh            from anywhere in the checkout
#
# Environment:
#   FUZZ_SECONDS=N      each fuzzer's time (default 60)
#   FUZZ_SEED=S         sockfuzz's seed (default: random, printed)
#   SOCKFUZZ_ARGS=...   more sockfuzz options (e.g. --avoid-known)
#
# Builds go to build-sanitize/ (reused if configured with HMMU_SANITIZE=ON)
# and build-fuzz/. Findings stay in build-fuzz/findings/: libFuzzer's
# crash-* inputs, and sockfuzz's kept directory is named in its output.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_EACH=${FUZZ_SECONDS:-60}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

if ! command -v clang >/dev/null; then
	echo "smoke: installing clang"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang >/dev/null
fi

# The daemon under test: the project's own sanitizer build.
if ! grep -qs '^HMMU_SANITIZE:BOOL=ON' build-sanitize/CMakeCache.txt; then
	cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DHMMU_SANITIZE=ON >/dev/null
fi
cmake --build build-sanitize -j "$(nproc)" --target hmmud

cmake -S tests/fuzz -B build-fuzz -DCMAKE_C_COMPILER=clang \
	-DSOCKFUZZ_HMMUD="$PWD/build-sanitize/hmmud" >/dev/null
cmake --build build-fuzz -j "$(nproc)"

status=0
mkdir -p build-fuzz/findings build-fuzz/corpus

echo "smoke: fuzz_proto for ${SECONDS_EACH} s"
# New inputs go to corpus/ (kept between runs), seeds are read only.
if ! build-fuzz/fuzz_proto -max_total_time="$SECONDS_EACH" \
	-print_final_stats=1 -dict=build-fuzz/proto.dict \
	-artifact_prefix=build-fuzz/findings/ \
	build-fuzz/corpus build-fuzz/seeds >build-fuzz/fuzz_proto.log 2>&1; then
	status=1
	echo "smoke: fuzz_proto found something:"
	tail -n 60 build-fuzz/fuzz_proto.log
fi
grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done )' \
	build-fuzz/fuzz_proto.log | sed 's/^/smoke: fuzz_proto: /' || true

echo "smoke: sockfuzz for ${SECONDS_EACH} s"
seed_arg=()
[ -n "${FUZZ_SEED:-}" ] && seed_arg=(--seed "$FUZZ_SEED")
# shellcheck disable=SC2086 # SOCKFUZZ_ARGS is a list of options
if ! build-fuzz/sockfuzz --seconds "$SECONDS_EACH" \
	--hmmud build-sanitize/hmmud "${seed_arg[@]}" ${SOCKFUZZ_ARGS:-} \
	>build-fuzz/sockfuzz.log 2>&1; then
	status=1
	echo "smoke: sockfuzz found something:"
	tail -n 120 build-fuzz/sockfuzz.log
fi
grep -E '^sockfuzz: (seed|[0-9.]+ s, seed|clients run|messages sent|fds sent|findings|FINDING|kept)' \
	build-fuzz/sockfuzz.log | sed 's/^/smoke: /' || true

[ "$status" -eq 0 ] && echo "smoke: no findings" || echo "smoke: FINDINGS, see above"
exit "$status"
