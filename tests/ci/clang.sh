#!/usr/bin/env bash
# hmmu built with clang: every target, warnings as errors, into build-clang/,
# then the unit tests. clang's warnings differ from gcc's (it flagged
# -Wsometimes-uninitialized where gcc was silent), so both must pass.
#
# Installs clang if it is missing; the project's other build dependencies
# are run.sh's to install.
set -euo pipefail
cd "$(dirname "$0")/../.."

DIR=${CLANG_DIR:-build-clang}
STARTED=$SECONDS

if ! command -v clang >/dev/null; then
	echo "clang.sh: installing clang"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang >/dev/null
fi
clang --version | head -1

# CMakeLists.txt adds -Wall -Wextra -Werror itself; -Werror is repeated
# here so that this job keeps failing on a warning whatever happens there.
# A build dir first configured with another compiler is reconfigured.
cmake -S . -B "$DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCMAKE_C_COMPILER=clang -DCMAKE_C_FLAGS=-Werror >/dev/null
cmake --build "$DIR" -j "$(nproc)"

ctest --test-dir "$DIR" -L unit --output-on-failure -j "$(nproc)"
echo "clang.sh: done in $((SECONDS - STARTED)) s"
