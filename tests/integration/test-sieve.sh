#!/usr/bin/env bash
# Sieve scripts (migrate_sieve = yes, issue #17) against a real source
# Dovecot with Pigeonhole's ManageSieve, Courier-style folders ("INBOX."
# prefix, "." separator), and a destination with Sieve ("/", no prefix):
#   - the scripts arrive with their fileinto/mailboxexists names mapped
#     through the folder map (prefix, separator, modified UTF-7), every
#     other byte (comments, a text: block mentioning a folder) unchanged;
#     a folder migrate_exclude skips is left as it is and reported; the
#     source's active script is active and every script compiles
#     (doveadm sieve at the destination, Pigeonhole's own storage)
#   - plan lists the scripts and the rewrites without writing anything
#   - a re-run changes nothing (files untouched); a script changed at the
#     source is updated; one edited at the destination after the copy is
#     kept until the source's changes; a changed folder map updates it
#   - a script that doesn't compile at the destination is stored anyway,
#     inactive although active at the source, reported with the compiler's
#     error, and the run exits 2
#   - report shows the scripts (sieve-copied, sieve-not-compiling)
#   - a refused ManageSieve login: exit 77, one error naming the
#     settings, the mail imported all the same
#   - a cut ManageSieve connection: reconnects and completes; a connection
#     cut on every try: exit 75 after migrate_reconnect_max
#   - STARTTLS, the certificate verified with the CA
#   - the plugin loads without libdovecot-sieve (dlopen at run time)
#   - per-user userdb fields: migrate_sieve=no, migrate_sieve_port
#   - -A: every user's scripts
#   - a hostile ManageSieve server (huge literal, endless listing, not
#     ManageSieve, no greeting, a NUL byte): clear errors, exit 76/75
. "$(dirname "$0")/../lib/harness.sh"
. "$HARNESS_LIB/faults.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"

SIEVE_PORT=$(free_port)
while [ "$SIEVE_PORT" = "${SRC_PORT:-}" ]; do SIEVE_PORT=$(free_port); done
{
	conf_managesieve "$SIEVE_PORT"
	conf_sieve_storage
} >"$T/src-extra.conf"
src_start --courier --conf-extra "$T/src-extra.conf" || die "source server did not start"
wait_port "$SIEVE_PORT" 10 || die "ManageSieve did not start on $SIEVE_PORT"
{
	conf_sieve_storage
	conf_settings migrate_sieve=yes migrate_sieve_port="$SIEVE_PORT" \
		migrate_reconnect_max=2 migrate_backoff_max=1s
} >"$T/dst-extra.conf"
dst_start --conf-extra "$T/dst-extra.conf" || die "destination server did not start"

src_seed alice --seed 3 --limit 5 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"
src_doveadm mailbox create -u alice INBOX.Lists INBOX.Lists.dovecot \
	INBOX.Archive.2019 "INBOX.Familie & Freunde" INBOX.Private ||
	die "creating the source folders failed"

SRC_HOME="$SRC_DIR/home/alice"
DST_HOME=$(dst_home alice)

# put_script USER NAME [active]: the script from stdin, written into the
# source user's Pigeonhole storage as Pigeonhole keeps it (ManageSieve
# then serves it as it is, compiling or not)
put_script() {
	local home="$SRC_DIR/home/$1"
	mkdir -p "$home/sieve"
	cat >"$home/sieve/$2.sieve"
	if [ "${3:-}" = active ]; then
		ln -sfn "sieve/$2.sieve" "$home/.dovecot.sieve"
	fi
	chown -R "$MAIL_USER:$MAIL_USER" "$home/sieve" "$home"
	[ ! -L "$home/.dovecot.sieve" ] || chown -h "$MAIL_USER:$MAIL_USER" "$home/.dovecot.sieve"
}

put_script alice main active <<'EOF'
require ["fileinto", "mailbox"];
# fileinto "INBOX.Lists" in a comment stays as it is
if header :contains "List-Id" "dovecot" {
  fileinto :create "INBOX.Lists.dovecot";
} elsif header :contains "subject" "2019" {
  fileinto "INBOX.Archive.2019"; /* fileinto "INBOX.X"; */
} elsif mailboxexists "INBOX.Familie & Freunde" {
  fileinto "INBOX.Familie & Freunde";
} elsif header :is "X-Private" "1" {
  fileinto "INBOX.Private";
}
EOF
put_script alice vacation <<'EOF'
require ["vacation", "fileinto"];
vacation :days 7 :subject "Away" text:
I am away. Your mail waits in INBOX.Lists:
fileinto "INBOX.Lists";
.
;
fileinto "INBOX.Lists";
EOF

cat >"$T/main.expected" <<'EOF'
require ["fileinto", "mailbox"];
# fileinto "INBOX.Lists" in a comment stays as it is
if header :contains "List-Id" "dovecot" {
  fileinto :create "Lists/dovecot";
} elsif header :contains "subject" "2019" {
  fileinto "Archive/2019"; /* fileinto "INBOX.X"; */
} elsif mailboxexists "Familie & Freunde" {
  fileinto "Familie & Freunde";
} elsif header :is "X-Private" "1" {
  fileinto "INBOX.Private";
}
EOF
cat >"$T/vacation.expected" <<'EOF'
require ["vacation", "fileinto"];
vacation :days 7 :subject "Away" text:
I am away. Your mail waits in INBOX.Lists:
fileinto "INBOX.Lists";
.
;
fileinto "Lists";
EOF

EXCLUDE=(-o 'plugin/migrate_exclude=^Private$')

# dst_script USER NAME: the script's file in the destination's storage
dst_script() { cat "$(dst_home "$1")/sieve/$2.sieve"; }
# dst_active USER: the destination's active script (doveadm sieve list)
dst_active() { dst_doveadm sieve list -u "$1" | awk '$2 == "ACTIVE" { print $1 }'; }

# ---------------------------------------------------------------- plan

assert_exit NAME="plan: exits 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" migrate plan -u alice
assert_match "plan: lists the active script and its rewrites" \
	'sieve:main	main		*	[0-9]+	copy	active; fileinto "INBOX.Lists.dovecot" -> "Lists/dovecot" \(line 4\)' \
	"$(cat "$LAST_OUT")"
assert_match "plan: says which name it leaves alone" \
	'fileinto "INBOX.Private" left unchanged \(the folder map skips it' "$(cat "$LAST_OUT")"
assert_match "plan: lists the other script" 'sieve:vacation	vacation	.*copy	fileinto "INBOX.Lists" -> "Lists" \(line 7\)' \
	"$(cat "$LAST_OUT")"
check "plan: writes no script" test ! -e "$DST_HOME/sieve/main.sieve"

# ---------------------------------------------------------------- run

assert_exit NAME="run: exits 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" migrate run -u alice
assert_match "run: a row per script" 'sieve:main	main	copied	.*active; fileinto' "$(cat "$LAST_OUT")"
dst_script alice main >"$T/main.got" 2>"$T/get.err"
check "run: main arrives with the names mapped, every other byte kept" cmp "$T/main.expected" "$T/main.got"
dst_script alice vacation >"$T/vacation.got" 2>"$T/get.err"
check "run: vacation arrives, its text: block untouched" cmp "$T/vacation.expected" "$T/vacation.got"
assert_eq "run: the source's active script is active" main "$(dst_active alice)"
# compile each at the destination the way Pigeonhole does
for s in main vacation; do
	check "run: $s compiles at the destination" bounded 60 sievec -c "$DST_DIR/dovecot.conf" \
		"$DST_HOME/sieve/$s.sieve" "$T/$s.svbin"
done
assert_match "run: the mail is there too" 'Lists/dovecot' "$(dst_doveadm mailbox list -u alice)"

# ---------------------------------------------------------------- re-run

stat -c '%Y %i' "$DST_HOME/sieve/main.sieve" "$DST_HOME/sieve/vacation.sieve" >"$T/stat1"
sleep 1.1
assert_exit NAME="re-run: exits 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" migrate run -u alice
assert_match "re-run: both unchanged" 'sieve:main	main	unchanged' "$(cat "$LAST_OUT")"
assert_match "re-run: vacation unchanged" 'sieve:vacation	vacation	unchanged' "$(cat "$LAST_OUT")"
stat -c '%Y %i' "$DST_HOME/sieve/main.sieve" "$DST_HOME/sieve/vacation.sieve" >"$T/stat2"
check "re-run: the script files are untouched" cmp "$T/stat1" "$T/stat2"

# a script changed at the source is updated
sed -i 's/:days 7/:days 3/' "$SRC_HOME/sieve/vacation.sieve"
sed -i 's/:days 7/:days 3/' "$T/vacation.expected"
assert_exit NAME="changed: exits 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" migrate run -u alice
assert_match "changed: vacation updated" 'sieve:vacation	vacation	updated' "$(cat "$LAST_OUT")"
assert_match "changed: main unchanged" 'sieve:main	main	unchanged' "$(cat "$LAST_OUT")"
dst_script alice vacation >"$T/vacation.got" 2>"$T/get.err"
check "changed: the new text arrived" cmp "$T/vacation.expected" "$T/vacation.got"

# edited at the destination after the copy (the user's filter editor):
# the next run leaves it; a change at the source wins again
printf '# edited by the user\n' >>"$DST_HOME/sieve/vacation.sieve"
cp "$DST_HOME/sieve/vacation.sieve" "$T/vacation.edited"
assert_exit NAME="edited at the destination: exits 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" migrate run -u alice
assert_match "edited at the destination: kept" 'sieve:vacation	vacation	kept	.*changed at the destination' \
	"$(cat "$LAST_OUT")"
check "edited at the destination: the user's edit stays" cmp "$T/vacation.edited" "$DST_HOME/sieve/vacation.sieve"
sed -i 's/:days 3/:days 5/' "$SRC_HOME/sieve/vacation.sieve"
sed -i 's/:days 3/:days 5/' "$T/vacation.expected"
assert_exit NAME="changed at the source too: exits 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" migrate run -u alice
assert_match "changed at the source too: updated" 'sieve:vacation	vacation	updated' "$(cat "$LAST_OUT")"
check "changed at the source too: the source's text" cmp "$T/vacation.expected" "$DST_HOME/sieve/vacation.sieve"
# a changed folder map changes the script although neither side edited it
assert_exit NAME="folder map changed: exits 0" 0 dst_doveadm -f tab \
	-o 'plugin/migrate_exclude=^(Private|Lists)$' migrate run -u alice
assert_match "folder map changed: vacation updated" 'sieve:vacation	vacation	updated	.*fileinto "INBOX.Lists" left unchanged' \
	"$(cat "$LAST_OUT")"
assert_exit NAME="folder map back: exits 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" migrate run -u alice
assert_match "folder map back: vacation updated" 'sieve:vacation	vacation	updated' "$(cat "$LAST_OUT")"

# ---------------------------------------------------------------- not compiling

# active at the source, but this Sieve doesn't know the command
put_script alice broken active <<'EOF'
require "fileinto";
frobnicate "INBOX.Lists";
fileinto "INBOX.Lists";
EOF
assert_exit NAME="not compiling: the run exits 2" 2 dst_doveadm -f tab "${EXCLUDE[@]}" migrate run -u alice
assert_match "not compiling: its row gives the compiler's error" \
	'sieve:broken	broken	copied	.*stored inactive, doesn.t compile: .*frobnicate' "$(cat "$LAST_OUT")"
assert_match "not compiling: the error says so" "don't compile at the destination" "$(cat "$LAST_ERR")"
check "not compiling: stored all the same" test -f "$DST_HOME/sieve/broken.sieve"
assert_match "not compiling: stored rewritten" 'fileinto "Lists";' "$(dst_script alice broken 2>/dev/null)"
assert_eq "not compiling: nothing migrated is active" "" "$(dst_active alice)"
dst_doveadm -f tab migrate report -u alice >"$T/report.out" 2>"$T/report.err"
assert_match "report: the not-compiling script" 'sieve:broken	[0-9]+	broken	broken		[0-9]+	sieve-not-compiling	copied; active; .*frobnicate' \
	"$(cat "$T/report.out")"
assert_match "report: the copied script and its rewrites" \
	'sieve:main	[0-9]+	main	main		[0-9]+	sieve-copied	unchanged; fileinto "INBOX.Lists.dovecot" -> "Lists/dovecot"' \
	"$(cat "$T/report.out")"
assert_match "report --reason sieve-not-compiling" '^sieve:broken' \
	"$(dst_doveadm -f tab migrate report -u alice --reason sieve-not-compiling | tail -n +2)"
# fixed at the source: updated, and active again
put_script alice broken active <<'EOF'
require "fileinto";
fileinto "INBOX.Lists";
EOF
assert_exit NAME="fixed: the run exits 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" migrate run -u alice
assert_eq "fixed: active again" broken "$(dst_active alice)"
# back to main being the active one
ln -sfn sieve/main.sieve "$SRC_HOME/.dovecot.sieve"
chown -h "$MAIL_USER:$MAIL_USER" "$SRC_HOME/.dovecot.sieve"
assert_exit NAME="activation follows the source: exits 0" 0 dst_doveadm "${EXCLUDE[@]}" migrate run -u alice
assert_eq "activation follows the source" main "$(dst_active alice)"

# ---------------------------------------------------------------- TLS

# STARTTLS (migrate_source_ssl=starttls and =imaps both mean STARTTLS on
# ManageSieve), the certificate checked against migrate_source_ssl_ca_file
assert_exit NAME="STARTTLS with the CA: exit 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" \
	-o plugin/migrate_source_ssl=starttls -o plugin/migrate_source_ssl_ca_file="$SRC_CA" \
	migrate run -u alice
assert_match "STARTTLS with the CA: scripts read" 'sieve:main	main	unchanged' "$(cat "$LAST_OUT")"
assert_match "STARTTLS: the source saw TLS on ManageSieve" 'managesieve-login: Info: (Login|Logged in): user=<alice>.*, TLS,' \
	"$(cat "$SRC_DIR/dovecot.log")"

# the plugin doesn't need libdovecot-sieve to load: Pigeonhole is opened
# at run time (a host without dovecot-sieve still migrates mail)
if plugin_built; then
	assert_eq "the plugin isn't linked with libdovecot-sieve" 0 \
		"$(ldd "$PLUGIN_DIR/lib20_doveadm_migrate_plugin.so" | grep -c dovecot-sieve)"
	assert_eq "the plugin leaves no Pigeonhole symbol to the loader" 0 \
		"$(nm -D "$PLUGIN_DIR/lib20_doveadm_migrate_plugin.so" | grep -c ' U sieve_')"
fi

# ---------------------------------------------------------------- faults

# a refused login: a second source whose alice has another password
{
	conf_managesieve "$(free_port)"
	conf_sieve_storage
} >"$T/src-b-extra.conf"
SIEVE_B_PORT=$(sed -n 's/^    port = //p' "$T/src-b-extra.conf" | head -1)
src_start --name b --conf-extra "$T/src-b-extra.conf" || die "second source did not start"
passwd_add "$T/src-b/passwd" alice other-password "$T/src-b/home/alice"
src_use
assert_exit NAME="refused login: exit 77" 77 dst_doveadm "${EXCLUDE[@]}" \
	-o plugin/migrate_sieve_port="$SIEVE_B_PORT" migrate run -u alice
assert_match "refused login: the error names ManageSieve and the settings" \
	'ManageSieve server 127.0.0.1:[0-9]+ rejected the login of user alice \(migrate_source_user, migrate_source_password\*\)' \
	"$(grep -E 'Error' "$LAST_ERR")"
check "refused login: the password is in no output" \
	bash -c '! grep -q -e spw-alice -e other-password "$1" "$2"' _ "$LAST_OUT" "$LAST_ERR"
assert_match "refused login: the mail was migrated (status)" 'completed-with-errors' \
	"$(dst_doveadm -f tab migrate status -u alice | head -2)"

# plan with ManageSieve unreachable: the folders and a "sieve" row saying so
assert_exit NAME="plan, ManageSieve unreachable: exits 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" \
	-o plugin/migrate_sieve_port="$(free_port)" migrate plan -u alice
assert_match "plan, ManageSieve unreachable: the sieve row names it" \
	'^sieve		.*failed	Sieve scripts: .*ManageSieve.*migrate_sieve_port' "$(grep '^sieve' "$LAST_OUT")"
assert_match "plan, ManageSieve unreachable: the folders are listed" '^INBOX	INBOX' "$(cat "$LAST_OUT")"

# a cut connection: reconnects and goes on
SRC_PORT_SAVED=$SRC_PORT
SRC_PORT=$SIEVE_PORT proxy_start cut1 --cut-after-bytes 400 || die "faultproxy did not start"
SRC_PORT=$SRC_PORT_SAVED
assert_exit NAME="cut once: exit 0" 0 dst_doveadm "${EXCLUDE[@]}" \
	-o plugin/migrate_sieve_port="$PROXY_PORT" migrate run -u alice
assert_match "cut once: it reconnected" 'Sieve scripts: .*reconnecting' "$(cat "$LAST_ERR")"
proxy_stop
SRC_PORT=$SIEVE_PORT proxy_start cutall --cut-after-bytes 200,200,200,200,200,200 ||
	die "faultproxy did not start"
SRC_PORT=$SRC_PORT_SAVED
assert_exit NAME="cut every time: exit 75" 75 dst_doveadm "${EXCLUDE[@]}" \
	-o plugin/migrate_sieve_port="$PROXY_PORT" migrate run -u alice
assert_match "cut every time: one error naming ManageSieve" \
	'Sieve scripts: .*ManageSieve server 127.0.0.1:[0-9]+' "$(grep Error "$LAST_ERR" | tail -1)"
proxy_stop

# ---------------------------------------------------------------- -A

put_script bob filters active <<'EOF'
require "fileinto";
fileinto "INBOX.Lists";
EOF
assert_exit NAME="-A: exits 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" migrate run -A
assert_match "-A: bob's script" 'bob	sieve:filters	filters	copied' "$(cat "$LAST_OUT")"
assert_eq "-A: bob's script is active" filters "$(dst_active bob)"
assert_match "-A: alice unchanged" 'alice	sieve:main	main	unchanged' "$(cat "$LAST_OUT")"

# per-user settings from the userdb: carol (alice at the source) without
# Sieve, dave (alice too) with the second source's ManageSieve port
dst_add_user carol userdb_migrate_source_user=alice userdb_migrate_sieve=no
dst_add_user dave userdb_migrate_source_user=alice userdb_migrate_sieve_port="$SIEVE_B_PORT"
assert_exit NAME="userdb migrate_sieve=no: exits 0" 0 dst_doveadm -f tab "${EXCLUDE[@]}" migrate run -u carol
assert_eq "userdb migrate_sieve=no: no script rows" 0 "$(grep -c '^sieve' "$LAST_OUT")"
check "userdb migrate_sieve=no: no scripts stored" test ! -e "$(dst_home carol)/sieve"
assert_exit NAME="userdb migrate_sieve_port: the user's port (refused there): exit 77" 77 \
	dst_doveadm "${EXCLUDE[@]}" migrate run -u dave
assert_match "userdb migrate_sieve_port: the error names that port" \
	"ManageSieve server 127.0.0.1:$SIEVE_B_PORT rejected the login" "$(cat "$LAST_ERR")"

# ---------------------------------------------------------------- hostile

# a ManageSieve server that misbehaves (tests/lib/hostile-managesieved.py),
# for erin (alice at the source): the mail is migrated, the Sieve pass
# fails with one clear error, nothing crashes
HOSTILE_MS="$HARNESS_LIB/hostile-managesieved.py"
dst_add_user erin userdb_migrate_source_user=alice
# hostile CASE: start the server, HPORT = its port
hostile() {
	rm -f "$T/hms-$1.port"
	python3 "$HOSTILE_MS" --case "$1" --port-file "$T/hms-$1.port" --max-seconds 120 \
		>"$T/hms-$1.out" 2>&1 &
	HPID=$!
	track_pid "$HPID"
	for _ in $(seq 1 50); do [ -s "$T/hms-$1.port" ] && break; sleep 0.1; done
	HPORT=$(cat "$T/hms-$1.port")
}
hostile huge-literal
assert_exit NAME="hostile: a 999999999-byte literal: exit 76" 76 dst_doveadm "${EXCLUDE[@]}" \
	-o plugin/migrate_sieve_port="$HPORT" migrate run -u erin
assert_match "hostile: the error says how big" 'literal of 999999999 bytes' "$(grep Error "$LAST_ERR")"
stop_pid "$HPID"
hostile endless-list
assert_exit NAME="hostile: a listing without end: exit 76" 76 dst_doveadm "${EXCLUDE[@]}" \
	-o plugin/migrate_sieve_port="$HPORT" migrate run -u erin
assert_match "hostile: too many lines" 'too many lines' "$(grep Error "$LAST_ERR")"
stop_pid "$HPID"
hostile bad-greeting
assert_exit NAME="hostile: not ManageSieve: exit 76" 76 dst_doveadm "${EXCLUDE[@]}" \
	-o plugin/migrate_sieve_port="$HPORT" migrate run -u erin
stop_pid "$HPID"
hostile hang
assert_exit NAME="hostile: no greeting: exit 75 after the reconnects" 75 dst_doveadm "${EXCLUDE[@]}" \
	-o plugin/migrate_source_greeting_timeout=2s -o plugin/migrate_source_timeout=2s \
	-o plugin/migrate_sieve_port="$HPORT" \
	migrate run -u erin
assert_match "hostile: no greeting: one error naming ManageSieve" 'Sieve scripts: .*ManageSieve' \
	"$(grep Error "$LAST_ERR" | tail -1)"
stop_pid "$HPID"
hostile nul-literal
run_capture dst_doveadm "${EXCLUDE[@]}" -o plugin/migrate_sieve_port="$HPORT" migrate run -u erin
printf 'require "fileinto";\r\n# \0 nul\r\nfileinto "A";\r\n' >"$T/nul.expected"
check "hostile: a script with a NUL byte arrives byte for byte (rewritten)" \
	cmp "$T/nul.expected" "$(dst_home erin)/sieve/s.sieve"
assert_match "hostile: the mail of erin is there" 'Lists/dovecot' "$(dst_doveadm mailbox list -u erin)"
stop_pid "$HPID"
# names the destination refuses are renamed like folder names: '/' becomes
# '_', an overlong name is cut; the active one stays active
dst_add_user fiona userdb_migrate_source_user=alice
hostile unsafe-names
assert_exit NAME="unsafe names: run exits 0" 0 dst_doveadm "${EXCLUDE[@]}" \
	-o plugin/migrate_sieve_port="$HPORT" migrate run -u fiona
check "unsafe names: a/b is stored as a_b" [ -f "$(dst_home fiona)/sieve/a_b.sieve" ]
check "unsafe names: ok keeps its name" [ -f "$(dst_home fiona)/sieve/ok.sieve" ]
check "unsafe names: nothing was written outside the sieve directory" \
	[ ! -e "$(dst_home fiona)/sieve/a" ]
long=$(find "$(dst_home fiona)/sieve" -maxdepth 1 -name 'LLL*.sieve' | head -n 1)
long_len=$(basename "${long:-x}" .sieve | wc -c)
check "unsafe names: the 300-character name is cut, not dropped ($long_len)" \
	[ -n "$long" -a "$long_len" -lt 300 ]
assert_eq "unsafe names: the renamed active script is active" "$(dst_active fiona)" a_b
assert_match "unsafe names: the report says renamed" 'renamed' \
	"$(dst_doveadm migrate report -u fiona 2>&1)"
stop_pid "$HPID"

harness_done
