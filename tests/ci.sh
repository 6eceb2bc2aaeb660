#!/usr/bin/env bash
# Every test of the project, in legs, on a fresh Debian 12 or 13 machine
# (as root): installs what it needs, then runs
#
#   native     the whole suite (unit + integration) against this machine's
#              Dovecot (tests/run-all.sh)
#   sanitizers the plugin built with ASan + UBSan: hostile, fault and TLS
#              tests, and the fuzz target for a fixed time
#              (tests/leg-sanitizers.sh)
#   trixie     the whole suite again inside a Debian 13 root with Dovecot
#              2.4, built by debootstrap (tests/leg-trixie.sh); skipped
#              when this machine already runs Dovecot 2.4
#   packages   the .debs for bookworm and trixie, each installed into its
#              own root, with the demo run against the installed package
#              (tests/leg-packages.sh)
#
# Legs run one after the other: two side by side on a 2-core machine
# starve each other's timing checks (a hostile-server case bounded to 30 s,
# a slow run that must be seen running). Each leg's output is printed when
# it ends. Each leg ends with "N passed, N failed"; a leg that dies or
# overruns its bound counts what it printed so far plus one failure. The
# last line sums them all.
#
#   tests/ci.sh                every leg
#   tests/ci.sh LEG...         only these legs (native sanitizers trixie packages)
#
# LEG_TIMEOUT=N bounds each leg (default 1800 s; measured on 2 cores:
# native 21, trixie 14, sanitizers 8, packages 8 minutes).
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP" || exit 1
LEG_TIMEOUT=${LEG_TIMEOUT:-1800}
LOGDIR=$(mktemp -d /tmp/dm-ci.XXXXXX) || exit 1
total_passed=0
total_failed=0
summary=()

if ! bash tests/lib/install-deps.sh >"$LOGDIR/install-deps.log" 2>&1; then
	tail -n 30 "$LOGDIR/install-deps.log"
	echo "installing the dependencies failed (see above)"
	echo "0 passed, 1 failed"
	exit 1
fi

# The tree is built once, first: the native leg uses it and the trixie
# leg runs test-upgrade24's first phase with it.
build_tree() {
	{ [ -x configure ] && [ ! configure.ac -nt configure ]; } || autoreconf -fi || return 1
	{ [ -f Makefile ] && [ ! configure -nt config.status ]; } ||
		./configure --with-dovecot=/usr/lib/dovecot || return 1
	make -j2
}
if ! build_tree >"$LOGDIR/build.log" 2>&1; then
	tail -n 30 "$LOGDIR/build.log"
	echo "building the tree failed (see above)"
	echo "0 passed, 1 failed"
	exit 1
fi

dovecot_major_minor() {
	dovecot --version 2>/dev/null | sed -n 's/^\([0-9]*\.[0-9]*\).*/\1/p'
}

# start_leg NAME SCRIPT: run it bounded in the background, its output
# in $LOGDIR/NAME.log.
declare -A leg_pid leg_start
start_leg() {
	local name=$1 script=$2
	if [ ! -f "$script" ]; then
		echo "FAIL: leg $name: $script is missing" >"$LOGDIR/$name.log"
		echo 127 >"$LOGDIR/$name.rc"
		leg_pid[$name]=""
		leg_start[$name]=$SECONDS
		return
	fi
	(
		timeout -k 30 "$LEG_TIMEOUT" bash "$script" </dev/null \
			>"$LOGDIR/$name.log" 2>&1
		echo $? >"$LOGDIR/$name.rc"
	) &
	leg_pid[$name]=$!
	leg_start[$name]=$SECONDS
}

# finish_leg NAME: wait for it, print its output, add its last
# "N passed, N failed" line to the totals.
finish_leg() {
	local name=$1 rc line p f
	[ -z "${leg_pid[$name]}" ] || wait "${leg_pid[$name]}"
	rc=$(cat "$LOGDIR/$name.rc" 2>/dev/null || echo 1)
	printf '\n######## leg %s\n' "$name"
	cat "$LOGDIR/$name.log"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$LOGDIR/$name.log" | tail -n 1)
	p=0 f=0
	if [ -n "$line" ]; then
		p=${line%% passed*}
		f=${line#*passed, }
		f=${f%% failed}
	fi
	if [ -z "$line" ] || { [ "$rc" != 0 ] && [ "$f" = 0 ]; }; then
		# killed or died before its count: what it printed so far,
		# and the leg itself as one failure
		if [ -z "$line" ]; then
			p=$(grep -c '^PASS: ' "$LOGDIR/$name.log")
			f=$(grep -c '^FAIL: ' "$LOGDIR/$name.log")
		fi
		if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
			echo "FAIL: leg $name: timed out after ${LEG_TIMEOUT}s"
		else
			echo "FAIL: leg $name: exited $rc without a final count"
		fi
		f=$((f + 1))
	fi
	total_passed=$((total_passed + p))
	total_failed=$((total_failed + f))
	summary+=("$name: $p passed, $f failed, $((SECONDS - ${leg_start[$name]}))s")
}

leg_script() {
	case "$1" in
	native) echo tests/run-all.sh ;;
	sanitizers) echo tests/leg-sanitizers.sh ;;
	trixie) echo tests/leg-trixie.sh ;;
	packages) echo tests/leg-packages.sh ;;
	esac
}

legs=("$@")
[ ${#legs[@]} -gt 0 ] || legs=(native trixie sanitizers packages)
run=()
for leg in "${legs[@]}"; do
	case "$leg" in
	native | sanitizers | packages) run+=("$leg") ;;
	trixie)
		if [ "$(dovecot_major_minor)" = 2.4 ]; then
			summary+=("trixie: skipped (this machine runs Dovecot 2.4: the native leg covered it)")
		else
			run+=("$leg")
		fi
		;;
	*)
		echo "FAIL: unknown leg $leg (native sanitizers trixie packages)"
		total_failed=$((total_failed + 1))
		;;
	esac
done
for leg in "${run[@]}"; do
	start_leg "$leg" "$(leg_script "$leg")"
	finish_leg "$leg"
done

printf '\n######## summary\n'
for s in "${summary[@]}"; do echo "# $s"; done
[ "$total_failed" = 0 ] && rm -rf "$LOGDIR"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ]
