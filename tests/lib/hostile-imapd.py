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

Bounded: it exits after --max-seconds, serves at most --max-conns
connections, drops a connection after 30 s of silence, a line over 64 KiB
or a literal over 1 MiB.
"""

import argparse
import hashlib
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
        for part in seqset.split(b","):
            lo, _, hi = part.partition(b":")
            lo = 1 if lo == b"*" else int(lo)
            hi = lo if not hi else (1 if hi == b"*" else int(hi))
            if min(lo, hi) <= 1 <= max(lo, hi):
                return True
        return False

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
    args = p.parse_args()

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
