#!/usr/bin/env bash
# The Debian packages, end to end, on this machine (root, or sudo):
#
#   1. build-deb/: configured for /usr with the tests off, built, and
#      packaged with "cpack -G DEB" (cmake/packaging.cmake);
#   2. checked with dpkg-deb: names, versions, dependencies, maintainer
#      scripts, the symbols file against the packaged library; each file
#      where it belongs, nothing outside /usr, and the three packages
#      together holding exactly what "cmake --install" installs;
#   3. installed with apt-get (after purging hmmu packages an earlier run
#      may have left), which downloads nothing: the packages' dependencies
#      are the build's;
#   4. used from the installed files alone: the demo, hmmuctl and hmmu-run
#      against a private /usr/sbin/hmmud on a private socket (never the
#      system socket; no unit is started), and a client built against
#      libhmmu-dev with pkg-config and with find_package(hmmu);
#   5. purged, whatever happened before: the machine is left as it was
#      (packages, group hmmu, /dev/userfaultfd), which is checked.
#
# Environment: DEB_DIR (default build-deb).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${DEB_DIR:-build-deb}
STARTED=$SECONDS
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
# Waits for another apt-get or dpkg of this machine rather than failing.
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300)
[[ -z $SUDO ]] || APT=("$SUDO" "${APT[@]}")
PACKAGES=(hmmu libhmmu1 libhmmu-dev)

phase() { echo "deb.sh: [$((SECONDS - STARTED)) s] $*"; }
fail() { echo "deb.sh: FAIL: $*" >&2; exit 1; }

installed() { # the packages of this machine, "name version" a line
	dpkg-query -W -f='${db:Status-Status} ${Package} ${Version}\n' |
		awk '$1 == "installed" { print $2, $3 }' | sort
}
ours_installed() { # the hmmu packages installed now
	local p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null |
			grep -qx installed && echo "$p"
	done
	return 0
}

purge_ours() { # apt-get refuses to purge a package it has never heard of
	local list
	list=$(ours_installed)
	[[ -z $list ]] && return 0
	# shellcheck disable=SC2086 # one package a word
	"${APT[@]}" purge $list
}

tmp=$(mktemp -d /tmp/hmmu-deb-XXXXXX)
daemon=""
we_installed=0
group_before=""
dev_before=""
cleanup() {
	local status=$?
	if [[ -n $daemon ]]; then
		kill -TERM "$daemon" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
	if ((we_installed)); then
		phase "purging ${PACKAGES[*]}"
		purge_ours >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; status=1; }
		restore_machine || status=1
	fi
	rm -rf "$tmp"
	if ((status == 0)); then
		phase "done: built, checked, installed, ran and purged; the machine is as before"
	fi
	exit $status
}
trap cleanup EXIT

# ---- 1. build and package ----------------------------------------------------
missing=()
for tool in dpkg-shlibdeps:dpkg-dev dpkg-gensymbols:dpkg-dev file:file; do
	command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
if ((${#missing[@]})); then
	phase "installing ${missing[*]}"
	"${APT[@]}" update -qq
	"${APT[@]}" install -qq "${missing[@]}" >/dev/null
fi
phase "building $DIR for /usr and packaging it"
cmake -S . -B "$DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
	-DHMMU_BUILD_TESTS=OFF >/dev/null
cmake --build "$DIR" -j "$(nproc)" >/dev/null
rm -rf "$DIR/packages"
(cd "$DIR" && cpack -G DEB -B "$PWD/packages" >"$tmp/cpack.log" 2>&1) ||
	{ cat "$tmp/cpack.log"; fail "cpack failed"; }

version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$DIR/CMakeCache.txt")
[[ -n $version ]] || fail "no CMAKE_PROJECT_VERSION in $DIR/CMakeCache.txt"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
declare -A deb
for p in "${PACKAGES[@]}"; do
	f=("$DIR"/packages/"${p}"_*.deb)
	[[ ${#f[@]} == 1 && -f ${f[0]} ]] || fail "cpack made no single ${p}_*.deb: ${f[*]}"
	deb[$p]=${f[0]}
done
for p in "${PACKAGES[@]}"; do echo "  $(stat -c '%s bytes' "${deb[$p]}") ${deb[$p]}"; done

# ---- 2. what is in them ----------------------------------------------------
phase "checking the packages with dpkg-deb"
field() { dpkg-deb -f "${deb[$1]}" "$2"; }
for p in "${PACKAGES[@]}"; do
	[[ $(field "$p" Package) == "$p" ]] || fail "${deb[$p]} is package $(field "$p" Package)"
	[[ $(field "$p" Version) == "$version" ]] || fail "$p has version $(field "$p" Version), not $version"
	[[ -n $(field "$p" Maintainer) && -n $(field "$p" Description) ]] ||
		fail "$p lacks Maintainer: or Description:"
	echo "  $p $version: Depends: $(field "$p" Depends)"
done
# Exact version of the library; the libraries dpkg-shlibdeps found.
depends_on() { # PACKAGE REGEX: one of PACKAGE's dependencies matches REGEX
	field "$1" Depends | tr ',' '\n' | sed 's/^ *//; s/ *$//' | grep -Eqx "$2" ||
		fail "$1 does not depend on $2: $(field "$1" Depends)"
}
depends_on hmmu "libhmmu1 \\(= ${version//./\\.}\\)"
for lib in 'libc6( .*)?' 'liburing[0-9]+( .*)?' 'libsystemd0( .*)?' \
	'libhwloc[0-9]+( .*)?' 'libnuma1( .*)?'; do
	depends_on hmmu "$lib"
done
depends_on libhmmu-dev "libhmmu1 \\(= ${version//./\\.}\\)"
depends_on libhmmu1 'libc6( .*)?'
field libhmmu1 Depends | grep -q hmmu && fail "libhmmu1 depends on a package of hmmu's"

# Maintainer scripts and control files.
for p in "${PACKAGES[@]}"; do
	mkdir -p "$tmp/control/$p"
	dpkg-deb -e "${deb[$p]}" "$tmp/control/$p"
done
for s in postinst prerm postrm; do
	[[ -x $tmp/control/hmmu/$s ]] || fail "hmmu has no executable $s"
done
for f in symbols shlibs; do
	[[ -f $tmp/control/libhmmu1/$f ]] || fail "libhmmu1 has no $f file"
done

# The files, each where its package puts it; none outside /usr.
for p in "${PACKAGES[@]}"; do
	dpkg-deb -c "${deb[$p]}" | awk '$1 !~ /^d/ { sub(/ -> .*/, ""); print $NF }' |
		sed 's|^\./|/|' | sort >"$tmp/$p.files"
	if grep -v '^/usr/' "$tmp/$p.files"; then
		fail "$p installs the files above outside /usr"
	fi
done
expect_files() { # PACKAGE FILE...
	local p=$1 f
	shift
	for f; do
		grep -qxF "$f" "$tmp/$p.files" || fail "$p has no $f"
	done
}
lib=/usr/lib/$multiarch
expect_files hmmu /usr/sbin/hmmud /usr/bin/hmmuctl /usr/bin/hmmu-run \
	/usr/bin/hmmu-demo /usr/bin/hmmu-bench "$lib/hmmu/libhmmu-dmirror.so" \
	/usr/share/man/man8/hmmud.8 /usr/share/man/man7/hmmu.7 \
	/usr/lib/systemd/system/hmmud.service /usr/lib/systemd/system/hmmud.socket \
	/usr/lib/sysusers.d/hmmu.conf /usr/lib/udev/rules.d/60-hmmu-userfaultfd.rules
expect_files libhmmu1 "$lib/libhmmu.so.1"
grep -Eqx "$lib/libhmmu\\.so\\.1\\.[0-9.]+" "$tmp/libhmmu1.files" || fail "libhmmu1 has no $lib/libhmmu.so.1.N"
[[ $(wc -l <"$tmp/libhmmu1.files") == 2 ]] || fail "libhmmu1 holds more than the library: $(cat "$tmp/libhmmu1.files")"
expect_files libhmmu-dev /usr/include/hmmu/hmmu.h /usr/include/hmmu/driver.h \
	"$lib/libhmmu.so" "$lib/pkgconfig/hmmu.pc" "$lib/pkgconfig/hmmu-driver.pc" \
	"$lib/cmake/hmmu/hmmuConfig.cmake" /usr/share/man/man3/hmmu_connect.3

# Together, exactly the install tree: a file without a component is lost.
DESTDIR=$tmp/tree cmake --install "$DIR" --prefix /usr >/dev/null
(cd "$tmp/tree" && find . -not -type d | sed 's|^\.||' | sort) >"$tmp/tree.files"
rm -f "$DIR/install_manifest.txt" # that install is not one to uninstall
cat "$tmp"/{hmmu,libhmmu1,libhmmu-dev}.files | sort >"$tmp/debs.files"
diff -u --label "cmake --install" --label "the three packages" \
	"$tmp/tree.files" "$tmp/debs.files" ||
	fail "the packages do not hold exactly the install tree (diff above)"

# The unit names the packaged hmmud; the symbols file fits the library.
mkdir "$tmp/data"
dpkg-deb -x "${deb[hmmu]}" "$tmp/data"
dpkg-deb -x "${deb[libhmmu1]}" "$tmp/data"
# shellcheck disable=SC2016 # the unit's own $HMMUD_OPTIONS
grep -qx 'ExecStart=/usr/sbin/hmmud --foreground $HMMUD_OPTIONS' \
	"$tmp/data/usr/lib/systemd/system/hmmud.service" ||
	fail "the packaged hmmud.service says $(grep ExecStart= "$tmp/data/usr/lib/systemd/system/hmmud.service")"
bash tests/packaging/debian_symbols.sh "$tmp/data$lib/libhmmu.so.1" \
	"$tmp/control/libhmmu1/symbols" "$tmp/control/libhmmu1/shlibs" | sed 's/^/  /'

# ---- 3. install --------------------------------------------------------------
left=$(ours_installed)
if [[ -n $left ]]; then
	phase "purging $(tr '\n' ' ' <<<"$left")left installed by an earlier run"
	purge_ours >"$tmp/purge.log" 2>&1 ||
		{ cat "$tmp/purge.log"; fail "could not purge what an earlier run left"; }
fi
installed >"$tmp/packages.before"
getent group hmmu >/dev/null && group_before=yes
[[ -e /dev/userfaultfd ]] && dev_before=$(stat -c '%a %u %g' /dev/userfaultfd)

# Undoes what installing did, beyond the packages themselves (cleanup()).
restore_machine() {
	local ok=0 extra
	left=$(ours_installed)
	[[ -z $left ]] || { echo "deb.sh: still installed after the purge: $left" >&2; ok=1; }
	for f in /usr/sbin/hmmud /usr/lib/systemd/system/hmmud.service "$lib/libhmmu.so.1" \
		/usr/include/hmmu /usr/lib/udev/rules.d/60-hmmu-userfaultfd.rules; do
		[[ ! -e $f ]] || { echo "deb.sh: $f is left after the purge" >&2; ok=1; }
	done
	# apt-get installed nothing else, but if it had, it goes too.
	installed >"$tmp/packages.after"
	extra=$(comm -13 "$tmp/packages.before" "$tmp/packages.after" | cut -d' ' -f1)
	if [[ -n $extra ]]; then
		echo "deb.sh: purging what apt-get installed with them: $(tr '\n' ' ' <<<"$extra")"
		# shellcheck disable=SC2086 # one package a word
		"${APT[@]}" purge $extra >/dev/null || ok=1
	fi
	installed >"$tmp/packages.after"
	diff -u --label before --label after "$tmp/packages.before" "$tmp/packages.after" ||
		{ echo "deb.sh: the machine's packages changed (above)" >&2; ok=1; }
	# The postinst made group hmmu, which the purge keeps, as Debian does.
	if [[ -z $group_before ]] && getent group hmmu >/dev/null; then
		$SUDO groupdel hmmu || ok=1
	fi
	if [[ -n $dev_before && $(stat -c '%a %u %g' /dev/userfaultfd) != "$dev_before" ]]; then
		read -r mode uid gid <<<"$dev_before"
		$SUDO chown "$uid:$gid" /dev/userfaultfd && $SUDO chmod "$mode" /dev/userfaultfd || ok=1
	fi
	return $ok
}

phase "installing ${PACKAGES[*]} with apt-get"
we_installed=1
(cd "$DIR/packages" && "${APT[@]}" install --no-install-recommends \
	"./$(basename "${deb[hmmu]}")" "./$(basename "${deb[libhmmu1]}")" \
	"./$(basename "${deb[libhmmu-dev]}")") >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; fail "apt-get install failed"; }
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Version}' "$p" | grep -qx "$version" || fail "$p $version is not installed"
done
getent group hmmu >/dev/null || fail "installing hmmu made no group hmmu"

# ---- 4. use the installed files --------------------------------------------
phase "running the installed demo against a private /usr/sbin/hmmud"
echo "  $(/usr/bin/hmmu-run --version | head -1)"
/usr/sbin/hmmud --check >"$tmp/check" || { cat "$tmp/check"; fail "/usr/sbin/hmmud --check"; }
# (ldd may name it through /lib, the same directory on a merged /usr.)
loaded=$(ldd /usr/bin/hmmu-demo | awk '$1 == "libhmmu.so.1" { print $3 }')
[[ -n $loaded && $(readlink -f "$loaded") == $(readlink -f "$lib/libhmmu.so.1") ]] ||
	fail "the installed hmmu-demo does not load $lib/libhmmu.so.1 but '$loaded'"
sock=$tmp/hmmud.sock
/usr/sbin/hmmud --foreground --socket "$sock" --log-level warning 2>"$tmp/hmmud.log" &
daemon=$!
for _ in $(seq 200); do
	[[ -S $sock ]] && break
	kill -0 "$daemon" 2>/dev/null || break
	sleep 0.05
done
[[ -S $sock ]] || { cat "$tmp/hmmud.log"; fail "/usr/sbin/hmmud did not listen on $sock"; }

/usr/bin/hmmu-demo "$sock" >"$tmp/demo.out" 2>&1 || { cat "$tmp/demo.out"; fail "hmmu-demo failed"; }
echo "  hmmu-demo: $(grep -c '(correct)' "$tmp/demo.out" || true) device reads correct, $(wc -l <"$tmp/demo.out") lines"
/usr/bin/hmmuctl --socket "$sock" devices >"$tmp/devices" || fail "hmmuctl devices failed"
grep -q dmirror0 "$tmp/devices" || fail "hmmuctl devices shows no dmirror0: $(cat "$tmp/devices")"
echo "  hmmuctl devices: $(grep -c . "$tmp/devices") lines"
# hmmu-run finds its shim under /usr/lib/<multiarch>/hmmu by itself.
# shellcheck disable=SC2016 # expanded by that shell
/usr/bin/hmmu-run --socket "$sock" -- sh -c 'echo "$LD_PRELOAD"; exec 3<>/dev/hmm_dmirror0 && echo opened' \
	>"$tmp/run.out" 2>&1 || true
[[ $(sed -n 1p "$tmp/run.out") == "$lib/hmmu/libhmmu-dmirror.so" && $(sed -n 2p "$tmp/run.out") == opened ]] ||
	fail "a shell under the installed hmmu-run: $(cat "$tmp/run.out")"
echo "  hmmu-run: /dev/hmm_dmirror0 opened through $lib/hmmu/libhmmu-dmirror.so"

# libhmmu-dev: the first example, through the system's pkg-config, and a
# find_package(hmmu) client, found where Debian looks.
flags=$(env -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR pkg-config --cflags --libs hmmu)
# shellcheck disable=SC2086 # the flags are words
cc -O2 -Wall -Wextra -Werror -o "$tmp/mirror_read" examples/mirror_read.c $flags
HMMU_SOCKET=$sock "$tmp/mirror_read" | sed 's/^/  mirror_read: /'
if ! { cmake -S tests/packaging/cmake-consumer -B "$tmp/consumer" \
	-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF && cmake --build "$tmp/consumer"; } \
	>"$tmp/consumer.log" 2>&1; then
	cat "$tmp/consumer.log"
	fail "find_package(hmmu) against libhmmu-dev"
fi
found=$(sed -n 's/^hmmu_DIR:PATH=//p' "$tmp/consumer/CMakeCache.txt")
[[ $found == "$lib/cmake/hmmu" ]] || fail "find_package(hmmu) found $found"
"$tmp/consumer/client" "$tmp/no-such-dir/sock" >/dev/null
echo "  find_package(hmmu): $found"

kill -TERM "$daemon"
status=0
wait "$daemon" || status=$?
daemon=""
((status == 0)) || { cat "$tmp/hmmud.log"; fail "/usr/sbin/hmmud did not stop cleanly (status $status)"; }

# ---- 5. purge: cleanup(), on the way out, whatever happened --------------
