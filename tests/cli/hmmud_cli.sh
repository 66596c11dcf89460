#!/bin/bash
# SPDX-License-Identifier: MIT
# hmmud and hmmu-demo as a person at a terminal meets them, one behaviour
# per ctest test (tests/CMakeLists.txt):
#
#   version HMMUD DEMO      --version prints "<prog> <version> (<commit>)";
#                           hmmu-demo --help, and exit 2 for a bad option
#   bad-device HMMUD        each bad --device spec is refused with exit 2
#                           and one line naming the bad model, key or value,
#                           before a socket exists, detached or not
#   check-as-user HMMUD     hmmud --check run by nobody names the fix for
#                           what nobody lacks (root only: skips otherwise)
#   detach HMMUD            a daemon that detaches leaves the terminal: its
#                           own session, cwd "/", stdio on /dev/null, none of
#                           the starter's fds; its log goes to --log-file
#
# Exit 0 pass, 1 fail, 77 skip (with the reason on stdout).
set -euo pipefail

what=$1
shift
tmp=$(mktemp -d /tmp/hmmu-cli-XXXXXX)
daemon_pid=""
cleanup() {
	# Only the daemon this script started, by its pid.
	if [ -n "$daemon_pid" ] && [ -d "/proc/$daemon_pid" ]; then
		kill -KILL "$daemon_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

# hmmud starts only on a kernel that has what it needs.
require_kernel() {
	"$1" --check >"$tmp/check" 2>&1 ||
		skip "hmmud cannot run on this machine: $(grep '^hmmud cannot' "$tmp/check")"
}

version() {
	local hmmud=$1 demo=$2 out
	local re='^[a-z-]+ [0-9]+\.[0-9]+\.[0-9]+ \([^)]+\)$'

	out=$("$hmmud" --version)
	[[ $out =~ $re && $out == "hmmud "* ]] || fail "hmmud --version: '$out'"
	out=$("$demo" --version)
	[[ $out =~ $re && $out == "hmmu-demo "* ]] || fail "hmmu-demo --version: '$out'"
	"$demo" --help >"$tmp/help" || fail "hmmu-demo --help exits $?"
	grep -q '^usage: hmmu-demo \[SOCKET\]' "$tmp/help" || fail "hmmu-demo --help: $(cat "$tmp/help")"
	set +e
	"$demo" --bogus >/dev/null 2>&1
	local status=$?
	set -e
	[ "$status" = 2 ] || fail "hmmu-demo --bogus exits $status, not 2"
	echo "$("$hmmud" --version); $("$demo" --version)"
}

# Run hmmud with one spec ($2) and extra arguments; expect exit 2, and a
# stderr that holds $3 and no "Invalid argument", and no socket.
expect_refused() {
	local hmmud=$1 spec=$2 want=$3 status
	shift 3

	set +e
	env -u NOTIFY_SOCKET "$hmmud" --socket "$tmp/s" --device "$spec" "$@" \
		>"$tmp/out" 2>"$tmp/err"
	status=$?
	set -e
	[ "$status" = 2 ] || fail "--device '$spec' $*: exit $status, not 2: $(cat "$tmp/err")"
	grep -qF -- "$want" "$tmp/err" ||
		fail "--device '$spec' $*: no '$want' in: $(cat "$tmp/err")"
	! grep -q "Invalid argument" "$tmp/err" ||
		fail "--device '$spec' $*: a bare errno: $(cat "$tmp/err")"
	[ ! -e "$tmp/s" ] || fail "--device '$spec' $*: the socket was created"
	echo "  $spec -> $(head -1 "$tmp/err")"
}

bad_device() {
	local hmmud=$1 mode

	# Checked before anything starts (before the kernel check too).
	for mode in --foreground ""; do
		echo "${mode:-detaching}:"
		expect_refused "$hmmud" "foo:name=x" \
			"unknown device model 'foo' (models: dmirror, accel" $mode
		expect_refused "$hmmud" "xyz" "want MODEL:name=NAME" $mode
		expect_refused "$hmmud" "dmirror" "no name=" $mode
		expect_refused "$hmmud" "dmirror:mem=1G" "no name=" $mode
		expect_refused "$hmmud" "dmirror:name=" "name= is empty" $mode
		expect_refused "$hmmud" "dmirror:name=$(printf 'a%.0s' {1..32})" \
			"is too long (at most 31 characters)" $mode
		expect_refused "$hmmud" "dmirror:name=x,name=y" \
			"name= is given twice" $mode
		expect_refused "$hmmud" "dmirror:name=x,mem=12Q" \
			"mem=12Q: not a size; want a number of bytes, with an optional K, M or G suffix" $mode
		expect_refused "$hmmud" "dmirror:name=x,mem=-1" "mem=-1: not a size" $mode
		expect_refused "$hmmud" "dmirror:name=x,node=abc" \
			"node=abc: not a NUMA node number" $mode
		expect_refused "$hmmud" "dmirror:name=x,node=4000" \
			"this machine has no NUMA node 4000" $mode
		expect_refused "$hmmud" "dmirror:name=x,foo=1" \
			"unknown option 'foo=1' (model dmirror takes name=, mem= and node=)" $mode
		expect_refused "$hmmud" "dmirror:name=x,,mem=1M" "an empty option" $mode
		expect_refused "$hmmud" "model=,name=x" "model= names no file" $mode
		expect_refused "$hmmud" "dmirror:name=twice" \
			"the name 'twice' is taken by --device 'dmirror:name=twice'" \
			--device "accel:name=twice" $mode
	done

	# The model's own options are checked by the model as it creates the
	# device, after the kernel check; the daemon that detached still has
	# the starter's stderr, and its parent exits with its status.
	require_kernel "$hmmud"
	for mode in --foreground ""; do
		echo "${mode:-detaching}:"
		expect_refused "$hmmud" "accel:name=x,cus=0" \
			"x: cus=0: want a whole number from 1 to 64" $mode
		expect_refused "$hmmud" "accel:name=x,bogus=1" \
			"x: unknown option 'bogus=1' (model accel takes cus=N, prefetch=N, faultbuf=N and density=P" $mode
		expect_refused "$hmmud" "model=$tmp/none.so,name=x" \
			"--device model=$tmp/none.so: " $mode
	done
}

check_as_user() {
	local hmmud=$1 status uffd_ok=0

	[ "$(id -u)" = 0 ] || skip "needs root, to run hmmud --check as nobody"
	command -v setpriv >/dev/null || skip "no setpriv (util-linux)"
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	run_as_nobody() { setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups "$@"; }
	run_as_nobody true 2>/dev/null || skip "setpriv cannot switch to nobody here"
	run_as_nobody test -x "$hmmud" ||
		skip "nobody may not run $hmmud (a directory on its path is closed)"

	set +e
	run_as_nobody "$hmmud" --check >"$tmp/check" 2>&1
	status=$?
	set -e
	cat "$tmp/check"
	# setpriv from root to another uid leaves no capability.
	grep -q '^privilege   sys-ptrace      no ' "$tmp/check" ||
		fail "nobody is said to have CAP_SYS_PTRACE"
	grep -q "^fix: privileges: .*run hmmud as root, or give it CAP_SYS_PTRACE and CAP_DAC_OVERRIDE" \
		"$tmp/check" || fail "no fix named for the missing privileges"
	# Can nobody's processes have a full userfaultfd? Then nothing to fix.
	[ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" = 1 ] && uffd_ok=1
	run_as_nobody test -r /dev/userfaultfd -a -w /dev/userfaultfd 2>/dev/null && uffd_ok=1
	if [ $uffd_ok = 0 ]; then
		grep -q '^client      userfaultfd     no ' "$tmp/check" ||
			fail "nobody's clients are said to have a userfaultfd"
		grep -q "^fix: clients: .*set sysctl vm.unprivileged_userfaultfd=1.*or run them as root" \
			"$tmp/check" || fail "no fix named for the clients' userfaultfd"
	fi
	# Exit 1 only if hmmud cannot run, and then a fix says what to do.
	case $status in
	0) ! grep -q '^hmmud cannot run' "$tmp/check" || fail "exit 0, yet 'cannot run'" ;;
	1) grep -q '^hmmud cannot run' "$tmp/check" && grep -q '^fix: ' "$tmp/check" ||
		fail "exit 1 without saying why and how to fix it" ;;
	*) fail "hmmud --check as nobody exits $status" ;;
	esac
}

# The pid of the hmmud whose environment holds HMMU_CLI_TEST=$tmp.
find_daemon() {
	local f

	for f in /proc/[0-9]*/environ; do
		if tr '\0' '\n' <"$f" 2>/dev/null | grep -qx "HMMU_CLI_TEST=$tmp"; then
			basename "$(dirname "$f")"
			return 0
		fi
	done
	return 1
}

# Stop the daemon at $daemon_pid (not our child: poll for it to go).
stop_daemon() {
	kill -TERM "$daemon_pid"
	for _ in $(seq 200); do
		[ -d "/proc/$daemon_pid" ] || { daemon_pid=""; return 0; }
		sleep 0.1
	done
	fail "hmmud $daemon_pid did not stop on SIGTERM in 20 s"
}

detach() {
	local hmmud=$1 stat sid tty status fd target

	require_kernel "$hmmud"
	# A pipe on stdout and stderr, as $(...) or a pipeline gives: if the
	# daemon kept it, cat would never see its end and timeout would fire.
	# A relative --socket, from the directory it is relative to.
	set +e
	(cd "$tmp" && HMMU_CLI_TEST=$tmp timeout 30 env -u NOTIFY_SOCKET \
		"$hmmud" --socket rel.sock --log-file "$tmp/hmmud.log" 2>&1 |
		cat >"$tmp/started")
	status=$?
	set -e
	daemon_pid=$(find_daemon) || fail "no daemon running after start: $(cat "$tmp/started")"
	[ "$status" = 0 ] || fail "starting it exited $status (124: it kept the pipe): $(cat "$tmp/started")"
	[ -S "$tmp/rel.sock" ] || fail "no socket $tmp/rel.sock when the starter returned"
	grep -q "listening on $tmp/rel.sock" "$tmp/started" ||
		fail "the start was not told on the starter's stderr: $(cat "$tmp/started")"

	[ "$(readlink "/proc/$daemon_pid/cwd")" = / ] ||
		fail "its cwd is $(readlink "/proc/$daemon_pid/cwd"), not /"
	for fd in 0 1; do
		target=$(readlink "/proc/$daemon_pid/fd/$fd")
		[ "$target" = /dev/null ] || fail "its fd $fd is $target, not /dev/null"
	done
	target=$(readlink "/proc/$daemon_pid/fd/2")
	[ "$target" = "$tmp/hmmud.log" ] || fail "its fd 2 is $target, not the --log-file"
	if ls -l "/proc/$daemon_pid/fd" | grep -q 'pipe:'; then
		fail "it holds a pipe: $(ls -l "/proc/$daemon_pid/fd")"
	fi
	# Fields after "(comm)": state ppid pgrp session tty_nr.
	stat=$(sed 's/.*) //' "/proc/$daemon_pid/stat")
	sid=$(echo "$stat" | awk '{print $4}')
	tty=$(echo "$stat" | awk '{print $5}')
	[ "$sid" = "$daemon_pid" ] || fail "its session is $sid, not its own ($daemon_pid)"
	[ "$tty" = 0 ] || fail "it has a controlling terminal ($tty)"
	echo "hmmud $daemon_pid: cwd /, stdin and stdout /dev/null, log $tmp/hmmud.log, session $sid, no tty"

	stop_daemon
	[ ! -e "$tmp/rel.sock" ] || fail "its relative socket was not removed at stop"
	grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3} hmmud: stopped$' \
		"$tmp/hmmud.log" || fail "the --log-file lacks a stamped 'stopped': $(cat "$tmp/hmmud.log")"

	# A start that fails after detaching still says why, where it was
	# started, and the starter gets its status.
	set +e
	HMMU_CLI_TEST=$tmp env -u NOTIFY_SOCKET "$hmmud" --socket "$tmp/no/such/dir/s" \
		>/dev/null 2>"$tmp/err"
	status=$?
	set -e
	[ "$status" = 1 ] || fail "a failed detached start exits $status, not 1"
	grep -q "listen on $tmp/no/such/dir/s: No such file or directory" "$tmp/err" ||
		fail "a failed detached start does not say why: $(cat "$tmp/err")"
	! find_daemon >/dev/null || fail "a daemon runs after a failed start"
}

case $what in
version) version "$@" ;;
bad-device) bad_device "$@" ;;
check-as-user) check_as_user "$@" ;;
detach) detach "$@" ;;
*) fail "unknown test '$what'" ;;
esac
