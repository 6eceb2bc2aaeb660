#!/usr/bin/env bash
# A server upgraded from Dovecot 2.3 to 2.4 in the middle of a migration:
# the state the 2.3 build wrote stays readable and the 2.4 build resumes
# without a duplicate.
#
# Two phases, one on each version (tests/leg-trixie.sh runs both):
#  1. on 2.3: a complete first pass; then new mail in two source folders
#     and a second pass, SIGKILLed once part of the new mail is imported.
#     With DM_UPGRADE_SAVE=DIR the source's and the destination's storage
#     (the state dict is in the destination home), the source's dumps and
#     migrate status are saved to DIR. On the host leg this phase runs alone.
#  2. on 2.4, with DM_UPGRADE_FROM=DIR (what phase 1 saved): a 2.4 source
#     and a 2.4 destination on copies of that storage. 2.4's migrate status
#     prints what 2.3's printed; the resumed run exits 0 and finds every
#     folder without new mail unchanged (that is the 2.3 state speaking: a
#     lost state makes them "completed", matched again by identity); the
#     destination equals the source (no duplicate), the mail 2.3 wrote is
#     untouched, and a further run writes nothing.
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"

LIMIT=100
NEW_FOLDERS=(INBOX Work)

# status_json USER OUT: migrate status -f json
status_json() {
	dst_doveadm -f json migrate status -u "$1" >"$2" 2>"$T/status.err"
}

# run_state FILE: the run row's state in a status JSON
run_state() {
	python3 -c 'import json, sys
print([r["state"] for r in json.load(open(sys.argv[1])) if r["folder"] == "*"][0])' "$1" 2>&1
}

# count_messages DUMP: messages in an imaptool dump
count_messages() {
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1])); d.pop("subscriptions")
print(sum(len(b["messages"]) for b in d.values()))' "$1"
}

# ------------------------------------------------------------ phase 1 (2.3)
phase1() {
	src_start || die "source server did not start"
	dst_start || die "destination server did not start"
	src_seed alice --seed 23 --limit "$LIMIT" >"$T/seed.out" 2>&1 ||
		die "seeding failed: $(tail -n 3 "$T/seed.out")"
	src_dump alice "$T/src0.json" || die "source dump failed"

	assert_exit NAME="2.3: first pass exits 0" 0 dst_doveadm migrate run -u alice
	local n0 n total f
	n0=$(dst_mail_files alice | wc -l)

	# new mail in two folders, then a slow second pass, killed once some
	# of it is written
	local folders=()
	for f in "${NEW_FOLDERS[@]}"; do folders+=(--folder "$f"); done
	check "2.3: new mail on the source" src_mutate alice --seed 5 --append 16 "${folders[@]}"
	src_dump alice "$T/src.json" || die "source dump failed"
	src_dump alice "$T/src-uids.json" --uids || die "source dump failed"
	total=$(count_messages "$T/src.json")
	dst_doveadm_argv
	"${DST_DOVEADM[@]}" -o plugin/migrate_max_messages_per_second=3 \
		-o plugin/migrate_parallel_folders=1 -o plugin/migrate_batch_messages=1 \
		migrate run -u alice >"$T/run2.out" 2>"$T/run2.err" &
	local pid=$!
	track_pid "$pid"
	for _ in $(seq 1 300); do
		n=$(dst_mail_files alice | wc -l)
		[ "$n" -ge $((n0 + 2)) ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	n=$(dst_mail_files alice | wc -l)
	info "2.3: second pass killed with $((n - n0)) of $((total - n0)) new messages written"
	if [ "$n" -gt "$n0" ] && [ "$n" -lt "$total" ]; then
		pass "2.3: the second pass was killed mid-import"
	else
		fail "2.3: the second pass was killed mid-import" "$((n - n0)) of $((total - n0)) new messages written"
	fi
	assert_exit NAME="2.3: migrate status of the killed run exits 0" 0 status_json alice "$T/status1.json"
	assert_eq "2.3: the state records a run that did not finish" running "$(run_state "$T/status1.json")"

	[ -n "${DM_UPGRADE_SAVE:-}" ] || return 0
	local save=$DM_UPGRADE_SAVE
	rm -rf "$save"
	mkdir -p "$save"
	# no session is open while the storage is copied
	stop_dovecot_base_dirs "$SRC_DIR/run" "$DST_DIR/run"
	if cp -a "$SRC_DIR/home/alice" "$save/src-home" &&
		cp -a "$DST_DIR/home/alice" "$save/dst-home" &&
		cp "$T/src0.json" "$T/src.json" "$T/src-uids.json" "$T/status1.json" "$save/" &&
		dst_mail_files alice >"$save/files1" &&
		echo "$total" >"$save/total"; then
		pass "2.3: saved the storage for the 2.4 phase in $save"
	else
		fail "2.3: saved the storage for the 2.4 phase" "copy to $save failed"
	fi
}

# ------------------------------------------------------------ phase 2 (2.4)
phase2() {
	local from=$DM_UPGRADE_FROM total
	[ -f "$from/total" ] || die "DM_UPGRADE_FROM=$from holds no saved 2.3 phase"
	total=$(cat "$from/total")
	src_start || die "source server did not start"
	dst_start || die "destination server did not start"
	# the storage 2.3 wrote, owned by this system's mail user
	rm -rf "$SRC_DIR/home/alice" "$DST_DIR/home/alice"
	cp -a "$from/src-home" "$SRC_DIR/home/alice" &&
		cp -a "$from/dst-home" "$DST_DIR/home/alice" &&
		chown -R "$MAIL_USER:$MAIL_USER" "$SRC_DIR/home/alice" "$DST_DIR/home/alice" ||
		die "restoring the 2.3 storage failed"

	check "2.4 source: dump of the 2.3 maildir" src_dump alice "$T/src-uids.json" --uids
	assert_exit NAME="2.4 source: same mail, UIDs and UIDVALIDITY as under 2.3" 0 \
		imaptool compare --uids --uidvalidity "$from/src-uids.json" "$T/src-uids.json"

	# the status is a plain read of the state: 2.4 prints what 2.3 printed
	# (but rate and eta: an interrupted run stays "running", and those two
	# are reckoned from the time status runs)
	assert_exit NAME="2.4: migrate status of the 2.3 state exits 0" 0 status_json alice "$T/status2.json"
	if python3 -c 'import json, sys
def load(f):
    return [{k: v for k, v in r.items() if k not in ("rate", "eta")}
            for r in json.load(open(f))]
sys.exit(load(sys.argv[1]) != load(sys.argv[2]))' \
		"$from/status1.json" "$T/status2.json" 2>/dev/null; then
		pass "2.4: status of the 2.3 state == what 2.3's status printed"
	else
		fail "2.4: status of the 2.3 state == what 2.3's status printed" \
			"$(diff <(python3 -m json.tool "$from/status1.json") <(python3 -m json.tool "$T/status2.json" 2>&1) | head -n 10 | tr '\n' '|')"
	fi

	assert_exit NAME="2.4: the resumed run exits 0" 0 dst_doveadm -f json migrate run -u alice
	[ "$LAST_RC" = 0 ] || info "resume stderr: $(head -c 600 "$LAST_ERR" | tr '\n' '|')"
	# the folders without new mail: unchanged by the 2.3 state's word
	local got
	got=$(python3 -c 'import json, sys
rows = json.load(open(sys.argv[1]))
new = set(sys.argv[2:])
bad = ["%s=%s" % (r["folder"], r["result"]) for r in rows
       if r["folder"] not in new and r["result"] not in ("unchanged", "skipped")]
print(" ".join(bad) if bad else "ok", sum(1 for r in rows if r["result"] == "unchanged"))' \
		"$LAST_OUT" "${NEW_FOLDERS[@]}" 2>&1)
	if [ "${got%% *}" = ok ] && [ "${got##* }" -gt 0 ]; then
		pass "2.4: every folder without new mail is unchanged per the 2.3 state (${got##* } folders)"
	else
		fail "2.4: every folder without new mail is unchanged per the 2.3 state" "$got"
	fi
	dst_equals "2.4: after the resume destination == source (no duplicate)" alice "$from/src.json"
	dst_mail_files alice >"$T/files2"
	assert_eq "2.4: the mail 2.3 wrote is untouched" "$(wc -l <"$from/files1")" \
		"$(comm -12 <(sort "$from/files1") <(sort "$T/files2") | wc -l)"
	assert_eq "2.4: one message file per source message" "$total" "$(wc -l <"$T/files2")"

	assert_exit NAME="2.4: status after the resume exits 0" 0 status_json alice "$T/status3.json"
	assert_eq "2.4: the run is completed" completed "$(run_state "$T/status3.json")"
	assert_exit NAME="2.4: another run exits 0" 0 dst_doveadm migrate run -u alice
	dst_mail_files alice >"$T/files3"
	if cmp -s "$T/files2" "$T/files3"; then
		pass "2.4: another run writes nothing"
	else
		fail "2.4: another run writes nothing" "$(diff "$T/files2" "$T/files3" | grep -c '^[<>]') files changed"
	fi
}

# (DM_UPGRADE_FROM on 2.3 runs phase 2 there: a check of this test itself)
if [ -n "${DM_UPGRADE_FROM:-}" ]; then
	phase2
elif dv24; then
	die "on Dovecot 2.4 this test resumes a state a 2.3 build wrote: run it through tests/leg-trixie.sh (which sets DM_UPGRADE_FROM)"
else
	phase1
fi
harness_done
