#!/usr/bin/env bash
# Records fuzz/corpus/ seeds from real servers: migrations from the
# harness's Dovecot sources (default, Courier-like and Gmail-like layouts,
# COMPRESS=DEFLATE) with migrate_source_rawlog_dir, whose .in files hold
# what the server sent after the login. Each seed is the session byte
# (fuzz-source.c) + a greeting + that transcript. Rerun it to refresh;
# the crafted RFC 3501 seeds (rfc3501-*) are kept as they are.
TEST_NAME=record-corpus
. "$(dirname "$0")/../tests/lib/harness.sh"
OUT=$(cd "$(dirname "$0")" && pwd)/corpus
mkdir -p "$OUT"
rm -f "$OUT"/rawlog-*

src_start || die "source did not start"
src_seed alice --seed 5 --limit 25 >/dev/null 2>&1 || die "seeding failed"
src_start --courier --name courier || die "courier source did not start"
src_seed alice --seed 6 --limit 15 >/dev/null 2>&1 || die "seeding courier failed"
src_start --gmail-like --name gmail || die "gmail source did not start"
src_seed alice --seed 7 --limit 15 >/dev/null 2>&1 || die "seeding gmail failed"
src_use
dst_start || die "destination did not start"

n=0
record() { # record NAME PORT [doveadm options]
	local name=$1 port=$2 dir="$T/rawlog-$1" f
	shift 2
	mkdir -p "$dir"
	chown "$MAIL_USER" "$dir"
	dst_doveadm -o plugin/migrate_source_port="$port" \
		-o plugin/migrate_source_rawlog_dir="$dir" "$@" migrate run -u alice \
		>/dev/null 2>"$T/$name.err" || info "$name: run failed: $(tail -n 1 "$T/$name.err")"
	for f in "$dir"/*.in; do
		[ -s "$f" ] || continue
		n=$((n + 1))
		# plain session; the transcript capped at 256 KB (-max_len)
		# (the rawlog starts every line with a timestamp: dropped)
		python3 -c 'import re, sys
data = re.sub(rb"(?m)^[0-9]+[.][0-9]+ ", b"", open(sys.argv[1], "rb").read())
sys.stdout.buffer.write(b"\0* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN] ready\r\n" + data[:262000])' \
			"$f" >"$OUT/rawlog-$name-$n"
	done
}
record default "$SRC_PORT"
src_use courier
record courier "$SRC_PORT"
src_use gmail
record gmail "$SRC_PORT"
ls "$OUT" | sed 's/^/# /'
check "recorded transcripts" test "$n" -gt 0
harness_done
