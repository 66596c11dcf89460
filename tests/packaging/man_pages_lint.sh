#!/bin/bash
# SPDX-License-Identifier: MIT
# Every man page under man/ formats without a single groff warning, and is
# laid out the same way: a .TH that names it, a NAME line that whatis can
# parse, plain ASCII, no trailing blanks, no blank line in filled text. A
# page that is only ".so man3/other.3" must point at a page that exists and
# whose NAME lists it, so that "man <name>" lands on the right page.
#
# usage: man_pages_lint.sh MAN_DIR
# Exits 77 (skipped) when groff is not installed (Debian: groff-base or groff).
set -uo pipefail

mandir=$1
cd "$mandir" || exit 1
if ! command -v groff >/dev/null; then
	echo "SKIP: groff not found (apt-get install groff)"
	exit 77
fi
export LC_ALL=C

fail=0
bad() {
	echo "FAIL: $1: $2"
	fail=1
}

# The names a page's NAME section gives: "a, b, c \- what it does".
names_of() {
	awk '/^\.SH NAME/ { getline; sub(/ \\- .*/, ""); gsub(/,/, " "); print; exit }' "$1"
}

pages=(man[1-8]/*.[1-8])
[[ -e ${pages[0]} ]] || { echo "FAIL: no page under $mandir"; exit 1; }
count=0
for page in "${pages[@]}"; do
	count=$((count + 1))
	dir=${page%%/*}
	file=${page#*/}
	name=${file%.*}
	section=${file##*.}
	[[ $dir == "man$section" ]] || bad "$page" "section $section page in $dir/"

	if LC_ALL=C grep -nP '[^\x00-\x7f]' "$page"; then
		bad "$page" "characters outside ASCII (use groff escapes)"
	fi
	if grep -n '[[:space:]]$' "$page"; then
		bad "$page" "trailing blanks"
	fi
	# Fonts a terminal has: groff 1.22 does not warn about the others.
	if grep -n '\\f[^BIRP]' "$page"; then
		bad "$page" "a font escape other than \\fB, \\fI, \\fR, \\fP"
	fi

	# A link page: one .so line, to a page that names this one.
	if [[ $(head -c 4 "$page") == ".so " ]]; then
		target=$(sed -n '1s/^\.so //p' "$page")
		if [[ $(wc -l <"$page") -ne 1 ]]; then
			bad "$page" "a .so page holds the .so line only"
		elif [[ ! -f $target ]]; then
			bad "$page" ".so $target: no such page"
		elif [[ $(head -c 4 "$target") == ".so " ]]; then
			bad "$page" ".so $target: a link to a link"
		elif ! names_of "$target" | tr ' ' '\n' | grep -qx "$name"; then
			bad "$page" "$target's NAME does not list $name"
		fi
		continue
	fi

	# .TH NAME SECTION DATE SOURCE MANUAL, the title the file's name.
	th=$(grep -m1 '^\.TH ' "$page")
	title=$(awk '{ print $2 }' <<<"$th" | sed 's/\\-/-/g')
	if [[ $title != "${name^^}" ]]; then
		bad "$page" ".TH title '$title', want '${name^^}'"
	fi
	if [[ $(awk '{ print $3 }' <<<"$th") != "$section" ]]; then
		bad "$page" ".TH section is not $section"
	fi
	# Overviews (section 7) have no SYNOPSIS.
	for sh in NAME $([[ $section == 7 ]] || echo SYNOPSIS) DESCRIPTION "SEE ALSO"; do
		grep -qx "\.SH $sh" "$page" || bad "$page" "no $sh section"
	done
	if ! grep -A1 '^\.SH NAME$' "$page" | tail -1 | grep -q ' \\- '; then
		bad "$page" "the NAME line is not 'name, ... \\- summary'"
	elif ! names_of "$page" | tr ' ' '\n' | sed 's/\\-/-/g' | grep -qx "$name"; then
		bad "$page" "NAME does not list $name"
	fi
	# Blank lines are only for text set as is (.EX/.EE, .nf/.fi).
	if awk '/^\.(EX|nf)( |$)/ { raw = 1 } /^\.(EE|fi)( |$)/ { raw = 0 }
		/^$/ && !raw { print "FAIL: " FILENAME ":" NR ": blank line in filled text"; found = 1 }
		END { exit !found }' "$page"; then
		fail=1
	fi

	# groff, every warning on; it must say nothing.
	out=$(groff -ww -z -man -Tutf8 "$page" 2>&1)
	status=$?
	if [[ $status -ne 0 || -n $out ]]; then
		printf '%s\n' "$out"
		bad "$page" "groff -ww -z -man: exit $status, warnings above"
	fi
done

if [[ $fail -ne 0 ]]; then
	exit 1
fi
echo "$count pages: clean"
