#!/usr/bin/env python3
"""The source seeding and checks of tests/integration/test-report.sh.

  gen-folder PORT USER PASSWORD FOLDER COUNT SIZE SUBJECT
      append COUNT generated messages of about SIZE bytes to FOLDER on the
      source ("%d" in SUBJECT becomes the message's number; INTERNALDATE
      i days ago for message i)
  csv CSV REPORT_JSON
      "ok N" when the CSV of "migrate report -c" is mode 0600, CRLF, has
      the 12 columns, no formula or control character in a cell, and the
      same rows as the JSON report; otherwise what is wrong
"""

import csv
import imaplib
import json
import os
import stat
import sys
import time

from checklib import main


def cmd_gen_folder(port, user, pw, folder, n, size, subj):
    n, size = int(n), int(size)
    c = imaplib.IMAP4("127.0.0.1", int(port))
    c.login(user, pw)
    c.create('"%s"' % folder)
    for i in range(1, n + 1):
        s = subj.replace("%d", str(i))
        head = ("From: Report Test <report@example.org>\r\n"
                "To: %s@example.org\r\nSubject: %s\r\n"
                "Date: Tue, 03 Jan 2023 11:%02d:00 +0000\r\n"
                "Message-ID: <gen-%s-%d-%d@report.test>\r\n\r\n"
                % (user, s, i % 60, folder, size, i))
        line = "y" * 74 + "\r\n"
        body = line * max(1, (size - len(head)) // len(line))
        typ, data = c.append('"%s"' % folder, None,
                             imaplib.Time2Internaldate(time.time() - 86400 * i),
                             (head + body).encode())
        if typ != "OK":
            sys.exit("APPEND failed: %r" % data)
    c.logout()


def cmd_csv(path, rep):
    st = os.stat(path)
    if stat.S_IMODE(st.st_mode) != 0o600:
        print("mode %o" % stat.S_IMODE(st.st_mode))
        return
    raw = open(path, "rb").read()
    if raw.count(b"\r\n") != raw.count(b"\n"):
        print("not CRLF")
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    want = ["folder", "uid", "message_id", "subject", "date", "size", "reason",
            "detail", "attempts", "first_seen", "last_seen", "resolved"]
    if rows[0] != want:
        print("header %r" % rows[0])
        return
    body = [dict(zip(want, r)) for r in rows[1:]]
    if any(len(r) != len(want) for r in rows):
        print("ragged rows")
        return
    js = json.load(open(rep))
    # no cell a spreadsheet runs as a formula, no control character
    for r in rows:
        for cell in r:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                print("formula cell %r" % cell)
                return
            if any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f for ch in cell):
                print("control character in %r" % cell)
                return

    def unquote(v):
        return v[1:] if v[:2] in ("'=", "'+", "'-", "'@") else v
    a = sorted((r["folder"], r["uid"], r["reason"], unquote(r["subject"]), r["message_id"]) for r in body)
    b = sorted((r["folder"], r["uid"], r["reason"], r["subject"], r["message_id"]) for r in js)
    if a != b:
        print("CSV rows differ from the JSON report: %d vs %d" % (len(a), len(b)))
        return
    if not any(r["subject"].startswith("'=HYPERLINK(") for r in body):
        print("the =HYPERLINK( subject is not in the CSV as '=HYPERLINK(")
        return
    # a subject with a comma or quote must survive the quoting
    print("ok %d" % len(body))


if __name__ == "__main__":
    sys.exit(main({"gen-folder": cmd_gen_folder, "csv": cmd_csv}))
