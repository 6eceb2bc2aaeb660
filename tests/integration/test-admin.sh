#!/usr/bin/env bash
# What a new admin hits (issue 15): the shipped conf.d examples work when
# uncommented, misspelled settings are named, -m that matches nothing
# fails, a source that hides NAMESPACE, status of UIDs on Maildir, and the
# smaller surprises (usage text, empty headers, error wording).
# timeout: 300
. "$(dirname "$0")/../lib/harness.sh"
. "$HARNESS_LIB/faults.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"

src_start || die "source server did not start"
dst_start --format maildir || die "destination server did not start"
src_seed alice --seed 15 --limit 40 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"

# ------------------------------------------------------------ item 1
# Every "#migrate_x = value" example of conf.d's plugin {} uncommented, in a
# plugin {} of its own after the harness's; only what names this machine
# (host, port, TLS, password, state, rule files, program paths) is
# overridden on the command line.
# On 2.4 the examples of the version's conf.d file (90-migrate-24.conf:
# top level, %{user}, units on every interval), as they are.
CONFD="$TOP/conf.d/90-migrate.conf"
if dv24; then
	CONFD="$TOP/conf.d/90-migrate-24.conf"
	sed -n 's/^#\(migrate_[a-z0-9_]* =.*\)$/\1/p' "$CONFD" >"$T/examples"
	cp "$T/examples" "$T/examples.conf"
else
	sed -n '/^plugin {/,/^}/p' "$CONFD" |
		sed -n 's/^[[:space:]]*#\(migrate_[a-z0-9_]* =.*\)$/  \1/p' >"$T/examples"
	{
		echo "plugin {"
		cat "$T/examples"
		echo "}"
	} >"$T/examples.conf"
fi
n_examples=$(wc -l <"$T/examples")
info "$(basename "$CONFD"): $n_examples commented examples"
[ "$n_examples" -ge 40 ] && pass "conf.d has its examples" ||
	fail "conf.d has its examples" "only $n_examples found"
# the whole file, every block uncommented (userdbs, the Redis and SQL state
# dicts, remote execution, metrics), is a configuration Dovecot accepts;
# only the build tree's path stands in for the placeholder
{
	conf_header
	python3 "$HARNESS_LIB/confd-uncomment.py" "$CONFD" |
		sed "s|/path/to/dovecot-migrate/doveadm-cmd/.libs|$PLUGIN_DIR|"
} >"$T/confd-all.conf"
assert_exit NAME="$(basename "$CONFD"): every block uncommented parses (doveconf -n)" 0 \
	bounded 30 doveconf -c "$T/confd-all.conf" -n
# conf_doveadm CONF ARGS...: doveadm with the plugin and config CONF
conf_doveadm() {
	local conf=$1
	shift
	dst_doveadm_argv
	DST_DOVEADM[2]=$conf
	bounded "$DOVEADM_TIMEOUT" "${DST_DOVEADM[@]}" "$@"
}
# a config that is the destination's plus FILE's lines (a copy, not an
# !include: a 2.4 config must begin with dovecot_config_version)
conf_plus() {
	cat "$DST_DIR/dovecot.conf" "$1"
}
conf_plus "$T/examples.conf" >"$T/dst-examples.conf"
ex_doveadm() { conf_doveadm "$T/dst-examples.conf" "$@"; }
here=(-o plugin/migrate_source_host=127.0.0.1
	-o plugin/migrate_source_port="$SRC_PORT"
	-o plugin/migrate_source_ssl=no
	-o plugin/migrate_source_oauth2_token_command=
	-o plugin/migrate_folder_map=)
# (2.4 doesn't %-expand a doveadm -o value, only the config's and the
# defaults' (settings.c): there the file is named as it is, for alice)
if dv24; then
	here+=(-o plugin/migrate_source_password_file="$T/srcpw/alice")
else
	here+=(-o plugin/migrate_source_password_file="$T/srcpw/%u"
		-o plugin/migrate_state_dict=)
fi
assert_exit NAME="conf.d examples uncommented: plan exits 0" 0 \
	ex_doveadm "${here[@]}" migrate plan -u alice
if grep -Eiq 'error|warning|missing units' "$LAST_ERR"; then
	fail "conf.d examples uncommented: no error or warning" "$(head -c 400 "$LAST_ERR")"
else
	pass "conf.d examples uncommented: no error or warning"
fi
assert_exit NAME="conf.d examples uncommented: run exits 0" 0 \
	ex_doveadm "${here[@]}" migrate run -u alice
assert_exit NAME="conf.d examples uncommented: status exits 0" 0 \
	ex_doveadm "${here[@]}" migrate status -u alice
# the values the man page and conf.d show, one by one
plain_secs=(migrate_source_timeout=120 migrate_lock_timeout=600
	migrate_backoff_max=300 migrate_throttle_max_wait=3600)
if dv24; then
	# 2.4's TIME settings require units (docs/dovecot-24-port.md): the
	# plain-second forms are 2.3's; 2.4 refuses them, naming the setting
	for set in "${plain_secs[@]}"; do
		assert_exit NAME="2.4: plan with $set (no units) exits 78" 78 \
			dst_doveadm -o "plugin/$set" migrate plan -u alice
		one_error "2.4: $set: the error names it and the missing units" \
			"${set%%=*}.*missing units"
	done
	plain_secs=(migrate_source_timeout=120s migrate_lock_timeout=600s
		migrate_backoff_max=300s migrate_throttle_max_wait=3600s)
fi
for set in "${plain_secs[@]}" \
	"migrate_source_timeout=2 mins" migrate_since=6months \
	"migrate_since=90 days" migrate_before=2y migrate_since=6mo; do
	assert_exit NAME="plan with $set exits 0" 0 \
		dst_doveadm -o "plugin/$set" migrate plan -u alice
done
assert_exit NAME="an interval with a bad unit is still 78" 78 \
	dst_doveadm -o plugin/migrate_lock_timeout=10parsecs migrate plan -u alice
one_error "the bad interval names its setting" 'migrate_lock_timeout=10parsecs'
assert_exit NAME="migrate_since=6min is refused" 78 \
	dst_doveadm -o plugin/migrate_since=6min migrate plan -u alice
# 6m is minutes in an interval and was months here: refused as ambiguous
assert_exit NAME="migrate_since=6m is refused (ambiguous)" 78 \
	dst_doveadm -o plugin/migrate_since=6m migrate plan -u alice
one_error "migrate_since=6m: the error names the setting and says mo" \
	'migrate_since=6m.*months are mo'


# ------------------------------------------------------------ item 3
# A misspelled setting, wherever it is set: named with the nearest known
# name; run refuses (78) before it connects, other commands warn.
typo_check() { # typo_check WHERE doveadm-function [args...] (before "migrate")
	local where=$1
	shift
	assert_exit NAME="typo in $where: run exits 78" 78 "$@" migrate run -u "$typo_user"
	one_error "typo in $where: one error naming it and the nearest name" \
		'Unknown setting migrate_source_hots \(did you mean migrate_source_host\?\)'
	assert_exit NAME="typo in $where: status exits 0" 0 "$@" migrate status -u "$typo_user"
	assert_match "typo in $where: status warns" \
		'Warning: .*Unknown setting migrate_source_hots \(did you mean migrate_source_host\?\)' \
		"$(cat "$LAST_ERR")"
	assert_exit NAME="typo in $where: plan exits 0 and warns" 0 "$@" migrate plan -u "$typo_user"
	assert_match "typo in $where: plan warns" 'Warning: .*migrate_source_hots' "$(cat "$LAST_ERR")"
}
typo_user=alice
conf_settings migrate_source_hots=192.0.2.1 >"$T/typo.conf"
conf_plus "$T/typo.conf" >"$T/dst-typo.conf"
typo_conf_doveadm() { conf_doveadm "$T/dst-typo.conf" "$@"; }
if dv24; then
	# 2.4's config process refuses a config with an unknown name before
	# any command runs (docs/dovecot-24-port.md): every command fails
	for cmd in run status plan; do
		assert_exit NAME="2.4: typo in the config: $cmd exits 89 (doveadm can't read the config)" 89 \
			typo_conf_doveadm migrate "$cmd" -u alice
		assert_match "2.4: typo in the config: $cmd names it" \
			'Unknown setting: migrate_source_hots' "$(cat "$LAST_ERR")"
	done
else
	typo_check "plugin {}" typo_conf_doveadm
fi
typo_check "doveadm -o" dst_doveadm -o plugin/migrate_source_hots=192.0.2.1
dst_add_user carol userdb_migrate_source_user=alice userdb_migrate_source_hots=192.0.2.1
typo_user=carol
typo_check "a userdb field" dst_doveadm
# the typo's intended value would have gone unnoticed: nothing was imported
if [ -z "$(dst_mail_files carol)" ]; then
	pass "typo: carol's refused run imported nothing"
else
	fail "typo: carol's refused run imported nothing" "mail files exist"
fi
assert_exit NAME="several typos are all named" 78 dst_doveadm \
	-o plugin/migrate_lock_timout=5 -o plugin/migrate_frobnicate=1 \
	migrate run -u alice
one_error "several typos: one error line names both" \
	'migrate_lock_timout \(did you mean migrate_lock_timeout\?\).*migrate_frobnicate|migrate_frobnicate.*migrate_lock_timout'

# ------------------------------------------------------------ item 2
# -m that names nothing fails with 68 (doveadm's "not found") and one line
# naming the folder and the closest names; report/reset take the decoded
# UTF-8 name as run does.
dst_add_user dave userdb_migrate_source_user=alice
# every message deferred: an item log in every folder
assert_exit NAME="dave: filtered pass exits 0" 0 \
	dst_doveadm -o plugin/migrate_max_size=1 migrate run -u dave
for cmd in run plan verify report reset; do
	assert_exit NAME="$cmd -m 'No Such Folder' exits 68" 68 \
		dst_doveadm migrate "$cmd" -u dave -m 'No Such Folder'
	one_error "$cmd -m 'No Such Folder': one line naming it and the closest" \
		"'No Such Folder'.*closest: '"
done
assert_exit NAME="run -m Entwurfe (typo) exits 68" 68 dst_doveadm migrate run -u dave -m Entwurfe
one_error "run -m Entwurfe suggests Entwürfe" "closest: 'Entwürfe'"
assert_exit NAME="report -m Entwurfe (typo) exits 68" 68 dst_doveadm migrate report -u dave -m Entwurfe
one_error "report -m Entwurfe suggests Entwürfe" "closest: 'Entwürfe'"
if [ -n "$(dst_mail_files dave)" ]; then
	fail "a failed -m imported nothing" "mail files exist"
else
	pass "a failed -m imported nothing"
fi
assert_exit NAME="status after a failed -m exits 0" 0 dst_doveadm -f tab migrate status -u dave
assert_match "a failed -m left the run state alone" 'completed' "$(cat "$LAST_OUT")"
report_rows() { dst_doveadm -f tab migrate report -u dave "$@" | tail -n +2 | grep -c .; }
n_utf7=$(report_rows -m 'Entw&APw-rfe')
n_utf8=$(report_rows -m 'Entwürfe')
n_dest=$(report_rows -m Drafts)
info "report rows: mUTF-7 $n_utf7, UTF-8 $n_utf8, destination name $n_dest"
[ "$n_utf7" -gt 0 ] && pass "report -m (mUTF-7) lists the items" ||
	fail "report -m (mUTF-7) lists the items" "no rows"
assert_eq "report -m Entwürfe lists what the mUTF-7 name lists" "$n_utf7" "$n_utf8"
assert_eq "report -m Drafts (its destination) lists the same" "$n_utf7" "$n_dest"
assert_exit NAME="plan -m Entwürfe exits 0" 0 dst_doveadm migrate plan -u dave -m 'Entwürfe'
assert_exit NAME="reset -m Entwürfe exits 0" 0 dst_doveadm migrate reset -u dave -m 'Entwürfe'
assert_eq "report -m Entwürfe after its reset lists nothing" 0 "$(report_rows -m 'Entwürfe')"
n_all=$(report_rows)
[ "$n_all" -gt 0 ] && pass "reset -m kept the other folders' state" ||
	fail "reset -m kept the other folders' state" "no rows left"

# ------------------------------------------------------------ item 12
# usage names -F
dst_doveadm migrate >/dev/null 2>"$T/usage.err"
assert_eq "usage text names -F for every command" 6 "$(grep -c '^  [a-z]* .*\[-F <user file>\]' "$T/usage.err")"
# report -c to a path the mail user can't write: 73 and the uid named
mkdir -p "$T/rootonly" && chmod 700 "$T/rootonly"
assert_exit NAME="report -c unwritable path exits 73" 73 \
	dst_doveadm migrate report -u dave -c "$T/rootonly/x.csv"
one_error "report -c unwritable names the uid" "Permission denied.*uid=[0-9]+\($MAIL_USER\)"
# an unreadable password file names the uid too
printf 'pw\n' >"$T/rootonly-pw" && chmod 600 "$T/rootonly-pw"
assert_exit NAME="unreadable password file exits 78" 78 \
	dst_doveadm -o plugin/migrate_source_password_file="$T/rootonly-pw" migrate plan -u dave
one_error "unreadable password file names the uid" \
	"migrate_source_password_file=.*Permission denied.*uid=[0-9]+\($MAIL_USER\)"
# attempts counts the pass that resolved an item
proxy_start poison --poison INBOX:1 || die "proxy did not start"
dst_add_user gina userdb_migrate_source_user=alice
assert_exit NAME="gina: pass with a poisoned message exits 2" 2 \
	dst_doveadm -o plugin/migrate_source_port="$PROXY_PORT" migrate run -u gina
proxy_stop
assert_exit NAME="gina: second pass exits 0" 0 dst_doveadm migrate run -u gina
assert_exit NAME="gina: report exits 0" 0 dst_doveadm -f tab migrate report -u gina
item=$(awk -F'\t' 'NR == 1 {for (i = 1; i <= NF; i++) col[$i] = i; next}
	{print $col["folder"] "/" $col["uid"] " " $col["reason"] " attempts=" $col["attempts"] " resolved=" $col["resolved"]}' "$LAST_OUT")
assert_eq "gina: the resolved item counts both passes" "INBOX/1 fetch-failed attempts=2 resolved=yes" "$item"
# a command that fails prints no empty table header (doveadm prints the
# columns even without a row): every command's -m that matches nothing,
# an unknown user, a run that fails before any folder, an unknown -r class
for cmd in run plan verify status report reset; do
	opt=(-m 'No Such Folder')
	[ "$cmd" = status ] && opt=()
	run_capture dst_doveadm migrate "$cmd" -u nosuchuser "${opt[@]}"
	assert_eq "$cmd -u nosuchuser: exit 67, no output" "67 " "$LAST_RC $(head -c 300 "$LAST_OUT")"
	[ "$cmd" = status ] && continue
	run_capture dst_doveadm migrate "$cmd" -u dave "${opt[@]}"
	assert_eq "$cmd -m 'No Such Folder': exit 68, no output" "68 " "$LAST_RC $(head -c 300 "$LAST_OUT")"
done
run_capture dst_doveadm -o plugin/migrate_source_port=1 migrate run -u dave
assert_eq "a run whose source refuses the connection: exit 75, no output" "75 " "$LAST_RC $(head -c 300 "$LAST_OUT")"
run_capture dst_doveadm migrate report -u dave -r no-such-class
assert_eq "report -r no-such-class: exit 78, no output" "78 " "$LAST_RC $(head -c 300 "$LAST_OUT")"
# success without a row keeps the header
assert_exit NAME="report -r destination-full without such items exits 0" 0 \
	dst_doveadm migrate report -u dave -r destination-full
assert_match "report without rows prints the header" '^folder +uid +message_id' "$(cat "$LAST_OUT")"

# ------------------------------------------------------------ item 10
# A first pass into a Maildir destination keeps the source's UIDVALIDITY
# and UIDs in every folder, INBOX included (Maildir's INBOX exists before
# the run): status must say uids=yes for each.
dst_add_user erin userdb_migrate_source_user=alice
assert_exit NAME="erin: first pass exits 0" 0 dst_doveadm migrate run -u erin
assert_exit NAME="erin: status exits 0" 0 dst_doveadm -f tab migrate status -u erin
uids=$(awk -F'\t' 'NR == 1 {for (i = 1; i <= NF; i++) col[$i] = i; next}
	$col["folder"] != "*" {print $col["folder"] "=" $col["uids"]}' "$LAST_OUT" | sort)
info "status uids: $(printf '%s' "$uids" | tr '\n' ' ')"
assert_eq "status: INBOX uids=yes on Maildir" INBOX=yes "$(printf '%s\n' "$uids" | grep '^INBOX=')"
assert_eq "status: no folder with uids other than yes" "" \
	"$(printf '%s\n' "$uids" | grep -v '=yes$' | tr '\n' ' ')"
src_dump alice "$T/src-uids.json" --uids
DST_DUMP_OPTS=(--uids)
dst_equals "erin: UIDs and UIDVALIDITY equal the source's" erin "$T/src-uids.json"
DST_DUMP_OPTS=()

# ------------------------------------------------------------ item 9
# A Courier-IMAP 5 style source: everything under "INBOX." and a minimal
# capability list without NAMESPACE, while NAMESPACE is answered. Seeded
# with the full capability list (imaptool trusts it), then restricted.
src_start --courier --name courier || die "courier source did not start"
src_seed alice --limit 30 >"$T/seed-courier.out" 2>&1 ||
	die "courier seeding failed: $(tail -n 3 "$T/seed-courier.out")"
src_dump alice "$T/src-courier.json" || die "courier source dump failed"
echo 'imap_capability = IMAP4rev1 ACL ACL2=UNION ENABLE UTF8=ACCEPT' >>"$SRC_DIR/dovecot.conf"
src_doveadm reload || die "courier source reload failed"
sleep 1
COURIER_PORT=$SRC_PORT
caps=$(python3 - "$COURIER_PORT" "$(src_password alice)" <<'PY'
import imaplib, sys
c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
typ, dat = c.login("alice", sys.argv[2])
print(c.capability()[1][-1].decode(), "|", c.namespace()[1][0].decode())
PY
)
info "courier-like source after login: $caps"
# (2.4 takes UTF8=ACCEPT out of the list unless mail_utf8_extensions = yes)
utf8_cap=' UTF8=ACCEPT'
dv24 && utf8_cap=
assert_match "the courier-like source hides NAMESPACE but answers it" \
	"^IMAP4rev1 ACL ACL2=UNION ENABLE$utf8_cap \\| \\(\\(\"INBOX\\.\" \"\\.\"\\)\\)" "$caps"
dst_add_user cour1 userdb_migrate_source_user=alice
# plan_dests USER [doveadm options...]: the dest column of plan, one a line
plan_dests() {
	local user=$1
	shift
	dst_doveadm -o plugin/migrate_source_port="$COURIER_PORT" "$@" \
		-f tab migrate plan -u "$user" 2>"$T/plan.err" |
		awk -F'\t' 'NR > 1 && $2 != "" {print $2}' | sort
}
plan_dests cour1 >"$T/dests-hidden"
info "plan: $(tr '\n' ',' <"$T/dests-hidden")"
[ "$(grep -c . "$T/dests-hidden")" -ge 5 ] && pass "hidden NAMESPACE: plan maps the folders" ||
	fail "hidden NAMESPACE: plan maps the folders" "$(cat "$T/plan.err")"
if grep -q '^INBOX/' "$T/dests-hidden"; then
	fail "hidden NAMESPACE: no folder lands under INBOX/" "$(grep '^INBOX/' "$T/dests-hidden" | tr '\n' ',')"
else
	pass "hidden NAMESPACE: no folder lands under INBOX/"
fi
assert_exit NAME="hidden NAMESPACE: run exits 0" 0 \
	dst_doveadm -o plugin/migrate_source_port="$COURIER_PORT" migrate run -u cour1
dst_equals "hidden NAMESPACE: destination == source, same tree" cour1 "$T/src-courier.json"

# No NAMESPACE at all (the proxy answers it BAD): the prefix is inferred
# from the folder names, and plan says so.
proxy_start nons --refuse-command NAMESPACE || die "proxy did not start"
dst_add_user cour2 userdb_migrate_source_user=alice
COURIER_PORT=$PROXY_PORT plan_dests cour2 >"$T/dests-nons"
assert_eq "no NAMESPACE: plan maps as with NAMESPACE" "$(cat "$T/dests-hidden")" "$(cat "$T/dests-nons")"
assert_match "no NAMESPACE: plan says the prefix was inferred" \
	'no NAMESPACE.*INBOX\. *: taken as its personal namespace prefix' "$(cat "$T/plan.err")"
assert_exit NAME="no NAMESPACE: run exits 0" 0 \
	dst_doveadm -o plugin/migrate_source_port="$PROXY_PORT" migrate run -u cour2
dst_equals "no NAMESPACE: destination == source, same tree" cour2 "$T/src-courier.json"
# migrate_source_prefix forces it: none keeps the INBOX. tree
COURIER_PORT=$PROXY_PORT plan_dests cour2 -o plugin/migrate_source_prefix=none >"$T/dests-none"
grep -q '^INBOX/' "$T/dests-none" && pass "migrate_source_prefix=none keeps folders under INBOX/" ||
	fail "migrate_source_prefix=none keeps folders under INBOX/" "$(tr '\n' ',' <"$T/dests-none")"
if grep -q 'taken as its personal namespace prefix' "$T/plan.err"; then
	fail "migrate_source_prefix=none: no guess" "$(cat "$T/plan.err")"
else
	pass "migrate_source_prefix=none: no guess"
fi
COURIER_PORT=$PROXY_PORT plan_dests cour2 -o plugin/migrate_source_prefix=INBOX. >"$T/dests-forced"
assert_eq "migrate_source_prefix=INBOX. maps as NAMESPACE would" "$(cat "$T/dests-hidden")" "$(cat "$T/dests-forced")"
proxy_stop
src_use

harness_done
