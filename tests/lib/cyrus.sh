# A private Cyrus IMAP 3 server (Debian's cyrus-common master and tools,
# imapd and pop3d unpacked by install-deps.sh: the cyrus-imapd and
# cyrus-pop3d packages can't be installed beside dovecot-imapd and
# dovecot-pop3d) as a test source. Sourced by test scripts after harness.sh.

CYRUS_MASTER=/usr/lib/cyrus/bin/master
CYRUS_BIN=${CYRUS_BIN:-/var/cache/dovecot-migrate-tests/cyrus/usr/lib/cyrus/bin}
CYRUS_IMAPD=${CYRUS_IMAPD:-$CYRUS_BIN/imapd}
CYRUS_POP3D=${CYRUS_POP3D:-$CYRUS_BIN/pop3d}
CYRUS_TIMSIEVED=/usr/lib/cyrus/bin/timsieved

# cyrus_check [pop3]: FAIL and end the test when Cyrus (with pop3d) is
# missing
cyrus_check() {
	local bins=("$CYRUS_MASTER" "$CYRUS_IMAPD") b
	[ "${1:-}" = pop3 ] && bins+=("$CYRUS_POP3D")
	for b in "${bins[@]}"; do
		if [ ! -x "$b" ] || ! command -v saslpasswd2 >/dev/null; then
			fail "cyrus: Cyrus IMAP is installed" \
				"${bins[*]} or saslpasswd2 is missing (tests/lib/install-deps.sh installs them)"
			harness_done
		fi
	done
}

CY=
CY_PORT=
CY_POP3_PORT=
CY_SIEVE_PORT=
CY_PID=

# cyrus_start classic|alt [--pop3] [--sieve]: a private Cyrus with its own
# config, spool, sasldb (users cyrus = admin, alice) and port on 127.0.0.1;
# master daemonizes and writes its pid. classic: "INBOX." prefix, '.'
# separator; alt: Cyrus 3's default altnamespace (INBOX's children at the
# top level) with '/' as the separator. --pop3: pop3d on CY_POP3_PORT too;
# --sieve: timsieved (Cyrus's ManageSieve, from cyrus-common) on
# CY_SIEVE_PORT.
cyrus_start() {
	local u i alt=no pop3= sieve=
	[ "$1" = alt ] && alt=yes
	CY="$T/cyrus-$1"
	shift
	while [ $# -gt 0 ]; do
		case "$1" in
		--pop3) pop3=1 ;;
		--sieve) sieve=1 ;;
		esac
		shift
	done
	CY_PORT=$(free_port)
	CY_POP3_PORT=
	CY_SIEVE_PORT=
	if [ -n "$pop3" ]; then
		CY_POP3_PORT=$(free_port)
		while [ "$CY_POP3_PORT" = "$CY_PORT" ]; do CY_POP3_PORT=$(free_port); done
	fi
	if [ -n "$sieve" ]; then
		CY_SIEVE_PORT=$(free_port)
		while [ "$CY_SIEVE_PORT" = "$CY_PORT" ] || [ "$CY_SIEVE_PORT" = "$CY_POP3_PORT" ]; do
			CY_SIEVE_PORT=$(free_port)
		done
	fi
	mkdir -p "$CY/conf" "$CY/spool" "$CY/run" "$CY/sieve"
	cat >"$CY/imapd.conf" <<EOF
configdirectory: $CY/conf
partition-default: $CY/spool
admins: cyrus
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $CY/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
altnamespace: $alt
unixhierarchysep: $alt
munge8bit: no
reject8bit: no
idlesocket: $CY/run/idle
lmtpsocket: $CY/run/lmtp
notifysocket: $CY/run/notify
mboxname_lockpath: $CY/run/lock
proc_path: $CY/run/proc
syslog_prefix: dm-test-cyrus
sievedir: $CY/sieve
sieve_allowplaintext: yes
EOF
	{
		cat <<EOF
START {
  recover cmd="ctl_cyrusdb -C $CY/imapd.conf -r"
}
SERVICES {
  imap cmd="$CYRUS_IMAPD -C $CY/imapd.conf" listen="127.0.0.1:$CY_PORT" prefork=0
EOF
		[ -z "$pop3" ] ||
			echo "  pop3 cmd=\"$CYRUS_POP3D -C $CY/imapd.conf\" listen=\"127.0.0.1:$CY_POP3_PORT\" prefork=0"
		[ -z "$sieve" ] ||
			echo "  sieve cmd=\"$CYRUS_TIMSIEVED -C $CY/imapd.conf\" listen=\"127.0.0.1:$CY_SIEVE_PORT\" prefork=0"
		cat <<EOF
}
EVENTS {
}
EOF
	} >"$CY/cyrus.conf"
	for u in cyrus alice; do
		printf '%s' "cpw-$u" | saslpasswd2 -f "$CY/sasldb2" -p -c "$u" || return 1
	done
	chown -R cyrus:mail "$CY"
	bounded 30 "$CYRUS_MASTER" -C "$CY/imapd.conf" -M "$CY/cyrus.conf" \
		-p "$CY/run/master.pid" -d </dev/null >"$CY/master.out" 2>&1 ||
		return 1
	for i in $(seq 1 100); do
		[ -s "$CY/run/master.pid" ] && break
		sleep 0.1
	done
	CY_PID=$(cat "$CY/run/master.pid" 2>/dev/null)
	case "$CY_PID" in '' | *[!0-9]*) return 1 ;; esac
	track_pid "$CY_PID"
	wait_port "$CY_PORT" 20 || return 1
	[ -z "$pop3" ] || wait_port "$CY_POP3_PORT" 20 || return 1
	[ -z "$sieve" ] || wait_port "$CY_SIEVE_PORT" 20
}

# TERM lets master stop its children; the harness KILLs it as a last
# resort.
cyrus_stop() {
	[ -n "$CY_PID" ] || return 0
	kill -TERM "$CY_PID" 2>/dev/null
	for _ in $(seq 1 100); do
		kill -0 "$CY_PID" 2>/dev/null || break
		sleep 0.1
	done
	stop_pid "$CY_PID"
	CY_PID=
}
