"""What the checks under tests/lib/checks/ share (stdlib only).

Each check module is run as "python3 MODULE.py COMMAND ARGS..."; a
command prints what is wrong (nothing when all is well), or answers with
its exit status, as its docstring says. The shell steps turn that into
PASS/FAIL lines."""

import json
import os
import sys

# imaptool and the servers' helpers live one directory up
LIB = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if LIB not in sys.path:
    sys.path.insert(0, LIB)


def load_json(path):
    return json.load(open(path))


def load_json_raw(path):
    """JSON whose strings may hold bytes that aren't UTF-8 (doveadm -f
    json prints folder names as the server sent them)"""
    return json.loads(open(path, "rb").read().decode("utf-8", "surrogateescape"))


def load_dump(path):
    """an imaptool dump without its subscriptions"""
    dump = load_json(path)
    dump.pop("subscriptions", None)
    return dump


def report(bad, sep="; "):
    print(sep.join(bad))


def main(commands, argv=None):
    """run commands[argv[1]](*argv[2:]); its return value is the exit
    status"""
    argv = sys.argv if argv is None else argv
    if len(argv) < 2 or argv[1] not in commands:
        sys.stderr.write("usage: %s {%s} ARGS...\n" %
                         (os.path.basename(argv[0]), "|".join(sorted(commands))))
        return 2
    return commands[argv[1]](*argv[2:]) or 0
