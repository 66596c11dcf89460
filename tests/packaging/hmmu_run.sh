#!/bin/bash
# SPDX-License-Identifier: MIT
# hmmu-run as a user meets it: the program's exit status comes through, the
# user's LD_PRELOAD is kept after the shim, a private daemon is started and
# removed (its log named only when something failed), a daemon that already
# answers is used instead, and a --socket nobody answers is refused. The
# installed tree's hmmu-run finds its shim and hmmud by itself.
#
# usage: hmmu_run.sh BUILD_DIR
set -euo pipefail

build=$1
run=$build/hmmu-run
# shellcheck source=SCRIPTDIR/private_install.sh
source "$(dirname "$0")/private_install.sh"
tmp=$(mktemp -d /tmp/hmmu-run-test-XXXXXX)
daemon=""
cleanup() {
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
# The private daemon's directory named in hmmu-run's stderr ($1), removed.
remove_named_dir() {
	local log
	log=$(sed -n "s/^hmmu-run: hmmud's log: //p" "$1")
	[ -n "$log" ] && rm -rf "$(dirname "$log")"
	return 0
}
unset HMMU_SOCKET LD_PRELOAD

# Exit status, and nothing left behind on success.
set +e
"$run" --private -- sh -c 'exit 3' 2>"$tmp/err"
status=$?
set -e
[ "$status" = 3 ] || fail "exit status $status, not 3"
grep -q "hmmud's log" "$tmp/err" || fail "a failing program does not name the daemon's log"
log=$(sed -n "s/^hmmu-run: hmmud's log: //p" "$tmp/err")
[ -s "$log" ] || fail "the named log $log is missing or empty"
remove_named_dir "$tmp/err"
# Other tests run hmmu-run at the same time: look at this run's directory only.
"$run" --private -- sh -c 'echo "$HMMU_SOCKET"' >"$tmp/clean" 2>"$tmp/err" ||
	fail "a clean program under hmmu-run failed"
[ ! -s "$tmp/err" ] || fail "a clean run printed: $(cat "$tmp/err")"
[ ! -e "$(dirname "$(cat "$tmp/clean")")" ] ||
	fail "a clean run left $(dirname "$(cat "$tmp/clean")") behind"
set +e
"$run" --private -- sh -c 'kill -TERM $$' 2>"$tmp/err"
status=$?
set -e
[ "$status" = $((128 + 15)) ] || fail "a program killed by SIGTERM: status $status"
remove_named_dir "$tmp/err"

# The environment the program sees.
LD_PRELOAD=libc.so.6 "$run" --private -- sh -c 'echo "$LD_PRELOAD"; echo "$HMMU_SOCKET"' >"$tmp/env"
preload=$(sed -n 1p "$tmp/env")
case "$preload" in
*/libhmmu-dmirror.so:libc.so.6) ;;
*) fail "LD_PRELOAD is '$preload'" ;;
esac
[[ "$(sed -n 2p "$tmp/env")" == /tmp/hmmu-run-*/hmmud.sock ]] ||
	fail "HMMU_SOCKET is '$(sed -n 2p "$tmp/env")'"

# A daemon that answers is used, not a private one.
"$build/hmmud" --foreground --socket "$tmp/sock" --log-level warning &
daemon=$!
# The socket file appears at bind(), before listen(): wait for an answer.
for _ in $(seq 100); do
	"$build/hmmuctl" --socket "$tmp/sock" version >/dev/null 2>&1 && break
	sleep 0.05
done
HMMU_SOCKET=$tmp/sock "$run" -- sh -c 'echo "$HMMU_SOCKET"' >"$tmp/used"
[ "$(cat "$tmp/used")" = "$tmp/sock" ] || fail "the answering daemon was not used"
"$run" --socket "$tmp/sock" -- true || fail "--socket with a daemon"
set +e
"$run" --socket "$tmp/nobody" -- true 2>"$tmp/err"
status=$?
set -e
[ "$status" = 127 ] && grep -q "no hmmud answers at $tmp/nobody" "$tmp/err" ||
	fail "--socket nobody answers: status $status, $(cat "$tmp/err")"

# Installed: bin/hmmu-run finds lib/hmmu/libhmmu-dmirror.so and sbin/hmmud.
private_install "$build" "$tmp/prefix" >/dev/null
"$tmp/prefix/bin/hmmu-run" --private -- sh -c 'echo "$LD_PRELOAD"' >"$tmp/inst"
shim=$(cat "$tmp/inst")
[[ "$shim" == "$tmp"/prefix/lib*/hmmu/libhmmu-dmirror.so ]] ||
	fail "installed hmmu-run preloads '$shim'"
# The installed shim loads (its libhmmu found beside it) and serves the node.
"$tmp/prefix/bin/hmmu-run" --private -- sh -c 'exec 3<>/dev/hmm_dmirror0 && echo opened' \
	>"$tmp/opened" 2>&1 || true
[ "$(cat "$tmp/opened")" = opened ] ||
	fail "a shell under the installed hmmu-run cannot open /dev/hmm_dmirror0: $(cat "$tmp/opened")"
echo "hmmu-run: all checks passed"
