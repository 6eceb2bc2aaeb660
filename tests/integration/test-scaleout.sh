#!/usr/bin/env bash
# timeout: 900
# Scale-out and deployment shapes:
#
#  - 20 destination users, each with its own source account and per-user
#    settings from userdb extra fields (source user, password file),
#    migrated by ONE "migrate run -A": every destination equals its source;
#    one user with a wrong source password fails alone (named in stderr,
#    exit 77) and the others complete
#  - the same through doveadm_worker_count=4 (doveadm-server processes)
#  - a second run for the same user while one runs: exit 75, clear message
#  - the state in Redis, in SQLite and in PostgreSQL (through the dict
#    proxy, conf.d/dict-sql-migrate.conf.ext): first run, no-op second run,
#    kill -9 and resume, status readable, the rows/keys are where the docs
#    say
#  - remote execution: doveadm migrate run -S host:port (doveadm protocol)
#    and the HTTP API (migrateRun/migrateStatus)
#  - with SCALEOUT_BENCH=1 only (a benchmark is no test: about 3 minutes,
#    not run in CI): users per minute for 100 small mailboxes with 0
#    (in-process), 1, 2 and 4 workers, printed
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"
# seeding and the HTTP replies' checks
CHECKS="$HARNESS_LIB/checks/scaleout.py"

N_USERS=20
BENCH_USERS=${BENCH_USERS:-100}
DA_PORT=$(free_port)
HTTP_PORT=$(free_port)
while [ "$HTTP_PORT" = "$DA_PORT" ]; do HTTP_PORT=$(free_port); done
DOVEADM_PW=scaleout-doveadm-pw
API_KEY=scaleout-api-key

# ------------------------------------------------------------ own cleanup
# Redis and PostgreSQL are stopped by pid; the harness trap runs after.
REDIS_PID=
PG_DATA=
# the newest installed PostgreSQL (15 on Debian 12, 17 on Debian 13)
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
scaleout_cleanup() {
	local pid
	if [ -n "$PG_DATA" ] && [ -s "$PG_DATA/postmaster.pid" ]; then
		pid=$(head -n 1 "$PG_DATA/postmaster.pid")
		case "$pid" in '' | *[!0-9]*) ;; *)
			stop_pid "$pid" QUIT
			;;
		esac
	fi
	[ -n "$REDIS_PID" ] && kill -KILL "$REDIS_PID" 2>/dev/null
}
trap 'rc=$?; scaleout_cleanup; (exit $rc); harness_on_exit' EXIT

# ------------------------------------------------------------ state backends
# Redis: a private server on a free loopback port, no persistence.
REDIS_PORT=
if command -v redis-server >/dev/null 2>&1; then
	REDIS_PORT=$(free_port)
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
		--appendonly no --daemonize no --dir "$T" >"$T/redis.log" 2>&1 &
	REDIS_PID=$!
	track_pid "$REDIS_PID"
	disown "$REDIS_PID" 2>/dev/null # no "Killed" job notice at cleanup
	wait_port "$REDIS_PORT" 10 || { info "redis-server did not start: $(tail -n 2 "$T/redis.log")"; REDIS_PORT=; }
else
	info "redis-server is not installed: the Redis checks are skipped"
fi

# SQLite through the dict proxy: the database belongs to the dict
# service's user (default_internal_user = dovecot).
SQL_DIR="$T/sql"
mkdir -p "$SQL_DIR"
DICT_USER=dovecot
id "$DICT_USER" >/dev/null 2>&1 || DICT_USER=root
SQL_CREATE="CREATE TABLE migrate_state (username VARCHAR(255) NOT NULL,
  key VARCHAR(1024) NOT NULL, value TEXT, PRIMARY KEY (username, key));"
HAVE_SQLITE=0
if command -v sqlite3 >/dev/null 2>&1 &&
	sqlite3 "$SQL_DIR/migrate.sqlite" "$SQL_CREATE" 2>"$T/sqlite.err"; then
	HAVE_SQLITE=1
	chown -R "$DICT_USER" "$SQL_DIR"
else
	info "sqlite3 is not usable, the SQLite checks are skipped: $(cat "$T/sqlite.err" 2>/dev/null)"
fi
# the shipped map, pointed at the test database
sed "s|^connect = .*|connect = $SQL_DIR/migrate.sqlite|" \
	"$TOP/conf.d/dict-sql-migrate.conf.ext" >"$T/dict-sqlite.conf.ext"

# PostgreSQL: a private cluster in $T, owned by postgres, on a free port.
PG_PORT=
if [ -x "$PG_BIN/initdb" ] && id postgres >/dev/null 2>&1 && command -v psql >/dev/null 2>&1; then
	PG_PORT=$(free_port)
	mkdir -p "$T/pg"
	chown postgres "$T/pg"
	if timeout 60 runuser -u postgres -- "$PG_BIN/initdb" -D "$T/pg/data" -A trust \
		-U postgres --no-sync -E UTF8 >"$T/pg/initdb.log" 2>&1 &&
		timeout 60 runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$T/pg/data" -l "$T/pg/server.log" -w \
			-o "-p $PG_PORT -k $T/pg -c listen_addresses=127.0.0.1 -c fsync=off" \
			start >"$T/pg/start.log" 2>&1; then
		PG_DATA="$T/pg/data"
		if ! timeout 30 psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
			-c "$SQL_CREATE" >"$T/pg/create.log" 2>&1; then
			info "creating the PostgreSQL table failed: $(tail -n 2 "$T/pg/create.log")"
			PG_PORT=
		fi
	else
		info "PostgreSQL did not start: $(tail -n 2 "$T/pg/initdb.log" "$T/pg/start.log" 2>/dev/null | tr '\n' ' ')"
		PG_PORT=
	fi
else
	info "PostgreSQL (initdb/psql) is not installed: the PostgreSQL checks are skipped"
fi
sed "s|^connect = .*|connect = host=127.0.0.1 port=${PG_PORT:-5432} dbname=postgres user=postgres|" \
	"$TOP/conf.d/dict-sql-migrate.conf.ext" >"$T/dict-pgsql.conf.ext"

# dict_sql_24 NAME DRIVER-SETTINGS: a 2.4 dict_server { } entry NAME with the
# state map of conf.d/dict-sql-migrate.conf.ext
dict_sql_24() {
	printf '  dict %s {\n    driver = sql\n' "$1"
	printf '%s\n' "$2" | sed 's/^/    /'
	cat <<'EOF'
    dict_map priv/migrate/$key {
      sql_table = migrate_state
      username_field = username
      value_field value {
      }
      key_field key {
        value = $key
      }
    }
  }
EOF
}

# ------------------------------------------------------------ destination config
# - the doveadm service loads the plugin itself (for workers, -S and HTTP:
#   doveadm -o options are not sent to a doveadm server)
# - a TCP listener (doveadm protocol, doveadm_password) and an HTTP one
#   (doveadm_api_key)
# - the dict service with the SQL state dicts, its socket open to vmail
{
	cat <<EOF
doveadm_password = $DOVEADM_PW
doveadm_api_key = $API_KEY
EOF
	conf_mail_plugins --protocol doveadm "$PLUGIN_NAME"
	conf_mail_plugin_dir "$PLUGIN_DIR" --protocol doveadm
	echo "service doveadm {"
	conf_listener tcp "$DA_PORT"
	conf_listener http "$HTTP_PORT" plain
	echo "}"
	if dv24; then
		# the dict server's SQL dicts, the 2.4 way
		echo "dict_server {"
		dict_sql_24 migrate "sql_driver = sqlite
sqlite_path = $SQL_DIR/migrate.sqlite"
		[ -z "$PG_PORT" ] || dict_sql_24 migratepg "sql_driver = pgsql
pgsql 127.0.0.1 {
  parameters {
    port = $PG_PORT
    dbname = postgres
    user = postgres
  }
}"
		echo "}"
	else
		echo "dict {"
		echo "  migrate = sqlite:$T/dict-sqlite.conf.ext"
		[ -n "$PG_PORT" ] && echo "  migratepg = pgsql:$T/dict-pgsql.conf.ext"
		echo "}"
	fi
	cat <<EOF
service dict {
  unix_listener dict {
    mode = 0660
    user = $MAIL_USER
    group = $MAIL_USER
  }
}
EOF
} >"$T/dst-extra.conf"

src_start || die "source server did not start"
dst_start --conf-extra "$T/dst-extra.conf" || die "destination server did not start"

# ------------------------------------------------------------ helpers

# passwd_bulk FILE LINE...: append passwd-file lines at once, then wait for
# the next second (Dovecot re-reads a passwd-file when its mtime changes,
# at most once a second: see passwd_add in the harness).
passwd_bulk() {
	local file=$1
	shift
	{
		cat "$file"
		printf '%s\n' "$@"
	} >"$file.new"
	chmod 644 "$file.new"
	mv -f "$file.new" "$file"
	python3 -c 'import time; time.sleep(1.05 - time.time() % 1)'
}

# pwfile NAME PASSWORD: a source password file readable by vmail only
UPW="$T/upw"
mkdir -p "$UPW"
chmod 755 "$UPW"
pwfile() {
	printf '%s\n' "$2" >"$UPW/$1"
	chown "$MAIL_USER:$MAIL_USER" "$UPW/$1"
	chmod 600 "$UPW/$1"
}

# seed_users PREFIX FIRST LAST: a small, per-user distinct mailbox for each
# source user PREFIX<n> (INBOX, Work, Work/Sub; flags and a keyword; one
# corpus message), all in one IMAP client process.
seed_users() { python3 "$CHECKS" seed-users "$SRC_PORT" "$CORPUS" "$@"; }

# dst_equals_src NAME DST_USER SRC_USER: dump both, compare
dst_equals_src() {
	local name=$1 duser=$2 suser=$3
	[ -s "$T/src-$suser.json" ] || src_dump "$suser" "$T/src-$suser.json" ||
		{ fail "$name" "source dump of $suser failed"; return 1; }
	dst_equals "$name" "$duser" "$T/src-$suser.json"
}

# json_get FILE PYEXPR: evaluate PYEXPR with rows = the parsed JSON
json_get() {
	python3 -c 'import json,sys
rows = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))' "$1" "$2" 2>&1
}

# state_dict_conf DICT_URI: on 2.4 (no dict URIs there), a copy of the
# destination's config whose migrate { } filter holds the dict block that
# means what the 2.3 URI says (docs/dovecot-24-port.md); its path is printed
# (nothing for the default file dict in the home)
state_dict_conf() {
	local dict=$1 conf block kv
	case "$dict" in
	file:*) return 0 ;;
	redis:*)
		block="dict redis {"
		for kv in $(echo "${dict#redis:}" | tr ':' ' '); do
			case "$kv" in
			host=*) block+=$'\n'"  redis_host = ${kv#*=}" ;;
			port=*) block+=$'\n'"  redis_port = ${kv#*=}" ;;
			prefix=*) block+=$'\n'"  redis_key_prefix = ${kv#*=}" ;;
			esac
		done
		block+=$'\n}' ;;
	proxy::*) block=$'dict proxy {\n  dict_proxy_name = '"${dict#proxy::}"$'\n}' ;;
	*) echo "state_dict_conf: no 2.4 form for $dict" >&2; return 1 ;;
	esac
	conf="$DST_DIR/dovecot-state-$(printf '%s' "$dict" | md5sum | cut -c1-8).conf"
	{
		cat "$DST_DIR/dovecot.conf"
		echo "migrate {"
		printf '%s\n' "$block" | sed 's/^/  /'
		echo "}"
	} >"$conf"
	echo "$conf"
}

# sd_doveadm DICT_URI ARGS...: dst_doveadm with the state in DICT_URI
# (2.3: migrate_state_dict; 2.4: the dict block in a copy of the config)
sd_doveadm() {
	local dict=$1
	shift
	if dv24; then
		DST_CONF=$(state_dict_conf "$dict") dst_doveadm "$@"
	else
		dst_doveadm -o "plugin/migrate_state_dict=$dict" "$@"
	fi
}

# run_state DICT_URI USER: the "*" row's state from migrate status
run_state() {
	sd_doveadm "$1" -f json migrate status -u "$2" \
		>"$T/state.json" 2>"$T/state.err" || { echo "status-failed: $(head -c 200 "$T/state.err")"; return; }
	json_get "$T/state.json" '[r["state"] for r in rows if r["folder"] == "*"][0]'
}

# ------------------------------------------------------------ 20 users, one run -A
src_lines=()
dst_lines=()
w_lines=()
for n in $(seq 1 "$N_USERS"); do
	u=$(printf 'u%02d' "$n")
	d=$(printf 'd%02d' "$n")
	w=$(printf 'w%02d' "$n")
	src_lines+=("$u:{PLAIN}spw-$u::::$SRC_DIR/home/$u::")
	# per-user settings from the userdb: the source login and its
	# password file (overriding migrate_source_password_file in plugin {})
	dst_lines+=("$d:{PLAIN}dpw-$d::::$DST_DIR/home/$d::userdb_migrate_source_user=$u userdb_migrate_source_password_file=$UPW/$d")
	# w-users: the same sources, for the worker run (added after the first)
	w_lines+=("$w:{PLAIN}dpw-$w::::$DST_DIR/home/$w::userdb_migrate_source_user=$u userdb_migrate_source_password_file=$UPW/$w")
	pwfile "$d" "spw-$u"
	pwfile "$w" "spw-$u"
done
BAD_USER=d07
pwfile "$BAD_USER" "not-the-password"
passwd_bulk "$SRC_DIR/passwd" "${src_lines[@]}"
passwd_bulk "$DST_DIR/passwd" "${dst_lines[@]}"
seed_users u 1 "$N_USERS" >"$T/seed-u.out" 2>&1 || die "seeding u01..u$N_USERS failed: $(tail -n 3 "$T/seed-u.out")"

# alice and bob (the harness's users) exist on both sides too: alice gets
# mail for the lock/kill/backend checks, bob stays empty
gen_inbox() { python3 "$CHECKS" gen-inbox "$SRC_PORT" "$1" "$(src_password "$1")" "$2"; }
gen_inbox alice 60 || die "seeding alice failed"

t0=$(date +%s.%N)
assert_exit NAME="one run -A over $N_USERS+ users with one bad password: exit 77" 77 \
	dst_doveadm migrate run -A
t1=$(date +%s.%N)
info "run -A took $(python3 -c "print('%.1f' % ($t1 - $t0))")s"
cp "$LAST_ERR" "$T/runA.err"
cp "$LAST_OUT" "$T/runA.out"
err_users=$(grep -E 'Error|Fatal' "$T/runA.err" | sed -n 's/^doveadm(\([^)]*\)).*/\1/p' | sort -u | tr '\n' ' ')
assert_eq "only $BAD_USER is named in error lines" "$BAD_USER " "$err_users"
assert_match "$BAD_USER's error says the source refused the login" \
	"^doveadm\\($BAD_USER\\): Error: migrate: .*(login|LOGIN|authentication|Authentication)" \
	"$(grep -E 'Error' "$T/runA.err" | head -n 1)"
if grep -q 'not-the-password' "$T/runA.err" "$T/runA.out"; then
	fail "the wrong password is not printed" "found in the output"
else
	pass "the wrong password is not printed"
fi
# -A prints a username column
assert_match "run -A output has a username column" '^Username +folder ' "$(head -n 1 "$T/runA.out")"

ok=0
bad=""
for n in $(seq 1 "$N_USERS"); do
	u=$(printf 'u%02d' "$n")
	d=$(printf 'd%02d' "$n")
	[ "$d" = "$BAD_USER" ] && continue
	src_dump "$u" "$T/src-$u.json" 2>/dev/null
	if dst_dump "$d" "$T/dst-$d.json" 2>/dev/null &&
		imaptool compare "$T/src-$u.json" "$T/dst-$d.json" >"$T/cmp-$d.out" 2>&1; then
		ok=$((ok + 1))
	else
		bad="$bad $d($(head -n 1 "$T/cmp-$d.out" 2>/dev/null))"
	fi
done
assert_eq "run -A: every other destination equals its own source" "$((N_USERS - 1))" "$ok"
[ -n "$bad" ] && info "differing:$bad"
# per-user sources really differ (u01 != u02), so equality means mapping
if imaptool compare "$T/src-u01.json" "$T/src-u02.json" >/dev/null 2>&1; then
	fail "source accounts are distinct" "u01 and u02 have the same mail"
else
	pass "source accounts are distinct"
fi
assert_eq "$BAD_USER has no migrated mail" "" "$(dst_mail_files "$BAD_USER")"

assert_exit NAME="status -A -f json exits 0" 0 dst_doveadm -f json migrate status -A
cp "$LAST_OUT" "$T/statusA.json"
assert_eq "status -A: d-users completed, $BAD_USER failed" \
	"completed=$((N_USERS - 1)) failed=1" \
	"$(json_get "$T/statusA.json" '"completed=%d failed=%d" % (
  sum(1 for r in rows if r["folder"] == "*" and r["username"].startswith("d") and r["state"] == "completed"),
  sum(1 for r in rows if r["folder"] == "*" and r["username"].startswith("d") and r["state"] == "failed"))')"
assert_match "status -A: $BAD_USER's last_error is the login refusal" '.' \
	"$(json_get "$T/statusA.json" '[r["last_error"] for r in rows if r["username"] == "'"$BAD_USER"'" and r["folder"] == "*"][0]')"

# ------------------------------------------------------------ workers
# doveadm_worker_count=4: the doveadm client sends each user's command to
# doveadm-server processes over $base_dir/doveadm-server (-o options are
# not passed on; the plugin is loaded by "protocol doveadm" above).
#
# Dovecot 2.3.19's doveadm client sometimes deadlocks with more than one
# worker: it waits in doveadm_server_flush_one() for a reply the idle
# doveadm-server processes already sent (reproduced with "doveadm
# mailbox status -u mask" and no plugin at all): it happens when several
# doveadm-servers print at once (server-connection.c, see
# plugin/migrate-compat.h), so a 2.3 doveadm-server's migrate run prints
# no table; other commands (status) still can. A run that hangs is
# killed after 25 s and run again (runs are idempotent); the deadlock is
# reported, the outcome must be right.
passwd_bulk "$DST_DIR/passwd" "${w_lines[@]}"
src_dump "u07" "$T/src-u07.json" 2>/dev/null

# workers_run NAME EXPECTED_RC ATTEMPTS ARGS...: run dst_doveadm ARGS, again
# when an attempt hangs (killed after 25 s: 124), at most ATTEMPTS times;
# LAST_* are the last attempt's; WORKER_HANGS counts the hung ones
workers_run() {
	local name=$1 want=$2 attempts=$3 attempt
	shift 3
	WORKER_HANGS=0
	for attempt in $(seq 1 "$attempts"); do
		DOVEADM_TIMEOUT=25 run_capture dst_doveadm "$@"
		[ "$LAST_RC" = 124 ] || break
		WORKER_HANGS=$((WORKER_HANGS + 1))
		info "$name: attempt $attempt hung (Dovecot 2.3 doveadm client deadlock): $(grep -c 'failed for' "$LAST_ERR") commands in flight when killed"
	done
	if [ "$LAST_RC" = 124 ] && [ "$name" != "${name#benchmark}" ]; then
		# the benchmark is a note: a Dovecot deadlock is reported, not failed
		info "$name: every attempt hung (Dovecot 2.3 doveadm client deadlock)"
	elif [ "$LAST_RC" = "$want" ]; then
		if [ "$WORKER_HANGS" = 0 ]; then
			pass "$name: exit $want"
		else
			pass "$name: exit $want (after $WORKER_HANGS hung attempts)"
		fi
	else
		fail "$name: exit $want" "exit $LAST_RC; stderr: $(tail -n 3 "$LAST_ERR" | tr '\n' ' ' | head -c 400)"
	fi
}
log_mark=$(wc -l <"$DST_DIR/dovecot.log")
t0=$(date +%s.%N)
workers_run "run -A with doveadm_worker_count=4 ($BAD_USER fails again)" 77 3 \
	-o doveadm_worker_count=4 migrate run -A
t1=$(date +%s.%N)
info "run -A with 4 workers took $(python3 -c "print('%.1f' % ($t1 - $t0))")s ($WORKER_HANGS hung attempts)"
cp "$LAST_ERR" "$T/runW.err"
assert_match "workers: $BAD_USER is named in an error line" \
	"Error: .*$BAD_USER|$BAD_USER.*Error" "$(grep -E 'Error' "$T/runW.err")"
others=$(grep -E 'Error' "$T/runW.err" | grep -v "$BAD_USER" | head -n 3)
assert_eq "workers: no other user has an error" "" "$others"
tail -n +"$((log_mark + 1))" "$DST_DIR/dovecot.log" >"$T/worker.log"
pids=$(sed -n 's/.*doveadm(w[0-9]*)<\([0-9]*\)>.*/\1/p' "$T/worker.log" | sort -u | grep -c .)
# Dovecot 2.4's doveadm client opens one connection more than
# doveadm_worker_count (doveadm_mail_server_user(): "clients_count <=
# limit", 2.4.0 to 2.4.4; 2.3 stops at the count): 5 servers for 4
wmax=4
dv24 && wmax=5
if [ "$pids" -ge 2 ] && [ "$pids" -le $((wmax * (WORKER_HANGS + 1))) ]; then
	pass "workers: the w-users ran in $pids doveadm-server processes (at most $wmax per attempt)"
else
	fail "workers: the w-users ran in 2..$wmax doveadm-server processes per attempt" "$pids processes"
fi
ok=0
for n in $(seq 1 "$N_USERS"); do
	u=$(printf 'u%02d' "$n")
	w=$(printf 'w%02d' "$n")
	if dst_dump "$w" "$T/dst-$w.json" 2>/dev/null &&
		imaptool compare "$T/src-$u.json" "$T/dst-$w.json" >/dev/null 2>&1; then
		ok=$((ok + 1))
	fi
done
assert_eq "workers: every w-user (w07 too) equals its source" "$N_USERS" "$ok"

# a doveadm server without the plugin can't run the command: the source
# instance's doveadm service doesn't load it
doveadm_src=(doveadm -c "$SRC_DIR/dovecot.conf" -o "mail_plugin_dir=$PLUGIN_DIR" -o "mail_plugins=$PLUGIN_NAME")
run_capture timeout -k 5 60 "${doveadm_src[@]}" -o doveadm_worker_count=2 migrate status -u alice
if [ "$LAST_RC" != 0 ] && grep -qi 'unknown command' "$LAST_ERR" "$SRC_DIR/dovecot.log"; then
	pass "workers need the plugin in the doveadm service: 'unknown command' without it"
else
	fail "workers need the plugin in the doveadm service" \
		"exit $LAST_RC: $(head -c 300 "$LAST_ERR")"
fi

# ------------------------------------------------------------ the run lock
# a slow run (10 messages/s, 60 messages) and a second one for the same user
dst_add_user lk userdb_migrate_source_user=alice
dst_doveadm_argv
timeout -k 5 60 "${DST_DOVEADM[@]}" -o plugin/migrate_max_messages_per_second=10 \
	migrate run -u lk >"$T/lk.out" 2>"$T/lk.err" &
lk_pid=$!
track_pid "$lk_pid"
state=""
for _ in $(seq 1 100); do
	state=$(run_state "file:$(dst_home lk)/.dovecot-migrate.dict" lk)
	[ "$state" = running ] && break
	sleep 0.1
done
assert_eq "the slow run is running" running "$state"
assert_exit NAME="a second run for the same user is refused: exit 75" 75 dst_doveadm migrate run -u lk
assert_match "the refusal names the holder and the lock" \
	'Error: migrate: Another migrate run for this user is in progress \(host [^,]+, pid [0-9]+\); its lock expires in [0-9]+ seconds \(migrate_lock_timeout\)' \
	"$(cat "$LAST_ERR")"
if kill -0 "$lk_pid" 2>/dev/null; then
	pass "the first run is still going after the refusal"
else
	fail "the first run is still going after the refusal" "it ended"
fi
wait "$lk_pid"
assert_eq "the first run completes: exit 0" 0 "$?"
assert_exit NAME="after it, a run for the user is allowed again" 0 dst_doveadm migrate run -u lk
dst_equals_src "the locked user equals its source" lk alice

# ------------------------------------------------------------ state backends
# backend_checks LABEL DICT_URI: identity/resume checks of the spine with
# the state in DICT_URI, on fresh users <label>1 (run, no-op run) and
# <label>2 (kill -9 mid-run, resume); both migrate alice's source.
backend_checks() {
	local label=$1 dict=$2 u1=${1}1 u2=${1}2 rc files_before files_after
	dst_add_user "$u1" userdb_migrate_source_user=alice
	dst_add_user "$u2" userdb_migrate_source_user=alice
	assert_exit NAME="$label: first run exits 0" 0 \
		sd_doveadm "$dict" migrate run -u "$u1"
	dst_equals_src "$label: first run: destination == source" "$u1" alice
	files_before=$(dst_mail_files "$u1")
	assert_exit NAME="$label: second run exits 0" 0 \
		sd_doveadm "$dict" -f json migrate run -u "$u1"
	assert_eq "$label: second run imports nothing, every folder unchanged" "0 unchanged" \
		"$(json_get "$LAST_OUT" '"%d %s" % (sum(int(r["imported"]) for r in rows), ",".join(sorted({r["result"] for r in rows if r["result"] != "skipped"})))')"
	files_after=$(dst_mail_files "$u1")
	if [ -n "$files_before" ] && [ "$files_before" = "$files_after" ]; then
		pass "$label: second run wrote no message files"
	else
		fail "$label: second run wrote no message files" "the message files changed"
	fi
	if [ -e "$(dst_home "$u1")/.dovecot-migrate.dict" ]; then
		fail "$label: no file dict in the home" "$(dst_home "$u1")/.dovecot-migrate.dict exists"
	else
		pass "$label: no file dict in the home"
	fi
	assert_eq "$label: status readable, run completed" completed "$(run_state "$dict" "$u1")"

	# kill -9 mid-run: 60 messages at 20/s take 3 s; killed once the
	# first message files are there (a fixed delay missed the import on
	# a loaded machine, where doveadm alone takes over a second to start)
	sd_doveadm "$dict" -o plugin/migrate_batch_messages=5 \
		-o plugin/migrate_max_messages_per_second=20 migrate run -u "$u2" >/dev/null 2>&1 &
	local run_pid=$! n
	track_pid "$run_pid"
	for n in $(seq 1 200); do
		[ "$(dst_mail_files "$u2" | grep -c .)" -gt 0 ] && break
		kill -0 "$run_pid" 2>/dev/null || break
		sleep 0.05
	done
	pkill -KILL -f -- "migrate run -u $u2\$" 2>/dev/null
	wait "$run_pid"
	rc=$?
	assert_eq "$label: the run was killed mid-way (137)" 137 "$rc"
	assert_eq "$label: status after kill -9 is readable and says running" running \
		"$(run_state "$dict" "$u2")"
	local partial
	partial=$(dst_mail_files "$u2" | grep -c .)
	if [ "$partial" -gt 0 ] && [ "$partial" -lt 60 ]; then
		pass "$label: the killed run left a partial copy ($partial of 60)"
	else
		fail "$label: the killed run left a partial copy" "$partial message files"
	fi
	assert_exit NAME="$label: resume after kill -9 exits 0 (stale lock taken over)" 0 \
		sd_doveadm "$dict" migrate run -u "$u2"
	dst_equals_src "$label: resume: destination == source, no duplicates" "$u2" alice
	assert_eq "$label: status after resume: completed" completed "$(run_state "$dict" "$u2")"
	assert_exit NAME="$label: verify -I after resume exits 0" 0 \
		sd_doveadm "$dict" migrate verify -I -u "$u2"
	assert_exit NAME="$label: report readable" 0 \
		sd_doveadm "$dict" migrate report -u "$u2"
}

if [ -n "$REDIS_PORT" ]; then
	REDIS_DICT="redis:host=127.0.0.1:port=$REDIS_PORT:prefix=migrate/"
	backend_checks redis "$REDIS_DICT"
	keys=$(timeout 10 redis-cli -p "$REDIS_PORT" --scan --pattern 'migrate/redis1/*' 2>&1 | sort)
	assert_match "redis: keys are migrate/<user>/migrate/..." 'migrate/redis1/migrate/folder/INBOX/uidmap' "$keys"
	assert_match "redis: the run record is there" '^migrate/redis1/migrate/run$' "$keys"
	assert_eq "redis: no lock key left after the runs" "" \
		"$(timeout 10 redis-cli -p "$REDIS_PORT" --scan --pattern 'migrate/*/migrate/lock' 2>&1)"
fi

if [ "$HAVE_SQLITE" = 1 ]; then
	backend_checks sqlite proxy::migrate
	rows=$(sqlite3 "$SQL_DIR/migrate.sqlite" \
		"SELECT key FROM migrate_state WHERE username = 'sqlite1' ORDER BY key" 2>&1)
	assert_match "sqlite: rows keyed by (username, key)" 'folder/INBOX/state' "$rows"
	assert_match "sqlite: the run record row" '^run$' "$rows"
	assert_eq "sqlite: the run row says completed" 1 \
		"$(sqlite3 "$SQL_DIR/migrate.sqlite" "SELECT count(*) FROM migrate_state WHERE username = 'sqlite2' AND key = 'run' AND value LIKE '%status=completed%'" 2>&1)"
fi

if [ -n "$PG_PORT" ]; then
	backend_checks pgsql proxy::migratepg
	rows=$(timeout 30 psql -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
		-c "SELECT key FROM migrate_state WHERE username = 'pgsql1' ORDER BY key" 2>&1)
	assert_match "pgsql: rows keyed by (username, key)" 'folder/INBOX/state' "$rows"
	assert_match "pgsql: the run record row" '^run$' "$rows"
fi

# ------------------------------------------------------------ remote: doveadm protocol
# "-S" is an option of the mail command (after "migrate run"), not of
# doveadm itself. Over TCP the client authenticates with doveadm_password.
dst_add_user x1 userdb_migrate_source_user=alice
assert_exit NAME="migrate run -S 127.0.0.1:port (doveadm protocol over TCP): exit 0" 0 \
	dst_doveadm migrate run -S "127.0.0.1:$DA_PORT" -u x1
if dv24; then
	assert_match "the -S run printed the server's rows" '^INBOX +INBOX +completed ' "$(cat "$LAST_OUT")"
else
	# 2.3's doveadm client hangs when several doveadm-servers print at
	# once (doveadm_worker_count): a doveadm-server's run prints no
	# table there, its folders' info lines are in the server's log
	# (plugin/migrate-compat.h)
	assert_eq "2.3: the -S run printed no folder rows" "" \
		"$(grep -E '^INBOX +INBOX' "$LAST_OUT")"
	assert_match "2.3: the -S run's folder lines are in the server's log" \
		'doveadm\(x1\).*migrate: INBOX: completed' "$(cat "$DST_DIR/dovecot.log")"
fi
dst_equals_src "-S run: destination == source" x1 alice
assert_exit NAME="migrate status -S over TCP: exit 0" 0 \
	dst_doveadm -f json migrate status -S "127.0.0.1:$DA_PORT" -u x1
assert_eq "-S status: completed" completed "$(json_get "$LAST_OUT" '[r["state"] for r in rows if r["folder"] == "*"][0]')"
assert_exit NAME="migrate run -S over the unix socket: exit 0 (no-op)" 0 \
	dst_doveadm migrate run -S "$DST_DIR/run/doveadm-server" -u x1
assert_exit NAME="-S: the refused login is still 77" 77 \
	dst_doveadm migrate run -S "127.0.0.1:$DA_PORT" -u "$BAD_USER"
# The doveadm protocol carries an exit code as a name: TEMPFAIL, USAGE,
# NOUSER, NOPERM, PROTOCOL, DATAERR, NOTFOUND (2.4: CHANGED = 2 too); any
# other code is sent as UNKNOWN. Dovecot 2.3's client reads UNKNOWN as 75,
# 2.4's as -1: exit 255 (docs/operator-guide.md §8).
unknown_rc=75
dv24 && unknown_rc=255
assert_exit NAME="-S: exit 78 arrives as $unknown_rc (doveadm protocol: UNKNOWN)" "$unknown_rc" \
	dst_doveadm migrate report -S "127.0.0.1:$DA_PORT" -u x1 -r no-such-class
# 73 likewise (report -c to a path the mail user can't write)
mkdir -p "$T/rootonly" && chmod 700 "$T/rootonly"
assert_exit NAME="-S: exit 73 arrives as $unknown_rc (doveadm protocol: UNKNOWN)" "$unknown_rc" \
	dst_doveadm migrate report -S "127.0.0.1:$DA_PORT" -u x1 -c "$T/rootonly/x.csv"
assert_exit NAME="-S with a wrong doveadm_password fails" 75 \
	dst_doveadm -o doveadm_password=wrong migrate status -S "127.0.0.1:$DA_PORT" -u x1

# ------------------------------------------------------------ remote: HTTP API
# POST /doveadm/v1 [[command, {params}, tag], ...]; command names are the
# camelCased doveadm names (migrate run -> migrateRun).
http_post() { # http_post AUTH_HEADER JSON_BODY -> prints "STATUS BODY"
	local body
	body=$(curl -sS -m 60 -o "$T/http.body" -w '%{http_code}' \
		-H "Authorization: $1" -H 'Content-Type: application/json' \
		--data-binary "$2" "http://127.0.0.1:$HTTP_PORT/doveadm/v1" 2>&1)
	printf '%s %s\n' "$body" "$(cat "$T/http.body" 2>/dev/null)"
}
API_AUTH="X-Dovecot-API $(printf '%s' "$API_KEY" | base64)"
BASIC_AUTH="Basic $(printf 'doveadm:%s' "$DOVEADM_PW" | base64)"
dst_add_user x2 userdb_migrate_source_user=alice
resp=$(http_post "$API_AUTH" '[["migrateRun", {"user": "x2"}, "run1"]]')
printf '%s\n' "$resp" >"$T/http-run.out"
assert_match "HTTP migrateRun (API key): 200 doveadmResponse" '^200 \[\["doveadmResponse",' "$resp"
assert_eq "HTTP migrateRun: INBOX completed, tag echoed" "completed run1" \
	"$(python3 "$CHECKS" http-run-result <<<"$resp" 2>&1)"
dst_equals_src "HTTP run: destination == source" x2 alice
resp=$(http_post "$BASIC_AUTH" '[["migrateStatus", {"user": "x2"}, "st1"], ["migrateReport", {"user": "x2"}, "rp1"]]')
assert_eq "HTTP migrateStatus + migrateReport (Basic auth): run completed, empty report" "completed 0 st1 rp1" \
	"$(python3 "$CHECKS" http-status-report <<<"$resp" 2>&1)"
resp=$(http_post "$API_AUTH" '[["migrateRun", {"user": "'"$BAD_USER"'"}, "bad1"]]')
# (2.3 writes a space after the comma, 2.4 doesn't)
assert_match "HTTP: the refused login is exitCode 77" '"type":"exitCode", ?"exitCode":77\},"bad1"' "$resp"
resp=$(http_post "$API_AUTH" '[["migrateReport", {"user": "x2", "reason": "no-such-class"}, "r78"]]')
assert_match "HTTP: exit 78 keeps its number (exitCode 78)" '"exitCode":78' "$resp"
resp=$(http_post "X-Dovecot-API $(printf wrong | base64)" '[["migrateStatus", {"user": "x2"}, "t"]]')
assert_match "HTTP with a wrong API key: 401" '^401 ' "$resp"

# ------------------------------------------------------------ benchmark note
# 100 small source mailboxes, migrated with 0 (in-process), 1, 2 and 4
# workers into fresh destination users each time (user masks m<N>_*).
if [ "${SCALEOUT_BENCH:-0}" != 1 ]; then
	info "benchmark note: skipped (SCALEOUT_BENCH=1 runs it)"
	harness_done
fi
src_lines=()
dst_lines=()
for n in $(seq 1 "$BENCH_USERS"); do
	b=$(printf 'b%03d' "$n")
	src_lines+=("$b:{PLAIN}spw-$b::::$SRC_DIR/home/$b::")
	pwfile "$b" "spw-$b"
	for wk in 0 1 2 4; do
		dst_lines+=("m${wk}_$b:{PLAIN}dpw-m${wk}_$b::::$DST_DIR/home/m${wk}_$b::userdb_migrate_source_user=$b userdb_migrate_source_password_file=$UPW/$b")
	done
done
passwd_bulk "$SRC_DIR/passwd" "${src_lines[@]}"
passwd_bulk "$DST_DIR/passwd" "${dst_lines[@]}"
seed_users b 1 "$BENCH_USERS" >"$T/seed-b.out" 2>&1 || die "seeding the benchmark users failed: $(tail -n 3 "$T/seed-b.out")"
bench=""
for wk in 0 1 2 4; do
	t0=$(date +%s.%N)
	# a user mask, not -F: Dovecot 2.3 sends "-F file" on to the
	# doveadm server, which can't read it ("Failed to iterate through
	# some users"), for every command
	if [ "$wk" = 0 ]; then
		run_capture dst_doveadm migrate run -u "m${wk}_*"
		WORKER_HANGS=0
		assert_eq "benchmark: $BENCH_USERS users in-process: exit 0" 0 "$LAST_RC"
	else
		workers_run "benchmark: $BENCH_USERS users with $wk workers" 0 1 \
			-o "doveadm_worker_count=$wk" migrate run -u "m${wk}_*"
	fi
	t1=$(date +%s.%N)
	if [ "$WORKER_HANGS" = 0 ]; then
		rate=$(python3 -c "print('%.0f' % ($BENCH_USERS * 60 / ($t1 - $t0)))")
		bench="$bench workers=$wk: ${rate} users/min ($(python3 -c "print('%.1f' % ($t1 - $t0))")s);"
	else
		bench="$bench workers=$wk: no rate ($WORKER_HANGS deadlocked attempts);"
	fi
done
# whatever the timing, what finished is right
for wk in 0 1 2 4; do
	[ -f "$(dst_home "m${wk}_b042")/.dovecot-migrate.dict" ] &&
		dst_equals_src "benchmark: a user migrated with $wk workers equals its source" "m${wk}_b042" b042
done
info "benchmark ($BENCH_USERS mailboxes of 3-7 small messages, $(nproc) CPUs):$bench"

harness_done
