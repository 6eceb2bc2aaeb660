#!/usr/bin/env bash
# POP3 UIDLs (migrate_pop3_uidls, issue #17): a source Dovecot with POP3
# whose pop3_uidl_format (the message GUID) is unlike the destination's
# default (UID + UIDVALIDITY), and which hides two INBOX messages from POP3
# (pop3_deleted_flag): POP3 numbers differ from IMAP's, so only content
# matching pairs them. The destination (Maildir) has POP3 too. Checked with
# Python's poplib against both servers:
#   - a run with the option off: the destination shows its own UIDLs;
#   - the same user with it on: UIDLs added to the imported messages, the
#     destination's POP3 shows the source's UIDLs in the source's order;
#   - a re-run stores nothing and changes nothing; verify agrees; plan says
#     POP3 is reachable and how many messages have UIDLs;
#   - a message the destination's INBOX lacks (a run with -m Sent after new
#     INBOX mail): reported as pop3-unmatched, exit 2; the next run fills it;
#   - a refused POP3 login (exit 77), a POP3 connection cut once
#     (reconnected, exit 0) and cut every time (exit 75 after
#     migrate_reconnect_max): one error naming migrate_pop3_uidls, the IMAP
#     import complete, and a re-run carries the UIDLs;
#   - sdbox and mdbox users (userdb mail): UIDLs stored while saving; the
#     option turned on after a pass: exit 2 saying why;
#   - TLS (POP3S, STLS), a port without TLS, a closed port, plan;
#   - a hostile POP3 server: an endless line, a listing that never ends;
#   - the settings from the userdb alone;
#   - a Cyrus source (pop3d beside imapd): the same, with Cyrus's UIDLs.
# timeout: 300
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"

echo 'pop3_deleted_flag = POP3Hidden' >"$T/pop3-hide.conf"
src_start --pop3 '%g' --conf-extra "$T/pop3-hide.conf" ||
	die "source server did not start"
dst_start --format maildir --pop3 --conf-extra "$T/pop3-hide.conf" ||
	die "destination server did not start"
src_seed alice --seed 7 --limit 30 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"

pop3_uidls() { python3 "$HARNESS_LIB/pop3tool.py" uidl "$@"; }

SPW=$(src_password alice)
python3 "$HARNESS_LIB/pop3tool.py" hide "$SRC_PORT" alice "$SPW" 2 5 ||
	die "hiding messages from POP3 failed"
pop3_uidls "$SRC_POP3_PORT" alice "$SPW" >"$T/src.uidl" ||
	die "POP3 UIDL at the source failed"
N=$(wc -l <"$T/src.uidl")
check "source: POP3 shows INBOX messages ($N)" [ "$N" -ge 5 ]

# migrate USER [doveadm -o options...]
migrate() {
	local user=$1
	shift
	dst_doveadm -o plugin/migrate_automap=no \
		-o plugin/migrate_pop3_port="$SRC_POP3_PORT" "$@" migrate run -u "$user"
}
POP3ON="-o plugin/migrate_pop3_uidls=yes"

# ------------------------------------------------------------ off, then on
assert_exit NAME="run without migrate_pop3_uidls: exit 0" 0 migrate alice
pop3_uidls "$DST_POP3_PORT" alice "$(dst_password alice)" >"$T/dst0.uidl" ||
	die "POP3 UIDL at the destination failed"
check "without the option: the destination's own UIDLs" \
	bash -c "! cmp -s '$T/src.uidl' '$T/dst0.uidl'"

assert_exit NAME="run with migrate_pop3_uidls: exit 0" 0 migrate alice $POP3ON
assert_match "the run says it stored every UIDL" \
	"POP3 UIDLs: $N POP3 messages, $N matched, $N stored now \(0 while saving\), 0 unmatched" \
	"$(cat "$LAST_ERR" "$LAST_OUT")"
pop3_uidls "$DST_POP3_PORT" alice "$(dst_password alice)" >"$T/dst1.uidl"
check "destination POP3: the source's UIDLs, in the source's order" \
	cmp -s "$T/src.uidl" "$T/dst1.uidl"

# ------------------------------------------------------------ re-run
assert_exit NAME="re-run: exit 0" 0 migrate alice $POP3ON
assert_match "re-run: nothing stored" "$N matched, 0 stored now \(0 while saving\), 0 unmatched" \
	"$(cat "$LAST_ERR" "$LAST_OUT")"
pop3_uidls "$DST_POP3_PORT" alice "$(dst_password alice)" >"$T/dst2.uidl"
check "re-run: the destination's UIDLs unchanged" cmp -s "$T/dst1.uidl" "$T/dst2.uidl"

assert_exit NAME="verify with migrate_pop3_uidls: exit 0" 0 \
	dst_doveadm $POP3ON -o plugin/migrate_pop3_port="$SRC_POP3_PORT" \
	migrate verify -u alice
assert_exit NAME="plan with migrate_pop3_uidls: exit 0" 0 \
	dst_doveadm $POP3ON -o plugin/migrate_pop3_port="$SRC_POP3_PORT" \
	migrate plan -u alice
assert_match "plan: POP3 reachable, messages with UIDLs counted" \
	"shows $N INBOX messages with UIDLs" "$(cat "$LAST_ERR" "$LAST_OUT")"

# ------------------------------------------------------------ unmatched
python3 "$HARNESS_LIB/pop3tool.py" append "$SRC_PORT" alice "$SPW" \
	"$CORPUS/mimekit/messages__japanese.txt" || die "adding a message failed"
pop3_uidls "$SRC_POP3_PORT" alice "$SPW" >"$T/src2.uidl"
assert_exit NAME="INBOX not imported (-m Sent): exit 2" 2 \
	dst_doveadm -o plugin/migrate_automap=no $POP3ON \
	-o plugin/migrate_pop3_port="$SRC_POP3_PORT" migrate run -u alice -m Sent
assert_match "the new message is reported pop3-unmatched" \
	"1 of $((N + 1)) POP3 messages match no message.*pop3-unmatched" \
	"$(cat "$LAST_ERR" "$LAST_OUT")"
assert_exit NAME="report -r pop3-unmatched: exit 0" 0 \
	dst_doveadm migrate report -u alice -r pop3-unmatched
assert_match "report: the unmatched message, by Message-ID" \
	'pop3-new@dovecot-migrate.test.*pop3-unmatched.*UIDL ' \
	"$(tr -s ' \n' ' ' <"$LAST_OUT")"
assert_exit NAME="next full run: exit 0" 0 migrate alice $POP3ON
assert_exit NAME="report after the full run: exit 0" 0 \
	dst_doveadm migrate report -u alice -r pop3-unmatched
assert_match "report: the item is resolved" 'pop3-unmatched.* yes' \
	"$(tr -s ' \n' ' ' <"$LAST_OUT")"
pop3_uidls "$DST_POP3_PORT" alice "$(dst_password alice)" >"$T/dst3.uidl"
check "after the full run: every UIDL, in order" cmp -s "$T/src2.uidl" "$T/dst3.uidl"

# ------------------------------------------------------------ refused login
# bob's POP3 "source" is the destination's POP3, where his password differs
dst_add_user bob
src_seed bob --seed 8 --limit 8 >"$T/seed-bob.out" 2>&1 || die "seeding bob failed"
assert_exit NAME="refused POP3 login: exit 77" 77 \
	dst_doveadm -o plugin/migrate_automap=no $POP3ON \
	-o plugin/migrate_pop3_port="$DST_POP3_PORT" migrate run -u bob
one_error "refused POP3 login: one error naming the settings" \
	'POP3 UIDLs were not carried.*rejected the login.*migrate_pop3_port'
check "refused POP3 login: no password in the output" \
	bash -c "! grep -qF -- '$(src_password bob)' '$LAST_ERR' '$LAST_OUT'"
src_dump bob "$T/src-bob.json" || die "source dump failed"
dst_equals "refused POP3 login: the IMAP import is complete" bob "$T/src-bob.json"

# ------------------------------------------------------------ cut connection
FAULTPROXY="$HARNESS_LIB/faultproxy.py"
PROXY_PID=
# pop3_proxy NAME CUTS: a faultproxy in front of the source's POP3 that
# cuts its connections after these byte counts (then passes through)
pop3_proxy() {
	[ -z "$PROXY_PID" ] || stop_pid "$PROXY_PID"
	rm -f "$T/proxy-$1.port"
	python3 "$FAULTPROXY" --target-port "$SRC_POP3_PORT" --cut-after-bytes "$2" \
		--port-file "$T/proxy-$1.port" --pid-file "$T/proxy-$1.pid" --max-lifetime 200 \
		>"$T/proxy-$1.out" 2>"$T/proxy-$1.err" &
	PROXY_PID=$!
	track_pid "$PROXY_PID"
	for i in $(seq 1 100); do [ -s "$T/proxy-$1.port" ] && break; sleep 0.1; done
	PROXY_PORT=$(cat "$T/proxy-$1.port" 2>/dev/null)
	[ -n "$PROXY_PORT" ] || die "faultproxy did not start: $(tail -n 3 "$T/proxy-$1.err")"
}
src_dump alice "$T/src-alice.json" || die "source dump failed"
# cut once: reconnected, as on the IMAP side
pop3_proxy once 300
dst_add_user carol userdb_migrate_source_user=alice
assert_exit NAME="POP3 connection cut once: exit 0" 0 \
	dst_doveadm -o plugin/migrate_automap=no $POP3ON \
	-o plugin/migrate_pop3_port="$PROXY_PORT" migrate run -u carol
assert_match "cut once: the run says it reconnects" \
	"POP3 UIDLs: .*(closed|reset).*reconnecting in [0-9]+ ms \(attempt 1 of" \
	"$(cat "$LAST_ERR")"
pop3_uidls "$DST_POP3_PORT" carol "$(dst_password carol)" >"$T/dst-carol.uidl"
check "cut once: the source's UIDLs in order" cmp -s "$T/src2.uidl" "$T/dst-carol.uidl"
# cut every time: given up after migrate_reconnect_max, the mail imported
pop3_proxy always 300,300,300,300
dst_add_user dave userdb_migrate_source_user=alice
assert_exit NAME="POP3 connection cut every time: exit 75" 75 \
	dst_doveadm -o plugin/migrate_automap=no $POP3ON -o plugin/migrate_reconnect_max=2 \
	-o plugin/migrate_pop3_port="$PROXY_PORT" migrate run -u dave
one_error "cut every time: one error saying UIDLs were not carried" \
	'POP3 UIDLs were not carried.*(closed|reset|POP3 server)'
dst_equals "cut every time: the IMAP import is complete" dave "$T/src-alice.json"
# the proxy passes connections through after its cuts
assert_exit NAME="re-run after the cuts: exit 0" 0 \
	dst_doveadm -o plugin/migrate_automap=no $POP3ON \
	-o plugin/migrate_pop3_port="$PROXY_PORT" migrate run -u dave
pop3_uidls "$DST_POP3_PORT" dave "$(dst_password dave)" >"$T/dst-dave.uidl"
check "re-run after the cuts: the source's UIDLs in order" \
	cmp -s "$T/src2.uidl" "$T/dst-dave.uidl"
stop_pid "$PROXY_PID"

# ------------------------------------------------------------ TLS, plan
# the IMAP side's TLS policy on POP3: imaps -> POP3S, starttls -> STLS
for mode in imaps starttls; do
	dst_add_user "tls$mode" userdb_migrate_source_user=alice
	if [ $mode = imaps ]; then
		ports=(-o plugin/migrate_source_port="$SRC_SSL_PORT" -o plugin/migrate_pop3_port="$SRC_POP3S_PORT")
	else
		ports=(-o plugin/migrate_source_port="$SRC_PORT" -o plugin/migrate_pop3_port="$SRC_POP3_PORT")
	fi
	assert_exit NAME="TLS $mode on POP3 too: exit 0" 0 \
		dst_doveadm -o plugin/migrate_automap=no $POP3ON \
		-o plugin/migrate_source_host=localhost -o plugin/migrate_source_ssl=$mode \
		-o plugin/migrate_source_ssl_ca_file="$SRC_CA" "${ports[@]}" \
		migrate run -u "tls$mode"
	pop3_uidls "$DST_POP3_PORT" "tls$mode" "$(dst_password "tls$mode")" >"$T/dst-tls$mode.uidl"
	check "TLS $mode: the source's UIDLs in order" \
		cmp -s "$T/src2.uidl" "$T/dst-tls$mode.uidl"
done
check "TLS: the source's POP3 saw TLS sessions" \
	grep -Eq 'pop3-login: .*(TLS|SSL)' "$SRC_DIR/dovecot.log"
# POP3S on a port that doesn't speak TLS: a setting to fix, not retried
assert_exit NAME="POP3S on a plain port: exit 78" 78 \
	dst_doveadm -o plugin/migrate_automap=no $POP3ON \
	-o plugin/migrate_source_host=localhost -o plugin/migrate_source_ssl=imaps \
	-o plugin/migrate_source_ssl_ca_file="$SRC_CA" \
	-o plugin/migrate_source_port="$SRC_SSL_PORT" -o plugin/migrate_pop3_port="$SRC_PORT" \
	migrate run -u tlsimaps
one_error "a port that doesn't speak TLS: one error naming migrate_pop3_port" \
	'POP3 UIDLs were not carried.*TLS.*migrate_pop3_port'
# a closed POP3 port: the first connect fails fast, as on the IMAP side
CLOSED=$(free_port)
start=$SECONDS
assert_exit NAME="POP3 port closed: exit 75" 75 \
	dst_doveadm -o plugin/migrate_automap=no $POP3ON \
	-o plugin/migrate_pop3_port="$CLOSED" migrate run -u tlsimaps
one_error "POP3 port closed: one error naming migrate_pop3_port" \
	"POP3 UIDLs were not carried.*Can't connect to the POP3 server 127.0.0.1:$CLOSED \\(migrate_pop3_port"
check "POP3 port closed: no retries (under 10 s)" [ $((SECONDS - start)) -lt 10 ]
# plan: a closed POP3 port is said, not fatal
assert_exit NAME="plan with POP3 closed: exit 0" 0 \
	dst_doveadm $POP3ON -o plugin/migrate_pop3_port="$CLOSED" migrate plan -u alice
assert_match "plan: POP3 not usable, naming migrate_pop3_port" \
	"POP3 UIDLs: the source's POP3 service is not usable: .*migrate_pop3_port" \
	"$(cat "$LAST_ERR" "$LAST_OUT")"

# ------------------------------------------------------------ hostile POP3
# a fake POP3 server: an endless UIDL line, or a listing that never ends
dst_add_user hostile userdb_migrate_source_user=alice
for mode in longline stall; do
	rm -f "$T/bad-$mode.port"
	python3 "$HARNESS_LIB/hostile-pop3d.py" $mode "$T/bad-$mode.port" >"$T/bad-$mode.out" 2>&1 &
	BAD_PID=$!
	track_pid "$BAD_PID"
	for i in $(seq 1 50); do [ -s "$T/bad-$mode.port" ] && break; sleep 0.1; done
	BAD_PORT=$(cat "$T/bad-$mode.port" 2>/dev/null)
	[ -n "$BAD_PORT" ] || die "the fake POP3 server did not start"
	if [ $mode = longline ]; then
		want=76 err='line longer than 65536 bytes'
	else
		want=75 err='did not answer within 2 seconds.*migrate_source_timeout'
	fi
	assert_exit NAME="hostile POP3 ($mode): exit $want" $want \
		dst_doveadm -o plugin/migrate_automap=no $POP3ON -o plugin/migrate_reconnect_max=0 \
		-o plugin/migrate_source_timeout=2s -o plugin/migrate_pop3_port="$BAD_PORT" \
		migrate run -u hostile
	one_error "hostile POP3 ($mode): one error, bounded" "POP3 UIDLs were not carried.*$err"
	stop_pid "$BAD_PID"
done

# ------------------------------------------------------------ sdbox, mdbox
# dbox takes a UIDL only while a message is saved: users whose mail
# (userdb) is sdbox or mdbox get their UIDLs when the option is on from the
# first run, and are told which messages can't get one when it wasn't
# dbox_user NAME DRIVER: a destination user of alice's with that storage
dbox_user() {
	if dv24; then
		dst_add_user "$1" userdb_migrate_source_user=alice \
			userdb_mail_driver="$2" userdb_mail_path="$(dst_home "$1")/$2"
	else
		dst_add_user "$1" userdb_migrate_source_user=alice \
			userdb_mail="$2:$(dst_home "$1")/$2"
	fi
}
for drv in sdbox mdbox; do
	dbox_user "p$drv" "$drv"
	assert_exit NAME="$drv, option on from the first run: exit 0" 0 \
		migrate "p$drv" $POP3ON
	assert_match "$drv: every UIDL stored while saving" \
		"$((N + 1)) stored now \($((N + 1)) while saving\), 0 unmatched" \
		"$(cat "$LAST_ERR" "$LAST_OUT")"
	pop3_uidls "$DST_POP3_PORT" "p$drv" "$(dst_password "p$drv")" >"$T/dst-$drv.uidl"
	check "$drv: the destination's POP3 shows the source's UIDLs in order" \
		cmp -s "$T/src2.uidl" "$T/dst-$drv.uidl"
	assert_exit NAME="$drv: re-run exits 0" 0 migrate "p$drv" $POP3ON
done
dbox_user late sdbox
assert_exit NAME="sdbox, option off: exit 0" 0 migrate late
assert_exit NAME="sdbox, then on: exit 2" 2 migrate late $POP3ON
assert_match "sdbox, then on: the run says why the UIDLs can't be added" \
	"$((N + 1)) of $((N + 1)) messages were stored at the destination before migrate_pop3_uidls was on, and sdbox takes a UIDL only when a message is saved" \
	"$(cat "$LAST_ERR" "$LAST_OUT")"
assert_exit NAME="sdbox, then on: verify exits 2" 2 \
	dst_doveadm $POP3ON -o plugin/migrate_pop3_port="$SRC_POP3_PORT" migrate verify -u late
one_error "verify: one error counting the missing UIDLs" \
	"verify: $((N + 1)) of $((N + 1)) POP3 messages' UIDLs are not on any message of the destination's INBOX"

# ------------------------------------------------------------ userdb
# the settings per user from the userdb, no -o: what -A runs with
dst_add_user udb userdb_migrate_source_user=alice userdb_migrate_pop3_uidls=yes \
	userdb_migrate_pop3_port="$SRC_POP3_PORT"
assert_exit NAME="userdb migrate_pop3_uidls=yes: exit 0" 0 \
	dst_doveadm -o plugin/migrate_automap=no migrate run -u udb
assert_match "userdb: every UIDL stored while saving" \
	"$((N + 1)) stored now \($((N + 1)) while saving\), 0 unmatched" \
	"$(cat "$LAST_ERR" "$LAST_OUT")"
pop3_uidls "$DST_POP3_PORT" udb "$(dst_password udb)" >"$T/dst-udb.uidl"
check "userdb: the destination's POP3 shows the source's UIDLs in order" \
	cmp -s "$T/src2.uidl" "$T/dst-udb.uidl"
# several users through doveadm's user iteration (-F, what -A does with
# every user): each one's UIDLs from its own userdb fields
for u in udb2 udb3; do
	dst_add_user "$u" userdb_migrate_source_user=alice userdb_migrate_pop3_uidls=yes \
		userdb_migrate_pop3_port="$SRC_POP3_PORT"
done
printf 'udb2\nudb3\n' >"$T/users"
assert_exit NAME="-F with two userdb users: exit 0" 0 \
	dst_doveadm -o plugin/migrate_automap=no migrate run -F "$T/users"
for u in udb2 udb3; do
	pop3_uidls "$DST_POP3_PORT" "$u" "$(dst_password "$u")" >"$T/dst-$u.uidl"
	check "-F: $u's POP3 shows the source's UIDLs in order" \
		cmp -s "$T/src2.uidl" "$T/dst-$u.uidl"
done

# ------------------------------------------------------------ Cyrus
# Another implementation: Cyrus's pop3d (UIDL "uidvalidity.uid") beside
# its imapd, classic layout
. "$HARNESS_LIB/cyrus.sh"
cyrus_check pop3
cyrus_start classic --pop3 ||
	die "Cyrus did not start: $(tail -n 3 "$CY/master.out" 2>/dev/null | tr '\n' '|')"
python3 "$HARNESS_LIB/pop3tool.py" mkuser "$CY_PORT" cyrus cpw-cyrus alice || die "creating user.alice failed"
imaptool seed --host 127.0.0.1 --port "$CY_PORT" --user alice --password cpw-alice \
	--corpus "$CORPUS" --layout courier --seed 12 --limit 40 --skip-refused \
	--skip-folder 'Say "hi"' >"$T/seed-cy.out" 2>&1 ||
	die "seeding Cyrus failed: $(tail -n 2 "$T/seed-cy.out")"
pop3_uidls "$CY_POP3_PORT" alice cpw-alice >"$T/cy.uidl" || die "POP3 UIDL at Cyrus failed"
CN=$(wc -l <"$T/cy.uidl")
check "Cyrus: POP3 shows INBOX messages ($CN)" [ "$CN" -ge 3 ]
dst_add_user cy userdb_migrate_source_user=alice
dst_set_source_password cy cpw-alice
cyrus_run() {
	dst_doveadm -o plugin/migrate_automap=no -o plugin/migrate_source_port="$CY_PORT" \
		$POP3ON -o plugin/migrate_pop3_port="$CY_POP3_PORT" "$@" -u cy
}
assert_exit NAME="Cyrus: run exits 0" 0 cyrus_run migrate run
cp "$LAST_ERR" "$T/cy-run1.err"
assert_match "Cyrus: every UIDL stored while saving" \
	"POP3 UIDLs: $CN POP3 messages, $CN matched, $CN stored now \($CN while saving\), 0 unmatched" \
	"$(cat "$LAST_ERR" "$LAST_OUT")"
pop3_uidls "$DST_POP3_PORT" cy "$(dst_password cy)" >"$T/dst-cy.uidl"
check "Cyrus: the destination's POP3 shows Cyrus's UIDLs in Cyrus's order" \
	cmp -s "$T/cy.uidl" "$T/dst-cy.uidl"
assert_exit NAME="Cyrus: re-run exits 0" 0 cyrus_run migrate run
assert_match "Cyrus: re-run stores nothing" "$CN matched, 0 stored now" \
	"$(cat "$LAST_ERR" "$LAST_OUT")"
assert_exit NAME="Cyrus: verify exits 0" 0 cyrus_run migrate verify
cyrus_stop

harness_done
