#!/usr/bin/env bash
# TLS and authentication against a real source Dovecot:
#   - implicit TLS (IMAPS) verified with migrate_source_ssl_ca_file: works;
#     without the CA: exit 78 and an error naming the certificate problem;
#     a host name the certificate doesn't name: exit 78
#   - STARTTLS on the plain port with the CA: works, and the source really
#     saw a TLS session; without the CA: exit 78
#   - master-user login (a master passdb on the source,
#     migrate_source_master_user + the master's password): works; a wrong
#     master password: exit 77, one error line, and the password appears in
#     no output and no log file
#   - OAuth2 (XOAUTH2 and OAUTHBEARER) against Dovecot's oauth2 passdb,
#     whose token introspection is a python http.server on loopback:
#     a good token works (from migrate_source_oauth2_token and from
#     migrate_source_oauth2_token_command), a revoked one gives exit 77
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"

src_start || die "source server did not start"
dst_start || die "destination server did not start"
src_seed alice --seed 5 --limit 25 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"
src_dump alice "$T/src.json" || die "source dump failed"

# migrate USER [doveadm -o options...]
migrate() {
	local user=$1
	shift
	dst_doveadm -o plugin/migrate_automap=no "$@" migrate run -u "$user"
}


# secret_file NAME VALUE: a password file the mail user (vmail) can read
secret_file() {
	printf '%s' "$2" >"$T/$1"
	chown "$MAIL_USER:$MAIL_USER" "$T/$1"
	chmod 600 "$T/$1"
	echo "$T/$1"
}

# src_reconfigure: make the running source re-read $SRC_DIR/dovecot.conf
src_reconfigure() {
	timeout 30 doveconf -c "$SRC_DIR/dovecot.conf" -n >"$T/doveconf-src.out" 2>&1 ||
		{ cat "$T/doveconf-src.out" >&2; return 1; }
	timeout 30 "$DOVEADM" -c "$SRC_DIR/dovecot.conf" reload || return 1
	sleep 1
	wait_port "$SRC_PORT" 20
}

dst_add_user tlsok userdb_migrate_source_user=alice
dst_add_user starttls userdb_migrate_source_user=alice
dst_add_user master userdb_migrate_source_user=alice
dst_add_user badmaster userdb_migrate_source_user=alice
dst_add_user badtls userdb_migrate_source_user=alice

# ------------------------------------------------------------ implicit TLS
assert_exit NAME="IMAPS with the CA, host localhost: exit 0" 0 migrate tlsok \
	-o plugin/migrate_source_host=localhost \
	-o plugin/migrate_source_ssl=imaps -o plugin/migrate_source_port="$SRC_SSL_PORT" \
	-o plugin/migrate_source_ssl_ca_file="$SRC_CA"
dst_equals "IMAPS: destination == source" tlsok "$T/src.json"

assert_exit NAME="IMAPS without the CA: exit 78" 78 migrate badtls \
	-o plugin/migrate_source_host=localhost \
	-o plugin/migrate_source_ssl=imaps -o plugin/migrate_source_port="$SRC_SSL_PORT"
one_error "IMAPS without the CA: one error naming the certificate problem" \
	'[Cc]ertificate|verify|self.signed|issuer'
# a raw TCP relay on 127.0.0.2 to the IMAPS port: a trusted certificate
# that names localhost and 127.0.0.1, reached as 127.0.0.2
RELAY_PORT=$(free_port)
python3 "$HARNESS_LIB/tls-relay.py" "$RELAY_PORT" "$SRC_SSL_PORT" >"$T/relay.out" 2>&1 &
RELAY_PID=$!
track_pid $RELAY_PID
for i in $(seq 1 50); do
	python3 -c 'import socket, sys; socket.create_connection(("127.0.0.2", int(sys.argv[1])), 1).close()' \
		"$RELAY_PORT" 2>/dev/null && break
	sleep 0.1
done
assert_exit NAME="IMAPS with the CA but a name the certificate lacks: exit 78" 78 migrate badtls \
	-o plugin/migrate_source_host=127.0.0.2 \
	-o plugin/migrate_source_ssl=imaps -o plugin/migrate_source_port="$RELAY_PORT" \
	-o plugin/migrate_source_ssl_ca_file="$SRC_CA"
one_error "IMAPS, wrong name: one error naming the host name problem" \
	'127\.0\.0\.2.*([Cc]ertificate|name|match|migrate_source_host)|([Cc]ertificate|hostname).*127\.0\.0\.2'
kill "$RELAY_PID" 2>/dev/null
wait "$RELAY_PID" 2>/dev/null
if [ -z "$(dst_mail_files badtls)" ]; then
	pass "failed TLS runs wrote no mail"
else
	fail "failed TLS runs wrote no mail" "$(dst_mail_files badtls | head -n 3)"
fi

# ------------------------------------------------------------ STARTTLS
# the login line: "Login: user=<...>, ..." on 2.3, "Logged in: user=<...>" on 2.4
LOGIN_RE='Log(in|ged in): user=<alice>'
logins_tls_before=$(grep -Ec "$LOGIN_RE.*TLS" "$SRC_DIR/dovecot.log")
assert_exit NAME="STARTTLS with the CA: exit 0" 0 migrate starttls \
	-o plugin/migrate_source_host=localhost \
	-o plugin/migrate_source_ssl=starttls -o plugin/migrate_source_port="$SRC_PORT" \
	-o plugin/migrate_source_ssl_ca_file="$SRC_CA"
dst_equals "STARTTLS: destination == source" starttls "$T/src.json"
logins_tls_after=$(grep -Ec "$LOGIN_RE.*TLS" "$SRC_DIR/dovecot.log")
if [ "$logins_tls_after" -gt "$logins_tls_before" ]; then
	pass "STARTTLS: the source logged a TLS login on its plain port"
else
	fail "STARTTLS: the source logged a TLS login" \
		"$(grep -E "$LOGIN_RE" "$SRC_DIR/dovecot.log" | tail -n 2)"
fi
assert_exit NAME="STARTTLS without the CA: exit 78" 78 migrate badtls \
	-o plugin/migrate_source_host=localhost \
	-o plugin/migrate_source_ssl=starttls -o plugin/migrate_source_port="$SRC_PORT"
one_error "STARTTLS without the CA: one error naming the certificate problem" \
	'[Cc]ertificate|verify|self.signed|issuer'

# ------------------------------------------------------------ master user
MASTER_PW="Mst-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
WRONG_PW="Wrong-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
printf 'migadmin:{PLAIN}%s::::::\n' "$MASTER_PW" >"$SRC_DIR/master-users"
chmod 644 "$SRC_DIR/master-users"
{
	echo "# added by test-tls-auth.sh: master users may log in as anyone"
	echo "auth_master_user_separator = *"
	conf_passwd_file "$SRC_DIR/master-users" master
} >>"$SRC_DIR/dovecot.conf"
src_reconfigure || die "source did not take the master passdb"
master_pw_file=$(secret_file master.pw "$MASTER_PW")
mkdir -p "$T/rawlog"
chown "$MAIL_USER:$MAIL_USER" "$T/rawlog"
wrong_pw_file=$(secret_file wrong.pw "$WRONG_PW")

assert_exit NAME="master user login: exit 0" 0 migrate master \
	-o plugin/migrate_source_master_user=migadmin \
	-o plugin/migrate_source_password_file="$master_pw_file"
dst_equals "master user login: destination == source" master "$T/src.json"
# the master's password is not alice's: without the master user it fails
assert_exit NAME="the master's password without migrate_source_master_user: exit 77" 77 \
	migrate badmaster -o plugin/migrate_source_password_file="$master_pw_file"

assert_exit NAME="wrong master password: exit 77" 77 migrate badmaster \
	-o plugin/migrate_source_master_user=migadmin \
	-o plugin/migrate_source_password_file="$wrong_pw_file" \
	-o mail_debug=yes -o log_debug=category=migrate \
	-o plugin/migrate_source_rawlog_dir="$T/rawlog"
one_error "wrong master password: one error line naming the login" \
	'rejected the login|migrate_source_(user|password|master_user)'
cp "$LAST_OUT" "$T/badmaster.out"
cp "$LAST_ERR" "$T/badmaster.err"
# where could the password leak: the run's output, every log, the state
leaks=$(grep -rlaF -e "$WRONG_PW" -e "$MASTER_PW" "$T/badmaster.out" "$T/badmaster.err" \
	"$DST_DIR/dovecot.log" "$SRC_DIR/dovecot.log" "$DST_DIR/home" "$T/rawlog" 2>/dev/null |
	tr '\n' ' ')
# base64 of the SASL PLAIN response would be a leak too
b64=$(printf 'alice\0migadmin\0%s' "$WRONG_PW" | base64 -w0)
for f in "$T/badmaster.out" "$T/badmaster.err" "$DST_DIR/dovecot.log" "$SRC_DIR/dovecot.log"; do
	grep -aqF -- "$b64" "$f" && leaks="$leaks $f(base64)"
done
if [ -z "$leaks" ]; then
	pass "wrong master password: no password in any output or log"
else
	fail "wrong master password: no password in any output or log" "found in:$leaks"
fi
if [ -z "$(dst_mail_files badmaster)" ]; then
	pass "wrong master password: no mail written"
else
	fail "wrong master password: no mail written" "$(dst_mail_files badmaster | head -n 3)"
fi

# ------------------------------------------------------------ OAuth2
# Dovecot's oauth2 passdb asks a token introspection endpoint (RFC 7662
# style, POST token=...) served here by python on 127.0.0.1.
OAUTH_TOKEN="tok-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
REVOKED_TOKEN="revoked-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
OAUTH_PORT=$(free_port)
python3 "$HARNESS_LIB/oauth2-introspect.py" "$OAUTH_PORT" "$OAUTH_TOKEN" "$T/introspect.log" \
	>"$T/introspect.out" 2>&1 &
INTROSPECT_PID=$!
track_pid $INTROSPECT_PID
oauth_ok=1
wait_port "$OAUTH_PORT" 10 || { oauth_ok=0; fail "OAuth2 introspection server" "did not start"; }
oauth2_settings="introspection_mode = post
introspection_url = http://127.0.0.1:$OAUTH_PORT/introspect
username_attribute = username
active_attribute = active
active_value = true"
sed -i 's/^auth_mechanisms = .*/auth_mechanisms = plain login xoauth2 oauthbearer/' \
	"$SRC_DIR/dovecot.conf"
if dv24; then
	# 2.4: the XOAUTH2 and OAUTHBEARER mechanisms check tokens without a
	# passdb (only the password grant needs one): they read the global
	# oauth2 { } filter
	cat >>"$SRC_DIR/dovecot.conf" <<EOF
oauth2 {
$(printf '%s\n' "$oauth2_settings" | sed 's/^/  /')
}
EOF
else
	printf '%s\n' "$oauth2_settings" >"$SRC_DIR/oauth2.conf.ext"
	chmod 644 "$SRC_DIR/oauth2.conf.ext"
	cat >>"$SRC_DIR/dovecot.conf" <<EOF
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $SRC_DIR/oauth2.conf.ext
}
EOF
fi
if [ $oauth_ok = 1 ] && ! src_reconfigure; then
	oauth_ok=0
	fail "source takes the oauth2 passdb" "$(tail -n 3 "$T/doveconf-src.out")"
fi
if [ $oauth_ok = 1 ]; then
	for mech in XOAUTH2 OAUTHBEARER; do
		u=oauth-$(echo "$mech" | tr 'A-Z' 'a-z')
		dst_add_user "$u" userdb_migrate_source_user=alice
		assert_exit NAME="$mech with a valid token: exit 0" 0 migrate "$u" \
			-o plugin/migrate_source_sasl_mechanisms="$mech" \
			-o plugin/migrate_source_password_file= \
			-o plugin/migrate_source_oauth2_token="$OAUTH_TOKEN"
		dst_equals "$mech: destination == source" "$u" "$T/src.json"
	done
	grep -q 'active' "$T/introspect.log" 2>/dev/null &&
		pass "OAuth2: the source asked the introspection endpoint" ||
		fail "OAuth2: the source asked the introspection endpoint" "no request logged"

	# a fresh token from a command on every connect
	tokcmd="$T/token-cmd.sh"
	printf '#!/bin/sh\necho %s\n' "$OAUTH_TOKEN" >"$tokcmd"
	chmod 755 "$tokcmd"
	dst_add_user oauth-cmd userdb_migrate_source_user=alice
	assert_exit NAME="XOAUTH2 with migrate_source_oauth2_token_command: exit 0" 0 \
		migrate oauth-cmd -o plugin/migrate_source_sasl_mechanisms=XOAUTH2 \
		-o plugin/migrate_source_password_file= \
		-o plugin/migrate_source_oauth2_token_command="$tokcmd"
	dst_equals "token command: destination == source" oauth-cmd "$T/src.json"

	dst_add_user oauth-bad userdb_migrate_source_user=alice
	for mech in XOAUTH2 OAUTHBEARER; do
		assert_exit NAME="$mech with a revoked token: exit 77" 77 migrate oauth-bad \
			-o plugin/migrate_source_sasl_mechanisms="$mech" \
			-o plugin/migrate_source_password_file= \
			-o plugin/migrate_source_oauth2_token="$REVOKED_TOKEN"
		one_error "$mech with a revoked token: one error line naming the login" \
			'rejected the login|migrate_source_'
		if grep -aqF -- "$REVOKED_TOKEN" "$LAST_ERR" "$LAST_OUT" "$DST_DIR/dovecot.log"; then
			fail "$mech with a revoked token: the token is in no output" "found"
		else
			pass "$mech with a revoked token: the token is in no output"
		fi
	done
fi

kill "$INTROSPECT_PID" 2>/dev/null
wait "$INTROSPECT_PID" 2>/dev/null
harness_done
