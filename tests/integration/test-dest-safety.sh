#!/usr/bin/env bash
# Destination safety: what a source announces can't crash, exhaust or
# corrupt the destination storage (issue 19 findings 3, 4, 5, 6, 9, 10, 11;
# issue 15 item 4). A scripted source (tests/lib/dest-imapd.py) serves each
# scenario; every scenario runs into every destination format the product
# supports: sdbox, mdbox, Maildir (LAYOUT=fs), Maildir++ and mbox.
#
#  1. UIDs 4294967294 and 4294967295: no panic, first run or re-run; the
#     storage assigns those UIDs (uids=partial), no duplicates
#  2. EXISTS 4000000000 for two messages: nothing is sized from it (the run
#     is capped at 1 GiB of address space), both messages arrive
#  3. folder names too long for the storage (251-255 bytes; mbox needs room
#     for ".lock", Maildir++ for "." and the parent's name) are shortened
#     before lib-storage sees them: no panic, no "Not found", exit 0, and
#     no worker waits on a dead worker's lock
#  4. names the storage reserves (dovecot-uidlist, dovecot.index, cur, ...)
#     are renamed; INBOX stays usable (a message can be saved into it)
#  5. a literal bigger than migrate_max_message_size (announced small) is
#     skipped as too-big, drained, never imported
#  6. 60k messages that never come (60k items) and a 20k-keyword message:
#     bounded time; keywords capped with a warning
#  7. full file system (sdbox, mdbox, Maildir on a 2 MB tmpfs): the
#     item's text is the storage's error, not garbage (issue 15 item 4);
#     the run keeps what fit, stops with 73 and one line of its own, the
#     rest is destination-full; with room again the next run completes
#     (issue 15 item 12)
# timeout: 420
DOVEADM_TIMEOUT=${DOVEADM_TIMEOUT:-90} IMAPTOOL_TIMEOUT=${IMAPTOOL_TIMEOUT:-60}
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"
DEST_IMAPD="$HARNESS_LIB/dest-imapd.py"
FORMATS=${FORMATS:-"sdbox mdbox maildir maildirpp mbox"}
# SECTIONS=135 runs sections 1, 3 and 5 only
SECTIONS=${SECTIONS:-1234567}
want() { case "$SECTIONS" in *$1*) return 0 ;; esac; return 1; }

dst_start || die "destination server did not start"

fmt_location() {
	case "$1" in
	sdbox) echo "sdbox:~/mail" ;;
	mdbox) echo "mdbox:~/mdbox" ;;
	maildir) echo "maildir:~/Maildir:LAYOUT=fs" ;;
	maildirpp) echo "maildir:~/Maildir" ;;
	mbox) echo "mbox:~/mail:INBOX=~/mail/inbox" ;;
	esac
}

# scenario NAME JSON: start a dest-imapd serving JSON; SCEN_PORT, SCEN_DIR
SCEN_N=0
scenario() {
	local name=$1 json=$2 pid i
	SCEN_N=$((SCEN_N + 1))
	SCEN_DIR="$T/scen$SCEN_N-$name"
	mkdir -p "$SCEN_DIR"
	printf '%s\n' "$json" >"$SCEN_DIR/scenario.json"
	(
		exec </dev/null >"$SCEN_DIR/server.out" 2>&1
		[ -n "${HARNESS_OUT:-}" ] && eval "exec $HARNESS_OUT>&-"
		exec python3 "$DEST_IMAPD" --port-file "$SCEN_DIR/port" \
			--scenario "$SCEN_DIR/scenario.json" --log "$SCEN_DIR/imap.log" \
			--max-seconds 200
	) &
	pid=$!
	track_pid "$pid"
	for i in $(seq 1 100); do [ -s "$SCEN_DIR/port" ] && break; sleep 0.05; done
	SCEN_PORT=$(cat "$SCEN_DIR/port" 2>/dev/null)
	[ -n "$SCEN_PORT" ] || die "$name: dest-imapd did not start: $(tail -n 3 "$SCEN_DIR/server.out")"
}

# fmt_userdb FORMAT: the userdb fields that give a user that destination
# format (2.3: mail; 2.4 has no mail_location: mail_driver, mail_path, ...)
fmt_userdb() {
	if ! dv24; then
		echo "userdb_mail=$(fmt_location "$1")"
		return
	fi
	case "$1" in
	sdbox) echo "userdb_mail_driver=sdbox userdb_mail_path=~/mail" ;;
	mdbox) echo "userdb_mail_driver=mdbox userdb_mail_path=~/mdbox" ;;
	maildir) echo "userdb_mail_driver=maildir userdb_mail_path=~/Maildir userdb_mailbox_list_layout=fs" ;;
	maildirpp) echo "userdb_mail_driver=maildir userdb_mail_path=~/Maildir userdb_mailbox_list_layout=maildir++" ;;
	mbox) echo "userdb_mail_driver=mbox userdb_mail_path=~/mail userdb_mail_inbox_path=~/mail/inbox" ;;
	esac
}

# new_user NAME FMT: a destination user whose mail is in format FMT
new_user() {
	# shellcheck disable=SC2046 # one word per field
	dst_add_user "$1" $(fmt_userdb "$2")
	dst_set_source_password "$1" anything
}

# fmt_on_disk USER FORMAT: the user's mail is stored in FORMAT (a format
# setting the userdb drops would leave the default format in ~/mail)
fmt_on_disk() {
	local h
	h=$(dst_home "$1")
	case "$2" in
	sdbox) [ -d "$h/mail/mailboxes/INBOX/dbox-Mails" ] ;;
	mdbox) [ -d "$h/mdbox/storage" ] ;;
	maildir) [ -d "$h/Maildir/cur" ] && [ -d "$h/Maildir/Top/cur" ] ;;
	maildirpp) [ -d "$h/Maildir/cur" ] && [ -d "$h/Maildir/.Top/cur" ] ;;
	mbox) [ -f "$h/mail/inbox" ] && [ -f "$h/mail/Top" ] ;;
	esac
}

# drun USER [run options...]: migrate run against the scenario's server,
# with the address space capped at DRUN_VMEM KiB (1 GiB) and doveadm's -o
# settings from DRUN_SET; RUN_RC, $T/run.out, $T/run.err, peak RSS (KiB) in
# RUN_RSS
DRUN_SET=()
DRUN_VMEM=1048576
drun() {
	local user=$1
	shift
	dst_doveadm_argv
	(
		ulimit -v "$DRUN_VMEM"
		exec timeout -k 5 "$DOVEADM_TIMEOUT" \
			/usr/bin/time -f %M -o "$T/run.rss" "${DST_DOVEADM[@]}" \
			-o plugin/migrate_source_port="$SCEN_PORT" "${DRUN_SET[@]}" \
			migrate run -u "$user" "$@"
	) >"$T/run.out" 2>"$T/run.err"
	RUN_RC=$?
	RUN_RSS=$(tail -n 1 "$T/run.rss" 2>/dev/null)
}

# run_ok LABEL: the last drun exited 0, no Panic/Fatal/Error, no signal
run_ok() {
	if [ "$RUN_RC" = 0 ] && ! grep -Eq 'Panic|Fatal|Error' "$T/run.err"; then
		pass "$1"
	else
		fail "$1" "exit $RUN_RC: $(grep -E 'Panic|Fatal|Error' "$T/run.err" | head -n 3 | tr '\n' '|')"
	fi
}

# msg_count USER FOLDER: messages in the destination folder
msg_count() {
	dst_doveadm -f flow mailbox status -u "$1" messages "$2" 2>/dev/null |
		sed -n 's/.*messages=//p'
}

folder_uids() {
	dst_doveadm migrate status -u "$1" 2>/dev/null | awk -v f="$2" '$1 == f { print }'
}

# ------------------------------------------------------------ 1. extreme UIDs
if want 1; then
scenario uids '{"folders": [
 {"name": "INBOX", "uids": [1, 2, 4294967294, 4294967295]},
 {"name": "Top", "uids": [4294967295]}]}'
for fmt in $FORMATS; do
	u=uid$fmt
	new_user "$u" "$fmt"
	drun "$u"
	run_ok "uids $fmt: a run with UIDs 4294967294/5 exits 0, no panic"
	check "uids $fmt: the mail is in the $fmt format (the user's format applied)" \
		fmt_on_disk "$u" "$fmt"
	assert_eq "uids $fmt: all 4 INBOX messages arrived" 4 "$(msg_count "$u" INBOX)"
	assert_eq "uids $fmt: the Top message arrived" 1 "$(msg_count "$u" Top)"
	# (Maildir and mbox can't take the source's UIDVALIDITY: "no")
	assert_match "uids $fmt: INBOX doesn't report uids=yes" ' (partial|no) ' "$(folder_uids "$u" INBOX)"
	drun "$u"
	run_ok "uids $fmt: the re-run exits 0, no panic"
	assert_eq "uids $fmt: no duplicates after the re-run" 4 "$(msg_count "$u" INBOX)"
done

fi

# ------------------------------------------------------------ 2. EXISTS 4e9
if want 2; then
scenario exists '{"folders": [
 {"name": "INBOX", "uids": [1, 2], "exists": 4000000000,
  "seq_base": 3999999998}]}'
for fmt in sdbox maildir; do
	u=exists$fmt
	new_user "$u" "$fmt"
	drun "$u"
	if grep -q 'Out of memory' "$T/run.err"; then
		fail "exists $fmt: no allocation sized from EXISTS 4000000000" "$(grep 'Out of memory' "$T/run.err" | head -n 1)"
	else
		pass "exists $fmt: no allocation sized from EXISTS 4000000000"
	fi
	assert_eq "exists $fmt: both messages arrived" 2 "$(msg_count "$u" INBOX)"
done

fi

# total_msgs USER: messages in all of USER's destination folders
total_msgs() {
	dst_doveadm -f flow mailbox status -u "$1" messages '*' 2>/dev/null |
		sed -n 's/.*messages=//p' | awk '{ n += $1 } END { print n + 0 }'
}

# folders_json NAME...: the scenario's folder list, one message each
folders_json() {
	python3 -c '
import json, sys
print(json.dumps({"folders": [{"name": n, "uids": [1]} for n in sys.argv[1:]]}))' "$@"
}


# ------------------------------------------------------------ 3. long names
if want 3; then
# 250 bytes fit everywhere; mbox's dotlock needs 5 more, a Maildir++ folder
# is one directory "." + the whole name; five other folders make the run
# use parallel workers (a worker that died held the destination lock)
L251=$(printf 'L%.0s' $(seq 1 251)); L255=$(printf 'N%.0s' $(seq 1 255))
L250=$(printf 'P%.0s' $(seq 1 250)); L300=$(printf 'Q%.0s' $(seq 1 300))
L254=$(printf 'R%.0s' $(seq 1 254))
scenario longnames "$(folders_json INBOX "$L251" "$L255" "$L250/kid" "$L300" \
	"$L254/$L251" a1 a2 a3 a4 a5)"
for fmt in $FORMATS; do
	u=long$fmt
	new_user "$u" "$fmt"
	start=$(date +%s)
	drun "$u"
	took=$(($(date +%s) - start))
	run_ok "long names $fmt: 251-300-byte names: exit 0, no panic"
	if [ "$took" -lt 60 ]; then
		pass "long names $fmt: no worker waits on a dead one ($took s)"
	else
		fail "long names $fmt: no worker waits on a dead one" "the run took $took s"
	fi
	# (no folder with mail has subfolders: mbox can't hold that)
	# Maildir++: "$L254/$L251" can't fit in one directory name: skipped
	want=11
	[ "$fmt" = maildirpp ] && want=10
	assert_eq "long names $fmt: every folder's message arrived" "$want" "$(total_msgs "$u")"
	drun "$u"
	run_ok "long names $fmt: the re-run exits 0"
	assert_eq "long names $fmt: no duplicates after the re-run" "$want" "$(total_msgs "$u")"
done

fi

# ------------------------------------------------------------ 4. reserved names
if want 4; then
scenario reserved "$(folders_json INBOX dovecot-uidlist.lock dovecot.index \
	dovecot.index.log dovecot-keywords dovecot-uidlist dovecot-uidvalidity \
	dovecot.list.index dovecot.mailbox.log subscriptions maildirfolder \
	cur new tmp dbox-Mails Foo Foo.lock .imap INBOX/dovecot.index INBOX/cur \
	Sub/dovecot-uidlist Sub/new Sub/tmp)"
for fmt in $FORMATS; do
	u=resv$fmt
	new_user "$u" "$fmt"
	drun "$u"
	run_ok "reserved names $fmt: exit 0, no error"
	assert_eq "reserved names $fmt: every folder's message arrived" 23 "$(total_msgs "$u")"
	printf 'From: a@b\r\nSubject: after\r\nMessage-ID: <after-%s@t>\r\n\r\nx\r\n' "$fmt" |
		dst_doveadm save -u "$u" -m INBOX 2>"$T/save.err"
	assert_eq "reserved names $fmt: INBOX still takes mail" 2 "$(msg_count "$u" INBOX)"
	if dst_doveadm force-resync -u "$u" '*' >/dev/null 2>"$T/resync.err" &&
		! grep -Eq 'Error|Panic' "$T/resync.err"; then
		pass "reserved names $fmt: the storage resyncs cleanly"
	else
		fail "reserved names $fmt: the storage resyncs cleanly" "$(head -n 3 "$T/resync.err" | tr '\n' '|')"
	fi
	drun "$u"
	run_ok "reserved names $fmt: the re-run exits 0"
	assert_eq "reserved names $fmt: no duplicates after the re-run" 24 "$(total_msgs "$u")"
done

fi

# ------------------------------------------------------------ 5. literal cap
if want 5; then
# RFC822.SIZE says ~250 bytes, the literal is 40 MB: over a 1M cap
scenario literal '{"folders": [
 {"name": "INBOX", "uids": [1, 2, 3], "size_lie": {"2": 40000000}}]}'
DRUN_SET=(-o plugin/migrate_max_message_size=1M)
for fmt in sdbox mdbox maildir mbox; do
	u=lit$fmt
	new_user "$u" "$fmt"
	drun "$u"
	assert_eq "literal cap $fmt: the run ends with items (exit 2)" 2 "$RUN_RC"
	assert_eq "literal cap $fmt: the 40 MB literal is not imported" 2 "$(msg_count "$u" INBOX)"
	dst_doveadm migrate report -u "$u" >"$T/report.out" 2>&1
	assert_match "literal cap $fmt: report names it too-big with the literal's size" \
		'too-big.*40000000 bytes \(2[0-9]+ announced\)' "$(grep -E '^ *INBOX +2 ' "$T/report.out")"
	if [ -n "$RUN_RSS" ] && [ "$RUN_RSS" -lt 65536 ]; then
		pass "literal cap $fmt: drained without buffering (peak RSS $RUN_RSS KiB)"
	else
		fail "literal cap $fmt: drained without buffering" "peak RSS ${RUN_RSS:-?} KiB"
	fi
done
DRUN_SET=()

fi

# ------------------------------------------------------------ 7. full disk
if want 7; then
# 3 folders of 30 messages of 32 KiB (2.9 MB) into a 2 MB tmpfs; the state
# (in the home) stays on a file system with room. No address space cap:
# this section also runs under ASan (SAN_TESTS=dest-safety SECTIONS=7
# tests/leg-sanitizers.sh), whose shadow memory needs terabytes of it.
DRUN_VMEM=unlimited
scenario full '{"folders": [
 {"name": "INBOX", "uid_range": [1, 30], "pad": 32768},
 {"name": "Alpha", "uid_range": [1, 30], "pad": 32768},
 {"name": "Beta", "uid_range": [1, 30], "pad": 32768}]}'
# printable NAME FILE [tabescaped]: FILE is UTF-8 without control
# characters but tab and newline (tabescaped: after undoing the dict's
# \001 escapes)
printable() {
	local bad
	bad=$(python3 -c '
import re, sys, unicodedata
data = open(sys.argv[1], "rb").read()
if sys.argv[2:] == ["tabescaped"]:
    esc = {b"1": b"\x01", b"t": b"\t", b"r": b"\r", b"n": b"\n"}
    data = re.sub(rb"\x01([1trn])", lambda m: esc[m.group(1)], data)
try:
    text = data.decode("utf-8")
except UnicodeDecodeError as e:
    print("not UTF-8 at byte %d: %r" % (e.start, data[max(0, e.start - 20):e.start + 20]))
    sys.exit()
bad = [c for c in text if c not in "\t\n" and unicodedata.category(c)[0] == "C"]
if bad:
    i = text.index(bad[0])
    print("control characters: %r" % text[max(0, i - 40):i + 20])' "$2" "${3:-}")
	if [ -z "$bad" ]; then pass "$1"; else fail "$1" "$bad"; fi
}
for fmt in ${FULL_FORMATS:-sdbox mdbox maildir}; do
	u=full$fmt
	mnt=$T/full-$fmt
	if ! mount_tmpfs "$mnt" 2m; then
		fail "full $fmt: a 2 MB tmpfs" "mount failed"
		continue
	fi
	case $fmt in
	sdbox) loc=(sdbox "$mnt/mail") ;;
	mdbox) loc=(mdbox "$mnt/mdbox") ;;
	maildir) loc=(maildir "$mnt/Maildir" fs) ;;
	esac
	# (2.4 has no "mail" location setting: a userdb "mail" field is
	# dropped there, and the mail would land in the home, off the tmpfs)
	if dv24; then
		dst_add_user "$u" "userdb_mail_driver=${loc[0]}" "userdb_mail_path=${loc[1]}" \
			${loc[2]:+"userdb_mailbox_list_layout=${loc[2]}"}
	else
		dst_add_user "$u" "userdb_mail=${loc[0]}:${loc[1]}${loc[2]:+:LAYOUT=${loc[2]}}"
	fi
	dst_set_source_password "$u" anything
	drun "$u"
	info "full $fmt: exit $RUN_RC, $(df -k "$mnt" | awk 'NR == 2 {print $4}') KiB left, $(grep -c . "$T/run.err") stderr lines"
	cp "$T/run.err" "$T/full-$fmt.err"
	left=$(df -k "$mnt" | awk 'NR == 2 {print $4}')
	if [ "$left" -lt 256 ]; then
		pass "full $fmt: the mail went to the tmpfs and filled it ($left KiB left)"
	else
		fail "full $fmt: the mail went to the tmpfs and filled it" "$left KiB left"
	fi
	assert_eq "full $fmt: the run stops with 73 (a full disk isn't fixed by retrying soon)" 73 "$RUN_RC"
	if grep -Eq 'Panic|Fatal' "$T/run.err"; then
		fail "full $fmt: no panic" "$(grep -E 'Panic|Fatal' "$T/run.err" | head -n 2 | tr '\n' '|')"
	else
		pass "full $fmt: no panic"
	fi
	# not one line per message (85 on Maildir before): per folder that hit
	# the wall (parallel workers can hit it in more than one), lib-storage
	# logs 2-3 lines of its own for a refused save, a save is refused at
	# most twice (in a batch, then alone); the run says it once. Where the
	# disk fills while lib-index writes its cache, Dovecot logs that write
	# too (seen on 2.4 mdbox): storage lines of the same folder, hence 8.
	worst=$(sed -n -e 's/.*Error: Mailbox \([^:]*\): Saving mail[^:]*: .*/\1/p' \
		-e 's/.*Error: Mailbox \([^:]*\): write() failed with file .*: No space left on device.*/\1/p' \
		"$T/run.err" | sort | uniq -c | sort -rn | awk 'NR == 1 {print $1 + 0}')
	if [ "${worst:-0}" -le 8 ]; then
		pass "full $fmt: at most 8 storage error lines per folder (${worst:-0})"
	else
		fail "full $fmt: at most 8 storage error lines per folder" "$worst: $(grep Error "$T/run.err" | head -n 3 | tr '\n' '|')"
	fi
	assert_eq "full $fmt: no other error lines" "" \
		"$(grep Error "$T/run.err" | grep -v -e 'Error: Mailbox [^:]*: Saving mail[^:]*: ' \
			-e 'Error: Mailbox [^:]*: write() failed with file .*: No space left on device' \
			-e 'Error: migrate: ' | head -n 3)"
	assert_eq "full $fmt: one error line of the run's own" 1 "$(grep -c 'Error: migrate:' "$T/run.err")"
	assert_match "full $fmt: the run's error says the file system is full and what to do" \
		'migrate: Destination file system full in .*(No space left on device|Not enough disk space).*What fit is kept.*destination-full.*free space' \
		"$(grep Error "$T/run.err" | tail -n 1)"
	printable "full $fmt: stderr is printable UTF-8" "$T/run.err"
	dst_doveadm -f tab migrate report -u "$u" >"$T/report.out" 2>&1
	assert_match "full $fmt: report has a destination-full item with the storage's error" \
		'destination-full.*(No space left on device|Not enough disk space)' "$(cat "$T/report.out")"
	printable "full $fmt: report is printable UTF-8" "$T/report.out"
	printable "full $fmt: the stored state is printable UTF-8" "$(dst_home "$u")/.dovecot-migrate.dict" tabescaped
	assert_match "full $fmt: the stored state has the storage's error" \
		'No space left on device|Not enough disk space' "$(cat "$(dst_home "$u")/.dovecot-migrate.dict")"
	# room again: the next run imports the rest (destination-full items
	# are retried every pass), nothing twice
	mount -o remount,size=8m "$mnt"
	drun "$u"
	assert_eq "full $fmt: with room again the next run exits 0" 0 "$RUN_RC"
	assert_eq "full $fmt: all 90 messages arrived, none twice" 90 "$(total_msgs "$u")"
done

fi

harness_done
