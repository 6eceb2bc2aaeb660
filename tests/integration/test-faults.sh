#!/usr/bin/env bash
# Fault tolerance: doveadm migrate talks to the source through
# tests/lib/faultproxy.py, which cuts connections at seeded byte offsets
# (mid-literal included), throttles FETCH per time window, injects BYE and
# NO [UNAVAILABLE], and "poisons" messages (their FETCH fails with NO).
# Every scenario ends in a full IMAP comparison of destination and source.
#
#   (a) >= 50 seeded cuts over whole migrations: re-running until exit 0
#       always ends with destination == source, and the destination
#       storage is never damaged (no "lost uid", no index rebuild)
#   (b) throttling: the run backs off, completes, and never hammers a
#       throttled window
#   (c) BYE and NO [UNAVAILABLE] on FETCH: completes, nothing lost, no item
#   (d) a poison message: exit 2, migrate report names it (fetch-failed),
#       the rest is imported; a later clean run imports it, report: resolved
#   (e) migrate_errors_max=1: the run stops at the first failure, one clear
#       error line, exit 2; a clean run then completes
#   (f) a throttled flag sync in a delta run is retried, not dropped
#   (g) migrate_max_connections: concurrent runs of different users share
#       the cap on connections to the source host; the waiting run says
#       so in the log and in migrate status, then completes
. "$(dirname "$0")/../lib/harness.sh"
. "$HARNESS_LIB/faults.sh"

NCUTS=${NCUTS:-52}

plugin_built || info "the plugin is not built: the migrate steps will fail"

# ------------------------------------------------------------ helpers

# dst_add_users_alice NAME...: destination users that all migrate source
# user alice; one passwd-file rewrite and one auth reload wait for all
dst_add_users_alice() {
	local f="$DST_DIR/passwd" n pw
	pw=$(src_password alice)
	{
		cat "$f"
		for n in "$@"; do
			printf '%s:{PLAIN}dpw-%s::::%s::userdb_migrate_source_user=alice\n' \
				"$n" "$n" "$DST_DIR/home/$n"
		done
	} >"$f.new"
	chmod 644 "$f.new"
	mv -f "$f.new" "$f"
	for n in "$@"; do src_password_file_write "$n" "$pw"; done
	python3 -c 'import time; time.sleep(1.05 - time.time() % 1)'
}

# dump_without IN.json(--uids) FOLDER UID OUT.json: the expected dump when
# exactly that source message is missing
dump_without() {
	python3 - "$@" <<'EOF'
import json, sys
src, folder, uid, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
d = json.load(open(src))
msgs = d[folder]["messages"]
keep = [m for m in msgs if m[3] != uid]
assert len(keep) == len(msgs) - 1, "no UID %d in %s" % (uid, folder)
d[folder]["messages"] = keep
for name, box in d.items():
    if name != "subscriptions":
        box["messages"] = [m[:3] for m in box["messages"]]
json.dump(d, open(out, "w"))
EOF
}

# ------------------------------------------------------------ setup

src_start || die "source server did not start"
faults_dst_start || die "destination server did not start"
n=$(make_small_corpus "$T/corpus" 200000) || die "building the small corpus failed"
info "corpus: $n messages of at most 200 kB"
CORPUS="$T/corpus" src_seed alice --seed 7 --limit 50 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"
src_dump alice "$T/src.json" || die "source dump failed"
src_dump alice "$T/src-uids.json" --uids || die "source dump failed"

ROUNDS=40
users=""
for r in $(seq 1 $ROUNDS); do users="$users cut$r"; done
dst_add_users_alice probe $users thr bye poi poiok emax

# ------------------------------------------------------------ (a) cuts
# A pass-through run records the byte map of a whole first pass; the cut
# offsets are drawn from it (half anywhere, mostly inside message bodies,
# half inside protocol lines). Each connection gets the next unused offset;
# fresh users are migrated round after round until every cut was made.
proxy_start map --record-map || die "faultproxy did not start"
assert_exit NAME="(a) pass-through run exits 0" 0 via_proxy probe
proxy_stop
total=$(pj "$T/proxy-map.json" 'd["bytes_to_client"]')
info "a first pass is $total bytes from the server"
dst_equals "(a) pass-through run: destination == source" probe "$T/src.json"

proxy_start cuts --cuts "$NCUTS" --seed 3 --plan "$T/proxy-map.json" ||
	die "faultproxy did not start"
rounds_ok=0 rounds=0 reruns=0
for u in $users; do
	rounds=$((rounds + 1))
	rc=1
	for k in $(seq 1 12); do
		# at most 2 reconnects per run: some runs give up (75) and the
		# next run resumes from the state they left
		via_proxy "$u" -o plugin/migrate_backoff_max=1s \
			-o plugin/migrate_reconnect_max=2
		rc=$?
		[ "$rc" = 0 ] && break
		reruns=$((reruns + 1))
		if [ "$rc" != 75 ]; then
			info "$u run $k: exit $rc: $(grep -E 'Error|Fatal|Panic' "$T/run-$u.err" | head -n 2 | tr '\n' ' ')"
		fi
	done
	if [ "$rc" != 0 ]; then
		fail "(a) $u: migration completes despite the cuts" \
			"still exit $rc after 12 runs: $(tail -n 2 "$T/run-$u.err" | tr '\n' ' ')"
	elif dst_equals "(a) $u: destination == source after the cuts" "$u" "$T/src.json"; then
		rounds_ok=$((rounds_ok + 1))
	fi
	made=$(proxy_cuts)
	[ "$made" -ge "$NCUTS" ] && break
done
proxy_stop
made=$(proxy_cuts)
info "$made cuts over $rounds migrations ($reruns re-runs after a failed run)"
pj "$PROXY_LOG" '"\n".join("#   cut %2d: conn %d, %s at %d/%d %s" % (i + 1, c["conn"], c["in"], c["at"], c["of"], c["context"][:50]) for i, c in enumerate(d["cuts"][:12]))'
if [ "$made" -ge 50 ]; then
	pass "(a) $made connections cut at seeded offsets (>= 50)"
else
	fail "(a) >= 50 connections cut" "only $made cuts in $rounds migrations"
fi
[ "$rounds_ok" = "$rounds" ] &&
	pass "(a) all $rounds migrations under cuts ended equal to the source"
# migrate_reconnect_max counts reconnects in a row without progress: a
# run gives up only when two connections in a row were cut before any
# mail was committed (test-reconnect covers the budget itself)
info "(a) $reruns runs gave up (exit 75) and a later run resumed them"
n_body=$(pj "$PROXY_LOG" 'sum(1 for c in d["cuts"] if c["in"] == "body-literal")')
n_line=$(pj "$PROXY_LOG" 'sum(1 for c in d["cuts"] if c["in"] == "line")')
n_lit=$(pj "$PROXY_LOG" 'sum(1 for c in d["cuts"] if c["in"] == "literal")')
info "cuts: $n_body inside message bodies, $n_lit inside other literals, $n_line inside lines"
if [ "$n_body" -ge 5 ] && [ "$n_line" -ge 5 ]; then
	pass "(a) cuts hit mid-body literals ($n_body) and protocol lines ($n_line)"
else
	fail "(a) cuts hit mid-body literals and protocol lines" \
		"$n_body body literals, $n_line lines"
fi
no_storage_damage "(a) no damaged destination storage after the cuts"

# ------------------------------------------------------------ (b) throttle
# 60 kB of server output per 1 s window; then FETCH gets NO [THROTTLED].
BUDGET=60000
proxy_start thr --throttle-bytes $BUDGET --window-secs 1 || die "faultproxy did not start"
t0=$(date +%s.%N)
# (a folder's header listing is bigger than the budget: a client that
# listed the folder again after every throttled FETCH would never get on)
assert_exit NAME="(b) throttled run exits 0" 0 via_proxy thr \
	-o plugin/migrate_backoff_max=2s -o plugin/migrate_throttle_max_wait=40s
secs=$(python3 -c "import sys, time; print('%.1f' % (time.time() - float(sys.argv[1])))" "$t0")
proxy_stop
dst_equals "(b) throttled run: destination == source" thr "$T/src.json"
throttled=$(pj "$PROXY_LOG" 'sum(w["fetch_throttled"] for w in d["windows"].values())')
worst=$(pj "$PROXY_LOG" 'max(w["fetch_throttled"] for w in d["windows"].values())')
busy=$(pj "$PROXY_LOG" 'sum(1 for w in d["windows"].values() if w["fetch_forwarded"] > 0)')
after=$(pj "$PROXY_LOG" 'sum(w["forwarded_after_budget"] for w in d["windows"].values())')
info "throttled run: ${secs}s, $throttled FETCH throttled, FETCH sent in $busy windows, at most $worst throttled in one window"
pj "$PROXY_LOG" '"\n".join("#   window %3s: %7d bytes, %2d FETCH forwarded, %d throttled" % (k, w["bytes"], w["fetch_forwarded"], w["fetch_throttled"]) for k, w in sorted(d["windows"].items(), key=lambda kv: int(kv[0]))[:15])'
if [ "$throttled" -ge 2 ]; then
	pass "(b) the proxy throttled FETCH commands ($throttled)"
else
	fail "(b) the proxy throttled FETCH commands" "only $throttled"
fi
# a client that retried at once would be refused many times per window
if [ "$worst" -le 3 ] && [ "$after" = 0 ]; then
	pass "(b) the client backed off: at most $worst refused FETCH per window, none over budget"
else
	fail "(b) the client backed off" "$worst refused FETCH in one window, $after forwarded over budget"
fi
if [ "$busy" -ge 4 ]; then
	pass "(b) the run slowed to the budget: FETCH spread over $busy windows"
else
	fail "(b) the run slowed to the budget" "FETCH in only $busy windows"
fi
if grep -q 'Source server is throttling' "$T/run-thr.err"; then
	pass "(b) the run logged its throttle waits"
else
	fail "(b) the run logged its throttle waits" "$(head -c 300 "$T/run-thr.err")"
fi
# adaptive: each throttle halves the bodies in flight (200 -> 100 -> ~50:
# saved messages in between grow it back by one each)
depths=$(grep -o 'then [0-9]* messages in flight' "$T/run-thr.err" | awk '{print $2}' | head -n 3 | tr '\n' ' ')
if python3 -c 'import sys; d=[int(x) for x in sys.argv[1].split()]; sys.exit(not (len(d) == 3 and d[0] == 100 and d[1] < d[0] and d[2] < d[1]))' "$depths"; then
	pass "(b) the pipeline shrank with each throttle: $depths"
else
	fail "(b) the pipeline shrank with each throttle" "in flight after the first throttles: '$depths'"
fi

# ------------------------------------------------------------ (c) BYE, UNAVAILABLE
# counted over body FETCHes: BYE after the 3rd and the 9th, NO [UNAVAILABLE]
# for the 6th and 7th (two in a row: the second retry waits longer)
proxy_start bye --count-fetch body --bye-after-fetch 3,9 --unavailable-fetch 6,7 ||
	die "faultproxy did not start"
assert_exit NAME="(c) run with BYE and NO [UNAVAILABLE] exits 0" 0 \
	via_proxy bye -o plugin/migrate_backoff_max=1s
proxy_stop
injected=$(proxy_injected)
assert_eq "(c) the proxy injected 2 BYE and 2 NO [UNAVAILABLE]" \
	"bye bye unavailable unavailable" "$injected"
if grep -q 'BYE: Server shutting down' "$T/run-bye.err" &&
	[ "$(grep -c 'Source server is throttling' "$T/run-bye.err")" -ge 2 ]; then
	pass "(c) the run reconnected after BYE and backed off after UNAVAILABLE"
else
	fail "(c) the run reconnected after BYE and backed off after UNAVAILABLE" \
		"$(grep -E 'Warning|Error' "$T/run-bye.err" | head -n 4 | tr '\n' '|')"
fi
dst_equals "(c) destination == source" bye "$T/src.json"
dst_doveadm -f json migrate report -u bye >"$T/report-bye.json" 2>"$T/report-bye.err"
assert_eq "(c) nothing in the item log" "0" \
	"$(pj "$T/report-bye.json" 'len(d)' 2>/dev/null || echo "unreadable report")"

# ------------------------------------------------------------ (d) poison message
POISON_UID=3
proxy_start poi --poison "INBOX:$POISON_UID" || die "faultproxy did not start"
assert_exit NAME="(d) run with a poison message exits 2" 2 via_proxy poi
proxy_stop
assert_eq "(d) the proxy failed exactly one FETCH for INBOX UID $POISON_UID" \
	"INBOX:$POISON_UID" "$(proxy_poisoned)"
dst_doveadm -f json migrate report -u poi >"$T/report-poi.json" 2>"$T/report-poi.err"
item=$(report_items "$T/report-poi.json" 2>&1)
assert_eq "(d) migrate report lists the poison UID as fetch-failed" \
	"INBOX $POISON_UID fetch-failed resolved=no" "$item"
dump_without "$T/src-uids.json" INBOX "$POISON_UID" "$T/src-minus-poison.json" ||
	fail "(d) expected dump" "UID $POISON_UID not in the source INBOX"
dst_equals "(d) everything but the poison message was imported" poi "$T/src-minus-poison.json"
assert_exit NAME="(d) a run without the fault exits 0" 0 \
	dst_doveadm migrate run -u poi
dst_equals "(d) after the clean run: destination == source" poi "$T/src.json"
dst_doveadm -f json migrate report -u poi >"$T/report-poi2.json" 2>"$T/report-poi2.err"
item=$(report_items "$T/report-poi2.json" 2>&1)
assert_eq "(d) migrate report marks it resolved" \
	"INBOX $POISON_UID fetch-failed resolved=yes" "$item"

# (d2) a server that answers FETCH OK but leaves the message out, though it
# still lists it: not taken for an expunge (the UID SEARCH still finds
# it), so a failed item and exit 2, imported by the next run
proxy_start poiok --poison "INBOX:$POISON_UID" --poison-keep-ok || die "faultproxy did not start"
assert_exit NAME="(d2) FETCH OK without a listed message: exit 2" 2 via_proxy poiok
proxy_stop
dst_doveadm -f json migrate report -u poiok >"$T/report-poiok.json" 2>/dev/null
assert_eq "(d2) migrate report lists it as fetch-failed, not vanished" \
	"INBOX $POISON_UID fetch-failed resolved=no" "$(report_items "$T/report-poiok.json" 2>&1)"
assert_match "(d2) the reason says the server still lists it" "still lists" \
	"$(pj "$T/report-poiok.json" 'd[0].get("detail", "")' 2>&1)"
assert_exit NAME="(d2) a run without the fault exits 0" 0 dst_doveadm migrate run -u poiok
dst_equals "(d2) after the clean run: destination == source" poiok "$T/src.json"

# ------------------------------------------------------------ (e) errors_max
# two poison messages in two folders; INBOX is imported first
proxy_start emax --poison "INBOX:2,Work:1" || die "faultproxy did not start"
assert_exit NAME="(e) migrate_errors_max=1: exit 2" 2 \
	via_proxy emax -o plugin/migrate_errors_max=1
proxy_stop
one_error "(e) one error line: stopped after 1 failed message (migrate_errors_max)" \
	'Stopped after 1 failed messages \(migrate_errors_max\)' "$T/run-emax.err"
assert_eq "(e) the run stopped before Work: only INBOX UID 2 was refused" \
	"INBOX:2" "$(proxy_poisoned)"
dst_doveadm -f json migrate status -u emax >"$T/status-emax.json" 2>/dev/null
work=$(pj "$T/status-emax.json" '";".join(str(f.get("state")) for f in d if f.get("folder") == "Work")' 2>&1)
assert_eq "(e) Work was never started" "queued" "$work"
assert_exit NAME="(e) a clean run afterwards exits 0" 0 dst_doveadm migrate run -u emax
dst_equals "(e) after the clean run: destination == source" emax "$T/src.json"

# ------------------------------------------------------------ (f) throttled flag sync
# a delta run whose first FETCH (the flag sync of the first changed folder)
# is throttled: the flags must still arrive
assert_exit NAME="(f) change flags on the source" 0 src_mutate alice --seed 9 --flags 12
src_dump alice "$T/src2.json" || fail "(f) source dump" "failed"
proxy_start flags --throttle-fetch 1 || die "faultproxy did not start"
assert_exit NAME="(f) delta run with a throttled flag sync exits 0" 0 \
	via_proxy thr -o plugin/migrate_backoff_max=1s
proxy_stop
assert_eq "(f) the proxy throttled the first FETCH, a flag sync" "throttled:flags" \
	"$(pj "$PROXY_LOG" '" ".join(i["what"] + ":" + i["kind"] for i in d["injected"])')"
dst_equals "(f) flags synced despite the throttle: destination == source" thr "$T/src2.json"

# ------------------------------------------------------------ (g) max connections
# Two users' runs at once against the same source (through the proxy, which
# counts simultaneous connections). Paced so that they would overlap.
pace=(-o plugin/migrate_max_messages_per_second=25)
for u in mc1 mc2 mc3 mc4; do dst_add_user "$u" userdb_migrate_source_user=alice; done
src_dump alice "$T/src-g.json" || fail "(g) source dump" "failed"
# two_runs NAME MAX USER1 USER2: USER2's run starts 0.3 s after USER1's,
# both with migrate_max_connections=MAX; sets rc1 rc2 and, if USER2's
# status said "waiting" while it ran, waiting=1
two_runs() {
	local max=$2 u1=$3 u2=$4 pid1 pid2 st
	proxy_start "$1" || die "faultproxy did not start"
	via_proxy "$u1" "${pace[@]}" -o plugin/migrate_max_connections="$max" &
	pid1=$!
	sleep 0.3
	via_proxy "$u2" "${pace[@]}" -o plugin/migrate_max_connections="$max" &
	pid2=$!
	waiting=
	for _ in $(seq 1 40); do
		st=$(dst_doveadm -f tab migrate status -u "$u2" 2>/dev/null | tail -n +2)
		case "$st" in *waiting*) waiting=1; break ;; esac
		kill -0 "$pid2" 2>/dev/null || break
		sleep 0.1
	done
	wait "$pid1"; rc1=$?
	wait "$pid2"; rc2=$?
	proxy_stop
}
two_runs maxconn 1 mc1 mc2
assert_eq "(g) both runs with migrate_max_connections=1 exit 0" "0 0" "$rc1 $rc2"
assert_eq "(g) at most 1 connection to the source at any time" 1 \
	"$(proxy_max_concurrent)"
if grep -q 'Waiting for a free connection to .*migrate_max_connections=1' "$T/run-mc2.err"; then
	pass "(g) the second run logged its wait for a free connection"
else
	fail "(g) the second run logged its wait" "$(head -c 400 "$T/run-mc2.err" | tr '\n' '|')"
fi
check "(g) migrate status showed the waiting run" [ -n "$waiting" ]
dst_equals "(g) first run: destination == source" mc1 "$T/src-g.json"
dst_equals "(g) second run: destination == source" mc2 "$T/src-g.json"

# with room for both, the runs overlap
two_runs maxconn2 2 mc3 mc4
assert_eq "(g) both runs with migrate_max_connections=2 exit 0" "0 0" "$rc1 $rc2"
assert_eq "(g) with room for both, the runs overlapped" 2 \
	"$(proxy_max_concurrent)"
check "(g) no wait logged when a slot is free" \
	bash -c "! grep -q 'Waiting for a free connection' '$T/run-mc4.err'"

# a slot directory that can't be used: one clear line, EX_CONFIG
dst_add_user mc5 userdb_migrate_source_user=alice
assert_exit NAME="(g) unusable migrate_connection_slots_dir: exit 78" 78 \
	dst_doveadm -o plugin/migrate_max_connections=1 \
	-o plugin/migrate_connection_slots_dir="$T/no/such/dir" migrate run -u mc5
one_error "(g) one error line naming migrate_max_connections" 'migrate_max_connections'

no_storage_damage "no damaged destination storage at the end"
harness_done
