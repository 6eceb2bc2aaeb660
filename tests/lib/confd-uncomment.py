#!/usr/bin/env python3
"""Print a conf.d example file with every commented setting and block
uncommented: a line "#name ..." (no space after the '#') starts one, and
the lines after it belong to it while its braces are open. Lines that are
not comments stay as they are; prose comments ("# ...", "## ...") are left
out."""
import re
import sys

depth = 0
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.rstrip("\n")
    if line.strip() and not line.lstrip().startswith("#"):
        print(line)
        continue
    if (depth > 0 and line.startswith("#")) or re.match(r"^\s*#[^ #]", line):
        body = line.replace("#", "", 1)
        depth = max(0, depth + body.count("{") - body.count("}"))
        print(body)
