#!/usr/bin/env bash
# timeout: 120
# Metrics for dashboards (issue 15 item 13): every "migrate run" ends with
# one migrate_run_finished event, which Dovecot's stats service counts and
# exports as OpenMetrics. The destination Dovecot gets the metric { } blocks
# and the stats HTTP listener that conf.d/90-migrate.conf ships (result and
# cause as labels, messages and bytes as fields; one metric per user), the
# listener on a free port. Three runs: alice imports the seeded mail; bob's
# source password is wrong (exit 77); bob again, with the right password
# and a migrate_max_message_size that leaves his bigger messages out
# (exit 2).
# Then http://127.0.0.1:PORT/metrics must count 3 runs, one each of
# result="completed",cause="none", result="failed",cause="auth" and
# result="completed-with-errors",cause="items", with a run duration; the
# messages, bytes and items_too_big fields must add up to what the sources
# hold (from the OpenMetrics page where Dovecot exports fields, 2.3.21 and
# later; from "doveadm stats dump" before that, as on 2.3.19).
# Without the event nothing is counted and every metric check fails.
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"

STATS_PORT=$(free_port)
# the metric { } and service stats { } examples of the running version's
# conf.d file (90-migrate.conf on 2.3, 90-migrate-24.conf on 2.4), uncommented
CONFD="$TOP/conf.d/90-migrate.conf"
dv24 && CONFD="$TOP/conf.d/90-migrate-24.conf"
python3 - "$CONFD" "$STATS_PORT" >"$T/metrics.conf" <<'EOF' ||
import sys
text = open(sys.argv[1]).read()
part = text[text.index("## Metrics:"):]
for line in part.splitlines():
    if line.startswith("#") and not line.startswith("##"):
        print(line[1:].replace("port = 9900", "port = " + sys.argv[2]))
EOF
	die "no metric examples in $CONFD"
grep -q 'metric migrate_run_finished ' "$T/metrics.conf" ||
	die "no metric migrate_run_finished example in $CONFD"

src_start || die "source server did not start"
src_seed alice --limit 12 >"$T/seed.out" 2>&1 || die "seeding failed: $(tail -n 2 "$T/seed.out")"
src_seed bob --limit 8 >"$T/seed.out" 2>&1 || die "seeding failed: $(tail -n 2 "$T/seed.out")"
dst_start --conf-extra "$T/metrics.conf" || die "destination server did not start"
wait_port "$STATS_PORT" 10 || die "the stats HTTP listener is not on 127.0.0.1:$STATS_PORT"
info "stats: http://127.0.0.1:$STATS_PORT/metrics"

# what the source holds: messages and their RFC822.SIZE sums; bob's
# size limit is his median message size: what is above it stays out
for u in alice bob; do
	src_doveadm -f tab fetch -u $u size.virtual all | tail -n +2 | sort -n >"$T/sizes-$u" ||
		die "doveadm fetch on the source failed"
done
limit=$(awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}' "$T/sizes-bob")
a_msgs=$(grep -c . "$T/sizes-alice")
a_bytes=$(awk '{s += $1} END {print s + 0}' "$T/sizes-alice")
b_msgs=$(awk -v l="$limit" '$1 <= l' "$T/sizes-bob" | grep -c .)
b_bytes=$(awk -v l="$limit" '$1 <= l {s += $1} END {print s + 0}' "$T/sizes-bob")
b_big=$(awk -v l="$limit" '$1 > l' "$T/sizes-bob" | grep -c .)
want_msgs=$((a_msgs + b_msgs)) want_bytes=$((a_bytes + b_bytes))
info "source: alice $a_msgs messages, $a_bytes bytes; bob $b_msgs up to $limit bytes ($b_bytes bytes), $b_big above"
check "the sources hold mail to import and mail over the limit" \
	test "$a_msgs" -gt 0 -a "$b_msgs" -gt 0 -a "$b_big" -gt 0

run_clean "migrate run -u alice imports the mail" "$SRC_PORT" alice
good_pw=$(src_password bob)
dst_set_source_password bob wrong-password
assert_exit NAME="migrate run -u bob with a wrong source password: exit 77" \
	77 dst_doveadm migrate run -u bob
dst_set_source_password bob "$good_pw"
assert_exit NAME="migrate run -u bob with messages over migrate_max_message_size: exit 2" \
	2 dst_doveadm -o plugin/migrate_max_message_size="$limit" migrate run -u bob

# scrape NAME: the OpenMetrics page as JSON {"name{labels}": value}
scrape() {
	python3 - "$STATS_PORT" >"$T/$1.json" 2>"$T/$1.err" <<'EOF'
import json, re, sys, urllib.request
url = "http://127.0.0.1:%s/metrics" % sys.argv[1]
text = urllib.request.urlopen(url, timeout=10).read().decode()
sys.stderr.write("".join(l + "\n" for l in text.splitlines() if "migrate" in l))
out = {}
for line in text.splitlines():
    m = re.match(r'^(dovecot_migrate_\w+)(\{[^}]*\})? (\S+)$', line)
    if m:
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
json.dump(out, sys.stdout, indent=1, sort_keys=True)
EOF
}
# metric NAME KEY: one sample of the last scrape ("" when absent)
metric() {
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
v = d.get(sys.argv[2])
print("" if v is None else ("%d" % v if v == int(v) else v))' "$T/$1.json" "$2"
}
# assert_metric NAME WANT SCRAPE KEY
assert_metric() { assert_eq "$1" "$2" "$(metric "$3" "$4")"; }

if ! scrape m1; then
	fail "scraping http://127.0.0.1:$STATS_PORT/metrics" "$(tail -n 2 "$T/m1.err")"
	harness_done
fi
sed 's/^/#   /' "$T/m1.err" >&"$HARNESS_OUT"
R=dovecot_migrate_run_finished
assert_metric "$R""_count counts the 3 runs" 3 m1 "${R}_count"
assert_metric "one run with result=completed, cause=none" 1 m1 \
	"${R}_total{result=\"completed\",cause=\"none\"}"
assert_metric "one run with result=failed, cause=auth" 1 m1 \
	"${R}_total{result=\"failed\",cause=\"auth\"}"
assert_metric "one run with result=completed-with-errors, cause=items" 1 m1 \
	"${R}_total{result=\"completed-with-errors\",cause=\"items\"}"
dur=$(metric m1 "${R}_duration_seconds_sum")
check "the runs' duration is exported ($R""_duration_seconds_sum=$dur)" \
	python3 -c 'import sys; sys.exit(not 0 < float(sys.argv[1] or 0) < 60)' "$dur"

# the fields: sums on the OpenMetrics page (2.3.21+), else from stats dump
if [ -n "$(metric m1 "${R}_bytes_sum")" ]; then
	got_msgs=$(metric m1 "${R}_messages_sum")
	got_bytes=$(metric m1 "${R}_bytes_sum")
	got_big=$(metric m1 "${R}_items_too_big_sum")
	got_folder_msgs=$(metric m1 "dovecot_migrate_folder_finished_messages_sum")
	got_ok_bytes=$(metric m1 "${R}_bytes_total{result=\"completed\",cause=\"none\"}")
	where="OpenMetrics"
else
	bounded 20 "$DOVEADM" -c "$DST_DIR/dovecot.conf" -f tab stats dump \
		-s "$DST_DIR/run/stats-reader" -f "count sum" >"$T/dump.tsv" 2>"$T/dump.err" ||
		fail "doveadm stats dump" "$(tail -n 2 "$T/dump.err")"
	sed 's/^/#   /' "$T/dump.tsv" >&"$HARNESS_OUT"
	# metric_name field count sum: the base metric's rows only
	field_sum() { awk -F'\t' -v m="${2:-migrate_run_finished}" -v f="$1" '$1 == m && $2 == f {print $4}' "$T/dump.tsv"; }
	got_msgs=$(field_sum messages)
	got_bytes=$(field_sum bytes)
	got_big=$(field_sum items_too_big)
	got_folder_msgs=$(field_sum messages migrate_folder_finished)
	got_ok_bytes=$(awk -F'\t' '$1 ~ /^migrate_run_finished_completed_none$/ && $2 == "bytes" {print $4}' "$T/dump.tsv")
	where="doveadm stats dump"
fi
assert_eq "messages summed over the runs ($where) = the source's messages" "$want_msgs" "$got_msgs"
assert_eq "bytes summed over the runs ($where) = the source's RFC822 sizes" "$want_bytes" "$got_bytes"
assert_eq "items_too_big summed over the runs ($where) = bob's messages over the limit" "$b_big" "$got_big"
assert_eq "the completed run's bytes ($where) = alice's" "$a_bytes" "$got_ok_bytes"
# the folders were imported by parallel workers (migrate_parallel_folders
# is 4): their events reach the stats service too
assert_eq "migrate_folder_finished: messages summed over the folders ($where) = the source's" \
	"$want_msgs" "$got_folder_msgs"

# a second run of alice: nothing new, counted as completed again
run_clean "second migrate run -u alice" "$SRC_PORT" alice
scrape m2 || fail "second scrape" "$(tail -n 2 "$T/m2.err")"
assert_metric "a second completed run is counted" 2 m2 \
	"${R}_total{result=\"completed\",cause=\"none\"}"
assert_metric "per user: alice completed 2 runs" 2 m2 \
	"${R}_per_user_total{user=\"alice\",result=\"completed\"}"
assert_metric "per user: bob failed 1 run" 1 m2 \
	"${R}_per_user_total{user=\"bob\",result=\"failed\"}"

# the info line names the run's outcome
assert_match "the run logs one line with its result" \
	'Run completed: 0 imported' "$(cat "$T/run.err" "$DST_DIR/dovecot.log" 2>/dev/null)"

harness_done
