#!/bin/sh
# Device models see hmmu/driver.h (and hmmu/hmmu.h) and nothing else of
# hmmu: the include path gives them only include/, and this fails the build
# on a quoted include, which could reach any file by a relative path.
# Usage: check-model-includes.sh DIR...
status=0
for dir in "$@"; do
	[ -d "$dir" ] || continue
	bad=$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' \
		--include='*.c' --include='*.h' "$dir" | grep -vE '"[^"/]+\.h"')
	if [ -n "$bad" ]; then
		echo "$bad" | sed 's/$/: a device model may include only <hmmu\/driver.h>, <hmmu\/hmmu.h>, system headers and its own headers/' >&2
		status=1
	fi
done
exit $status
