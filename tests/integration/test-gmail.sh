#!/usr/bin/env bash
# Gmail (X-GM-EXT-1) end to end, against the Gmail IMAP emulator
# tests/lib/gmail-imapd.py serving one account built from ../shared/corpus:
#
#   - labelled mail: \Inbox only, \Inbox + a user label (one message, two
#     folders), two user labels (one with a non-ASCII name), a label nested
#     two levels (its parents are plain empty Gmail folders), a label with
#     a space, \Sent, \Draft
#   - archived-only mail (only in [Gmail]/All Mail): no label at all, only
#     \Important and/or \Starred (virtual folders, so still archived-only)
#   - one message in [Gmail]/Trash and one in [Gmail]/Spam
#   - the same mail delivered twice (two spec entries from the same corpus
#     file: identical headers and body, their own X-GM-MSGIDs), one copy in
#     the Inbox, the other archived
#
# First the emulator itself is checked (imaptool reads the Gmail view of
# the spec back; X-GM-* attributes, pipelining, SASL). Then "doveadm
# migrate run" must give: INBOX, the labels ('/' hierarchy), Sent, Drafts,
# every archived-only message exactly once in Archive, nothing labelled
# duplicated into Archive, no Important/Starred/Spam/Trash folder, flags
# (\Flagged for starred) and INTERNALDATE preserved. A second run imports
# nothing; "migrate plan -f json" shows All Mail -> Archive and the skipped
# folders with their reasons. The same account with Google's documented
# label syntax (bare \Inbox) and without SASL-IR gives the same result.
# Last, a delta pass: after a first run the account changes in Gmail (the
# emulator reloads its spec on SIGHUP) and "migrate run -d" follows.
#
# GMAILD_ARGS=... passes extra options to the emulator (e.g. --no-gm-ext to
# see what the engine makes of a Gmail-like server without X-GM-EXT-1).
# timeout: 240
DOVEADM_TIMEOUT=${DOVEADM_TIMEOUT:-60} IMAPTOOL_TIMEOUT=${IMAPTOOL_TIMEOUT:-60}
. "$(dirname "$0")/../lib/harness.sh"

# same_dumps NAME A.json B.json: the two dumps are identical
same_dumps() {
	if python3 "$CHECKS" same-dumps "$2" "$3" 2>/dev/null; then
		pass "$1"
	else
		fail "$1" "$(imaptool compare "$2" "$3" 2>&1 | head -n 5 | tr '\n' ' ')"
	fi
}

plugin_built || info "the plugin is not built: the migrate steps will fail"
GMAILD="$HARNESS_LIB/gmail-imapd.py"
export HARNESS_LIB CORPUS
G="$T/gmail"
mkdir -p "$G"
GM_USER=alice@gmail.com
GM_PASS=gm-app-password-1

# ------------------------------------------------------------ the checks
# tests/lib/checks/gmail.py: the account (spec), the emulator, the
# destination, the rawlog, the plan, the delta pass (see its docstring)
CHECKS="$HARNESS_LIB/checks/gmail.py"
export GMAIL_DIR="$G"

# gm CMD ARGS...: run a command of gmail.py, turn its CHECK lines into PASS/FAIL
gm() {
	local out rc line st name detail
	out=$(timeout --foreground -k 5 60 python3 "$CHECKS" "$@" 2>&1)
	rc=$?
	while IFS= read -r line; do
		case "$line" in
		CHECK*)
			IFS=$'\t' read -r _ st name detail <<<"$line"
			if [ "$st" = ok ]; then pass "$name"; else fail "$name" "$detail"; fi
			;;
		INFO*) info "${line#INFO	}" ;;
		*) [ -n "$line" ] && info "gmail.py: $line" ;;
		esac
	done <<<"$out"
	return $rc
}

rawlog_size() { stat -c %s "$G/imap.log" 2>/dev/null || echo 0; }

# ------------------------------------------------------------ the account
gm spec || die "could not build the Gmail spec from $CORPUS"

# start_gmaild DIR SPEC [options...]: the emulator serving SPEC on a free
# port, its files in DIR (port, pid, imap.log, server.out); sets GM_PORT.
# Stopped by pid: at the end of the test, and by the harness's trap.
start_gmaild() {
	local dir=$1 spec=$2
	shift 2
	mkdir -p "$dir"
	# detached from our stdout (and run-all.sh's pipe): only its files
	(
		exec </dev/null >"$dir/server.out" 2>&1
		[ -n "${HARNESS_OUT:-}" ] && eval "exec $HARNESS_OUT>&-"
		exec python3 "$GMAILD" --spec "$spec" --port 0 --port-file "$dir/port" \
			--pid-file "$dir/pid" --rawlog "$dir/imap.log" --max-lifetime 220 "$@"
	) &
	track_pid $!
	for _ in $(seq 1 100); do [ -s "$dir/port" ] && [ -s "$dir/pid" ] && break; sleep 0.05; done
	GM_PORT=$(cat "$dir/port" 2>/dev/null)
	[ -n "$GM_PORT" ] || return 1
	info "Gmail emulator on 127.0.0.1:$GM_PORT (pid $(cat "$dir/pid")) $*"
}

# shellcheck disable=SC2086 # GMAILD_ARGS is a list of options
start_gmaild "$G" "$G/spec.json" ${GMAILD_ARGS:-} ||
	die "the Gmail emulator did not start: $(tail -n 5 "$G/server.out")"

# ------------------------------------------------------------ the emulator
gm selfcheck "$GM_PORT"
if imaptool dump --host 127.0.0.1 --port "$GM_PORT" --user "$GM_USER" \
	--password "$GM_PASS" >"$G/src-dump.json" 2>"$G/src-dump.err"; then
	gm srcview "$G/src-dump.json"
else
	fail "gmail emulator: imaptool dump" "$(tail -n 2 "$G/src-dump.err" | tr '\n' ' ')"
fi

# ------------------------------------------------------------ migrate
dst_start || die "destination server did not start"
dst_add_user gm userdb_migrate_source_user="$GM_USER"
dst_set_source_password gm "$GM_PASS"
mkdir -p "$G/rawlog"
chown "$MAIL_USER:$MAIL_USER" "$G/rawlog"

migrate_gm() {
	dst_doveadm -o plugin/migrate_source_host=127.0.0.1 \
		-o plugin/migrate_source_port="$GM_PORT" -o plugin/migrate_source_ssl=no \
		-o plugin/migrate_source_rawlog_dir="$G/rawlog" "$@"
}

start=$(rawlog_size)
assert_exit NAME="gmail: migrate run exits 0" 0 migrate_gm migrate run -u gm
cp "$LAST_ERR" "$G/run1.err"
gm logcheck "$G/imap.log" "$start" readonly
if dst_dump gm "$G/dst1.json" 2>"$G/dump.err"; then
	gm dst "$G/dst1.json"
else
	fail "gmail: destination dump" "$(tail -n 1 "$G/dump.err")"
fi

start=$(rawlog_size)
assert_exit NAME="gmail: second run exits 0" 0 migrate_gm migrate run -u gm
gm logcheck "$G/imap.log" "$start" nobodies
dst_dump gm "$G/dst2.json" 2>/dev/null
same_dumps "gmail: second run imports nothing (destination unchanged)" \
	"$G/dst1.json" "$G/dst2.json"

migrate_gm -f json migrate plan -u gm >"$G/plan.json" 2>"$G/plan.err"
rc=$?
if [ $rc = 0 ]; then
	gm plan "$G/plan.json"
else
	fail "gmail: migrate plan -f json exits 0" "exit $rc: $(head -c 300 "$G/plan.err")"
fi

# ------------------------------------------------------------ documented syntax
# Google's documentation shows system labels as bare \Inbox (the service
# sends "\\Inbox"); and a server without SASL-IR makes AUTHENTICATE go
# through a continuation. Same account, another destination user: the
# result must be the same.
kill "$(cat "$G/pid")" 2>/dev/null
start_gmaild "$G/doc" "$G/spec.json" --system-labels atom --no-sasl-ir ||
	die "the second Gmail emulator did not start: $(tail -n 5 "$G/doc/server.out")"
dst_add_user gm2 userdb_migrate_source_user="$GM_USER"
dst_set_source_password gm2 "$GM_PASS"
assert_exit NAME="gmail (bare \\Inbox labels as in Google's docs, no SASL-IR): migrate run exits 0" \
	0 migrate_gm migrate run -u gm2
if grep -qF 'X-GM-LABELS (\Inbox)' "$G/doc/imap.log" &&
	grep -q '\] S: + $' "$G/doc/imap.log"; then
	dst_dump gm2 "$G/dst-doc.json" 2>/dev/null
	same_dumps "gmail (bare \\Inbox labels, no SASL-IR): the destination is the same as with Gmail's quoted labels" \
		"$G/dst1.json" "$G/dst-doc.json"
else
	fail "gmail (bare \\Inbox labels, no SASL-IR): the emulator sent bare labels and a SASL continuation" \
		"not in $G/doc/imap.log"
fi

# migrate_dedupe_across_folders on Gmail compares X-GM-MSGIDs
dst_add_user gm4 userdb_migrate_source_user="$GM_USER"
dst_set_source_password gm4 "$GM_PASS"
assert_exit NAME="gmail dedupe: migrate run with migrate_dedupe_across_folders=yes exits 0" \
	0 migrate_gm -o plugin/migrate_dedupe_across_folders=yes migrate run -u gm4
if dst_dump gm4 "$G/dst-dedupe.json" 2>"$G/dump.err"; then
	gm dedupe "$G/dst-dedupe.json"
else
	fail "gmail dedupe: destination dump" "$(tail -n 1 "$G/dump.err")"
fi

kill "$(cat "$G/doc/pid")" 2>/dev/null

# ------------------------------------------------------------ delta pass
# Pre-stage, then the account changes in Gmail (a message archived, new
# mail in the Inbox, new mail archived by a filter), then the final delta
# with -d, as in the runbook.
mkdir -p "$G/delta"
cp "$G/spec.json" "$G/model.json" "$G/delta/"
start_gmaild "$G/delta" "$G/delta/spec.json" ||
	die "the third Gmail emulator did not start: $(tail -n 5 "$G/delta/server.out")"
dst_add_user gm3 userdb_migrate_source_user="$GM_USER"
dst_set_source_password gm3 "$GM_PASS"
assert_exit NAME="gmail delta: first run exits 0" 0 migrate_gm migrate run -u gm3
gm mutate "$G/delta" || die "could not change the Gmail spec"
kill -HUP "$(cat "$G/delta/pid")"
for _ in $(seq 1 100); do
	grep -q "reloaded the spec (generation 2)" "$G/delta/imap.log" && break
	sleep 0.05
done
grep -q "reloaded the spec (generation 2)" "$G/delta/imap.log" ||
	die "the Gmail emulator did not reload its spec: $(tail -n 3 "$G/delta/server.out")"
assert_exit NAME="gmail delta: 'migrate run -d' after the changes exits 0" 0 \
	migrate_gm migrate run -d -u gm3
if dst_dump gm3 "$G/dst-delta.json" 2>"$G/dump.err"; then
	gm delta "$G/delta" "$G/dst-delta.json"
else
	fail "gmail delta: destination dump" "$(tail -n 1 "$G/dump.err")"
fi

kill "$(cat "$G/delta/pid")" 2>/dev/null
harness_done
