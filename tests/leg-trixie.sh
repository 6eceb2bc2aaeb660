#!/usr/bin/env bash
# The Dovecot 2.4 CI leg: the whole suite (build, unit tests, every
# integration script) inside a Debian 13 (trixie) root, where Dovecot, its
# headers and the tests' private servers are 2.4.
#
#   tests/leg-trixie.sh            everything
#   tests/leg-trixie.sh PATTERN    only the integration scripts whose name
#                                  contains PATTERN (as tests/run-all.sh)
#
# The root is built or reused by tests/lib/trixie-root.sh ($TRIXIE_ROOT,
# default /var/cache/dovecot-migrate-tests/trixie). The tree is copied into
# the root (the host's 2.3 build in this tree is left alone) and built
# there; the corpus is bind-mounted. The last line is "N passed, N failed";
# the exit status is non-zero when anything failed. Mounts and every process
# the leg started are gone when it returns. KEEP=1 keeps the copy (and each
# test's temp root, as in run-all.sh).
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
ROOTSH="$TOP/tests/lib/trixie-root.sh"
pattern=${1:-}
LEG_ID="dm-leg-$$-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
start=$SECONDS

summary_fail() { # the leg could not run the suite at all
	echo "FAIL: trixie leg: $*"
	echo "0 passed, 1 failed"
	exit 1
}

[ "$(id -u)" = 0 ] || summary_fail "must run as root (debootstrap, chroot, mount)"

# ------------------------------------------------------------ the root
echo "=== trixie root"
LOGDIR=$(mktemp -d /tmp/dm-leg-trixie.XXXXXX) || exit 1
if ! bash "$ROOTSH" build >"$LOGDIR/root.log" 2>&1; then
	tail -n 20 "$LOGDIR/root.log" | sed 's/^/#   /'
	summary_fail "building the trixie root failed (see $LOGDIR/root.log)"
fi
tail -n 1 "$LOGDIR/root.log" | sed 's/^/# /'
ROOT=$(bash "$ROOTSH" path)

# ------------------------------------------------------------ the copy
# What the tree holds (tracked files and new ones, not what .gitignore
# names: no build products of the host's 2.3 build).
LEG=$(mktemp -d "$ROOT/var/tmp/dm-leg.XXXXXX") || summary_fail "no temp dir in $ROOT/var/tmp"
chmod 755 "$LEG"
IN_LEG=${LEG#"$ROOT"}
cleanup() {
	local pid p n
	trap - EXIT INT TERM HUP
	# whatever the leg started and left running inside the root (a test
	# killed too hard to stop its servers): found by the leg's id in the
	# environment, stopped by pid
	for n in 1 2; do
		for p in /proc/[0-9]*; do
			pid=${p#/proc/}
			[ "$pid" = $$ ] && continue
			{ tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qx "DM_LEG_ID=$LEG_ID" || continue
			if [ $n = 1 ]; then kill -TERM "$pid" 2>/dev/null; else kill -KILL "$pid" 2>/dev/null; fi
		done
		[ $n = 1 ] && sleep 2
	done
	if [ "${KEEP:-0}" = 1 ]; then
		echo "# KEEP=1: the copy is in $LEG"
	else
		rm -rf --one-file-system "$LEG"
		rm -rf "$LOGDIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir -p "$LEG/tree" "$LEG/shared/corpus"
if git -C "$TOP" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$TOP" && git ls-files -z --cached --others --exclude-standard |
		tar --null -T - -cf - 2>/dev/null) | tar -C "$LEG/tree" -xf - ||
		summary_fail "copying the tree into the root failed"
else
	# not a git checkout: everything but the build products
	(cd "$TOP" && tar -cf - --exclude=.libs --exclude=.deps --exclude='*.o' \
		--exclude='*.lo' --exclude='*.la' --exclude=Makefile --exclude=config.status \
		--exclude=libtool --exclude=autom4te.cache .) | tar -C "$LEG/tree" -xf - ||
		summary_fail "copying the tree into the root failed"
fi

# the corpus, found as the harness finds it
CORPUS=${CORPUS:-$(git -C "$TOP" rev-parse --show-toplevel 2>/dev/null || echo "$TOP")/../shared/corpus}
[ -d "$CORPUS" ] || [ ! -d /work/shared/corpus ] || CORPUS=/work/shared/corpus
[ -d "$CORPUS" ] || summary_fail "no test corpus (set CORPUS)"
CORPUS=$(cd "$CORPUS" && pwd)

# ------------------------------------------------------------ 2.3 -> 2.4
# test-upgrade24.sh resumes inside the root a migration the host's 2.3
# build began: its first phase runs here, on the host, with the tree's
# 2.3 build (built here if it isn't yet), and saves the storage into the
# copy, where the second phase finds it (DM_UPGRADE_FROM).
p1=0 f1=0
if [ -z "$pattern" ] || case test-upgrade24 in *"$pattern"*) true ;; *) false ;; esac; then
	echo "=== test-upgrade24, phase 1 on the host (Dovecot $(dovecot --version 2>/dev/null))"
	if ! (cd "$TOP" && { [ -x configure ] || autoreconf -fi; } &&
		{ [ -f Makefile ] || ./configure --with-dovecot=/usr/lib/dovecot; } &&
		make -j"${JOBS:-2}") >"$LOGDIR/host-build.log" 2>&1; then
		tail -n 20 "$LOGDIR/host-build.log" | sed 's/^/#   /'
		echo "FAIL: test-upgrade24: the host's 2.3 build failed (see $LOGDIR/host-build.log)"
		f1=1
	else
		DM_UPGRADE_SAVE="$LEG/upgrade" TEST_NAME=test-upgrade24-phase1 timeout -k 15 300 \
			bash "$TOP/tests/integration/test-upgrade24.sh" </dev/null 2>&1 |
			tee "$LOGDIR/upgrade1.log"
		rc1=${PIPESTATUS[0]}
		p1=$(grep -c '^PASS: ' "$LOGDIR/upgrade1.log")
		f1=$(grep -c '^FAIL: ' "$LOGDIR/upgrade1.log")
		[ "$rc1" = 0 ] || [ "$f1" != 0 ] || f1=1
	fi
fi

# ------------------------------------------------------------ the suite
echo "=== suite inside the root (Dovecot $(chroot "$ROOT" dovecot --version 2>/dev/null))"
env_args=(--env "DM_LEG_ID=$LEG_ID" --env "KEEP=${KEEP:-0}" --env "CI=${CI:-}"
	--env "DM_UPGRADE_FROM=$IN_LEG/upgrade")
# The scripts that pass on Dovecot 2.4: all of them. One that is missing here (a
# new script not yet run on 2.4) is named in the leg's output as
# skipped, with why.
TRIXIE_SCRIPTS=${TRIXIE_SCRIPTS:-"test-admin test-admin-b test-cyrus test-dest-safety test-faults
	test-faults2 test-folders test-gmail test-harness test-hostile test-identity test-imap4d
	test-metrics test-parallel test-reconnect test-report test-scaleout test-spine test-tls-auth
	test-upgrade24 test-demo test-pop3 test-sieve"}
TRIXIE_SCRIPTS=$(echo $TRIXIE_SCRIPTS)
TRIXIE_NOT_PORTED=""
for s in "$TOP"/tests/integration/test-*.sh; do
	n=$(basename "$s" .sh)
	case " $TRIXIE_SCRIPTS " in *" $n "*) continue ;; esac
	TRIXIE_NOT_PORTED="$TRIXIE_NOT_PORTED $n:not_yet_run_on_2.4"
done
env_args+=(--env "SKIP_SCRIPTS=$(echo $TRIXIE_NOT_PORTED)")
[ -n "${TEST_TIMEOUT:-}" ] && env_args+=(--env "TEST_TIMEOUT=$TEST_TIMEOUT")
[ -n "${JOBS:-}" ] && env_args+=(--env "JOBS=$JOBS")
bash "$ROOTSH" run --bind "$CORPUS:$IN_LEG/shared/corpus" "${env_args[@]}" -- \
	bash -c 'cd "$1" && exec bash tests/run-all.sh "$2"' leg "$IN_LEG/tree" "$pattern" \
	</dev/null 2>&1 | tee "$LOGDIR/suite.log"
rc=${PIPESTATUS[0]}
last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$LOGDIR/suite.log" | tail -n 1)
echo "# trixie leg: $((SECONDS - start))s"
if [ -z "$last" ]; then
	# run-all.sh didn't get to its summary: count what it printed
	p=$(grep -c '^PASS: ' "$LOGDIR/suite.log")
	f=$(($(grep -c '^FAIL: ' "$LOGDIR/suite.log") + 1))
	echo "FAIL: trixie leg: the suite ended without its summary (exit $rc)"
else
	read -r p _ f _ <<<"$last"
	[ "$rc" = 0 ] || [ "$f" != 0 ] || f=1
fi
# the summary counts the host's phase of test-upgrade24 too
echo "$((p + p1)) passed, $((f + f1)) failed"
[ $((f + f1)) = 0 ]
