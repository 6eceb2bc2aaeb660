#!/usr/bin/env bash
# A real GNU Mailutils imap4d (Debian's mailutils-imap4d) as the source: a
# minimal IMAP4rev1 server, started per connection by an inetd
# (tests/lib/inetd.py) with a PREAUTH greeting, Maildir folders. What it
# does its own way, and the product must take as it comes:
#   - no CONDSTORE, UIDPLUS, SPECIAL-USE, ENABLE, COMPRESS, STATUS SIZE;
#   - no keywords (PERMANENTFLAGS without \*), flags and dates of APPEND
#     ignored (the seeder sets system flags with STORE afterwards);
#   - LSUB refused ("NO LSUB Cannot unsubscribe"): one warning, no
#     subscriptions;
#   - new mail stays in new/ until a client SELECTs the folder, and until
#     then every read-only session (EXAMINE and STATUS, all that migrate
#     does) numbers it afresh: under a new UIDVALIDITY for some folders,
#     with new UIDs under the same UIDVALIDITY for others. A first run
#     must still get all of it in one go (its EXAMINE sees UIDs above the
#     UIDNEXT of its STATUS), and the second run must match it all by
#     header identity. Then the test settles the folders, as a mail client
#     would, and a second user is migrated from the settled state;
#   - INTERNALDATE taken from the message's own date fields, with the
#     session's clock for what they lack: it changes from session to
#     session, so the comparisons leave dates out.
# Checked: unsettled first and second run; settled first run, second run,
# flag changes, new mail, the state dict deleted: the destination equals
# the source (messages and flags) every time.
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"
if ! command -v imap4d >/dev/null; then
	fail "imap4d: GNU Mailutils imap4d is installed" \
		"imap4d is missing (tests/lib/install-deps.sh installs mailutils-imap4d)"
	harness_done
fi

MU="$T/imap4d"
mkdir -p "$MU/home" "$MU/spool/$MAIL_USER/cur" "$MU/spool/$MAIL_USER/new" \
	"$MU/spool/$MAIL_USER/tmp"
cat >"$MU/imap4d.conf" <<EOF
logging { syslog false; }
mailbox {
  mailbox-type maildir;
  mail-spool "$MU/spool";
}
namespace personal {
  prefix "" {
    directory "$MU/home";
    delimiter "/";
  }
}
EOF
chown -R "$MAIL_USER:$MAIL_USER" "$MU"
python3 "$HARNESS_LIB/inetd.py" --port-file "$MU/port" --pid-file "$MU/pid" \
	--user "$MAIL_USER" --max-lifetime 300 -- \
	imap4d --config-file="$MU/imap4d.conf" --inetd --preauth \
	>"$MU/inetd.out" 2>&1 &
MU_PID=$!
track_pid "$MU_PID"
for _ in $(seq 1 100); do [ -s "$MU/port" ] && break; sleep 0.1; done
MU_PORT=$(cat "$MU/port" 2>/dev/null)
[ -n "$MU_PORT" ] || die "the imap4d inetd did not start: $(tail -n 2 "$MU/inetd.out")"
info "imap4d (inetd, PREAUTH) on 127.0.0.1:$MU_PORT"

mu_tool() {
	local cmd=$1
	shift
	imaptool "$cmd" --host 127.0.0.1 --port "$MU_PORT" --user "$MAIL_USER" \
		--password unused "$@"
}
mu_dump() { mu_tool dump --no-subscriptions >"$T/src.json" || die "dumping imap4d failed"; }

# mu_settle: SELECT every folder read-write once, as a mail client would.
# Until then imap4d leaves new mail in new/, and every read-only session
# (EXAMINE, STATUS: all that migrate does) numbers it afresh under a new
# UIDVALIDITY.
mu_settle() {
	HARNESS_LIB=$HARNESS_LIB bounded 60 python3 - "$MU_PORT" "$MAIL_USER" <<'EOF'
import argparse, os, sys
sys.path.insert(0, os.environ["HARNESS_LIB"])
import imaptool as it
c = it.connect(argparse.Namespace(host="127.0.0.1", port=int(sys.argv[1]),
    user=sys.argv[2], password="unused", ssl=False, cafile=None, timeout=60))
acct = it.Account(c)
for name, flags in acct.list():
    if "\\noselect" not in flags:
        acct.select(name, readonly=False)
        c.close()
c.logout()
EOF
}

# imap4d refuses some corpus messages and keyword flags at APPEND
mu_tool seed --corpus "$CORPUS" --seed 11 --limit 120 --skip-refused \
	--system-flags >"$T/seed.out" 2>&1 || die "seeding imap4d failed: $(tail -n 2 "$T/seed.out")"
info "$(head -n 1 "$T/seed.out")"

dst_start || die "destination server did not start"
# Entwürfe is a localized Drafts name
MAP='{"Entwürfe": "Drafts"}'
equals() { dst_equals "$1" "$2" "$T/src.json" --ignore-subscriptions --ignore-dates --folders-map "$MAP"; }

# --- unsettled: nobody has SELECTed the folders, so every session numbers
# their mail afresh (new UIDVALIDITY for some folders, new UIDs under the
# same UIDVALIDITY for others). User "fresh" sees only this state.
dst_add_user fresh
dst_set_source_password fresh unused
mu_dump
run_clean "imap4d (unsettled): first run exits 0 without an error line" "$MU_PORT" fresh
one_line "imap4d: one warning: LSUB refused, subscriptions not copied" "$T/run.err" \
	'Warning' 'refused LSUB'
# the listing with EXAMINE missed what this session numbered above the
# UIDNEXT of the STATUS before it: it is listed again, not left for later
equals "imap4d (unsettled): destination == source after one run (messages, flags)" fresh
run_clean "imap4d (unsettled): second run exits 0" "$MU_PORT" fresh
n=$(grep -c 'UIDVALIDITY changed' "$T/run.err")
if [ "$n" -gt 0 ]; then
	pass "imap4d (unsettled): $n folders came back under a new UIDVALIDITY"
else
	fail "imap4d (unsettled): folders came back under a new UIDVALIDITY" "no 'UIDVALIDITY changed' line"
fi
assert_eq "imap4d (unsettled): second run imports nothing (header identity)" \
	"$(grep -Ec 'completed: [1-9][0-9]* imported' "$T/run.err")" 0
equals "imap4d (unsettled): destination still == source" fresh

# --- settled, as a mail client leaves the folders: some mail the state
# of "fresh" knew is under new UIDs now, with the same UIDVALIDITY. Its
# old UIDs vanished while new ones appeared: the new ones are matched
# against the destination copies of the vanished ones, not copied again.
mu_settle || die "selecting the imap4d folders failed"
mu_dump
run_clean "imap4d (settling): run after the UIDs settled exits 0" "$MU_PORT" fresh
assert_eq "imap4d (settling): nothing imported (vanished UIDs relinked)" \
	"$(grep -Ec 'completed: [1-9][0-9]* imported' "$T/run.err")" 0
equals "imap4d (settling): destination == source, nothing twice" fresh

# APPEND ignored the flags: set some with STORE, and migrate a second user
mu_tool mutate --seed 3 --flags 40 --system-flags >"$T/mutate.out" 2>&1 ||
	die "setting flags on imap4d failed: $(tail -n 2 "$T/mutate.out")"
dst_add_user mu
dst_set_source_password mu unused
run() { run_clean "$1" "$MU_PORT" mu "${@:2}"; }
mu_dump
run "imap4d: first run exits 0"
equals "imap4d: destination == source (messages, flags)" mu

run "imap4d: second run exits 0"
assert_eq "imap4d: second run imports nothing" \
	"$(grep -Ec 'completed: [1-9][0-9]* imported' "$T/run.err")" 0
equals "imap4d: destination still == source" mu

mu_tool mutate --seed 5 --flags 15 --append 6 --system-flags >"$T/mutate.out" 2>&1 ||
	die "changing imap4d failed: $(tail -n 2 "$T/mutate.out")"
mu_settle || die "selecting the imap4d folders failed"
mu_dump
run "imap4d: run after flag changes and new mail exits 0"
equals "imap4d: flag changes and new mail arrived, nothing twice" mu

rm -f "$(dst_home mu)"/.dovecot-migrate*
run "imap4d: run with the state dict deleted exits 0"
equals "imap4d: state deleted: no duplicates" mu

stop_pid "$MU_PID"
harness_done
