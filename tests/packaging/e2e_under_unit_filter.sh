#!/bin/bash
# SPDX-License-Identifier: MIT
# The end-to-end suites pass with hmmud under the configured hmmud.service's
# own SystemCallFilter=, as systemd would load it: the unit's lines are read
# here, their @groups expanded by this machine's systemd-analyze, and every
# daemon the suites start runs under seccomp-exec with that allow-list and
# kill-process for anything else. No systemd manager is needed.
#
# usage: e2e_under_unit_filter.sh SERVICE_UNIT SECCOMP_EXEC [--also CALL]...
#                                 -- TEST_BINARY...
# SECCOMP_EXEC empty: libseccomp was not found at configure time (skip).
# --also CALL: allow CALL too, for the test only (a sanitizer's runtime).
set -euo pipefail

skip() { echo "SKIP: $*"; exit 77; }

unit=$1 wrapper=$2
shift 2
also=()
while [[ $# -gt 0 && $1 != -- ]]; do
	[[ $1 == --also && $# -ge 2 ]] || { echo "bad argument $1" >&2; exit 2; }
	also+=("$2")
	shift 2
done
[[ ${1:-} == -- ]] && shift
(($# > 0)) || { echo "no test binaries given" >&2; exit 2; }

[[ -n $wrapper ]] ||
	skip "libseccomp was not found when configuring (apt-get install libseccomp-dev, then re-run cmake)"
command -v systemd-analyze >/dev/null ||
	skip "no systemd-analyze to expand the unit's @groups (apt-get install systemd)"
systemd-analyze syscall-filter @default >/dev/null 2>&1 ||
	skip "systemd-analyze syscall-filter does not work here"

tmp=$(mktemp -d /tmp/hmmu-seccomp-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# Prints the system calls NAME... stand for: @groups expanded (recursively:
# @system-service holds @default, @aio, ...), ":errno" suffixes dropped.
declare -A expanded=()
expand() {
	local item members
	for item; do
		item=${item%%:*}
		if [[ $item != @* ]]; then
			echo "$item"
			continue
		fi
		[[ -z ${expanded[$item]:-} ]] || continue
		expanded[$item]=1
		# First line: the group's name; then "# description", then members.
		members=$(systemd-analyze syscall-filter "$item" |
			awk 'NR > 1 && $1 !~ /^#/ { print $1 }')
		[[ -n $members ]] ||
			{ echo "FAIL: systemd-analyze knows no group $item" >&2; exit 1; }
		# shellcheck disable=SC2086 # one member a word
		expand $members
	done
}

# systemd's rules (systemd.exec(5)): an empty assignment resets the list;
# the first line decides whether it is an allow-list (no "~", and systemd
# adds @default to it) or a deny-list; after that, a line without "~" adds
# to the allow-list and a "~" line takes away from it.
declare -A allowed=()
mode=""
while IFS= read -r value; do
	if [[ -z $value ]]; then
		allowed=()
		mode=""
		continue
	fi
	deny=0
	if [[ $value == "~"* ]]; then
		deny=1
		value=${value#\~}
	fi
	if [[ -z $mode ]]; then
		((deny == 0)) || { echo "FAIL: $unit: a deny-list SystemCallFilter=; this test checks allow-lists"; exit 1; }
		mode=allow
		calls=$(expand @default)
		for c in $calls; do allowed[$c]=1; done
	fi
	# An assignment, so that a failed expansion stops the script (set -e).
	# shellcheck disable=SC2086 # names are blank-separated
	calls=$(expand $value)
	for c in $calls; do
		if ((deny)); then
			unset "allowed[$c]"
		else
			allowed[$c]=1
		fi
	done
done < <(sed -n 's/^SystemCallFilter=[[:space:]]*//p' "$unit")
((${#allowed[@]} > 0)) || { echo "FAIL: $unit has no SystemCallFilter= allow-list"; exit 1; }
if grep -q '^SystemCallErrorNumber=' "$unit"; then
	echo "note: $unit sets SystemCallErrorNumber=; the test kills on a filtered call all the same"
fi

list=$tmp/allowed
printf '%s\n' "${!allowed[@]}" | sort >"$list"
echo "$(wc -l <"$list") calls named by $unit's SystemCallFilter="
for c in "${also[@]}"; do
	echo "$c" >>"$list"
	echo "allowed for the test only: $c"
done

# The wrapper kills, and the kill is seen: a list without execve stops the
# exec itself with SIGSYS (128 + 31).
grep -vx execve "$list" >"$tmp/no-execve"
# (In a subshell, which reports the signal to /dev/null rather than here.)
status=0
("$wrapper" "$tmp/no-execve" -- true; exit $?) 2>/dev/null || status=$?
((status == 159)) ||
	{ echo "FAIL: seccomp-exec without execve on its list exited $status, not by SIGSYS"; exit 1; }

export HMMU_TEST_DAEMON_PREFIX="$wrapper $list --"
fail=0
for t in "$@"; do
	name=$(basename "$t")
	start=$SECONDS
	status=0
	"$t" >"$tmp/$name.out" 2>&1 || status=$?
	summary=$(grep -a 'Synthesis:' "$tmp/$name.out" | tail -1)
	echo "$name: exit $status in $((SECONDS - start)) s ${summary#*Synthesis: }"
	# The harness prints a daemon's wait status when it did not stop
	# cleanly: 0x1f is SIGSYS (0x9f with a core dump).
	if grep -aqE 'status 0x(1f|9f)\)' "$tmp/$name.out"; then
		echo "FAIL: $name: hmmud was killed by SIGSYS, a call missing from the filter"
		echo "  (the kernel log names it: audit type=1326 ... syscall=NR)"
		fail=1
	fi
	# 77: every test the program ran was skipped (tests/criterion_main.c).
	if ((status == 77)); then
		echo "  $name: all its tests skipped"
		status=0
	fi
	# Criterion may pass a test whose setup or teardown failed: read it.
	if ((status == 0)) && grep -aqE 'during its setup or teardown|hmmud did not stop cleanly|hmmud logged what the test did not expect' "$tmp/$name.out"; then
		status=1
	fi
	if ((status != 0)); then
		echo "FAIL: $name under the unit's filter; its output:"
		sed 's/^/  /' "$tmp/$name.out"
		fail=1
	fi
done
exit $fail
