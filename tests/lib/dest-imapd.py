#!/usr/bin/env python3
"""A scripted IMAP source for the destination-safety tests (stdlib only).

tests/integration/test-dest-safety.sh drives the importer's handling of
what a source announces into the destination storage: extreme UIDs, an
EXISTS far above what exists, folder names the destination storage can't
hold or reserves for itself, keyword floods, literals larger than the
RFC822.SIZE they were announced with, and many messages that never come.
(tests/lib/hostile-imapd.py is the folder-name and protocol emulator; this
one is driven by a scenario file instead of a fixed table.)

  dest-imapd.py --port-file F --scenario S.json [--log L] [--max-seconds N]

The scenario (JSON):
  {"delimiter": "/",
   "folders": [
     {"name": "INBOX",              # UTF-8 text, or "name_hex": "..."
      "uidvalidity": 7,              # default 1000 + index
      "exists": 4000000000,          # EXISTS/MESSAGES as announced
      "seq_base": 3999999990,        # added to the sequence numbers
      "bodies": "none",              # answer body FETCHes with OK only
      "uids": [1, 4294967295],       # the messages' UIDs, or
      "uid_range": [1, 300000],      # first UID, count
      "keywords": 40000,             # keywords on every message
      "size_lie": {"4": 60000000},   # UID -> literal size (RFC822.SIZE
                                     # stays the real message's size)
      "pad": 32768                   # every message filled up to this
                                     # size (RFC822.SIZE tells the truth)
     }]}
Message N of a folder is small and unique: Message-ID
<dest-F-UID@dest.test> (F = folder index). The manifest (--manifest)
lists each folder's name and message count.

Bounded: exits after --max-seconds, at most --max-conns connections, a
connection is dropped after 30 s of silence or a line over 64 KiB.
"""

import argparse
import bisect
import json
import os
import re
import socket
import socketserver
import sys
import threading
from serve_util import serve_until  # noqa: E402 (tests/lib)

MAX_LINE = 64 * 1024
IDLE_TIMEOUT = 30
CAPS = b"IMAP4rev1 LITERAL+ NAMESPACE UIDPLUS UNSELECT ID"


def message(fidx, uid):
    return ("From: Dest <dest@example.org>\r\n"
            "To: alice@example.org\r\n"
            "Subject: dest folder %d uid %d\r\n"
            "Date: Mon, 02 Jan 2023 10:%02d:00 +0000\r\n"
            "Message-ID: <dest-%d-%d@dest.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
            "Message %d of folder %d.\r\n" % (fidx, uid, uid % 60, fidx, uid,
                                              uid, fidx)).encode()


def wire_name(raw):
    if any(b in raw for b in b"\r\n\0") or any(b >= 0x80 for b in raw):
        return b"{%d}\r\n" % len(raw) + raw
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def unquote(tok):
    if tok.startswith(b'"') and tok.endswith(b'"') and len(tok) >= 2:
        return re.sub(rb"\\(.)", rb"\1", tok[1:-1])
    return tok


class Folder:
    def __init__(self, idx, spec):
        self.idx = idx
        if "name_hex" in spec:
            self.raw = bytes.fromhex(spec["name_hex"])
        else:
            self.raw = spec["name"].encode("utf-8")
        self.uidvalidity = spec.get("uidvalidity", 1000 + idx)
        if "uid_range" in spec:
            first, count = spec["uid_range"]
            self.uids = list(range(first, first + count))
        else:
            self.uids = list(spec.get("uids", [1]))
        self.uids.sort()
        self.exists = spec.get("exists", len(self.uids))
        self.bodies = spec.get("bodies", "normal")
        self.seq_base = spec.get("seq_base", 0)
        nkw = spec.get("keywords", 0)
        self.flags = b"\\Seen" + b"".join(b" kw%d" % i for i in range(nkw))
        self.size_lie = {int(k): v for k, v in
                         spec.get("size_lie", {}).items()}
        self.seq_of = {uid: i + 1 for i, uid in enumerate(self.uids)}
        self.pad = spec.get("pad", 0)

    def message(self, uid):
        body = message(self.idx, uid)
        left = self.pad - len(body)
        if left > 0:
            body += (b"x" * 78 + b"\r\n") * (left // 80) + b"x" * (left % 80)
        return body

    def uidnext(self):
        return min((self.uids[-1] + 1) if self.uids else 1, 4294967295)

    def select(self, seqset, by_uid):
        """The (seq, uid) pairs a sequence set names, in order."""
        top = self.uids[-1] if by_uid and self.uids else len(self.uids)
        out = []
        for part in seqset.split(b","):
            lo, _, hi = part.partition(b":")
            lo = top if lo == b"*" else int(lo)
            hi = lo if not hi else (top if hi == b"*" else int(hi))
            lo, hi = min(lo, hi), max(lo, hi)
            if by_uid:

                i = bisect.bisect_left(self.uids, lo)
                while i < len(self.uids) and self.uids[i] <= hi:
                    out.append((i + 1, self.uids[i]))
                    i += 1
            else:
                for seq in range(max(lo, 1), min(hi, len(self.uids)) + 1):
                    out.append((seq, self.uids[seq - 1]))
        return out


class Conn:
    def __init__(self, sock, server):
        self.sock = sock
        self.srv = server
        self.buf = b""
        self.selected = None

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data
        self.srv.logb(b"C: " + data[:300])

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line.rstrip(b"\r\n")
            if len(self.buf) > MAX_LINE:
                raise ValueError("line too long")
            self.fill()

    def send(self, data):
        self.srv.logb(b"S: " + data[:300])
        self.sock.sendall(data)

    def read_command(self):
        line = self.readline()
        while True:
            m = re.search(rb"\{(\d+)(\+?)\}$", line)
            if not m:
                return line
            n = int(m.group(1))
            if not m.group(2):
                self.send(b"+ go ahead\r\n")
            while len(self.buf) < n:
                self.fill()
            lit, self.buf = self.buf[:n], self.buf[n:]
            line = line[:m.start()] + b'"' + lit.replace(b"\\", b"\\\\") \
                .replace(b'"', b'\\"') + b'"' + self.readline()

    @staticmethod
    def words(line):
        return re.findall(rb'"(?:[^"\\]|\\.)*"|\([^)]*\)|[^ ]+', line)

    def run(self):
        self.send(b"* OK [CAPABILITY " + CAPS + b"] dest-imapd ready\r\n")
        while True:
            line = self.read_command()
            w = self.words(line)
            if len(w) < 2:
                self.send(b"* BAD missing command\r\n")
                continue
            tag, cmd, args = w[0], w[1].upper(), w[2:]
            if cmd == b"UID" and args:
                cmd, args = b"UID " + args[0].upper(), args[1:]
            h = {b"CAPABILITY": self.c_capability, b"LOGIN": self.c_ok,
                 b"LOGOUT": self.c_logout, b"NOOP": self.c_ok,
                 b"CHECK": self.c_ok, b"ID": self.c_ok, b"ENABLE": self.c_ok,
                 b"NAMESPACE": self.c_namespace, b"LIST": self.c_list,
                 b"LSUB": self.c_lsub, b"STATUS": self.c_status,
                 b"EXAMINE": self.c_select, b"SELECT": self.c_select,
                 b"CLOSE": self.c_close, b"UNSELECT": self.c_close,
                 b"UID FETCH": self.c_fetch, b"FETCH": self.c_fetch,
                 b"UID SEARCH": self.c_search, b"SEARCH": self.c_search,
                 }.get(cmd)
            if h is None:
                self.send(tag + b" BAD unknown command\r\n")
            elif h(tag, cmd, args, line) is False:
                return

    def c_ok(self, tag, cmd, args, line):
        self.send(tag + b" OK done\r\n")

    def c_capability(self, tag, cmd, args, line):
        self.send(b"* CAPABILITY " + CAPS + b"\r\n" + tag + b" OK done\r\n")

    def c_logout(self, tag, cmd, args, line):
        self.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
        return False

    def c_namespace(self, tag, cmd, args, line):
        self.send(b'* NAMESPACE (("" "' + self.srv.delim + b'")) NIL NIL\r\n'
                  + tag + b" OK done\r\n")

    def c_list(self, tag, cmd, args, line):
        d = b'"' + self.srv.delim + b'"'
        out = [b"* LIST () " + d + b" " + wire_name(f.raw) + b"\r\n"
               for f in self.srv.folders]
        self.send(b"".join(out) + tag + b" OK LIST done\r\n")

    def c_lsub(self, tag, cmd, args, line):
        self.send(tag + b" OK LSUB done\r\n")

    def folder(self, tok):
        return self.srv.by_name.get(unquote(tok))

    def c_status(self, tag, cmd, args, line):
        f = self.folder(args[0]) if args else None
        if f is None:
            self.send(tag + b" NO [NONEXISTENT] no such folder\r\n")
            return
        self.send(b"* STATUS " + wire_name(f.raw) +
                  b" (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)\r\n" %
                  (f.exists, f.uidnext(), f.uidvalidity) +
                  tag + b" OK STATUS done\r\n")

    def c_select(self, tag, cmd, args, line):
        f = self.folder(args[0]) if args else None
        self.selected = f
        if f is None:
            self.send(tag + b" NO [NONEXISTENT] no such folder\r\n")
            return
        self.send(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                  b"* %d EXISTS\r\n* 0 RECENT\r\n"
                  b"* OK [UIDVALIDITY %d] ok\r\n"
                  b"* OK [UIDNEXT %d] ok\r\n" %
                  (f.exists, f.uidvalidity, f.uidnext()) +
                  tag + b" OK [READ-ONLY] done\r\n")

    def c_close(self, tag, cmd, args, line):
        self.selected = None
        self.send(tag + b" OK done\r\n")

    def c_search(self, tag, cmd, args, line):
        f = self.selected
        if f is None:
            self.send(tag + b" BAD nothing selected\r\n")
            return
        uids = [uid for _, uid in f.select(args[-1], True)] \
            if len(args) >= 2 and args[-2].upper() == b"UID" else f.uids
        self.send(b"* SEARCH " + b" ".join(b"%d" % u for u in uids) +
                  b"\r\n" + tag + b" OK done\r\n")

    def c_fetch(self, tag, cmd, args, line):
        f = self.selected
        if f is None or len(args) < 2:
            self.send(tag + b" BAD nothing selected\r\n")
            return
        items = b" ".join(args[1:]).upper()
        want_body = b"BODY.PEEK[]" in items or b"BODY[]" in items
        want_hdr = b"HEADER.FIELDS" in items
        if want_body and f.bodies == "none":
            self.send(tag + b" OK FETCH done\r\n")
            return
        out = []
        for seq, uid in f.select(args[0], cmd == b"UID FETCH"):
            body = f.message(uid)
            parts = [b"UID %d" % uid, b"FLAGS (" + f.flags + b")",
                     b'INTERNALDATE "02-Jan-2023 10:00:00 +0000"']
            if b"RFC822.SIZE" in items:
                parts.append(b"RFC822.SIZE %d" % len(body))
            if want_hdr:
                hdr = body.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                parts.append(b"BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n"
                             % len(hdr) + hdr)
            pre = b"* %d FETCH (" % (seq + f.seq_base) + b" ".join(parts)
            if want_body and uid in f.size_lie:
                self.send(b"".join(out))
                out = []
                self.send_padded(pre, body, f.size_lie[uid])
                continue
            if want_body:
                pre += b" BODY[] {%d}\r\n" % len(body) + body
            out.append(pre + b")\r\n")
            if len(out) >= 500:
                self.send(b"".join(out))
                out = []
        self.send(b"".join(out) + tag + b" OK FETCH done\r\n")

    def send_padded(self, pre, body, size):
        """A body literal of size bytes: the message, then filler lines."""
        self.send(pre + b" BODY[] {%d}\r\n" % size)
        head, _, text = body.partition(b"\r\n\r\n")
        self.sock.sendall(head + b"\r\n\r\n")
        left = size - len(head) - 4
        chunk = (b"x" * 78 + b"\r\n") * 800
        while left > 0:
            n = min(left, len(chunk))
            self.sock.sendall(chunk[:n])
            left -= n
        self.send(b")\r\n")


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
    p.add_argument("--port-file", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--log")
    p.add_argument("--max-seconds", type=float, default=170)
    p.add_argument("--max-conns", type=int, default=50)
    args = p.parse_args()

    with open(args.scenario, encoding="utf-8") as sf:
        scen = json.load(sf)
    srv = Server(("127.0.0.1", 0), Handler, bind_and_activate=True)
    srv.args = args
    srv.delim = scen.get("delimiter", "/").encode()
    srv.folders = [Folder(i, s) for i, s in enumerate(scen["folders"])]
    srv.by_name = {f.raw: f for f in srv.folders}
    srv.lock = threading.Lock()
    srv.conns = 0
    srv.logf = open(args.log, "ab") if args.log else None
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as pf:
        pf.write("%d\n" % srv.server_address[1])
    os.replace(tmp, args.port_file)
    serve_until(srv, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
