#!/usr/bin/env python3
"""The checks of tests/integration/test-faults2.sh that read the fault
proxy's log and the quota run's results.

  fault-points PROXY_LOG
      from the proxy's byte map of a pass-through run:
      "STALL_AT LINE_AT TRICKLE_AT BIG_START BIG_SIZE" (the script says
      what each one is)
  fetch-uid-count PROXY_LOG
      how many UIDs the FETCH command that the first slow event answers
      asked for
  quota-limit STATUS_JSON
      "LIMIT<tab>SOURCE_FOLDER<tab>DEST_FOLDER": the bytes of the folders
      the run imported before its first folder with >= 2 messages after
      INBOX, plus half of that folder
  subset SOURCE_DUMP DEST_DUMP
      "N TOTAL PROBLEMS": the destination's messages, the source's, and
      every message the destination holds more often than the source
"""

import collections
import json
import sys

from checklib import load_json, main


def cmd_fault_points(log):
    m = load_json(log)["map"]      # [offset, length, kind]
    # a literal >= 4 kB, then ")" line, the next FETCH line, its literal
    i = next(i for i, s in enumerate(m)
             if s[2] == "literal" and s[1] >= 4096 and i + 3 < len(m)
             and m[i + 1][2] == m[i + 2][2] == "line" and m[i + 3][2] == "literal")
    nline = sum(1 for s in m[:i + 2] if s[2] != "literal")
    big = max((s for s in m if s[2] == "literal"), key=lambda s: s[1])
    print(m[i][0] + m[i][1] // 2, "L%d:500" % nline, big[0] + 65536, big[0], big[1])


def cmd_fetch_uid_count(log):
    d = load_json(log)
    uids = (d["slow"] or [{}])[0].get("fetch_uids") or ""
    n = 0
    for part in filter(None, uids.split(",")):
        lo, _, hi = part.partition(":")
        n += int(hi or lo) - int(lo) + 1
    print(n)


def cmd_quota_limit(status):
    rows = [r for r in load_json(status) if r["folder"] != "*"]
    # status lists the folders in the order the run imports them
    k = next(i for i, r in enumerate(rows) if i > 0 and int(r["imported"] or 0) >= 2)
    print("%d\t%s\t%s" % (sum(int(r["bytes"]) for r in rows[:k]) + int(rows[k]["bytes"]) // 2,
                          rows[k]["folder"], rows[k]["dest"]))


def cmd_subset(src_path, dst_path):
    src, dst = load_json(src_path), load_json(dst_path)
    n = 0
    bad = []
    for name, box in dst.items():
        if name == "subscriptions":
            continue
        have = collections.Counter(json.dumps(m[:3]) for m in box["messages"])
        n += sum(have.values())
        want = collections.Counter(json.dumps(m[:3]) for m in
                                   src.get(name, {"messages": []})["messages"])
        for k, c in have.items():
            if c > want[k]:
                bad.append("%s: %s x%d (source x%d)" % (name, k[:80], c, want[k]))
    total = sum(len(b["messages"]) for k, b in src.items() if k != "subscriptions")
    print("%d %d %s" % (n, total, "; ".join(bad)))


if __name__ == "__main__":
    sys.exit(main({
        "fault-points": cmd_fault_points,
        "fetch-uid-count": cmd_fetch_uid_count,
        "quota-limit": cmd_quota_limit,
        "subset": cmd_subset,
    }))
