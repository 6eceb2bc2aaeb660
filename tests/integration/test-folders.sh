#!/usr/bin/env bash
# Folder mapping, end to end through doveadm against real source servers:
#   1. Courier/cPanel layout ('.' separator, "INBOX." prefix)
#   2. Gmail-like layout: All Mail brings only unlabelled mail, Spam and
#      Trash skipped, [Gmail]/Sent Mail -> Sent
#   3. localized special-use names without SPECIAL-USE flags; automap=no
#   4. a rules file ([SKIP], backreferences), include/exclude; a broken
#      rules file
#   5. hostile folder names from a scripted server (tests/lib/hostile-imapd.py)
#   6. migrate plan: columns, -f json, writes nothing
# Every check reads the destination tree and each folder's messages back
# over IMAP and compares them exactly with what the source was seeded with.
# timeout: 400
# small accounts: a doveadm or imaptool call that takes a minute is stuck
DOVEADM_TIMEOUT=${DOVEADM_TIMEOUT:-60} IMAPTOOL_TIMEOUT=${IMAPTOOL_TIMEOUT:-60}
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"
HOSTILE="$HARNESS_LIB/hostile-imapd.py"

# ------------------------------------------------------------ helpers

CHECKS="$HARNESS_LIB/checks/folders.py"

# Seeds a source account with deterministic small messages.
#   seed PORT USER SPEC...   SPEC = [+]FOLDER=KEY,KEY,...  ('+' subscribes)
# FOLDER is logical ('/'-separated, no namespace prefix, not mUTF-7); a KEY
# is one message (the same KEY in two folders is the very same message);
# "k*3" is k1,k2,k3; "FOLDER=" only creates the folder. Writes KEY ->
# sha256 of the message into $T/keys.json (merged over calls).
export HARNESS_LIB

seed() {
	local port=$1 user=$2
	shift 2
	timeout --foreground -k 5 60 python3 "$CHECKS" seed "$port" "$user" "spw-$user" "$T/keys.json" "$@" \
		>"$T/seed.out" 2>&1 || {
		cat "$T/seed.out" >&2
		return 1
	}
}

# expect_tree NAME USER JSON: the destination of USER holds exactly the
# folders of JSON ({"folder": ["key", ...]}), each exactly these messages.
# Folders that are not selectable (hierarchy parents) are not counted.
expect_tree() {
	local name=$1 user=$2 want=$3 out
	if ! dst_dump "$user" "$T/tree-$user.json" 2>"$T/dump.err"; then
		fail "$name" "destination dump of $user failed: $(tail -n 1 "$T/dump.err")"
		return 1
	fi
	out=$(python3 "$CHECKS" tree "$T/tree-$user.json" "$T/keys.json" "$want")
	if [ -z "$out" ]; then
		pass "$name"
	else
		fail "$name" "$out"
	fi
}

# migrate USER PORT [doveadm -o options...] -- run "migrate run -u USER"
migrate() {
	local user=$1 port=$2
	shift 2
	dst_doveadm -o plugin/migrate_source_port="$port" "$@" migrate run -u "$user"
}

# plan_json USER PORT [options...]: "doveadm -f json migrate plan" into
# $T/plan-USER.json; the exit code in $LAST_RC
plan_json() {
	local user=$1 port=$2
	shift 2
	dst_doveadm -f json -o plugin/migrate_source_port="$port" "$@" \
		migrate plan -u "$user" >"$T/plan-$user.json" 2>"$T/plan-$user.err"
	LAST_RC=$?
}

# plan_check NAME USER JSON: JSON maps a source folder (raw name) to
# {column: value} ("reason~": a substring of the reason); every listed
# folder must have a row in $T/plan-USER.json with these values.
plan_check() {
	local name=$1 user=$2 want=$3 out
	out=$(python3 "$CHECKS" plan-rows "$T/plan-$user.json" "$want")
	if [ -z "$out" ]; then pass "$name"; else fail "$name" "$out"; fi
}

# untouched NAME USER: no mailbox and no message file at the destination
untouched() {
	local files boxes
	files=$(dst_mail_files "$2")
	boxes=$(dst_mailbox_dirs "$2")
	if [ -z "$files" ] && [ -z "$boxes" ]; then
		pass "$1"
	else
		fail "$1" "$(echo "$files" | grep -c .) message files, mailboxes: $(echo "$boxes" | tr '\n' ' ')"
	fi
}

dst_start || die "destination server did not start"
DST_SDBOX_DIR=$DST_DIR DST_SDBOX_PORT=$DST_PORT

# ============================================================ 1. Courier
src_start --courier --name courier || die "courier source did not start"
COURIER_PORT=$SRC_PORT
seed "$SRC_PORT" alice "+INBOX=c-in*5" "+Sent=c-sent*3" "Clients=c-cl*2" \
	"+Clients/ProjectA=c-pa*4" "Clients/ProjectA/2024=c-pa24" "Drafts=c-dr" ||
	die "seeding the courier source failed"
src_dump alice "$T/src-courier.json" || die "courier source dump failed"
dst_add_user c1 userdb_migrate_source_user=alice

assert_exit NAME="courier: migrate run exits 0" 0 migrate c1 "$COURIER_PORT"
COURIER_TREE='{
	"INBOX": ["c-in1","c-in2","c-in3","c-in4","c-in5"],
	"Sent": ["c-sent1","c-sent2","c-sent3"],
	"Clients": ["c-cl1","c-cl2"],
	"Clients/ProjectA": ["c-pa1","c-pa2","c-pa3","c-pa4"],
	"Clients/ProjectA/2024": ["c-pa24"],
	"Drafts": ["c-dr"], "Trash": [], "Junk": [], "Archive": []}'
expect_tree "courier: INBOX.x.y -> x/y, INBOX -> INBOX, INBOX.Sent -> Sent, exact contents" \
	c1 "$COURIER_TREE"
dst_dump c1 "$T/dst-c1.json" --uids 2>/dev/null
src_dump alice "$T/src-courier-uids.json" --uids
compare_dumps "courier: flags, dates, subscriptions, UIDs and UIDVALIDITY equal per folder" \
	"$T/src-courier-uids.json" "$T/dst-c1.json" --uids --uidvalidity
# the storage itself, not through IMAP: exactly these mailbox directories
assert_eq "courier: storage holds exactly the mapped mailboxes (no INBOX.x, no INBOX/x)" \
	"$(printf './mail/mailboxes/%s/dbox-Mails\n' Archive Clients Clients/ProjectA \
		Clients/ProjectA/2024 Drafts INBOX Junk Sent Trash | sort)" \
	"$(dst_mailbox_dirs c1)"
plan_json c1 "$COURIER_PORT"
plan_check "courier: plan shows INBOX.Sent as \\Sent -> Sent" c1 '{
	"INBOX.Sent": {"dest": "Sent", "special_use": "\\Sent", "action": "import"},
	"INBOX.Clients.ProjectA": {"dest": "Clients/ProjectA", "action": "import"},
	"INBOX": {"dest": "INBOX", "action": "import"}}'
assert_exit NAME="courier: second run exits 0" 0 migrate c1 "$COURIER_PORT"
expect_tree "courier: second run adds nothing" c1 "$COURIER_TREE"

# ============================================================ 2. Gmail
src_start --gmail-like --name gmail || die "gmail-like source did not start"
GMAIL_PORT=$SRC_PORT
# Labelled mail is in its label folders and in All Mail; g-a* only in All
# Mail (archived); Spam and Trash are not in All Mail (as on Gmail).
seed "$SRC_PORT" alice "+INBOX=g-m1,g-m2,g-m3" "+Work=g-m1,g-w1" "Work/Projects=g-p1" \
	"[Gmail]/Sent Mail=g-s1,g-s2" "[Gmail]/Drafts=g-d1" \
	"[Gmail]/Spam=g-j1" "[Gmail]/Trash=g-t1,g-t2" \
	"[Gmail]/All Mail=g-m1,g-m2,g-m3,g-w1,g-p1,g-s1,g-s2,g-d1,g-a1,g-a2,g-a3" ||
	die "seeding the gmail-like source failed"
GMAIL_TREE='{
	"INBOX": ["g-m1","g-m2","g-m3"],
	"Work": ["g-m1","g-w1"],
	"Work/Projects": ["g-p1"],
	"Sent": ["g-s1","g-s2"],
	"Drafts": ["g-d1"],
	"Archive": ["g-a1","g-a2","g-a3"]}'
dst_add_user g1 userdb_migrate_source_user=alice
assert_exit NAME="gmail: migrate run exits 0" 0 migrate g1 "$GMAIL_PORT"
expect_tree "gmail: All Mail brings only archived mail to Archive, labels not duplicated, Spam/Trash skipped, Sent Mail -> Sent" \
	g1 "$GMAIL_TREE"
plan_json g1 "$GMAIL_PORT"
plan_check "gmail: plan shows All Mail import-unlabelled, Spam/Trash skipped" g1 '{
	"[Gmail]/All Mail": {"dest": "Archive", "special_use": "\\All", "messages": 11, "action": "import-unlabelled"},
	"[Gmail]/Sent Mail": {"dest": "Sent", "special_use": "\\Sent", "messages": 2, "action": "import"},
	"[Gmail]/Spam": {"action": "skip", "reason~": "migrate_gmail_skip"},
	"[Gmail]/Trash": {"action": "skip", "reason~": "migrate_gmail_skip"}}'
assert_exit NAME="gmail: second run exits 0" 0 migrate g1 "$GMAIL_PORT"
expect_tree "gmail: second run adds nothing" g1 "$GMAIL_TREE"
assert_exit NAME="gmail: migrate verify exits 0" 0 dst_doveadm \
	-o plugin/migrate_source_port="$GMAIL_PORT" migrate verify -u g1

# A delta pass after a partial run (here: INBOX alone first, as after a
# crash between folders): INBOX is unchanged on the next run, its mail
# must still count as labelled.
dst_add_user g2 userdb_migrate_source_user=alice
assert_exit NAME="gmail: run -m INBOX exits 0" 0 dst_doveadm \
	-o plugin/migrate_source_port="$GMAIL_PORT" migrate run -m INBOX -u g2
assert_exit NAME="gmail: full run after -m INBOX exits 0" 0 migrate g2 "$GMAIL_PORT"
expect_tree "gmail: labelled mail of an unchanged folder is not duplicated into Archive" \
	g2 "$GMAIL_TREE"

# The label folders run in worker processes; All Mail waits for every one
# of them and is imported by the run's own process, which then reads the
# label folders' mail from the destination (no X-GM-EXT-1 here)
dst_add_user g4 userdb_migrate_source_user=alice
migrate g4 "$GMAIL_PORT" -o plugin/migrate_parallel_folders=3 -o log_debug=category=migrate \
	>"$T/g4.out" 2>"$T/g4.err"
check "gmail with workers: migrate run exits 0" test $? -eq 0
assert_match "gmail with workers: the label folders ran in worker processes" \
	"Importing [0-9]+ folders in 3 worker processes" "$(cat "$T/g4.err")"
expect_tree "gmail with workers: labelled mail not duplicated into Archive" g4 "$GMAIL_TREE"

# Spam and Trash are migrated when migrate_gmail_skip is emptied
dst_add_user g3 userdb_migrate_source_user=alice
assert_exit NAME="gmail: run with migrate_gmail_skip= exits 0" 0 migrate g3 "$GMAIL_PORT" \
	-o plugin/migrate_gmail_skip=
expect_tree "gmail: migrate_gmail_skip= brings Spam -> Junk and Trash -> Trash" g3 '{
	"INBOX": ["g-m1","g-m2","g-m3"], "Work": ["g-m1","g-w1"], "Work/Projects": ["g-p1"],
	"Sent": ["g-s1","g-s2"], "Drafts": ["g-d1"], "Archive": ["g-a1","g-a2","g-a3"],
	"Junk": ["g-j1"], "Trash": ["g-t1","g-t2"]}'

# ============================================================ 3. localized names
# A source without special_use in its config: names are all there is.
src_start --name plain || die "plain source did not start"
PLAIN_PORT=$SRC_PORT
sed -i '/^  mailbox /,/^  }/d' "$SRC_DIR/dovecot.conf"
if grep -q special_use "$SRC_DIR/dovecot.conf"; then
	die "could not strip special_use from the plain source's config"
fi
# restart (not reload) so that no login can see the old config
master=$(cat "$SRC_DIR/run/master.pid")
kill -TERM "$master"
for i in $(seq 1 100); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
start_dovecot "$SRC_DIR/dovecot.conf" "$SRC_DIR/run" "$SRC_DIR/dovecot.log" "$SRC_PORT" ||
	die "plain source did not restart"
seed "$SRC_PORT" alice "INBOX=l-in" "Gesendete Elemente=l-ge*2" "Papierkorb=l-pk" \
	"Éléments envoyés=l-ee*2" "Sent Items=l-si" "Sent Items/2019=l-si19" \
	"Deleted Items=l-di*2" "Junk Email=l-je" "Entwürfe=l-ent" "Projekte=l-pr" ||
	die "seeding the plain source failed"
if timeout --foreground -k 5 30 python3 "$CHECKS" no-special-use "$SRC_PORT"; then
	pass "plain source lists no special-use flags"
else
	fail "plain source lists no special-use flags" "it does (or LIST failed)"
fi
dst_add_user l1 userdb_migrate_source_user=alice
assert_exit NAME="localized: migrate run exits 0" 0 migrate l1 "$PLAIN_PORT"
LOC_TREE='{
	"INBOX": ["l-in"],
	"Sent": ["l-ge1","l-ge2","l-ee1","l-ee2","l-si"],
	"Sent/2019": ["l-si19"],
	"Trash": ["l-pk","l-di1","l-di2"],
	"Junk": ["l-je"],
	"Drafts": ["l-ent"],
	"Projekte": ["l-pr"]}'
expect_tree "localized: Gesendete Elemente/Éléments envoyés/Sent Items -> Sent, Papierkorb/Deleted Items -> Trash, Junk Email -> Junk" \
	l1 "$LOC_TREE"
plan_json l1 "$PLAIN_PORT"
plan_check "localized: plan shows the special use found by name" l1 '{
	"Gesendete Elemente": {"dest": "Sent", "special_use": "\\Sent", "action": "import"},
	"&AMk-l&AOk-ments envoy&AOk-s": {"dest": "Sent", "special_use": "\\Sent"},
	"Papierkorb": {"dest": "Trash", "special_use": "\\Trash"},
	"Junk Email": {"dest": "Junk", "special_use": "\\Junk"},
	"Sent Items/2019": {"dest": "Sent/2019", "reason~": "automap"}}'
# several source folders share one destination folder: a run that lost
# its state must match them all by identity, never duplicate
assert_exit NAME="localized: migrate reset exits 0" 0 dst_doveadm migrate reset -u l1
assert_exit NAME="localized: run after reset exits 0" 0 migrate l1 "$PLAIN_PORT"
expect_tree "localized: run after reset adds nothing to the merged folders" l1 "$LOC_TREE"

dst_add_user l2 userdb_migrate_source_user=alice
assert_exit NAME="localized: run with migrate_automap=no exits 0" 0 migrate l2 "$PLAIN_PORT" \
	-o plugin/migrate_automap=no
expect_tree "localized: migrate_automap=no keeps every name" l2 '{
	"INBOX": ["l-in"], "Gesendete Elemente": ["l-ge1","l-ge2"], "Papierkorb": ["l-pk"],
	"Éléments envoyés": ["l-ee1","l-ee2"], "Sent Items": ["l-si"], "Sent Items/2019": ["l-si19"],
	"Deleted Items": ["l-di1","l-di2"], "Junk Email": ["l-je"], "Entwürfe": ["l-ent"],
	"Projekte": ["l-pr"]}'

# ============================================================ 4. rules
# bob on the same plain source
seed "$PLAIN_PORT" bob "INBOX=r-in" "Archive=r-ar" "Archive/2019=r-19*2" "Archive/2020=r-20" \
	"Archive/misc=r-mi" "Junk=r-j*2" "Clients/Acme=r-ca" "Clients/Globex=r-cg" \
	"Private/Diary=r-pd" "Lists/dovecot=r-ld" || die "seeding bob failed"
cat >"$T/rules" <<'EOF'
# dovecot-migrate folder rules: first match wins
^Archive/(\d{4})$ -> Old/$1
^Junk$ -> [SKIP]
^Clients/(?<who>[^/]+)$   ->   Customers/${who}
^Lists/ -> Mailing lists/
EOF
chmod 644 "$T/rules"
dst_add_user r1 userdb_migrate_source_user=bob
assert_exit NAME="rules: run with rules and migrate_exclude exits 0" 0 migrate r1 "$PLAIN_PORT" \
	-o plugin/migrate_folder_map="$T/rules" -o 'plugin/migrate_exclude=^Private(/|$)'
expect_tree "rules: backreferences, named groups, [SKIP], exclude" r1 '{
	"INBOX": ["r-in"], "Archive": ["r-ar"], "Old/2019": ["r-191","r-192"], "Old/2020": ["r-20"],
	"Archive/misc": ["r-mi"], "Customers/Acme": ["r-ca"], "Customers/Globex": ["r-cg"],
	"Mailing lists/dovecot": ["r-ld"]}'
plan_json r1 "$PLAIN_PORT" -o plugin/migrate_folder_map="$T/rules" -o 'plugin/migrate_exclude=^Private(/|$)'
plan_check "rules: plan names the rule and the exclude" r1 "{
	\"Junk\": {\"action\": \"skip\", \"reason~\": \"$T/rules:3\"},
	\"Archive/2019\": {\"dest\": \"Old/2019\", \"reason~\": \"$T/rules:2\"},
	\"Private/Diary\": {\"action\": \"skip\", \"reason~\": \"migrate_exclude\"}}"

dst_add_user r2 userdb_migrate_source_user=bob
assert_exit NAME="rules: run with migrate_include and migrate_exclude exits 0" 0 migrate r2 "$PLAIN_PORT" \
	-o plugin/migrate_folder_map="$T/rules" -o 'plugin/migrate_include=^(INBOX|Archive)' \
	-o 'plugin/migrate_exclude=^Archive/misc$'
expect_tree "rules: include keeps only INBOX and Archive*, exclude wins over include" r2 '{
	"INBOX": ["r-in"], "Archive": ["r-ar"], "Old/2019": ["r-191","r-192"], "Old/2020": ["r-20"]}'

# broken rules files: exit 78, one error line with file:line and the
# reason, nothing written
dst_add_user r3 userdb_migrate_source_user=bob
bad_rules() { # NAME LINE-NO REGEX-OF-MESSAGE; the rules file is $T/bad-rules
	local name=$1 line=$2 msg=$3
	assert_exit NAME="$name: exit 78" 78 migrate r3 "$PLAIN_PORT" \
		-o plugin/migrate_folder_map="$T/bad-rules"
	one_error "$name: one error line with file:line and the reason" \
		"/bad-rules:$line:.*($msg)"
	untouched "$name: destination untouched" r3
}
printf '# ok\n^Junk$ -> [SKIP]\n^Archive/(\\d{4}$ -> Old/$1\n' >"$T/bad-rules"
chmod 644 "$T/bad-rules"
bad_rules "rules: bad regex" 3 'missing closing parenthesis'
printf '^Archive/(\\d{4})$ -> Old/$2\n' >"$T/bad-rules"
bad_rules "rules: reference to a missing group" 1 'group \$2'
printf '^Archive/(\\d{4})$ Old/$1\n' >"$T/bad-rules"
bad_rules "rules: line without ->" 1 "Missing ' -> '"

# ============================================================ 5. hostile names
# hostile DELIM DSTUSER: start the scripted server with delimiter DELIM,
# plan and run for DSTUSER, check everything.
HOSTILE_N=0
hostile() {
	local delim=$1 user=$2 label=$3 hp pid i
	HOSTILE_N=$((HOSTILE_N + 1))
	local dir="$T/hostile$HOSTILE_N"
	mkdir -p "$dir"
	# detached from our stdout (and run-all.sh's pipe): only its files
	(
		exec </dev/null >"$dir/server.out" 2>&1
		[ -n "${HARNESS_OUT:-}" ] && eval "exec $HARNESS_OUT>&-"
		exec python3 "$HOSTILE" --port-file "$dir/port" --delimiter "$delim" \
			--manifest "$dir/manifest.json" --log "$dir/imap.log" \
			--max-seconds 150 ${HOSTILE_NUL:+--nul-literal}
	) &
	pid=$!
	track_pid "$pid"
	for i in $(seq 1 100); do [ -s "$dir/port" ] && break; sleep 0.05; done
	hp=$(cat "$dir/port" 2>/dev/null)
	[ -n "$hp" ] || { fail "$label: hostile server started" "no port"; return 1; }
	dst_add_user "$user" userdb_migrate_source_user=alice
	dst_set_source_password "$user" anything

	# filesystem before: every directory and file under $T, and a few
	# places outside it a traversal would hit
	local outside="/etc/dbox-Mails /etc/passwd/dbox-Mails /tmp/dbox-Mails /tmp/mailboxes /dbox-Mails /root/dbox-Mails /root/mail /nonexistent /tmp/etc /tmp/Maildir /tmp/cur"
	find "$T" -xdev \( -type d -o -type f -o -type l \) 2>/dev/null | sort >"$dir/fs-before"
	local p
	for p in $outside; do [ -e "$p" ] && echo "$p"; done >"$dir/outside-before"

	plan_json "$user" "$hp"
	if [ "$LAST_RC" = 0 ]; then
		pass "$label: migrate plan exits 0"
	else
		fail "$label: migrate plan exits 0" "exit $LAST_RC: $(head -c 300 "$T/plan-$user.err")"
	fi
	cp "$T/plan-$user.json" "$dir/plan.json"
	migrate "$user" "$hp" >"$dir/run.out" 2>"$dir/run.err"
	local rc=$?
	if [ "$rc" = 0 ] || [ "$rc" = 2 ]; then
		pass "$label: migrate run exit $rc"
	else
		fail "$label: migrate run exit $rc" "$(grep -a Error "$dir/run.err" | head -n 3 | tr '\n' '|')"
	fi
	dst_dump "$user" "$dir/dump.json" 2>"$dir/dump.err" ||
		fail "$label: destination dump" "$(tail -n 1 "$dir/dump.err")"

	# plan rows vs manifest vs what landed where
	local out
	out=$(python3 "$CHECKS" hostile "$dir" "$delim" "$(dst_home "$user")")
	if [ -z "$out" ]; then
		pass "$label: every folder sanitized (with a reason) or skipped (with a reason); each landed folder holds exactly its source folders' messages"
	else
		fail "$label: plan/destination check" "$(printf '%s' "$out" | tr '\n' '|')"
	fi

	# filesystem after: nothing new outside the user's home, nothing under
	# the home resolving outside it
	find "$T" -xdev \( -type d -o -type f -o -type l \) 2>/dev/null | sort >"$dir/fs-after"
	local home new_outside escaped
	home=$(dst_home "$user")
	new_outside=$(comm -13 "$dir/fs-before" "$dir/fs-after" | grep -v -F -e "$home/" -e "$dir/" \
		-e "$DST_DIR/run/" -e "$DST_DIR/state/" -e "$T/last." -e "$T/plan-" -e "$T/dump.err" |
		grep -v -x -F -e "$home" -e "$DST_DIR/dovecot.log")
	escaped=$(find "$home" -xdev -print0 2>/dev/null | xargs -0 -r realpath -m -- 2>/dev/null |
		grep -v -e "^$home\$" -e "^$home/")
	for p in $outside; do [ -e "$p" ] && echo "$p"; done >"$dir/outside-after"
	if [ -z "$new_outside" ] && [ -z "$escaped" ] && cmp -s "$dir/outside-before" "$dir/outside-after"; then
		pass "$label: nothing written outside the user's mail root"
	else
		fail "$label: nothing written outside the user's mail root" \
			"new outside home: $(echo "$new_outside" | head -n 5 | tr '\n' ' '); resolving outside: $(echo "$escaped" | head -n 5 | tr '\n' ' '); $(diff "$dir/outside-before" "$dir/outside-after" | tr '\n' ' ')"
	fi
	if [ -n "$(find "$home" -type l 2>/dev/null)" ]; then
		fail "$label: no symlinks in the mail root" "$(find "$home" -type l | head -n 3)"
	else
		pass "$label: no symlinks in the mail root"
	fi

	# a second run brings nothing new
	migrate "$user" "$hp" >"$dir/run2.out" 2>"$dir/run2.err"
	rc=$?
	dst_dump "$user" "$dir/dump2.json" 2>/dev/null
	if { [ "$rc" = 0 ] || [ "$rc" = 2 ]; } &&
		python3 -c 'import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); sys.exit(a!=b)' \
			"$dir/dump.json" "$dir/dump2.json"; then
		pass "$label: second run exit $rc, destination unchanged"
	else
		fail "$label: second run exit $rc, destination unchanged" "$(grep -a Error "$dir/run2.err" | head -n 2 | tr '\n' '|')"
	fi
	kill "$pid" 2>/dev/null
}
hostile . h1 "hostile names, delimiter '.'"
hostile / h2 "hostile names, delimiter '/'"
HOSTILE_NUL=1 hostile . h3 "hostile names with a NUL byte in a literal"
if python3 "$CHECKS" nul-skipped "$T/hostile3/plan.json"; then
	pass "a name with a NUL byte is skipped, the plan says why"
else
	fail "a name with a NUL byte is skipped, the plan says why" "$(grep -a '"raw' "$T/hostile3/plan.json" | head -c 300)"
fi

# the same hostile names into a Maildir destination (cur/new/tmp reserved)
DST_DIR="$T/dst-maildir"
dst_start --format maildir || die "maildir destination did not start"
hostile . m1 "hostile names into Maildir"
plan_check "Maildir: reserved names cur/new/tmp renamed, with a reason" m1 '{
	"new": {"dest": "new_", "reason~": "reserved"},
	"tmp": {"dest": "tmp_", "reason~": "reserved"},
	"sub.cur": {"dest": "sub/cur_", "reason~": "reserved"},
	"dbox-Mails": {"dest": "dbox-Mails", "action": "import"}}'
DST_DIR=$DST_SDBOX_DIR DST_PORT=$DST_SDBOX_PORT DST_FORMAT=sdbox

# ============================================================ 6. plan
dst_add_user p1 userdb_migrate_source_user=alice
assert_exit NAME="plan: migrate plan exits 0" 0 dst_doveadm \
	-o plugin/migrate_source_port="$COURIER_PORT" migrate plan -u p1
cp "$LAST_OUT" "$T/plan-table.txt"
header=$(head -n 1 "$T/plan-table.txt")
assert_match "plan: table header has folder, dest, special_use, messages, size, action" \
	'^folder +dest +special_use +messages +size +action +reason' "$header"
out=$(python3 "$CHECKS" plan-table "$T/plan-table.txt")
if [ -z "$out" ]; then pass "plan: table rows show dest, special use, count, action"; else fail "plan: table rows" "$out"; fi
plan_json p1 "$COURIER_PORT"
if python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/plan-p1.json" 2>/dev/null; then
	pass "plan: -f json output parses"
else
	fail "plan: -f json output parses" "$(head -c 300 "$T/plan-p1.json")"
fi
plan_check "plan: json rows" p1 '{
	"INBOX": {"dest": "INBOX", "special_use": "", "messages": 5, "action": "import", "reason": ""},
	"INBOX.Sent": {"dest": "Sent", "special_use": "\\Sent", "messages": 3, "action": "import"},
	"INBOX.Clients": {"dest": "Clients", "messages": 2, "action": "import"},
	"INBOX.Drafts": {"dest": "Drafts", "special_use": "\\Drafts", "messages": 1},
	"INBOX.Archive": {"dest": "Archive", "special_use": "\\Archive", "messages": 0}}'
out=$(python3 "$CHECKS" plan-counts "$T/plan-p1.json" "$T/src-courier.json")
if [ -z "$out" ]; then pass "plan: message counts and sizes match the source"; else fail "plan: message counts and sizes" "$out"; fi
untouched "plan: the destination has no folders and no mail after plan" p1
if [ -z "$(find "$(dst_home p1)" -type f 2>/dev/null)" ]; then
	pass "plan: no file at all written in the home"
else
	fail "plan: no file at all written in the home" "$(find "$(dst_home p1)" -type f | head -n 5 | tr '\n' ' ')"
fi

harness_done
