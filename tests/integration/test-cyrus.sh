#!/usr/bin/env bash
# A real Cyrus IMAP 3 server (Debian's cyrus-imapd) as the source: another
# implementation than Dovecot, with its own quirks, all of which the
# product must handle as they come. Twice: the classic layout ("INBOX."
# prefix, '.' separator) and Cyrus 3's default altnamespace layout
# (INBOX's children at the top level, '/', other users' and shared
# folders in namespaces of their own). What Cyrus does its own way:
#   - folders created in the same second share one UIDVALIDITY, so two
#     source folders mapped onto one destination folder (Drafts and the
#     localized "Entwürfe") both look like the owner of its UIDs;
#   - SPECIAL-USE attributes set by the user (\Archive on "Old Stuff");
#   - CONDSTORE/QRESYNC, COMPRESS=DEFLATE, LITERAL+ from another codebase;
#   - messages it refuses at APPEND ("invalid header") never exist there;
#   - its own ManageSieve server, timsieved, for migrate_sieve: its scripts
#     use the Cyrus layout's folder names.
# Checked: the first run, a no-change run, a delta (flags + new mail), the
# state dict deleted, and a UIDVALIDITY change (a folder rebuilt by
# COPY + DELETE + RENAME): the destination equals the source every time,
# with no duplicates and no error line from Dovecot's storage.
# timeout: 400
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"
# the private Cyrus instance: cyrus_start, cyrus_stop (tests/lib/cyrus.sh)
. "$HARNESS_LIB/cyrus.sh"
cyrus_check

# cy.py CMD ARGS: IMAP steps on the Cyrus source the shared imaptool
# doesn't offer.
export HARNESS_LIB CY_PORT
cy() { CY_PORT=$CY_PORT CY_SIEVE_PORT=$CY_SIEVE_PORT bounded 60 python3 "$HARNESS_LIB/cyrustool.py" "$@"; }

cy_dump() {
	imaptool dump --host 127.0.0.1 --port "$CY_PORT" --user alice \
		--password cpw-alice >"$1"
}

# ------------------------------------------------------------ scenario

conf_sieve_storage >"$T/dst-extra.conf"
dst_start --format "${CYRUS_DST_FORMAT:-maildir}" --conf-extra "$T/dst-extra.conf" ||
	die "destination server did not start"

# Entwürfe is a localized Drafts name, "Old Stuff" carries \Archive
MAP='{"Entwürfe": "Drafts", "Old Stuff": "Archive"}'

# run NAME [run options]: "migrate run" for $DU that exits 0 with no
# Error/Panic/Fatal line in stderr
run() { run_clean "$1" "$CY_PORT" "$DU" "${@:2}"; }

src_now() { cy_dump "$T/src.json" || die "dumping the Cyrus source failed"; }
cy_mutate() {
	imaptool mutate --host 127.0.0.1 --port "$CY_PORT" --user alice \
		--password cpw-alice "$@" >"$T/mutate.out" 2>&1 ||
		die "changing the Cyrus source failed: $(tail -n 2 "$T/mutate.out")"
}

# sieve_run: "migrate run" for $DU with migrate_sieve (Cyrus's timsieved)
sieve_run() {
	dst_doveadm -o plugin/migrate_source_port="$CY_PORT" -o plugin/migrate_sieve=yes \
		-o plugin/migrate_sieve_port="$CY_SIEVE_PORT" migrate run -u "$DU"
}

# scenario classic|alt: one Cyrus layout, into destination user c-LAYOUT
scenario() {
	local L="cyrus ($1)" seed_layout=default
	[ "$1" = classic ] && seed_layout=courier
	DU="c-$1"
	cyrus_start "$1" --sieve ||
		die "Cyrus did not start: $(tail -n 3 "$CY/master.out" 2>/dev/null | tr '\n' '|')"
	info "Cyrus ($1) master pid $CY_PID on 127.0.0.1:$CY_PORT"
	cy mkuser alice >"$T/cy.out" 2>&1 ||
		die "creating user.alice failed: $(tail -n 2 "$T/cy.out")"
	# Cyrus refuses '"' in names and some corpus messages ("invalid header")
	imaptool seed --host 127.0.0.1 --port "$CY_PORT" --user alice --password cpw-alice \
		--corpus "$CORPUS" --layout "$seed_layout" --seed 11 --limit 200 --skip-refused \
		--skip-folder 'Say "hi"' >"$T/seed.out" 2>&1 ||
		die "seeding Cyrus failed: $(tail -n 2 "$T/seed.out")"
	info "$(head -n 2 "$T/seed.out" | cut -c1-160 | tr '\n' ' ')"
	cy archive >"$T/cy.out" 2>&1 || die "creating Old Stuff failed: $(tail -n 2 "$T/cy.out")"
	# COMPRESS from another codebase: on here (the default is off)
	dst_add_user "$DU" userdb_migrate_source_user=alice \
		userdb_migrate_source_compress=yes
	dst_set_source_password "$DU" cpw-alice

	# 1. first run
	src_now
	run "$L: first run exits 0 without an error line"
	dst_equals "$L: destination == source (flags, INTERNALDATE, subscriptions; Entwürfe -> Drafts, \\Archive -> Archive)" \
		"$DU" "$T/src.json" --folders-map "$MAP"
	assert_match "$L: the \\Archive folder was mapped by its attribute" \
		'Old Stuff +Archive +completed' "$(grep -F 'Old Stuff' "$T/run.out")"
	# mostly created in the same second as Drafts: the same UIDVALIDITY
	assert_match "$L: Entwürfe merged into Drafts" \
		'Drafts +completed' "$(grep -F 'Entw&APw-rfe' "$T/run.out")"

	# 2. no change
	run "$L: second run exits 0"
	assert_eq "$L: second run imports nothing" \
		"$(grep -Ec 'completed: [1-9][0-9]* imported' "$T/run.err")" 0
	dst_equals "$L: destination still == source" "$DU" "$T/src.json" --folders-map "$MAP"

	# 3. delta
	cy_mutate --seed 5 --flags 25 --append 12
	src_now
	run "$L: delta run (25 flag changes, 12 new messages) exits 0"
	dst_equals "$L: delta: destination == source" "$DU" "$T/src.json" --folders-map "$MAP"

	# 4. state lost
	rm -f "$(dst_home "$DU")"/.dovecot-migrate*
	run "$L: run with the state dict deleted exits 0"
	dst_equals "$L: state deleted: no duplicates, destination == source" \
		"$DU" "$T/src.json" --folders-map "$MAP"

	# 5. UIDVALIDITY change
	cy rebuild Work/Projects/2019 >"$T/cy.out" 2>&1 ||
		die "rebuilding Work/Projects/2019 failed: $(tail -n 2 "$T/cy.out")"
	info "rebuilt: $(tail -n 1 "$T/cy.out")"
	src_now
	run "$L: run after a UIDVALIDITY change exits 0"
	dst_equals "$L: UIDVALIDITY change: matched by header identity, no duplicates" \
		"$DU" "$T/src.json" --folders-map "$MAP"

	# 6. delete mode
	cy_mutate --seed 6 --flags 5 --expunge 9
	src_now
	run "$L: run -d after 9 expunges exits 0" -d
	dst_equals "$L: delete mode: destination == source" "$DU" "$T/src.json" --folders-map "$MAP"

	# 7. verify
	dst_doveadm -o plugin/migrate_source_port="$CY_PORT" migrate verify -u "$DU" \
		>"$T/verify.out" 2>"$T/verify.err"
	assert_eq "$L: verify exits 0 (every source message at the destination)" "$?" 0

	# 8. Sieve scripts from Cyrus's timsieved (migrate_sieve)
	local box=Work/Projects/2019 expected
	[ "$1" = classic ] && box=INBOX.Work.Projects.2019
	printf 'require ["fileinto"];\n# to %s\nif header :contains "subject" "2019" {\n  fileinto "%s";\n}\n' \
		"$box" "$box" | cy sieveput filters active >"$T/cy.out" 2>&1 ||
		die "uploading a script to Cyrus failed: $(tail -n 2 "$T/cy.out")"
	printf 'require "fileinto";\nfileinto "%s";\n' "$box" | cy sieveput spare >"$T/cy.out" 2>&1 ||
		die "uploading a script to Cyrus failed: $(tail -n 2 "$T/cy.out")"
	assert_exit NAME="$L: run with migrate_sieve=yes exits 0" 0 sieve_run
	assert_match "$L: Sieve: both scripts copied" 'sieve:filters +filters +copied.*sieve:spare +spare +copied' \
		"$(tr '\n' ' ' <"$LAST_OUT")"
	expected=$(printf 'require ["fileinto"];\n# to %s\nif header :contains "subject" "2019" {\n  fileinto "Work/Projects/2019";\n}' "$box")
	assert_eq "$L: Sieve: the folder name mapped, the comment kept" "$expected" \
		"$(cat "$(dst_home "$DU")/sieve/filters.sieve")"
	assert_eq "$L: Sieve: Cyrus's active script is active" filters \
		"$(dst_doveadm sieve list -u "$DU" | awk '$2 == "ACTIVE" { print $1 }')"
	assert_exit NAME="$L: Sieve: a second run exits 0" 0 sieve_run
	assert_match "$L: Sieve: nothing changed" 'sieve:filters +filters +unchanged' "$(cat "$LAST_OUT")"

	cyrus_stop
}

scenario classic
scenario alt
harness_done
