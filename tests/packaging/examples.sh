#!/bin/bash
# SPDX-License-Identifier: MIT
# The client examples (examples/*.c) as a user meets them: copied out of the
# tree, built with their Makefile against the *installed* tree through
# pkg-config alone, and run one after another against a private hmmud
# (this build's) on a private socket, which is stopped by its own pid at
# the end. Each example checks its own results and exits non-zero on a
# mismatch. The README's quote of the first one must still be in it.
#
# usage: examples.sh BUILD_DIR C_COMPILER HMMUD [EXTRA_CFLAGS]
# EXTRA_CFLAGS: the sanitizer flags of a sanitized libhmmu, which the
# examples must share to load it.
set -euo pipefail

build=$1 cc=$2 hmmud=$3 cflags=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/private_install.sh
source "$here/private_install.sh"
tmp=$(mktemp -d /tmp/hmmu-examples-XXXXXX)
daemon=""
cleanup() {
	if [[ -n $daemon ]]; then
		kill -TERM "$daemon" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

examples=(mirror_read cpu_write migrate accel_list two_processes)

# The README quotes the first example: every line of that quote (the first
# C block after the line naming examples/mirror_read.c) is a line of it.
awk '/examples\/mirror_read\.c/ { named = 1 }
     named && /^```c/ { inside = 1; next }
     inside && /^```/ { exit }
     inside { print }' "$src/README.md" >"$tmp/quote"
[[ -s $tmp/quote ]] || fail "README.md quotes no C block after naming examples/mirror_read.c"
sed 's/^[[:space:]]*//; s/[[:space:]]*$//' "$src/examples/mirror_read.c" >"$tmp/example"
while IFS= read -r line; do
	line=$(sed 's/^[[:space:]]*//; s/[[:space:]]*$//' <<<"$line")
	[[ -z $line || $line == ... ]] && continue
	grep -qxF -- "$line" "$tmp/example" ||
		fail "README.md quotes a line examples/mirror_read.c does not have: $line"
done <"$tmp/quote"
echo "README.md's quote of examples/mirror_read.c matches it"

# Installed, and built as a user would: only the installed hmmu.pc is seen.
private_install "$build" "$tmp/prefix" >"$tmp/install.log"
pcdir=$(dirname "$(find "$tmp/prefix" -name hmmu.pc)")
libdir=$(dirname "$pcdir")
mkdir "$tmp/examples"
cp "$src/examples/Makefile" "$tmp/examples/"
for e in "${examples[@]}"; do cp "$src/examples/$e.c" "$tmp/examples/"; done
PKG_CONFIG_PATH=$pcdir PKG_CONFIG_LIBDIR=$pcdir \
	make -s -C "$tmp/examples" CC="$cc" CFLAGS="-O2 -g -Wall -Wextra -Werror $cflags" ||
	fail "the examples do not build against the installed tree"
for e in "${examples[@]}"; do
	loaded=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/examples/$e")
	grep -q "libhmmu.so.1 => $libdir/" <<<"$loaded" ||
		fail "$e does not load the installed libhmmu"
done
echo "built ${examples[*]} with $(PKG_CONFIG_LIBDIR=$pcdir pkg-config --cflags --libs hmmu)"

# A private daemon on a private socket; $HMMU_SOCKET points the examples at it.
sock=$tmp/hmmud.sock
"$hmmud" --foreground --socket "$sock" --log-level warning 2>"$tmp/hmmud.log" &
daemon=$!
for _ in $(seq 200); do
	[[ -S $sock ]] && break
	kill -0 "$daemon" 2>/dev/null || break
	sleep 0.05
done
[[ -S $sock ]] || { cat "$tmp/hmmud.log"; fail "hmmud did not listen on $sock"; }

failed=()
for e in "${examples[@]}"; do
	echo "---- $e"
	if ! (cd "$tmp/examples" && HMMU_SOCKET=$sock LD_LIBRARY_PATH=$libdir "./$e"); then
		failed+=("$e")
	fi
done

kill -TERM "$daemon"
status=0
wait "$daemon" || status=$?
daemon=""
if [[ -s $tmp/hmmud.log ]]; then
	echo "---- hmmud's log"
	cat "$tmp/hmmud.log"
fi
((status == 0)) || fail "hmmud did not stop cleanly (status $status)"
((${#failed[@]} == 0)) || fail "examples failed: ${failed[*]}"
echo "all ${#examples[@]} examples passed"
