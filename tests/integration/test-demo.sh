#!/usr/bin/env bash
# The README's first command as a fresh machine runs it: tests/demo.sh
# (installs what is missing, builds if needed, imports sample mail from a
# private source server, verifies) on this machine's Dovecot, so each CI
# leg (2.3 here, 2.4 in the trixie root) proves the demo works there.
# timeout: 300
exec bash "$(dirname "$0")/../demo.sh"
