#!/usr/bin/env python3
"""The source seeding and the HTTP checks of
tests/integration/test-scaleout.sh.

  seed-users PORT CORPUS PREFIX FIRST LAST
      a small, per-user distinct mailbox for each source user
      PREFIX<n> (INBOX, Work, Work/Sub; flags and a keyword; one corpus
      message), all in one IMAP client
  gen-inbox PORT USER PW N
      N messages into USER's INBOX and Lists
  http-run-result
      a doveadm HTTP reply (status line, JSON) on stdin, to one
      migrateRun: "RESULT TAG", the INBOX row's result and the tag
  http-status-report
      the reply to migrateStatus + migrateReport: "STATE ITEMS TAG TAG"
"""

import imaplib
import json
import os
import sys
import time

from checklib import main


def cmd_seed_users(port, corpus, prefix, first, last):
    first, last = int(first), int(last)
    small = []
    man = os.path.join(corpus, "MANIFEST.tsv")
    if os.path.exists(man):
        for line in open(man, encoding="utf-8").read().splitlines()[1:]:
            f = line.split("\t")
            if len(f) > 4 and f[4].isdigit() and int(f[4]) < 20000:
                small.append(f[0])
        small.sort()
    width = 3 if last >= 100 else 2
    for n in range(first, last + 1):
        user = "%s%0*d" % (prefix, width, n)
        c = imaplib.IMAP4("127.0.0.1", int(port))
        c.login(user, "spw-" + user)
        for box in ("Work", "Work/Sub"):
            c.create(box)
        c.subscribe("Work")
        plan = [("INBOX", 2 + n % 4), ("Work", 2), ("Work/Sub", n % 2)]
        i = 0
        for box, count in plan:
            for _ in range(count):
                i += 1
                msg = ("From: Sender %d <s%d@old.example>\r\nTo: %s@old.example\r\n"
                       "Subject: %s message %d in %s\r\n"
                       "Date: Wed, 04 Jan 2023 09:%02d:00 +0000\r\n"
                       "Message-ID: <%s-%d@scaleout.test>\r\n\r\n%s\r\n"
                       % (i, i, user, user, i, box, i % 60, user, i,
                          ("body of %s #%d " % (user, i)) * (1 + 13 * i))).encode()
                flags = ["()", "(\\Seen)", "(\\Seen \\Flagged)", "($Label1)"][i % 4]
                typ, data = c.append(box, flags, imaplib.Time2Internaldate(time.time() - 3600 * i), msg)
                if typ != "OK":
                    sys.exit("APPEND %s %s: %r" % (user, box, data))
        if small:
            with open(os.path.join(corpus, small[n % len(small)]), "rb") as f:
                raw = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            c.append("INBOX", "(\\Seen)", imaplib.Time2Internaldate(time.time()), raw)
        c.logout()


def cmd_gen_inbox(port, user, pw, n):
    n = int(n)
    c = imaplib.IMAP4("127.0.0.1", int(port))
    c.login(user, pw)
    c.create("Lists")
    for i in range(1, n + 1):
        box = "INBOX" if i % 3 else "Lists"
        msg = ("From: Gen <gen@example.org>\r\nTo: %s@example.org\r\nSubject: gen %d\r\n"
               "Date: Thu, 05 Jan 2023 08:%02d:00 +0000\r\nMessage-ID: <gen-%s-%d@scaleout.test>\r\n\r\n%s\r\n"
               % (user, i, i % 60, user, i, "line %d\r\n" % i * 20)).encode()
        typ, data = c.append(box, "(\\Seen)" if i % 2 else None,
                             imaplib.Time2Internaldate(time.time() - 60 * i), msg)
        if typ != "OK":
            sys.exit("APPEND: %r" % data)
    c.logout()


def http_reply():
    """the JSON after the status code"""
    return json.loads(sys.stdin.read().split(" ", 1)[1])


def cmd_http_run_result():
    r = http_reply()[0]
    print([x["result"] for x in r[1] if x["folder"] == "INBOX"][0], r[2])


def cmd_http_status_report():
    r = http_reply()
    print([x["state"] for x in r[0][1] if x["folder"] == "*"][0], len(r[1][1]), r[0][2], r[1][2])


if __name__ == "__main__":
    sys.exit(main({
        "seed-users": cmd_seed_users,
        "gen-inbox": cmd_gen_inbox,
        "http-run-result": cmd_http_run_result,
        "http-status-report": cmd_http_status_report,
    }))
