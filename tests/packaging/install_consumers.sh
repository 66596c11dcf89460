#!/bin/bash
# SPDX-License-Identifier: MIT
# "cmake --install" gives a tree that clients build and run against, both
# through pkg-config (hmmu.pc) and through find_package(hmmu) (hmmu::hmmu);
# hmmud.service's ExecStart= names the hmmud of the prefix installed to,
# not that of the configured prefix.
#
# usage: install_consumers.sh BUILD_DIR C_COMPILER [EXTRA_CFLAGS]
# EXTRA_CFLAGS: e.g. the sanitizer flags of a sanitized libhmmu, which a
# consumer must share to load it.
set -euo pipefail

build=$1 cc=$2 cflags=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/private_install.sh
source "$here/private_install.sh"
tmp=$(mktemp -d /tmp/hmmu-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# DESTDIR keeps an install path that ignores the prefix inside $tmp: caught
# below, rather than written into the system.
prefix=$tmp/prefix
stage=$tmp/stage
root=$stage$prefix
DESTDIR=$stage private_install "$build" "$prefix" >"$tmp/install.log"
if stray=$(find "$stage" -not -type d | grep -v "^$root/"); then
	echo "FAIL: installed outside the prefix:"
	echo "$stray"
	exit 1
fi
libdir=$(dirname "$(find "$root" -name 'libhmmu.so.1')")

# The unit is made at install time, for this prefix (without DESTDIR).
unit=$(find "$root" -name hmmud.service)
[[ -n $unit ]] || { echo "FAIL: no hmmud.service installed"; exit 1; }
exec_start=$(grep '^ExecStart=' "$unit")
sbin=$(dirname "$(find "$root" -name hmmud -type f)")
[[ $exec_start == "ExecStart=${sbin#"$stage"}/hmmud --foreground "* ]] ||
	{ echo "FAIL: installed with --prefix $prefix, $unit says $exec_start"; exit 1; }
echo "installed unit: $exec_start"
missing=$tmp/no-such-dir/hmmud.sock

# (a) pkg-config, seeing only the installed hmmu.pc
export PKG_CONFIG_PATH=$libdir/pkgconfig PKG_CONFIG_LIBDIR=$libdir/pkgconfig
flags=$(pkg-config --cflags --libs hmmu)
echo "pkg-config: $flags"
# shellcheck disable=SC2086 # word splitting of the flags is intended
"$cc" -Wall -Werror $cflags -o "$tmp/client-pc" "$here/client.c" $flags
LD_LIBRARY_PATH=$libdir "$tmp/client-pc" "$missing"
loaded=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/client-pc")
grep -q "libhmmu.so.1 => $libdir/" <<<"$loaded" ||
	{ echo "FAIL: client-pc does not load the installed libhmmu"; exit 1; }

# (b) find_package(hmmu)
cmake -S "$here/cmake-consumer" -B "$tmp/consumer" -DCMAKE_C_COMPILER="$cc" \
	-DCMAKE_C_FLAGS="$cflags" -DCMAKE_PREFIX_PATH="$root" \
	-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$tmp/consumer.log" ||
	{ cat "$tmp/consumer.log"; exit 1; }
found=$(sed -n 's/^hmmu_DIR:PATH=//p' "$tmp/consumer/CMakeCache.txt")
[[ $found == "$root"/* ]] ||
	{ echo "FAIL: find_package(hmmu) found '$found', not the install"; exit 1; }
cmake --build "$tmp/consumer" >>"$tmp/consumer.log" ||
	{ cat "$tmp/consumer.log"; exit 1; }
LD_LIBRARY_PATH=$libdir "$tmp/consumer/client" "$missing"
echo "both consumers built and ran against $root"
