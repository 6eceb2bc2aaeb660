#!/usr/bin/env bash
# The benchmark on Dovecot 2.4: bench/run-bench.sh inside the Debian 13
# (trixie) root of the 2.4 CI leg (tests/lib/trixie-root.sh), where
# dovecot, doveadm (so the dsync peer) and the private instances are 2.4.
#
#   bench/run-bench-trixie.sh [run-bench.sh options...]
#   bench/run-bench-trixie.sh --bulk 200x200 --workers 4 --rtt 0,20
#
# The tree is copied into the root and built there; mbsync (isync) and GNU
# time are installed in the root if missing. Results are copied back to
# bench/results/ with "-dv24" in their names. Must run as root.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
ROOTSH="$TOP/tests/lib/trixie-root.sh"

[ "$(id -u)" = 0 ] || { echo "run-bench-trixie.sh: must run as root" >&2; exit 1; }
bash "$ROOTSH" build >/dev/null || { echo "run-bench-trixie.sh: the trixie root failed" >&2; exit 1; }
ROOT=$(bash "$ROOTSH" path)

COPY=$(mktemp -d "$ROOT/var/tmp/dm-bench.XXXXXX") || exit 1
trap 'rm -rf --one-file-system "$COPY"' EXIT
(cd "$TOP" && git ls-files -z --cached --others --exclude-standard |
	tar --null -T - -cf - 2>/dev/null) | tar -C "$COPY" -xf - || exit 1
IN=${COPY#"$ROOT"}

name=dv24
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--name) name="dv24-$2"; shift ;;
	--name=*) name="dv24-${1#--name=}" ;;
	--results-dir | --results-dir=*) echo "run-bench-trixie.sh: --results-dir is set here" >&2; exit 64 ;;
	*) args+=("$1") ;;
	esac
	shift
done

bash "$ROOTSH" run --env "DM_BENCH_PLUGIN_VERSION=$(git -C "$TOP" describe --always --dirty 2>/dev/null)" -- bash -c '
	set -e
	export DEBIAN_FRONTEND=noninteractive
	if ! command -v mbsync >/dev/null || [ ! -x /usr/bin/time ]; then
		timeout 900 apt-get install -y -q isync time >/dev/null
	fi
	cd "$1" && shift
	(autoreconf -fi && ./configure --with-dovecot=/usr/lib/dovecot && make -j2) >build.log 2>&1 ||
		{ tail -n 30 build.log; exit 1; }
	exec bash bench/run-bench.sh --no-build --results-dir "$PWD/results-out" "$@"
' bench "$IN" --name "$name" "${args[@]}"
rc=$?
mkdir -p "$HERE/results"
cp -v "$COPY"/results-out/* "$HERE/results/" 2>/dev/null
exit $rc
