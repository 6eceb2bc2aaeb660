#!/usr/bin/env bash
# dovecot-migrate benchmark: doveadm migrate vs dsync (imapc) vs mbsync.
#
#   bench/run-bench.sh [--quick] [--rtt 0|20|0,20] [--formats maildir,sdbox,mdbox]
#                      [--big] [--wide] [--scaling] [--tools migrate,...,cp,raw-fetch]
#                      [--shapes even,inbox-heavy,gmail]
#                      [--reps N] [--keep] [--no-build] ...
#   bench/run-bench.sh --bulk 200x200,20x5000 [--workers 4] [--rtt 0,20]
#                      [--tools migrate,migrate-1,dsync-pf100,mbsync]
#
# Builds the plugin (unless --no-build), then runs bench/bench.py, which
# does the work; `bench/bench.py --help` lists every option. Must run as
# root: it starts two private Dovecot instances on 127.0.0.1 (never the
# system one) and writes mail as the user vmail. Results:
# bench/results/<date>-rtt<ms>[-quick].md (+ .json with the raw numbers).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
export LC_ALL=C TZ=UTC

if [ "$(id -u)" != 0 ]; then
	echo "run-bench.sh: must run as root (private Dovecot instances, files owned by vmail)" >&2
	exit 1
fi

build=1
args=()
for a in "$@"; do
	case "$a" in
	--no-build) build=0 ;;
	-h | --help) exec python3 "$HERE/bench.py" --help ;;
	*) args+=("$a") ;;
	esac
done

if [ ! -x /usr/bin/time ]; then
	echo "run-bench.sh: installing GNU time (/usr/bin/time)"
	timeout 600 apt-get install -y time >/dev/null || { echo "apt-get install time failed" >&2; exit 1; }
fi
for bin in dovecot doveadm doveconf mbsync python3 timeout du; do
	command -v "$bin" >/dev/null 2>&1 || { echo "run-bench.sh: $bin is not installed" >&2; exit 1; }
done
if ! id vmail >/dev/null 2>&1; then
	useradd -r -M -d /nonexistent -s /usr/sbin/nologin vmail ||
		{ echo "run-bench.sh: cannot create user vmail" >&2; exit 1; }
fi

if [ $build = 1 ]; then
	log=$(mktemp /tmp/dm-bench-build.XXXXXX)
	if ! (cd "$TOP" &&
		(test -f Makefile || (autoreconf -fi && ./configure --with-dovecot=/usr/lib/dovecot)) &&
		timeout 1200 make -j2) >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		echo "run-bench.sh: building the plugin failed (log: $log)" >&2
		exit 1
	fi
	rm -f "$log"
fi

# Dovecot 2.4: its config process only loads settings modules from its
# compiled-in directory, so the build's libmigrate_settings.so is
# bind-mounted there with Dovecot's own, in a private mount namespace
# (the system's directory is not touched)
SETTINGS_DIR=/usr/lib/dovecot/modules/settings
if [ -d "$SETTINGS_DIR" ] && [ -f "$TOP/plugin/.libs/libmigrate_settings.so" ] &&
	[ "${DM_BENCH_NS:-}" != 1 ]; then
	mods=$(mktemp -d /tmp/dm-bench-settings.XXXXXX)
	cp -a "$SETTINGS_DIR/." "$mods/"
	cp "$TOP/plugin/.libs/libmigrate_settings.so" "$mods/"
	chmod 755 "$mods"
	DM_BENCH_NS=1 unshare -m --propagation private sh -c \
		'mount --bind "$1" "$2" && shift 2 && exec python3 "$@"' \
		sh "$mods" "$SETTINGS_DIR" "$HERE/bench.py" "${args[@]}"
	rc=$?
	rm -rf "$mods"
	exit $rc
fi
# --served-config bind-mounts the destination's config at Dovecot's
# default paths and --journaled-fs mounts a file system: in a private
# mount namespace on 2.3 too
case " ${args[*]} " in
*" --served-config "* | *" --journaled-fs "* | *" --journaled-fs="*)
	if [ "${DM_BENCH_NS:-}" != 1 ]; then
		DM_BENCH_NS=1 exec unshare -m --propagation private \
			python3 "$HERE/bench.py" "${args[@]}"
	fi ;;
esac
exec python3 "$HERE/bench.py" "${args[@]}"
