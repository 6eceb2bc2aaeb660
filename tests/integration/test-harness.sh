#!/usr/bin/env bash
# timeout: 420
# Smoke test of the harness itself (needs no plugin): both servers start,
# the corpus seeds, dumps are stable, compare notices differences, the
# destination answers doveadm.
. "$(dirname "$0")/../lib/harness.sh"

src_start || die "source server did not start"
dst_start || die "destination server did not start"

# --- seed + dump twice: a dump is a pure function of the mailbox state
if src_seed alice --seed 1 >"$T/seed.out" 2>&1; then
	pass "seed alice from the corpus"
else
	fail "seed alice from the corpus" "$(tail -n 3 "$T/seed.out")"
fi
check "dump source (1)" src_dump alice "$T/a1.json"
check "dump source (2)" src_dump alice "$T/a2.json"
compare_dumps "source dump is stable" "$T/a1.json" "$T/a2.json"

corpus_n=$(($(wc -l <"$CORPUS/MANIFEST.tsv") - 1))
# every corpus file, +1 duplicate in one folder, +1 copy in a second folder
msgs=$(python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); d.pop("subscriptions")
print(sum(len(b["messages"]) for b in d.values()))' "$T/a1.json")
assert_eq "every corpus message is on the source" "$((corpus_n + 2))" "$msgs"

folders=$(python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); print(" ".join(sorted(k for k in d if k != "subscriptions")))' "$T/a1.json")
assert_match "nested and non-ASCII folders exist" 'Work/Projects/2019' "$folders"
assert_match "mUTF-7 folder decodes" 'Отправленные-old' "$folders"
assert_match "folder with & decodes" 'Q&A Notes' "$folders"
subs=$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["subscriptions"]))' "$T/a1.json")
assert_match "subscriptions are dumped" 'Entwürfe' "$subs"

# --- the multiset case is visible in the dump
dups=$(python3 -c 'import json,sys,collections
d=json.load(open(sys.argv[1])); d.pop("subscriptions")
print(sum(n-1 for b in d.values() for n in collections.Counter(json.dumps(m) for m in b["messages"]).values() if n > 1))' "$T/a1.json")
assert_eq "one message twice in one folder" 1 "$dups"

# --- compare must notice a difference: mutate, dump, compare
check "mutate source" src_mutate alice --seed 7 --flags 5 --append 3 --expunge 2
check "dump after mutate" src_dump alice "$T/a3.json"
assert_exit NAME="compare detects mutation" 1 imaptool compare "$T/a1.json" "$T/a3.json"
assert_match "compare reports counts" 'missing in B' "$(cat "$LAST_OUT")"

# --- UIDs: --uids dumps compare equal to themselves
check "dump with uids" src_dump alice "$T/u1.json" --uids
assert_exit NAME="uids dump equals itself" 0 imaptool compare --uids --uidvalidity "$T/u1.json" "$T/u1.json"

# --- UIDVALIDITY change through doveadm on the source
uv_before=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Work"]["uidvalidity"])' "$T/u1.json")
check "doveadm mailbox update --uid-validity" src_set_uidvalidity alice Work 1234567
check "dump after uidvalidity change" src_dump alice "$T/u2.json" --uids
uv_after=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Work"]["uidvalidity"])' "$T/u2.json")
info "Work: UIDVALIDITY $uv_before -> $uv_after"
assert_eq "Work has the new UIDVALIDITY" 1234567 "$uv_after"
assert_exit NAME="compare --uidvalidity detects it" 1 imaptool compare --uidvalidity "$T/u1.json" "$T/u2.json"
assert_exit NAME="content unchanged by uidvalidity change" 0 imaptool compare "$T/u1.json" "$T/u2.json"

# --- a rebuilt folder: new UIDVALIDITY and UIDs renumbered (INBOX had
# expunges from the mutate above, so UIDs shift), same content
check "renumber INBOX UIDs" src_renumber_uids alice INBOX
check "dump after renumbering" src_dump alice "$T/u3.json" --uids
assert_exit NAME="content unchanged by renumbering" 0 imaptool compare "$T/u2.json" "$T/u3.json"
assert_exit NAME="renumbering changes UIDVALIDITY and UIDs" 1 imaptool compare --uids --uidvalidity "$T/u2.json" "$T/u3.json"
assert_match "renumbered: INBOX UIDVALIDITY and UIDs differ" "folder 'INBOX': uidvalidity.*" "$(cat "$LAST_OUT")"
assert_match "renumbered: INBOX UIDs shifted" "missing in B" "$(grep -A1 "folder 'INBOX': A has" "$LAST_OUT")"

# --- IMAPS with the test CA
assert_exit NAME="IMAPS dump verifies against SRC_CA" 0 imaptool dump --host localhost \
	--port "$SRC_SSL_PORT" --ssl --cafile "$SRC_CA" --user alice --password "$(src_password alice)"
assert_exit NAME="IMAPS without the CA is rejected" 1 python3 -c '
import ssl, socket, sys
ctx = ssl.create_default_context()
try:
    ctx.wrap_socket(socket.create_connection(("localhost", int(sys.argv[1])), 10), server_hostname="localhost")
except ssl.SSLCertVerificationError:
    sys.exit(1)
sys.exit(0)' "$SRC_SSL_PORT"

# --- wrong password fails
assert_exit NAME="wrong source password is refused" 1 imaptool dump --port "$SRC_PORT" --user alice --password nope

# --- destination: doveadm works with the private config, dump of an empty account
check "dst_doveadm mailbox list -u alice" dst_doveadm mailbox list -u alice
check "dump empty destination" dst_dump alice "$T/d.json"
assert_eq "destination is empty" '{"INBOX":{"messages":[],"uidvalidity":0},"subscriptions":[]}' \
	"$(python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); d["INBOX"]["uidvalidity"]=0; print(json.dumps(d,sort_keys=True,separators=(",",":")))' "$T/d.json")"

# --- the tests run the tree's build, never an installed copy: a canary
# (a copy of the build with another build id) installed into the doveadm
# module dir, inside a private mount namespace only, must not be what a
# test's doveadm runs
SO="$PLUGIN_DIR/lib20_doveadm_migrate_plugin.so"
# ran_build FILE: "ID PATH" of the plugin that ran, from doveadm -D output
ran_build() {
	sed -n 's/.*migrate: plugin build \(dm-build-[0-9a-z]*\) loaded from \(.*\)/\1 \2/p' "$1" | head -n 1
}
# in_canary_ns CMD...: CMD in a private mount namespace whose doveadm
# module dir holds what this test's view holds plus the canary
# shellcheck disable=SC2016 # the inner sh expands them
in_canary_ns() {
	unshare -m --propagation private -- sh -c \
		'mount --bind "$1" "$2" || exit 99; shift 2; exec "$@"' \
		sh "$T/canary-mods" "$DM_DOVEADM_MODULE_DIR" "$@"
}
if plugin_built; then
	tree_id=$(plugin_build_id "$SO")
	assert_match "the build embeds a build id" '^dm-build-[0-9a-f]{16}$' "$tree_id"
	mkdir -p "$T/canary-mods"
	cp -a "$DM_DOVEADM_MODULE_DIR"/. "$T/canary-mods"/
	canary_id=dm-build-canary$(printf '%s' "$tree_id" | cut -c16- | tr '0-9a-f' 'g-p')
	python3 -c 'import sys
a, b = sys.argv[3].encode(), sys.argv[4].encode()
assert len(a) == len(b)
data = open(sys.argv[1], "rb").read()
assert data.count(a) == 1
open(sys.argv[2], "wb").write(data.replace(a, b))' \
		"$SO" "$T/canary-mods/lib20_doveadm_migrate_plugin.so" "$tree_id" "$canary_id"
	assert_eq "the canary is a copy with another id" "$canary_id" \
		"$(plugin_build_id "$T/canary-mods/lib20_doveadm_migrate_plugin.so")"

	dst_doveadm -D migrate status -u alice >"$T/own.out" 2>&1
	assert_eq "this test's doveadm runs the tree's build" "$tree_id $SO" "$(ran_build "$T/own.out")"

	# control: with the canary installed, the harness's doveadm command
	# line outside the harness's namespace runs the canary
	dst_doveadm_argv
	in_canary_ns "${DST_DOVEADM[@]}" -D migrate status -u alice >"$T/control.out" 2>&1
	assert_eq "control: an installed copy wins over -o mail_plugins" \
		"$canary_id $DM_DOVEADM_MODULE_DIR/lib20_doveadm_migrate_plugin.so" \
		"$(ran_build "$T/control.out")"

	# a test started while the canary is installed runs the tree's build
	# shellcheck disable=SC2016 # the inner script expands them
	{
		echo "TEST_NAME=canary-inner"
		printf '. %q\n' "$HARNESS_LIB/harness.sh"
		printf 'DST_DIR=%q\n' "$DST_DIR"
		echo 'dst_doveadm -D migrate status -u alice >"$T/out" 2>&1'
		printf 'cp "$T/out" %q\n' "$T/inner.doveadm"
		printf 'ls "$DM_DOVEADM_MODULE_DIR" >%q\n' "$T/inner.ls"
		echo 'pass inner; harness_done'
	} >"$T/canary-test.sh"
	in_canary_ns bash "$T/canary-test.sh" >"$T/inner.out" 2>&1
	assert_eq "with a canary installed, a test's doveadm runs the tree's build" \
		"$tree_id $SO" "$(ran_build "$T/inner.doveadm")"
	assert_eq "the test's module dir view hides the installed copy" "" \
		"$(grep doveadm_migrate "$T/inner.ls")"
	assert_eq "the canary stayed in its namespace" "" "$(own_build_installed)"
else
	fail "canary" "the plugin is not built ($SO)"
fi

# --- other layouts: the same seed on a Courier-style server (INBOX. prefix,
# '.' separator) dumps exactly like the default layout
src_start --courier --name courier || die "courier source did not start"
src_seed alice --seed 3 --limit 40 >"$T/seed-c.out" 2>&1 ||
	fail "seed courier layout" "$(tail -n 2 "$T/seed-c.out")"
src_dump alice "$T/courier.json" || fail "dump courier layout" failed
assert_match "courier server has the INBOX. prefix" "prefix 'INBOX.', delimiter '.'" "$(head -n 1 "$T/seed-c.out")"
src_start --gmail-like --name gmail || die "gmail-like source did not start"
src_seed alice --seed 3 --limit 40 >/dev/null 2>&1 || fail "seed gmail layout" failed
src_dump alice "$T/gmail.json" || fail "dump gmail layout" failed
# the default layout with the same seed, on a fresh user of the first server
src_use
src_add_user carol spw-carol
src_seed carol --seed 3 --limit 40 >/dev/null 2>&1 || fail "seed carol" failed
src_dump carol "$T/carol.json" || fail "dump carol" failed
compare_dumps "courier layout dumps like the default layout" "$T/carol.json" "$T/courier.json"
# the folder spread differs (other folder weights), the messages don't
same=$(python3 -c 'import json,sys
def bodies(path):
    d=json.load(open(path)); d.pop("subscriptions")
    return sorted(m[0] for k,b in d.items() if k != "[Gmail]/All Mail" for m in b["messages"])
print(bodies(sys.argv[1]) == bodies(sys.argv[2]))' "$T/gmail.json" "$T/carol.json")
assert_eq "gmail layout holds the same messages as the default layout" True "$same"
all_mail=$(python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); d.pop("subscriptions")
rest=sum(len(b["messages"]) for k,b in d.items() if k not in ("[Gmail]/All Mail","[Gmail]/Trash","[Gmail]/Spam"))
print(len(d["[Gmail]/All Mail"]["messages"]) == rest)' "$T/gmail.json")
assert_eq "gmail: All Mail holds every message outside Trash/Spam" True "$all_mail"

# --- source password files for the plugin are readable by the mail user
assert_eq "source password file" "spw-alice" "$(su -s /bin/sh -c "cat '$T/srcpw/alice'" "$MAIL_USER")"

harness_done
