#!/usr/bin/env bash
# A real Cyrus IMAP 3 server (Debian's cyrus-imapd) as the source: another
# implementation than Dovecot, with its own quirks, all of which the
# product must handle as they come:
#   - the "INBOX." personal namespace with '.' as the separator;
#   - folders created in the same second share one UIDVALIDITY, so two
#     source folders mapped onto one destination folder (Drafts and the
#     localized "Entwürfe") both look like the owner of its UIDs;
#   - SPECIAL-USE attributes set by the user (\Archive on "Old Stuff");
#   - CONDSTORE/QRESYNC, COMPRESS=DEFLATE, LITERAL+ from another codebase;
#   - messages it refuses at APPEND ("invalid header") never exist there.
# Checked: the first run, a no-change run, a delta (flags + new mail), the
# state dict deleted, and a UIDVALIDITY change (a folder rebuilt by
# COPY + DELETE + RENAME): the destination equals the source every time,
# with no duplicates and no error line from Dovecot's storage.
# timeout: 400
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"
# master and the tools from cyrus-common; imapd unpacked by install-deps.sh
# (the cyrus-imapd package can't be installed beside dovecot-imapd)
CYRUS_MASTER=/usr/lib/cyrus/bin/master
CYRUS_IMAPD=${CYRUS_IMAPD:-/var/cache/dovecot-migrate-tests/cyrus/usr/lib/cyrus/bin/imapd}
if [ ! -x "$CYRUS_MASTER" ] || [ ! -x "$CYRUS_IMAPD" ] ||
	! command -v saslpasswd2 >/dev/null; then
	fail "cyrus: Cyrus IMAP is installed" \
		"$CYRUS_MASTER, $CYRUS_IMAPD or saslpasswd2 is missing (tests/lib/install-deps.sh installs them)"
	harness_done
fi

# ------------------------------------------------------------ Cyrus

CY="$T/cyrus"
CY_PORT=
CY_PID=

# A private Cyrus: its own config, spool, sasldb (users cyrus = admin,
# alice) and port on 127.0.0.1. master daemonizes and writes its pid.
cyrus_start() {
	local u i
	CY_PORT=$(free_port)
	mkdir -p "$CY/conf" "$CY/spool" "$CY/run"
	cat >"$CY/imapd.conf" <<EOF
configdirectory: $CY/conf
partition-default: $CY/spool
admins: cyrus
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $CY/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
altnamespace: no
unixhierarchysep: no
munge8bit: no
reject8bit: no
idlesocket: $CY/run/idle
lmtpsocket: $CY/run/lmtp
notifysocket: $CY/run/notify
mboxname_lockpath: $CY/run/lock
proc_path: $CY/run/proc
syslog_prefix: dm-test-cyrus
EOF
	cat >"$CY/cyrus.conf" <<EOF
START {
  recover cmd="ctl_cyrusdb -C $CY/imapd.conf -r"
}
SERVICES {
  imap cmd="$CYRUS_IMAPD -C $CY/imapd.conf" listen="127.0.0.1:$CY_PORT" prefork=0
}
EVENTS {
}
EOF
	for u in cyrus alice; do
		printf '%s' "cpw-$u" | saslpasswd2 -f "$CY/sasldb2" -p -c "$u" || return 1
	done
	chown -R cyrus:mail "$CY"
	bounded 30 "$CYRUS_MASTER" -C "$CY/imapd.conf" -M "$CY/cyrus.conf" \
		-p "$CY/run/master.pid" -d </dev/null >"$T/cyrus-master.out" 2>&1 ||
		return 1
	for i in $(seq 1 100); do
		[ -s "$CY/run/master.pid" ] && break
		sleep 0.1
	done
	CY_PID=$(cat "$CY/run/master.pid" 2>/dev/null)
	case "$CY_PID" in '' | *[!0-9]*) return 1 ;; esac
	track_pid "$CY_PID"
	wait_port "$CY_PORT" 20
}

# TERM lets master stop its imapd children; the harness KILLs it as a
# last resort.
cyrus_stop() {
	[ -n "$CY_PID" ] || return 0
	kill -TERM "$CY_PID" 2>/dev/null
	for _ in $(seq 1 100); do
		kill -0 "$CY_PID" 2>/dev/null || break
		sleep 0.1
	done
	stop_pid "$CY_PID"
}

# cy.py CMD ARGS: IMAP steps on the Cyrus source the shared imaptool
# doesn't offer.
cat >"$T/cy.py" <<'EOF'
import argparse, os, sys
sys.path.insert(0, os.environ["HARNESS_LIB"])
import imaptool as it

def conn(user):
    return it.connect(argparse.Namespace(host="127.0.0.1",
        port=int(os.environ["CY_PORT"]), user=user, password="cpw-" + user,
        ssl=False, cafile=None, timeout=60))

cmd = sys.argv[1]
if cmd == "mkuser":
    c = conn("cyrus")
    it.check(c.create("user." + sys.argv[2]), "CREATE user." + sys.argv[2])
elif cmd == "archive":
    # "Old Stuff" carries \Archive; it gets copies of INBOX 1:3
    c = conn("alice")
    it.check(c._simple_command("CREATE", '"INBOX.Old Stuff"',
                               "(USE (\\Archive))"), "CREATE (USE)")
    c.select("INBOX")
    it.check(c.uid("COPY", "1:3", '"INBOX.Old Stuff"'), "UID COPY")
elif cmd == "rebuild":
    # a new UIDVALIDITY and new UIDs for the same messages and flags
    folder = sys.argv[2]
    c = conn("alice")
    old = c.status(folder, "(UIDVALIDITY MESSAGES)")
    it.check(c.create(folder + "-rebuilt"), "CREATE")
    c.select(folder)
    it.check(c.uid("COPY", "1:*", folder + "-rebuilt"), "UID COPY")
    c.close()
    it.check(c.delete(folder), "DELETE")
    it.check(c.rename(folder + "-rebuilt", folder), "RENAME")
    new = c.status(folder, "(UIDVALIDITY MESSAGES)")
    print(old[1][0].decode(), "->", new[1][0].decode())
c.logout()
EOF
export HARNESS_LIB CY_PORT
cy() { CY_PORT=$CY_PORT bounded 60 python3 "$T/cy.py" "$@"; }

cy_dump() {
	imaptool dump --host 127.0.0.1 --port "$CY_PORT" --user alice \
		--password cpw-alice >"$1"
}

# ------------------------------------------------------------ setup

cyrus_start || die "Cyrus did not start: $(tail -n 3 "$T/cyrus-master.out" 2>/dev/null | tr '\n' '|')"
info "Cyrus master pid $CY_PID on 127.0.0.1:$CY_PORT"
cy mkuser alice >"$T/cy.out" 2>&1 || die "creating user.alice failed: $(tail -n 2 "$T/cy.out")"
imaptool seed --host 127.0.0.1 --port "$CY_PORT" --user alice --password cpw-alice \
	--corpus "$CORPUS" --layout courier --seed 11 --skip-refused \
	--skip-folder 'Say "hi"' >"$T/seed.out" 2>&1 ||
	die "seeding Cyrus failed: $(tail -n 2 "$T/seed.out")"
info "$(head -n 2 "$T/seed.out" | cut -c1-200 | tr '\n' ' ')"
cy archive >"$T/cy.out" 2>&1 || die "creating Old Stuff failed: $(tail -n 2 "$T/cy.out")"

dst_start --format ${CYRUS_DST_FORMAT:-maildir} || die "destination server did not start"
dst_add_user alice
dst_set_source_password alice cpw-alice

# Entwürfe is a localized Drafts name, "Old Stuff" carries \Archive
MAP='{"Entwürfe": "Drafts", "Old Stuff": "Archive"}'

migrate() { dst_doveadm -o plugin/migrate_source_port="$CY_PORT" migrate run -u alice "$@"; }

# run NAME [options]: a run that exits 0 with no Error/Panic line in stderr
run() {
	local name=$1
	shift
	migrate "$@" >"$T/run.out" 2>"$T/run.err"
	local rc=$?
	if [ $rc = 0 ] && ! grep -Eq 'Error|Panic|Fatal' "$T/run.err"; then
		pass "$name"
	else
		fail "$name" "exit $rc: $(grep -E 'Error|Panic|Fatal' "$T/run.err" | head -n 3 | tr '\n' '|')"
	fi
}

src_now() { cy_dump "$T/src.json" || die "dumping the Cyrus source failed"; }

# ------------------------------------------------------------ 1. first run

src_now
run "cyrus: first run exits 0 without an error line"
dst_equals "cyrus: destination == source (flags, INTERNALDATE, subscriptions; Entwürfe -> Drafts, \\Archive -> Archive)" \
	alice "$T/src.json" --folders-map "$MAP"
assert_match "cyrus: the \\Archive folder was mapped by its attribute" \
	'^INBOX\.Old Stuff +Archive +completed' "$(grep -F 'INBOX.Old Stuff' "$T/run.out")"
assert_match "cyrus: Entwürfe merged into Drafts (same UIDVALIDITY as Drafts: UIDs partial)" \
	'Drafts +completed .* partial' "$(grep -F 'INBOX.Entw&APw-rfe' "$T/run.out")"

# ------------------------------------------------------------ 2. no change

run "cyrus: second run exits 0"
assert_eq "cyrus: second run imports nothing" \
	"$(grep -Ec 'completed: [1-9][0-9]* imported' "$T/run.err")" 0
dst_equals "cyrus: destination still == source" alice "$T/src.json" --folders-map "$MAP"

# ------------------------------------------------------------ 3. delta

imaptool mutate --host 127.0.0.1 --port "$CY_PORT" --user alice --password cpw-alice \
	--seed 5 --flags 25 --append 12 >"$T/mutate.out" 2>&1 ||
	die "mutating the Cyrus source failed: $(tail -n 2 "$T/mutate.out")"
src_now
run "cyrus: delta run (25 flag changes, 12 new messages) exits 0"
dst_equals "cyrus: delta: destination == source" alice "$T/src.json" --folders-map "$MAP"

# ------------------------------------------------------------ 4. state lost

rm -f "$(dst_home alice)"/.dovecot-migrate*
run "cyrus: run with the state dict deleted exits 0"
dst_equals "cyrus: state deleted: no duplicates, destination == source" \
	alice "$T/src.json" --folders-map "$MAP"

# ------------------------------------------------------------ 5. UIDVALIDITY

cy rebuild INBOX.Work.Projects.2019 >"$T/cy.out" 2>&1 || die "rebuilding INBOX.Work.Projects.2019 failed: $(tail -n 2 "$T/cy.out")"
info "INBOX.Work.Projects.2019 rebuilt: $(tail -n 1 "$T/cy.out")"
src_now
run "cyrus: run after a UIDVALIDITY change exits 0"
dst_equals "cyrus: UIDVALIDITY change: matched by header identity, no duplicates" \
	alice "$T/src.json" --folders-map "$MAP"

# ------------------------------------------------------------ 6. delete mode

imaptool mutate --host 127.0.0.1 --port "$CY_PORT" --user alice --password cpw-alice \
	--seed 6 --flags 5 --expunge 9 >"$T/mutate.out" 2>&1 ||
	die "expunging on the Cyrus source failed: $(tail -n 2 "$T/mutate.out")"
src_now
run "cyrus: run -d after 9 expunges exits 0" -d
dst_equals "cyrus: delete mode: destination == source" alice "$T/src.json" --folders-map "$MAP"

# ------------------------------------------------------------ 7. verify

dst_doveadm -o plugin/migrate_source_port="$CY_PORT" migrate verify -u alice \
	>"$T/verify.out" 2>"$T/verify.err"
assert_eq "cyrus: verify exits 0 (every source message at the destination)" "$?" 0

cyrus_stop
harness_done
