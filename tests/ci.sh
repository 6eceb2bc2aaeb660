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
# Each leg ends with "N passed, N failed"; a leg that dies or overruns its
# bound counts as one failure. The last line sums them all.
#
#   tests/ci.sh                every leg
#   tests/ci.sh LEG...         only these legs (native sanitizers trixie packages)
#
# LEG_TIMEOUT=N bounds each leg (default 1800 s).
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

dovecot_major_minor() {
	dovecot --version 2>/dev/null | sed -n 's/^\([0-9]*\.[0-9]*\).*/\1/p'
}

# run_leg NAME SCRIPT: run it bounded, echo its output, add its last
# "N passed, N failed" line to the totals.
run_leg() {
	local name=$1 script=$2 rc line p f start=$SECONDS
	printf '\n######## leg %s (%s)\n' "$name" "$script"
	if [ ! -f "$script" ]; then
		echo "FAIL: leg $name: $script is missing"
		total_failed=$((total_failed + 1))
		summary+=("$name: missing")
		return
	fi
	timeout -k 30 "$LEG_TIMEOUT" bash "$script" </dev/null 2>&1 |
		tee "$LOGDIR/$name.log"
	rc=${PIPESTATUS[0]}
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$LOGDIR/$name.log" | tail -n 1)
	p=0 f=0
	if [ -n "$line" ]; then
		p=${line%% passed*}
		f=${line#*passed, }
		f=${f%% failed}
	fi
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
			echo "FAIL: leg $name: timed out after ${LEG_TIMEOUT}s"
		else
			echo "FAIL: leg $name: exited $rc without a failure count"
		fi
		f=1
	fi
	total_passed=$((total_passed + p))
	total_failed=$((total_failed + f))
	summary+=("$name: $p passed, $f failed, $((SECONDS - start))s")
}

legs=("$@")
[ ${#legs[@]} -gt 0 ] || legs=(native sanitizers trixie packages)
for leg in "${legs[@]}"; do
	case "$leg" in
	native) run_leg native tests/run-all.sh ;;
	sanitizers) run_leg sanitizers tests/leg-sanitizers.sh ;;
	trixie)
		if [ "$(dovecot_major_minor)" = 2.4 ]; then
			printf '\n######## leg trixie: skipped, this machine runs Dovecot 2.4 (the native leg covered it)\n'
			summary+=("trixie: skipped (native is 2.4)")
		else
			run_leg trixie tests/leg-trixie.sh
		fi
		;;
	packages) run_leg packages tests/leg-packages.sh ;;
	*)
		echo "FAIL: unknown leg $leg (native sanitizers trixie packages)"
		total_failed=$((total_failed + 1))
		;;
	esac
done

printf '\n######## summary\n'
for s in "${summary[@]}"; do echo "# $s"; done
[ "$total_failed" = 0 ] && rm -rf "$LOGDIR"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ]
