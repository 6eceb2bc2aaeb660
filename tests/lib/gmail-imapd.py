#!/usr/bin/env python3
"""A Gmail IMAP emulator for the dovecot-migrate tests (stdlib only).

It serves ONE Gmail-style account described by a JSON spec and behaves like
Gmail's IMAP front end ("Gimap") as far as a migration client can tell:
X-GM-EXT-1 (X-GM-MSGID, X-GM-THRID, X-GM-LABELS), labels shown as folders,
[Gmail]/All Mail holding every message that is neither in Trash nor in
Spam, the virtual [Gmail]/Important and [Gmail]/Starred folders, SPECIAL-USE
and XLIST attributes, CONDSTORE, ESEARCH, LIST-EXTENDED/LIST-STATUS,
AUTHENTICATE PLAIN (SASL-IR or continuation) and XOAUTH2, pipelining.

  gmail-imapd.py --spec SPEC.json --port-file F [--port 0] [--pid-file F]
                 [--max-lifetime 170] [--rawlog F]
                 [--system-labels quoted|atom] [--keep-current-label]
                 [--no-sasl-ir] [--no-gm-ext] [--max-conns 15]
  kill -HUP PID    reload the spec (see below)

The spec (paths are relative to the spec file's directory):

  {"user": "alice@gmail.com",           # optional; any user if absent
   "password": "secret",
   "oauth_token": "tok",                 # optional, for AUTH=XOAUTH2
   "labels": ["Empty label"],            # optional extra (empty) labels
   "unsubscribed": ["Work"],             # optional; all others subscribed
   "messages": [
     {"file": "corpus/x.eml",            # an RFC 822 message (bare LF -> CRLF)
      "labels": ["\\\\Inbox", "Work", "Projects/Alpha", "\\\\Important",
                 "\\\\Starred", "\\\\Sent", "\\\\Draft"],
      "flags": ["\\\\Seen"],
      "internaldate": "01-Jan-2020 10:00:00 +0000",
      "trash": false, "spam": false,
      "deleted": false,                  # expunged everywhere (for reloads)
      "msgid": 1234, "thrid": 1234}]}    # optional, else stable defaults

How it maps labels to folders (as Gmail does):
  INBOX              messages labelled \\Inbox
  <label>            one folder per user label, '/' is the hierarchy
                     separator; a parent that is not a label itself is still
                     a normal, selectable (empty) folder, as on Gmail
  [Gmail]            \\Noselect \\HasChildren
  [Gmail]/All Mail   \\All: every message not in Trash and not in Spam
  [Gmail]/Drafts     \\Drafts: label \\Draft
  [Gmail]/Important  \\Important: label \\Important
  [Gmail]/Sent Mail  \\Sent: label \\Sent
  [Gmail]/Spam       \\Junk: "spam": true (only there)
  [Gmail]/Starred    \\Flagged: label \\Starred (== the \\Flagged flag)
  [Gmail]/Trash      \\Trash: "trash": true (only there)
Every folder has its own UIDVALIDITY; UIDs are 1..n in spec order, except in
All Mail where they have gaps (2, 5, 8, ... by spec position) as on Gmail.
X-GM-MSGID / X-GM-THRID are stable per spec message, the same in every
folder. MODSEQs are account-wide.

X-GM-LABELS: Google's documentation ("IMAP Extensions", section "Access to
Gmail labels: X-GM-LABELS") says the attribute "is returned as a list of
ASTRINGs, encoded in UTF-7 as appropriate"; its example shows system labels
as bare \\Inbox \\Sent. The real service sends them as quoted strings
("\\\\Inbox"), which is the default here; --system-labels atom sends the
documentation's bare form instead. The documentation does not say whether
the selected folder's own label is listed; the real service omits it (e.g.
github.com/dlech/gmailbuttons issue #10: "The response from the server for
FETCH (X-GM-LABELS) does not include the selected folder"), and so does this
emulator, except in All Mail, Spam and Trash, which are not labels
(--keep-current-label lists it everywhere).

SIGHUP reloads the spec: changed labels/flags ("archived" = \\Inbox label
removed), new entries (new mail), "deleted": true (expunged everywhere), as
Gmail would show them: a message keeps its UID in a folder it stays in, a
message entering a folder gets the folder's UIDNEXT, new and changed
messages get new MODSEQs, UIDVALIDITY stays. The rawlog then says
"reloaded the spec (generation N)". The spec is the truth: a \\Seen set by
a client's FETCH (below) is forgotten unless the spec has it too.

The emulator is read-only for the mail store apart from what a client can
do by reading: a non-PEEK BODY[]/RFC822/BODY[TEXT] FETCH in a SELECTed
(read-write) folder sets \\Seen, as on Gmail. STORE, APPEND, COPY, MOVE,
EXPUNGE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE answer NO [CANNOT].
COMPRESS is advertised (as by Gmail) but answered NO. --no-sasl-ir drops
SASL-IR (AUTHENTICATE then goes through a continuation); --no-gm-ext drops
X-GM-EXT-1 (a Gmail-like server without Google's extensions: X-GM-* items
answer BAD).

Bounded: it exits after --max-lifetime seconds, serves at most --max-conns
connections at a time (Gmail's limit is 15), drops a connection after
--idle-timeout seconds of silence, on a line over 64 KiB or a literal over
1 MiB. An error inside a command handler answers BAD and keeps serving.
"""

import argparse
import base64
import datetime
import json
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback

MAX_LINE = 64 * 1024
MAX_LITERAL = 1024 * 1024
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

CAPS_COMMON = ("IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN "
               "X-GM-EXT-1")
CAPS_AUTHED = (CAPS_COMMON + " UIDPLUS COMPRESS=DEFLATE ENABLE MOVE CONDSTORE "
               "ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS LITERAL- "
               "SPECIAL-USE APPENDLIMIT=35651584")

# spec spelling (lower case) -> canonical Gmail system label
SYSTEM_LABELS = {
    "\\inbox": "\\Inbox", "inbox": "\\Inbox",
    "\\sent": "\\Sent",
    "\\draft": "\\Draft", "\\drafts": "\\Draft",
    "\\important": "\\Important",
    "\\starred": "\\Starred",
}
READ_ONLY_COMMANDS = {
    "STORE", "UID STORE", "APPEND", "COPY", "UID COPY", "MOVE", "UID MOVE",
    "EXPUNGE", "UID EXPUNGE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE",
    "UNSUBSCRIBE", "SETQUOTA", "SETACL", "DELETEACL",
}
FLAG_LIST = b"\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing"


class ProtocolError(Exception):
    """A client error: answered with a tagged BAD."""


class Drop(Exception):
    """Close the connection (after a BYE)."""


# ------------------------------------------------------------ helpers

# modified UTF-7 (RFC 3501 5.1.3): the test tools' own implementation
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imaptool import mutf7_encode, mutf7_decode  # noqa: E402
from serve_util import serve_until  # noqa: E402 (tests/lib)


LONE_LF = re.compile(rb"\r\n|\r(?!\n)|\n")


def crlf(data):
    return LONE_LF.sub(b"\r\n", data)


def parse_internaldate(s):
    m = re.match(r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) "
                 r"([+-])(\d\d)(\d\d)$", s)
    if not m or m.group(2).capitalize() not in MONTHS:
        raise ValueError("bad internaldate %r" % s)
    d, mon, y, hh, mm, ss, sign, zh, zm = m.groups()
    dt = datetime.datetime(int(y), MONTHS.index(mon.capitalize()) + 1, int(d),
                           int(hh), int(mm), int(ss),
                           tzinfo=datetime.timezone.utc)
    off = (int(zh) * 60 + int(zm)) * (1 if sign == "+" else -1)
    return int(dt.timestamp()) - off * 60


def parse_search_date(s):
    m = re.match(r"^(\d{1,2})-([A-Za-z]{3})-(\d{4})$", s)
    if not m or m.group(2).capitalize() not in MONTHS:
        raise ProtocolError("bad date %r" % s)
    return datetime.date(int(m.group(3)), MONTHS.index(m.group(2).capitalize()) + 1,
                         int(m.group(1)))


ATOM_SPECIALS = set(b'(){ %*"\\]')


def is_atom(data):
    return bool(data) and all(0x20 < b < 0x7f and b not in ATOM_SPECIALS
                              for b in data) and data.upper() != b"NIL"


def quote(data, utf8=False):
    """An IMAP string: quoted when possible, else a literal. 8-bit text
    goes in a quoted string only after ENABLE UTF8=ACCEPT (RFC 6855)."""
    if any(b in (0, 10, 13) or (b >= 0x80 and not utf8) for b in data):
        return b"{%d}\r\n" % len(data) + data
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def astring(data, utf8=False):
    return data if is_atom(data) else quote(data, utf8)


# ------------------------------------------------------------ account model

class Message:
    def __init__(self, index, body, labels, flags, internaldate, trash, spam,
                 msgid, thrid, modseq):
        self.index = index
        self.body = body
        self.labels = labels            # canonical: system + user (unicode)
        self.flags = flags              # list, spec order
        self.internaldate = internaldate
        self.trash = trash
        self.spam = spam
        self.msgid = msgid
        self.thrid = thrid
        self.modseq = modseq
        split = body.find(b"\r\n\r\n")
        self.header = body if split < 0 else body[:split + 2]
        self.text = b"" if split < 0 else body[split + 4:]

    def flag_set(self):
        return {f.lower() for f in self.flags}

    def state(self):
        """What a change of bumps the MODSEQ."""
        return (tuple(self.labels), tuple(sorted(self.flag_set())), self.trash,
                self.spam, getattr(self, "deleted", False))


class Folder:
    def __init__(self, name, special=None, xlist=None, label=None,
                 selectable=True):
        self.name = name                # unicode, '/'-separated
        self.special = special          # RFC 6154 attribute or None
        self.xlist = xlist              # XLIST attribute or None
        self.label = label              # the label omitted in X-GM-LABELS
        self.selectable = selectable
        self.entries = []               # [(uid, Message)] sorted by uid
        self.uidvalidity = 0
        self.uidnext = 1
        self.children = False
        self.subscribed = True

    def wire(self, utf8):
        if self.name.upper() == "INBOX":
            return b"INBOX"
        return self.name.encode("utf-8") if utf8 else \
            mutf7_encode(self.name).encode("ascii")


class Account:
    """The account; load() (again, on SIGHUP) builds it from the spec.

    A reload keeps what Gmail keeps: a message (spec entry, by position)
    keeps its UID in every folder it stays in, a folder keeps its
    UIDVALIDITY, a message that newly enters a folder gets the folder's
    UIDNEXT; every new or changed message (labels, flags, trash/spam,
    "deleted": true = expunged everywhere) gets a new MODSEQ. A client
    that has a folder selected keeps its snapshot until it selects again."""

    def __init__(self, spec_path, args):
        self.spec_path = spec_path
        self.lock = threading.Lock()
        self.generation = 0
        self.messages, self.folders = [], []
        self.highest_modseq = 4000
        self.load()

    def load(self):
        with open(self.spec_path, encoding="utf-8") as f:
            spec = json.load(f)
        if not isinstance(spec, dict) or not isinstance(spec.get("messages"), list):
            raise ValueError("spec: an object with a \"messages\" list expected")
        base = os.path.dirname(os.path.abspath(self.spec_path))
        if not isinstance(spec.get("password"), str):
            raise ValueError("spec: \"password\" (a string) is required")
        with self.lock:
            old_msgs = list(self.messages)
            old_folders = {f.name: f for f in self.folders}
            highest = self.highest_modseq
        messages = []
        user_labels = set()
        for i, m in enumerate(spec["messages"]):
            if not isinstance(m, dict) or not isinstance(m.get("file"), str):
                raise ValueError("spec message %d: \"file\" missing" % i)
            path = m["file"] if os.path.isabs(m["file"]) else os.path.join(base, m["file"])
            prev = old_msgs[i] if i < len(old_msgs) else None
            if prev is not None and prev.path != path:
                raise ValueError("spec message %d: its file changed (append a new "
                                 "entry instead)" % i)
            if prev is not None:
                body = prev.body
            else:
                with open(path, "rb") as f:
                    body = crlf(f.read())
            labels = []
            for lab in m.get("labels", []):
                if not isinstance(lab, str) or not lab or lab.strip("/") != lab \
                        or "//" in lab:
                    raise ValueError("spec message %d: bad label %r" % (i, lab))
                canon = SYSTEM_LABELS.get(lab.lower())
                if canon is None:
                    if lab.startswith("\\") or lab.upper() == "INBOX" or \
                            lab.split("/")[0] in ("[Gmail]", "[Google Mail]"):
                        raise ValueError("spec message %d: label %r is reserved" % (i, lab))
                    canon = lab
                if canon not in labels:
                    labels.append(canon)
            flags = []
            for fl in m.get("flags", []):
                if not isinstance(fl, str) or not re.match(r"^\\?[!#$&'+-Z^-z|~]+$", fl) \
                        or fl.lower() == "\\recent":
                    raise ValueError("spec message %d: bad flag %r" % (i, fl))
                if fl.lower() not in {x.lower() for x in flags}:
                    flags.append(fl)
            # starred <=> \Flagged, as on Gmail
            if "\\Starred" in labels and "\\flagged" not in {x.lower() for x in flags}:
                flags.append("\\Flagged")
            if "\\flagged" in {x.lower() for x in flags} and "\\Starred" not in labels:
                labels.append("\\Starred")
            idate = m.get("internaldate") or "01-Jan-2020 %02d:%02d:00 +0000" % (
                (i // 60) % 24, i % 60)
            parse_internaldate(idate)   # validates
            trash, spam = bool(m.get("trash")), bool(m.get("spam"))
            if trash and spam:
                raise ValueError("spec message %d: both trash and spam" % i)
            msgid = int(m.get("msgid") or 1600000000000000000 + i * 1000003 + 17)
            thrid = int(m.get("thrid") or msgid)
            if not (0 < msgid < 2 ** 64 and 0 < thrid < 2 ** 64):
                raise ValueError("spec message %d: msgid/thrid out of range" % i)
            msg = Message(i, body, labels, flags, idate, trash, spam, msgid, thrid, 0)
            msg.path = path
            msg.deleted = bool(m.get("deleted"))
            if prev is None and not old_msgs:
                msg.modseq = 4000 + 17 * i
            elif prev is not None and prev.state() == msg.state():
                msg.modseq = prev.modseq
            else:
                highest += 1
                msg.modseq = highest
            messages.append(msg)
            if not msg.deleted:
                user_labels.update(l for l in labels if not l.startswith("\\"))
        for lab in spec.get("labels", []):
            if not isinstance(lab, str) or not lab or lab.startswith("\\"):
                raise ValueError("spec: bad extra label %r" % (lab,))
            user_labels.add(lab)
        highest = max([highest] + [m.modseq for m in messages])

        # folders
        every = set()
        for lab in user_labels:
            parts = lab.split("/")
            for k in range(1, len(parts) + 1):
                every.add("/".join(parts[:k]))
        present = [m for m in messages if not m.deleted]
        live = [m for m in present if not m.trash and not m.spam]
        folders = [Folder("INBOX", label="\\Inbox")]
        folders[0].members = [m for m in live if "\\Inbox" in m.labels]
        for name in sorted(every):
            f = Folder(name, label=name)
            f.members = [m for m in live if name in m.labels]
            folders.append(f)
        gm = "[Gmail]"
        root = Folder(gm, selectable=False)
        root.members = []
        folders.append(root)
        for name, special, xlist, label, members in [
                ("All Mail", "\\All", "\\AllMail", None, live),
                ("Drafts", "\\Drafts", "\\Drafts", "\\Draft",
                 [m for m in live if "\\Draft" in m.labels]),
                ("Important", "\\Important", "\\Important", "\\Important",
                 [m for m in live if "\\Important" in m.labels]),
                ("Sent Mail", "\\Sent", "\\Sent", "\\Sent",
                 [m for m in live if "\\Sent" in m.labels]),
                ("Spam", "\\Junk", "\\Spam", None,
                 [m for m in present if m.spam]),
                ("Starred", "\\Flagged", "\\Starred", "\\Starred",
                 [m for m in live if "\\Starred" in m.labels]),
                ("Trash", "\\Trash", "\\Trash", None,
                 [m for m in present if m.trash])]:
            f = Folder(gm + "/" + name, special, xlist, label)
            f.members = members
            folders.append(f)
        unsub = set(spec.get("unsubscribed", []))
        names = {f.name for f in folders}
        next_validity = max([3] + [f.uidvalidity for f in old_folders.values()])
        for n, f in enumerate(folders):
            f.subscribed = f.name not in unsub
            f.children = any(o.startswith(f.name + "/") for o in names)
            step = 3 if f.name == "[Gmail]/All Mail" else 1
            old = old_folders.get(f.name)
            if not old_folders:
                # first load: 1..n, All Mail with gaps (2, 5, 8, ... by position)
                f.uidvalidity = 3 + 7 * n
                if step == 3:
                    f.entries = [(2 + 3 * m.index, m) for m in f.members]
                    f.uidnext = (f.entries[-1][0] + 4) if f.entries else 1
                else:
                    f.entries = [(k + 1, m) for k, m in enumerate(f.members)]
                    f.uidnext = len(f.entries) + 1
                continue
            if old is None:
                next_validity += 7
                f.uidvalidity, f.uidnext, had = next_validity, 1, {}
            else:
                f.uidvalidity, f.uidnext = old.uidvalidity, old.uidnext
                had = {m.index: uid for uid, m in old.entries}
            entries = []
            for m in f.members:
                uid = had.get(m.index)
                if uid is None:
                    uid = f.uidnext
                    f.uidnext += step
                entries.append((uid, m))
            f.entries = sorted(entries, key=lambda e: e[0])
        with self.lock:
            self.user = spec.get("user")
            self.password = spec["password"]
            self.oauth_token = spec.get("oauth_token")
            self.messages = messages
            self.folders = folders
            self.highest_modseq = highest
            self.generation += 1

    def find(self, wire, utf8):
        """The folder a client's mailbox argument names, or None."""
        try:
            name = wire.decode("utf-8") if utf8 else \
                mutf7_decode(wire.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return None
        if name.upper() == "INBOX":
            return self.folders[0]
        for f in self.folders:
            if f.name == name:
                return f
        return None


# ------------------------------------------------------------ parsing

class Atom(bytes):
    pass


class Str(bytes):
    pass


def tokenize(pieces):
    """Tokens of a command: Atom, Str (quoted or literal), lists."""
    stack = [[]]
    for piece in pieces:
        if isinstance(piece, tuple):
            stack[-1].append(Str(piece[1]))
            continue
        s, i = piece, 0
        while i < len(s):
            c = s[i]
            if c == 0x20:
                i += 1
            elif c == 0x28:  # (
                stack.append([])
                i += 1
            elif c == 0x29:  # )
                if len(stack) == 1:
                    raise ProtocolError("unbalanced )")
                lst = stack.pop()
                stack[-1].append(lst)
                i += 1
            elif c == 0x22:  # "
                j, out = i + 1, bytearray()
                while j < len(s) and s[j] != 0x22:
                    if s[j] == 0x5c and j + 1 < len(s):
                        j += 1
                    out.append(s[j])
                    j += 1
                if j >= len(s):
                    raise ProtocolError("unterminated quoted string")
                stack[-1].append(Str(bytes(out)))
                i = j + 1
            else:
                j, depth = i, 0
                while j < len(s):
                    ch = s[j]
                    if ch == 0x5b:      # [
                        depth += 1
                    elif ch == 0x5d and depth:
                        depth -= 1
                    elif depth == 0 and ch in b" ()":
                        break
                    j += 1
                stack[-1].append(Atom(s[i:j]))
                i = j
    if len(stack) != 1:
        raise ProtocolError("unbalanced (")
    return stack[0]


def want_string(tok, what="argument"):
    if isinstance(tok, (Atom, Str)):
        return bytes(tok)
    raise ProtocolError("%s: a string expected" % what)


def parse_set(text):
    """'1:3,5,7:*' -> [(lo, hi)] with '*' as None."""
    if not isinstance(text, bytes) or not re.match(rb"^[0-9*:,]+$", text):
        raise ProtocolError("bad sequence set")
    out = []
    for part in text.split(b","):
        lo, sep, hi = part.partition(b":")
        vals = []
        for v in ([lo, hi] if sep else [lo]):
            if v == b"*":
                vals.append(None)
            elif v.isdigit() and 0 < int(v) < 2 ** 32:
                vals.append(int(v))
            else:
                raise ProtocolError("bad sequence set")
        out.append((vals[0], vals[-1]))
    return out


def section_headers(header, names, negate):
    """Dovecot-like HEADER.FIELDS: the matching lines (with their
    continuation lines) in message order, then the empty line."""
    want = {n.lower() for n in names}
    out, keep = [], False
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        keep = (name in want) != negate
        if keep:
            out.append(line)
    return b"".join(l + b"\r\n" for l in out) + b"\r\n"


# ------------------------------------------------------------ connection

class Conn:
    def __init__(self, sock, server, cid):
        self.sock = sock
        self.srv = server
        self.acct = server.acct
        self.args = server.args
        self.cid = cid
        self.buf = b""
        self.authed = False
        self.selected = None
        self.readonly = True
        self.condstore = False
        self.utf8 = False

    # ---- I/O
    def log(self, direction, data):
        self.srv.log(self.cid, direction, data)

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("client closed the connection")
        self.buf += data

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                if i > MAX_LINE:
                    break
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line.rstrip(b"\r\n")
            if len(self.buf) > MAX_LINE:
                break
            self.fill()
        self.send(b"* BYE line too long (Failure)\r\n")
        raise Drop("line too long")

    def readn(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_command(self):
        pieces = []
        total = 0
        while True:
            line = self.readline()
            total += len(line)
            m = re.search(rb"\{(\d{1,10})(\+?)\}$", line)
            if not m:
                pieces.append(line)
                self.log_command(pieces)
                return pieces
            n = int(m.group(1))
            if n > MAX_LITERAL or total + n > 4 * MAX_LITERAL:
                self.send(b"* BYE literal too large (Failure)\r\n")
                raise Drop("literal too large")
            pieces.append(line[:m.start()])
            if not m.group(2):
                self.send(b"+ go ahead\r\n")
            pieces.append(("lit", self.readn(n)))
            total += n

    def log_command(self, pieces):
        first = pieces[0] if pieces else b""
        if re.match(rb"^\S+ (LOGIN|AUTHENTICATE)\b", first, re.I):
            parts = first.split(b" ")
            keep = 3 if parts[1].upper() == b"AUTHENTICATE" else 2
            self.log("C", b" ".join(parts[:keep]) + b" <credentials not logged>")
            return
        out = b""
        for p in pieces:
            out += (b"{%d}<literal>" % len(p[1])) if isinstance(p, tuple) else p
        self.log("C", out)

    def send(self, data):
        self.log("S", data)
        self.sock.sendall(data)

    # ---- main loop
    def run(self):
        self.send(b"* OK Gimap ready for requests from 127.0.0.1 emu%d (Success)\r\n"
                  % self.cid)
        while True:
            pieces = self.read_command()
            first = pieces[0].split(b" ", 1)[0] if pieces and \
                not isinstance(pieces[0], tuple) else b""
            tag = first if re.match(rb"^[!#$&'+-Z^-z|~]+$", first) else b"*"
            try:
                toks = tokenize(pieces)
                if len(toks) < 2 or not isinstance(toks[0], Atom) or \
                        not isinstance(toks[1], Atom) or \
                        not re.match(rb"^[!#$&'+-Z^-z|~]+$", toks[0]):
                    self.send(b"* BAD Could not parse command\r\n")
                    continue
                tag = bytes(toks[0])
                cmd = toks[1].decode("ascii", "replace").upper()
                args = toks[2:]
                if cmd == "UID":
                    if not args or not isinstance(args[0], Atom):
                        raise ProtocolError("UID what?")
                    cmd = "UID " + args[0].decode("ascii", "replace").upper()
                    args = args[1:]
                out = self.dispatch(tag, cmd, args, pieces)
            except ProtocolError as e:
                out = tag + b" BAD " + str(e).encode() + b" (Failure)\r\n"
            except (Drop, EOFError, OSError):
                raise
            except Exception:
                sys.stderr.write("gmail-imapd: error in %r\n%s" % (
                    pieces[:1], traceback.format_exc()))
                out = tag + b" BAD internal emulator error (Failure)\r\n"
            if out:
                self.send(out)
            if getattr(self, "logout", False):
                raise Drop("logout")

    def dispatch(self, tag, cmd, args, pieces):
        self.cur_cmd = cmd.encode()
        anystate = {"CAPABILITY": self.c_capability, "NOOP": self.c_noop,
                    "LOGOUT": self.c_logout, "ID": self.c_id}
        if cmd in anystate:
            return anystate[cmd](tag, args)
        if cmd == "COMPRESS":
            return tag + b" NO COMPRESS is not implemented by this emulator (Failure)\r\n"
        if cmd == "STARTTLS":
            return tag + b" BAD STARTTLS is not offered here (Failure)\r\n"
        if not self.authed:
            if cmd == "LOGIN":
                return self.c_login(tag, args)
            if cmd == "AUTHENTICATE":
                return self.c_authenticate(tag, args)
            if cmd in self.handlers() or cmd in READ_ONLY_COMMANDS:
                return tag + b" BAD Command received in Invalid state. (Failure)\r\n"
            return tag + b" BAD Unknown command (Failure)\r\n"
        if cmd in ("LOGIN", "AUTHENTICATE"):
            return tag + b" BAD Command received in Invalid state. (Failure)\r\n"
        if cmd in READ_ONLY_COMMANDS:
            return tag + b" NO [CANNOT] this Gmail emulator is read-only (Failure)\r\n"
        h = self.handlers().get(cmd)
        if h is None:
            return tag + b" BAD Unknown command (Failure)\r\n"
        if cmd in ("FETCH", "UID FETCH", "SEARCH", "UID SEARCH", "CLOSE",
                   "UNSELECT", "CHECK") and self.selected is None:
            return tag + b" BAD No mailbox selected. (Failure)\r\n"
        return h(tag, args)

    def handlers(self):
        return {"ENABLE": self.c_enable, "NAMESPACE": self.c_namespace,
                "LIST": self.c_list, "XLIST": self.c_list, "LSUB": self.c_lsub,
                "STATUS": self.c_status, "SELECT": self.c_select,
                "EXAMINE": self.c_select, "CLOSE": self.c_close,
                "UNSELECT": self.c_close, "CHECK": self.c_noop,
                "FETCH": self.c_fetch, "UID FETCH": self.c_fetch,
                "SEARCH": self.c_search, "UID SEARCH": self.c_search,
                "IDLE": self.c_idle, "GETQUOTAROOT": self.c_getquotaroot,
                "GETQUOTA": self.c_getquota}

    # ---- any state
    def caps(self):
        if self.authed:
            caps = CAPS_AUTHED
        else:
            caps = CAPS_COMMON + ("" if self.args.no_sasl_ir else " SASL-IR") + \
                " AUTH=XOAUTH2 AUTH=PLAIN"
        if self.args.no_gm_ext:
            caps = caps.replace(" X-GM-EXT-1", "")
        return caps.encode()

    def c_capability(self, tag, args):
        return b"* CAPABILITY " + self.caps() + b"\r\n" + tag + b" OK Thats all she wrote! (Success)\r\n"

    def c_noop(self, tag, args):
        return tag + b" OK Success\r\n"

    def c_logout(self, tag, args):
        self.logout = True
        return b"* BYE LOGOUT Requested\r\n" + tag + b" OK 73 good day (Success)\r\n"

    def c_id(self, tag, args):
        return (b'* ID ("name" "GImap" "vendor" "Google, Inc." "support-url" '
                b'"https://support.google.com/mail" "remote-host" "127.0.0.1")\r\n'
                + tag + b" OK Success\r\n")

    # ---- authentication
    def user_ok(self, user):
        want = self.acct.user
        if want is None:
            return True
        user = user.lower()
        return user == want.lower() or user + "@gmail.com" == want.lower()

    def logged_in(self, tag, user):
        self.authed = True
        self.user = user
        return (b"* CAPABILITY " + self.caps() + b"\r\n" + tag + b" OK " +
                user.encode("utf-8", "replace") + b" authenticated (Success)\r\n")

    def auth_failed(self, tag):
        time.sleep(0.05)
        return tag + b" NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"

    def c_login(self, tag, args):
        if len(args) != 2 or isinstance(args[0], list) or isinstance(args[1], list):
            raise ProtocolError("LOGIN user password")
        user = bytes(args[0]).decode("utf-8", "replace")
        pw = bytes(args[1]).decode("utf-8", "replace")
        if self.user_ok(user) and pw == self.acct.password:
            return self.logged_in(tag, user)
        return self.auth_failed(tag)

    def sasl_response(self, initial):
        """The client's (base64-decoded) response: the initial one, or
        one read after a continuation."""
        if initial is None:
            self.send(b"+ \r\n")
            line = self.readline()
            self.log("C", b"<SASL response not logged>")
            if line == b"*":
                raise ProtocolError("AUTHENTICATE cancelled")
            data = line
        else:
            data = initial
        if data == b"=":
            return b""
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            raise ProtocolError("invalid base64 in SASL response")

    def c_authenticate(self, tag, args):
        if not args or not isinstance(args[0], Atom) or len(args) > 2:
            raise ProtocolError("AUTHENTICATE mechanism [initial-response]")
        mech = args[0].upper()
        initial = bytes(args[1]) if len(args) == 2 else None
        if initial is not None and self.args.no_sasl_ir:
            raise ProtocolError("SASL-IR is not offered")
        if mech == b"PLAIN":
            resp = self.sasl_response(initial)
            parts = resp.split(b"\0")
            if len(parts) != 3:
                return self.auth_failed(tag)
            authz, authc, pw = (p.decode("utf-8", "replace") for p in parts)
            if authz and authz != authc:
                return self.auth_failed(tag)      # no master users on Gmail
            if self.user_ok(authc) and pw == self.acct.password:
                return self.logged_in(tag, authc)
            return self.auth_failed(tag)
        if mech == b"XOAUTH2":
            resp = self.sasl_response(initial)
            m = re.match(rb"^user=([^\x01]*)\x01auth=Bearer ([^\x01]*)\x01\x01$", resp)
            if m and self.acct.oauth_token is not None and \
                    self.user_ok(m.group(1).decode("utf-8", "replace")) and \
                    m.group(2).decode("utf-8", "replace") == self.acct.oauth_token:
                return self.logged_in(tag, m.group(1).decode("utf-8", "replace"))
            err = base64.b64encode(json.dumps({
                "status": "400", "schemes": "Bearer",
                "scope": "https://mail.google.com/"}).encode())
            self.send(b"+ " + err + b"\r\n")
            self.readline()              # the client's empty answer
            self.log("C", b"<SASL response not logged>")
            return self.auth_failed(tag)
        return tag + b" NO Unsupported AUTHENTICATE mechanism. (Failure)\r\n"

    # ---- authenticated state
    def c_enable(self, tag, args):
        done = []
        for a in args:
            if not isinstance(a, Atom):
                raise ProtocolError("ENABLE capability...")
            if a.upper() == b"CONDSTORE":
                self.condstore = True
                done.append(b"CONDSTORE")
            elif a.upper() == b"UTF8=ACCEPT":
                self.utf8 = True
                done.append(b"UTF8=ACCEPT")
        out = (b"* ENABLED " + b" ".join(done) + b"\r\n") if done else b"* ENABLED\r\n"
        return out + tag + b" OK Success\r\n"

    def c_namespace(self, tag, args):
        return b'* NAMESPACE (("" "/")) NIL NIL\r\n' + tag + b" OK Success\r\n"

    def c_getquotaroot(self, tag, args):
        if len(args) != 1:
            raise ProtocolError("GETQUOTAROOT mailbox")
        mbox = want_string(args[0], "mailbox")
        used = sum(len(m.body) for m in self.acct.messages) // 1024
        return (b"* QUOTAROOT " + quote(mbox) + b' ""\r\n'
                b'* QUOTA "" (STORAGE %d 15728640)\r\n' % used +
                tag + b" OK Success\r\n")

    def c_getquota(self, tag, args):
        used = sum(len(m.body) for m in self.acct.messages) // 1024
        return b'* QUOTA "" (STORAGE %d 15728640)\r\n' % used + tag + b" OK Success\r\n"

    def folder_attrs(self, f, xlist, special_use=True, children=True):
        attrs = []
        if xlist and f.name == "INBOX":
            attrs.append(b"\\Inbox")
        if not f.selectable:
            attrs.append(b"\\Noselect")
        if children:
            attrs.append(b"\\HasChildren" if f.children else b"\\HasNoChildren")
        if xlist and f.xlist:
            attrs.append(f.xlist.encode())
        elif special_use and not xlist and f.special:
            attrs.append(f.special.encode())
        return attrs

    @staticmethod
    def pattern_re(pattern):
        """(case-sensitive, case-insensitive) regexes of a LIST pattern;
        the second one is for INBOX, whose name is case-insensitive."""
        out = ""
        for ch in pattern.decode("utf-8", "surrogateescape"):
            out += ".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch)
        return (re.compile("^" + out + "$", re.S),
                re.compile("^" + out + "$", re.S | re.I))

    def matches(self, f, rx):
        if f.name == "INBOX":
            return bool(rx[1].match("INBOX"))
        return bool(rx[0].match(f.wire(self.utf8).decode("utf-8", "surrogateescape")))

    def c_list(self, tag, args):
        xlist = self.cur_cmd == b"XLIST"
        name = b"XLIST" if xlist else b"LIST"
        args = list(args)
        select_opts = []
        if args and isinstance(args[0], list):
            select_opts = [bytes(o).upper() for o in args.pop(0)]
        if len(args) < 2:
            raise ProtocolError("LIST reference pattern")
        ref = want_string(args[0], "reference")
        pats = args[1] if isinstance(args[1], list) else [args[1]]
        pats = [want_string(p, "pattern") for p in pats]
        ret_opts, status_items = [], None
        rest = args[2:]
        if rest:
            if len(rest) != 2 or not isinstance(rest[0], Atom) or \
                    rest[0].upper() != b"RETURN" or not isinstance(rest[1], list):
                raise ProtocolError("LIST ... RETURN (options)")
            it = iter(rest[1])
            for o in it:
                if isinstance(o, list):
                    raise ProtocolError("bad RETURN option")
                o = bytes(o).upper()
                if o == b"STATUS":
                    status_items = next(it, None)
                    if not isinstance(status_items, list):
                        raise ProtocolError("RETURN (STATUS (items))")
                ret_opts.append(o)
        only_subscribed = b"SUBSCRIBED" in select_opts
        want_subscribed = only_subscribed or b"SUBSCRIBED" in ret_opts
        out = []
        if len(pats) == 1 and pats[0] == b"":
            out.append(b"* " + name + b' (\\Noselect) "/" ""\r\n')
            return b"".join(out) + tag + b" OK Success\r\n"
        rxs = [self.pattern_re(ref + p) for p in pats]
        for f in self.acct.folders:
            if not any(self.matches(f, rx) for rx in rxs):
                continue
            if only_subscribed and not f.subscribed:
                continue
            attrs = self.folder_attrs(f, xlist)
            if want_subscribed and f.subscribed:
                attrs.append(b"\\Subscribed")
            out.append(b"* " + name + b" (" + b" ".join(attrs) + b') "/" ' +
                       quote(f.wire(self.utf8), self.utf8) + b"\r\n")
            if status_items is not None and f.selectable:
                out.append(self.status_line(f, status_items))
        return b"".join(out) + tag + b" OK Success\r\n"

    def c_lsub(self, tag, args):
        if len(args) != 2:
            raise ProtocolError("LSUB reference pattern")
        ref = want_string(args[0], "reference")
        pat = want_string(args[1], "pattern")
        rx = self.pattern_re(ref + pat)
        out = []
        for f in self.acct.folders:
            if f.subscribed and self.matches(f, rx):
                out.append(b"* LSUB (" + b" ".join(self.folder_attrs(f, False)) +
                           b') "/" ' + quote(f.wire(self.utf8), self.utf8) + b"\r\n")
        return b"".join(out) + tag + b" OK Success\r\n"

    def unseen(self, f):
        return sum(1 for _, m in f.entries if "\\seen" not in m.flag_set())

    def status_line(self, f, items):
        vals = []
        for it in items:
            if isinstance(it, list):
                raise ProtocolError("bad STATUS item")
            it = bytes(it).upper()
            if it == b"MESSAGES":
                v = len(f.entries)
            elif it == b"RECENT":
                v = 0
            elif it == b"UIDNEXT":
                v = f.uidnext
            elif it == b"UIDVALIDITY":
                v = f.uidvalidity
            elif it == b"UNSEEN":
                v = self.unseen(f)
            elif it == b"HIGHESTMODSEQ":
                self.condstore = True
                v = self.acct.highest_modseq
            else:
                raise ProtocolError("unknown STATUS item %s" % it.decode("ascii", "replace"))
            vals.append(b"%s %d" % (it, v))
        return b"* STATUS " + quote(f.wire(self.utf8), self.utf8) + b" (" + b" ".join(vals) + b")\r\n"

    def c_status(self, tag, args):
        if len(args) != 2 or not isinstance(args[1], list):
            raise ProtocolError("STATUS mailbox (items)")
        mbox = want_string(args[0], "mailbox")
        f = self.acct.find(mbox, self.utf8)
        if f is None or not f.selectable:
            return tag + b" NO [NONEXISTENT] Unknown Mailbox: " + \
                mbox.replace(b"\r", b"").replace(b"\n", b"") + b" (Failure)\r\n"
        with self.acct.lock:
            return self.status_line(f, args[1]) + tag + b" OK Success\r\n"

    def c_select(self, tag, args):
        examine = self.cur_cmd == b"EXAMINE"
        self.selected = None
        if not args or len(args) > 2:
            raise ProtocolError("SELECT mailbox [(CONDSTORE)]")
        if len(args) == 2:
            if not isinstance(args[1], list) or \
                    [bytes(x).upper() for x in args[1] if not isinstance(x, list)] != [b"CONDSTORE"]:
                raise ProtocolError("only the CONDSTORE select parameter is supported")
            self.condstore = True
        mbox = want_string(args[0], "mailbox")
        f = self.acct.find(mbox, self.utf8)
        if f is None or not f.selectable:
            return tag + b" NO [NONEXISTENT] Unknown Mailbox: " + \
                mbox.replace(b"\r", b"").replace(b"\n", b"") + b" (Failure)\r\n"
        self.selected = f
        self.readonly = examine
        with self.acct.lock:
            out = (b"* FLAGS (" + FLAG_LIST + b")\r\n"
                   b"* OK [PERMANENTFLAGS (" + (b"" if examine else FLAG_LIST + b" \\*") +
                   b")] Flags permitted.\r\n"
                   b"* OK [UIDVALIDITY %d] UIDs valid.\r\n"
                   b"* %d EXISTS\r\n* 0 RECENT\r\n"
                   b"* OK [UIDNEXT %d] Predicted next UID.\r\n"
                   b"* OK [HIGHESTMODSEQ %d]\r\n" % (
                       f.uidvalidity, len(f.entries), f.uidnext,
                       self.acct.highest_modseq))
        return out + tag + (b" OK [READ-ONLY] " if examine else b" OK [READ-WRITE] ") + \
            f.wire(self.utf8).replace(b"\r", b"").replace(b"\n", b"") + b" selected. (Success)\r\n"

    def c_close(self, tag, args):
        self.selected = None
        return tag + b" OK Returned to authenticated state. (Success)\r\n"

    def c_idle(self, tag, args):
        self.send(b"+ idling\r\n")
        while True:
            line = self.readline()
            self.log("C", line)
            if line.strip().upper() == b"DONE":
                return tag + b" OK IDLE terminated (Success)\r\n"

    # ---- selected state
    def resolve(self, text, uid_mode):
        """[(seq, uid, msg)] in sequence order."""
        f = self.selected
        ranges = parse_set(text)
        entries = f.entries
        if uid_mode:
            top = entries[-1][0] if entries else 0
            out = []
            for seq, (uid, m) in enumerate(entries, 1):
                for lo, hi in ranges:
                    lo = top if lo is None else lo
                    hi = top if hi is None else hi
                    if min(lo, hi) <= uid <= max(lo, hi):
                        out.append((seq, uid, m))
                        break
            return out
        n = len(entries)
        picked = set()
        for lo, hi in ranges:
            lo = n if lo is None else lo
            hi = n if hi is None else hi
            if n == 0 or max(lo, hi) > n or min(lo, hi) < 1:
                raise ProtocolError("Invalid sequence number")
            picked.update(range(min(lo, hi), max(lo, hi) + 1))
        return [(s, entries[s - 1][0], entries[s - 1][1]) for s in sorted(picked)]

    def labels_for(self, m):
        out = []
        system = sorted(l for l in m.labels if l.startswith("\\"))
        user = sorted(l for l in m.labels if not l.startswith("\\"))
        for lab in system + user:
            if lab == self.selected.label and not self.args.keep_current_label:
                continue
            if lab.startswith("\\"):
                out.append(lab.encode() if self.args.system_labels == "atom"
                           else quote(lab.encode()))
            else:
                raw = lab.encode("utf-8") if self.utf8 else mutf7_encode(lab).encode()
                out.append(astring(raw, self.utf8))
        return b"(" + b" ".join(out) + b")"

    def flags_of(self, m):
        return b"(" + b" ".join(f.encode() for f in m.flags) + b")"

    FETCH_ATTR = re.compile(
        rb"^(BODY|BODY\.PEEK|BINARY\.PEEK|BINARY)\[([^\]]*)\](?:<(\d+)(?:\.(\d+))?>)?$", re.I)

    def parse_fetch_items(self, spec):
        if isinstance(spec, list):
            items = spec
        else:
            items = [spec]
        macros = {b"FAST": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"],
                  b"ALL": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"],
                  b"FULL": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY"]}
        out = []
        for it in items:
            if not isinstance(it, Atom):
                raise ProtocolError("bad FETCH item")
            up = bytes(it).upper()
            if not isinstance(spec, list) and up in macros:
                out.extend(macros[up])
                continue
            out.append(bytes(it))
        parsed = []
        for it in out:
            up = it.upper()
            if up.startswith(b"X-GM-") and self.args.no_gm_ext:
                raise ProtocolError("FETCH item %s: X-GM-EXT-1 is switched off (--no-gm-ext)"
                                    % it[:30].decode("ascii", "replace"))
            if up in (b"UID", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"MODSEQ",
                      b"X-GM-MSGID", b"X-GM-THRID", b"X-GM-LABELS", b"RFC822",
                      b"RFC822.HEADER", b"RFC822.TEXT"):
                parsed.append((up, None))
                continue
            m = self.FETCH_ATTR.match(it)
            if not m or m.group(1).upper().startswith(b"BINARY"):
                raise ProtocolError("FETCH item %s is not implemented by this emulator"
                                    % it[:60].decode("ascii", "replace"))
            sec = m.group(2)
            sm = re.match(rb"^(HEADER\.FIELDS(?:\.NOT)?) \(([^()]*)\)$", sec, re.I)
            if sm:
                names = sm.group(2).split()
                if not names:
                    raise ProtocolError("empty HEADER.FIELDS list")
                kind = (sm.group(1).upper(), names)
            elif sec.upper() in (b"", b"HEADER", b"TEXT"):
                kind = (sec.upper(), None)
            else:
                raise ProtocolError("BODY[%s] is not implemented by this emulator"
                                    % sec[:40].decode("ascii", "replace"))
            partial = None
            if m.group(3) is not None:
                partial = (int(m.group(3)), None if m.group(4) is None else int(m.group(4)))
            peek = m.group(1).upper() == b"BODY.PEEK"
            parsed.append((b"BODY", (kind, sec, partial, peek)))
        return parsed

    def c_fetch(self, tag, args):
        uid_mode = self.cur_cmd == b"UID FETCH"
        if len(args) not in (2, 3):
            raise ProtocolError("FETCH set items [(modifiers)]")
        if not isinstance(args[0], Atom):
            raise ProtocolError("bad sequence set")
        items = self.parse_fetch_items(args[1])
        changedsince = None
        if len(args) == 3:
            mods = args[2]
            if not isinstance(mods, list) or len(mods) != 2 or \
                    not isinstance(mods[0], Atom) or mods[0].upper() != b"CHANGEDSINCE" or \
                    not isinstance(mods[1], Atom) or not mods[1].isdigit():
                raise ProtocolError("only the CHANGEDSINCE modifier is supported")
            changedsince = int(mods[1])
            self.condstore = True
        if any(k == b"MODSEQ" for k, _ in items):
            self.condstore = True
        hits = self.resolve(bytes(args[0]), uid_mode)
        out = []
        with self.acct.lock:
            for seq, uid, m in hits:
                # CHANGEDSINCE: every message counts as changed
                parts, names = [], set()
                set_seen = False
                if uid_mode and not any(k == b"UID" for k, _ in items):
                    parts.append(b"UID %d" % uid)
                    names.add(b"UID")
                for key, arg in items:
                    if key == b"UID":
                        parts.append(b"UID %d" % uid)
                    elif key == b"FLAGS":
                        parts.append(b"FLAGS " + self.flags_of(m))
                    elif key == b"INTERNALDATE":
                        parts.append(b'INTERNALDATE "' + m.internaldate.encode() + b'"')
                    elif key == b"RFC822.SIZE":
                        parts.append(b"RFC822.SIZE %d" % len(m.body))
                    elif key == b"MODSEQ":
                        parts.append(b"MODSEQ (%d)" % m.modseq)
                    elif key == b"X-GM-MSGID":
                        parts.append(b"X-GM-MSGID %d" % m.msgid)
                    elif key == b"X-GM-THRID":
                        parts.append(b"X-GM-THRID %d" % m.thrid)
                    elif key == b"X-GM-LABELS":
                        parts.append(b"X-GM-LABELS " + self.labels_for(m))
                    elif key == b"RFC822":
                        parts.append(b"RFC822 " + quote_literal(m.body))
                        set_seen = True
                    elif key == b"RFC822.HEADER":
                        parts.append(b"RFC822.HEADER " + quote_literal(m.header + b"\r\n"))
                    elif key == b"RFC822.TEXT":
                        parts.append(b"RFC822.TEXT " + quote_literal(m.text))
                        set_seen = True
                    else:
                        (kind, names_), sec, partial, peek = arg
                        if kind == b"":
                            data = m.body
                        elif kind == b"HEADER":
                            data = m.header + b"\r\n"
                        elif kind == b"TEXT":
                            data = m.text
                        else:
                            data = section_headers(m.header, names_,
                                                   kind.endswith(b".NOT"))
                        label = b"BODY[" + sec + b"]"
                        if partial is not None:
                            start, length = partial
                            data = data[start:] if length is None else data[start:start + length]
                            label += b"<%d>" % start
                        parts.append(label + b" " + quote_literal(data))
                        if not peek:
                            set_seen = True
                if set_seen and not self.readonly and "\\seen" not in m.flag_set():
                    m.flags.append("\\Seen")
                    self.acct.highest_modseq += 1
                    m.modseq = self.acct.highest_modseq
                    if not any(k == b"FLAGS" for k, _ in items):
                        parts.append(b"FLAGS " + self.flags_of(m))
                if self.condstore and (changedsince is not None or
                                       any(k == b"FLAGS" for k, _ in items)) and \
                        not any(k == b"MODSEQ" for k, _ in items):
                    parts.append(b"MODSEQ (%d)" % m.modseq)
                out.append(b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n")
        return b"".join(out) + tag + b" OK Success\r\n"

    # ---- SEARCH
    def parse_search(self, toks, pos, uid_mode):
        """One search key at toks[pos]: (predicate, next pos)."""
        if pos >= len(toks):
            raise ProtocolError("search key missing")
        t = toks[pos]
        if isinstance(t, list):
            preds, p = [], 0
            while p < len(t):
                pr, p = self.parse_search(t, p, uid_mode)
                preds.append(pr)
            return (lambda s, u, m: all(x(s, u, m) for x in preds)), pos + 1
        if not isinstance(t, Atom):
            raise ProtocolError("bad search key")
        k = bytes(t).upper()

        def arg(n=1):
            if pos + n >= len(toks) or isinstance(toks[pos + n], list):
                raise ProtocolError("search key %s needs an argument" % k.decode())
            return bytes(toks[pos + n])

        flagkeys = {b"SEEN": ("\\seen", True), b"UNSEEN": ("\\seen", False),
                    b"FLAGGED": ("\\flagged", True), b"UNFLAGGED": ("\\flagged", False),
                    b"ANSWERED": ("\\answered", True), b"UNANSWERED": ("\\answered", False),
                    b"DELETED": ("\\deleted", True), b"UNDELETED": ("\\deleted", False),
                    b"DRAFT": ("\\draft", True), b"UNDRAFT": ("\\draft", False)}
        if k == b"ALL":
            return (lambda s, u, m: True), pos + 1
        if k in (b"NEW", b"RECENT"):
            return (lambda s, u, m: False), pos + 1
        if k == b"OLD":
            return (lambda s, u, m: True), pos + 1
        if k in flagkeys:
            fl, want = flagkeys[k]
            return (lambda s, u, m: (fl in m.flag_set()) == want), pos + 1
        if k in (b"KEYWORD", b"UNKEYWORD"):
            kw, want = arg().decode("utf-8", "replace").lower(), k == b"KEYWORD"
            return (lambda s, u, m: (kw in m.flag_set()) == want), pos + 2
        if k == b"NOT":
            pr, p = self.parse_search(toks, pos + 1, uid_mode)
            return (lambda s, u, m: not pr(s, u, m)), p
        if k == b"OR":
            a, p = self.parse_search(toks, pos + 1, uid_mode)
            b, p = self.parse_search(toks, p, uid_mode)
            return (lambda s, u, m: a(s, u, m) or b(s, u, m)), p
        if k == b"UID":
            hits = {u for _, u, _ in self.resolve(arg(), True)}
            return (lambda s, u, m: u in hits), pos + 2
        if re.match(rb"^[0-9*:,]+$", k):
            hits = {s for s, _, _ in self.resolve(k, False)}
            return (lambda s, u, m: s in hits), pos + 1
        if k.startswith(b"X-GM-") and self.args.no_gm_ext:
            raise ProtocolError("X-GM-EXT-1 is switched off (--no-gm-ext)")
        if k in (b"X-GM-MSGID", b"X-GM-THRID"):
            v = arg()
            if not v.isdigit():
                raise ProtocolError("number expected")
            v = int(v)
            attr = "msgid" if k == b"X-GM-MSGID" else "thrid"
            return (lambda s, u, m: getattr(m, attr) == v), pos + 2
        if k == b"X-GM-LABELS":
            raw = arg()
            lab = raw.decode("utf-8", "replace")
            if not self.utf8:
                try:
                    lab = mutf7_decode(lab)
                except ValueError:
                    pass
            lab = SYSTEM_LABELS.get(lab.lower(), lab)
            return (lambda s, u, m: lab in m.labels), pos + 2
        if k == b"X-GM-RAW":
            raise ProtocolError("X-GM-RAW is not implemented by this emulator")
        if k == b"MODSEQ":
            v = arg()
            if not v.isdigit():
                raise ProtocolError("MODSEQ number expected")
            self.condstore = True
            self.search_modseq = True
            v = int(v)
            return (lambda s, u, m: m.modseq >= v), pos + 2
        if k in (b"LARGER", b"SMALLER"):
            v = arg()
            if not v.isdigit():
                raise ProtocolError("number expected")
            v, larger = int(v), k == b"LARGER"
            return (lambda s, u, m: len(m.body) > v if larger else len(m.body) < v), pos + 2
        if k in (b"BEFORE", b"ON", b"SINCE", b"SENTBEFORE", b"SENTON", b"SENTSINCE"):
            d = parse_search_date(arg().decode("ascii", "replace"))
            op = k.replace(b"SENT", b"")

            def datecmp(s, u, m, d=d, op=op):
                md = datetime.datetime.fromtimestamp(
                    parse_internaldate(m.internaldate), datetime.timezone.utc).date()
                return md < d if op == b"BEFORE" else md == d if op == b"ON" else md >= d
            return datecmp, pos + 2
        if k in (b"SUBJECT", b"FROM", b"TO", b"CC", b"BCC"):
            needle = arg().lower()
            field = k.lower()
            return (lambda s, u, m: needle in section_headers(
                m.header, [field], False).lower()), pos + 2
        if k == b"HEADER":
            field, needle = arg(1).lower(), arg(2).lower()
            return (lambda s, u, m: needle in section_headers(
                m.header, [field], False).lower()), pos + 3
        if k in (b"BODY", b"TEXT"):
            needle = arg().lower()
            whole = k == b"TEXT"
            return (lambda s, u, m: needle in (m.body if whole else m.text).lower()), pos + 2
        raise ProtocolError("unknown search key %s" % k[:30].decode("ascii", "replace"))

    def c_search(self, tag, args):
        uid_mode = self.cur_cmd == b"UID SEARCH"
        toks = list(args)
        ret = None
        if len(toks) >= 2 and isinstance(toks[0], Atom) and toks[0].upper() == b"RETURN":
            if not isinstance(toks[1], list):
                raise ProtocolError("RETURN (options)")
            ret = [bytes(x).upper() for x in toks[1] if not isinstance(x, list)] or [b"ALL"]
            for r in ret:
                if r not in (b"MIN", b"MAX", b"ALL", b"COUNT"):
                    raise ProtocolError("unknown RETURN option")
            toks = toks[2:]
        if len(toks) >= 2 and isinstance(toks[0], Atom) and toks[0].upper() == b"CHARSET":
            cs = bytes(toks[1]).upper()
            if cs not in (b"UTF-8", b"US-ASCII"):
                return tag + b" NO [BADCHARSET (UTF-8 US-ASCII)] charset not supported\r\n"
            toks = toks[2:]
        self.search_modseq = False
        preds, p = [], 0
        while p < len(toks):
            pr, p = self.parse_search(toks, p, uid_mode)
            preds.append(pr)
        if not preds:
            raise ProtocolError("SEARCH needs a key")
        with self.acct.lock:
            hits = [(s, u, m) for s, (u, m) in enumerate(self.selected.entries, 1)
                    if all(pr(s, u, m) for pr in preds)]
            nums = [u if uid_mode else s for s, u, m in hits]
            top = max((m.modseq for _, _, m in hits), default=0)
        if ret is None:
            line = b"* SEARCH" + b"".join(b" %d" % n for n in nums)
            if self.search_modseq and hits:
                line += b" (MODSEQ %d)" % top
            return line + b"\r\n" + tag + b" OK SEARCH completed (Success)\r\n"
        parts = [b'(TAG "' + tag + b'")']
        if uid_mode:
            parts.append(b"UID")
        if nums:
            if b"MIN" in ret:
                parts.append(b"MIN %d" % min(nums))
            if b"MAX" in ret:
                parts.append(b"MAX %d" % max(nums))
            if b"ALL" in ret:
                parts.append(b"ALL " + compact_set(nums))
        if b"COUNT" in ret:
            parts.append(b"COUNT %d" % len(nums))
        if self.search_modseq and hits:
            parts.append(b"MODSEQ %d" % top)
        return b"* ESEARCH " + b" ".join(parts) + b"\r\n" + tag + \
            b" OK SEARCH completed (Success)\r\n"


def quote_literal(data):
    return b"{%d}\r\n" % len(data) + data


def compact_set(nums):
    nums = sorted(set(nums))
    out, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(b"%d" % nums[i] if i == j else b"%d:%d" % (nums[i], nums[j]))
        i = j + 1
    return b",".join(out)


# ------------------------------------------------------------ server

class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server
        with srv.lock:
            srv.next_cid += 1
            cid = srv.next_cid
            srv.active += 1
            too_many = srv.active > srv.args.max_conns
        try:
            if too_many:
                self.request.sendall(b"* BYE [UNAVAILABLE] Too many simultaneous "
                                     b"connections. (Failure)\r\n")
                srv.log(cid, "S", b"* BYE [UNAVAILABLE] Too many simultaneous connections.")
                return
            self.request.settimeout(srv.args.idle_timeout)
            srv.log(cid, "*", b"connected")
            try:
                Conn(self.request, srv, cid).run()
            except (Drop, EOFError, OSError, socket.timeout) as e:
                srv.log(cid, "*", ("closed: %s" % e).encode())
            except Exception as e:
                sys.stderr.write("gmail-imapd: connection %d: %s" % (
                    cid, traceback.format_exc()))
                srv.log(cid, "*", ("closed after an emulator error: %r" % e).encode())
        finally:
            with srv.lock:
                srv.active -= 1


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 32

    def log(self, cid, direction, data):
        """One log line per protocol line, literals shown as {N}<literal>
        (message bodies stay out of the log), lines cut at 1000 bytes."""
        if self.logf is None:
            return
        if direction == "*":
            lines = [data]
        else:
            lines = elide_literals(data).rstrip(b"\r\n").split(b"\r\n")
        stamp = time.strftime("%H:%M:%S").encode()
        with self.loglock:
            for line in lines:
                if len(line) > 1000:
                    line = line[:1000] + b"... (%d bytes)" % len(line)
                self.logf.write(b"%s [c%d] %s: %s\n" % (stamp, cid,
                                                        direction.encode(), line))
            self.logf.flush()


def elide_literals(data):
    out, pos = [], 0
    for m in re.finditer(rb"\{(\d+)\+?\}\r\n", data):
        if m.start() < pos:
            continue            # inside a literal already skipped
        out.append(data[pos:m.start()] + b"{%s}<literal>" % m.group(1))
        pos = m.end() + int(m.group(1))
    out.append(data[pos:])
    return b"".join(out)


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spec", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--pid-file")
    p.add_argument("--rawlog")
    p.add_argument("--max-lifetime", type=float, default=170)
    p.add_argument("--max-conns", type=int, default=15)
    p.add_argument("--idle-timeout", type=float, default=120)
    p.add_argument("--system-labels", choices=["quoted", "atom"], default="quoted")
    p.add_argument("--keep-current-label", action="store_true")
    p.add_argument("--no-sasl-ir", action="store_true")
    p.add_argument("--no-gm-ext", action="store_true")
    args = p.parse_args()

    try:
        acct = Account(args.spec, args)
    except (OSError, ValueError) as e:
        print("gmail-imapd: %s" % e, file=sys.stderr)
        return 2
    srv = Server(("127.0.0.1", args.port), Handler, bind_and_activate=True)
    srv.args = args
    srv.acct = acct
    srv.lock = threading.Lock()
    srv.loglock = threading.Lock()
    srv.next_cid = 0
    srv.active = 0
    srv.logf = open(args.rawlog, "ab") if args.rawlog else None
    if args.pid_file:
        write_atomic(args.pid_file, "%d\n" % os.getpid())
    if args.port_file:
        write_atomic(args.port_file, "%d\n" % srv.server_address[1])
    def reload(signum, frame):
        try:
            acct.load()
            srv.log(0, "*", b"reloaded the spec (generation %d)" % acct.generation)
        except (OSError, ValueError) as e:
            print("gmail-imapd: reload failed, the old state stays: %s" % e,
                  file=sys.stderr)
            srv.log(0, "*", ("reload failed: %s" % e).encode())
    signal.signal(signal.SIGHUP, reload)
    serve_until(srv, args.max_lifetime)
    if srv.logf:
        srv.logf.flush()
    # handler threads are daemons: leave without waiting for them
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
