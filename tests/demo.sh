#!/usr/bin/env bash
# A real demo import: a private source Dovecot on 127.0.0.1 filled with
# real-world messages from ../shared/corpus, a private destination Dovecot,
# then plan, run, a second (no-change) run, status and verify through
# doveadm. KEEP=1 leaves both servers' files in place (path printed).
# MIGRATE_PLUGIN=installed runs it against the installed plugin (the Debian
# package; tests/leg-packages.sh): no dependency install, no build.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
if [ "${MIGRATE_PLUGIN:-}" != installed ]; then
	bash tests/lib/install-deps.sh
	if [ ! -f doveadm-cmd/.libs/lib20_doveadm_migrate_plugin.so ]; then
		{ [ -f Makefile ] || { autoreconf -fi && ./configure --with-dovecot=/usr/lib/dovecot; }; } >/dev/null &&
			make -s -j2 >/dev/null || { echo "build failed" >&2; exit 1; }
	fi
fi
TEST_NAME=demo
. tests/lib/harness.sh

step() { printf '\n== %s\n' "$*"; }

step "Starting a source IMAP server and a destination Dovecot on 127.0.0.1"
src_start || die "source server did not start"
dst_start || die "destination server did not start"
step "Filling the source mailbox alice with sample mail"
src_seed alice --seed 1 || die "seeding failed"
step "doveadm migrate plan -u alice"
dst_doveadm migrate plan -u alice
step "doveadm migrate run -u alice"
dst_doveadm migrate run -u alice
step "doveadm migrate run -u alice (again: nothing to do)"
dst_doveadm migrate run -u alice
step "doveadm migrate status -u alice"
dst_doveadm migrate status -u alice
step "doveadm migrate verify -I -u alice"
dst_doveadm migrate verify -I -u alice
rc=$?
step "Destination folders"
dst_doveadm mailbox status -u alice 'messages vsize' '*'
echo
if [ "$rc" = 0 ]; then
	pass "demo import verified: every source message is at the destination"
else
	fail "demo import" "migrate verify exited $rc"
fi
harness_done
