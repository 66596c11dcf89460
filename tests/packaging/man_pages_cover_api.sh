#!/bin/bash
# SPDX-License-Identifier: MIT
# Every public function has a man page, man/man3/<name>.3 (the page itself,
# or a ".so" link to the page that documents it with others), whose NAME
# lists it and whose SYNOPSIS declares it. The public functions are those
# libhmmu exports (its version script) and those hmmud exports to device
# models (core/driver.dynlist) that include/hmmu/driver.h declares as
# functions.
#
# usage: man_pages_cover_api.sh SOURCE_DIR
set -uo pipefail

src=$1
map=$src/libhmmu/libhmmu.map
dynlist=$src/core/driver.dynlist
driver_h=$src/include/hmmu/driver.h
man3=$src/man/man3
fail=0

# The version script's global names: "name;" lines between global: and local:.
lib=$(sed -n '/global:/,/local:/{/^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*;/p}' "$map" |
	tr -d ' \t;')
# The dynamic list's names: "name;" lines.
dyn=$(sed -n '/^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*;/p' "$dynlist" | tr -d ' \t;')
[[ -n $lib ]] || { echo "FAIL: no name parsed from $map"; exit 1; }
[[ -n $dyn ]] || { echo "FAIL: no name parsed from $dynlist"; exit 1; }

# A function of driver.h: its name, then "(", on a line that is not a
# comment, after a return type (so "hmmu_foo(" in prose does not count).
driver_functions=$(sed 's|/\*.*\*/||g' "$driver_h" |
	grep -oE '^[a-z_][a-z0-9_ ]*[ *]+hmmu_[a-z0-9_]+\(' |
	grep -oE 'hmmu_[a-z0-9_]+\($' | tr -d '(' | sort -u)
names=$lib
for n in $dyn; do
	if grep -qx "$n" <<<"$driver_functions"; then
		names+=$'\n'$n
	else
		echo "note: $n is exported to models but is not a function of driver.h: no page needed"
	fi
done

# The page that documents a name: its own, or the one its .so points at.
page_of() {
	local p=$man3/$1.3
	[[ -f $p ]] || return 1
	if [[ $(head -c 4 "$p") == ".so " ]]; then
		p=$src/man/$(sed -n '1s/^\.so //p' "$p")
		[[ -f $p ]] || return 1
	fi
	echo "$p"
}

count=0
for n in $(sort -u <<<"$names"); do
	count=$((count + 1))
	if ! page=$(page_of "$n"); then
		echo "FAIL: $n has no man page: write man/man3/$n.3 (or a .so link to the page that documents it)"
		fail=1
		continue
	fi
	if ! awk '/^\.SH NAME/ { getline; sub(/ \\- .*/, ""); gsub(/,/, " "); print; exit }' "$page" |
		tr ' ' '\n' | grep -qx "$n"; then
		echo "FAIL: $n: ${page#"$src"/} does not list it in NAME"
		fail=1
	fi
	if ! sed -n '/^\.SH SYNOPSIS/,/^\.SH /p' "$page" | grep -qE "(^|[ *\"])$n\("; then
		echo "FAIL: $n: ${page#"$src"/} does not declare it in SYNOPSIS"
		fail=1
	fi
done

if [[ $fail -ne 0 ]]; then
	exit 1
fi
echo "$count public functions: each has its page"
