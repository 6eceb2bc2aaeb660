#!/usr/bin/env python3
"""The checks of tests/integration/test-gmail.sh (the Gmail emulator's
account, what the engine sent it, what landed at the destination).

Run as "python3 gmail.py COMMAND ARGS..." with GMAIL_DIR set to the
test's directory for the account. Every command prints its checks as
"CHECK<TAB>ok|fail<TAB>name<TAB>detail" and notes as "INFO<TAB>..." (the
shell's gm() turns them into PASS/FAIL lines):

  spec                 writes $GMAIL_DIR/spec.json (the emulator's account)
                       and $GMAIL_DIR/model.json (what each entry is, its
                       sha256/flags/date, where it belongs)
  selfcheck PORT       talks raw IMAP to the emulator
  srcview DUMP         compares an imaptool dump of the emulator with the
                       model
  dst DUMP             compares an imaptool dump of the destination with
                       the model
  logcheck LOG OFFSET readonly|nobodies
                       what the engine sent, from the emulator's rawlog
                       (from a byte offset)
  plan PLAN_JSON       checks "migrate plan -f json"
  dedupe DUMP          the destination with migrate_dedupe_across_folders
  mutate DIR           changes DIR's spec/model copy as Gmail would between
                       two runs
  delta DIR DUMP       checks the destination after the delta pass
  same-dumps A B       exit 0 when the two JSON dumps are equal
"""

import base64
import csv
import hashlib
import json
import os
import re
import socket
import sys

from checklib import load_dump, load_json, main
import imaptool

G = os.environ["GMAIL_DIR"]

def check(ok, name, detail=""):
    print("CHECK\t%s\t%s\t%s" % ("ok" if ok else "fail", name,
                                 str(detail).replace("\n", " | ")[:900]))

# ---- the account: (key, labels, flags, internaldate, trash, spam)
ENTRIES = [
    ("inbox-1",        ["\\Inbox"], ["\\Seen"], "02-Mar-2021 08:15:00 +0100"),
    ("inbox-2",        ["\\Inbox"], [], "03-Mar-2021 09:00:30 -0500"),
    ("inbox-work",     ["\\Inbox", "Work"], ["\\Seen"], "04-Mar-2021 10:01:02 +0000"),
    ("work-recus",     ["Work", "Re\u00e7us"], ["\\Seen", "\\Answered"], "05-Mar-2021 11:11:11 +0530"),
    ("nested",         ["Projects/Alpha/Specs"], ["\\Seen"], "06-Mar-2021 12:00:00 +0000"),
    ("muy-importante", ["Muy Importante", "\\Important"], ["\\Seen", "$Forwarded"], "07-Mar-2021 13:30:00 -0800"),
    ("inbox-starred",  ["\\Inbox", "\\Starred", "\\Important"], ["\\Seen"], "08-Mar-2021 14:45:00 +0200"),
    ("archived-1",     [], ["\\Seen"], "09-Mar-2021 15:00:00 +0000"),
    ("archived-2",     [], [], "10-Mar-2021 16:20:00 +0900"),
    ("archived-imp",   ["\\Important"], ["\\Seen"], "11-Mar-2021 17:00:00 +0000"),
    ("archived-star",  ["\\Starred"], [], "12-Mar-2021 18:00:00 +0100"),
    ("archived-both",  ["\\Important", "\\Starred"], ["\\Seen"], "13-Mar-2021 19:00:00 +0000"),
    ("sent",           ["\\Sent"], ["\\Seen"], "14-Mar-2021 20:00:00 +0000"),
    ("draft",          ["\\Draft"], ["\\Draft"], "15-Mar-2021 21:00:00 +0000"),
    ("trash",          [], ["\\Seen"], "16-Mar-2021 22:00:00 +0000", "trash"),
    ("spam",           [], [], "17-Mar-2021 23:00:00 +0000", "spam"),
    ("dup-inbox",      ["\\Inbox"], ["\\Seen"], "18-Mar-2021 07:00:00 +0000"),
    ("dup-archived",   [], [], "18-Mar-2021 07:00:05 +0000"),
]
DUP = ("dup-inbox", "dup-archived")      # same corpus file

def pick_corpus(n):
    """n distinct corpus messages: single messages with Message-ID, Date,
    From and Subject, small, no mbox/From_ line/BOM/malformed quirks, each
    Message-ID once in the set."""
    corpus = os.environ["CORPUS"]
    rows = list(csv.DictReader(open(os.path.join(corpus, "MANIFEST.tsv"),
                                    newline="", encoding="utf-8"), delimiter="\t"))
    bad = ("no Message-ID", "no Date", "no From", "duplicate", "mbox", "From_",
           "BOM", "malformed", "8bit headers", "long folded", "NUL")
    out, seen = [], set()
    for r in sorted(rows, key=lambda r: r["file"]):
        if any(b in r["notes"] for b in bad) or int(r["bytes"]) > 20000:
            continue
        data = imaptool.crlf(open(os.path.join(corpus, r["file"]), "rb").read())
        head = data.split(b"\r\n\r\n", 1)[0]
        mid = re.search(rb"(?im)^message-id:[ \t]*(<[^>\r\n]+>)", head)
        if not mid or not re.search(rb"(?im)^subject:[ \t]*\S", head) or \
                mid.group(1).lower() in seen:
            continue
        seen.add(mid.group(1).lower())
        out.append(os.path.join(corpus, r["file"]))
    if len(out) < n + 4:
        sys.exit("the corpus has only %d usable messages, %d needed" % (len(out), n + 4))
    # spread over the corpus' sources rather than the first n of one
    step = len(out) // n
    return [out[i * step] for i in range(n)], out

def cmd_spec():
    files, _ = pick_corpus(len(ENTRIES) - 1)
    spec, model = [], []
    fi = 0
    for e in ENTRIES:
        key, labels, flags, date = e[:4]
        where = e[4] if len(e) > 4 else None
        if key == DUP[1]:
            path = [m for m in model if m["key"] == DUP[0]][0]["file"]
        else:
            path = files[fi]
            fi += 1
        body = imaptool.crlf(open(path, "rb").read())
        eff = sorted(set(flags) | ({"\\Flagged"} if "\\Starred" in labels else set()))
        spec.append({"file": path, "labels": labels, "flags": flags,
                     "internaldate": date, "trash": where == "trash",
                     "spam": where == "spam"})
        model.append({"key": key, "file": path, "labels": labels,
                      "sha": hashlib.sha256(body).hexdigest(), "flags": eff,
                      "date": imaptool.parse_internaldate(date), "where": where,
                      "size": len(body)})
    json.dump({"user": "alice@gmail.com", "password": "gm-app-password-1",
               "messages": spec}, open(os.path.join(G, "spec.json"), "w"), indent=1)
    json.dump(model, open(os.path.join(G, "model.json"), "w"), indent=1)

def model():
    return json.load(open(os.path.join(G, "model.json")))

def ent(m):
    return [m["sha"], m["flags"], m["date"]]

def source_view(ms):
    """Gmail's folders for the model: name -> [entry]."""
    live = [m for m in ms if not m["where"]]
    v = {"INBOX": [ent(m) for m in live if "\\Inbox" in m["labels"]]}
    labels = set()
    for m in live:
        for l in m["labels"]:
            if not l.startswith("\\"):
                parts = l.split("/")
                labels.update("/".join(parts[:k]) for k in range(1, len(parts) + 1))
    for l in labels:
        v[l] = [ent(m) for m in live if l in m["labels"]]
    for name, lab in (("Drafts", "\\Draft"), ("Important", "\\Important"),
                      ("Sent Mail", "\\Sent"), ("Starred", "\\Starred")):
        v["[Gmail]/" + name] = [ent(m) for m in live if lab in m["labels"]]
    v["[Gmail]/All Mail"] = [ent(m) for m in live]
    v["[Gmail]/Spam"] = [ent(m) for m in ms if m["where"] == "spam"]
    v["[Gmail]/Trash"] = [ent(m) for m in ms if m["where"] == "trash"]
    return v

def norm(entries):
    return sorted(json.dumps(e[:3]) for e in entries)

def compare_tree(got, want):
    bad = []
    for f in sorted(set(got) | set(want)):
        if f not in got:
            bad.append("missing folder %r" % f)
        elif f not in want:
            bad.append("unexpected folder %r (%d messages)" % (f, len(got[f])))
        elif norm(got[f]) != norm(want[f]):
            bad.append("%r: %d messages, expected %d; differ: %s" % (
                f, len(got[f]), len(want[f]),
                sorted(set(norm(got[f])) ^ set(norm(want[f])))[:2]))
    return bad

def load_boxes(path):
    """an imaptool dump as folder -> its messages"""
    return {f: box["messages"] for f, box in load_dump(path).items()}

def cmd_srcview(path):
    got = load_boxes(path)
    bad = compare_tree(got, source_view(model()))
    check(not bad, "gmail emulator: imaptool reads back exactly Gmail's view of the spec "
          "(INBOX, labels with their parents, All Mail, Drafts, Important, Sent Mail, "
          "Spam, Starred, Trash; flags and dates)", "; ".join(bad))

def cmd_dst(path):
    ms = model()
    by = {m["key"]: m for m in ms}
    got = load_boxes(path)
    labelled = [m for m in ms if not m["where"] and
                any(l not in ("\\Important", "\\Starred") for l in m["labels"])]
    archived = [m for m in ms if not m["where"] and m not in labelled]
    want = source_view(ms)
    for f in ("[Gmail]/All Mail", "[Gmail]/Important", "[Gmail]/Starred",
              "[Gmail]/Spam", "[Gmail]/Trash"):
        del want[f]
    want["Sent"] = want.pop("[Gmail]/Sent Mail")
    want["Drafts"] = want.pop("[Gmail]/Drafts")
    tree_want = sorted(list(want) + ["Archive"])
    check(sorted(got) == tree_want,
          "gmail: destination folders are exactly INBOX, the labels ('/' hierarchy, "
          "parents included), Sent, Drafts and Archive (no Important, Starred, Junk/Spam, Trash)",
          "got %s, expected %s" % (sorted(got), tree_want))
    bad = compare_tree({f: got[f] for f in got if f != "Archive"}, want)
    check(not bad, "gmail: INBOX, every label folder, Sent and Drafts hold exactly their "
          "messages (labelled twice = in both folders; flags incl. \\Flagged for starred; "
          "INTERNALDATE)", "; ".join(bad))
    arch = got.get("Archive", [])
    dupsha = by[DUP[0]]["sha"]
    rest = [e for e in arch if e[0] != dupsha]
    want_rest = [ent(m) for m in archived if m["key"] != DUP[1]]
    check(norm(rest) == norm(want_rest),
          "gmail: Archive holds every archived-only message exactly once (unlabelled, "
          "\\Important-only, \\Starred-only, both), with its flags and INTERNALDATE",
          "got %d (other than the duplicate), expected %d; differ: %s" % (
              len(rest), len(want_rest),
              sorted(set(norm(rest)) ^ set(norm(want_rest)))[:3]))
    lab_shas = {m["sha"] for m in labelled} - {dupsha}
    leaked = [e for e in arch if e[0] in lab_shas]
    ndup = sum(1 for e in arch if e[0] == dupsha)
    check(not leaked and ndup <= 1,
          "gmail: no labelled message is duplicated into Archive",
          "%d labelled messages in Archive, the twice-delivered mail %d times" % (
              len(leaked), ndup))
    d2 = by[DUP[1]]
    copies = [e for e in arch if e[0] == dupsha]
    check(norm(copies) == norm([ent(d2)]),
          "gmail: the second delivery of the same mail (identical headers and body, own "
          "X-GM-MSGID, archived, while the first copy is in the Inbox) is in Archive exactly once",
          "Archive has %d copies of it: %s (expected flags %s, date %s)" % (
              len(copies), copies, d2["flags"], d2["date"]))

# ---- raw IMAP for the emulator's own checks
class Raw:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""
        self.greeting = self.line()

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("server closed")
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        m = re.search(rb"\{(\d+)\}$", l)
        if m:                        # a literal: keep it inline
            n = int(m.group(1))
            while len(self.buf) < n:
                self.buf += self.s.recv(65536)
            lit, self.buf = self.buf[:n], self.buf[n:]
            return l + b"\r\n" + lit + self.line()
        return l

    def send(self, data):
        self.s.sendall(data)

    def until(self, tags):
        """Lines up to the tagged replies of all tags, in order of arrival."""
        tags, out, done = list(tags), [], []
        while len(done) < len(tags):
            l = self.line()
            out.append(l)
            t = l.split(b" ", 1)[0]
            if t in tags:
                done.append(t)
        return out, done

def tagged(lines, tag):
    return [l for l in lines if l.startswith(tag + b" ")][0]

def cmd_selfcheck(port):
    port = int(port)
    ms = model()
    pw = b"gm-app-password-1"
    # login variants
    c = Raw(port)
    c.send(b"a1 CAPABILITY\r\na2 LOGIN alice@gmail.com wrong\r\n")
    lines, _ = c.until([b"a1", b"a2"])
    caps = b" ".join(lines)
    ok = b"X-GM-EXT-1" in caps and b"AUTH=PLAIN" in caps and b"AUTH=XOAUTH2" in caps \
        and tagged(lines, b"a2").startswith(b"a2 NO [AUTHENTICATIONFAILED]")
    ir = base64.b64encode(b"\0alice@gmail.com\0" + pw)
    c.send(b"a3 AUTHENTICATE PLAIN " + ir + b"\r\n")
    lines, _ = c.until([b"a3"])
    ok = ok and tagged(lines, b"a3").startswith(b"a3 OK") and \
        any(b"CONDSTORE" in l and b"X-GM-EXT-1" in l for l in lines)
    c2 = Raw(port)
    c2.send(b"b1 AUTHENTICATE PLAIN\r\n")
    cont = c2.line()
    c2.send(base64.b64encode(b"\0alice@gmail.com\0" + pw) + b"\r\n")
    lines2, _ = c2.until([b"b1"])
    ok = ok and cont.startswith(b"+") and tagged(lines2, b"b1").startswith(b"b1 OK")
    c2.send(b"b2 LOGOUT\r\n")
    c2.until([b"b2"])
    check(ok, "gmail emulator: CAPABILITY (X-GM-EXT-1, AUTH=PLAIN, AUTH=XOAUTH2), wrong "
          "password refused, AUTHENTICATE PLAIN with SASL-IR and with a continuation",
          b" | ".join(lines[-2:]).decode("utf-8", "replace"))

    # pipelined: everything in one write, answered in order
    hf = b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)]"
    c.send(b"p1 EXAMINE INBOX (CONDSTORE)\r\n"
           b"p2 UID FETCH 1:* (UID X-GM-MSGID X-GM-THRID X-GM-LABELS FLAGS)\r\n"
           b"p3 EXAMINE \"[Gmail]/All Mail\"\r\n"
           b"p4 UID FETCH 1:* (UID X-GM-MSGID X-GM-LABELS RFC822.SIZE " + hf + b")\r\n"
           b"p5 UID SEARCH ALL\r\n"
           b"p6 COMPRESS DEFLATE\r\n"
           b"p7 XYZZY\r\n"
           b"p8 EXAMINE \"[Gmail]\"\r\n"
           b"p9 LOGOUT\r\n")
    tags = [b"p%d" % i for i in range(1, 10)]
    lines, order = c.until(tags)
    problems = []
    if order != tags:
        problems.append("tagged replies out of order: %r" % order)
    for t, want in ((b"p1", b"OK"), (b"p2", b"OK"), (b"p3", b"OK"), (b"p4", b"OK"),
                    (b"p5", b"OK"), (b"p6", b"NO"), (b"p7", b"BAD"), (b"p8", b"NO"),
                    (b"p9", b"OK")):
        r = tagged(lines, t)
        if r.split(b" ")[1] != want:
            problems.append("%s: %s" % (t.decode(), r.decode("utf-8", "replace")))
    # split the replies per command
    per, cur = {}, []
    for l in lines:
        cur.append(l)
        t = l.split(b" ", 1)[0]
        if t in tags:
            per[t] = cur
            cur = []
    inbox = {}
    for l in per.get(b"p2", []):
        m = re.match(rb"^\* (\d+) FETCH \(UID (\d+) X-GM-MSGID (\d+) X-GM-THRID (\d+) "
                     rb"X-GM-LABELS \((.*)\) FLAGS \((.*)\) MODSEQ \((\d+)\)\)$", l)
        if m:
            inbox[int(m.group(3))] = m.group(5)
        elif l.startswith(b"* ") and b"FETCH" in l:
            problems.append("INBOX FETCH not as expected: %r" % l[:200])
    allm, uids = {}, []
    for l in per.get(b"p4", []):
        m = re.match(rb"^\* (\d+) FETCH \(UID (\d+) X-GM-MSGID (\d+) X-GM-LABELS \((.*)\) "
                     rb"RFC822\.SIZE (\d+) BODY\[HEADER\.FIELDS \(MESSAGE-ID SUBJECT\)\] "
                     rb"\{(\d+)\}\r\n(.*)\)$", l, re.S)
        if m:
            allm[int(m.group(3))] = m.group(4)
            uids.append(int(m.group(2)))
            hdr = m.group(7)
            names = [h.split(b":")[0].lower() for h in hdr.split(b"\r\n")
                     if h and h[:1] not in b" \t"]
            if not hdr.endswith(b"\r\n\r\n") or len(hdr) != int(m.group(6)) or \
                    not set(names) <= {b"message-id", b"subject"} or b"message-id" not in names:
                problems.append("HEADER.FIELDS reply %r" % hdr[:120])
        elif l.startswith(b"* ") and b"FETCH" in l:
            problems.append("All Mail FETCH not as expected: %r" % l[:200])
    live = [m for m in ms if not m["where"]]
    n_inbox = sum(1 for m in live if "\\Inbox" in m["labels"])
    if len(inbox) != n_inbox or len(allm) != len(live):
        problems.append("INBOX %d/%d, All Mail %d/%d messages" % (
            len(inbox), n_inbox, len(allm), len(live)))
    if uids and uids == list(range(uids[0], uids[0] + len(uids))):
        problems.append("All Mail UIDs are contiguous: %r" % uids)
    # the same X-GM-MSGID in both folders; INBOX omits \Inbox, All Mail has it
    for msgid, labs in inbox.items():
        if msgid not in allm:
            problems.append("X-GM-MSGID %d of INBOX not in All Mail" % msgid)
        elif b'"\\\\Inbox"' in labs or b'"\\\\Inbox"' not in allm[msgid]:
            problems.append("X-GM-LABELS INBOX (%s) / All Mail (%s)" % (
                labs.decode(), allm[msgid].decode()))
    labsets = sorted(allm.values())
    for want in (b'"\\\\Inbox" Work', b'Re&AOc-us Work', b'"\\\\Important" "Muy Importante"',
                 b'"\\\\Important" "\\\\Starred"', b'"\\\\Draft"', b'"\\\\Sent"', b""):
        if want not in labsets:
            problems.append("no All Mail message with X-GM-LABELS (%s)" % want.decode())
    search = [l for l in per.get(b"p5", []) if l.startswith(b"* SEARCH")]
    if not search or sorted(int(x) for x in search[0].split()[2:]) != sorted(uids):
        problems.append("UID SEARCH ALL %r vs %r" % (search[:1], uids))
    check(not problems, "gmail emulator: pipelined commands answered in order; X-GM-MSGID "
          "the same in INBOX and All Mail, X-GM-LABELS as Gmail (quoted system labels, "
          "mUTF-7, the selected folder's own label omitted), non-contiguous All Mail UIDs, "
          "exact HEADER.FIELDS, CONDSTORE MODSEQ, COMPRESS refused, unknown command BAD, "
          "[Gmail] not selectable", "; ".join(problems[:6]))

def cmd_logcheck(log, start, what):
    """Client commands in the emulator's rawlog from byte offset start."""
    with open(log, "rb") as f:
        f.seek(int(start))
        lines = [l for l in f.read().split(b"\n") if b"] C: " in l]
    cmds = [l.split(b"] C: ", 1)[1] for l in lines]
    if what == "readonly":
        bad = [c for c in cmds if re.match(
            rb"^\S+ (UID )?(STORE|APPEND|EXPUNGE|COPY|MOVE|CREATE|DELETE|RENAME|SUBSCRIBE|"
            rb"UNSUBSCRIBE|SELECT)\b", c, re.I) or re.search(rb"\bBODY\[|\bRFC822[ )]", c, re.I)]
        check(cmds and not bad, "gmail: the source stays untouched (EXAMINE and BODY.PEEK only; "
              "no SELECT, STORE, APPEND, EXPUNGE, COPY, MOVE, CREATE, DELETE, RENAME)",
              "%d commands; offending: %r" % (len(cmds), bad[:3]))
        gm = [c for c in cmds if b"X-GM-LABELS" in c.upper()]
        print("INFO\tthe engine sent %d commands, %d of them asking for X-GM-LABELS, "
              "%d for X-GM-MSGID" % (len(cmds), len(gm),
                                     sum(1 for c in cmds if b"X-GM-MSGID" in c.upper())))
    elif what == "nobodies":
        bodies = [c for c in cmds if re.search(rb"BODY\.PEEK\[\]|BODY\[\]|RFC822[ )]", c, re.I)]
        check(cmds and not bodies, "gmail: second run downloads no message body",
              "%d commands, %d body fetches: %r" % (len(cmds), len(bodies), bodies[:2]))

def cmd_mutate(d):
    """What happens in Gmail between two runs: inbox-1 is archived (its
    \\Inbox label removed), new mail arrives in the Inbox, new mail skips
    the Inbox (a filter archives it)."""
    spec = json.load(open(os.path.join(d, "spec.json")))
    ms = json.load(open(os.path.join(d, "model.json")))
    _, usable = pick_corpus(len(ENTRIES) - 1)
    used = {m["file"] for m in ms}
    fresh = [f for f in usable if f not in used][:2]
    i = [m["key"] for m in ms].index("inbox-1")
    spec["messages"][i]["labels"] = []
    ms[i]["labels"] = []
    ms[i]["key"] = "inbox-1-archived"
    # and the other way round: archived mail moved back to the Inbox
    j = [m["key"] for m in ms].index("archived-2")
    spec["messages"][j]["labels"] = ["\\Inbox"]
    ms[j]["labels"] = ["\\Inbox"]
    ms[j]["key"] = "archived-2-inboxed"
    for key, labels, path, date in (
            ("new-inbox", ["\\Inbox"], fresh[0], "01-Apr-2021 09:00:00 +0000"),
            ("new-archived", [], fresh[1], "02-Apr-2021 09:00:00 +0000")):
        body = imaptool.crlf(open(path, "rb").read())
        spec["messages"].append({"file": path, "labels": labels, "flags": [],
                                 "internaldate": date})
        ms.append({"key": key, "file": path, "labels": labels,
                   "sha": hashlib.sha256(body).hexdigest(), "flags": [],
                   "date": imaptool.parse_internaldate(date), "where": None,
                   "size": len(body)})
    json.dump(spec, open(os.path.join(d, "spec.json"), "w"), indent=1)
    json.dump(ms, open(os.path.join(d, "model.json"), "w"), indent=1)

def cmd_delta(d, path):
    ms = json.load(open(os.path.join(d, "model.json")))
    by = {m["key"]: m for m in ms}
    got = load_boxes(path)
    where = lambda m: sorted(f for f, es in got.items() for e in es if e[0] == m["sha"])
    new_in, new_ar = by["new-inbox"], by["new-archived"]
    check(where(new_in) == ["INBOX"] and where(new_ar) == ["Archive"],
          "gmail delta: mail that arrived after the first run is imported once: "
          "Inbox mail into INBOX, mail a filter archived into Archive",
          "new Inbox mail in %s, new archived mail in %s" % (where(new_in), where(new_ar)))
    arch = by["inbox-1-archived"]
    check(where(arch) != [],
          "gmail delta: a message archived in Gmail after the first run (its \\Inbox "
          "label removed) is not lost by 'migrate run -d'",
          "it is in no destination folder any more (it is in [Gmail]/All Mail with "
          "X-GM-LABELS ())")
    check(where(arch) == ["Archive"],
          "gmail delta: after 'migrate run -d' that message is where Gmail now has it: "
          "in Archive, no longer in INBOX", "it is in %s" % where(arch))

    back = by["archived-2-inboxed"]
    check(where(back) == ["INBOX"],
          "gmail delta: archived mail moved back to the Inbox in Gmail is, after "
          "'migrate run -d', in INBOX and no longer in Archive",
          "it is in %s" % where(back))

def cmd_dedupe(path):
    """migrate_dedupe_across_folders=yes on Gmail: X-GM-MSGID tells one
    message in two labels (imported once) from two deliveries of the same
    mail (both kept)."""
    ms = model()
    by = {m["key"]: m for m in ms}
    got = load_boxes(path)
    where = lambda m: sorted(f for f, es in got.items() for e in es if e[0] == m["sha"])
    iw = by["inbox-work"]
    check(where(iw) == ["INBOX"],
          "gmail dedupe: a message labelled \\Inbox and Work is imported once, into INBOX "
          "(migrate_dedupe_across_folders, by X-GM-MSGID)", "it is in %s" % where(iw))
    d = by[DUP[0]]
    check(where(d) == ["Archive", "INBOX"],
          "gmail dedupe: the same mail delivered twice (own X-GM-MSGIDs, one archived) "
          "stays two messages: INBOX and Archive", "it is in %s" % where(d))

def cmd_plan(path):
    raw = open(path, "rb").read().decode("utf-8", "surrogateescape")
    try:
        rows = json.loads(raw)
    except ValueError as e:
        check(False, "gmail: plan -f json", "not JSON: %s: %r" % (e, raw[:200]))
        return
    by = {r.get("folder"): r for r in rows}
    bad = []
    am = by.get("[Gmail]/All Mail")
    if not am or am.get("dest") != "Archive" or \
            am.get("action") not in ("import", "import-unlabelled"):
        bad.append("All Mail: %r" % am)
    for f in ("[Gmail]/Important", "[Gmail]/Starred", "[Gmail]/Spam", "[Gmail]/Trash"):
        r = by.get(f)
        if not r or r.get("action") != "skip" or not r.get("reason"):
            bad.append("%s: %r" % (f, r))
    for f, d in (("INBOX", "INBOX"), ("[Gmail]/Sent Mail", "Sent"), ("[Gmail]/Drafts", "Drafts"),
                 ("Work", "Work"), ("Re&AOc-us", "Re\u00e7us"),
                 ("Projects/Alpha/Specs", "Projects/Alpha/Specs")):
        r = by.get(f)
        if not r or r.get("dest") != d or r.get("action") != "import":
            bad.append("%s: %r" % (f, r))
    check(not bad, "gmail: plan -f json: All Mail -> Archive (import), Important, Starred, "
          "Spam and Trash skipped with a reason, INBOX/labels/Sent Mail/Drafts imported",
          "; ".join(bad))
    for f in ("[Gmail]/All Mail", "[Gmail]/Important", "[Gmail]/Starred", "[Gmail]/Spam",
              "[Gmail]/Trash"):
        if f in by:
            print("INFO\tplan %s: %s %s (%s)" % (f, by[f].get("action"), by[f].get("dest"),
                                                 by[f].get("reason")))


def cmd_same_dumps(a, b):
    return 0 if load_json(a) == load_json(b) else 1


if __name__ == "__main__":
    sys.exit(main({
        "spec": cmd_spec, "selfcheck": cmd_selfcheck, "srcview": cmd_srcview,
        "dst": cmd_dst, "logcheck": cmd_logcheck, "mutate": cmd_mutate,
        "delta": cmd_delta, "dedupe": cmd_dedupe, "plan": cmd_plan,
        "same-dumps": cmd_same_dumps}))
