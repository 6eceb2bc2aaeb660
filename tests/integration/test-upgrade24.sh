#!/usr/bin/env bash
# A server upgraded from Dovecot 2.3 to 2.4 in the middle of a migration:
# the state the 2.3 build wrote stays readable and the 2.4 build resumes
# without a duplicate.
#
# Two phases, one on each version (tests/leg-trixie.sh runs both):
#  1. on 2.3: a first pass, SIGKILLed once part of the mail is imported;
#     migrate status reads the interrupted run. With DM_UPGRADE_SAVE=DIR
#     the source's and the destination's storage (the state dict is in
#     the destination home), the source's dump and the status are saved
#     to DIR. On the host leg this phase runs alone.
#  2. on 2.4, with DM_UPGRADE_FROM=DIR (what phase 1 saved): a 2.4 source
#     and a 2.4 destination on copies of that storage; 2.4's migrate status
#     shows what 2.3 recorded, the resumed run exits 0, the destination
#     equals the source (no duplicate), the mail 2.3 wrote is untouched and
#     a further run writes nothing.
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"

LIMIT=120
PACE=(-o plugin/migrate_max_messages_per_second=40 -o plugin/migrate_batch_messages=5)

# status_json USER OUT: migrate status -f json
status_json() {
	dst_doveadm -f json migrate status -u "$1" >"$2" 2>"$T/status.err"
}

# status_totals FILE: "<state of the run row> <imported over all folders>"
status_totals() {
	python3 -c 'import json, sys
rows = json.load(open(sys.argv[1]))
run = [r for r in rows if r["folder"] == "*"]
print(run[0]["state"] if run else "none",
      sum(int(r["imported"] or 0) for r in rows if r["folder"] != "*"))' "$1"
}

# ------------------------------------------------------------ phase 1 (2.3)
phase1() {
	src_start || die "source server did not start"
	dst_start || die "destination server did not start"
	src_seed alice --seed 23 --limit "$LIMIT" >"$T/seed.out" 2>&1 ||
		die "seeding failed: $(tail -n 3 "$T/seed.out")"
	src_dump alice "$T/src.json" || die "source dump failed"
	src_dump alice "$T/src-uids.json" --uids || die "source dump failed"
	local total
	total=$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1])); d.pop("subscriptions")
print(sum(len(b["messages"]) for b in d.values()))' "$T/src.json")

	# a paced first pass, SIGKILLed once a fifth of the mail is written
	dst_doveadm_argv
	"${DST_DOVEADM[@]}" "${PACE[@]}" migrate run -u alice >"$T/run1.out" 2>"$T/run1.err" &
	local pid=$! n=0
	track_pid "$pid"
	for _ in $(seq 1 600); do
		n=$(dst_mail_files alice | wc -l)
		[ "$n" -ge $((total / 5)) ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	n=$(dst_mail_files alice | wc -l)
	info "2.3 pass killed with $n of $total messages written"
	if [ "$n" -gt 0 ] && [ "$n" -lt "$total" ]; then
		pass "2.3: the first pass was killed mid-import ($n of $total)"
	else
		fail "2.3: the first pass was killed mid-import" "$n of $total messages written"
	fi
	assert_exit NAME="2.3: migrate status of the killed run exits 0" 0 status_json alice "$T/status1.json"
	read -r state imported < <(status_totals "$T/status1.json")
	info "2.3 status: run $state, $imported imported"
	if [ "$state" != completed ] && [ "$imported" -gt 0 ]; then
		pass "2.3: the state records an unfinished run with imported mail"
	else
		fail "2.3: the state records an unfinished run with imported mail" "run $state, $imported imported"
	fi

	[ -n "${DM_UPGRADE_SAVE:-}" ] || return 0
	local save=$DM_UPGRADE_SAVE
	rm -rf "$save"
	mkdir -p "$save"
	# every session ends before the copy: the source and destination stop
	stop_dovecot_base_dirs "$SRC_DIR/run" "$DST_DIR/run"
	if cp -a "$SRC_DIR/home/alice" "$save/src-home" &&
		cp -a "$DST_DIR/home/alice" "$save/dst-home" &&
		cp "$T/src.json" "$T/src-uids.json" "$T/status1.json" "$save/" &&
		dst_mail_files alice >"$save/files1" &&
		echo "$total" >"$save/total"; then
		pass "2.3: saved the storage for the 2.4 phase in $save"
	else
		fail "2.3: saved the storage for the 2.4 phase" "copy to $save failed"
	fi
}

# ------------------------------------------------------------ phase 2 (2.4)
phase2() {
	local from=$DM_UPGRADE_FROM total state imported state1 imported1
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

	assert_exit NAME="2.4: migrate status of the 2.3 state exits 0" 0 status_json alice "$T/status2.json"
	read -r state1 imported1 < <(status_totals "$from/status1.json")
	read -r state imported < <(status_totals "$T/status2.json")
	assert_eq "2.4: status shows what 2.3 recorded (run state, imported)" \
		"$state1 $imported1" "$state $imported"

	assert_exit NAME="2.4: the resumed run exits 0" 0 dst_doveadm migrate run -u alice
	[ "$LAST_RC" = 0 ] || info "resume stderr: $(head -c 600 "$LAST_ERR" | tr '\n' '|')"
	dst_equals "2.4: after the resume destination == source (no duplicate)" alice "$from/src.json"
	dst_mail_files alice >"$T/files2"
	local kept
	kept=$(comm -12 "$from/files1" "$T/files2" | wc -l)
	assert_eq "2.4: the mail 2.3 wrote is untouched" "$(wc -l <"$from/files1")" "$kept"
	assert_eq "2.4: one message file per source message" "$total" "$(wc -l <"$T/files2")"

	assert_exit NAME="2.4: status after the resume exits 0" 0 status_json alice "$T/status3.json"
	assert_eq "2.4: the run is completed" completed "$(status_totals "$T/status3.json" | cut -d' ' -f1)"
	assert_exit NAME="2.4: another run exits 0" 0 dst_doveadm migrate run -u alice
	dst_mail_files alice >"$T/files3"
	if cmp -s "$T/files2" "$T/files3"; then
		pass "2.4: another run writes nothing"
	else
		fail "2.4: another run writes nothing" "$(diff "$T/files2" "$T/files3" | grep -c '^[<>]') files changed"
	fi
}

if dv24; then
	if [ -z "${DM_UPGRADE_FROM:-}" ]; then
		die "on Dovecot 2.4 this test resumes a state a 2.3 build wrote: run it through tests/leg-trixie.sh (which sets DM_UPGRADE_FROM)"
	fi
	phase2
else
	phase1
fi
harness_done
