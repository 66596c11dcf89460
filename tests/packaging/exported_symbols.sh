#!/bin/bash
# SPDX-License-Identifier: MIT
# libhmmu exports exactly the symbols of its version script, all hmmu_*,
# each at the version node that lists it (HMMU_1.0, HMMU_1.1, ...), each
# declared in the public header; its SONAME is libhmmu.so.1.
#
# usage: exported_symbols.sh LIBHMMU_SO LIBHMMU_MAP HMMU_H
set -euo pipefail

lib=$1 map=$2 header=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# The map's global names, "NODE name" per line: a node opens with
# "HMMU_x.y {", its names are the lines "name;" after "global:" up to
# "local:" or the node's end.
awk '/^[A-Z][A-Z0-9_.]* *\{/ { node = $1; global = 0; next }
     /^[[:space:]]*global:/ { global = 1; next }
     /^[[:space:]]*local:/ || /^[[:space:]]*\}/ { global = 0; next }
     global && /^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*;/ {
	     gsub(/[[:space:];]/, ""); print node, $0 }' "$map" |
	sort -k2 >"$tmp/nodes"
cut -d' ' -f2 "$tmp/nodes" >"$tmp/map"
[[ -s $tmp/map ]] || { echo "no global symbol parsed from $map"; exit 1; }

# Defined dynamic symbols, without the version node's own absolute symbol.
nm -D --defined-only "$lib" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' |
	sort >"$tmp/lib"

if ! diff -u --label "$map" --label "$lib" "$tmp/map" "$tmp/lib"; then
	echo "FAIL: exported symbols differ from the version script"
	fail=1
fi
if grep -v '^hmmu_' "$tmp/map"; then
	echo "FAIL: the symbols above lack the hmmu_ prefix"
	fail=1
fi

# objdump -T: "addr flags section size version name"; defined ones only.
objdump -T "$lib" | awk '$NF ~ /^hmmu_/ && $0 !~ /\*UND\*/ { print $(NF-1), $NF }' |
	sort -k2 >"$tmp/versions"
if ! diff -u --label "$map (node name)" --label "objdump -T (version name)" \
	"$tmp/nodes" "$tmp/versions"; then
	echo "FAIL: symbols are not at the version node that lists them"
	fail=1
fi
if ! diff -u --label map --label "objdump -T" "$tmp/map" <(cut -d' ' -f2 "$tmp/versions"); then
	echo "FAIL: objdump -T does not list every mapped symbol"
	fail=1
fi

for sym in $(cat "$tmp/map"); do
	if ! grep -Eq "\\b$sym\\(" "$header"; then
		echo "FAIL: $sym is exported but not declared in $header"
		fail=1
	fi
done

soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
if [[ $soname != libhmmu.so.1 ]]; then
	echo "FAIL: SONAME is '$soname', not libhmmu.so.1"
	fail=1
fi

exit $fail
