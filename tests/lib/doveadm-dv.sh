#!/usr/bin/env bash
# doveadm for Dovecot 2.4, taking the tests' 2.3 spelling of setting
# overrides. The integration tests write plugin settings on the command
# line as 2.3 reads them, "-o plugin/migrate_x=VALUE"; 2.4 has no plugin { }
# section (and silently ignores such an override): it wants
# "-o migrate_x=VALUE". This strips the "plugin/" of every -o and execs
# doveadm (same pid, signals and exit code). harness.sh uses it on 2.4 only.
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	-o)
		if [ $# -ge 2 ]; then
			args+=(-o "${2#plugin/}")
			shift 2
			continue
		fi
		;;
	-oplugin/*) set -- "-o${1#-oplugin/}" "${@:2}" ;;
	--)
		args+=("$@")
		break
		;;
	esac
	args+=("$1")
	shift
done
exec doveadm "${args[@]}"
