#!/usr/bin/env bash
# Parallel folders (migrate_parallel_folders, default 4): worker processes
# import folders at once, each over its own source connection, into the
# same destination user. The source is reached through faultproxy.py,
# which counts simultaneous connections.
#
#   (a) a default run uses 4 workers and 4 connections at once; the
#       destination equals the source (flags, INTERNALDATE, subscriptions)
#       and a second run finds every folder unchanged
#   (b) the state dict deleted: a parallel re-run imports nothing twice
#   (c) a worker killed with SIGKILL mid-folder: the run's process imports
#       its folder again, exit 0, no duplicates
#   (d) the run's process killed with SIGKILL: its workers die with it; a
#       re-run completes without duplicates
#   (e) SIGTERM to the run's process: workers stop, exit 75, re-run completes
#   (f) migrate_max_connections=2 caps the workers' connections
#   (g) a source allowing 2 connections per user and IP
#       (mail_max_userip_connections): the workers that are refused leave
#       their folders to the others; exit 0, destination == source
#   (h) migrate_parallel_folders=1 is one connection
#   (i) BYE, NO [UNAVAILABLE] and [THROTTLED] inside worker connections
#   (j) two source folders mapped onto one destination folder go to one
#       worker: a message in both arrives once, as without workers
#   (k) an invalid migrate_parallel_folders: one error line naming it, 78
#   (l) migrate_worker_messages (the harness sets 0 for the cases above:
#       test mailboxes are small): a worker per that many messages, 8 MB
#       or 8 folders to import; a small mailbox takes one connection
#   (m) the worker on the largest folder keeps the run's CPU priority, the
#       others lower theirs (nice +10)
. "$(dirname "$0")/../lib/harness.sh"
. "$HARNESS_LIB/faults.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"

src_start || die "source server did not start"
dst_start || die "destination server did not start"
src_seed alice --seed 11 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"
src_dump alice "$T/src.json" || die "source dump failed"
nfolders=$(pj "$T/src.json" 'len([k for k in d if k != "subscriptions"])')
info "source: $nfolders folders, $(dump_messages "$T/src.json") messages"

for u in pa pb pc pd pe pf pg ph pi pm; do
	dst_add_user "$u" userdb_migrate_source_user=alice
done

# children PID: the worker processes of a run
children() { pgrep -P "$1" 2>/dev/null | tr '\n' ' '; }

# bg_run USER [doveadm -o options...]: a paced run in the background
# (40 messages/s shared by the workers, so a kill lands mid-folder);
# BG_PID is doveadm itself, KIDS its workers once they started
pace=(-o plugin/migrate_max_messages_per_second=40)
bg_run() {
	local user=$1
	shift
	dst_doveadm_argv
	"${DST_DOVEADM[@]}" -o plugin/migrate_source_port="$SRC_PORT" "${pace[@]}" "$@" \
		migrate run -u "$user" >"$T/run-$user.out" 2>"$T/run-$user.err" &
	BG_PID=$!
	track_pid "$BG_PID"
	KIDS=
	for _ in $(seq 1 50); do
		KIDS=$(children "$BG_PID")
		[ -n "$KIDS" ] && break
		sleep 0.1
	done
}

# all_dead PIDS...: within 3 s
all_dead() {
	local k alive
	for _ in $(seq 1 30); do
		alive=
		for k in "$@"; do kill -0 "$k" 2>/dev/null && alive="$alive $k"; done
		[ -z "$alive" ] && return 0
		sleep 0.1
	done
	return 1
}

# ------------------------------------------------------------ (a)
proxy_start par || die "faultproxy did not start"
assert_exit NAME="(a) parallel run exits 0" 0 via_proxy pa
proxy_stop
assert_match "(a) the run said it used 4 workers" \
	"Importing [0-9]+ folders in 4 worker processes" "$(cat "$T/run-pa.err")"
assert_eq "(a) 4 connections to the source at once" 4 \
	"$(proxy_max_concurrent)"
dst_equals "(a) destination == source" pa "$T/src.json"
assert_eq "(a) the result table lists every imported folder once" "$nfolders" \
	"$(tail -n +2 "$T/run-pa.out" | grep -v ' skipped ' | awk '{print $1}' | sort -u | grep -c .)"
proxy_start par2 || die "faultproxy did not start"
assert_exit NAME="(a) second run exits 0" 0 via_proxy pa
proxy_stop
assert_eq "(a) second run: every folder unchanged" "" \
	"$(tail -n +2 "$T/run-pa.out" | grep -v -e ' unchanged ' -e ' skipped ')"
check "(a) second run starts no worker" \
	bash -c "! grep -q 'worker processes' '$T/run-pa.err'"

# ------------------------------------------------------------ (b)
proxy_start b || die "faultproxy did not start"
assert_exit NAME="(b) first run exits 0" 0 via_proxy pb
rm -f "$(dst_home pb)/.dovecot-migrate.dict"
assert_exit NAME="(b) run without state exits 0" 0 via_proxy pb
proxy_stop
assert_eq "(b) run without state imports nothing" 0 \
	"$(tail -n +2 "$T/run-pb.out" | awk '{s += $5} END {print s + 0}')"
dst_equals "(b) no duplicates: destination == source" pb "$T/src.json"

# ------------------------------------------------------------ (c)
bg_run pc
sleep 1.5
victim=${KIDS%% *}
if [ -n "$victim" ] && kill -KILL "$victim" 2>/dev/null; then
	pass "(c) killed worker $victim mid-run"
else
	fail "(c) kill a worker" "no worker found (children of $BG_PID: '$KIDS')"
fi
wait "$BG_PID"
assert_eq "(c) the run still exits 0" 0 "$?"
assert_match "(c) the run logged the killed worker" \
	"Worker process $victim was killed by signal 9" "$(cat "$T/run-pc.err")"
dst_equals "(c) destination == source, no duplicates" pc "$T/src.json"

# ------------------------------------------------------------ (d)
bg_run pd
sleep 1.5
kids=$KIDS
kill -KILL "$BG_PID"
wait "$BG_PID" 2>/dev/null
# shellcheck disable=SC2086
check "(d) workers ($kids) died with the run's process" \
	bash -c "[ -n '$kids' ]" && check "(d) no worker left running" all_dead $kids
assert_exit NAME="(d) re-run exits 0" 0 dst_doveadm -o plugin/migrate_source_port="$SRC_PORT" \
	-o plugin/migrate_lock_timeout=1s migrate run -u pd
dst_equals "(d) destination == source, no duplicates" pd "$T/src.json"

# ------------------------------------------------------------ (e)
bg_run pe
sleep 1
kids=$KIDS
kill -TERM "$BG_PID"
for _ in $(seq 1 100); do
	kill -0 "$BG_PID" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$BG_PID" 2>/dev/null; then
	kill -KILL "$BG_PID"
	fail "(e) SIGTERM stops the run within 10 s" "still running"
else
	pass "(e) SIGTERM stops the run within 10 s"
fi
wait "$BG_PID"
assert_eq "(e) the interrupted run exits 75" 75 "$?"
# shellcheck disable=SC2086
check "(e) no worker left running" all_dead $kids
assert_match "(e) one error line says it was interrupted" "Interrupted by a signal" \
	"$(grep -E 'Error' "$T/run-pe.err")"
assert_exit NAME="(e) re-run exits 0" 0 dst_doveadm -o plugin/migrate_source_port="$SRC_PORT" \
	migrate run -u pe
dst_equals "(e) destination == source, no duplicates" pe "$T/src.json"

# ------------------------------------------------------------ (m)
# nice_of PID: the process's nice value (field 19 of /proc/PID/stat)
nice_of() { awk '{print $19}' "/proc/$1/stat" 2>/dev/null; }
bg_run pm
sleep 1
base=$(nice_of "$BG_PID")
nices=
# every worker has taken its first folder by now
for k in $(children "$BG_PID"); do nices="$nices $(nice_of "$k")"; done
info "(m) run's process: nice $base, workers:$nices"
assert_eq "(m) 4 workers" 4 "$(echo $nices | wc -w)"
assert_eq "(m) one worker (the largest folder's) at the run's priority" 1 \
	"$(printf '%s\n' $nices | grep -cx -- "$base")"
assert_eq "(m) the others at nice +10" 3 \
	"$(printf '%s\n' $nices | grep -cx -- "$((base + 10 > 19 ? 19 : base + 10))")"
wait "$BG_PID"
assert_eq "(m) the run exits 0" 0 "$?"
dst_equals "(m) destination == source" pm "$T/src.json"

# capped_run NAME USER MAX [doveadm -o options...]: through the proxy; at
# most MAX connections at once, destination == source
capped_run() {
	local name=$1 user=$2 max=$3
	shift 3
	proxy_start "$user" || die "faultproxy did not start"
	assert_exit NAME="$name: exit 0" 0 via_proxy "$user" "$@"
	proxy_stop
	assert_eq "$name: at most $max connections at once" "$max" \
		"$(proxy_max_concurrent)"
	dst_equals "$name: destination == source" "$user" "$T/src.json"
}

# ------------------------------------------------------------ (f), (h)
capped_run "(f) migrate_max_connections=2" pf 2 -o plugin/migrate_max_connections=2
capped_run "(h) migrate_parallel_folders=1" ph 1 -o plugin/migrate_parallel_folders=1
check "(h) no worker processes" bash -c "! grep -q 'worker processes' '$T/run-ph.err'"

# ------------------------------------------------------------ (i)
# faults inside worker connections: BYE (the worker reconnects and resumes
# its folder), NO [UNAVAILABLE] and [THROTTLED] (it backs off, and the
# others with it)
proxy_start wfaults --count-fetch body --bye-after-fetch 2,6 \
	--unavailable-fetch 4 --throttle-fetch 8,9 || die "faultproxy did not start"
assert_exit NAME="(i) run with BYE, UNAVAILABLE and THROTTLED in workers: exit 0" 0 \
	via_proxy pi -o plugin/migrate_backoff_max=1s
proxy_stop
assert_eq "(i) the proxy injected 2 BYE, 1 UNAVAILABLE, 2 THROTTLED" "bye bye throttled throttled unavailable" \
	"$(proxy_injected)"
assert_match "(i) a worker reconnected" "Source connection lost" "$(cat "$T/run-pi.err")"
assert_match "(i) a worker backed off" "Source server is throttling" "$(cat "$T/run-pi.err")"
dst_equals "(i) destination == source" pi "$T/src.json"

# ------------------------------------------------------------ (g)
# a second source that allows 2 connections per user and IP
cat >"$T/src-limit.conf" <<'EOF'
protocol imap {
  mail_max_userip_connections = 2
}
EOF
src_start --name limit --conf-extra "$T/src-limit.conf" || die "second source did not start"
src_seed alice --seed 11 >"$T/seed2.out" 2>&1 || die "seeding failed"
src_dump alice "$T/src2.json" || die "source dump failed"
assert_exit NAME="(g) run against a 2-connection source exits 0" 0 \
	dst_doveadm -o plugin/migrate_source_port="$SRC_PORT" migrate run -u pg
# Dovecot's anvil counts connections asynchronously: now and then all four
# logins get in before the count catches up
refused=$(grep -c 'Maximum number of connections from user+IP exceeded' "$SRC_DIR/dovecot.log")
warned=$(grep -c "Worker [0-9] didn't start: .*Maximum number of connections.*its folders are imported by the others" "$LAST_ERR")
info "(g) the source refused $refused logins, $warned workers didn't start"
assert_eq "(g) every refused worker is named in a warning" "$refused" "$warned"
dst_equals "(g) destination == source" pg "$T/src2.json"
no_storage_damage "(g) no damaged destination storage"

# ------------------------------------------------------------ (j)
# two source folders mapped onto one destination folder, holding the same
# message: one worker imports both, one after another, as a run without
# workers would; the second finds the message already there
src_use || die "no default source"
src_seed bob --seed 12 >"$T/seed3.out" 2>&1 || die "seeding bob failed"
assert_exit NAME="(j) copy Archive UID 1 into Work on the source" 0 \
	src_doveadm copy -u bob Work mailbox Archive uid 1
src_dump bob "$T/src-bob.json" || die "source dump failed"
printf '%s\n' '^Archive$ -> Merged' '^Work$ -> Merged' >"$T/merge.rules"
chmod 644 "$T/merge.rules"
dst_add_user pj userdb_migrate_source_user=bob
assert_exit NAME="(j) run with two folders mapped onto Merged exits 0" 0 \
	dst_doveadm -o plugin/migrate_source_port="$SRC_PORT" \
	-o plugin/migrate_folder_map="$T/merge.rules" migrate run -u pj
assert_match "(j) the run used workers" "worker processes" "$(cat "$LAST_ERR")"
dst_dump pj "$T/dst-pj.json" || fail "(j) destination dump" "failed"
assert_eq "(j) Merged holds Archive and Work, the shared message once" \
	"$(pj "$T/src-bob.json" 'len(d["Archive"]["messages"]) + len(d["Work"]["messages"]) - 1')" \
	"$(pj "$T/dst-pj.json" 'len(d["Merged"]["messages"])')"

# ------------------------------------------------------------ (k)
dst_add_user pk userdb_migrate_source_user=bob
assert_exit NAME="(k) migrate_parallel_folders=many: exit 78" 78 \
	dst_doveadm -o plugin/migrate_source_port="$SRC_PORT" \
	-o plugin/migrate_parallel_folders=many migrate run -u pk
errors=$(grep -E 'Error|Fatal|Panic' "$LAST_ERR")
assert_eq "(k) one error line" 1 "$(printf '%s\n' "$errors" | grep -c .)"
assert_match "(k) it names the setting" "migrate_parallel_folders" "$errors"
assert_eq "(k) nothing written at the destination" "" "$(dst_mail_files pk)"

# ------------------------------------------------------------ (l)
dst_add_user pl1 userdb_migrate_source_user=alice
dst_add_user pl2 userdb_migrate_source_user=alice
# a share bigger than the mailbox's messages: the folders and bytes
# measures alone decide (the seeded mailbox: ~12 MB, under 16 folders:
# at most 2 workers; 1 when the source has no STATUS=SIZE)
proxy_start l1 || die "faultproxy did not start"
assert_exit NAME="(l) migrate_worker_messages=1000000: exit 0" 0 \
	via_proxy pl1 -o plugin/migrate_worker_messages=1000000
proxy_stop
nworkers=$(sed -n 's/.*Importing [0-9]* folders in \([0-9]*\) worker processes.*/\1/p' \
	"$T/run-pl1.err" | head -n 1)
if [ "$nfolders" -le 16 ] && [ "${nworkers:-1}" -le 2 ]; then
	pass "(l) a small mailbox: ${nworkers:-no} workers (not migrate_parallel_folders' 4)"
else
	fail "(l) a small mailbox: at most 2 workers" "${nworkers:-none}, $nfolders folders"
fi
assert_eq "(l) ... and as many connections" "${nworkers:-1}" "$(proxy_max_concurrent)"
dst_equals "(l) destination == source" pl1 "$T/src.json"
proxy_start l2 || die "faultproxy did not start"
assert_exit NAME="(l) migrate_worker_messages=1: exit 0" 0 \
	via_proxy pl2 -o plugin/migrate_worker_messages=1
proxy_stop
assert_match "(l) a worker per message: migrate_parallel_folders (4) workers" \
	"Importing [0-9]+ folders in 4 worker processes" "$(cat "$T/run-pl2.err")"
dst_equals "(l) destination == source" pl2 "$T/src.json"

harness_done
