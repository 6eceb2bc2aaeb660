# shellcheck shell=bash
# Helpers shared by tests/lib/harness.sh and tests/run-all.sh.

# stop_dovecot_base_dirs BASE_DIR...: stop private Dovecot instances by the
# pid in each BASE_DIR/master.pid. Dovecot's master takes its children down
# on SIGTERM (it needs 2-3 s, so all masters are signalled first and then
# waited for together). SIGKILL only as a last resort, and then for the
# children too, found by parent pid: never by process name, other
# instances may run on the same machine.
stop_dovecot_base_dirs() {
	local d pid kids alive pids=()
	for d in "$@"; do
		[ -f "$d/master.pid" ] || continue
		pid=$(cat "$d/master.pid" 2>/dev/null)
		rm -f "$d/master.pid"
		case "$pid" in '' | *[!0-9]*) continue ;; esac
		# the pid file may be stale: only signal a dovecot master (or
		# test-cyrus.sh's Cyrus master, which stops its imapds likewise)
		grep -qE 'dovecot|cyrus/bin/master' "/proc/$pid/cmdline" 2>/dev/null ||
			continue
		kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
	done
	[ ${#pids[@]} -gt 0 ] || return 0
	for _ in $(seq 1 100); do
		alive=0
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ $alive = 1 ] || break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		kill -0 "$pid" 2>/dev/null || continue
		kids=$(ps -o pid= --ppid "$pid" 2>/dev/null)
		# shellcheck disable=SC2086
		kill -KILL "$pid" $kids 2>/dev/null
	done
	return 0
}

# Stop every instance whose base_dir is below DIR (a test's temp root).
stop_dovecots_under() {
	[ -d "$1" ] || return 0
	local dirs=() f
	while read -r f; do
		dirs+=("$(dirname "$f")")
	done < <(find "$1" -maxdepth 4 -name master.pid -path '*/run/master.pid' 2>/dev/null)
	stop_dovecot_base_dirs "${dirs[@]}"
}

# stop_by_env_id NAME=VALUE: TERM, then KILL, every process (but this
# shell) whose environment holds NAME=VALUE
stop_by_env_id() {
	local p pid n found
	for n in 1 2; do
		found=0
		for p in /proc/[0-9]*; do
			pid=${p#/proc/}
			[ "$pid" = $$ ] && continue
			{ tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "$1" || continue
			found=1
			if [ $n = 1 ]; then kill -TERM "$pid" 2>/dev/null; else kill -KILL "$pid" 2>/dev/null; fi
		done
		[ $found = 1 ] || return 0
		[ $n = 1 ] && sleep 2
	done
	return 0
}

# For the scripts that sum up results (run-all.sh, leg-*.sh): count one
# result in $passed/$failed and print it.
result() { # result PASS|FAIL NAME [WHY]
	if [ "$1" = PASS ]; then
		passed=$((passed + 1))
		echo "PASS: $2"
	else
		failed=$((failed + 1))
		echo "FAIL: $2${3:+: $3}"
	fi
}

section() { printf '\n=== %s\n' "$*"; }
