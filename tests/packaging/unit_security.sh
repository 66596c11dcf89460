#!/bin/bash
# SPDX-License-Identifier: MIT
# systemd-analyze security rates the configured hmmud.service at an overall
# exposure of at most MAX (systemd's 0-10 scale; lower is better). Offline:
# the unit file alone is judged, no manager needed.
#
# usage: unit_security.sh HMMUD_SERVICE_UNIT HMMUD [MAX]
set -euo pipefail

service_unit=$1 hmmud=$2 max=${3:-2.0}

command -v systemd-analyze >/dev/null ||
	{ echo "SKIP: no systemd-analyze"; exit 77; }
# --offline= came with systemd 250.
systemd-analyze --help 2>/dev/null | grep -q -- '--offline' ||
	{ echo "SKIP: this systemd-analyze has no 'security --offline'"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# As units_verify.sh: the built binary, so that the unit loads as installed.
sed "s|^ExecStart=[^ ]*/hmmud |ExecStart=$hmmud |" "$service_unit" >"$tmp/hmmud.service"

if ! systemd-analyze security --offline=yes --no-pager "$tmp/hmmud.service" \
	>"$tmp/out" 2>&1; then
	cat "$tmp/out"
	echo "FAIL: systemd-analyze security failed"
	exit 1
fi
# "→ Overall exposure level for hmmud.service: 1.3 OK 🙂"
score=$(sed -n 's/.*Overall exposure level for hmmud\.service: \([0-9.]*\).*/\1/p' "$tmp/out")
[[ -n $score ]] ||
	{ cat "$tmp/out"; echo "FAIL: no overall exposure level in the output"; exit 1; }

echo "exposure $score (at most $max); what still counts against it:"
grep '✗' "$tmp/out" | sed 's/^/  /' || true
if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then
	echo "FAIL: exposure $score is above $max"
	exit 1
fi
