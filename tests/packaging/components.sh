#!/bin/bash
# SPDX-License-Identifier: MIT
# Every installed file belongs to exactly one install component, and so to
# one Debian package (cmake/packaging.cmake): installing the components one
# by one gives the whole tree, with each file where its package wants it.
# A file installed without COMPONENT ("Unspecified") would be in no package.
# Then the uninstall script (cmake/uninstall.cmake, the "uninstall" target)
# removes every file of the install, and hmmu's own directories.
#
# usage: components.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

build=$1 src=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/private_install.sh
source "$here/private_install.sh"
tmp=$(mktemp -d /tmp/hmmu-components-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

components=(daemon runtime development)
# Files (relative to the prefix) and the component each must be in.
declare -A want=(
	[sbin/hmmud]=daemon
	[bin/hmmuctl]=daemon
	[bin/hmmu-run]=daemon
	[bin/hmmu-demo]=daemon
	[bin/hmmu-bench]=daemon
	[lib/systemd/system/hmmud.service]=daemon
	[lib/systemd/system/hmmud.socket]=daemon
	[lib/sysusers.d/hmmu.conf]=daemon
	[lib/udev/rules.d/60-hmmu-userfaultfd.rules]=daemon
	[include/hmmu/hmmu.h]=development
	[include/hmmu/driver.h]=development
)
# By pattern, for files under the configured libdir: the component a file
# matching it must be in.
patterns=(
	'/hmmu/libhmmu-dmirror\.so$ daemon'
	'/libhmmu\.so\.[0-9.]+$ runtime'
	'/libhmmu\.so$ development'
	'/pkgconfig/hmmu(-driver)?\.pc$ development'
	'/cmake/hmmu/[^/]+\.cmake$ development'
	'/man/man3/[^/]+$ development'
	'/man/man[178]/[^/]+$ daemon'
)

list_tree() { # the files and links under $1, relative to it
	(cd "$1" && find . -not -type d | sed 's|^\./||' | sort)
}

PRIVATE_INSTALL_MANIFEST=$tmp/all.manifest \
	private_install "$build" "$tmp/all" >"$tmp/install.log"
list_tree "$tmp/all" >"$tmp/all.list"
: >"$tmp/union"
for c in "${components[@]}"; do
	private_install "$build" "$tmp/$c" --component "$c" >>"$tmp/install.log"
	list_tree "$tmp/$c" >"$tmp/$c.list"
	[[ -s $tmp/$c.list ]] || bad "component $c installs nothing"
	sed "s|\$| $c|" "$tmp/$c.list" >>"$tmp/union"
done

# Each file once, in the component it belongs to.
dups=$(cut -d' ' -f1 "$tmp/union" | sort | uniq -d)
[[ -z $dups ]] || bad "in more than one component: $dups"
if ! diff -u --label "the whole install" --label "its components" \
	"$tmp/all.list" <(cut -d' ' -f1 "$tmp/union" | sort -u); then
	bad "the components do not add up to the install (a file without COMPONENT, above with -, is in no package)"
fi
for f in "${!want[@]}"; do
	got=$(awk -v f="$f" '$1 == f { print $2 }' "$tmp/union")
	[[ $got == "${want[$f]}" ]] || bad "$f is in component '${got:-none}', not ${want[$f]}"
done
while read -r f c; do
	for p in "${patterns[@]}"; do
		if [[ $f =~ ${p% *} && $c != "${p##* }" ]]; then
			bad "$f is in component $c, not ${p##* }"
		fi
	done
done <"$tmp/union"
grep -Eq '/libhmmu\.so\.[0-9]+$' "$tmp/runtime.list" ||
	bad "component runtime has no libhmmu.so.N"
echo "$(wc -l <"$tmp/all.list") files in components ${components[*]}:"
for c in "${components[@]}"; do
	echo "  $c: $(tr '\n' ' ' <"$tmp/$c.list")"
done

# Uninstalling the whole install leaves no file, and no directory of hmmu's.
DESTDIR="" cmake -DMANIFEST="$tmp/all.manifest" -P "$src/cmake/uninstall.cmake" \
	>"$tmp/uninstall.log" || { cat "$tmp/uninstall.log"; bad "uninstall failed"; }
left=$(list_tree "$tmp/all")
[[ -z $left ]] || bad "uninstall left: $left"
left=$(cd "$tmp/all" && find . -type d -name hmmu)
[[ -z $left ]] || bad "uninstall left hmmu's directories: $left"
grep -q "Removed $(wc -l <"$tmp/all.list") of the" "$tmp/uninstall.log" ||
	bad "uninstall does not say it removed every file: $(tail -1 "$tmp/uninstall.log")"

exit $fail
