#!/usr/bin/env bash
# The Debian package leg: builds the dovecot-migrate .deb for Debian 12
# (bookworm, Dovecot 2.3) and Debian 13 (trixie, Dovecot 2.4), each in a
# root of its own release against that release's dovecot-dev, runs lintian
# (no errors allowed), then installs each package with apt into a throwaway
# copy of a fresh root of its release and runs the demo (tests/demo.sh)
# against the installed plugin. Also checks that apt refuses the other
# release's package (Dovecot ABI dependency) and that a purge leaves a
# Dovecot that still parses its configuration. Nothing is installed on
# this host. Ends with "N passed, N failed"; exit 0 iff nothing failed.
#
# Roots (kept between runs, made with debootstrap from the Debian archive
# apt already uses on this host):
#   $PKG_ROOTS/pkg-SUITE        minbase + the runtime packages' .debs in
#                               apt's cache (the "fresh" system; never
#                               changed after it is made)
#   $PKG_ROOTS/pkg-SUITE-build  overlay upper dir on it with the build
#                               dependencies and lintian
# Each install test runs in an overlay on pkg-SUITE that is thrown away.
#
# Environment:
#   PKG_ROOTS=DIR     default /var/cache/dovecot-migrate-tests
#   PKG_SUITES="..."  default "bookworm trixie"
#   PKG_OUT=DIR       where the .debs are left (default $PKG_ROOTS/debs/SUITE)
#   PKG_REUSE=1       don't build: install and test the .debs already in
#                     $PKG_OUT/SUITE (e.g. after a change to the tests only)
#   KEEP=1            keep the work dir (logs) in /tmp
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
PKG_ROOTS=${PKG_ROOTS:-/var/cache/dovecot-migrate-tests}
PKG_SUITES=${PKG_SUITES:-bookworm trixie}
PKG_OUT=${PKG_OUT:-$PKG_ROOTS/debs}
CORPUS=${CORPUS:-$TOP/../shared/corpus}
[ -d "$CORPUS" ] || CORPUS=/work/shared/corpus
export LC_ALL=C

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS: $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $1: $2"; }
info() { echo "# $*"; }

if [ "$(id -u)" != 0 ]; then
	echo "FAIL: leg-packages: must run as root (debootstrap, chroot, mount)"
	echo "0 passed, 1 failed"
	exit 1
fi

WORK=$(mktemp -d /tmp/dm-packages.XXXXXX)
MOUNTS=()
cleanup() {
	local i
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null ||
			echo "warning: could not unmount ${MOUNTS[$i]}" >&2
	done
	MOUNTS=()
	if [ "${KEEP:-0}" = 1 ]; then
		info "KEEP=1: logs in $WORK"
	else
		rm -rf --one-file-system "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# show_log FILE: the end of a step's log, after a failure
show_log() { tail -n 25 "$1" | sed 's/^/#   /'; }

# unmount_from N: unmount what was mounted after MOUNTS had N entries
unmount_from() {
	local i
	for ((i = ${#MOUNTS[@]} - 1; i >= $1; i--)); do
		umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null
		unset "MOUNTS[$i]"
	done
	MOUNTS=("${MOUNTS[@]}")
}

# overlay LOWER UPPERDIR MNT: LOWER with changes written to UPPERDIR/upper
overlay() {
	mkdir -p "$2/upper" "$2/work" "$3"
	mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$3" ||
		return 1
	MOUNTS+=("$3")
}

mount_system() {
	local r=$1
	mount -t proc proc "$r/proc" && MOUNTS+=("$r/proc") &&
		mount -t sysfs sysfs "$r/sys" && MOUNTS+=("$r/sys") &&
		mount --bind /dev "$r/dev" && MOUNTS+=("$r/dev") &&
		mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts" && MOUNTS+=("$r/dev/pts")
}

# in_root ROOT CMD...: CMD inside ROOT, clean environment
in_root() {
	local r=$1
	shift
	chroot "$r" /usr/bin/env -i \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LC_ALL=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive "$@"
}

APT_INSTALL=(apt-get install -y -q --no-install-recommends
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# The packages the install test adds beside the .deb (the demo's source
# server and harness); their .debs are cached in the base root.
RUNTIME_PACKAGES=(dovecot-core dovecot-imapd python3 openssl)

# base_root SUITE: the fresh minbase root of SUITE, made once
base_root() {
	local suite=$1 dir=$PKG_ROOTS/pkg-$1 uri log=$WORK/$1-debootstrap.log
	[ -f "$dir/.dm-base-ready" ] && return 0
	if findmnt -rn -o TARGET | grep -q "^$dir\(-build\)\?/"; then
		echo "$dir has mounts below it; unmount them first" >"$log"
		return 1
	fi
	command -v debootstrap >/dev/null ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >"$log" 2>&1 ||
		return 1
	# the archive apt already uses (the trixie root's helper reads it)
	uri=$(bash "$TOP/tests/lib/trixie-root.sh" uri 2>"$log") || {
		echo "no Debian archive found in apt's sources (tests/lib/trixie-root.sh uri)" >>"$log"
		return 1
	}
	rm -rf --one-file-system "$dir" "$dir-build"
	mkdir -p "$PKG_ROOTS"
	info "debootstrap $suite from $uri into $dir"
	debootstrap --variant=minbase "$suite" "$dir" "$uri" >"$log" 2>&1 || return 1
	echo "deb $uri $suite main" >"$dir/etc/apt/sources.list"
	# no service starts inside; no fsync per file (a throwaway system)
	printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
	chmod 755 "$dir/usr/sbin/policy-rc.d"
	echo force-unsafe-io >"$dir/etc/dpkg/dpkg.cfg.d/dovecot-migrate-tests"
	in_root "$dir" apt-get update -q >>"$log" 2>&1 &&
		in_root "$dir" "${APT_INSTALL[@]}" --download-only "${RUNTIME_PACKAGES[@]}" >>"$log" 2>&1 &&
		touch "$dir/.dm-base-ready"
}

# build_deb SUITE: builds the .deb in SUITE's build root, runs lintian,
# leaves the .debs in $PKG_OUT/SUITE
build_deb() {
	local suite=$1 base=$PKG_ROOTS/pkg-$1 layer=$PKG_ROOTS/pkg-$1-build
	local r=$WORK/$1-build n=${#MOUNTS[@]} log=$WORK/$1-build.log rc=0
	local src=/build/dovecot-migrate
	rm -rf "${PKG_OUT:?}/$suite"
	mkdir -p "$PKG_OUT/$suite"
	overlay "$base" "$layer" "$r" && mount_system "$r" || {
		fail "$suite: build root" "mounting the overlay on $base failed"
		unmount_from "$n"
		return 1
	}
	rm -rf "$r/build"
	mkdir -p "$r$src"
	# the working tree as it is (tracked and new files, no build output)
	(cd "$TOP" && git ls-files -z -c -o --exclude-standard |
		tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$r$src"
	if [ ! -f "$layer/.dm-build-ready" ]; then
		in_root "$r" "${APT_INSTALL[@]}" build-essential lintian >"$log" 2>&1 &&
			touch "$layer/.dm-build-ready"
	fi
	info "$suite: building the package ($(in_root "$r" dpkg-query -W -f='dovecot-dev ${Version}' dovecot-dev 2>/dev/null || echo 'dovecot-dev not installed yet'))"
	if in_root "$r" sh -c "cd $src && apt-get build-dep -y -q ./ && DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -b -us -uc -j2" >>"$log" 2>&1; then
		cp "$r"/build/*.deb "$PKG_OUT/$suite/"
		pass "$suite: dpkg-buildpackage ($(cd "$PKG_OUT/$suite" && echo dovecot-migrate_*.deb))"
	else
		fail "$suite: dpkg-buildpackage" "failed, log: $log"
		show_log "$log"
		rc=1
	fi
	if [ "$rc" = 0 ]; then
		if in_root "$r" sh -c 'lintian --fail-on error /build/*.changes' >"$WORK/$suite-lintian.log" 2>&1; then
			pass "$suite: lintian, no errors ($(grep -c '^W:' "$WORK/$suite-lintian.log") warnings)"
		else
			fail "$suite: lintian" "errors:"
			grep -E '^[EW]:' "$WORK/$suite-lintian.log" | sed 's/^/#   /'
			rc=1
		fi
		sed 's/^/# lintian: /' "$WORK/$suite-lintian.log"
	fi
	unmount_from "$n"
	return $rc
}

# other_suite SUITE: one release to cross-check the ABI dependency with
other_suite() {
	local s
	for s in $PKG_SUITES; do
		[ "$s" != "$1" ] && [ -n "$(ls "$PKG_OUT/$s"/dovecot-migrate_*.deb 2>/dev/null)" ] &&
			{ echo "$s"; return 0; }
	done
	return 1
}

# install_test SUITE: apt install of the .deb into a throwaway root of its
# release, the demo against it, a refused mismatched .deb, a purge
install_test() {
	local suite=$1 base=$PKG_ROOTS/pkg-$1 r=$WORK/$1-root n=${#MOUNTS[@]}
	local log=$WORK/$1-install.log deb abi other out
	deb=$(cd "$PKG_OUT/$suite" && ls dovecot-migrate_*.deb 2>/dev/null | head -n 1)
	[ -n "$deb" ] || { fail "$suite: install" "no .deb was built"; return 1; }
	overlay "$base" "$WORK/$suite-layer" "$r" && mount_system "$r" || {
		fail "$suite: install root" "mounting the overlay on $base failed"
		unmount_from "$n"
		return 1
	}
	mkdir -p "$r/tmp/pkg"
	cp "$PKG_OUT/$suite"/*.deb "$r/tmp/pkg/"
	if in_root "$r" "${APT_INSTALL[@]}" "/tmp/pkg/$deb" >"$log" 2>&1; then
		pass "$suite: apt install ./$deb into a fresh $suite (pulls $(in_root "$r" dpkg-query -W -f='dovecot-core ${Version}' dovecot-core))"
	else
		fail "$suite: apt install ./$deb" "failed, log: $log"
		show_log "$log"
		unmount_from "$n"
		return 1
	fi

	abi=$(in_root "$r" dpkg-query -W -f='${Provides}' dovecot-core | grep -o 'dovecot-abi-[^ ,]*')
	if in_root "$r" dpkg-query -W -f='${Depends}' dovecot-migrate | grep -q "$abi"; then
		pass "$suite: the package depends on $abi"
	else
		fail "$suite: ABI dependency" "Depends: $(in_root "$r" dpkg-query -W -f='${Depends}' dovecot-migrate) (dovecot-core provides $abi)"
	fi

	out=$(in_root "$r" doveadm help 2>&1)
	if grep -qE '^ *migrate +.*run' <<<"$out"; then
		pass "$suite: doveadm lists the migrate commands"
	else
		fail "$suite: doveadm help" "no migrate commands: $(echo "$out" | tail -n 3)"
	fi
	if [ -n "$(ls "$r"/usr/lib/dovecot/modules/settings/*migrate* 2>/dev/null)" ]; then
		out=$(in_root "$r" doveconf -d migrate_source_host 2>&1)
		if [ $? = 0 ]; then
			pass "$suite: doveconf knows the migrate settings (settings module installed)"
		else
			fail "$suite: doveconf migrate_source_host" "$out"
		fi
	fi

	# the demo against the installed package
	if in_root "$r" "${APT_INSTALL[@]}" "${RUNTIME_PACKAGES[@]}" >>"$log" 2>&1; then
		mkdir -p "$r/opt/dovecot-migrate" "$r/opt/shared"
		cp -a "$TOP/tests" "$r/opt/dovecot-migrate/"
		cp -a "$CORPUS" "$r/opt/shared/corpus"
		info "$suite: tests/demo.sh with MIGRATE_PLUGIN=installed"
		if in_root "$r" MIGRATE_PLUGIN=installed bash /opt/dovecot-migrate/tests/demo.sh \
			>"$WORK/$suite-demo.log" 2>&1; then
			pass "$suite: demo against the installed package"
		else
			fail "$suite: demo against the installed package" "log: $WORK/$suite-demo.log"
			show_log "$WORK/$suite-demo.log"
		fi
	else
		fail "$suite: installing the demo's packages" "log: $log"
		show_log "$log"
	fi

	# the other release's package must be refused (its Dovecot ABI)
	if other=$(other_suite "$suite"); then
		cp "$PKG_OUT/$other"/dovecot-migrate_*.deb "$r/tmp/pkg/other.deb"
		out=$(in_root "$r" apt-get install -s -q /tmp/pkg/other.deb 2>&1)
		if [ $? != 0 ] && grep -q "dovecot-abi-" <<<"$out"; then
			pass "$suite: apt refuses the $other package ($(grep -o 'dovecot-abi-[^ ,]*' <<<"$out" | head -n 1) is missing)"
		else
			fail "$suite: $other package" "apt did not refuse it: $(echo "$out" | tail -n 3)"
		fi
	fi

	# a purge removes the plugin and leaves a Dovecot that starts
	if in_root "$r" apt-get purge -y -q dovecot-migrate >>"$log" 2>&1 &&
		[ -z "$(find "$r/usr/lib/dovecot/modules" -name '*migrate*')" ] &&
		in_root "$r" doveconf -n >/dev/null 2>>"$log"; then
		pass "$suite: purge removes the plugin, doveconf still parses the configuration"
	else
		fail "$suite: purge" "log: $log"
		show_log "$log"
	fi
	unmount_from "$n"
	rm -rf --one-file-system "$r" "$WORK/$suite-layer"
}

start=$SECONDS
for suite in $PKG_SUITES; do
	if [ "${PKG_REUSE:-0}" = 1 ] && ls "$PKG_OUT/$suite"/dovecot-migrate_*.deb >/dev/null 2>&1; then
		info "$suite: PKG_REUSE=1: testing $(cd "$PKG_OUT/$suite" && echo dovecot-migrate_*.deb), not building"
	elif base_root "$suite"; then
		build_deb "$suite"
	else
		fail "$suite: root" "debootstrap failed, log: $WORK/$suite-debootstrap.log"
		show_log "$WORK/$suite-debootstrap.log"
	fi
done
for suite in $PKG_SUITES; do
	[ -f "$PKG_ROOTS/pkg-$suite/.dm-base-ready" ] && install_test "$suite"
done
info "packages in $PKG_OUT; $((SECONDS - start)) s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
