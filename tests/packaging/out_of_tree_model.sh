#!/bin/bash
# SPDX-License-Identifier: MIT
# An out-of-tree device model, as its author would build it: against the
# *installed* tree, with pkg-config (examples/device-copy-engine). hmmud
# then loads it (test_out_of_tree), and refuses a model built for another
# driver API version, saying why.
#
# usage: out_of_tree_model.sh BUILD_DIR C_COMPILER HMMUD TEST_BINARY
set -euo pipefail

build=$1 cc=$2 hmmud=$3 test_binary=$4
src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=SCRIPTDIR/private_install.sh
source "$src/tests/packaging/private_install.sh"
tmp=$(mktemp -d /tmp/hmmu-model-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

private_install "$build" "$tmp/prefix" >"$tmp/install.log"
pc=$(dirname "$(find "$tmp/prefix" -name hmmu-driver.pc)")
cp -r "$src/examples/device-copy-engine" "$tmp/model"
# Only what the installed tree gives: no -I into the source tree.
PKG_CONFIG_PATH=$pc PKG_CONFIG_LIBDIR=$pc make -s -C "$tmp/model" CC="$cc"
model=$tmp/model/copy_engine.so
[ "$(pkg-config --variable=driver_api_version hmmu-driver \
	--with-path="$pc")" = "$(sed -n 's/^#define HMMU_DRIVER_API_VERSION //p' \
	"$src/include/hmmu/driver.h")" ] ||
	{ echo "FAIL: hmmu-driver.pc has another API version"; exit 1; }

# A model of another API version: hmmud must refuse it, and say so.
cat >"$tmp/old.c" <<'C'
#include <hmmu/driver.h>
static const struct hmmu_device_ops ops;
__attribute__((visibility("default"))) const struct hmmu_driver_module
	hmmu_driver_module = { .api_version = HMMU_DRIVER_API_VERSION + 1,
			       .struct_size = sizeof(struct hmmu_driver_module),
			       .model = "old", .ops = &ops };
C
"$cc" -fPIC -shared -I"$tmp/prefix/include" -o "$tmp/old.so" "$tmp/old.c"
if "$hmmud" --foreground --socket "$tmp/s" --device "model=$tmp/old.so,name=x" \
	>"$tmp/old.log" 2>&1; then
	echo "FAIL: hmmud started with a model of another API version"
	exit 1
fi
grep -q "built for driver API" "$tmp/old.log" ||
	{ echo "FAIL: no reason given:"; cat "$tmp/old.log"; exit 1; }
echo "refused, as it should be: $(grep 'driver API' "$tmp/old.log")"

HMMU_TEST_MODEL=$model "$test_binary"
