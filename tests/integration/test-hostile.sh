#!/usr/bin/env bash
# timeout: 420
# A broken or hostile source server can't take doveadm down (issue 19):
# tests/lib/hostile-imapd.py --case NAME plays one misbehaving server per
# case (connection reset mid-reply, corrupt or closed COMPRESS=DEFLATE
# streams, a deflate bomb, 500k nested parentheses in the greeting, an
# untagged reply or a BYE, trickled greetings and listings, endless
# untagged replies and AUTHENTICATE challenges, no greeting, a non-IMAP
# banner, the password echoed in LOGIN/SASL replies and a BYE, terminal
# escape sequences in a reply, STARTTLS refused, TLS against a plain port,
# huge and countless folder names, an oversized literal, 60k listed
# messages whose bodies never come (each an item: the item log's lookup
# must not be quadratic), 40000 keywords on one message (at most 256
# kept, one warning), and mutate-N: the happy path with one real message
# whose replies get seeded random damage (bit flips, truncation, CR/LF,
# NUL, huge numbers, parentheses, literal sizes) where any clean ending
# (exit 0, 75, 76, 77) is right; seeds 1-4 run unless MUTATE_SEEDS or
# CASES name others). For each one "migrate run" must:
#   - end without a signal, a panic or a fatal error,
#   - within its deadline (short migrate_source_timeout and
#     migrate_source_greeting_timeout, as an admin would set for -A),
#   - with a peak RSS under 64 MB,
#   - with exactly one error line that names the problem and the stage,
#     with the documented exit code,
#   - with the password (raw or base64) in no output, in `migrate status`
#     or in the stored state, and no escape character anywhere.
. "$(dirname "$0")/../lib/harness.sh"

HOSTILE="$HARNESS_LIB/hostile-imapd.py"
PW='Hostile-S3cret-pw!9'
# the sanitizer leg raises it: ASan's quarantine and shadow memory
RSS_MAX_KB=${HOSTILE_RSS_MAX_KB:-65536}
CASE_SECS=30          # each case's deadline, doveadm start included
# the real message of the cases that serve mail (keyword-flood, mutate-N)
CASE_MESSAGE=$CORPUS/cpython-email/msg_02.txt
# the mutate-N cases run by default (all 12: MUTATE_SEEDS="$(seq 1 12)");
# CASES="mutate-7" runs any one
MUTATE_SEEDS=${MUTATE_SEEDS:-1 2 3 4}
# messages the invented-uids case lists
INVENTED_UIDS=${INVENTED_UIDS:-60000}

plugin_built || info "the plugin is not built: the migrate steps will fail"
dst_start || die "destination server did not start"
src_password_file_write alice "$PW"

# the password and its base64 forms at the three alignments (as inside a
# SASL PLAIN blob), without the characters the neighbours change
secret_patterns() {
	python3 - "$PW" <<'EOF'
import base64, sys
pw = sys.argv[1].encode()
print(pw.decode())
for k in range(3):
    b = base64.b64encode(b"\0" * k + pw).decode()
    core = b[4 if k else 0:-4]
    if len(core) >= 4:
        print(core)
EOF
}
secret_patterns >"$T/secrets"

# hostile_start CASE: the server for CASE on a free port ($HPORT)
hostile_start() {
	rm -f "$T/hport"
	python3 "$HOSTILE" --port-file "$T/hport" --case "$1" --password "$PW" \
		--message "$CASE_MESSAGE" --invented-uids "$INVENTED_UIDS" \
		--max-seconds 90 --log "$T/hostile-$1.log" \
		>"$T/hostile.out" 2>&1 &
	HPID=$!
	track_pid "$HPID"
	for _ in $(seq 1 100); do
		[ -s "$T/hport" ] && break
		sleep 0.1
	done
	HPORT=$(cat "$T/hport" 2>/dev/null)
	[ -n "$HPORT" ]
}

not_grep() { ! grep -Eq "$1" "$2"; }
clean_exit() { case $1 in 0|75|76|77) return 0 ;; esac; return 1; }

# run_case CASE WORD EXIT [doveadm -o options...]
run_case() {
	local c=$1 word=$2 want=$3 rc start secs rss
	shift 3
	hostile_start "$c" || { fail "$c: server" "did not start"; return; }
	rm -rf "$(dst_home alice)"
	start=$(date +%s.%N)
	dst_doveadm_argv
	/usr/bin/time -f '%M' -o "$T/rss" \
		timeout -k 5 $((CASE_SECS + 20)) "${DST_DOVEADM[@]}" \
		-o plugin/migrate_source_port="$HPORT" \
		-o plugin/migrate_source_timeout=4s \
		-o plugin/migrate_source_greeting_timeout=3s \
		-o plugin/migrate_reconnect_max=1 \
		-o plugin/migrate_backoff_max=1s \
		"$@" migrate run -u alice >"$T/$c.out" 2>"$T/$c.err"
	rc=$?
	secs=$(python3 -c "import time; print(int(time.time() - $start))")
	rss=$(tail -n 1 "$T/rss")
	stop_pid "$HPID"
	dst_doveadm migrate status -u alice >"$T/$c.status" 2>&1

	if [ "$rc" -lt 128 ] && ! grep -Eq 'Panic|Fatal|Segmentation|terminated by signal' "$T/$c.err"; then
		pass "$c: no crash (exit $rc)"
	else
		fail "$c: no crash" "exit $rc: $(grep -E 'Panic|Fatal' "$T/$c.err" | head -n 2 | tr '\n' '|')"
	fi
	check "$c: ended within $CASE_SECS s (took $secs s)" [ "$secs" -le "$CASE_SECS" ]
	check "$c: peak RSS under $((RSS_MAX_KB / 1024)) MB (${rss} kB)" [ "${rss:-999999}" -lt "$RSS_MAX_KB" ]
	if [ "$word" = "*" ]; then
		# a mutation: any clean ending
		check "$c: exit 0, 75, 76 or 77 (exit $rc)" clean_exit "$rc"
	else
		check "$c: exit $want" [ "$rc" = "$want" ]
	fi
	if [ "$word" = "*" ]; then
		:
	elif [ "$word" = - ]; then
		check "$c: no error line" not_grep 'Error|Fatal|Panic' "$T/$c.err"
	else
		one_error "$c: one error line naming '$word'" "$word" "$T/$c.err"
	fi
	local f leak=""
	for f in "$T/$c.out" "$T/$c.err" "$T/$c.status" "$(dst_home alice)/.dovecot-migrate.dict"; do
		[ -f "$f" ] || continue
		if grep -qaFf "$T/secrets" "$f"; then leak="$leak $(basename "$f")"; fi
	done
	check "$c: the password is in no output or state${leak:+ (found in$leak)}" [ -z "$leak" ]
	if grep -qa $'\x1b' "$T/$c.out" "$T/$c.err" "$T/$c.status"; then
		fail "$c: no escape sequence in the output"
	else
		pass "$c: no escape sequence in the output"
	fi
}

# CASES="a b" runs only those; SKIP_CASES="a b" all but those
while read -r c word code; do
	[ -z "${CASES:-}" ] || [[ " $CASES " == *" $c "* ]] || continue
	if [ -z "${CASES:-}" ] && [[ $c == mutate-* ]] &&
		[[ " $(echo $MUTATE_SEEDS) " != *" ${c#mutate-} "* ]]; then
		continue
	fi
	if [[ " ${SKIP_CASES:-} " == *" $c "* ]]; then
		info "$c: skipped (SKIP_CASES)"
		continue
	fi
	case "$c" in
	env-password)
		# the documented way: the password in the environment, let
		# through doveadm's re-exec by import_environment
		mv "$T/srcpw/alice" "$T/srcpw-alice.off"
		cp "$DST_DIR/dovecot.conf" "$T/dovecot.conf.orig"
		if dv24; then
			# 2.4: a string list, each variable taken from the environment
			printf 'import_environment {\n  MIGRATE_SOURCE_PASSWORD = %%{env:MIGRATE_SOURCE_PASSWORD}\n}\n' >>"$DST_DIR/dovecot.conf"
		else
			echo 'import_environment = $import_environment MIGRATE_SOURCE_PASSWORD' >>"$DST_DIR/dovecot.conf"
		fi
		MIGRATE_SOURCE_PASSWORD=$PW run_case "$c" "$word" "$code" \
			-o plugin/migrate_source_password_file=
		cp "$T/dovecot.conf.orig" "$DST_DIR/dovecot.conf"
		# without it the variable never reaches the plugin
		hostile_start "$c"
		dst_doveadm_argv
		MIGRATE_SOURCE_PASSWORD=$PW timeout 30 "${DST_DOVEADM[@]}" \
			-o plugin/migrate_source_port="$HPORT" \
			-o plugin/migrate_source_password_file= migrate run -u alice \
			>"$T/env-off.out" 2>"$T/env-off.err"
		rc=$?
		stop_pid "$HPID"
		check "env-password: without import_environment: exit 78, naming the variable (exit $rc)" \
			[ "$rc" = 78 ]
		one_error "env-password: without import_environment: the error names MIGRATE_SOURCE_PASSWORD" \
			MIGRATE_SOURCE_PASSWORD "$T/env-off.err"
		mv "$T/srcpw-alice.off" "$T/srcpw/alice"
		;;
	deflate-*) run_case "$c" "$word" "$code" -o plugin/migrate_source_compress=yes ;;
	starttls-no) run_case "$c" "$word" "$code" -o plugin/migrate_source_ssl=starttls ;;
	plain-for-tls) run_case "$c" "$word" "$code" -o plugin/migrate_source_ssl=imaps ;;
	keyword-flood)
		run_case "$c" "$word" "$code"
		one_line "$c: one warning line naming the limit of 256 keywords" \
			"$T/$c.err" 'Warning' 'more than 256 keywords'
		dst_doveadm fetch -u alice flags mailbox INBOX all \
			>"$T/$c.flags" 2>&1
		nkw=$(grep -o 'kw[0-9]*' "$T/$c.flags" | wc -l)
		nmsg=$(grep -c '^flags:' "$T/$c.flags")
		check "$c: the message imported with 1 to 256 of its keywords ($nmsg message(s), $nkw keywords)" \
			[ "$nmsg" = 1 -a "$nkw" -ge 1 -a "$nkw" -le 256 ]
		;;
	invented-uids)
		run_case "$c" "$word" "$code"
		check "$c: all $INVENTED_UIDS listed messages are failed items" \
			grep -Eq "^INBOX +INBOX +completed-with-errors +$INVENTED_UIDS +0 +0 +$INVENTED_UIDS " "$T/$c.out"
		;;
	*) run_case "$c" "$word" "$code" ;;
	esac
done < <(python3 "$HOSTILE" --port-file /dev/null --list-cases)

harness_done
