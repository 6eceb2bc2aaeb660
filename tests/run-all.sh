#!/usr/bin/env bash
# The whole test suite: build (if needed), unit tests (make check), then
# every tests/integration/test-*.sh. The last line is "N passed, N failed";
# the exit status is non-zero when anything failed.
#
#   tests/run-all.sh            everything
#   tests/run-all.sh PATTERN    build, then only the integration scripts
#                               whose name contains PATTERN (no unit tests)
#
# Environment: KEEP=1 keeps each test's temp root; TEST_TIMEOUT=N changes
# the default per-script bound (600 s; a script may ask for more with a
# "# timeout: N" line); JOBS=N for make (default 2).
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP" || exit 1
. "$TOP/tests/lib/common.sh"

pattern=${1:-}
JOBS=${JOBS:-2}
TEST_TIMEOUT=${TEST_TIMEOUT:-600}
LOGDIR=$(mktemp -d /tmp/dm-run-all.XXXXXX) || exit 1
passed=0
failed=0

# ------------------------------------------------------------ build
section "build"
build_ok=1
build() {
	if [ ! -x configure ] || [ configure.ac -nt configure ]; then
		autoreconf -fi || return 1
	fi
	if [ ! -f Makefile ] || [ configure -nt config.status ]; then
		./configure --with-dovecot=/usr/lib/dovecot || return 1
	fi
	make -j"$JOBS"
}
if build >"$LOGDIR/build.log" 2>&1; then
	result PASS "build"
else
	build_ok=0
	tail -n 40 "$LOGDIR/build.log" | sed 's/^/#   /'
	result FAIL "build" "see $LOGDIR/build.log"
fi

# ------------------------------------------------------------ unit tests
# The test programs, from the generated tests/Makefile (the list lives
# there, not here); each one counts as one test.
unit_programs() {
	[ -f tests/Makefile ] || return 0
	# shellcheck disable=SC2016 # make expands these, not the shell
	printf 'print-unit-programs:\n\t@echo $(test_programs) $(check_PROGRAMS) $(test_scripts)\n' |
		make -s -C tests -f Makefile -f - print-unit-programs 2>/dev/null |
		tr ' ' '\n' | awk 'NF && !seen[$0]++'
}

# "N / M tests failed" -> "N/M"
unit_summary() {
	sed -n 's#^\([0-9][0-9]*\) / \([0-9][0-9]*\) tests failed.*#\1/\2#p' "$1" | tail -n 1
}

run_unit_tests() {
	local progs prog rc summary check_rc log
	section "unit tests (make check)"
	mapfile -t progs < <(unit_programs)
	timeout -k 10 600 make -j"$JOBS" check >"$LOGDIR/check.log" 2>&1
	check_rc=$?
	grep -E 'tests failed|Assert|FAILED|: ok$' "$LOGDIR/check.log" | grep -v ': ok$' | sed 's/^/#   /'
	if [ ${#progs[@]} = 0 ]; then
		if [ $check_rc = 0 ]; then result PASS "make check"; else
			tail -n 30 "$LOGDIR/check.log" | sed 's/^/#   /'
			result FAIL "make check" "exit $check_rc, see $LOGDIR/check.log"
		fi
		return
	fi
	# Run each program on its own: make check stops at the first failing
	# one, and this attributes results (and "N / M tests failed") to each.
	for prog in "${progs[@]}"; do
		if [ ! -x "tests/$prog" ]; then
			result FAIL "unit $prog" "not built (make check exit $check_rc, see $LOGDIR/check.log)"
			continue
		fi
		# a test script may sit in a subdirectory (unit/test-*.sh)
		log="$LOGDIR/unit-${prog//\//-}.log"
		(cd tests && timeout -k 10 300 "./$prog") >"$log" 2>&1
		rc=$?
		summary=$(unit_summary "$log")
		if [ $rc = 0 ]; then
			result PASS "unit $prog${summary:+ ($summary failed)}"
		else
			{ grep -E 'Assert|FAILED|Panic|Fatal' "$log" ||
				tail -n 5 "$log"; } | head -n 20 | sed 's/^/#   /'
			result FAIL "unit $prog" "exit $rc${summary:+, $summary tests failed}"
		fi
	done
	if [ $check_rc != 0 ] && [ $failed = 0 ]; then
		tail -n 30 "$LOGDIR/check.log" | sed 's/^/#   /'
		result FAIL "make check" "exit $check_rc although every program passed, see $LOGDIR/check.log"
	fi
}

if [ -z "$pattern" ]; then
	if [ $build_ok = 1 ]; then
		run_unit_tests
	else
		section "unit tests"
		result FAIL "unit tests" "skipped: the build failed"
	fi
fi

# ------------------------------------------------------------ integration
# Each script prints PASS:/FAIL: lines; those are what count. A script that
# dies, times out or exits non-zero without a FAIL line counts as one FAIL.
REGISTRY="$LOGDIR/registry"
mkdir -p "$REGISTRY"
export HARNESS_REGISTRY=$REGISTRY TOP

run_script() {
	local script=$1 name limit rc p f
	name=$(basename "$script" .sh)
	limit=$(sed -n 's/^# timeout: *\([0-9][0-9]*\).*/\1/p' "$script" | head -n 1)
	limit=${limit:-$TEST_TIMEOUT}
	section "$name (timeout ${limit}s)"
	: >"$REGISTRY/roots"
	local start=$SECONDS pid
	# into a file, followed until the script ends: a server the script
	# started and left behind (a script killed hard) may hold the output
	# open, a pipe would wait on it forever
	DM_SCRIPT_ID="dm-script-$$-$name" timeout -k 15 "$limit" bash "$script" \
		</dev/null >"$LOGDIR/$name.log" 2>&1 &
	pid=$!
	tail -n +1 -f --pid="$pid" "$LOGDIR/$name.log"
	wait "$pid"
	rc=$?
	p=$(grep -c '^PASS: ' "$LOGDIR/$name.log")
	f=$(grep -c '^FAIL: ' "$LOGDIR/$name.log")
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ $((SECONDS - start)) -ge "$limit" ]; }; then
		result FAIL "$name" "timed out after ${limit}s"
	elif [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then
		result FAIL "$name" "killed by signal $((rc - 128))"
	elif [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		result FAIL "$name" "exited $rc without a FAIL line"
	elif [ "$rc" = 0 ] && [ "$f" != 0 ]; then
		result FAIL "$name" "printed FAIL lines but exited 0"
	fi
	# a script killed too hard to run its trap leaves its servers behind
	while read -r root; do
		[ -d "$root" ] || continue
		stop_dovecots_under "$root"
		[ "${KEEP:-0}" = 1 ] || rm -rf "$root"
	done <"$REGISTRY/roots"
	# and the others it started (redis, postgres, emulators): found by
	# the id in their environment, stopped by pid
	stop_by_env_id "DM_SCRIPT_ID=dm-script-$$-$name"
	echo "# $name: $p passed, $f failed, $((SECONDS - start))s"
}

scripts=()
# SKIP_SCRIPTS="test-a:why test-b:why": scripts a leg can't run yet (the
# trixie leg names the ones not ported to Dovecot 2.4), each said aloud
skip_reason() {
	local entry
	for entry in ${SKIP_SCRIPTS:-}; do
		[ "${entry%%:*}" = "$1" ] && { echo "${entry#*:}" | tr _ ' '; return 0; }
	done
	return 1
}
for s in "$TOP"/tests/integration/test-*.sh; do
	[ -f "$s" ] || continue
	case "$(basename "$s")" in *"$pattern"*) ;; *) continue ;; esac
	matched=1
	if why=$(skip_reason "$(basename "$s" .sh)"); then
		echo "# skipped: $(basename "$s" .sh): $why"
		continue
	fi
	scripts+=("$s")
done
if [ -n "$pattern" ] && [ -z "${matched:-}" ]; then
	result FAIL "integration" "no script matches '$pattern'"
fi
for s in "${scripts[@]}"; do
	run_script "$s"
done

section "summary"
if [ "$failed" = 0 ] && [ "${KEEP:-0}" != 1 ]; then
	rm -rf "$LOGDIR"
else
	echo "logs: $LOGDIR"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
