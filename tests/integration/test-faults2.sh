#!/usr/bin/env bash
# Fault tolerance, part 2: a stalled source, a slow source, a full
# destination, and what the rawlog holds. The source is a real Dovecot,
# reached through tests/lib/faultproxy.py where a fault is injected; every
# scenario ends in a full IMAP comparison of destination and source.
#
#   (h) a stalled server: mid-way through a message body inside a
#       multi-message FETCH the proxy stops forwarding server data (until
#       the client gives up). With migrate_source_timeout=3s the run
#       notices the dead connection, warns, reconnects, resumes and exits
#       0; destination == source (nothing saved half); a re-run imports
#       nothing. The same for a stall inside a FETCH response line; a
#       pause shorter than the timeout is waited out on the same connection.
#   (i) a slow literal is progress, not idleness: the body of a 1 MB
#       message trickles in at 2 KB per 0.5 s for 8 s (longer than the
#       3 s timeout, every gap shorter): no reconnect, one connection,
#       exit 0, destination == source
#   (j) destination quota (Dovecot's quota plugin, count backend, for one
#       user): the run stops with exit 73 and one error line naming the
#       quota; the destination holds complete messages only, a subset of
#       the source; status and report show what was imported and the
#       failure; with a raised quota a re-run completes (exit 0,
#       destination == source, no duplicates)
#   (k) migrate_source_rawlog_dir: a successful run's rawlog holds the
#       conversation (FETCH commands, message bodies), is mode 0600 and
#       holds no password or SASL response (PLAIN and LOGIN mechanisms)
. "$(dirname "$0")/../lib/harness.sh"
. "$HARNESS_LIB/faults.sh"
# the proxy log's and the quota run's checks
CHECKS="$HARNESS_LIB/checks/faults2.py"

# the read timeout the fault runs use; the stall and the trickle are
# measured against it
TIMEOUT_SECS=3

plugin_built || info "the plugin is not built: the migrate steps will fail"

# ------------------------------------------------------------ helpers

# errors_of FILE: the Error/Fatal/Panic lines of a doveadm stderr
errors_of() { grep -E 'Error|Fatal|Panic' "$1"; }

# reconnect_lines FILE: the "connection lost, reconnecting" lines in FILE
RECONNECT_ERE='Source connection lost|reconnecting in'
reconnect_lines() { grep -E "$RECONNECT_ERE" "$1"; }
# one_reconnect NAME FILE WANT-ERE: exactly one such line, matching WANT-ERE
one_reconnect() { one_line "$1" "$2" "$RECONNECT_ERE" "$3"; }

# imported_by_run FILE.json: the sum of "imported" over the folder rows of
# a `doveadm -f json migrate run` output
imported_by_run() {
	pj "$1" 'sum(int(r.get("imported") or 0) for r in d)'
}

# secs_since T0: seconds since date +%s.%N value T0, one decimal
secs_since() {
	python3 -c 'import sys, time; print("%.1f" % (time.time() - float(sys.argv[1])))' "$1"
}

# ------------------------------------------------------------ setup

src_start || die "source server did not start"
# (j)'s quota on 2.4: the quota root is declared in the config (it counts
# only where the quota plugin is loaded: quota_doveadm below)
: >"$T/dst-quota.conf"
dv24 && printf 'quota "User quota" {\n  driver = count\n}\n' >"$T/dst-quota.conf"
faults_dst_start "$T/dst-quota.conf" || die "destination server did not start"
# 40 corpus messages in 15 folders, plus one generated ~1 MB message in
# INBOX (a base64 attachment): its body is the literal the trickle runs in
src_seed alice --seed 7 --limit 40 --big-mb 1 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"
src_dump alice "$T/src.json" || die "source dump failed"

users="probe stall pause stall2 slow quo raw1 raw2"
for u in $users; do
	dst_add_user "$u" userdb_migrate_source_user=alice
done

# A pass-through run records the byte map of a whole first pass (one
# connection): where the message body literals are. A fresh destination
# user makes the same requests, so the offsets hold for the fault runs
# (tagged replies' timings may shift them by a few bytes: the points
# chosen are deep inside literals and lines).
proxy_start map --record-map || die "faultproxy did not start"
assert_exit NAME="pass-through run exits 0" 0 via_proxy probe
proxy_stop
dst_equals "pass-through run: destination == source" probe "$T/src.json"
# STALL_AT: the middle of the first literal of >= 4 kB that another
# literal follows (")" line, next FETCH line, its literal): a body of the
# first folder (header listings are small literals; checked below);
# LINE_AT: the middle of the FETCH line that announces the next body (as
# "L<n>:500", the n-th line the server sends: byte offsets may drift by
# some bytes from run to run, more than a line is long);
# TRICKLE_AT: 64 kB into the largest literal (the 1 MB message), so the
# 8 s trickle (~32 kB) ends well inside that body
read -r STALL_AT LINE_AT TRICKLE_AT BIG_START BIG_SIZE < <(python3 "$CHECKS" fault-points "$PROXY_LOG")
info "stall at byte $STALL_AT, line stall at $LINE_AT (line:permille), trickle from $TRICKLE_AT (largest literal: $BIG_SIZE bytes at $BIG_START)"
if [ -z "$BIG_SIZE" ] || [ "$BIG_SIZE" -lt 500000 ]; then
	die "the byte map has no 1 MB literal: $(pj "$PROXY_LOG" 'd["map"][:5]')"
fi

# ------------------------------------------------------------ (h) stall
# The server stops sending mid-body and never resumes (the proxy holds the
# connection open until the client closes it).
proxy_start stall --stall-after-bytes "$STALL_AT" || die "faultproxy did not start"
t0=$(date +%s.%N)
assert_exit NAME="(h) run with a stalled server exits 0" 0 via_proxy stall \
	-o plugin/migrate_source_timeout=${TIMEOUT_SECS}s -o plugin/migrate_backoff_max=1s
secs=$(secs_since "$t0")
proxy_stop
info "stalled run: ${secs}s, $(proxy_connections) connections"
ev=$(pj "$PROXY_LOG" '"%s|%s|%s|%s" % ((lambda e: (e["what"], e["in"], e.get("ended"), e.get("fetch_uids")))(d["slow"][0]) if d["slow"] else ("none",) * 4)')
info "stall: $ev; $(pj "$PROXY_LOG" '(d["slow"] or [{}])[0].get("context")')"
assert_match "(h) the proxy stalled inside a message body until the client closed" \
	'^stall\|body-literal\|client closed\|' "$ev"
# how many UIDs the FETCH command that the stalled body answers asked for
nuids=$(python3 "$CHECKS" fetch-uid-count "$PROXY_LOG")
if [ "$nuids" -ge 2 ]; then
	pass "(h) the stalled body was one of a multi-message FETCH ($nuids UIDs)"
else
	fail "(h) the stalled body was one of a multi-message FETCH" "$nuids UIDs: $ev"
fi
waited=$(pj "$PROXY_LOG" '(lambda e: "%.1f" % (e["ended_t"] - e["t"]))(d["slow"][0])' 2>/dev/null || echo -1)
# the client waited the timeout (not much less), and not the default 120 s
if python3 -c 'import sys; w = float(sys.argv[1]); sys.exit(not (float(sys.argv[2]) - 0.5 <= w <= 60))' \
	"$waited" "$TIMEOUT_SECS"; then
	pass "(h) the client gave up on the stalled connection after ${waited}s (timeout ${TIMEOUT_SECS}s)"
else
	fail "(h) the client gave up after about the timeout" "stall lasted ${waited}s"
fi
one_reconnect "(h) one reconnect warning naming migrate_source_timeout" \
	"$T/run-stall.err" migrate_source_timeout
assert_eq "(h) the run reconnected once: 2 connections" 2 "$(proxy_connections)"
errs=$(errors_of "$T/run-stall.err")
assert_eq "(h) no error lines" "" "$errs"
dst_equals "(h) after the stall: destination == source" stall "$T/src.json"
assert_exit NAME="(h) a re-run exits 0" 0 dst_doveadm -f json migrate run -u stall
assert_eq "(h) the re-run imports nothing" 0 "$(imported_by_run "$LAST_OUT" 2>&1)"
dst_equals "(h) after the re-run: destination == source" stall "$T/src.json"

# A pause shorter than the timeout (1.5 s, timeout 6 s: a wide margin on
# a busy machine) mid-body is no reason to give up the connection
proxy_start pause --stall-after-bytes "$STALL_AT" --stall-secs 1.5 ||
	die "faultproxy did not start"
assert_exit NAME="(h) run with a 1.5 s pause (timeout 6 s) exits 0" 0 via_proxy pause \
	-o plugin/migrate_source_timeout=6s -o plugin/migrate_backoff_max=1s
proxy_stop
assert_eq "(h) the proxy paused 1.5 s inside a body, then went on" "stall|body-literal|resumed" \
	"$(pj "$PROXY_LOG" '"%s|%s|%s" % ((lambda e: (e["what"], e["in"], e.get("ended")))(d["slow"][0]) if d["slow"] else ("none",) * 3)')"
assert_eq "(h) after a pause shorter than the timeout: no reconnect warning" "" \
	"$(reconnect_lines "$T/run-pause.err")"
assert_eq "(h) after a pause shorter than the timeout: one connection" 1 \
	"$(proxy_connections)"
dst_equals "(h) after the pause: destination == source" pause "$T/src.json"

# A stall in the middle of a protocol line (the FETCH line that announces
# the next body): the line reader times out the same way.
proxy_start stall2 --stall-after-bytes "$LINE_AT" || die "faultproxy did not start"
assert_exit NAME="(h) run with a server stalled mid-line exits 0" 0 via_proxy stall2 \
	-o plugin/migrate_source_timeout=${TIMEOUT_SECS}s -o plugin/migrate_backoff_max=1s
proxy_stop
ev=$(pj "$PROXY_LOG" '"%s|%s|%s|%s" % ((lambda e: (e["what"], e["in"], e.get("ended"), bool(re.search(r"^\* \d+ FETCH .*BODY\[\] \{\d+\}$", e["context"]))))(d["slow"][0]) if d["slow"] else ("none",) * 4)')
info "line stall: $ev; $(pj "$PROXY_LOG" '(d["slow"] or [{}])[0].get("context")')"
assert_eq "(h) the proxy stalled inside a body's FETCH line until the client closed" \
	'stall|line|client closed|True' "$ev"
one_reconnect "(h) mid-line stall: one reconnect warning naming migrate_source_timeout" \
	"$T/run-stall2.err" migrate_source_timeout
dst_equals "(h) after the mid-line stall: destination == source" stall2 "$T/src.json"

# ------------------------------------------------------------ (i) trickle
# 2 kB every 0.5 s for 8 s inside the 1 MB body: longer than the timeout
# in total, every gap much shorter than it
proxy_start slow --trickle-after-bytes "$TRICKLE_AT" --trickle-secs 8 \
	--trickle-bytes 2048 --trickle-interval 0.5 || die "faultproxy did not start"
t0=$(date +%s.%N)
assert_exit NAME="(i) run with a trickling body exits 0" 0 via_proxy slow \
	-o plugin/migrate_source_timeout=${TIMEOUT_SECS}s -o plugin/migrate_backoff_max=1s
secs=$(secs_since "$t0")
proxy_stop
ev=$(pj "$PROXY_LOG" '"%s|%s|%s" % ((lambda e: (e["what"], e["in"], e.get("of")))(d["slow"][0]) if d["slow"] else ("none",) * 3)')
info "trickled run: ${secs}s; $(pj "$PROXY_LOG" '(lambda e: "%d bytes trickled over %.1fs, offsets %d..%s" % (e.get("bytes", 0), e.get("ended_t", -1) - e["t"], e["offset"], e.get("ended_offset")))(d["slow"][0]) if d["slow"] else "no trickle"')"
assert_eq "(i) the proxy trickled inside the 1 MB body" "trickle|body-literal|$BIG_SIZE" "$ev"
# the trickle lasted >= 8 s and ended inside the same body literal
if pj "$PROXY_LOG" '(lambda e: e["ended_t"] - e["t"] >= 7.9 and e["ended_offset"] < '"$((BIG_START + BIG_SIZE))"' and e["bytes"] > 0)(d["slow"][0])' 2>/dev/null | grep -qx True; then
	pass "(i) the trickle lasted over 8 s (> ${TIMEOUT_SECS}s timeout), all inside that body"
else
	fail "(i) the trickle lasted over 8 s inside the body" "$(pj "$PROXY_LOG" 'd["slow"]' 2>&1 | head -c 400)"
fi
rl=$(reconnect_lines "$T/run-slow.err")
assert_eq "(i) no reconnect warning" "" "$rl"
assert_eq "(i) one connection" 1 "$(proxy_connections)"
assert_eq "(i) no error lines" "" "$(errors_of "$T/run-slow.err")"
dst_equals "(i) after the trickle: destination == source" slow "$T/src.json"

# ------------------------------------------------------------ (j) quota
# doveadm loads mail_plugins from one directory: the built plugin and
# Dovecot's quota plugin, side by side
QDIR="$T/plugins-quota"
mkdir -p "$QDIR"
ln -s "$PLUGIN_DIR/lib20_doveadm_migrate_plugin.so" "$QDIR/"
ln -s /usr/lib/dovecot/modules/lib10_quota_plugin.so "$QDIR/"
# quota_doveadm LIMIT ARGS...: destination doveadm with the quota plugin
# and a count quota of LIMIT bytes (the setting is on this command line
# only, i.e. only for the user it runs for)
quota_doveadm() {
	local limit=$1 quota=()
	shift
	if dv24; then
		# the count driver counts virtual sizes on 2.4
		quota=(-o "quota_storage_size=$limit")
	else
		quota=(-o "plugin/quota=count:User quota" \
			-o "plugin/quota_rule=*:storage=${limit}B" -o plugin/quota_vsizes=yes)
	fi
	bounded "$DOVEADM_TIMEOUT" "$DOVEADM" -c "$DST_DIR/dovecot.conf" \
		-o mail_plugin_dir="$QDIR" -o "mail_plugins=quota $PLUGIN_NAME" \
		"${quota[@]}" "$@"
}
# the limit: the folders the probe run imported before its first folder
# with >= 2 messages after INBOX, plus half of that folder: the run stops
# in the middle of the import
dst_doveadm -f json migrate status -u probe >"$T/status-probe.json" 2>/dev/null
# (tab-separated: folder names may hold spaces)
IFS=$'\t' read -r QLIMIT QFOLDER_SRC QFOLDER < <(python3 "$CHECKS" quota-limit "$T/status-probe.json")
info "quota: ${QLIMIT} bytes, expected to run out in $QFOLDER"
[ -n "$QLIMIT" ] || die "no quota limit from the probe's status"

run_capture quota_doveadm "$QLIMIT" quota get -u quo
if [ "$LAST_RC" = 0 ] && grep -Eq 'User quota +STORAGE +0 +[0-9]+ ' "$LAST_OUT"; then
	pass "(j) the user's quota is active: empty, with a storage limit"
else
	fail "(j) the user's quota is active" "exit $LAST_RC: $(tr '\n' '|' <"$LAST_OUT") $(head -c 300 "$LAST_ERR")"
fi
t0=$(date +%s.%N)
run_capture quota_doveadm "$QLIMIT" migrate run -u quo
cp "$LAST_OUT" "$T/run-quo.out"
cp "$LAST_ERR" "$T/run-quo.err"
assert_eq "(j) the run over quota exits 73 (EX_CANTCREAT: retrying won't help)" 73 "$LAST_RC"
info "over-quota run: $(secs_since "$t0")s"
one_error "(j) one error line, naming the quota" '[Qq][Uu][Oo][Tt][Aa]' "$T/run-quo.err"
# what is at the destination: complete source messages only, none twice
if dst_dump quo "$T/dst-quo.json" 2>"$T/dump-quo.err"; then
	sub=$(python3 "$CHECKS" subset "$T/src.json" "$T/dst-quo.json")
	read -r qn qtotal qbad <<<"$sub"
	info "over quota: $qn of $qtotal messages at the destination"
	if [ -z "$qbad" ] && [ "$qn" -gt 0 ] && [ "$qn" -lt "$qtotal" ]; then
		pass "(j) the destination holds $qn of $qtotal source messages, each complete and unchanged"
	else
		fail "(j) the destination holds a proper subset of complete source messages" \
			"$qn of $qtotal; not in the source: $qbad"
	fi
else
	fail "(j) destination readable over IMAP" "$(tail -n 1 "$T/dump-quo.err")"
fi
quota_doveadm "$QLIMIT" quota get -u quo >"$T/quota-get.out" 2>&1
info "quota after the run: $(tr '\n' '|' <"$T/quota-get.out" | tr -s ' ')"
# status: what was imported, and the failure
dst_doveadm -f json migrate status -u quo >"$T/status-quo.json" 2>"$T/status-quo.err"
pj "$T/status-quo.json" '"\n".join("#   %-22s %-10s imported=%-3s bytes=%-8s %s" % (r["dest"] or r["folder"], r["state"], r["imported"], r["bytes"], r["last_error"]) for r in d)' >&"$HARNESS_OUT" 2>&1
st=$(pj "$T/status-quo.json" '(lambda q: "%s|%s" % (q["state"], "quota" in q["last_error"].lower()))(next(r for r in d if r["dest"] == sys.argv[3]))' "$QFOLDER" 2>&1)
assert_eq "(j) status: $QFOLDER failed, its last error names the quota" "failed|True" "$st"
st=$(pj "$T/status-quo.json" '(lambda r: "%s|%s" % (r["state"], "quota" in r["last_error"].lower()))(next(r for r in d if r["folder"] == "*"))' 2>&1)
assert_eq "(j) status: the run's row: failed, the last error names the quota" "failed|True" "$st"
# the folders before it completed, the ones after it were not started
st=$(pj "$T/status-quo.json" '(lambda rows: (lambda k: "%s|%s" % (",".join(sorted(set(r["state"] for r in rows[:k]))), ",".join(sorted(set(r["state"] for r in rows[k + 1:]))) or "-"))(next(i for i, r in enumerate(rows) if r["dest"] == sys.argv[3])))([r for r in d if r["folder"] != "*"])' "$QFOLDER" 2>&1)
assert_eq "(j) status: the folders before $QFOLDER completed, the ones after it queued" "completed|queued" "$st"
imported=$(pj "$T/status-quo.json" 'sum(int(r["imported"] or 0) for r in d if r["folder"] != "*")' 2>&1)
assert_eq "(j) status: the folders' imported counts add up to what is at the destination" "$qn" "$imported"
# report: the message that didn't fit
dst_doveadm -f json migrate report -u quo >"$T/report-quo.json" 2>"$T/report-quo.err"
pj "$T/report-quo.json" '"\n".join("#   %s uid %s %s: %s" % (i["folder"], i["uid"], i["reason"], i["detail"]) for i in d)' >&"$HARNESS_OUT" 2>&1
# (the one refused, then the rest of the folder: "not tried")
rep=$(pj "$T/report-quo.json" '";".join(sorted(set("%s|%s|%s|%s" % (i["folder"], i["reason"], i["resolved"], i["detail"].startswith("not tried") and "rest" or "refused") for i in d)))' 2>&1)
assert_match "(j) report: the message refused in $QFOLDER (and the rest of it) not imported because of the quota" \
	"^$QFOLDER_SRC\\|destination-quota\\|no\\|refused(;$QFOLDER_SRC\\|destination-quota\\|no\\|rest)?$" "$rep"
# more room: the run completes, nothing twice
assert_exit NAME="(j) with a raised quota the re-run exits 0" 0 \
	quota_doveadm $((QLIMIT * 100)) migrate run -u quo
cp "$LAST_ERR" "$T/run-quo2.err"
assert_eq "(j) the re-run: no error lines" "" "$(errors_of "$T/run-quo2.err")"
grep -E 'Warning|UIDVALIDITY' "$T/run-quo2.err" | head -n 5 | sed 's/^/#   re-run: /' >&"$HARNESS_OUT"
dst_equals "(j) after the re-run: destination == source (no duplicates)" quo "$T/src.json"
dst_doveadm -f json migrate report -u quo >"$T/report-quo2.json" 2>/dev/null
rep=$(pj "$T/report-quo2.json" '";".join(sorted(set("%s|%s|%s" % (i["folder"], i["reason"], i["resolved"]) for i in d)))' 2>&1)
assert_eq "(j) report: the over-quota messages are resolved" \
	"$QFOLDER_SRC|destination-quota|yes" "$rep"
assert_exit NAME="(j) a third run exits 0" 0 \
	quota_doveadm $((QLIMIT * 100)) -f json migrate run -u quo
assert_eq "(j) the third run imports nothing" 0 "$(imported_by_run "$LAST_OUT" 2>&1)"

# ------------------------------------------------------------ (k) rawlog
# A successful run's rawlog: the conversation after login, never the
# credentials (SASL PLAIN with SASL-IR, and the LOGIN mechanism)
pw=$(src_password alice)
for mech in PLAIN LOGIN; do
	u=raw1
	[ "$mech" = LOGIN ] && u=raw2
	rdir="$T/rawlog-$mech"
	mkdir -p "$rdir"
	chown "$MAIL_USER:$MAIL_USER" "$rdir"
	assert_exit NAME="(k) $mech login, rawlog on: exit 0" 0 dst_doveadm \
		-o plugin/migrate_source_rawlog_dir="$rdir" \
		-o plugin/migrate_source_sasl_mechanisms="$mech" \
		-o mail_debug=yes -o log_debug=category=migrate migrate run -u "$u"
	cp "$LAST_ERR" "$T/run-$u.err"
	dst_equals "(k) $mech: destination == source" "$u" "$T/src.json"
	ins=$(find "$rdir" -type f -name '*.in' | wc -l)
	outs=$(find "$rdir" -type f -name '*.out' | wc -l)
	nbody=$(cat "$rdir"/*.in 2>/dev/null | grep -ac 'BODY\[\] {')
	nfetch=$(cat "$rdir"/*.out 2>/dev/null | grep -aEc 'UID FETCH .*BODY\.PEEK\[\]')
	ntotal=$(dump_messages "$T/src.json")
	if [ "$ins" -ge 1 ] && [ "$outs" -ge 1 ] && [ "$nbody" -ge "$ntotal" ] && [ "$nfetch" -ge 1 ]; then
		pass "(k) $mech: the rawlog holds the conversation ($nfetch body FETCH commands, $nbody bodies for $ntotal messages)"
	else
		fail "(k) $mech: the rawlog holds the conversation" \
			"$ins .in, $outs .out files, $nfetch body FETCH commands, $nbody bodies for $ntotal messages: $(find "$rdir" -type f | tr '\n' ' ')"
	fi
	modes=$(find "$rdir" -type f -printf '%m\n' | sort -u | tr '\n' ' ')
	assert_eq "(k) $mech: rawlog files are mode 0600" "600 " "$modes"
	# the password, and every base64 form a SASL exchange could put it in
	leaks=""
	for s in "$pw" "$(printf '\0alice\0%s' "$pw" | base64 -w0)" \
		"$(printf 'alice\0alice\0%s' "$pw" | base64 -w0)" \
		"$(printf '%s' "$pw" | base64 -w0)"; do
		grep -rlaF -- "$s" "$rdir" "$T/run-$u.err" >/dev/null 2>&1 && leaks="$leaks [$s]"
	done
	# rawlog lines start with a timestamp: "1700000000.123456 A1 LOGIN ..."
	grep -raEi '^([0-9]+\.[0-9]+ )?[^ ]+ (AUTHENTICATE|LOGIN)( |$)' "$rdir" >/dev/null &&
		leaks="$leaks [login command]"
	assert_eq "(k) $mech: no password, SASL response or login command in the rawlog or output" "" "$leaks"
done

no_storage_damage "no damaged destination storage at the end"
harness_done
