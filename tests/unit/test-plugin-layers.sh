#!/bin/sh
# Layers only look down: no circle of calls between plugin/ files. The
# module graph comes from the #include "migrate-*.h" lines of plugin/*.c
# (a module is a .c with its .h; migrate-importer*.c and
# migrate-importer-private.h are one module, the importer). A circle fails
# the test and is named: "migrate-run -> migrate-workers -> migrate-run".
#
#   test-plugin-layers.sh [PLUGIN_DIR]    (default: ../../plugin from here)
#
# Prints like Dovecot's test programs ("... : ok", "N / M tests failed"),
# so make check and tests/run-all.sh count it the same way.

here=$(cd "$(dirname "$0")" && pwd)
plugin_dir=${1:-$here/../../plugin}

# cycles DIR: one line per circle found among DIR/*.c's modules
cycles() {
	grep -H '^#include "migrate-[^"]*\.h"' "$1"/*.c | awk '
	function module(name) {
		sub(/.*\//, "", name)
		sub(/\.[ch]$/, "", name)
		if (name ~ /^migrate-importer/)
			return "migrate-importer"
		return name
	}
	{
		file = $0
		sub(/:.*/, "", file)
		header = $0
		sub(/^[^:]*:#include "/, "", header)
		sub(/".*/, "", header)
		from = module(file)
		to = module(header)
		if (from == to || (from, to) in seen)
			next
		seen[from, to] = 1
		edges[from] = edges[from] " " to
		nodes[from] = 1
		nodes[to] = 1
	}
	# depth-first: an edge back to a module on the stack closes a circle
	function visit(node,    i, j, count, next_nodes, next_node, path) {
		state[node] = 1
		stack[++depth] = node
		count = split(edges[node], next_nodes, " ")
		for (i = 1; i <= count; i++) {
			next_node = next_nodes[i]
			if (state[next_node] == 1) {
				path = next_node
				for (j = depth; stack[j] != next_node; j--)
					;
				for (j++; j <= depth; j++)
					path = path " -> " stack[j]
				print path " -> " next_node
			} else if (state[next_node] == 0) {
				visit(next_node)
			}
		}
		depth--
		state[node] = 2
	}
	END {
		for (node in nodes)
			if (state[node] == 0)
				visit(node)
	}'
}

failed=0
total=0
check() {
	total=$((total + 1))
	if [ "$2" = ok ]; then
		printf '%s %s : ok\n' "$1" "$(printf '%*s' $((60 - ${#1})) '' | tr ' ' .)"
	else
		failed=$((failed + 1))
		printf '%s %s : FAILED\n' "$1" "$(printf '%*s' $((60 - ${#1})) '' | tr ' ' .)"
	fi
}

# the check itself: a planted circle (and a .c including its own .h and
# the importer's private header, which are none) must be found
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
printf '#include "migrate-b.h"\n#include "migrate-a.h"\n' >"$tmp/migrate-a.c"
printf '#include "migrate-c.h"\n' >"$tmp/migrate-b.c"
printf '#include "migrate-a.h"\n' >"$tmp/migrate-c.c"
printf '#include "migrate-importer-private.h"\n' >"$tmp/migrate-importer-x.c"
found=$(cycles "$tmp")
case "$found" in
"migrate-a -> migrate-b -> migrate-c -> migrate-a" | \
"migrate-b -> migrate-c -> migrate-a -> migrate-b" | \
"migrate-c -> migrate-a -> migrate-b -> migrate-c")
	check "layers: a planted circle is found" ok ;;
*)	echo "found: $found"
	check "layers: a planted circle is found" FAILED ;;
esac

if ! ls "$plugin_dir"/migrate-*.c >/dev/null 2>&1; then
	echo "No plugin/migrate-*.c under $plugin_dir"
	check "layers: plugin/ has no circle of includes" FAILED
else
	found=$(cycles "$plugin_dir")
	if [ -z "$found" ]; then
		check "layers: plugin/ has no circle of includes" ok
	else
		echo "$found" | sed 's/^/circle of includes in plugin\/: /'
		check "layers: plugin/ has no circle of includes" FAILED
	fi
fi
echo "$failed / $total tests failed"
[ "$failed" = 0 ]
