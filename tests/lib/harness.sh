# shellcheck shell=bash
# Integration-test harness for dovecot-migrate. Source it from a test script:
#
#   . "$(dirname "$0")/../lib/harness.sh"
#   src_start; dst_start
#   ...assertions...
#   harness_done            # prints the summary, exits 0 iff nothing failed
#
# Every test gets a private temp root $T (removed on exit unless KEEP=1), two
# private Dovecot instances (source and destination) on free 127.0.0.1 ports,
# and a trap that stops every process it started by pid. Nothing here touches
# the system Dovecot (/etc/dovecot, /run/dovecot).
#
# Environment knobs:
#   KEEP=1             keep $T after the test (its path is printed)
#   DOVEADM_TIMEOUT=N  bound for every doveadm call (default 180 s)
#   IMAPTOOL_TIMEOUT=N bound for every imaptool call (default 300 s)
#   HARNESS_REGISTRY=D run-all.sh sets this so it can clean up after a test
#                      that was killed too hard to run its own trap
#   MIGRATE_PLUGIN=installed  use the plugin installed in Dovecot's module
#                      dir (the Debian package) instead of the build tree's

# ---------------------------------------------------------------- basics

HARNESS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HARNESS_LIB/common.sh"
TOP=${TOP:-$(cd "$HARNESS_LIB/../.." && pwd)}
IMAPTOOL="$HARNESS_LIB/imaptool.py"
# CI clones main with shared/ beside it; /work/shared is the same place here.
CORPUS=${CORPUS:-$(git -C "$TOP" rev-parse --show-toplevel 2>/dev/null || echo "$TOP")/../shared/corpus}
# a clone elsewhere (e.g. /tmp/ci-check) still finds the machine's corpus
[ -d "$CORPUS" ] || [ ! -d /work/shared/corpus ] || CORPUS=/work/shared/corpus
PLUGIN_DIR="$TOP/doveadm-cmd/.libs"
PLUGIN_NAME=doveadm_migrate
DOVEADM_TIMEOUT=${DOVEADM_TIMEOUT:-180}
IMAPTOOL_TIMEOUT=${IMAPTOOL_TIMEOUT:-300}
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
MAIL_USER=vmail

HARNESS_PASSED=0
HARNESS_FAILED=0
HARNESS_DONE=0
HARNESS_PIDS=()          # background processes started by the test
HARNESS_MOUNTS=()        # file systems the test mounted (under $T)
HARNESS_BASE_DIRS=()     # base_dirs of the Dovecot instances we started

export LC_ALL=C TZ=UTC

# Results go to the test's original stdout (fd $HARNESS_OUT) even when they
# are printed from inside a redirected command: a signal trap runs with the
# redirections of whatever command it interrupted, and `check x cmd >file`
# must not swallow the PASS line.
exec {HARNESS_OUT}>&1
out() { printf '%s\n' "$*" >&"$HARNESS_OUT"; }
info() { out "# $*"; }
die() {
	fail "$TEST_NAME" "$*"
	harness_done
}

if [ "$(id -u)" != 0 ]; then
	echo "FAIL: $TEST_NAME: the integration harness must run as root (it starts private Dovecot instances)"
	exit 1
fi
for bin in dovecot doveadm openssl python3 timeout; do
	command -v "$bin" >/dev/null 2>&1 || {
		echo "FAIL: $TEST_NAME: $bin is not installed"
		exit 1
	}
done

# The Dovecot the tests run against: 2.3 and 2.4 take different
# configurations (2.4 refuses 2.3's syntax), so every config the harness and
# the tests write goes through the conf_* helpers below, which write the
# running version's syntax. HARNESS_DV is 23 or 24.
DOVECOT_VERSION=$(dovecot --version 2>/dev/null) || DOVECOT_VERSION=
DOVECOT_VERSION=${DOVECOT_VERSION%% *}
case "$DOVECOT_VERSION" in
2.[0-3].* | 2.[0-3] | '') HARNESS_DV=23 ;;
*) HARNESS_DV=24 ;;
esac
# dv24: the running Dovecot is 2.4 or later
dv24() { [ "$HARNESS_DV" = 24 ]; }
# The doveadm the tests run (an executable: timeout runs it too). The tests
# write plugin setting overrides the 2.3 way, -o plugin/migrate_x=V; on 2.4
# tests/lib/doveadm-dv.sh passes them as -o migrate_x=V.
DOVEADM=doveadm
dv24 && DOVEADM="$HARNESS_LIB/doveadm-dv.sh"

# Tests run the tree's build, never an installed copy (tests/lib/own-build.sh),
# unless MIGRATE_PLUGIN=installed asks for the installed one
[ "${MIGRATE_PLUGIN:-}" = installed ] && HARNESS_OWN_BUILD=0
. "$HARNESS_LIB/own-build.sh"
own_build_enter "$@"

# On 2.4 the config process (inside dovecot, doveadm and doveconf) knows
# the migrate_* settings only from a settings module in Dovecot's
# compiled-in <moduledir>/settings, where the tests never install anything.
# So on 2.4 a test re-executes itself once in a private mount namespace
# (the one tests/lib/own-build.sh makes, when it made one) and there
# bind-mounts over that directory a copy of it plus the build's
# libmigrate_settings.so (docs/dovecot-24-port.md). Every process the test
# starts sees it; nothing outside does. HARNESS_MIGRATE_SETTINGS=1 when the
# configs may carry migrate_* settings: always on 2.3; on 2.4 when the
# settings module is built and in view.
SETTINGS_MODULE=${SETTINGS_MODULE:-$TOP/plugin/.libs/libmigrate_settings.so}
DOVECOT_SETTINGS_DIR=$(sed -n 's/^dovecot_moduledir=//p' /usr/lib/dovecot/dovecot-config 2>/dev/null)
DOVECOT_SETTINGS_DIR=${DOVECOT_SETTINGS_DIR:-/usr/lib/dovecot/modules}/settings
HARNESS_MIGRATE_SETTINGS=1
# (an installed plugin comes with its installed settings module)
if dv24 && [ "${MIGRATE_PLUGIN:-}" != installed ]; then
	HARNESS_MIGRATE_SETTINGS=0
	if [ -f "$SETTINGS_MODULE" ] && [ "${HARNESS_OWN_BUILD_PID:-}" != "$$" ]; then
		if [ -f "$0" ] && unshare -m --propagation private true 2>/dev/null; then
			exec env HARNESS_OWN_BUILD_PID=$$ unshare -m --propagation private -- bash "$0" "$@"
		fi
		echo "FAIL: $TEST_NAME: Dovecot 2.4 needs the build's settings module in $DOVECOT_SETTINGS_DIR, and no private mount namespace could be made for it (unshare -m --propagation private failed; in a chroot, make its root a mount point)"
		exit 1
	fi
fi

# The mail user: a system account, never uid 0 (doveadm refuses root).
if ! id "$MAIL_USER" >/dev/null 2>&1; then
	useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$MAIL_USER" ||
		{ echo "FAIL: $TEST_NAME: cannot create user $MAIL_USER"; exit 1; }
fi

# /tmp is world-traversable; $T must be too, because Dovecot's mail
# processes (and the plugin inside doveadm) run as vmail.
T=$(mktemp -d /tmp/dm-test.XXXXXX) || exit 1
chmod 755 "$T"
if [ -n "${HARNESS_REGISTRY:-}" ] && [ -d "$HARNESS_REGISTRY" ]; then
	echo "$T" >>"$HARNESS_REGISTRY/roots"
fi

# settings_view: on 2.4, in the private namespace, the build's settings
# module beside Dovecot's own (see HARNESS_MIGRATE_SETTINGS above)
settings_view() {
	local d="$T/settings-modules"
	dv24 && [ "${MIGRATE_PLUGIN:-}" != installed ] && [ -f "$SETTINGS_MODULE" ] &&
		[ "${HARNESS_OWN_BUILD_PID:-}" = "$$" ] || return 0
	mkdir -p "$d"
	cp -a "$DOVECOT_SETTINGS_DIR"/. "$d"/ 2>/dev/null
	cp "$SETTINGS_MODULE" "$d"/ &&
		mount --bind "$d" "$DOVECOT_SETTINGS_DIR" 2>"$T/settings-mount.err" || {
		echo "FAIL: $TEST_NAME: bind-mounting the settings module view on $DOVECOT_SETTINGS_DIR failed: $(cat "$T/settings-mount.err")"
		rm -rf "$T"
		exit 1
	}
	# the namespace is private: the view must not reach the system
	if awk -v d="$DOVECOT_SETTINGS_DIR" '$5 == d && / shared:/ { bad = 1 } END { exit !bad }' \
		/proc/self/mountinfo 2>/dev/null; then
		umount "$DOVECOT_SETTINGS_DIR"
		echo "FAIL: $TEST_NAME: the settings module view on $DOVECOT_SETTINGS_DIR was a shared mount; unmounted it"
		rm -rf "$T"
		exit 1
	fi
	HARNESS_MIGRATE_SETTINGS=1
}
settings_view

# ---------------------------------------------------------------- cleanup

harness_cleanup() {
	local pid mnt
	trap - EXIT INT TERM HUP PIPE
	for pid in "${HARNESS_PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null
	done
	stop_dovecot_base_dirs "${HARNESS_BASE_DIRS[@]}"
	for mnt in "${HARNESS_MOUNTS[@]}"; do
		umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
	done
	if [ "${KEEP:-0}" = 1 ]; then
		info "KEEP=1: test files left in $T"
	else
		rm -rf "$T"
	fi
}

harness_on_signal() {
	fail "$TEST_NAME" "interrupted by signal $1"
	harness_done
}

harness_on_exit() {
	local rc=$?
	if [ "$HARNESS_DONE" = 0 ]; then
		# the script ended without harness_done: never report success then
		[ "$rc" = 0 ] && rc=1
		out "FAIL: $TEST_NAME: script ended early (exit $rc)"
	fi
	harness_cleanup
	exit "$rc"
}
trap harness_on_exit EXIT
trap 'harness_on_signal TERM' TERM
trap 'harness_on_signal INT' INT
trap 'harness_on_signal HUP' HUP
# a reader that went away (… | head) must not skip the cleanup
trap 'harness_on_signal PIPE' PIPE

# Remember a background pid so cleanup kills it.
track_pid() { HARNESS_PIDS+=("$1"); }

# mount_tmpfs DIR SIZE: a tmpfs of SIZE (e.g. 2m) on DIR, writable by the
# mail user; unmounted by the cleanup, whatever way the script ends
mount_tmpfs() {
	mkdir -p "$1" &&
		mount -t tmpfs -o "size=$2,mode=1777" dm-test-tmpfs "$1" || return 1
	HARNESS_MOUNTS+=("$1")
}

# stop_pid PID [SIGNAL]: SIGNAL (TERM) and up to 5 s to exit, then SIGKILL
stop_pid() {
	local pid=$1
	kill -"${2:-TERM}" "$pid" 2>/dev/null
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# ---------------------------------------------------------------- results

pass() {
	HARNESS_PASSED=$((HARNESS_PASSED + 1))
	out "PASS: $1"
}

# fail NAME WHY...
fail() {
	local name=$1
	shift
	HARNESS_FAILED=$((HARNESS_FAILED + 1))
	out "FAIL: $name: $*"
}

# check NAME cmd...: PASS if the command exits 0, FAIL otherwise.
check() {
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name" "command failed: $*"; fi
}

# assert_eq NAME EXPECTED ACTUAL
assert_eq() {
	if [ "$2" == "$3" ]; then
		pass "$1"
	else
		fail "$1" "expected '$2', got '$3'"
	fi
}

# assert_match NAME REGEX STRING
assert_match() {
	if printf '%s' "$3" | grep -Eq -- "$2"; then
		pass "$1"
	else
		fail "$1" "'$(printf '%s' "$3" | head -c 300)' does not match /$2/"
	fi
}

# assert_exit [NAME=] CODE cmd...: run cmd, PASS if it exits with CODE.
# Its stdout/stderr stay in $LAST_OUT/$LAST_ERR and the code in $LAST_RC.
# Without an explicit name the command line is the name.
LAST_OUT="$T/last.out"
LAST_ERR="$T/last.err"
LAST_RC=0
assert_exit() {
	local name=""
	case "$1" in NAME=*) name=${1#NAME=}; shift ;; esac
	local want=$1
	shift
	[ -n "$name" ] || name="exit $want: $*"
	run_capture "$@"
	if [ "$LAST_RC" = "$want" ]; then
		pass "$name"
	else
		fail "$name" "exit $LAST_RC, expected $want; stderr: $(tail -n 3 "$LAST_ERR" | tr '\n' ' ' | head -c 400)"
	fi
}

# run_capture cmd...: run, keep output in $LAST_OUT/$LAST_ERR, code in $LAST_RC.
run_capture() {
	"$@" >"$LAST_OUT" 2>"$LAST_ERR"
	LAST_RC=$?
	return 0
}

# Print the summary and exit: 0 iff no assertion failed and at least one ran.
harness_done() {
	HARNESS_DONE=1
	info "$TEST_NAME: $HARNESS_PASSED passed, $HARNESS_FAILED failed"
	if [ "$HARNESS_FAILED" -gt 0 ] || [ "$HARNESS_PASSED" -eq 0 ]; then
		[ "$HARNESS_PASSED" -eq 0 ] && [ "$HARNESS_FAILED" -eq 0 ] &&
			out "FAIL: $TEST_NAME: no assertions ran"
		exit 1
	fi
	exit 0
}

# ---------------------------------------------------------------- helpers

# bounded SECS cmd...: run cmd, TERM after SECS (KILL 5 s later).
# --foreground keeps cmd in our process group: when run-all.sh's timeout
# (or ^C) signals the group, cmd dies at once and our trap runs; a plain
# nested timeout would shield cmd and bash would defer the trap until cmd
# finished on its own.
bounded() {
	local secs=$1
	shift
	timeout --foreground -k 5 "$secs" "$@"
}

# A free TCP port on 127.0.0.1 (the kernel picks it; small race accepted).
free_port() {
	python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT.
wait_port() {
	python3 - "$1" "${2:-20}" <<'EOF'
import socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + limit
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
}

# Start a Dovecot instance from CONF whose base_dir is BASE_DIR.
start_dovecot() {
	local conf=$1 base_dir=$2 log=$3 port=$4 i
	mkdir -p "$base_dir"
	if ! bounded 30 doveconf -c "$conf" -n >"$base_dir/../doveconf.out" 2>&1; then
		cat "$base_dir/../doveconf.out" >&2
		return 1
	fi
	HARNESS_BASE_DIRS+=("$base_dir")
	# The daemon must not inherit our stdout/stderr (nor $HARNESS_OUT): a
	# pipe it holds open would keep the reader (run-all.sh's tee) waiting.
	if ! bounded 30 dovecot -c "$conf" </dev/null >>"$log" 2>&1 {HARNESS_OUT}>&-; then
		[ -f "$log" ] && tail -n 20 "$log" >&2
		return 1
	fi
	for _ in $(seq 1 100); do
		[ -s "$base_dir/master.pid" ] && break
		sleep 0.1
	done
	if ! wait_port "$port" 20; then
		echo "dovecot ($conf) did not start listening on $port" >&2
		[ -f "$log" ] && tail -n 20 "$log" >&2
		return 1
	fi
}

# Self-signed certificate for CN=localhost, SAN localhost + 127.0.0.1.
make_cert() {
	local dir=$1
	mkdir -p "$dir"
	bounded 60 openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
		-subj "/CN=localhost" \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1 ||
		return 1
	chmod 600 "$dir/key.pem"
}

# ---------------------------------------------------------------- config syntax
# Every Dovecot config the tests write is built from these helpers, each of
# which prints a fragment in the running Dovecot's syntax (2.3 or 2.4).

# conf_var NAME: a variable in a setting's value: %{NAME} on 2.4; on 2.3
# the one-letter form (user -> %u, home -> %h)
conf_var() {
	if dv24; then
		printf '%%{%s}' "$1"
	else
		case "$1" in
		user) printf '%%u' ;;
		home) printf '%%h' ;;
		*) printf '%%{%s}' "$1" ;;
		esac
	fi
}

# conf_header: what a 2.4 config must begin with (nothing on 2.3)
conf_header() {
	dv24 || return 0
	local v=${DOVECOT_VERSION%%-*}
	printf 'dovecot_config_version = %s\ndovecot_storage_version = %s\n' "$v" "$v"
}

# conf_mail_location DRIVER PATH [LAYOUT]
conf_mail_location() {
	if dv24; then
		printf 'mail_driver = %s\nmail_path = %s\n' "$1" "$2"
		[ -z "${3:-}" ] || printf 'mailbox_list_layout = %s\n' "$3"
	else
		printf 'mail_location = %s:%s%s\n' "$1" "$2" "${3:+:LAYOUT=$3}"
	fi
}

# conf_settings NAME=VALUE...: plugin settings (migrate_*, ...): a plugin { }
# block on 2.3, top-level settings on 2.4
conf_settings() {
	local kv ind=
	dv24 || { echo "plugin {"; ind="  "; }
	for kv in "$@"; do
		printf '%s%s = %s\n' "$ind" "${kv%%=*}" "${kv#*=}"
	done
	dv24 || echo "}"
}

# conf_mail_plugins [--protocol PROTO] PLUGIN...: load mail plugins (for all
# processes, or inside protocol PROTO { })
conf_mail_plugins() {
	local proto= p
	if [ "$1" = --protocol ]; then proto=$2; shift 2; fi
	[ -z "$proto" ] || echo "protocol $proto {"
	if dv24; then
		echo "mail_plugins {"
		for p in "$@"; do echo "  $p = yes"; done
		echo "}"
	else
		echo "mail_plugins = \$mail_plugins $*"
	fi
	[ -z "$proto" ] || echo "}"
}

# conf_mail_plugin_dir DIR [--protocol PROTO]
conf_mail_plugin_dir() {
	if [ "${2:-}" = --protocol ]; then
		printf 'protocol %s {\n  mail_plugin_dir = %s\n}\n' "$3" "$1"
	else
		printf 'mail_plugin_dir = %s\n' "$1"
	fi
}

# conf_listener NAME PORT [ssl|plain]: an inet_listener (inside a service
# { }) on 127.0.0.1 (2.4 listens on the global "listen", set by common_conf),
# with ssl = yes or ssl = no
conf_listener() {
	echo "  inet_listener $1 {"
	dv24 || echo "    address = 127.0.0.1"
	echo "    port = $2"
	case "${3:-}" in
	ssl) echo "    ssl = yes" ;;
	plain) echo "    ssl = no" ;;
	esac
	echo "  }"
}

# conf_pop3 PORT SSLPORT [UIDL_FORMAT]: the POP3 service (pop3 listeners on
# PORT, and on SSLPORT with ssl; 0 = none) and, given, a pop3_uidl_format in
# 2.3's %-letter syntax (u=uid v=uidvalidity g=guid m=md5; 2.4 gets the same
# in its %{name} syntax). Goes after common_conf (protocols repeats imap).
conf_pop3() {
	local fmt=${3:-}
	echo "protocols = imap pop3"
	echo "service pop3-login {"
	conf_listener pop3 "$1"
	conf_listener pop3s "$2" ssl
	echo "}"
	if [ -n "$fmt" ]; then
		if dv24; then
			fmt=$(printf '%s' "$fmt" | sed -e 's/%08Xu/%{uid | hex(8)}/g' \
				-e 's/%08Xv/%{uidvalidity | hex(8)}/g' -e 's/%u/%{uid}/g' \
				-e 's/%v/%{uidvalidity}/g' -e 's/%g/%{guid}/g' -e 's/%m/%{md5}/g')
		fi
		echo "pop3_uidl_format = $fmt"
	fi
}

# conf_passwd_file FILE [master]: a passdb (of master users with "master")
# reading passwd-file FILE, whose passwords carry their {SCHEME}
conf_passwd_file() {
	local name=${2:-users}
	if dv24; then
		printf 'passdb %s {\n  driver = passwd-file\n  passwd_file_path = %s\n' "$name" "$1"
	else
		printf 'passdb {\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%%u %s\n' "$1"
	fi
	[ "${2:-}" != master ] || echo "  master = yes"
	echo "}"
}

# conf_ssl_server CERT KEY: the server certificate (files)
conf_ssl_server() {
	if dv24; then
		printf 'ssl_server_cert_file = %s\nssl_server_key_file = %s\n' "$1" "$2"
	else
		printf 'ssl_cert = <%s\nssl_key = <%s\n' "$1" "$2"
		[ ! -f /usr/share/dovecot/dh.pem ] || echo "ssl_dh = </usr/share/dovecot/dh.pem"
	fi
}

# conf_sieve_storage [EXTENSIONS]: Pigeonhole's personal script storage of
# every user: ~/sieve/<name>.sieve, the active one linked from
# ~/.dovecot.sieve. EXTENSIONS (e.g. "+editheader") are enabled too.
conf_sieve_storage() {
	local ext
	if dv24; then
		cat <<'EOF'
sieve_script personal {
  driver = file
  path = ~/sieve
  active_path = ~/.dovecot.sieve
}
EOF
		if [ -n "${1:-}" ]; then
			echo "sieve_extensions {"
			for ext in $1; do echo "  ${ext#+} = yes"; done
			echo "}"
		fi
	else
		conf_settings "sieve=file:~/sieve;active=~/.dovecot.sieve" \
			${1:+"sieve_extensions=$1"}
	fi
}

# conf_managesieve PORT: Pigeonhole's ManageSieve service (RFC 5804) on
# 127.0.0.1:PORT beside IMAP, STARTTLS when the instance has ssl = yes
conf_managesieve() {
	echo "protocols = imap sieve"
	echo "service managesieve-login {"
	conf_listener sieve "$1"
	echo "}"
}

# Settings shared by both instances. $1 = instance dir.
common_conf() {
	local dir=$1
	conf_header
	cat <<EOF
# Generated by tests/lib/harness.sh: a private instance, not the system one.
base_dir = $dir/run
state_dir = $dir/state
instance_name = dm-test-$(basename "$T")-$(basename "$dir")
protocols = imap
listen = 127.0.0.1
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
debug_log_path = $dir/dovecot.log
mail_uid = $MAIL_USER
mail_gid = $MAIL_USER
first_valid_uid = 1
first_valid_gid = 1
auth_mechanisms = plain login
EOF
	conf_passwd_file "$dir/passwd"
	if dv24; then
		cat <<EOF
auth_allow_cleartext = yes
userdb users {
  driver = passwd-file
  passwd_file_path = $dir/passwd
  fields {
    uid:default = $MAIL_USER
    gid:default = $MAIL_USER
  }
}
EOF
	else
		cat <<EOF
disable_plaintext_auth = no
userdb {
  driver = passwd-file
  args = username_format=%u $dir/passwd
  default_fields = uid=$MAIL_USER gid=$MAIL_USER
}
EOF
	fi
}

# Add or replace "NAME:{PLAIN}PASS::::HOME::EXTRA" in a passwd-file.
# Dovecot's auth process re-stat()s a passwd-file at most once per second
# and reloads it when mtime or size changed. So the file is replaced
# atomically, and when a running instance reads it we wait for the next
# second: a lookup right after this returns sees the change.
passwd_add() {
	local file=$1 name=$2 pass=$3 home=$4
	shift 4
	case "$name$pass" in *:* | *' '*)
		echo "passwd_add: ':' and ' ' are not allowed in $name/$pass" >&2
		return 1
		;;
	esac
	{
		[ -f "$file" ] && grep -v "^$name:" "$file"
		printf '%s:{PLAIN}%s::::%s::%s\n' "$name" "$pass" "$home" "$*"
	} >"$file.new"
	chmod 644 "$file.new"
	mv -f "$file.new" "$file"
	if [ -s "$(dirname "$file")/run/master.pid" ]; then
		python3 -c 'import time; time.sleep(1.05 - time.time() % 1)'
	fi
}

# ---------------------------------------------------------------- source

SRC_DIR="$T/src"
SRC_LAYOUT=default
SRC_PORT=
SRC_SSL_PORT=
SRC_CA=

# src_start [--courier] [--gmail-like] [--compress] [--name NAME] [--conf-extra FILE]
#           [--pop3 UIDL_FORMAT]
# --pop3: also POP3 on SRC_POP3_PORT (and POP3S on SRC_POP3S_PORT), with
# that pop3_uidl_format (conf_pop3 says the syntax).
# --name starts an additional source in $T/src-NAME (the default one is
# $T/src); it becomes the current source. src_use switches between them.
# --compress: offer COMPRESS=DEFLATE (a 2.4 source always offers it).
src_start() {
	local courier=0 gmail=0 compress=0 sep=/ prefix="" extra="" pop3=""
	SRC_DIR="$T/src"
	SRC_POP3_PORT= SRC_POP3S_PORT=
	while [ $# -gt 0 ]; do
		case "$1" in
		--conf-extra) extra=$2; shift ;;
		--pop3) pop3=$2; shift ;;
		--courier) courier=1 ;;
		--compress) compress=1 ;;
		--gmail-like) gmail=1 ;;
		--name) SRC_DIR="$T/src-$2"; shift ;;
		*) echo "src_start: unknown option $1" >&2; return 1 ;;
		esac
		shift
	done
	SRC_LAYOUT=default
	if [ $courier = 1 ]; then
		SRC_LAYOUT=courier sep=. prefix=INBOX.
	fi
	[ $gmail = 1 ] && SRC_LAYOUT=gmail
	if [ $courier = 1 ] && [ $gmail = 1 ]; then
		echo "src_start: --courier and --gmail-like don't combine" >&2
		return 1
	fi
	mkdir -p "$SRC_DIR/home" "$SRC_DIR/state"
	chown "$MAIL_USER:$MAIL_USER" "$SRC_DIR/home"
	make_cert "$SRC_DIR/ssl" || { echo "src_start: openssl failed" >&2; return 1; }
	SRC_CA="$SRC_DIR/ssl/cert.pem"
	SRC_PORT=$(free_port)
	SRC_SSL_PORT=$(free_port)
	while [ "$SRC_SSL_PORT" = "$SRC_PORT" ]; do SRC_SSL_PORT=$(free_port); done
	if [ -n "$pop3" ]; then
		SRC_POP3_PORT=$(free_port)
		while [ "$SRC_POP3_PORT" = "$SRC_PORT" ] || [ "$SRC_POP3_PORT" = "$SRC_SSL_PORT" ]; do
			SRC_POP3_PORT=$(free_port)
		done
		SRC_POP3S_PORT=$(free_port)
		while [ "$SRC_POP3S_PORT" = "$SRC_PORT" ] || [ "$SRC_POP3S_PORT" = "$SRC_SSL_PORT" ] ||
			[ "$SRC_POP3S_PORT" = "$SRC_POP3_PORT" ]; do
			SRC_POP3S_PORT=$(free_port)
		done
	fi
	export SRC_PORT SRC_SSL_PORT SRC_CA SRC_LAYOUT SRC_POP3_PORT SRC_POP3S_PORT

	: >"$SRC_DIR/passwd"
	src_add_user alice "spw-alice"
	src_add_user bob "spw-bob"

	{
		common_conf "$SRC_DIR"
		echo "ssl = yes"
		conf_ssl_server "$SRC_DIR/ssl/cert.pem" "$SRC_DIR/ssl/key.pem"
		conf_mail_location maildir "~/Maildir"
		echo "service imap-login {"
		conf_listener imap "$SRC_PORT"
		conf_listener imaps "$SRC_SSL_PORT" ssl
		echo "}"
		[ -z "$pop3" ] || conf_pop3 "$SRC_POP3_PORT" "$SRC_POP3S_PORT" "$pop3"
		cat <<EOF
namespace inbox {
  inbox = yes
  separator = $sep
  prefix = $prefix
EOF
		# Special-use folders exist from the first login (auto = create)
		# but are subscribed only where the seed says so.
		if [ $gmail = 1 ]; then
			cat <<'EOF'
  mailbox "[Gmail]/Sent Mail" {
    special_use = \Sent
    auto = create
  }
  mailbox "[Gmail]/Drafts" {
    special_use = \Drafts
    auto = create
  }
  mailbox "[Gmail]/Trash" {
    special_use = \Trash
    auto = create
  }
  mailbox "[Gmail]/Spam" {
    special_use = \Junk
    auto = create
  }
  mailbox "[Gmail]/All Mail" {
    special_use = \All
    auto = create
  }
EOF
		else
			local box
			for box in Sent Drafts Trash Junk Archive; do
				printf '  mailbox %s {\n    special_use = \\%s\n    auto = create\n  }\n' "$box" "$box"
			done
		fi
		echo "}"
		# COMPRESS=DEFLATE (RFC 4978): a plugin on 2.3; 2.4's imap offers it
		# always (it has no imap_compress plugin)
		if [ $compress = 1 ] && ! dv24; then
			conf_mail_plugins --protocol imap zlib imap_zlib
		fi
		[ -n "$extra" ] && cat "$extra"
	} >"$SRC_DIR/dovecot.conf"

	start_dovecot "$SRC_DIR/dovecot.conf" "$SRC_DIR/run" "$SRC_DIR/dovecot.log" "$SRC_PORT" ||
		{ echo "src_start: dovecot failed to start" >&2; return 1; }
	wait_port "$SRC_SSL_PORT" 10 || return 1
	[ -z "$pop3" ] || wait_port "$SRC_POP3_PORT" 10 || return 1
	local v
	for v in SRC_DIR SRC_PORT SRC_SSL_PORT SRC_CA SRC_LAYOUT SRC_POP3_PORT SRC_POP3S_PORT; do
		printf '%s=%q\n' "$v" "${!v}"
	done >"$SRC_DIR/instance.env"
	info "source: imap 127.0.0.1:$SRC_PORT imaps :$SRC_SSL_PORT layout=$SRC_LAYOUT"
}

# src_use [NAME]: make the source started with --name NAME (no NAME: the
# default one) the current source for the src_* helpers.
src_use() {
	local dir="$T/src${1:+-$1}"
	[ -f "$dir/instance.env" ] || { echo "src_use: no source ${1:-default}" >&2; return 1; }
	. "$dir/instance.env"
	export SRC_PORT SRC_SSL_PORT SRC_CA SRC_LAYOUT SRC_POP3_PORT SRC_POP3S_PORT
}

# src_add_user NAME PASS
src_add_user() {
	passwd_add "$SRC_DIR/passwd" "$1" "$2" "$SRC_DIR/home/$1"
	# destination instances read the source password from this file
	src_password_file_write "$1" "$2"
}

src_password() {
	sed -n "s/^$1:{PLAIN}\([^:]*\):.*/\1/p" "$SRC_DIR/passwd"
}

# src_doveadm ARGS...: doveadm against the source instance (no plugin).
src_doveadm() {
	bounded "$DOVEADM_TIMEOUT" doveadm -c "$SRC_DIR/dovecot.conf" "$@"
}

# src_seed USER [imaptool seed options...]: seeds USER with the corpus.
src_seed() {
	local user=$1
	shift
	imaptool seed --host 127.0.0.1 --port "$SRC_PORT" --user "$user" \
		--password "$(src_password "$user")" --corpus "$CORPUS" \
		--layout "$SRC_LAYOUT" "$@"
}

# src_dump USER OUT.json [--uids]
src_dump() {
	local user=$1 out=$2
	shift 2
	imaptool dump --host 127.0.0.1 --port "$SRC_PORT" --user "$user" \
		--password "$(src_password "$user")" "$@" >"$out"
}

# src_mutate USER [imaptool mutate options...]
src_mutate() {
	local user=$1
	shift
	imaptool mutate --host 127.0.0.1 --port "$SRC_PORT" --user "$user" \
		--password "$(src_password "$user")" "$@"
}

# src_set_uidvalidity USER FOLDER VALUE: a UIDVALIDITY change through
# doveadm (verified on 2.3.19): the UIDs themselves stay as they were.
src_set_uidvalidity() {
	src_doveadm mailbox update -u "$1" --uid-validity "$3" "$2"
}

# src_renumber_uids USER FOLDER: what a server rebuild does: the folder's
# dovecot-uidlist and indexes are deleted, so Dovecot assigns a new
# UIDVALIDITY and renumbers the messages 1..n (gaps left by expunges close,
# so the same UID now names another message). Flags survive (maildir keeps
# them in file names). Call it while no session of USER is active.
src_renumber_uids() {
	local dir
	dir=$(python3 -B -c 'import sys; sys.path.insert(0, sys.argv[1]); import imaptool
f = sys.argv[2]
print("" if f.upper() == "INBOX" else "." + imaptool.mutf7_encode(f.replace("/", ".")))' \
		"$HARNESS_LIB" "$2") || return 1
	dir="$SRC_DIR/home/$1/Maildir/$dir"
	[ -d "$dir/cur" ] || { echo "src_renumber_uids: no maildir $dir" >&2; return 1; }
	rm -f "$dir/dovecot-uidlist" "$dir"/dovecot.index "$dir"/dovecot.index.*
}

# ---------------------------------------------------------------- destination

DST_DIR="$T/dst"
DST_PORT=
DST_FORMAT=sdbox

# dst_start [--format maildir|sdbox|mdbox] [--conf-extra FILE] [--pop3]
# --pop3: POP3 on DST_POP3_PORT too (the default pop3_uidl_format).
# --conf-extra appends FILE's text to the generated dovecot.conf (e.g. a
# dict service or extra plugin settings a test needs).
dst_start() {
	local extra="" pop3=0
	DST_FORMAT=sdbox
	DST_POP3_PORT=
	while [ $# -gt 0 ]; do
		case "$1" in
		--pop3) pop3=1; shift ;;
		--format) DST_FORMAT=$2; shift 2 ;;
		--format=*) DST_FORMAT=${1#--format=}; shift ;;
		--conf-extra) extra=$2; shift 2 ;;
		*) echo "dst_start: unknown option $1" >&2; return 1 ;;
		esac
	done
	local location
	case "$DST_FORMAT" in
	maildir) location=(maildir "~/Maildir" fs) ;;
	sdbox) location=(sdbox "~/mail") ;;
	mdbox) location=(mdbox "~/mdbox") ;;
	*) echo "dst_start: unknown format $DST_FORMAT" >&2; return 1 ;;
	esac
	mkdir -p "$DST_DIR/home" "$DST_DIR/state"
	chown "$MAIL_USER:$MAIL_USER" "$DST_DIR/home"
	mkdir -p "$T/srcpw"
	DST_PORT=$(free_port)
	if [ $pop3 = 1 ]; then
		DST_POP3_PORT=$(free_port)
		while [ "$DST_POP3_PORT" = "$DST_PORT" ]; do DST_POP3_PORT=$(free_port); done
	fi
	export DST_PORT DST_FORMAT DST_POP3_PORT

	: >"$DST_DIR/passwd"
	dst_add_user alice
	dst_add_user bob

	{
		common_conf "$DST_DIR"
		echo "ssl = no"
		conf_mail_location "${location[@]}"
		echo "service imap-login {"
		conf_listener imap "$DST_PORT"
		conf_listener imaps 0
		echo "}"
		[ $pop3 = 0 ] || conf_pop3 "$DST_POP3_PORT" 0
		cat <<EOF
namespace inbox {
  inbox = yes
  separator = /
  prefix =
  mailbox Sent {
    special_use = \\Sent
    auto = no
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = no
  }
  mailbox Trash {
    special_use = \\Trash
    auto = no
  }
  mailbox Junk {
    special_use = \\Junk
    auto = no
  }
  mailbox Archive {
    special_use = \\Archive
    auto = no
  }
}
EOF
		# (2.4 without the settings module: a config without them, the
		# plugin can't run anyway)
		[ "$HARNESS_MIGRATE_SETTINGS" = 0 ] ||
			conf_settings migrate_source_host=127.0.0.1 \
				migrate_source_port="${SRC_PORT:-143}" migrate_source_ssl=no \
				migrate_worker_messages=0 \
				migrate_source_password_file="$T/srcpw/$(conf_var user)"
		[ -n "$extra" ] && cat "$extra"
	} >"$DST_DIR/dovecot.conf"

	start_dovecot "$DST_DIR/dovecot.conf" "$DST_DIR/run" "$DST_DIR/dovecot.log" "$DST_PORT" ||
		{ echo "dst_start: dovecot failed to start" >&2; return 1; }
	[ $pop3 = 0 ] || wait_port "$DST_POP3_PORT" 10 || return 1
	info "destination: imap 127.0.0.1:$DST_PORT format=$DST_FORMAT${DST_POP3_PORT:+ pop3 :$DST_POP3_PORT}"
}

# dst_add_user NAME [userdb extra fields...]: destination password is
# dpw-NAME. Extra fields are passwd-file extra fields, e.g.
#   dst_add_user carol userdb_migrate_source_user=alice
# A source password file for NAME is written when the source knows NAME.
dst_add_user() {
	local name=$1 src_user=$1 f pw
	shift
	for f in "$@"; do
		case "$f" in
		userdb_migrate_source_user=* | userdb_plugin/migrate_source_user=*)
			src_user=${f#*=} ;;
		esac
	done
	passwd_add "$DST_DIR/passwd" "$name" "dpw-$name" "$DST_DIR/home/$name" "$@"
	if [ -f "$SRC_DIR/passwd" ]; then
		pw=$(src_password "$src_user")
		[ -n "$pw" ] && src_password_file_write "$name" "$pw"
	fi
	return 0
}

dst_password() { echo "dpw-$1"; }
dst_home() { echo "$DST_DIR/home/$1"; }

# The file migrate_source_password_file = $T/srcpw/%u points at: readable by
# vmail only (doveadm runs the plugin as the mail user).
src_password_file_write() {
	mkdir -p "$T/srcpw"
	chmod 755 "$T/srcpw"
	printf '%s' "$2" >"$T/srcpw/$1"
	chown "$MAIL_USER:$MAIL_USER" "$T/srcpw/$1"
	chmod 600 "$T/srcpw/$1"
}

# dst_set_source_password USER PASS: the source password the plugin uses
# when migrating destination user USER.
dst_set_source_password() { src_password_file_write "$1" "$2"; }

# The doveadm command line with the plugin loaded from the build tree.
# Without a built plugin doveadm would die on the missing plugin dir; run it
# plain then, so non-migrate commands still work and "migrate" fails as an
# unknown command.
dst_doveadm_argv() {
	DST_DOVEADM=("$DOVEADM" -c "${DST_CONF:-$DST_DIR/dovecot.conf}")
	# an installed plugin is loaded by doveadm from its module dir
	if [ "${MIGRATE_PLUGIN:-}" = installed ]; then
		:
	elif plugin_built; then
		DST_DOVEADM+=(-o "mail_plugin_dir=$PLUGIN_DIR" -o "mail_plugins=$PLUGIN_NAME")
	else
		echo "harness: warning: plugin not built ($PLUGIN_DIR/lib20_doveadm_migrate_plugin.so); doveadm runs without it" >&2
	fi
}

# DST_CONF=FILE: the config dst_doveadm reads instead of the destination's
# dovecot.conf (e.g. a copy with more settings: same instance, same base_dir)
# dst_doveadm ARGS...: doveadm against the destination with the plugin.
dst_doveadm() {
	dst_doveadm_argv
	bounded "$DOVEADM_TIMEOUT" "${DST_DOVEADM[@]}" "$@"
}

# dst_doveadm_killed SECS ARGS...: like dst_doveadm, but SIGKILLed after
# SECS (fractions allowed): simulates a crash at an arbitrary point.
dst_doveadm_killed() {
	local secs=$1
	shift
	dst_doveadm_argv
	timeout --foreground -s KILL "$secs" "${DST_DOVEADM[@]}" "$@"
}

# dst_dump USER OUT.json [--uids]: read the destination back over IMAP.
dst_dump() {
	local user=$1 out=$2
	shift 2
	imaptool dump --host 127.0.0.1 --port "$DST_PORT" --user "$user" \
		--password "$(dst_password "$user")" "$@" >"$out"
}

# dst_mail_files USER: sorted list "sha256 relative-path" of the message
# files under USER's home (index/log files excluded): a cheap fingerprint
# that proves the destination storage wasn't written.
dst_mail_files() {
	local home
	home=$(dst_home "$1")
	[ -d "$home" ] || return 0
	(cd "$home" && find . -type f \( -name 'u.*' -o -name 'm.*' -o -path '*/cur/*' -o -path '*/new/*' \) \
		-print0 | sort -z | xargs -0 -r sha256sum)
}

# dst_mailbox_dirs USER: the mailboxes that exist for USER, one a line (without
# creating anything: reads the storage directory, not the IMAP server).
dst_mailbox_dirs() {
	local home
	home=$(dst_home "$1")
	[ -d "$home" ] || return 0
	case "$DST_FORMAT" in
	sdbox | mdbox) (cd "$home" && find . -type d -name dbox-Mails | sort) ;;
	maildir) (cd "$home" && find . -type d -name cur | sort) ;;
	esac
}

# ---------------------------------------------------------------- imaptool

imaptool() {
	bounded "$IMAPTOOL_TIMEOUT" python3 "$IMAPTOOL" "$@"
}

# one_line NAME FILE LINES-ERE WANT-ERE: exactly one line of FILE matches
# LINES-ERE, and that line matches WANT-ERE (it is logged as info)
one_line() {
	local name=$1 file=$2 lines
	lines=$(grep -E -- "$3" "$file")
	if [ "$(printf '%s\n' "$lines" | grep -c .)" = 1 ] &&
		printf '%s' "$lines" | grep -Eq -- "$4"; then
		pass "$name"
		info "${lines#*: }"
	else
		fail "$name" "stderr: $(head -c 600 "$file" | tr '\n' '|')"
	fi
}

# run_clean NAME PORT USER [run options...]: "migrate run -u USER" against
# the source on PORT passes when it exits 0 with no Error/Panic/Fatal line
# in stderr; output in $T/run.out and $T/run.err
run_clean() {
	local name=$1 port=$2 user=$3 rc
	shift 3
	dst_doveadm -o plugin/migrate_source_port="$port" migrate run -u "$user" "$@" \
		>"$T/run.out" 2>"$T/run.err"
	rc=$?
	if [ $rc = 0 ] && ! grep -Eq 'Error|Panic|Fatal' "$T/run.err"; then
		pass "$name"
	else
		fail "$name" "exit $rc: $(grep -E 'Error|Panic|Fatal' "$T/run.err" | head -n 3 | tr '\n' '|')"
	fi
}

# one_error NAME WANT-ERE [FILE]: exactly one Error/Fatal/Panic line in
# FILE (default $LAST_ERR), and it matches WANT-ERE
one_error() { one_line "$1" "${3:-$LAST_ERR}" 'Error|Fatal|Panic' "$2"; }

# dst_equals NAME USER EXPECTED.json [compare options...]: read USER's
# destination back over IMAP and compare it with EXPECTED.json. The dump
# takes the options in DST_DUMP_OPTS (e.g. --uids).
DST_DUMP_OPTS=()
dst_equals() {
	local name=$1 user=$2 want=$3
	shift 3
	if ! dst_dump "$user" "$T/dst-$user.json" "${DST_DUMP_OPTS[@]}" 2>"$T/dump-$user.err"; then
		fail "$name" "destination dump of $user failed: $(tail -n 1 "$T/dump-$user.err")"
		return 1
	fi
	compare_dumps "$name" "$want" "$T/dst-$user.json" "$@"
}

# compare_dumps NAME A.json B.json [compare options...]: PASS/FAIL with diff.
compare_dumps() {
	local name=$1 a=$2 b=$3 out
	shift 3
	out=$(imaptool compare "$a" "$b" "$@" 2>&1)
	local rc=$?
	if [ $rc = 0 ]; then
		pass "$name"
	else
		fail "$name" "dumps differ (compare exit $rc)"
		printf '%s\n' "$out" | head -n 40 | sed 's/^/#   /' >&"$HARNESS_OUT"
	fi
	return $rc
}

# plugin_built: whether the doveadm plugin exists in the build tree.
plugin_built() { [ -f "$PLUGIN_DIR/lib20_doveadm_migrate_plugin.so" ]; }
