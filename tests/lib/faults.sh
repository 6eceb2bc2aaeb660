# Helpers of the fault-injection tests (test-faults*.sh): the fault proxy
# (tests/lib/faultproxy.py) between doveadm migrate and the source.
# Sourced after harness.sh.

FAULTPROXY="$HARNESS_LIB/faultproxy.py"

# pj FILE PYEXPR: evaluate a Python expression over the JSON in FILE (d)
pj() {
	python3 -c 'import json, re, sys
d = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))' "$@"
}

# What the proxy's log ($PROXY_LOG, or FILE) says:
# proxy_cuts: how many connections it cut
proxy_cuts() { pj "${1:-$PROXY_LOG}" 'len(d["cuts"])'; }
# proxy_connections: how many connections it took
proxy_connections() { pj "${1:-$PROXY_LOG}" 'd["connections"]'; }
# proxy_max_concurrent: the most connections open at once
proxy_max_concurrent() { pj "${1:-$PROXY_LOG}" 'd["max_concurrent"]'; }
# proxy_injected: the injected responses, sorted, space-separated
proxy_injected() {
	pj "${1:-$PROXY_LOG}" '" ".join(sorted(i["what"] for i in d["injected"]))'
}
# proxy_poisoned: the poisoned messages as FOLDER:UID,...
proxy_poisoned() {
	pj "${1:-$PROXY_LOG}" '",".join("%s:%d" % (p["folder"], p["uid"]) for p in d["poisoned"])'
}

# dump_messages DUMP: how many messages an imaptool dump holds
dump_messages() {
	pj "$1" 'sum(len(b["messages"]) for k, b in d.items() if k != "subscriptions")'
}
# report_items REPORT_JSON: "FOLDER UID REASON resolved=yes|no;..." of
# "migrate report -f json"
report_items() {
	pj "$1" '";".join("%s %s %s resolved=%s" % (i["folder"], i["uid"], i["reason"], i["resolved"]) for i in d)'
}

PROXY_PID=
PROXY_PORT=
PROXY_LOG=
# proxy_start NAME [faultproxy options...]: a proxy to the source's plain
# port; sets PROXY_PORT, PROXY_PID, PROXY_LOG
proxy_start() {
	local name=$1 i
	shift
	PROXY_LOG="$T/proxy-$name.json"
	rm -f "$T/proxy-$name.port"
	python3 "$FAULTPROXY" --target-port "$SRC_PORT" \
		--port-file "$T/proxy-$name.port" --pid-file "$T/proxy-$name.pid" \
		--log "$PROXY_LOG" --max-lifetime 300 "$@" \
		>"$T/proxy-$name.out" 2>"$T/proxy-$name.err" &
	PROXY_PID=$!
	track_pid "$PROXY_PID"
	for i in $(seq 1 100); do
		[ -s "$T/proxy-$name.port" ] && break
		kill -0 "$PROXY_PID" 2>/dev/null || break
		sleep 0.1
	done
	PROXY_PORT=$(cat "$T/proxy-$name.port" 2>/dev/null)
	if [ -z "$PROXY_PORT" ]; then
		echo "faultproxy $name did not start: $(tail -n 3 "$T/proxy-$name.err")" >&2
		return 1
	fi
}

# proxy_stop: SIGTERM (the proxy writes its log and exits), SIGKILL after 5 s
proxy_stop() {
	[ -n "$PROXY_PID" ] || return 0
	stop_pid "$PROXY_PID"
	PROXY_PID=
}

# via_proxy USER [doveadm -o options...]: migrate run through the proxy;
# output in $T/run-USER.{out,err}, exit code returned
via_proxy() {
	local user=$1
	shift
	dst_doveadm -o plugin/migrate_source_port="$PROXY_PORT" "$@" \
		migrate run -u "$user" >"$T/run-$user.out" 2>"$T/run-$user.err"
}

# no_storage_damage NAME: the destination Dovecot never found broken storage
no_storage_damage() {
	local bad
	bad=$(grep -E 'Unexpectedly lost|Rebuilding index|[Cc]orrupt|Panic' \
		"$DST_DIR/dovecot.log" | head -n 3)
	if [ -z "$bad" ]; then
		pass "$1"
	else
		fail "$1" "$bad"
	fi
}

# faults_dst_start [CONF-FILE]: the destination, compared folder for folder
# with the source (no localized-name merging into Drafts). One connection
# per run: the fault plans count the bytes and commands of one connection at
# a time (test-parallel injects faults into worker connections). CONF-FILE:
# more config to append.
faults_dst_start() {
	{
		conf_settings migrate_automap=no migrate_parallel_folders=1
		[ -z "${1:-}" ] || cat "$1"
	} >"$T/dst-extra.conf"
	dst_start --conf-extra "$T/dst-extra.conf"
}

# make_small_corpus DIR MAXBYTES: the corpus without its few huge messages,
# so the byte stream has many message boundaries to cut at
make_small_corpus() {
	python3 - "$CORPUS" "$1" "$2" <<'EOF'
import csv, os, sys
src, dst, mx = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dst, exist_ok=True)
with open(os.path.join(src, "MANIFEST.tsv"), newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
keep = [r for r in rows if int(r["bytes"]) <= mx]
with open(os.path.join(dst, "MANIFEST.tsv"), "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()), delimiter="\t",
                       lineterminator="\n")
    w.writeheader()
    for r in keep:
        w.writerow(r)
        p = os.path.join(dst, r["file"])
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if not os.path.lexists(p):
            os.symlink(os.path.join(src, r["file"]), p)
print(len(keep))
EOF
}
