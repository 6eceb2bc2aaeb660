#!/usr/bin/env python3
"""A small scripted IMAP responder with hostile folder names (stdlib only).

For the dovecot-migrate folder-mapping tests: it listens on 127.0.0.1 only,
accepts any LOGIN (or PREAUTHs with --preauth), answers NAMESPACE with
(("" "<delimiter>")) and LIST "" "*" with a fixed table of hostile names:
"..", "../etc", a leading '/' and '~', control characters, NUL-ish escapes,
invalid modified UTF-7, raw 8-bit, over-long names, a 40-level hierarchy,
the destination separator '/' inside a name (with delimiter '.'), names
that collide after sanitizing, quotes and backslashes, names the
destination storage reserves (dbox-Mails; cur, new, tmp)... Every folder holds
exactly one small message (its own, so a test can tell where it landed),
served through STATUS, EXAMINE/SELECT, UID SEARCH and UID FETCH.

  hostile-imapd.py --port-file F [--delimiter .] [--manifest M.json]
                   [--log L] [--max-seconds 170] [--nul-literal]

--port-file: the port (the kernel picks a free one) is written there once
  the socket listens.
--manifest: JSON list of the folders: index, the raw name (hex and a
  readable repr), the message's sha256 / Message-ID / size, and "expect":
  "skip" when the name must be skipped (namespace root, limits), else
  "import".
--nul-literal: also list a folder whose name (a literal) holds a NUL byte.
--case NAME: misbehave as a broken or hostile source server would (the
  protocol cases of tests/integration/test-hostile.sh): see CASES below.
  With --case the folder table is just INBOX with one message.
--password PW: the password the client logs in with (cases echo it).
--message FILE: the real message the mail-serving cases (keyword-flood,
  mutate-<seed>) hold, e.g. a corpus file (CRLF line ends made).

Bounded: it exits after --max-seconds, serves at most --max-conns
connections, drops a connection after 30 s of silence, a line over 64 KiB
or a literal over 1 MiB.
"""

import argparse
import base64
import hashlib
import random
import struct
import zlib
import json
import os
import re
import socket
import socketserver
import sys
import threading
import time
from serve_util import serve_until  # noqa: E402 (tests/lib)

MAX_LINE = 64 * 1024
MAX_LITERAL = 1024 * 1024
IDLE_TIMEOUT = 30


def folder_table(d, nul_literal=False):
    """[(raw name bytes, LIST flags, expect)] for delimiter d ('.' or '/')."""
    deep40 = d.join("lv%02d" % i for i in range(40))
    deep32 = d.join("ok%02d" % i for i in range(32))
    long_part = "L" * 300
    long_total = d.join(["P%d" % i + "x" * 248 for i in range(5)])  # 1254 bytes
    names = [
        ("INBOX", [], "import"),
        ("Normal", [], "import"),
        ("..", [], "import"),
        (".." + d + "etc", [], "import"),
        ("../etc", [], "import"),
        ("/etc" + d + "passwd", [], "import"),
        ("/tmp", [], "import"),
        ("~", [], "import"),
        ("~root", [], "import"),
        ("~" + d + "x", [], "import"),
        ("." + d + "dot", [], "import"),
        ("tab\there", [], "import"),
        ("esc\x1b[31mred", [], "import"),
        ("bell\x07del\x7f", [], "import"),
        ("line\r\nbreak", [], "import"),          # CR LF: only as a literal
        ("ctl\x01x", [], "import"),
        ("ctl\x02x", [], "import"),               # collides with ctl\x01x
        ("nul&AAA-x", [], "import"),             # mUTF-7 for U+0000
        ("nl&AAo-x", [], "import"),              # mUTF-7 for U+000A
        ("rlo&IC4-evil", [], "import"),          # U+202E RIGHT-TO-LEFT OVERRIDE
        ("ls&ICg-x", [], "import"),              # U+2028 LINE SEPARATOR
        ("pct%00x", [], "import"),
        ("bs\\0x", [], "import"),                 # backslash zero, as text
        ("utf7&Jjo", [], "import"),              # unterminated
        ("utf7&AGE-x", [], "import"),            # encodes ASCII 'a': invalid
        ("utf7&2D0-x", [], "import"),            # unpaired high surrogate
        ("latin1-caf\xe9", [], "import"),         # raw 8-bit, not UTF-8
        ("utf8-caf\u00e9", [], "import"),          # raw UTF-8 instead of mUTF-7
        ("q\"u\"o\"t\"e\"s\\", [], "import"),       # 5 quotes and a backslash
        ("slash/in/name" if d != "/" else "dot.in.name", [], "import"),
        ("Clients/2024" + d + "Q1" if d != "/" else "Clients" + d + "2024.Q1",
         [], "import"),
        ("dbox-Mails", [], "import"),            # reserved by dbox
        ("new", [], "import"),                   # reserved by Maildir
        ("tmp", [], "import"),
        ("sub" + d + "cur", [], "import"),
        ("sub" + d + "dbox-Mails", [], "import"),
        ("star*", [], "import"),
        ("percent%", [], "import"),
        ("", [], "skip"),                          # namespace root
        (long_part, [], "import"),             # shortened to 255 bytes
        (long_total, [], "skip"),
        (deep40, [], "skip"),
        (deep32, [], "import"),
        ("noselect", ["\\Noselect", "\\HasChildren"], "skip"),
        ("noselect" + d + "child", [], "import"),
    ]
    if nul_literal:
        names.append(("raw\x00nul", [], "any"))
    out, seen = [], set()
    for name, flags, expect in names:
        if name in seen:
            continue        # "../etc" twice with delimiter '/'
        seen.add(name)
        raw = name.encode("latin-1") if name.startswith("latin1-") else \
            name.encode("utf-8")
        out.append((raw, flags, expect))
    return out


def message(i):
    return ("From: Hostile <hostile@example.org>\r\n"
            "To: alice@example.org\r\n"
            "Subject: hostile folder %d\r\n"
            "Date: Mon, 02 Jan 2023 10:%02d:00 +0000\r\n"
            "Message-ID: <hostile-%d@hostile.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
            "The one message of hostile folder %d.\r\n" % (i, i % 60, i, i)
            ).encode()


def wire_name(raw):
    """How a name goes on the wire: quoted when it can, else a literal."""
    if any(b in raw for b in b"\r\n\0") or any(b >= 0x80 for b in raw):
        return b"{%d}\r\n" % len(raw) + raw
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class Conn:
    def __init__(self, sock, server):
        self.sock = sock
        self.srv = server
        self.buf = b""
        self.selected = None
        self.authed = server.args.preauth

    # ---- input
    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data
        self.srv.logb(b"C: " + data)

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line.rstrip(b"\r\n")
            if len(self.buf) > MAX_LINE:
                raise ValueError("line too long")
            self.fill()

    def readn(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_command(self):
        """A whole command line with its literals resolved: list of
        (bytes text) pieces, literals as ('lit', bytes)."""
        pieces = []
        while True:
            line = self.readline()
            m = re.search(rb"\{(\d+)(\+?)\}$", line)
            if not m:
                pieces.append(line)
                return pieces
            n = int(m.group(1))
            if n > MAX_LITERAL:
                raise ValueError("literal too large")
            pieces.append(line[:m.start()])
            if not m.group(2):
                self.send(b"+ go ahead\r\n")
            pieces.append(("lit", self.readn(n)))

    # ---- output
    def send(self, data):
        self.srv.logb(b"S: " + data)
        self.sock.sendall(data)

    # ---- parsing helpers
    @staticmethod
    def tokens(pieces):
        """Tokens: bytes for atoms/quoted/literals, lists for (...)."""
        stack = [[]]
        for piece in pieces:
            if isinstance(piece, tuple):
                stack[-1].append(piece[1])
                continue
            s, i = piece, 0
            while i < len(s):
                c = s[i:i + 1]
                if c == b" ":
                    i += 1
                elif c == b"(":
                    stack.append([])
                    i += 1
                elif c == b")":
                    if len(stack) > 1:
                        lst = stack.pop()
                        stack[-1].append(lst)
                    i += 1
                elif c == b'"':
                    j, out = i + 1, bytearray()
                    while j < len(s) and s[j:j + 1] != b'"':
                        if s[j:j + 1] == b"\\" and j + 1 < len(s):
                            j += 1
                        out += s[j:j + 1]
                        j += 1
                    stack[-1].append(bytes(out))
                    i = j + 1
                else:
                    j, depth = i, 0
                    while j < len(s):
                        ch = s[j:j + 1]
                        if ch == b"[":
                            depth += 1
                        elif ch == b"]" and depth:
                            depth -= 1
                        elif depth == 0 and ch in b" ()":
                            break
                        j += 1
                    stack[-1].append(s[i:j])
                    i = j
        while len(stack) > 1:
            lst = stack.pop()
            stack[-1].append(lst)
        return stack[0]

    def folder(self, name):
        return self.srv.by_name.get(name)

    # ---- commands
    def run(self):
        case = self.srv.args.case
        if case:
            return run_case(self, case)
        caps = b"IMAP4rev1 LITERAL+ NAMESPACE UIDPLUS UNSELECT ID"
        if self.srv.args.preauth:
            self.send(b"* PREAUTH [CAPABILITY " + caps + b"] hostile ready\r\n")
        else:
            self.send(b"* OK [CAPABILITY " + caps + b"] hostile ready\r\n")
        while True:
            pieces = self.read_command()
            toks = self.tokens(pieces)
            if len(toks) < 2:
                self.send(b"* BAD missing command\r\n")
                continue
            tag, cmd, args = toks[0], toks[1].upper(), toks[2:]
            if cmd == b"UID" and args:
                cmd, args = b"UID " + args[0].upper(), args[1:]
            handler = {
                b"CAPABILITY": self.c_capability, b"LOGIN": self.c_login,
                b"LOGOUT": self.c_logout, b"NOOP": self.c_ok,
                b"CHECK": self.c_ok, b"ID": self.c_id,
                b"ENABLE": self.c_ok, b"NAMESPACE": self.c_namespace,
                b"LIST": self.c_list, b"LSUB": self.c_lsub,
                b"STATUS": self.c_status, b"EXAMINE": self.c_select,
                b"SELECT": self.c_select, b"CLOSE": self.c_close,
                b"UNSELECT": self.c_close, b"UID FETCH": self.c_fetch,
                b"FETCH": self.c_fetch, b"UID SEARCH": self.c_search,
                b"SEARCH": self.c_search,
            }.get(cmd)
            if handler is None:
                self.send(tag + b" BAD unknown command\r\n")
                continue
            if not self.authed and cmd not in (b"CAPABILITY", b"LOGIN",
                                               b"LOGOUT", b"NOOP", b"ID"):
                self.send(tag + b" NO not logged in\r\n")
                continue
            if handler(tag, args) is False:
                return

    def c_ok(self, tag, args):
        self.send(tag + b" OK done\r\n")

    def c_capability(self, tag, args):
        self.send(b"* CAPABILITY IMAP4rev1 LITERAL+ NAMESPACE UIDPLUS "
                  b"UNSELECT ID\r\n" + tag + b" OK done\r\n")

    def c_id(self, tag, args):
        self.send(b'* ID ("name" "hostile-imapd")\r\n' + tag + b" OK done\r\n")

    def c_login(self, tag, args):
        self.authed = True
        self.send(tag + b" OK logged in\r\n")

    def c_logout(self, tag, args):
        self.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
        return False

    def c_namespace(self, tag, args):
        d = self.srv.delim.encode()
        self.send(b'* NAMESPACE (("" "' + d.replace(b"\\", b"\\\\") +
                  b'")) NIL NIL\r\n' + tag + b" OK done\r\n")

    def c_list(self, tag, args):
        d = b'"' + self.srv.delim.encode() + b'"'
        pattern = args[1] if len(args) > 1 else b"*"
        out = []
        if pattern == b"":
            out.append(b"* LIST (\\Noselect) " + d + b' ""\r\n')
        else:
            for f in self.srv.folders:
                flags = b" ".join(x.encode() for x in f["flags"])
                out.append(b"* LIST (" + flags + b") " + d + b" " +
                           wire_name(f["raw"]) + b"\r\n")
        self.send(b"".join(out) + tag + b" OK LIST done\r\n")

    def c_lsub(self, tag, args):
        # subscribed: a few hostile ones, to exercise LSUB matching too
        d = b'"' + self.srv.delim.encode() + b'"'
        out = [b"* LSUB () " + d + b" " + wire_name(f["raw"]) + b"\r\n"
               for f in self.srv.folders if f["index"] % 3 == 0]
        self.send(b"".join(out) + tag + b" OK LSUB done\r\n")

    def c_status(self, tag, args):
        f = self.folder(args[0]) if args else None
        if f is None or "\\Noselect" in f["flags"]:
            self.send(tag + b" NO [NONEXISTENT] no such folder\r\n")
            return
        self.send(b"* STATUS " + wire_name(f["raw"]) +
                  b" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d)\r\n" % f["uidvalidity"] +
                  tag + b" OK STATUS done\r\n")

    def c_select(self, tag, args):
        f = self.folder(args[0]) if args else None
        if f is None or "\\Noselect" in f["flags"]:
            self.selected = None
            self.send(tag + b" NO [NONEXISTENT] no such folder\r\n")
            return
        self.selected = f
        self.srv.examined.add(f["index"])
        self.send(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                  b"* 1 EXISTS\r\n* 0 RECENT\r\n"
                  b"* OK [UIDVALIDITY %d] ok\r\n"
                  b"* OK [UIDNEXT 2] ok\r\n" % f["uidvalidity"] +
                  tag + b" OK [READ-ONLY] done\r\n")

    def c_close(self, tag, args):
        self.selected = None
        self.send(tag + b" OK done\r\n")

    def c_search(self, tag, args):
        if self.selected is None:
            self.send(tag + b" BAD nothing selected\r\n")
            return
        self.send(b"* SEARCH 1\r\n" + tag + b" OK done\r\n")

    @staticmethod
    def set_has_1(seqset):
        return any(1 in r for r in uid_set(seqset, 1))

    def c_fetch(self, tag, args):
        f = self.selected
        if f is None or len(args) < 2:
            self.send(tag + b" BAD nothing selected\r\n")
            return
        try:
            hit = self.set_has_1(args[0])
        except ValueError:
            self.send(tag + b" BAD bad sequence set\r\n")
            return
        items = args[1] if isinstance(args[1], list) else args[1:2]
        if hit:
            body = f["body"]
            parts = [b"UID 1"]
            for it in items:
                if not isinstance(it, bytes):
                    continue
                name = it.upper()
                if name in (b"UID",):
                    continue
                if name == b"FLAGS":
                    parts.append(b"FLAGS (\\Seen)")
                elif name == b"INTERNALDATE":
                    parts.append(b'INTERNALDATE "02-Jan-2023 10:00:00 +0000"')
                elif name in (b"RFC822.SIZE",):
                    parts.append(b"RFC822.SIZE %d" % len(body))
                elif name in (b"BODY.PEEK[]", b"BODY[]", b"RFC822"):
                    parts.append(b"BODY[] {%d}\r\n" % len(body) + body)
                elif b"[HEADER.FIELDS" in name:
                    # the atom holds the whole "...[HEADER.FIELDS (A B)]"
                    m = re.search(rb"\(([^)]*)\)", name)
                    fields = m.group(1).split() if m else []
                    hdr = b""
                    for line in body.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
                        if line.split(b":", 1)[0].upper() in fields:
                            hdr += line + b"\r\n"
                    hdr += b"\r\n"
                    parts.append(b"BODY[HEADER.FIELDS (" + b" ".join(fields) +
                                 b")] {%d}\r\n" % len(hdr) + hdr)
            self.send(b"* 1 FETCH (" + b" ".join(parts) + b")\r\n")
        self.send(tag + b" OK FETCH done\r\n")


# ---------------------------------------------------------------- cases
# Each case ends by itself (bounded loops, the idle timeout); the client
# must end each with one clear error (or success) in bounded time and
# memory. CASE_EXPECT (printed by --list-cases) is what the test checks.

def nest(n):
    return b"(" * n + b"x" + b")" * n


CASES = {
    # name: (stage words the error must name, exit code)
    "reset-list": ("LIST", 75),
    "deflate-corrupt": ("EXAMINE", 75),
    "deflate-close": ("EXAMINE", 75),
    "deflate-bomb": ("long", 76),
    "deep-greeting": ("nested", 76),
    "deep-untagged": ("nested", 76),
    "deep-bye": ("nested", 76),
    "deep-literal": ("nested", 76),
    "trickle-greeting": ("greeting", 75),
    "trickle-list": ("progress", 75),
    "endless-untagged": ("progress", 75),
    "endless-fetch-unasked": ("progress", 75),
    "endless-auth": ("AUTHENTICATE", 76),
    "no-greeting": ("greeting", 75),
    "not-imap": ("greeting", 76),
    "echo-login": ("rejected", 77),
    "echo-sasl": ("rejected", 77),
    "bye-password": ("BYE", 75),
    "ansi-no": ("LIST", 76),
    "starttls-no": ("STARTTLS", 78),
    "plain-for-tls": ("TLS", 78),
    "list-huge-names": ("-", 0),       # skipped with a reason
    "list-many": ("folders", 76),
    "status-flood": ("progress", 75),
    "literal-flood": ("literal", 76),
    # every session is dropped before any mail arrives: the run gives up
    # after migrate_reconnect_max reconnects in a row
    "drop-on-fetch": ("without.progress", 75),
    # LOGIN succeeds only with --password: the run got it from
    # MIGRATE_SOURCE_PASSWORD through import_environment
    "env-password": ("-", 0),
    # the listing returns every UID asked for (1..INVENTED_UIDS), the body
    # FETCH none of them: each message becomes an item in the item log
    "invented-uids": ("could.not.be.imported", 2),
    # one real message whose FLAGS hold 40000 keywords
    "keyword-flood": ("-", 0),
}

# the happy path (one real message) with seeded random mutations of the
# server's bytes: any clean ending is fine ("*": exit 0, 75, 76 or 77)
MUTATE_SEEDS = 12
for _seed in range(1, MUTATE_SEEDS + 1):
    CASES["mutate-%d" % _seed] = ("*", 0)

INVENTED_UIDS = 60000
FLOOD_KEYWORDS = 40000


def uid_set(spec, max_uid):
    """The UIDs of an IMAP sequence set, "*" being max_uid."""
    out = []
    for part in spec.split(b","):
        lo, _, hi = part.partition(b":")
        lo = max_uid if lo == b"*" else int(lo)
        hi = lo if not hi else (max_uid if hi == b"*" else int(hi))
        lo, hi = min(lo, hi), max(lo, hi)
        out.append(range(max(lo, 1), min(hi, max_uid) + 1))
    return out


def corpus_message(path):
    """A real message from the corpus, with CRLF line ends."""
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
    else:
        data = message(0)
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def header_fields(body, fields):
    hdr = b""
    for line in body.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.split(b":", 1)[0].upper() in fields:
            hdr += line + b"\r\n"
    return hdr + b"\r\n"


class Mutator:
    """Seeded random damage to what the server sends: the same seed
    breaks the same reply the same way on every connection."""

    KINDS = ("flip", "truncate", "crlf", "nul", "number", "parens",
             "literal", "dup", "garbage")
    HUGE = (b"0", b"4294967295", b"4294967296", b"18446744073709551616",
            b"99999999999999999999999999999999", b"-1")

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.n = 0
        self.log = []
        # the first damaged reply: the greeting (0) up to the body FETCH
        self.target = self.rng.randrange(0, 10)

    def __call__(self, data):
        """(bytes to send, True when the connection ends after them)"""
        i = self.n
        self.n += 1
        if i != self.target and (i < self.target or
                                 self.rng.random() > 0.2):
            return data, False
        rng = self.rng
        kind = rng.choice(self.KINDS)
        self.log.append("reply %d: %s" % (i, kind))
        pos = rng.randrange(0, len(data) + 1)
        if kind == "flip":
            b = bytearray(data)
            for _ in range(rng.randrange(1, 9)):
                if b:
                    b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            return bytes(b), False
        if kind == "truncate":
            return data[:pos], True
        if kind == "crlf":
            return data[:pos] + rng.choice((b"\r\n", b"\r", b"\n",
                                            b"\r\n\r\n")) + data[pos:], False
        if kind == "nul":
            return data[:pos] + b"\0" * rng.choice((1, 1, 7)) + \
                data[pos:], False
        if kind == "number":
            nums = list(re.finditer(rb"\d+", data))
            if nums:
                m = rng.choice(nums)
                return data[:m.start()] + rng.choice(self.HUGE) + \
                    data[m.end():], False
            return data[:pos] + rng.choice(self.HUGE) + data[pos:], False
        if kind == "parens":
            k = rng.choice((1, 3, 1000, 100000))
            return data[:pos] + rng.choice((b"(", b")")) * k + \
                data[pos:], False
        if kind == "literal":
            lits = list(re.finditer(rb"\{(\d+)\}\r\n", data))
            if lits:
                m = rng.choice(lits)
                n = int(m.group(1))
                new = rng.choice((n + 1, max(n - 1, 0), n * 2, 0,
                                  4294967295, 1 << 40))
                return data[:m.start(1)] + b"%d" % new + \
                    data[m.end(1):], False
            return data[:pos] + b"{%d}\r\n" % rng.choice(
                (5, 65536, 4294967295)) + data[pos:], False
        if kind == "dup":
            lines = data.split(b"\r\n")
            j = rng.randrange(len(lines))
            lines.insert(j, lines[j])
            return b"\r\n".join(lines), False
        return data[:pos] + bytes(rng.getrandbits(8) for _ in
                                  range(rng.randrange(1, 65))) + \
            data[pos:], False


class CaseConn:
    """A tiny IMAP server for one hostile case: reads commands line by
    line, answers the happy path, misbehaves where the case says."""

    def __init__(self, conn, case):
        self.c = conn
        self.case = case
        self.pw = conn.srv.args.password.encode()
        self.user = b"alice"
        self.deflate = None
        self.inflate = None
        self.deadline = time.time() + 60
        self.mutate = None
        # the folder's messages: uid -> (body, FLAGS); invented-uids has
        # only headers to show, no bodies
        self.max_uid = 1
        self.msgs = None
        if case == "invented-uids":
            self.max_uid = conn.srv.args.invented_uids
        else:
            self.msgs = {1: (corpus_message(conn.srv.args.message),
                             b"\\Seen")}
        if case == "keyword-flood":
            self.msgs[1] = (self.msgs[1][0], b"\\Seen " + b" ".join(
                b"kw%05d" % i for i in range(FLOOD_KEYWORDS)))
        if case.startswith("mutate-"):
            self.mutate = Mutator(int(case.split("-", 1)[1]))
        # the other cases misbehave before any mail is listed
        self.serves_mail = self.mutate is not None or \
            case in ("invented-uids", "keyword-flood")

    def send(self, data):
        close = False
        if self.mutate is not None:
            n = len(self.mutate.log)
            data, close = self.mutate(data)
            for line in self.mutate.log[n:]:
                self.c.srv.logb(b"mutated " + line.encode())
        if self.deflate is not None:
            data = self.deflate.compress(data) + \
                self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.c.sock.sendall(data)
        if close:
            self.c.sock.close()
            raise EOFError("mutated: truncated")

    def readline(self):
        while True:
            i = self.c.buf.find(b"\n")
            if i >= 0:
                line, self.c.buf = self.c.buf[:i + 1], self.c.buf[i + 1:]
                return line.rstrip(b"\r\n")
            data = self.c.sock.recv(65536)
            if not data:
                raise EOFError
            if self.inflate is not None:
                data = self.inflate.decompress(data)
            self.c.buf += data
            if len(self.c.buf) > MAX_LINE:
                raise ValueError("line too long")

    def reset(self):
        self.c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                               struct.pack("ii", 1, 0))
        self.c.sock.close()
        raise EOFError("reset")

    def forever(self, chunk, secs=40):
        end = time.time() + secs
        while time.time() < end:
            self.send(chunk)

    def trickle(self, data, interval):
        for i in range(len(data)):
            if time.time() > self.deadline:
                return
            self.send(data[i:i + 1])
            time.sleep(interval)

    def caps(self):
        caps = b"IMAP4rev1 LITERAL+ NAMESPACE UIDPLUS ID"
        if self.case.startswith("deflate"):
            caps += b" COMPRESS=DEFLATE"
        if self.case in ("endless-auth", "echo-sasl"):
            caps += b" AUTH=PLAIN SASL-IR"
        if self.case == "starttls-no":
            caps += b" STARTTLS"
        return caps

    def greeting(self):
        g = b"* OK [CAPABILITY " + self.caps() + b"] hostile ready\r\n"
        case = self.case
        if case == "no-greeting":
            time.sleep(40)
            return False
        if case == "not-imap":
            self.send(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            time.sleep(5)
            return False
        if case == "trickle-greeting":
            self.trickle(g, 1.0)
            return False
        if case == "deep-greeting":
            self.send(b"* OK " + nest(500000) + b"\r\n")
            time.sleep(5)
            return False
        if case == "deep-literal":
            # a literal inside 500k open lists: the parser's own
            # recursion (list_add_ghost_eol) would go that deep
            self.send(b"* OK " + b"(" * 500000 + b"{3}\r\nabc" +
                      b")" * 500000 + b"\r\n")
            time.sleep(5)
            return False
        self.send(g)
        return True

    def run(self):
        if not self.greeting():
            return
        while True:
            line = self.readline()
            parts = line.split(b" ", 2)
            if len(parts) < 2:
                continue
            tag, cmd = parts[0], parts[1].upper()
            rest = parts[2] if len(parts) > 2 else b""
            if cmd == b"UID" and rest:
                sub = rest.split(b" ", 1)
                cmd = b"UID " + sub[0].upper()
                rest = sub[1] if len(sub) > 1 else b""
            if self.handle(tag, cmd, rest) is False:
                return

    def handle(self, tag, cmd, rest):
        case = self.case
        ok = tag + b" OK done\r\n"
        if cmd == b"CAPABILITY":
            self.send(b"* CAPABILITY " + self.caps() + b"\r\n" + ok)
        elif cmd == b"STARTTLS":
            self.send(tag + b" NO no TLS today\r\n")
        elif cmd == b"LOGIN":
            if case == "env-password" and rest.split(b" ", 1)[-1] != \
                    b'"' + self.pw + b'"':
                self.send(tag + b" NO [AUTHENTICATIONFAILED] wrong\r\n")
                return
            if case == "echo-login":
                self.send(tag + b" NO [AUTHENTICATIONFAILED] LOGIN " +
                          rest + b" is wrong\r\n")
                return
            self.send(tag + b" OK [CAPABILITY " + self.caps() +
                      b"] logged in\r\n")
        elif cmd == b"AUTHENTICATE":
            if case == "endless-auth":
                end = time.time() + 30
                while time.time() < end:
                    self.send(b"+ \r\n")
                    self.readline()
                return False
            blob = rest.split(b" ", 1)[1] if b" " in rest else b""
            self.send(b"+ " + blob + b"\r\n")
            self.readline()
            self.send(tag + b" NO [AUTHENTICATIONFAILED] bad blob " + blob +
                      b" (" + base64.b64decode(blob).replace(b"\0", b" ") +
                      b")\r\n")
        elif cmd == b"COMPRESS":
            self.send(ok)
            self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
            self.inflate = zlib.decompressobj(-15)
        elif cmd == b"NAMESPACE":
            self.send(b'* NAMESPACE (("" ".")) NIL NIL\r\n' + ok)
        elif cmd in (b"LIST", b"LSUB"):
            return self.list(tag, cmd)
        elif cmd == b"STATUS":
            self.send(b'* STATUS "INBOX" (MESSAGES %d UIDNEXT %d '
                      b'UIDVALIDITY 7)\r\n' % (self.max_uid,
                                                  self.max_uid + 1) + ok)
        elif cmd in (b"EXAMINE", b"SELECT") and case.startswith("deflate"):
            return self.deflate_attack(tag)
        elif cmd in (b"EXAMINE", b"SELECT"):
            self.send(b"* %d EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n"
                      b"* OK [UIDNEXT %d] ok\r\n" % (self.max_uid,
                                                      self.max_uid + 1) + ok)
        elif cmd == b"UID FETCH" and case == "drop-on-fetch":
            self.c.sock.close()
            raise EOFError("dropped")
        elif cmd == b"UID SEARCH" and self.serves_mail:
            self.search(tag, rest)
        elif cmd == b"UID FETCH" and self.serves_mail:
            self.fetch(tag, rest)
        elif cmd == b"LOGOUT":
            self.send(b"* BYE bye\r\n" + ok)
            return False
        else:
            self.send(ok)

    def search(self, tag, rest):
        m = re.search(rb"UID ([0-9:*,]+)", rest, re.I)
        uids = [u for r in uid_set(m.group(1) if m else b"1:*",
                                   self.max_uid) for u in r]
        for i in range(0, len(uids), 5000):
            self.send(b"* SEARCH " + b" ".join(b"%d" % u for u in
                                               uids[i:i + 5000]) + b"\r\n")
        self.send(tag + b" OK done\r\n")

    def fetch_one(self, uid, items, fields):
        if self.msgs is None:
            # invented: a small header, no body
            body = (b"Message-ID: <inv-%d@hostile.test>\r\n"
                    b"Subject: invented %d\r\n\r\n" % (uid, uid))
            flags = b""
        elif uid in self.msgs:
            body, flags = self.msgs[uid]
        else:
            return b""
        parts = [b"UID %d" % uid]
        if b"FLAGS" in items:
            parts.append(b"FLAGS (" + flags + b")")
        if b"INTERNALDATE" in items:
            parts.append(b'INTERNALDATE "02-Jan-2023 10:00:00 +0000"')
        if b"RFC822.SIZE" in items:
            parts.append(b"RFC822.SIZE %d" % len(body))
        if fields is not None:
            hdr = header_fields(body, fields)
            parts.append(b"BODY[HEADER.FIELDS (" + b" ".join(fields) +
                         b")] {%d}\r\n" % len(hdr) + hdr)
        elif b"BODY.PEEK[]" in items or b"BODY[]" in items:
            if self.msgs is None:
                return b""        # the body FETCH: none of them
            parts.append(b"BODY[] {%d}\r\n" % len(body) + body)
        return b"* %d FETCH (" % uid + b" ".join(parts) + b")\r\n"

    def fetch(self, tag, rest):
        spec, _, items = rest.partition(b" ")
        m = re.search(rb"HEADER\.FIELDS \(([^)]*)\)", items, re.I)
        fields = m.group(1).upper().split() if m else None
        items = items.upper()
        try:
            ranges = uid_set(spec, self.max_uid)
        except ValueError:
            self.send(tag + b" BAD bad set\r\n")
            return
        out = []
        for r in ranges:
            for uid in r:
                out.append(self.fetch_one(uid, items, fields))
                if len(out) >= 2000:
                    self.send(b"".join(out))
                    out = []
        self.send(b"".join(out) + tag + b" OK done\r\n")

    def deflate_attack(self, tag):
        # COMPRESS is asked before the first EXAMINE (not at login), so
        # the broken deflate streams start with its reply
        case = self.case
        head = b"* 1 EXISTS\r\n* OK [UIDVAL"
        if case == "deflate-corrupt":
            self.c.sock.sendall(bytes(random.Random(1).getrandbits(8)
                                      for _ in range(4096)))
            time.sleep(2)
            return False
        if case == "deflate-close":
            self.send(head)
            self.c.sock.sendall(b"\x00\x12")   # a broken block, then EOF
            time.sleep(0.2)
            self.reset()
        if case == "deflate-bomb":
            # 1 GB of one line, a few MB on the wire
            chunk = b"x" * (1 << 20)
            self.send(b"* OK ")
            for _ in range(1024):
                self.send(chunk)
            return False
        return False

    def list(self, tag, cmd):
        case = self.case
        if cmd == b"LSUB":
            self.send(tag + b" OK done\r\n")
            return
        head = b'* LIST () "." "INBOX"\r\n'
        if case == "reset-list":
            self.send(head + b'* LIST () "." "Hal')
            time.sleep(0.2)
            self.reset()
        if case == "deep-untagged":
            self.send(b"* OK " + nest(500000) + b"\r\n")
            time.sleep(5)
            return False
        if case == "deep-bye":
            self.send(b"* BYE " + nest(500000) + b"\r\n")
            time.sleep(2)
            return False
        if case == "trickle-list":
            self.trickle(head + b"* LIST () \".\" \"Sent\"\r\n" + tag +
                         b" OK done\r\n", 1.0)
            return False
        if case == "endless-untagged":
            self.forever(b"* OK still listing, be patient\r\n" * 200)
            return False
        if case == "status-flood":
            self.forever(b"* 1 RECENT\r\n* OK [UNSEEN 1] x\r\n" * 200)
            return False
        if case == "endless-fetch-unasked":
            n = 1000
            end = time.time() + 40
            while time.time() < end:
                self.send(b"".join(b"* %d FETCH (UID %d FLAGS (\\Seen))\r\n"
                                   % (i, i) for i in range(n, n + 500)))
                n += 500
            return False
        if case == "literal-flood":
            self.send(b"* LIST () \".\" {2000000}\r\n" + b"x" * 2000000 +
                      b"\r\n")
            time.sleep(2)
            return False
        if case == "list-huge-names":
            for i in range(12):
                self.send(b'* LIST () "." {%d}\r\n' % (1 << 20) +
                          (b"%03d" % i) + b"n" * ((1 << 20) - 3) + b"\r\n")
            self.send(tag + b" OK done\r\n")
            return
        if case == "list-many":
            out = []
            for i in range(300000):
                out.append(b'* LIST () "." "F%07d"\r\n' % i)
                if len(out) == 5000:
                    self.send(b"".join(out))
                    out = []
            self.send(b"".join(out) + tag + b" OK done\r\n")
            return
        if case == "bye-password":
            self.send(b"* BYE your password " + self.pw + b" expired (" +
                      base64.b64encode(self.pw) + b")\r\n")
            time.sleep(0.2)
            return False
        if case == "ansi-no":
            self.send(tag + b" NO \x1b[31mred\x1b]0;owned\x07 \xc2\x9b2J "
                      b"\xe2\x80\xaeevil\r\n")
            return
        self.send(head + tag + b" OK done\r\n")


def run_case(conn, case):
    if case not in CASES:
        raise ValueError("unknown case " + case)
    try:
        CaseConn(conn, case).run()
    except (EOFError, OSError, ValueError, zlib.error):
        pass
    return None


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server
        with srv.lock:
            srv.conns += 1
            too_many = srv.conns > srv.args.max_conns
        if too_many:
            self.request.sendall(b"* BYE too many connections\r\n")
            return
        self.request.settimeout(IDLE_TIMEOUT)
        try:
            Conn(self.request, srv).run()
        except (EOFError, OSError, ValueError) as e:
            srv.logb(b"connection ended: %s\n" % str(e).encode())


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def logb(self, data):
        if self.logf is not None:
            with self.lock:
                self.logf.write(data if data.endswith(b"\n") else data + b"\n")
                self.logf.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True)
    p.add_argument("--delimiter", default=".", choices=[".", "/"])
    p.add_argument("--manifest")
    p.add_argument("--log")
    p.add_argument("--max-seconds", type=float, default=170)
    p.add_argument("--max-conns", type=int, default=50)
    p.add_argument("--preauth", action="store_true")
    p.add_argument("--nul-literal", action="store_true")
    p.add_argument("--case", default="")
    p.add_argument("--password", default="")
    p.add_argument("--invented-uids", type=int, default=INVENTED_UIDS)
    p.add_argument("--message", default="",
                   help="the real message the cases serve (a corpus file)")
    p.add_argument("--list-cases", action="store_true")
    args = p.parse_args()
    if args.list_cases:
        for name, (word, code) in CASES.items():
            print("%s %s %d" % (name, word, code))
        return 0

    folders = []
    for i, (raw, flags, expect) in enumerate(folder_table(args.delimiter,
                                                          args.nul_literal)):
        body = message(i)
        folders.append({"index": i, "raw": raw, "flags": flags,
                        "expect": expect, "uidvalidity": 5000 + i,
                        "body": body})
    srv = Server(("127.0.0.1", args.port), Handler, bind_and_activate=True)
    srv.args = args
    srv.delim = args.delimiter
    srv.folders = folders
    srv.by_name = {f["raw"]: f for f in folders}
    srv.lock = threading.Lock()
    srv.conns = 0
    srv.examined = set()
    srv.logf = open(args.log, "ab") if args.log else None

    if args.manifest:
        with open(args.manifest, "w", encoding="utf-8") as mf:
            json.dump([{"index": f["index"], "name_hex": f["raw"].hex(),
                        "name_repr": repr(f["raw"])[2:-1],
                        "flags": f["flags"], "expect": f["expect"],
                        "sha256": hashlib.sha256(f["body"]).hexdigest(),
                        "message_id": "<hostile-%d@hostile.test>" % f["index"],
                        "size": len(f["body"])} for f in folders],
                      mf, indent=1)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as pf:
        pf.write("%d\n" % srv.server_address[1])
    os.replace(tmp, args.port_file)

    serve_until(srv, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
