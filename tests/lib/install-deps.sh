#!/usr/bin/env bash
# Install what building, the demo and the tests need on Debian 12 (Dovecot
# 2.3) or Debian 13 (Dovecot 2.4; tests/lib/trixie-root.sh runs this inside
# its root), without leaving any system service (Dovecot, Redis, PostgreSQL)
# running: the demo and the tests start private instances on 127.0.0.1.
# The package names are the same on both releases.
set -euo pipefail

SUDO=
[ "$(id -u)" = 0 ] || SUDO="sudo -n"

PACKAGES=(
	build-essential autoconf automake libtool pkg-config
	dovecot-core dovecot-imapd dovecot-pop3d dovecot-dev dovecot-sqlite dovecot-pgsql
	dovecot-sieve dovecot-managesieved
	libpcre2-dev openssl python3 ca-certificates git procps iproute2 curl
	redis-server postgresql sqlite3 isync man-db time strace
	cyrus-common sasl2-bin mailutils-imap4d
	debootstrap
)
# the sanitizer leg's fuzz target: clang with its libFuzzer runtime (Debian
# 12's clang 14; elsewhere the leg's fuzzing step says what is missing)
if grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release; then
	PACKAGES+=(clang libclang-rt-14-dev)
fi

# The Cyrus IMAP server is a test source too (test-cyrus.sh), but Debian's
# cyrus-imapd package conflicts with dovecot-imapd (both provide
# imap-server), and cyrus-pop3d with dovecot-pop3d (pop3-server). The
# binaries that matter, imapd and pop3d, are unpacked here from the .debs
# matching the installed cyrus-common, and run by Cyrus's master.
CYRUS_DIR=/var/cache/dovecot-migrate-tests/cyrus
# unpack_cyrus PACKAGE BINARY
unpack_cyrus() {
	local pkg=$1 bin=$CYRUS_DIR/usr/lib/cyrus/bin/$2 version tmp
	[ -x "$bin" ] && return 0
	version=$(dpkg-query -W -f='${Version}' cyrus-common 2>/dev/null) || return 0
	tmp=$(mktemp -d)
	chmod 755 "$tmp"    # apt downloads as _apt
	if (cd "$tmp" && apt-get download -q "$pkg=$version") &&
		$SUDO mkdir -p "$CYRUS_DIR" &&
		$SUDO dpkg-deb -x "$tmp"/"$pkg"_*.deb "$CYRUS_DIR"; then
		echo "unpacked $pkg $version into $CYRUS_DIR"
	else
		echo "warning: could not unpack $pkg $version (test-cyrus.sh will fail)" >&2
	fi
	rm -rf "$tmp"
}
unpack_cyrus_imapd() {
	unpack_cyrus cyrus-imapd imapd
	unpack_cyrus cyrus-pop3d pop3d
}

# If the system Dovecot or Redis runs anyway (started before us, or a
# policy-rc.d that was ignored), stop it by the pid in its own pid file.
stop_system_service() {
	local pidfile=$1 name=$2 pid
	[ -f "$pidfile" ] || return 0
	pid=$(cat "$pidfile" 2>/dev/null) || return 0
	case "$pid" in '' | *[!0-9]*) return 0 ;; esac
	grep -q "$name" "/proc/$pid/cmdline" 2>/dev/null || return 0
	echo "stopping the system $name (pid $pid)"
	$SUDO kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	$SUDO kill -KILL "$pid" 2>/dev/null || true
}
stop_system_services() {
	stop_system_service /run/dovecot/master.pid dovecot
	stop_system_service /run/redis/redis-server.pid redis
	stop_system_service /run/cyrus-master.pid cyr
}

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	stop_system_services
	unpack_cyrus_imapd
	exit 0
fi

# a policy-rc.d that denies every service start, only during the install
policy=/usr/sbin/policy-rc.d
backup=
if [ -e "$policy" ]; then
	backup=$(mktemp)
	$SUDO cp -p "$policy" "$backup"
fi
restore() {
	if [ -n "$backup" ]; then
		$SUDO cp -p "$backup" "$policy"
		rm -f "$backup"
	else
		$SUDO rm -f "$policy"
	fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
$SUDO chmod 755 "$policy"
# another apt in the same system (a shared CI root) holds the lock a while
lock=(-o DPkg::Lock::Timeout=300)
$SUDO apt-get "${lock[@]}" update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" install -y -q \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	"${missing[@]}"
restore
trap - EXIT
stop_system_services
unpack_cyrus_imapd
