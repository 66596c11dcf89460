# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Sourced by the packaging tests. private_install BUILD PREFIX [ARGS...]:
# "cmake --install BUILD --prefix PREFIX ARGS..." (DESTDIR as in the
# environment), leaving BUILD/install_manifest.txt as it was. That file is
# what "cmake --build BUILD --target uninstall" removes: a test installing
# into a temporary prefix must not make it forget a user's own install.
# Installs from one build directory take turns (ctest -j runs several).
# If PRIVATE_INSTALL_MANIFEST is set, this install's manifest is copied there.
private_install() {
	local build=$1 prefix=$2
	shift 2
	local manifest=$build/install_manifest.txt prev="" arg
	for arg; do # --component C writes install_manifest_C.txt instead
		[[ $prev == --component ]] && manifest=$build/install_manifest_$arg.txt
		prev=$arg
	done
	(
		saved=""
		status=0
		flock 9
		if [[ -e $manifest ]]; then
			saved=$(mktemp "$build/.install_manifest.XXXXXX")
			cp -p "$manifest" "$saved"
		fi
		cmake --install "$build" --prefix "$prefix" "$@" || status=$?
		if [[ -n ${PRIVATE_INSTALL_MANIFEST:-} && -e $manifest ]]; then
			cp "$manifest" "$PRIVATE_INSTALL_MANIFEST"
		fi
		if [[ -n $saved ]]; then
			mv "$saved" "$manifest"
		else
			rm -f "$manifest"
		fi
		exit $status
	) 9>"$build/.install.lock"
}
