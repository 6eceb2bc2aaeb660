#!/usr/bin/env bash
# Identity, dedupe and UID preservation against a real source IMAP server.
#
#  1. UID preservation: UIDVALIDITY and every UID (with gaps) carried over;
#     a delivery to the destination forces new UIDs for later source mail
#     (uids=partial) without failing the run.
#  2. Subscriptions are copied.
#  3. Identity traps: UIDVALIDITY change, lost state, mail without
#     Message-ID, same Message-ID with other content, the same message
#     twice in a folder, the same message in two folders (with and without
#     migrate_dedupe_across_folders), a Draft rewritten on the source.
#  4. Delete mode (-d) removes exactly what the source deleted, never
#     destination-only mail.
#  5. Source changes (APPEND/EXPUNGE) while a run is in progress.
#
# Every check compares full IMAP dumps: per folder the multiset of
# (sha256 of the message, flags, INTERNALDATE), with --uids also the UID
# and UIDVALIDITY.
. "$(dirname "$0")/../lib/harness.sh"
# every comparison here includes UIDs
DST_DUMP_OPTS=(--uids)

plugin_built || info "the plugin is not built: the migrate steps will fail"

SECONDS=0
section() { info "---- $* (t=${SECONDS}s)"; }

# ------------------------------------------------------------ helpers

# h OP ARGS...: small IMAP operations and checks (tests/lib/checks/identity.py)
CHECKS="$HARNESS_LIB/checks/identity.py"
export HARNESS_LIB
h() { timeout -k 5 120 python3 "$CHECKS" "$@"; }
# hs OP USER ARGS...: h OP against the source, logged in as USER
hs() {
	local op=$1 user=$2
	shift 2
	h "$op" "$SRC_PORT" "$user" "$(src_password "$user")" "$@"
}
sha() { h sha "$1"; }

migrate() {
	local user=$1
	shift
	dst_doveadm "$@" migrate run -u "$user"
}

# dst_json ARGS...: doveadm -f json output of a destination command,
# one JSON object per line
dst_json() {
	dst_doveadm -f json "$@" 2>"$T/json.err" | python3 "$CHECKS" json-lines
}

# status_uids USER: "folder=uids" per folder row of migrate status
status_uids() {
	dst_json migrate status -u "$1" | python3 "$CHECKS" status-uids | sort
}

# run_expunged: the sum of the "expunged" column of the last run's output
run_expunged() {
	python3 "$CHECKS" sum-expunged "$LAST_OUT"
}

# a message for doveadm save / IMAP APPEND, CRLF so IMAP returns it byte
# for byte
mkmsg() {
	local file=$1 id=$2 subject=$3 body=$4
	printf 'From: Local Sender <local@example.net>\r\nTo: alice@example.org\r\nSubject: %s\r\nDate: Wed, 03 Jan 2024 09:00:00 +0000\r\nMessage-ID: <%s@identity.test>\r\n\r\n%s\r\n' \
		"$subject" "$id" "$body" >"$file"
}

src_start || die "source server did not start"
dst_start || die "destination server did not start"
# folder names map 1:1 (no "Entwürfe" -> Drafts automap): each source
# folder is compared with the destination folder of the same name
dst_add_user alice userdb_migrate_automap=no

# ============================================================ 1. UIDs
section "1. UID preservation"
src_seed alice --seed 11 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"

# gaps: expunge some UIDs in the middle of folders (never the highest, so
# the destination's UIDNEXT ends up equal to the source's)
for f in INBOX Work Sent; do
	read -r -a uids <<<"$(hs uids alice "$f")"
	n=${#uids[@]}
	[ "$n" -ge 6 ] || continue
	hs expunge alice "$f" "${uids[1]},${uids[3]},${uids[$((n / 2))]}" ||
		fail "expunge on the source" "$f"
done
src_dump alice "$T/s1.json" --uids || die "source dump failed"
gaps=$(python3 "$CHECKS" uid-gaps "$T/s1.json")
if [ "$gaps" -ge 3 ]; then pass "the source has UID gaps ($gaps)"; else fail "the source has UID gaps" "$gaps"; fi

# a first import into empty folders lists without headers (nothing to
# match them against: the source reads no message for the listing)
mkdir -p "$T/raw1" && chown "$MAIL_USER:$MAIL_USER" "$T/raw1"
assert_exit NAME="first run exits 0" 0 migrate alice \
	-o plugin/migrate_source_rawlog_dir="$T/raw1"
# the saves put the identity headers into the folder's index cache, where a
# later scan of the destination reads them (operator guide §3); nothing
# has read this folder's mail yet. (2.4 caches them by default: its
# mail_cache_fields has them; 2.3's doesn't. 2.4 names fields in lower case.)
idx=$(find "$(dst_home alice)" -name dovecot.index.cache -path '*Archive*2018*' | head -n 1)
assert_eq "first run: Archive/2018's index cache holds every message's Message-ID" \
	"$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["Archive/2018"]["messages"]))' "$T/s1.json")" \
	"$(dst_doveadm dump -t index "${idx%/*}" 2>/dev/null | grep -ci 'hdr\.message-id:')"
dst_equals "first run: same messages, UIDs and UIDVALIDITY as the source" \
	alice "$T/s1.json" --uids --uidvalidity
listing_cmds() { # DIR: the listing commands of the run's rawlogs
	cat "$1"/*.out 2>/dev/null | grep -a 'UID FETCH .*RFC822.SIZE' |
		grep -av 'BODY.PEEK\[\]'
}
assert_eq "first run into empty folders: the listing asks for no headers" "0 listings with headers" \
	"$(listing_cmds "$T/raw1" | grep -ac 'HEADER.FIELDS') listings with headers"
if [ "$(listing_cmds "$T/raw1" | wc -l)" -ge 3 ]; then
	pass "first run: the folders were listed"
else
	fail "first run: the folders were listed" "$(listing_cmds "$T/raw1" | head -n 2)"
fi
cp "$T/dst-alice.json" "$T/d1.json"
st=$(status_uids alice)
nfolders=$(printf '%s\n' "$st" | grep -c .)
if [ "$nfolders" -ge 10 ] && ! printf '%s\n' "$st" | grep -qv '=yes$'; then
	pass "migrate status: uids=yes for all $nfolders folders"
else
	fail "migrate status: uids=yes for every folder" "$(echo "$st" | tr '\n' ' ')"
fi

# a delivery to the destination takes the UID the source gives its next
# message: that message must get a new UID, the run must not fail
mkmsg "$T/deliver1.eml" deliver-1 "delivered to the destination" "New mail after the cutover."
check "deliver a message to the destination INBOX" \
	dst_doveadm save -u alice -m INBOX <"$T/deliver1.eml"
deliver1=$(sha "$T/deliver1.eml")
for i in 1 2 3; do
	mkmsg "$T/new$i.eml" "src-new-$i" "new source mail $i" "Body $i."
	hs append alice INBOX '\Seen' $((1700000000 + i)) "$T/new$i.eml" >/dev/null ||
		fail "append to the source" "new$i"
done
mkmsg "$T/new4.eml" src-new-4 "new source mail in Work" "Body 4."
hs append alice Work "" 1700000004 "$T/new4.eml" >/dev/null || fail "append to the source" new4
src_dump alice "$T/s2.json" --uids || die "source dump failed"
assert_exit NAME="delta run after a destination delivery exits 0" 0 migrate alice
dst_dump alice "$T/d2.json" --uids || fail "destination dump" failed
h minus "$T/d2.json" "$T/d2-own.json" "INBOX:$deliver1" || fail "delivered message kept" "not in INBOX"
compare_dumps "delta run: destination (without the delivery) == source" "$T/s2.json" "$T/d2-own.json"
compare_dumps "delta run: UIDs of every folder without a delivery still match" \
	"$T/s2.json" "$T/d2-own.json" --uids --uidvalidity --ignore-folders INBOX
out=$(python3 "$CHECKS" uid-collision "$T/s1.json" "$T/s2.json" "$T/d2.json" "$deliver1")
assert_eq "delta run: old UIDs kept, new source mail got new UIDs after the delivery" ok "$out"
st=$(status_uids alice)
assert_match "migrate status: INBOX uids=partial" '^INBOX=partial$' "$(printf '%s\n' "$st" | grep '^INBOX=')"
assert_eq "migrate status: the other folders stay uids=yes" "" \
	"$(printf '%s\n' "$st" | grep -v '^INBOX=' | grep -v '=yes$' | tr '\n' ' ')"

# a later pass that imports nothing new (only a flag changed) must not
# forget that INBOX has a message off its source UID
check "change a flag in the source INBOX" src_mutate alice --seed 3 --flags 1 --folder INBOX
assert_exit NAME="flag-only delta run exits 0" 0 migrate alice
assert_eq "migrate status: INBOX stays uids=partial after a pass with nothing new" "INBOX=partial" \
	"$(status_uids alice | grep '^INBOX=')"

# ============================================================ 2. subscriptions
section "2. subscriptions"
subs() { python3 "$CHECKS" subscriptions "$1"; }
assert_eq "subscriptions: destination == source" "$(subs "$T/s1.json")" "$(subs "$T/d1.json")"
assert_match "subscriptions: subscribed folders are there" 'Entwürfe.*Lists/dovecot users' "$(subs "$T/d1.json")"
if subs "$T/d1.json" | grep -qw Empty; then
	fail "subscriptions: an unsubscribed source folder stays unsubscribed" "Empty is subscribed"
else
	pass "subscriptions: an unsubscribed source folder stays unsubscribed"
fi
check "subscribe Archive/2018 on the source" hs subscribe alice Archive/2018
src_dump alice "$T/s2.json" --uids || die "source dump failed"
# Archive/2018 itself didn't change: the pass skips it as "unchanged"
# (CONDSTORE), and the subscription must still be copied
assert_exit NAME="run after a new source subscription exits 0" 0 migrate alice -f json
info "Archive/2018 in that pass: $(python3 "$CHECKS" folder-results "$LAST_OUT" Archive/2018)"
dst_dump alice "$T/d2b.json" --uids || fail "destination dump" failed
h minus "$T/d2b.json" "$T/d-own.json" "INBOX:$deliver1" || fail "delivered message kept" "not in INBOX"
compare_dumps "a new source subscription is copied (dumps incl. subscriptions equal)" \
	"$T/s2.json" "$T/d-own.json"
assert_match "Archive/2018 is subscribed at the destination" 'Archive/2018' "$(subs "$T/d2b.json")"

# ============================================================ 3. identity traps
section "3a. UIDVALIDITY change on the source"
check "change UIDVALIDITY of INBOX on the source" src_set_uidvalidity alice INBOX 771001
# Work the hard way: the server rebuilds its UID list, so the folder's
# messages are renumbered 1..n (the gaps close: a UID now names another
# message), then gets a new UIDVALIDITY
renumber() {
	local user=$1 folder=$2 uv=$3
	if declare -F src_renumber_uids >/dev/null; then
		src_renumber_uids "$user" "$folder" || return 1
	fi
	src_set_uidvalidity "$user" "$folder" "$uv"
}
src_dump alice "$T/s3pre.json" --uids || die "source dump failed"
check "renumber the UIDs of Work on the source (new UIDVALIDITY)" renumber alice Work 771002
src_dump alice "$T/s3.json" --uids || die "source dump failed"
assert_eq "Work's UIDs really changed on the source" changed \
	"$(python3 "$CHECKS" uids-changed "$T/s3pre.json" "$T/s3.json")"
assert_exit NAME="run after UIDVALIDITY change exits 0" 0 migrate alice
dst_dump alice "$T/d3.json" --uids || fail "destination dump" failed
h minus "$T/d3.json" "$T/d3-own.json" "INBOX:$deliver1" || fail "UIDVALIDITY change: the delivery stays" "gone"
compare_dumps "UIDVALIDITY change: no duplicates, no losses" "$T/s3.json" "$T/d3-own.json"

section "3b. state lost"
dict="$(dst_home alice)/.dovecot-migrate.dict"
if [ -e "$dict" ]; then pass "state dict exists ($dict)"; else fail "state dict exists" "$dict"; fi
rm -f "$dict"
# the destination has mail the state doesn't know: listed with headers
mkdir -p "$T/raw4" && chown "$MAIL_USER:$MAIL_USER" "$T/raw4"
assert_exit NAME="run without state exits 0" 0 migrate alice \
	-o plugin/migrate_source_rawlog_dir="$T/raw4"
if [ "$(listing_cmds "$T/raw4" | grep -ac 'HEADER.FIELDS')" -ge 3 ] &&
	! listing_cmds "$T/raw4" | grep -aqv 'HEADER.FIELDS'; then
	pass "lost state, mail at the destination: every listing asks for headers"
else
	fail "lost state, mail at the destination: every listing asks for headers" \
		"$(listing_cmds "$T/raw4" | head -n 3)"
fi
dst_dump alice "$T/d4.json" --uids || fail "destination dump" failed
h minus "$T/d4.json" "$T/d4-own.json" "INBOX:$deliver1" || fail "lost state: the delivery stays" "gone"
compare_dumps "lost state: no duplicates, no losses" "$T/s3.json" "$T/d4-own.json"

section "3c. crafted traps"
src_add_user traps spw-traps
dst_add_user traps
mkdir -p "$T/m"
# the crafted messages, from corpus messages
python3 "$CHECKS" make-traps "$CORPUS" "$T/m"
nomid_files=("$T"/m/nomid-*.eml)
n_nomid=${#nomid_files[@]}
info "$n_nomid corpus messages have no Message-ID"
[ "$n_nomid" -ge 50 ] && pass "the corpus has messages without Message-ID ($n_nomid)" ||
	fail "the corpus has messages without Message-ID" "$n_nomid"
# a Draft, rewritten later
printf 'From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: Plan for Q3\r\nDate: Thu, 04 Jan 2024 12:00:00 +0000\r\nMessage-ID: <draft-q3@identity.test>\r\n\r\nFirst draft.\r\n' >"$T/m/F.eml"
printf 'From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: Plan for Q3\r\nDate: Thu, 04 Jan 2024 12:00:00 +0000\r\nMessage-ID: <draft-q3@identity.test>\r\n\r\nSecond draft, now with the budget and the timeline.\r\n' >"$T/m/F2.eml"

# one connection APPENDs all of them (~130 messages)
python3 "$CHECKS" seed-traps "$SRC_PORT" "$(src_password traps)" "$T/m" ||
	fail "seed the traps user" "append failed"
src_dump traps "$T/t1.json" --uids || die "source dump of traps failed"
# a login creates the destination INBOX before the first run: an empty,
# never used folder still takes the source's UIDVALIDITY
dst_dump traps "$T/dst-traps-empty.json" || fail "destination login as traps" failed
assert_exit NAME="traps: first run exits 0" 0 migrate traps
dst_equals "traps: destination == source (nothing skipped, nothing twice)" traps "$T/t1.json" --uids --uidvalidity
# check_counts DUMP FOLDER:FILE:N...: "ok", or where FILE isn't there N times
check_counts() { python3 "$CHECKS" counts "$@"; }
assert_eq "traps: A, B (same Message-ID, other size), C (same Message-ID and size, other Subject), H (same headers and size, other body) all imported" ok \
	"$(check_counts "$T/dst-traps.json" "INBOX:$T/m/A.eml:1" "INBOX:$T/m/B.eml:1" "INBOX:$T/m/C.eml:1" "INBOX:$T/m/H.eml:1")"
assert_eq "traps: the same message twice in a folder is there twice, in two folders once in each" ok \
	"$(check_counts "$T/dst-traps.json" "INBOX:$T/m/D.eml:2" "INBOX:$T/m/E.eml:1" "Aardvark:$T/m/E.eml:1" \
		"Alpha:$T/m/G.eml:1" "Beta:$T/m/G.eml:1" "NoMsgId:$T/m/nomid-000.eml:2")"
dst_mail_files traps >"$T/tf1"
assert_exit NAME="traps: verify -I exits 0" 0 dst_doveadm migrate verify -I -u traps
assert_exit NAME="traps: second run exits 0" 0 migrate traps
dst_equals "traps: second run: destination still == source" traps "$T/t1.json" --uids --uidvalidity
dst_mail_files traps >"$T/tf2"
if cmp -s "$T/tf1" "$T/tf2"; then pass "traps: second run wrote no message files"; else
	fail "traps: second run wrote no message files" "$(diff "$T/tf1" "$T/tf2" | grep -c '^[<>]') changed"; fi
rm -f "$(dst_home traps)/.dovecot-migrate.dict"
assert_exit NAME="traps: run without state exits 0" 0 migrate traps
dst_equals "traps: lost state: no message without Message-ID twice or missing" traps "$T/t1.json" --uids --uidvalidity
check "traps: renumber the UIDs of NoMsgId on the source (new UIDVALIDITY)" renumber traps NoMsgId 881001
check "traps: change UIDVALIDITY of INBOX on the source" src_set_uidvalidity traps INBOX 881002
src_dump traps "$T/t2.json" || die "source dump of traps failed"
assert_exit NAME="traps: run after UIDVALIDITY change exits 0" 0 migrate traps
dst_equals "traps: UIDVALIDITY change: mail without Message-ID matched, not copied again" traps "$T/t2.json"
# plus one more re-run after all that: still nothing new
assert_exit NAME="traps: another run exits 0" 0 migrate traps
dst_equals "traps: another run: destination == source" traps "$T/t2.json"

section "3d. dedupe across folders"
dst_add_user tdedupe userdb_migrate_source_user=traps
hE=$(sha "$T/m/E.eml")
hG=$(sha "$T/m/G.eml")
# expected: the source without the later copies. The no-Message-ID mail
# that is in INBOX too goes from NoMsgId, both copies of nomid-000
nomid_in_inbox=()
for i in 0 0 1 2 3 4; do nomid_in_inbox+=("NoMsgId:$(sha "$T/m/nomid-00$i.eml")"); done
h minus "$T/t2.json" "$T/t2-dedupe.json" "Aardvark:$hE" "Beta:$hG" "${nomid_in_inbox[@]}" ||
	fail "expected dump" "minus failed"
assert_exit NAME="dedupe: run with migrate_dedupe_across_folders=yes exits 0" 0 \
	migrate tdedupe -o plugin/migrate_dedupe_across_folders=yes
dst_equals "dedupe: a message in two folders lands once, in the first folder (INBOX, then by name)" \
	tdedupe "$T/t2-dedupe.json"
assert_eq "dedupe: same message twice in one folder stays twice, A/B/C stay apart" ok \
	"$(check_counts "$T/dst-tdedupe.json" "INBOX:$T/m/D.eml:2" "INBOX:$T/m/A.eml:1" "INBOX:$T/m/B.eml:1" \
		"INBOX:$T/m/C.eml:1" "INBOX:$T/m/H.eml:1" "INBOX:$T/m/E.eml:1" "Alpha:$T/m/G.eml:1" "INBOX:$T/m/nomid-000.eml:1" \
		"NoMsgId:$T/m/nomid-000.eml:0" "NoMsgId:$T/m/nomid-005.eml:1")"
rep=$(dst_json migrate report -u tdedupe | python3 "$CHECKS" report-reasons)
assert_eq "dedupe: migrate report lists the skipped copies with reason duplicate" \
	"Aardvark:duplicate Beta:duplicate$(printf ' NoMsgId:duplicate%.0s' 1 2 3 4 5 6)" "$rep"
assert_exit NAME="dedupe: re-run exits 0" 0 migrate tdedupe -o plugin/migrate_dedupe_across_folders=yes
dst_equals "dedupe: re-run imports no skipped copy" tdedupe "$T/t2-dedupe.json"
assert_exit NAME="dedupe: verify -I exits 0 (the skipped copies are explained)" 0 \
	dst_doveadm -o plugin/migrate_dedupe_across_folders=yes migrate verify -I -u tdedupe

section "3e. Draft rewritten on the source"
fuid=$(hs uids traps Drafts)
check "expunge the old draft on the source" hs expunge traps Drafts "$fuid"
hs append traps Drafts '\Draft' 1704369600 "$T/m/F2.eml" >/dev/null || fail "append the new draft" failed
# and one of the two copies of D in INBOX: -d must take exactly one
src_dump traps "$T/t2u.json" --uids || fail "source dump of traps" failed
duid=$(python3 "$CHECKS" max-uid "$T/t2u.json" "$T/m/D.eml")
check "expunge one of the two copies of D on the source" hs expunge traps INBOX "$duid"
src_dump traps "$T/t3.json" || die "source dump of traps failed"
assert_exit NAME="draft: run exits 0" 0 migrate traps
assert_eq "draft: the new version is imported, the old one kept without -d" ok \
	"$(dst_dump traps "$T/dst-traps.json" && check_counts "$T/dst-traps.json" "Drafts:$T/m/F2.eml:1" "Drafts:$T/m/F.eml:1")"
assert_exit NAME="draft: run -d exits 0" 0 dst_doveadm -f json migrate run -d -u traps
assert_eq "draft: run -d expunged the old draft and one copy of D" 2 "$(run_expunged)"
dst_equals "draft: after run -d only the new version is left, destination == source" traps "$T/t3.json"
assert_eq "draft: run -d left one copy of D" ok "$(check_counts "$T/dst-traps.json" "INBOX:$T/m/D.eml:1" "Drafts:$T/m/F2.eml:1")"

# ============================================================ 4. delete mode
section "3f. RFC822.SIZE that isn't the size of the body (Exchange)"
# The proxy reports every RFC822.SIZE 17 bytes larger than the message it
# passes on, as Exchange does for many messages. The destination copy has
# the real size: with the state lost or UIDVALIDITY changed, the listing's
# identity (RFC822.SIZE) finds no twin at the destination, and the body's
# size must decide before anything is saved twice.
. "$HARNESS_LIB/faults.sh"
src_add_user ex spw-ex
dst_add_user ex
src_seed ex --seed 13 --limit 60 >"$T/seed-ex.out" 2>&1 || die "seeding ex failed"
src_dump ex "$T/ex.json" || die "source dump of ex failed"
proxy_start skew --size-skew 17 || die "faultproxy did not start"
assert_exit NAME="skewed sizes: first run exits 0" 0 via_proxy ex
dst_equals "skewed sizes: destination == source" ex "$T/ex.json"
assert_exit NAME="skewed sizes: verify -I accounts for every message (the state's UID map)" 0 \
	dst_doveadm -o plugin/migrate_source_port="$PROXY_PORT" migrate verify -I -u ex
rm -f "$(dst_home ex)"/.dovecot-migrate*
assert_exit NAME="skewed sizes: run without state exits 0" 0 via_proxy ex -D
dst_equals "skewed sizes, state lost: no duplicates" ex "$T/ex.json"
assert_match "skewed sizes, state lost: matched by the body's size" \
	'RFC822.SIZE [0-9]+ but a body of [0-9]+ bytes: matched' "$(cat "$T/run-ex.err")"
check "change UIDVALIDITY of ex's INBOX" src_set_uidvalidity ex INBOX 8080
assert_exit NAME="skewed sizes: run after a UIDVALIDITY change exits 0" 0 via_proxy ex
dst_equals "skewed sizes, UIDVALIDITY changed: no duplicates" ex "$T/ex.json"
proxy_stop

section "3g. a message moved out and back (a new UID, the same mail)"
# The state knows the old UID; it vanished while a new one appeared. The
# new UID must be matched against the old UID's destination copy: no
# second copy, and with -d the copy isn't expunged as gone.
src_add_user mv spw-mv
dst_add_user mv
src_seed mv --seed 17 --limit 30 >"$T/seed-mv.out" 2>&1 || die "seeding mv failed"
assert_exit NAME="moved: first run exits 0" 0 migrate mv
check "move 3 INBOX messages to Work and back on the source" \
	python3 "$CHECKS" move-and-back "$SRC_PORT"
src_dump mv "$T/mv.json" || die "source dump of mv failed"
assert_exit NAME="moved: run exits 0" 0 migrate mv -D
dst_equals "moved: no second copy in INBOX" mv "$T/mv.json"
assert_match "moved: the new UIDs were matched to the vanished ones' copies" \
	'3 source UIDs vanished while 3 new appeared' "$(cat "$LAST_ERR")"
assert_exit NAME="moved: run -d exits 0" 0 dst_doveadm migrate run -d -u mv
dst_equals "moved: -d expunged nothing that is still on the source" mv "$T/mv.json"

section "4. safe delete mode"
mkmsg "$T/deliver2.eml" deliver-2 "filed at the destination" "Only at the destination."
check "deliver a message to the destination Work" dst_doveadm save -u alice -m Work <"$T/deliver2.eml"
deliver2=$(sha "$T/deliver2.eml")
assert_exit NAME="expunge 9 messages on the source" 0 src_mutate alice --seed 41 --expunge 9
src_dump alice "$T/s5.json" --uids || die "source dump failed"
assert_exit NAME="delete mode: run -d exits 0" 0 dst_doveadm -f json migrate run -d -u alice
assert_eq "delete mode: expunged exactly the 9 source deletions" 9 "$(run_expunged)"
dst_dump alice "$T/d5.json" --uids || fail "destination dump" failed
if h minus "$T/d5.json" "$T/d5-own.json" "INBOX:$deliver1" "Work:$deliver2"; then
	pass "delete mode: destination-only mail is kept"
else
	fail "delete mode: destination-only mail is kept" "a delivered message is gone"
fi
compare_dumps "delete mode: destination (without the deliveries) == source" "$T/s5.json" "$T/d5-own.json"
assert_exit NAME="delete mode: second run -d exits 0" 0 dst_doveadm -f json migrate run -d -u alice
assert_eq "delete mode: second run -d expunges nothing" 0 "$(run_expunged)"

# ============================================================ 5. concurrent changes
section "5. source changes during a run"
src_add_user busy spw-busy
dst_add_user busy
check "fill busy's INBOX with 1500 messages" hs fill busy INBOX 1500 3000
rm -f "$T/churn.stop" "$T/churn.count"
hs churn busy INBOX "$T/churn.stop" "$T/churn.count" >"$T/churn.out" 2>&1 &
churn_pid=$!
track_pid "$churn_pid"
for i in $(seq 1 100); do [ -s "$T/churn.count" ] && break; sleep 0.1; done
c0=$(cat "$T/churn.count" 2>/dev/null || echo 0)
# paced (600 messages/s) so the run lasts a few seconds while the source
# gets an APPEND and an EXPUNGE every ~20 ms
run_capture migrate busy -o plugin/migrate_max_messages_per_second=600
busy_rc=$LAST_RC
c1=$(cat "$T/churn.count" 2>/dev/null || echo 0)
: >"$T/churn.stop"
wait "$churn_pid"
churn_rc=$?
[ "$churn_rc" = 0 ] || fail "the concurrent IMAP client" "exit $churn_rc: $(tail -n 2 "$T/churn.out")"
case $busy_rc in
0 | 2) pass "a run while the source changes doesn't abort (exit $busy_rc)" ;;
*) fail "a run while the source changes doesn't abort" "exit $busy_rc: $(tail -n 3 "$LAST_ERR" | tr '\n' ' ')" ;;
esac
if [ $((c1 - c0)) -ge 3 ]; then pass "the source changed during the run ($((c1 - c0)) rounds)"; else
	fail "the source changed during the run" "only $((c1 - c0)) rounds"; fi
info "items of that run: $(dst_json migrate report -u busy | python3 "$CHECKS" reason-counts)"
src_dump busy "$T/b1.json" || die "source dump of busy failed"
# -d: what was imported and then expunged during the run goes too
assert_exit NAME="the following run (-d) exits 0" 0 dst_doveadm migrate run -d -u busy
dst_equals "the following run: destination == source" busy "$T/b1.json"

info "total ${SECONDS}s"
harness_done
