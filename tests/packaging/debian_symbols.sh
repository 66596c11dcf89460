#!/bin/bash
# SPDX-License-Identifier: MIT
# The Debian symbols file of libhmmu1, made from libhmmu.map at configure
# time (cmake/debian_symbols.cmake), lists exactly what the built library
# exports, each symbol at its version node: dpkg-gensymbols compares them
# and, at check level 4, fails on any symbol or library added or lost. The
# shlibs file names the same library and package.
#
# usage: debian_symbols.sh LIBHMMU_SO SYMBOLS_FILE SHLIBS_FILE
set -euo pipefail

lib=$1 symbols=$2 shlibs=$3
command -v dpkg-gensymbols >/dev/null ||
	{ echo "SKIP: no dpkg-gensymbols (apt-get install dpkg-dev)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# "libhmmu.so.1 libhmmu1 #MINVER#"
read -r soname package minver <"$symbols"
[[ $minver == "#MINVER#" && $soname == libhmmu.so.* ]] ||
	{ echo "FAIL: $symbols does not start with 'libhmmu.so.N PACKAGE #MINVER#'"; exit 1; }
real_soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
[[ $soname == "$real_soname" ]] ||
	{ echo "FAIL: $symbols is for $soname, the library's SONAME is $real_soname"; exit 1; }
read -r name version spkg rest <"$shlibs"
[[ "$name.so.$version" == "$soname" && $spkg == "$package" && $rest == "(>= "*")" ]] ||
	{ echo "FAIL: $shlibs does not say '${soname%%.so.*} ${soname##*.so.} $package (>= V)': $(cat "$shlibs")"; exit 1; }

# As the package holds it: the library under its SONAME in usr/lib.
mkdir -p "$tmp/pkg/usr/lib"
cp "$(readlink -f "$lib")" "$tmp/pkg/usr/lib/$soname"
if ! dpkg-gensymbols -q -p"$package" -v0 -P"$tmp/pkg" -e"$tmp/pkg/usr/lib/$soname" \
	-I"$symbols" -O"$tmp/symbols" -c4 >"$tmp/out" 2>&1; then
	cat "$tmp/out"
	echo "FAIL: $symbols does not match the symbols $lib exports (diff above)"
	exit 1
fi
echo "$(grep -c '^ ' "$symbols") symbols of $soname, as $package lists them: match"
