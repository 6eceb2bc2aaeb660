#!/usr/bin/env bash
# Issue 15, the admin's view of a run: one error budget, folder map changes,
# quota, progress from outside, metrics.
#
#   (a) migrate_errors_max is one budget for the whole run: with 4 parallel
#       workers and a poison message in every folder, the run stops once
#       the run's failures (not one worker's) reach the cap
. "$(dirname "$0")/../lib/harness.sh"
. "$HARNESS_LIB/faults.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"

src_start || die "source server did not start"
dst_start || die "destination server did not start"
src_seed alice --seed 11 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"
src_dump alice "$T/src.json" || die "source dump failed"
nfolders=$(pj "$T/src.json" 'len([k for k, v in d.items() if k != "subscriptions" and len(v["messages"]) > 0])')
info "source: $nfolders folders with mail"

# report_count USER CLASS: the user's items of that class
report_count() {
	dst_doveadm -f tab migrate report -u "$1" -r "$2" 2>/dev/null | tail -n +2 | grep -c .
}

# ------------------------------------------------------------ (a)
# UID 1 of every folder fails: 4 workers start 4 folders at once, each
# fails at once. One budget of 2: every worker stops at its next failure,
# so at most 2 + 3 failures; four budgets of 2 would allow 8.
dst_add_user ea userdb_migrate_source_user=alice
proxy_start emax --poison 1 || die "faultproxy did not start"
assert_exit NAME="(a) migrate_errors_max=2 with 4 workers: exit 2" 2 \
	via_proxy ea -o plugin/migrate_errors_max=2 -o plugin/migrate_item_retries=1
proxy_stop
assert_match "(a) the run used 4 workers" "in 4 worker processes" "$(cat "$T/run-ea.err")"
one_error "(a) one error line: stopped (migrate_errors_max)" \
	'Stopped after [2-5] failed messages \(migrate_errors_max\)' "$T/run-ea.err"
failed=$(report_count ea fetch-failed)
info "(a) $failed messages failed before the run stopped ($nfolders folders)"
check "(a) at most migrate_errors_max + 3 failures in the whole run" \
	test "$failed" -le 5

harness_done
