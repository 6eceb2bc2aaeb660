#!/usr/bin/env bash
# Issue 15, the admin's view of a run: one error budget, folder map changes,
# quota, progress from outside, metrics.
#
#   (a) migrate_errors_max is one budget for the whole run: with 4 parallel
#       workers and a poison message in every folder, the run stops once
#       the run's failures (not one worker's) reach the cap
#   (b) the folder map changes after a pass ("Q&A Notes" -> "Archive/Old
#       Notes"): plan says so, the run fills the new folder (by identity:
#       it was created with the source's UIDVALIDITY, which the old one has
#       too) and names the old copy it left in place; the next run finds it
#       unchanged; verify -I ok
#   (c) a destination quota (quota plugin, count backend) smaller than the
#       source: plan warns with both figures and marks the folders over it;
#       run keeps what fits (5-message batches: a refusal doesn't roll back
#       the batch), logs the rest as destination-quota and exits 73; with
#       the quota raised the next run brings the rest and verify is clean
. "$(dirname "$0")/../lib/harness.sh"
. "$HARNESS_LIB/faults.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"

src_start || die "source server did not start"
# the quota plugin is configured (no limit unless the user has one); only
# doveadm calls that load it (qdoveadm) and the IMAP server enforce it
# (2.4: a quota filter whose driver is count, which counts vsizes; the
# per-user limit is quota_storage_size, 2.3's quota_rule)
{
	conf_mail_plugins quota
	if dv24; then
		printf 'quota "User quota" {\n  quota_driver = count\n}\n'
	else
		conf_settings "quota=count:User quota" quota_vsizes=yes
	fi
} >"$T/dst-quota.conf"
# quota_limit SIZE: the setting (name=value) that sets the user's limit
quota_limit() {
	if dv24; then echo "quota_storage_size=$1"; else echo "quota_rule=*:storage=$1"; fi
}
dst_start --conf-extra "$T/dst-quota.conf" || die "destination server did not start"
src_seed alice --seed 11 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"
src_dump alice "$T/src.json" || die "source dump failed"
nfolders=$(pj "$T/src.json" 'len([k for k, v in d.items() if k != "subscriptions" and len(v["messages"]) > 0])')
info "source: $nfolders folders with mail"

# dst_count USER FOLDER: messages in a destination folder
dst_count() {
	dst_doveadm -f flow mailbox status -u "$1" messages "$2" 2>/dev/null |
		sed -n 's/.*messages=\([0-9]*\).*/\1/p'
}

# part X: run section X (all unless ONLY=letters says otherwise)
part() { [ -z "${ONLY:-}" ] || [[ "$ONLY" == *"$1"* ]]; }

# report_count USER CLASS: the user's items of that class
report_count() {
	dst_doveadm -f tab migrate report -u "$1" -r "$2" 2>/dev/null | tail -n +2 | grep -c .
}

# ------------------------------------------------------------ (a)
if part a; then
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
fi

# ------------------------------------------------------------ (b)
if part b; then
dst_add_user mv userdb_migrate_source_user=alice
nnotes=$(pj "$T/src.json" 'len(d["Q&A Notes"]["messages"])')
assert_exit NAME="(b) first pass exits 0" 0 \
	dst_doveadm -o plugin/migrate_source_port="$SRC_PORT" migrate run -u mv
printf '%s\n' '^Q&A Notes$ -> Archive/Old Notes' >"$T/move.rules"
chmod 644 "$T/move.rules"
moved=(-o plugin/migrate_source_port="$SRC_PORT" -o plugin/migrate_folder_map="$T/move.rules")
assert_exit NAME="(b) plan after the map change exits 0" 0 \
	dst_doveadm -f json "${moved[@]}" migrate plan -u mv
assert_eq "(b) plan: Q&A Notes -> Archive/Old Notes, destination changed (was Q&A Notes)" \
	"Archive/Old Notes import yes" \
	"$(pj "$LAST_OUT" '" ".join(" ".join([r["dest"], r["action"], "yes" if "destination changed since the last pass (was Q&A Notes)" in r["reason"] else r["reason"]]) for r in d if r["dest"] == "Archive/Old Notes")')"
assert_exit NAME="(b) run after the map change exits 0" 0 \
	dst_doveadm -f json "${moved[@]}" migrate run -u mv
cp "$LAST_OUT" "$T/mv-run.json"; cp "$LAST_ERR" "$T/mv-run.err"
assert_eq "(b) run: Archive/Old Notes completed, every message imported" \
	"completed $nnotes 0" \
	"$(pj "$T/mv-run.json" '" ".join(" ".join([r["result"], r["imported"], r["existing"]]) for r in d if r["dest"] == "Archive/Old Notes")')"
assert_match "(b) run: the note names the copy left in place" \
	"destination changed: the copy in Q&A Notes is left in place" \
	"$(pj "$T/mv-run.json" '[r["note"] for r in d if r["dest"] == "Archive/Old Notes"][0]')"
assert_match "(b) run: a warning says what changed and what was done" \
	"was Q&A Notes, now Archive/Old Notes.*copy in Q&A Notes is left in place" "$(cat "$T/mv-run.err")"
assert_eq "(b) Archive/Old Notes holds the folder's mail once; Q&A Notes is left as it was" \
	"$nnotes $nnotes" \
	"$(dst_count mv "Archive/Old Notes") $(dst_count mv "Q&A Notes")"
assert_exit NAME="(b) the next run exits 0" 0 \
	dst_doveadm -f json "${moved[@]}" migrate run -u mv
assert_eq "(b) the next run: unchanged, no note" "unchanged " \
	"$(pj "$LAST_OUT" '" ".join(r["result"] + " " + r["note"] for r in d if r["dest"] == "Archive/Old Notes")')"
assert_exit NAME="(b) verify -I with the new map exits 0" 0 \
	dst_doveadm "${moved[@]}" migrate verify -I -u mv
fi

# ------------------------------------------------------------ (c)
if part c; then
# doveadm with the quota plugin and this build's plugin
mkdir -p "$T/modules"
ln -sf "$PLUGIN_DIR/lib20_doveadm_migrate_plugin.so" /usr/lib/dovecot/modules/lib10_quota_plugin.so "$T/modules/"
qdoveadm() {
	bounded "$DOVEADM_TIMEOUT" "$DOVEADM" -c "$DST_DIR/dovecot.conf" \
		-o mail_plugin_dir="$T/modules" -o "mail_plugins=quota $PLUGIN_NAME" \
		-o plugin/migrate_source_port="$SRC_PORT" "$@"
}
total=$(src_doveadm -f flow mailbox status -u alice vsize '*' |
	sed -n 's/.*vsize=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s}')
limit_k=$((total * 4 / 10 / 1024))
info "(c) source: $total bytes; quota ${limit_k} kB"
dst_add_user qa userdb_migrate_source_user=alice "userdb_$(quota_limit "${limit_k}k")"
assert_exit NAME="(c) plan with a quota smaller than the source: exit 0" 0 \
	qdoveadm -f json migrate plan -u qa
one_line "(c) plan warns with both figures" "$LAST_ERR" 'Destination quota' \
	'holds [0-9.]+ [kMG]B to import, but quota root User quota has only [0-9.]+ [kMG]B free'
assert_match "(c) plan marks the folders over the quota" "^[1-9]" \
	"$(pj "$LAST_OUT" 'sum(1 for r in d if "over the destination quota" in r["reason"])')"
assert_exit NAME="(c) run into the quota (5-message batches): exit 73" 73 \
	qdoveadm -o plugin/migrate_batch_messages=5 -o plugin/migrate_parallel_folders=1 \
	migrate run -u qa
one_error "(c) one error line: quota full, what fit is kept, the rest is destination-quota" \
	'Destination quota full in .*What fit is kept; [0-9]+ message.s. .*destination-quota'
dst_doveadm -f json migrate report -u qa -r destination-quota >"$T/qa-items.json" 2>/dev/null
nq=$(pj "$T/qa-items.json" 'len(d)')
check "(c) the rest is in the item log as destination-quota ($nq)" test "$nq" -gt 0
refused=$(pj "$T/qa-items.json" '[int(r["size"]) for r in d if not r["detail"].startswith("not tried")][0]')
used_k=$(doveadm -c "$DST_DIR/dovecot.conf" -o mail_plugins=quota -f tab quota get -u qa |
	awk -F'\t' '$2 == "STORAGE" {print $3}')
info "(c) used ${used_k} kB of ${limit_k} kB; the refused message has $refused bytes"
check "(c) what fit was kept: the refused message didn't fit the space left" \
	test $((used_k * 1024 + refused)) -gt $((limit_k * 1024))
assert_exit NAME="(c) with the quota raised the next run exits 0" 0 \
	qdoveadm -o "plugin/$(quota_limit 100M)" migrate run -u qa
assert_exit NAME="(c) verify after it exits 0" 0 dst_doveadm -o plugin/migrate_source_port="$SRC_PORT" \
	migrate verify -u qa
fi

harness_done
