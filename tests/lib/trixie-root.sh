#!/usr/bin/env bash
# A Debian 13 (trixie) root for running the build and the tests against
# Dovecot 2.4 on a Debian 12 host.
#
#   tests/lib/trixie-root.sh build
#       debootstrap the root if it isn't complete yet, then install
#       dovecot-dev and the test dependencies inside (tests/lib/install-deps.sh
#       run in the root; no service is started: policy-rc.d exits 101)
#   tests/lib/trixie-root.sh run [--bind HOSTDIR:DIR]... [--env NAME=VALUE]... -- CMD...
#       run CMD (as root, in a clean environment) inside the root with
#       /proc /dev /dev/pts /sys mounted and HOSTDIR bind-mounted at DIR;
#       what this call mounted is unmounted when it returns
#   tests/lib/trixie-root.sh path
#       print the root's directory
#
# The root: $TRIXIE_ROOT (default /var/cache/dovecot-migrate-tests/trixie).
# debootstrap uses the Debian archive apt already uses on this machine (read
# from /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list), never a
# host name written here. Mounts that are already in place (another user of
# the root) are reused and left alone.
set -euo pipefail

ROOT=${TRIXIE_ROOT:-/var/cache/dovecot-migrate-tests/trixie}
SUITE=trixie
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { printf 'trixie-root: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mount)"

# ------------------------------------------------------------ archive URI
# The first non-security Debian archive in apt's sources (deb822 files first,
# then the one-line format).
apt_archive_uri() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		# one stanza per paragraph: its URIs when its Suites are no
		# -security/-updates suite of their own
		uri=$(awk '
			BEGIN { RS = ""; FS = "\n" }
			{
				uris = ""; suites = ""; types = ""
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
					if ($i ~ /^Suites:/) { suites = $i; sub(/^Suites:[ \t]*/, "", suites) }
					if ($i ~ /^Types:/) { types = $i }
				}
				if (types !~ /(^|[ \t])deb([ \t]|$)/) next
				n = split(suites, s, /[ \t]+/)
				for (j = 1; j <= n; j++)
					if (s[j] != "" && s[j] !~ /-(security|updates|backports)$/) {
						split(uris, u, /[ \t]+/); print u[1]; exit
					}
			}' "$f")
		[ -n "$uri" ] && { echo "$uri"; return 0; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		uri=$(awk '$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
				if ($(i + 1) !~ /-(security|updates|backports)$/) { print $i; exit }
			}' "$f")
		[ -n "$uri" ] && { echo "$uri"; return 0; }
	done
	return 1
}

# ------------------------------------------------------------ mounts
# Mounts made by this process, unmounted (in reverse) by root_umount_all.
MOUNTED=()

# mounted DIR: whether DIR is a mount point
mounted() { mountpoint -q "$1" 2>/dev/null; }

# same_dir A B: A and B are the same directory (device and inode)
same_dir() {
	[ -d "$1" ] && [ -d "$2" ] &&
		[ "$(stat -c %d:%i "$1")" = "$(stat -c %d:%i "$2")" ]
}

root_mount() { # root_mount DIR MOUNT-ARGS...
	local dir=$ROOT$1
	shift
	mkdir -p "$dir"
	mounted "$dir" && return 0
	mount "$@" "$dir" || die "mount $* $dir failed"
	MOUNTED+=("$dir")
}

root_mount_system() {
	root_mount /proc -t proc proc
	root_mount /sys -t sysfs sysfs
	root_mount /dev --bind /dev
	root_mount /dev/pts -t devpts -o newinstance,ptmxmode=0666 devpts
	# PostgreSQL's shared memory
	root_mount /dev/shm -t tmpfs -o mode=1777,size=256m tmpfs
}

# root_bind HOSTDIR DIR: HOSTDIR visible at DIR in the root (nothing to do
# when DIR already shows HOSTDIR, e.g. through a bind mount of a parent)
root_bind() {
	local src=$1 dir=$ROOT$2
	[ -d "$src" ] || die "--bind: $src is not a directory"
	mkdir -p "$dir"
	same_dir "$src" "$dir" && return 0
	mount --bind "$src" "$dir" || die "bind mount of $src at $dir failed"
	MOUNTED+=("$dir")
}

root_umount_all() {
	local i dir
	for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
		dir=${MOUNTED[$i]}
		umount -R "$dir" 2>/dev/null || umount -R -l "$dir" 2>/dev/null ||
			say "warning: could not unmount $dir"
	done
	MOUNTED=()
}

# ------------------------------------------------------------ namespace
# "build" and "run" re-execute themselves in a private mount namespace when
# they can (unshare): their mounts are then nobody else's business, vanish
# with the namespace's last process, and the root is made a mount point of
# its own, so the tests inside can make private namespaces of their own
# (tests/lib/own-build.sh). Without unshare the mounts are made in the
# machine's namespace and unmounted on exit.
enter_namespace() {
	[ "${TRIXIE_ROOT_NS:-}" = "$ROOT" ] && return 0
	command -v unshare >/dev/null 2>&1 || return 0
	unshare -m --propagation private true 2>/dev/null || return 0
	exec env TRIXIE_ROOT_NS="$ROOT" unshare -m --propagation private \
		bash "${BASH_SOURCE[0]}" "$@"
}

# in the private namespace: the root on itself (with every mount below it)
root_own_mount_point() {
	[ "${TRIXIE_ROOT_NS:-}" = "$ROOT" ] || return 0
	mounted "$ROOT" && return 0
	mount --rbind "$ROOT" "$ROOT" || die "mount --rbind $ROOT $ROOT failed"
	mount --make-rprivate "$ROOT" 2>/dev/null || true
	MOUNTED+=("$ROOT")
}

# ------------------------------------------------------------ chroot
# in_root CMD...: CMD in the root, clean environment (plus $ROOT_ENV)
ROOT_ENV=()
in_root() {
	chroot "$ROOT" /usr/bin/env -i \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LC_ALL=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
		"${ROOT_ENV[@]}" "$@"
}

# ------------------------------------------------------------ build
# A root is complete when debootstrap finished (it removes its own
# $ROOT/debootstrap work directory at the end) and apt is there.
root_bootstrapped() {
	[ -x "$ROOT/usr/bin/apt-get" ] && [ ! -e "$ROOT/debootstrap" ]
}

root_build() {
	local uri start=$SECONDS
	if ! root_bootstrapped; then
		command -v debootstrap >/dev/null ||
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2 ||
			die "debootstrap is not installed and could not be installed"
		uri=$(apt_archive_uri) || die "no Debian archive found in /etc/apt/sources.list{,.d}"
		if [ -e "$ROOT" ]; then
			# an unfinished root: start over, but never below a mount
			if findmnt -rn -o TARGET | grep -q "^$ROOT/"; then
				die "$ROOT is incomplete and has mounts below it; unmount them first"
			fi
			say "removing the incomplete root $ROOT"
			rm -rf --one-file-system "$ROOT"
		fi
		mkdir -p "$(dirname "$ROOT")"
		say "debootstrap $SUITE from $uri into $ROOT"
		debootstrap --variant=minbase "$SUITE" "$ROOT" "$uri" >&2 ||
			die "debootstrap failed"
	fi
	# the dependencies, installed by the tree's own script inside the root
	local dir=/var/tmp/dm-install-deps.$$
	mkdir -p "$ROOT$dir"
	cp "$HERE/install-deps.sh" "$ROOT$dir/"
	trap 'rm -rf "${ROOT:?}$dir"; root_umount_all' EXIT
	root_own_mount_point
	root_mount_system
	in_root bash "$dir/install-deps.sh" >&2 || die "installing the dependencies in the root failed"
	rm -rf "${ROOT:?}$dir"
	root_umount_all
	trap - EXIT
	say "root ready: $ROOT ($(in_root dovecot --version 2>/dev/null), $((SECONDS - start)) s)"
}

# ------------------------------------------------------------ run
root_run() {
	local binds=() b rc
	while [ $# -gt 0 ]; do
		case "$1" in
		--bind) binds+=("$2"); shift 2 ;;
		--env) ROOT_ENV+=("$2"); shift 2 ;;
		--) shift; break ;;
		*) die "run: unknown option $1 (CMD goes after --)" ;;
		esac
	done
	[ $# -gt 0 ] || die "run: no command"
	root_bootstrapped || die "$ROOT is not a complete root: run '$0 build' first"
	trap root_umount_all EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	root_own_mount_point
	root_mount_system
	for b in "${binds[@]}"; do
		root_bind "${b%%:*}" "${b#*:}"
	done
	set +e
	in_root "$@"
	rc=$?
	set -e
	root_umount_all
	trap - EXIT
	return $rc
}

case "${1:-}" in
build) enter_namespace "$@"; root_build ;;
run) enter_namespace "$@"; shift; root_run "$@" ;;
path) echo "$ROOT" ;;
uri) apt_archive_uri ;;
*)
	echo "usage: $0 build | run [--bind HOSTDIR:DIR]... [--env N=V]... -- CMD... | path | uri" >&2
	exit 2
	;;
esac
