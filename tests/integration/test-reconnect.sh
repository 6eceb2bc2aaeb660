#!/usr/bin/env bash
# timeout: 400
# The reconnect budget is per incident (issue 19 finding 15):
# migrate_reconnect_max counts reconnects in a row without progress, and
# the backoff starts over once a reconnected session commits mail. With
# default settings, one "migrate run" goes through 50 connection cuts
# (tests/lib/faultproxy.py, each connection cut after a seeded 60-120 kB of
# server output, mid-body mostly) by itself: exit 0, destination exactly
# equal to the source, no damaged storage. (test-hostile's drop-on-fetch
# case covers a source that never lets a session progress: the run gives
# up after migrate_reconnect_max reconnects.)
. "$(dirname "$0")/../lib/harness.sh"
. "$HARNESS_LIB/faults.sh"

NCUTS=50

src_start || die "source server did not start"
faults_dst_start || die "destination server did not start"
# 5 folders x 30 messages of ~40 kB (random text): every session gets
# past its folder's listing (~12 kB) and at least one message before its
# cut, and there is mail for 50 cuts
python3 - "$SRC_DIR/home/alice/Maildir" <<'EOF' || die "writing the source mail failed"
import base64, os, random, sys
root = sys.argv[1]
r = random.Random(5)
for folder in ("", ".Archive", ".Sent", ".Work", ".Lists"):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(root, folder, sub), exist_ok=True)
    for i in range(30):
        body = "\r\n".join(base64.b64encode(r.randbytes(57)).decode()
                            for _ in range(r.randint(400, 600)))
        msg = ("From: Sender %d <s%d@example.org>\r\nTo: alice@example.org\r\n"
               "Subject: cut test %s %d\r\nMessage-ID: <cut-%s-%d@example.org>\r\n"
               "Date: Mon, 02 Jan 2023 10:%02d:00 +0000\r\n\r\n%s\r\n"
               % (i, i, folder, i, folder.strip("."), i, i, body))
        name = "%d.M%dP1.test:2,S" % (1672650000 + i, i)
        with open(os.path.join(root, folder, "cur", name), "w") as f:
            f.write(msg)
EOF
chown -R "$MAIL_USER:$MAIL_USER" "$SRC_DIR/home/alice"
src_dump alice "$T/src.json" || die "source dump failed"

cuts=$(python3 -c "import random
r = random.Random(19)
print(','.join(str(r.randint(60000, 120000)) for _ in range($NCUTS)))")
proxy_start cuts --cut-after-bytes "$cuts" || die "faultproxy did not start"
start=$(date +%s)
via_proxy alice
rc=$?
secs=$(($(date +%s) - start))
proxy_stop
made=$(proxy_cuts)
info "one run: exit $rc after $secs s, $made cuts"
check "one run with default settings went through $made cuts and exits 0 (exit $rc)" [ "$rc" = 0 ]
check "the proxy cut $NCUTS connections (made $made)" [ "$made" -ge "$NCUTS" ]
dst_equals "destination == source after $made cuts" alice "$T/src.json"
no_storage_damage "no damaged destination storage after the cuts"
warnings=$(grep -c 'reconnecting in' "$T/run-alice.err")
info "$warnings reconnect warnings"
streak=$(grep -o 'attempt [0-9]* of' "$T/run-alice.err" | awk '{print $2}' | sort -n | tail -n 1)
info "longest streak of reconnects without progress: ${streak:-0}"

harness_done
