#!/bin/bash
# SPDX-License-Identifier: MIT
# systemd-analyze verify finds nothing to say about hmmud.socket and the
# configured hmmud.service, and they keep the contract with the daemon and
# libhmmu: Type=notify, a SOCK_SEQPACKET socket at the default path, open to
# the group that the shipped sysusers.d file creates and to no one else.
#
# usage: units_verify.sh HMMUD_SOCKET_UNIT HMMUD_SERVICE_UNIT HMMUD HMMU_H SYSUSERS_CONF
set -euo pipefail

socket_unit=$1 service_unit=$2 hmmud=$3 header=$4 sysusers=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# verify checks that ExecStart's binary exists: run the built one.
cp "$socket_unit" "$tmp/hmmud.socket"
sed "s|^ExecStart=[^ ]*/hmmud |ExecStart=$hmmud |" "$service_unit" >"$tmp/hmmud.service"
grep -qx "ExecStart=$hmmud --foreground \$HMMUD_OPTIONS" "$tmp/hmmud.service" ||
	{ echo "FAIL: no 'ExecStart=.../hmmud --foreground \$HMMUD_OPTIONS' in $service_unit"; exit 1; }

# Man pages are not installed at build time; other units are not ours.
if ! systemd-analyze verify --man=no --recursive-errors=no \
	"$tmp/hmmud.socket" "$tmp/hmmud.service" >"$tmp/out" 2>&1; then
	echo "FAIL: systemd-analyze verify failed"
	fail=1
fi
if grep hmmud "$tmp/out"; then
	echo "FAIL: systemd-analyze verify complains about the units above"
	fail=1
fi

sock=$(grep -F '#define HMMU_DEFAULT_SOCKET' "$header" | cut -d'"' -f2)
grep -qx "ListenSequentialPacket=$sock" "$tmp/hmmud.socket" ||
	{ echo "FAIL: hmmud.socket does not listen (seqpacket) on $sock"; fail=1; }
[[ $(grep -c '^Listen' "$tmp/hmmud.socket") == 1 ]] ||
	{ echo "FAIL: hmmud.socket must pass exactly one socket"; fail=1; }
grep -qx 'Type=notify' "$tmp/hmmud.service" ||
	{ echo "FAIL: hmmud.service is not Type=notify"; fail=1; }

# The socket's permission is the access policy: owner and group only, and
# the group exists once systemd-sysusers has read our file.
grep -qx 'SocketMode=0660' "$tmp/hmmud.socket" ||
	{ echo "FAIL: hmmud.socket is not SocketMode=0660"; fail=1; }
group=$(sed -n 's/^SocketGroup=//p' "$tmp/hmmud.socket")
if [[ -z $group ]]; then
	echo "FAIL: hmmud.socket names no SocketGroup="
	fail=1
elif command -v systemd-sysusers >/dev/null; then
	mkdir -p "$tmp/root/etc"
	cp "$sysusers" "$tmp/hmmu.conf"
	systemd-sysusers --root="$tmp/root" "$tmp/hmmu.conf" >/dev/null 2>&1 || true
	grep -q "^$group:" "$tmp/root/etc/group" 2>/dev/null ||
		{ echo "FAIL: systemd-sysusers $sysusers creates no group $group"; fail=1; }
fi

exit $fail
