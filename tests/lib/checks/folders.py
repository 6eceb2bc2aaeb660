#!/usr/bin/env python3
"""The checks of tests/integration/test-folders.sh.

  seed PORT USER PASSWORD KEYFILE SPEC...
      seed a source account with deterministic small messages (below)
  tree DUMP KEYFILE WANT_JSON
      prints how the destination dump differs from WANT_JSON
  plan-rows PLAN_JSON WANT_JSON
      prints the plan rows that lack WANT_JSON's values
  plan-table TABLE
      prints the rows of the plan table (Courier account) that are wrong
  plan-counts PLAN_JSON SOURCE_DUMP
      prints the plan rows whose counts or sizes disagree with the source
  nul-skipped PLAN_JSON
      exit 0 when the folder named "raw" (a NUL byte in its name) is
      skipped with a reason that says NUL
  no-special-use PORT
      exit 0 when alice's LIST on the plain source shows the localized
      names and no special-use flag
  hostile DIR DELIM HOME
      prints (one a line, at most 12) what is wrong with the plan rows,
      the manifest of the hostile server and what landed at the
      destination
"""

import hashlib
import imaplib
import json
import os
import sys
from collections import Counter

from checklib import load_dump, load_json, load_json_raw, main, report
import imaptool


def body(key):
    return ("From: Folder Test <folders@example.org>\r\n"
            "To: alice@example.org\r\n"
            "Subject: message %s\r\n"
            "Date: Tue, 03 Jan 2023 09:00:00 +0000\r\n"
            "Message-ID: <%s@folders.test>\r\n"
            "\r\n"
            "Body of message %s.\r\n" % (key, key, key)).encode()


def expand_keys(klist):
    """"k*3" is k1,k2,k3"""
    for k in [k for k in klist.split(",") if k]:
        if "*" in k:
            base, n = k.split("*")
            for i in range(1, int(n) + 1):
                yield "%s%d" % (base, i)
        else:
            yield k


def cmd_seed(port, user, password, keyfile, *specs):
    """SPEC = [+]FOLDER=KEY,KEY,... ('+' subscribes). FOLDER is logical
    ('/'-separated, no namespace prefix, not mUTF-7); a KEY is one message
    (the same KEY in two folders is the very same message); "k*3" is
    k1,k2,k3; "FOLDER=" only creates the folder. Writes KEY -> sha256 of
    the message into KEYFILE (merged over calls)."""
    class A: pass
    a = A(); a.host = "127.0.0.1"; a.port = int(port); a.user = user
    a.password = password; a.ssl = False; a.cafile = None; a.timeout = 60
    conn = imaptool.connect(a)
    acct = imaptool.Account(conn)
    keys = load_json(keyfile) if os.path.exists(keyfile) else {}
    for spec in specs:
        sub = spec.startswith("+")
        folder, _, klist = spec.lstrip("+").partition("=")
        server = "INBOX" if folder == "INBOX" else imaptool.create_folder(conn, acct, folder)
        for key in expand_keys(klist):
            b = body(key)
            keys[key] = hashlib.sha256(b).hexdigest()
            imaptool.append(conn, server, ["\\Seen"], '"03-Jan-2023 09:00:00 +0000"', b)
        if sub:
            imaptool.check(conn.subscribe(acct.mailbox_arg(server)), "SUBSCRIBE")
    conn.logout()
    json.dump(keys, open(keyfile, "w"))


def cmd_tree(dump_path, keyfile, want_json):
    """the destination holds exactly the folders of WANT_JSON
    ({"folder": ["key", ...]}), each exactly these messages"""
    dump = load_dump(dump_path)
    keys = {v: k for k, v in load_json(keyfile).items()}
    want = json.loads(want_json)
    bad = []
    got = {f: Counter(keys.get(m[0], "?" + m[0][:8]) for m in box["messages"])
           for f, box in dump.items()}
    for f in sorted(set(got) | set(want)):
        if f not in got:
            bad.append("missing folder %r" % f)
        elif f not in want:
            bad.append("unexpected folder %r with %s" % (f, sorted(got[f].elements())))
        elif got[f] != Counter(want[f]):
            bad.append("%r: expected %s, got %s" % (f, sorted(want[f]), sorted(got[f].elements())))
    report(bad)


def cmd_plan_rows(plan_path, want_json):
    """WANT_JSON maps a source folder (raw name) to {column: value}
    ("reason~": a substring of the reason)"""
    try:
        rows = load_json_raw(plan_path)
    except ValueError as e:
        print("plan output is not JSON: %s" % e)
        return
    want = json.loads(want_json)
    by = {r["folder"]: r for r in rows}
    bad = []
    for f, cols in want.items():
        if f not in by:
            bad.append("no plan row for %r" % f); continue
        for c, v in cols.items():
            got = by[f].get(c)
            if c == "reason~":
                if v not in by[f].get("reason", ""):
                    bad.append("%r reason %r lacks %r" % (f, by[f].get("reason"), v))
            elif str(got) != str(v):
                bad.append("%r %s: expected %r, got %r" % (f, c, v, got))
    report(bad)


def cmd_plan_table(table_path):
    lines = open(table_path).read().splitlines()
    rows = {l.split()[0]: l.split() for l in lines[1:] if l.strip()}
    want = {"INBOX": ["INBOX", "5"], "INBOX.Sent": ["Sent", "\\Sent", "3"],
            "INBOX.Clients.ProjectA": ["Clients/ProjectA", "4"],
            "INBOX.Clients.ProjectA.2024": ["Clients/ProjectA/2024", "1"],
            "INBOX.Trash": ["Trash", "\\Trash", "0"]}
    bad = []
    for f, cols in want.items():
        r = rows.get(f)
        if r is None:
            bad.append("no row for %s" % f)
        elif r[1:1 + len(cols)] != cols or "import" not in r:
            bad.append("%s: %s" % (f, " ".join(r)))
    report(bad)


def cmd_plan_counts(plan_path, src_path):
    rows = load_json(plan_path)
    src = load_dump(src_path)
    bad = []
    for r in rows:
        if r["action"] == "skip":
            continue
        if int(r["messages"]) > 0 and int(r["size"] or 0) <= 0:
            bad.append("%s: %s messages but size %r" % (r["folder"], r["messages"], r["size"]))
        logical = r["dest"]
        if logical in src and len(src[logical]["messages"]) != int(r["messages"]):
            bad.append("%s: plan says %s messages, source has %d" % (r["folder"], r["messages"], len(src[logical]["messages"])))
    report(bad)


def cmd_nul_skipped(plan_path):
    rows = load_json(plan_path)
    r = [x for x in rows if x["folder"] == "raw"]
    return 0 if r and r[0]["action"] == "skip" and "NUL" in r[0]["reason"] else 1


def cmd_no_special_use(port):
    c = imaplib.IMAP4("127.0.0.1", int(port))
    c.login("alice", "spw-alice")
    typ, data = c.list('""', '"*"')
    flags = b" ".join(d for d in data if d)
    return 1 if b"Gesendete" not in flags or any(
        f in flags for f in (b"\\Sent", b"\\Trash", b"\\Junk", b"\\Drafts")) else 0


def unsafe(name):
    """why a destination name is not safe on a file system, or None"""
    for part in name.split("/"):
        if part in ("", ".", "..") or part.startswith("~"):
            return "part %r" % part
    for ch in name:
        o = ord(ch)
        if o < 0x20 or 0x7f <= o <= 0x9f or o in (0x2028, 0x2029) or \
           0x202a <= o <= 0x202e or 0x2066 <= o <= 0x2069 or 0xdc80 <= o <= 0xdcff:
            return "character U+%04X" % o
    if name.startswith("/"):
        return "leading /"
    return None


def cmd_hostile(d, delim, home):
    """plan rows vs the server's manifest vs what landed where"""
    man = load_json(d + "/manifest.json")
    rows = load_json_raw(d + "/plan.json")
    dump = load_dump(d + "/dump.json")
    bad = []
    if len(rows) != len(man):
        bad.append("plan has %d rows for %d source folders" % (len(rows), len(man)))

    expected = {}          # dest folder -> sha256 list
    for m, r in zip(man, rows):
        raw = bytes.fromhex(m["name_hex"])
        what = "%s (%s)" % (m["name_repr"][:50], r["dest"][:50])
        try:
            if r["folder"].encode("utf-8", "surrogateescape") != raw.split(b"\0")[0] and \
               raw.decode("utf-8", "strict"):
                bad.append("row order: plan row %r for source %r" % (r["folder"][:40], m["name_repr"][:40]))
                continue
        except UnicodeDecodeError:
            pass
        plain = raw.decode("utf-8", "replace").replace(delim, "/")
        if m["expect"] == "skip" or b"\0" in raw:
            if r["action"] != "skip" or not r["reason"]:
                bad.append("%s: expected a skip with a reason, got %s %r" % (what, r["action"], r["reason"]))
            continue
        if r["action"] != "import":
            bad.append("%s: expected import, got %s %r" % (what, r["action"], r["reason"]))
            continue
        why = unsafe(r["dest"])
        if why:
            bad.append("%s: unsafe destination name: %s" % (what, why))
        if r["dest"] != plain and r["dest"] != "INBOX" and not r["reason"]:
            bad.append("%s: renamed without a reason" % what)
        expected.setdefault(r["dest"], []).append(m["sha256"])

    for f in sorted(set(expected) | set(dump)):
        got = sorted(x[0] for x in dump.get(f, {"messages": []})["messages"])
        if f not in dump:
            bad.append("planned folder %r missing at the destination" % f)
        elif f not in expected:
            bad.append("unexpected destination folder %r" % f)
        elif got != sorted(expected[f]):
            bad.append("%r holds %d messages, expected %d (its source folders' own)" % (f, len(got), len(expected[f])))
    report(bad[:12], "\n")


if __name__ == "__main__":
    sys.exit(main({
        "seed": cmd_seed,
        "tree": cmd_tree,
        "plan-rows": cmd_plan_rows,
        "plan-table": cmd_plan_table,
        "plan-counts": cmd_plan_counts,
        "nul-skipped": cmd_nul_skipped,
        "no-special-use": cmd_no_special_use,
        "hostile": cmd_hostile,
    }))
