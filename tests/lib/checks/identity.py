#!/usr/bin/env python3
"""The IMAP operations and checks of tests/integration/test-identity.sh.

Source operations (PORT USER PW: a plain login to the source):
  append PORT USER PW FOLDER FLAGS EPOCH FILE   prints the new UID
  expunge PORT USER PW FOLDER UIDSET
  uids PORT USER PW FOLDER                      prints "uid uid ..."
  subscribe PORT USER PW FOLDER
  fill PORT USER PW FOLDER COUNT SIZE           COUNT synthetic messages
  churn PORT USER PW FOLDER STOPFILE COUNTFILE  APPEND + EXPUNGE in rounds
  move-and-back PORT                            3 of mv's INBOX messages
                                                to Work and back
  seed-traps PORT PW DIR                        the crafted messages of DIR
                                                into the traps account
Files:
  make-traps CORPUS DIR      the crafted messages, from corpus messages
  minus IN OUT FOLDER:SHA256...
                             IN without one entry of each hash
  sha FILE                   sha256 of the file
  json-lines                 doveadm -f json on stdin, one row a line
  status-uids                migrate status rows (json-lines) on stdin:
                             "folder=uids" per folder
  sum-expunged RUN_JSON      the sum of the "expunged" column
  uid-gaps DUMP              how many gaps the UIDs of DUMP have
  uid-collision S1 S2 D2 SHA "ok", or what is wrong with INBOX's UIDs
                             after a delivery (SHA) took a source UID
  subscriptions DUMP         the subscribed folders, space-separated
  folder-results RUN_JSON FOLDER
                             the results of FOLDER's rows
  uids-changed A B           "changed" when Work's (sha, UID) pairs differ
  counts DUMP FOLDER:FILE:N...
                             "ok", or where FILE isn't there N times
  report-reasons             migrate report rows (json-lines) on stdin:
                             "folder:reason" sorted, space-separated
  max-uid DUMP FILE          the highest INBOX UID holding FILE
  reason-counts              migrate report rows (json-lines) on stdin:
                             how many items of each reason
"""

import argparse
import collections
import csv
import hashlib
import json
import os
import random
import re
import sys
import time

from checklib import load_dump, load_json, main
import imaptool as it


def conn(port, user, pw):
    return it.connect(argparse.Namespace(host="127.0.0.1", port=int(port),
        user=user, password=pw, ssl=False, cafile=None, timeout=60))


def box(acct, logical):
    return acct.mailbox_arg(acct.to_server(logical))


def sha256_file(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ---------------------------------------------------------------- source

def cmd_append(port, user, pw, folder, flags, epoch, path):
    c = conn(port, user, pw); acct = it.Account(c)
    c.create(box(acct, folder))
    body = open(path, "rb").read()
    typ, data = c.append(box(acct, folder), "(%s)" % flags if flags else None,
                         it.format_internaldate(int(epoch), 60), body)
    if typ != "OK":
        sys.exit("APPEND failed: %r" % data)
    m = re.search(rb"APPENDUID \d+ (\d+)", data[-1] or b"")
    print(m.group(1).decode() if m else "?")
    c.logout()


def cmd_expunge(port, user, pw, folder, uids):
    c = conn(port, user, pw); acct = it.Account(c)
    acct.select(acct.to_server(folder), readonly=False)
    it.check(c.uid("STORE", uids, "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
    it.check(c.uid("EXPUNGE", uids), "UID EXPUNGE")
    c.logout()


def cmd_uids(port, user, pw, folder):
    c = conn(port, user, pw); acct = it.Account(c)
    acct.select(acct.to_server(folder))
    print(" ".join(map(str, acct.uids())))
    c.logout()


def cmd_subscribe(port, user, pw, folder):
    c = conn(port, user, pw); acct = it.Account(c)
    it.check(c.subscribe(box(acct, folder)), "SUBSCRIBE")
    c.logout()


def synthetic(tag, i, size):
    filler = ("line %d of message %s-%d, some words to fill the body.\r\n"
              % (i, tag, i)) * max(1, size // 60)
    return ("From: Churn <churn@example.org>\r\nTo: busy@example.org\r\n"
            "Subject: %s message %d\r\nDate: Tue, 02 Jan 2024 10:%02d:%02d +0000\r\n"
            "Message-ID: <%s-%d@identity.test>\r\n\r\n%s"
            % (tag, i, (i // 60) % 60, i % 60, tag, i, filler)).encode()


def cmd_fill(port, user, pw, folder, count, size):
    c = conn(port, user, pw); acct = it.Account(c)
    c.create(box(acct, folder))
    rng = random.Random(5)
    for i in range(int(count)):
        flags = "(\\Seen)" if rng.random() < 0.5 else None
        it.check(c.append(box(acct, folder), flags,
                          it.format_internaldate(1600000000 + i * 3600, 0),
                          synthetic("bulk", i, int(size))), "APPEND")
    c.logout()


def cmd_churn(port, user, pw, folder, stop, countfile):
    """until STOPFILE exists, APPEND one new message and EXPUNGE one
    existing (upper half) each round; COUNTFILE holds the number of
    rounds done"""
    c = conn(port, user, pw); acct = it.Account(c)
    acct.select(acct.to_server(folder), readonly=False)
    rng = random.Random(9)
    uids = acct.uids()
    n, end = 0, time.time() + 90
    while not os.path.exists(stop) and time.time() < end:
        it.check(c.append(box(acct, folder), None,
                          it.format_internaldate(1700000000 + n, 0),
                          synthetic("churn", n, 400)), "APPEND")
        upper = uids[len(uids) // 2:]
        if upper:
            u = rng.choice(upper)
            uids.remove(u)
            it.check(c.uid("STORE", str(u), "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
            it.check(c.uid("EXPUNGE", str(u)), "UID EXPUNGE")
        c.noop()
        n += 1
        with open(countfile + ".tmp", "w") as f:
            f.write(str(n))
        os.rename(countfile + ".tmp", countfile)
        time.sleep(0.02)
    c.logout()


def cmd_move_and_back(port):
    c = conn(port, "mv", "spw-mv")
    acct = it.Account(c)
    work = acct.mailbox_arg(acct.to_server("Work"))
    acct.select("INBOX", readonly=False)
    uids = acct.uids()[:3]
    it.check(c.uid("MOVE", ",".join(map(str, uids)), work), "UID MOVE")
    acct.select(acct.to_server("Work"), readonly=False)
    back = acct.uids()[-3:]
    it.check(c.uid("MOVE", ",".join(map(str, back)), "INBOX"), "UID MOVE back")
    c.logout()
    print("moved INBOX UIDs %s to Work and back" % uids)


def cmd_seed_traps(port, pw, mdir):
    """one connection APPENDs all of them (~130 messages)"""
    c = conn(port, "traps", pw)
    acct = it.Account(c)
    t = [1650000000]

    def put(folder, name, flags=""):
        srv = acct.to_server(folder)
        c.create(acct.mailbox_arg(srv))
        t[0] += 3600
        it.append(c, srv, flags.split(), it.format_internaldate(t[0], 120),
                  open(os.path.join(mdir, name), "rb").read())
    nomid = sorted(f for f in os.listdir(mdir) if f.startswith("nomid-"))
    for i, f in enumerate(nomid):
        put("NoMsgId", f, "\\Seen" if i % 3 else "")
    put("NoMsgId", nomid[0], "\\Flagged")     # the same no-Message-ID mail twice
    for f in nomid[:5]:
        put("INBOX", f)                       # and some in INBOX too
    put("INBOX", "A.eml", "\\Seen")
    put("INBOX", "B.eml")
    put("INBOX", "C.eml", "\\Answered")
    put("INBOX", "D.eml", "\\Seen")
    put("INBOX", "D.eml", "\\Seen")           # the same message twice
    put("INBOX", "E.eml", "\\Seen")
    put("Aardvark", "E.eml", "\\Flagged")     # the same message in two folders
    put("INBOX", "H.eml")                     # A's headers and size, other body
    put("Beta", "G.eml")
    put("Alpha", "G.eml", "\\Seen")           # Alpha sorts first
    put("Drafts", "F.eml", "\\Draft")
    c.logout()


# ---------------------------------------------------------------- files

def cmd_make_traps(corpus, out):
    rows = list(csv.DictReader(open(os.path.join(corpus, "MANIFEST.tsv")), delimiter="\t"))

    def load(f):
        return re.sub(rb"\r\n|\r(?!\n)|\n", b"\r\n", open(os.path.join(corpus, f), "rb").read())

    def head(d):
        return d.split(b"\r\n\r\n", 1)[0]
    nomid, withid = [], []
    seen_ids = set()
    for r in rows:
        d = load(r["file"])
        m = re.search(rb"(?im)^message-id:\s*(\S+)", head(d))
        if m is None:
            nomid.append(d)
        elif (len(d) < 3000 and re.search(rb"(?im)^subject: *\S", head(d))
              and m.group(1) not in seen_ids and b"\r\n\r\n" in d):
            seen_ids.add(m.group(1))
            withid.append(d)

    def w(name, data):
        open(os.path.join(out, name), "wb").write(data)
    for i, d in enumerate(nomid):
        w("nomid-%03d.eml" % i, d)
    a, d_, e, g = withid[0], withid[1], withid[2], withid[3]
    w("A.eml", a)
    # B: A's headers, a longer body (same Message-ID, other size)
    w("B.eml", a + b"A second version of this message, with one more line.\r\n")
    # C: A with another Subject of the same length (same Message-ID and size)
    hd, body = a.split(b"\r\n\r\n", 1)

    def flip(m):
        s = m.group(2)
        t = bytes((c ^ 0x20) if 65 <= (c & ~0x20) <= 90 else c for c in s)
        if t == s:
            t = s[:-1] + (b"X" if s[-1:] != b"X" else b"Y")
        return m.group(1) + t
    hd2 = re.sub(rb"(?im)^(subject: *)(\S[^\r\n]*)", flip, hd, count=1)
    assert hd2 != hd and len(hd2) == len(hd)
    w("C.eml", hd2 + b"\r\n\r\n" + body)
    # H: A with one body byte changed (same Message-ID, headers and size: the
    # same identity, but another message)
    i = next(k for k, c in enumerate(body) if 97 <= c <= 122)
    w("H.eml", hd + b"\r\n\r\n" + body[:i] + bytes([body[i] ^ 0x20]) + body[i + 1:])
    w("D.eml", d_)
    w("E.eml", e)
    w("G.eml", g)


def cmd_minus(src, dst, *specs):
    """drop one entry with that hash from the folder (mail the
    destination has of its own)"""
    d = load_json(src)
    for spec in specs:
        folder, h = spec.rsplit(":", 1)
        msgs = d[folder]["messages"]
        for i, m in enumerate(msgs):
            if m[0] == h:
                del msgs[i]
                break
        else:
            sys.exit("minus: %s not in %s" % (h[:12], folder))
    json.dump(d, open(dst, "w"), ensure_ascii=False, indent=1, sort_keys=True)


def cmd_sha(path):
    print(sha256_file(path))


def cmd_json_lines():
    for row in json.load(sys.stdin):
        print(json.dumps(row, sort_keys=True))


def rows_stdin():
    return [json.loads(l) for l in sys.stdin]


def cmd_status_uids():
    for r in rows_stdin():
        if r["folder"] != "*":
            print("%s=%s" % (r["folder"], r["uids"]))


def cmd_sum_expunged(path):
    print(sum(int(r["expunged"] or 0) for r in load_json(path)))


def cmd_uid_gaps(path):
    d = load_dump(path)
    n = 0
    for name, b in d.items():
        u = sorted(m[3] for m in b["messages"])
        n += sum(1 for a, b2 in zip(u, u[1:]) if b2 != a + 1)
    print(n)


def cmd_uid_collision(s1_path, s2_path, d2_path, dl):
    s1, s2, d2 = (load_json(p) for p in (s1_path, s2_path, d2_path))
    old = {m[3]: m[0] for m in s1["INBOX"]["messages"]}
    src = {m[3]: m[0] for m in s2["INBOX"]["messages"]}
    dst = {m[3]: m[0] for m in d2["INBOX"]["messages"]}
    errs = []
    for uid, h in old.items():
        if dst.get(uid) != h:
            errs.append("old UID %d changed" % uid)
    dl_uid = [u for u, h in dst.items() if h == dl]
    new = {u: h for u, h in src.items() if u not in old}
    if len(new) != 3:
        errs.append("expected 3 new source messages, got %d" % len(new))
    newdst = sorted(u for u, h in dst.items() if h in new.values())
    if len(newdst) != 3:
        errs.append("new messages at the destination: %r" % newdst)
    if not dl_uid or any(u <= dl_uid[0] for u in newdst):
        errs.append("new messages must come after the delivery (%r, %r)" % (dl_uid, newdst))
    if len(set(dst)) != len(d2["INBOX"]["messages"]):
        errs.append("duplicate UIDs")
    collided = [u for u in new if dst.get(u) != new[u]]
    if not collided:
        errs.append("no new source message lost its UID: the test didn't force a collision")
    print("; ".join(errs) if errs else "ok")


def cmd_subscriptions(path):
    print(" ".join(load_json(path)["subscriptions"]))


def cmd_folder_results(path, folder):
    print([r["result"] for r in load_json(path) if r["folder"] == folder])


def cmd_uids_changed(a_path, b_path):
    a, b = (load_json(p)["Work"] for p in (a_path, b_path))
    key = lambda d: sorted((m[0], m[3]) for m in d["messages"])
    print("changed" if key(a) != key(b) else "same (no src_renumber_uids in the harness?)")


def cmd_counts(path, *want):
    d = load_json(path)
    errs = []
    for spec in want:
        folder, fpath, n = spec.split(":")
        h = sha256_file(fpath)
        got = sum(1 for m in d.get(folder, {"messages": []})["messages"] if m[0] == h)
        if got != int(n):
            errs.append("%s %s x%d, want %s" % (folder, fpath.rsplit("/", 1)[-1], got, n))
    print("; ".join(errs) or "ok")


def cmd_report_reasons():
    print(" ".join(sorted("%s:%s" % (r["folder"], r["reason"]) for r in rows_stdin())))


def cmd_max_uid(path, fpath):
    h = sha256_file(fpath)
    d = load_json(path)
    print(max(m[3] for m in d["INBOX"]["messages"] if m[0] == h))


def cmd_reason_counts():
    print(dict(collections.Counter(r["reason"] for r in rows_stdin())))


if __name__ == "__main__":
    sys.exit(main({
        "append": cmd_append, "expunge": cmd_expunge, "uids": cmd_uids,
        "subscribe": cmd_subscribe, "fill": cmd_fill, "churn": cmd_churn,
        "move-and-back": cmd_move_and_back, "seed-traps": cmd_seed_traps,
        "make-traps": cmd_make_traps, "minus": cmd_minus, "sha": cmd_sha,
        "json-lines": cmd_json_lines, "status-uids": cmd_status_uids,
        "sum-expunged": cmd_sum_expunged, "uid-gaps": cmd_uid_gaps,
        "uid-collision": cmd_uid_collision,
        "subscriptions": cmd_subscriptions,
        "folder-results": cmd_folder_results,
        "uids-changed": cmd_uids_changed, "counts": cmd_counts,
        "report-reasons": cmd_report_reasons, "max-uid": cmd_max_uid,
        "reason-counts": cmd_reason_counts,
    }))
