#!/usr/bin/env python3
"""Fault-injecting IMAP proxy for the dovecot-migrate integration tests.

Sits on 127.0.0.1 between doveadm (the plugin's IMAP client) and the source
Dovecot, frames both directions as IMAP (lines plus {N} literals, so it
always knows message boundaries) and injects faults:

  --cut-after-bytes N[,N...]   the i-th cut: a connection is closed after
                               the server has sent it N_i bytes (cuts in
                               the middle of a line or of a literal are
                               exact); a connection that ends before its
                               offset hands it on to the next connection;
                               after the last cut connections pass through;
                               "L<n>:<permille>" cuts inside the n-th line
  --cuts K --seed S --plan F   K seeded cuts picked from the byte map of a
                               pass-through run (F = that run's --log):
                               alternately a random byte offset of the whole
                               stream (mostly inside message literals) and a
                               random point inside the n-th non-literal line
                               of a connection (greeting, CAPABILITY, LIST,
                               STATUS, FETCH lines, tagged replies)
  --throttle-bytes X --window-secs W
                               once the server sent X bytes in the current
                               W-second window, FETCH commands are answered
                               "tag NO [THROTTLED] slow down" until the next
                               window; per-window counts go to the log
  --throttle-fetch N[,N...]    answer the N-th FETCH command NO [THROTTLED]
  --bye-after-fetch N[,N...]   after the N-th FETCH command, once one more
                               server response went through, send
                               "* BYE ..." and close
  --unavailable-fetch N[,N...] answer the N-th FETCH command
                               "tag NO [UNAVAILABLE] ..."
  --refuse-command NAME         answer every NAME command (e.g. NAMESPACE)
                               "tag BAD Unknown command"; repeatable
  --count-fetch any|body|list  which FETCH commands the N-th counters count
                               (body: BODY[]/BODY.PEEK[]/RFC822/BINARY[];
                               list: HEADER.FIELDS listings)
  --poison [FOLDER:]UID[,...]  drop the BODY[] FETCH response of that UID
                               (in FOLDER, or in any folder) and turn the
                               command's tagged OK into
                               "NO Some messages could not be FETCHed"
  --poison-keep-ok             with --poison: keep the tagged OK (a broken
                               server that leaves out a message it still
                               lists, as if it had been expunged)
  --stall-after-bytes N --stall-secs S
                               once: the first connection whose server
                               sent it N bytes gets nothing more from the
                               server for S seconds (0, the default: until
                               the client closes the connection); what the
                               server sends meanwhile is queued, not lost;
                               "L<n>:<permille>" stalls inside the n-th line
  --trickle-after-bytes N --trickle-secs D --trickle-bytes B
  --trickle-interval I         once: from byte N (or "L<n>:<permille>") of
                               the first connection that gets that far,
                               server->client data goes out B bytes (2048)
                               every I seconds (0.5) for D seconds (8), then
                               at full speed again

  --size-skew N                RFC822.SIZE in FETCH responses is reported N
                               bytes larger than the message the server
                               sends (Exchange reports sizes that don't
                               match BODY[])

Stalls and trickles are logged under "slow": connection, offset, where
(body-literal, literal or line) and how far into it, the literal's FETCH
line, for a body its UID and the UID set of the FETCH command it answers,
when it started and ended (a stall: "resumed" or "client closed"; a
trickle: the bytes it trickled and the offset where it stopped).

Counters and windows are global over all connections of one proxy process.
The proxy prints its port on stdout (and to --port-file), writes --pid-file,
and keeps --log (JSON, rewritten atomically) up to date: connections, bytes,
cuts with their context, injected faults, per-window request counts and
(with --record-map) the byte map of connection 1 for a later --plan.

STARTTLS switches a connection to raw pass-through. COMPRESS=DEFLATE is
taken out of the capabilities the server announces (Dovecot 2.4's imap
offers it without any plugin): the proxy frames and counts the IMAP stream,
which it could not do inside a compressed one. Only loopback. Stdlib only.
"""

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sys
import time

LITERAL_RE = re.compile(rb"~?\{(\d+)(\+?)\}\r\n$")
# a CAPABILITY response, or a response with a [CAPABILITY ...] code
CAPABILITY_RE = re.compile(rb"^(\* CAPABILITY |\S+ (OK|PREAUTH) \[CAPABILITY )", re.I)
COMPRESS_CAP_RE = re.compile(rb" COMPRESS=[^ \]\r\n]*", re.I)
MAX_LINE = 8 * 1024 * 1024


def parse_int_list(s):
    if not s:
        return []
    return [int(x) for x in str(s).split(",") if x.strip() != ""]


def parse_at(s):
    """A --stall-after-bytes/--trickle-after-bytes point: a byte offset,
    or "L<n>:<permille>" (inside the n-th line, as for cuts)."""
    if s is None:
        return None
    s = str(s).strip()
    m = re.match(r"^L(\d+):(\d+)$", s)
    if m:
        return (int(m.group(1)), int(m.group(2)))
    if s.isdigit():
        return int(s)
    raise argparse.ArgumentTypeError("expected N or L<n>:<permille>: %r" % s)


def parse_poison(s):
    out = []
    for part in (s or "").split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:
            folder, uid = part.rsplit(":", 1)
            out.append((folder, int(uid)))
        else:
            out.append((None, int(part)))
    return out


def uidset_contains(uidset, uid):
    for part in uidset.split(","):
        if ":" in part:
            a, b = part.split(":", 1)
            lo = int(a) if a != "*" else 1 << 32
            hi = int(b) if b != "*" else 1 << 32
            if lo > hi:
                lo, hi = hi, lo
            if lo <= uid <= hi:
                return True
        elif part == "*":
            continue
        elif part.isdigit() and int(part) == uid:
            return True
    return False


def imap_tokens(line):
    """Split a command line (no literals) into tag, and the rest words,
    honouring "quoted strings". Good enough for the commands we look at."""
    toks = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == " ":
            i += 1
            continue
        if c == '"':
            j = i + 1
            buf = []
            while j < n and line[j] != '"':
                if line[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(line[j])
                j += 1
            toks.append("".join(buf))
            i = j + 1
            continue
        j = i
        depth = 0
        while j < n and (line[j] != " " or depth > 0):
            if line[j] in "([":
                depth += 1
            elif line[j] in ")]":
                depth -= 1
            j += 1
        toks.append(line[i:j])
        i = j
    return toks


async def read_message(reader, literal_sink=None):
    """Read one IMAP message (command or response): a line, and for every
    {N} at a line end, N literal bytes and the line's continuation.
    Returns a list of (kind, bytes) segments, kind 'line' or 'literal';
    None at EOF before anything arrived. Raises EOFError on a partial one."""
    segs = []
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            if not segs and not e.partial:
                return None
            raise EOFError("partial message")
        except asyncio.LimitOverrunError:
            raise EOFError("line too long")
        segs.append(("line", line))
        m = LITERAL_RE.search(line)
        if not m:
            return segs
        size = int(m.group(1))
        try:
            data = await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise EOFError("partial literal")
        segs.append(("literal", data))


def seg_bytes(segs):
    return b"".join(d for _, d in segs)


def first_line(segs):
    return segs[0][1].decode("latin-1", "replace").rstrip("\r\n")



def seg_where(segs, i, ctx_len):
    """Where segs[i] is: "body-literal" (a message body), "literal" (a
    header listing, a folder name) or "line"; with the line that
    announces the literal, or the line itself, as context."""
    kind, data = segs[i]
    if kind != "literal":
        return "line", data[:ctx_len]
    prev = segs[i - 1][1] if i > 0 else b""
    body = re.search(rb"(BODY|BINARY)\[\] ~?\{\d+\}\r\n$|RFC822 \{\d+\}\r\n$",
                     prev) is not None
    return ("body-literal" if body else "literal"), prev[:ctx_len]

class Stats:
    def __init__(self, path):
        self.path = path
        self.data = {
            "started": time.time(),
            "connections": 0,
            "max_concurrent": 0,
            "bytes_to_client": 0,
            "bytes_to_server": 0,
            "conn_bytes": [],
            "fetch_commands": 0,
            "fetch_counted": 0,
            "cuts": [],
            "cuts_planned": 0,
            "injected": [],
            "poisoned": [],
            "windows": {},
            "slow": [],
            "map": None,
        }
        self.dirty = False

    def flush(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


class Proxy:
    def __init__(self, args):
        self.args = args
        self.stats = Stats(args.log)
        self.cut_offsets = [int(x) if x.strip().isdigit() else x.strip()
                            for x in args.cut_after_bytes.split(",") if x.strip()]
        self.throttle_fetch = set(parse_int_list(args.throttle_fetch))
        self.bye_fetch = set(parse_int_list(args.bye_after_fetch))
        self.unavail_fetch = set(parse_int_list(args.unavailable_fetch))
        self.refuse_commands = {c.upper() for c in args.refuse_command}
        self.poison = parse_poison(args.poison)
        self.poison_keep_ok = args.poison_keep_ok
        self.size_skew = args.size_skew
        self.conn_count = 0
        self.open_conns = 0
        self.cuts_done = 0
        # --stall-after-bytes / --trickle-after-bytes: each happens once
        self.stall_pending = args.stall_after_bytes is not None
        self.trickle_pending = args.trickle_after_bytes is not None
        self.t0 = time.time()
        if args.cuts:
            self.cut_offsets = self.plan_cuts(args.cuts, args.seed, args.plan)
        self.stats.data["cuts_planned"] = len(self.cut_offsets)
        self.stats.data["cut_offsets"] = self.cut_offsets
        self.stats.flush()

    @staticmethod
    def plan_cuts(k, seed, plan_path):
        with open(plan_path) as f:
            plan = json.load(f)
        segmap = plan.get("map")
        if not segmap:
            raise SystemExit("faultproxy: %s has no byte map (run the "
                             "pass-through proxy with --record-map)" % plan_path)
        total = segmap[-1][0] + segmap[-1][1]
        nlines = sum(1 for s in segmap if s[2] != "literal")
        rng = random.Random(seed)
        offsets = []
        for i in range(k):
            if i % 2 == 0:
                offsets.append(rng.randrange(0, total))
            else:
                # "L<n>:<permille>": inside the n-th line the server sends
                # on that connection, whatever came before it
                offsets.append("L%d:%d" % (rng.randrange(0, nlines),
                                           rng.randrange(0, 1000)))
        return offsets

    # -------------------------------------------------------- windows

    def window(self):
        w = self.args.window_secs
        idx = int((time.time() - self.t0) / w) if w > 0 else 0
        key = str(idx)
        win = self.stats.data["windows"].get(key)
        if win is None:
            win = {"start": round(self.t0 + idx * w, 3), "bytes": 0,
                   "fetch_forwarded": 0, "fetch_throttled": 0,
                   "forwarded_after_budget": 0}
            self.stats.data["windows"][key] = win
        return win

    def over_budget(self):
        x = self.args.throttle_bytes
        return x is not None and x > 0 and self.window()["bytes"] >= x

    # -------------------------------------------------------- connections

    async def handle(self, creader, cwriter):
        self.conn_count += 1
        cid = self.conn_count
        self.stats.data["connections"] = cid
        self.stats.data["conn_bytes"].append(0)
        # a planned cut is used up only when a connection reaches it: a
        # connection that ends earlier hands it on to the next one
        cut = None
        if self.cuts_done < len(self.cut_offsets):
            cut = self.cut_offsets[self.cuts_done]
        try:
            sreader, swriter = await asyncio.open_connection(
                self.args.target_host, self.args.target_port,
                limit=MAX_LINE)
        except OSError as e:
            print("faultproxy: connect to target failed: %s" % e, file=sys.stderr)
            cwriter.close()
            return
        conn = Conn(self, cid, creader, cwriter, sreader, swriter, cut)
        self.open_conns += 1
        self.stats.data["max_concurrent"] = max(
            self.stats.data["max_concurrent"], self.open_conns)
        try:
            await conn.run()
        finally:
            self.open_conns -= 1
        self.stats.flush()


class Conn:
    def __init__(self, proxy, cid, creader, cwriter, sreader, swriter, cut):
        self.p = proxy
        self.cid = cid
        self.cr, self.cw, self.sr, self.sw = creader, cwriter, sreader, swriter
        # a byte offset, or (line number, permille) from "L<n>:<permille>"
        self.cut = cut
        self.cut_line = None
        if isinstance(cut, str) and cut.startswith("L"):
            n, permille = cut[1:].split(":")
            self.cut, self.cut_line = None, (int(n), int(permille))
        self.lines = 0                # non-literal segments sent
        self.sent = 0                 # server->client bytes of this conn
        self.out = asyncio.Queue()    # items for the client writer
        self.selected = None
        self.fetches = {}             # tag -> (folder, uidset, kind)
        self.poisoned_tags = set()
        self.bye_armed = False
        self.closing = False
        self.c_raw = False            # client side after STARTTLS
        self.s_raw = False            # server side after its STARTTLS OK
        self.starttls_tag = None
        self.record_map = proxy.args.record_map and cid == 1
        self.map = []
        self.trickle_until = None     # monotonic end of a running trickle
        self.trickle_event = None
        self.body_fetches = []        # (folder, uidset) of every body FETCH

    async def run(self):
        tasks = [asyncio.ensure_future(self.client_to_server()),
                 asyncio.ensure_future(self.server_reader()),
                 asyncio.ensure_future(self.client_writer())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # let the writer drain what the reader queued when the server closed
        if tasks[1] in done and not tasks[2].done():
            try:
                await asyncio.wait_for(asyncio.shield(tasks[2]), 5)
            except (asyncio.TimeoutError, Exception):
                pass
        for t in tasks:
            if not t.done():
                t.cancel()
        for w in (self.cw, self.sw):
            try:
                w.close()
            except Exception:
                pass
        if self.record_map:
            self.p.stats.data["map"] = self.map

    # ---------------------------------------------- client -> server

    async def client_to_server(self):
        while not self.closing:
            if self.c_raw:
                data = await self.cr.read(65536)
                if not data:
                    return
                self.sw.write(data)
                await self.sw.drain()
                continue
            try:
                segs = await read_message(self.cr)
            except EOFError:
                return
            if segs is None:
                return
            data = seg_bytes(segs)
            self.p.stats.data["bytes_to_server"] += len(data)
            if await self.inspect_command(segs):
                self.sw.write(data)
                await self.sw.drain()
                if self.starttls_tag is not None:
                    # the client sends nothing but TLS from now on
                    self.c_raw = True

    async def inspect_command(self, segs):
        """Returns True to forward the command."""
        line = first_line(segs)
        toks = imap_tokens(line)
        if len(toks) < 2:
            return True
        tag, name = toks[0], toks[1].upper()
        rest = toks[2:]
        if name == "UID" and rest:
            name = "UID " + rest[0].upper()
            rest = rest[1:]
        if name == "STARTTLS":
            self.starttls_tag = tag
            return True
        if name in self.p.refuse_commands:
            # a server that doesn't know the command (NAMESPACE on a
            # minimal server)
            self.out.put_nowait(("inject", ("%s BAD Unknown command\r\n" % tag).encode()))
            return False
        if name in ("SELECT", "EXAMINE"):
            if len(segs) > 1:
                # mailbox sent as a literal
                self.selected = segs[1][1].decode("utf-8", "replace")
            elif rest:
                self.selected = rest[0]
            return True
        if name not in ("FETCH", "UID FETCH"):
            return True
        st = self.p.stats.data
        st["fetch_commands"] += 1
        items = " ".join(rest[1:]).upper()
        if "HEADER.FIELDS" in items:
            kind = "list"
        elif re.search(r"BODY(\.PEEK)?\[\]|RFC822(?![.A-Z])|BINARY(\.PEEK)?\[\]", items):
            kind = "body"
        else:
            kind = "flags"
        cf = self.p.args.count_fetch
        n = None
        if cf == "any" or cf == kind:
            st["fetch_counted"] += 1
            n = st["fetch_counted"]
        uidset = rest[0] if rest else ""
        win = self.p.window()

        def reply(text, what):
            self.p.stats.data["injected"].append(
                {"what": what, "conn": self.cid, "fetch": n, "kind": kind,
                 "folder": self.selected, "uids": uidset,
                 "t": round(time.time() - self.p.t0, 3)})
            self.out.put_nowait(("inject", ("%s %s\r\n" % (tag, text)).encode()))

        if self.p.over_budget():
            win["fetch_throttled"] += 1
            reply("NO [THROTTLED] slow down", "throttled-window")
            self.p.stats.flush()
            return False
        if n is not None and n in self.p.throttle_fetch:
            reply("NO [THROTTLED] slow down", "throttled")
            self.p.stats.flush()
            return False
        if n is not None and n in self.p.unavail_fetch:
            reply("NO [UNAVAILABLE] Temporary backend failure, try again",
                  "unavailable")
            self.p.stats.flush()
            return False
        if n is not None and n in self.p.bye_fetch:
            self.bye_armed = True
            self.p.stats.data["injected"].append(
                {"what": "bye", "conn": self.cid, "fetch": n, "kind": kind,
                 "folder": self.selected, "uids": uidset,
                 "t": round(time.time() - self.p.t0, 3)})
        win["fetch_forwarded"] += 1
        if self.p.args.throttle_bytes and win["bytes"] >= self.p.args.throttle_bytes:
            win["forwarded_after_budget"] += 1
        if kind == "body":
            self.fetches[tag] = (self.selected, uidset)
            self.body_fetches.append((self.selected, uidset))
        self.p.stats.flush()
        return True

    # ---------------------------------------------- server -> client

    async def server_reader(self):
        while True:
            if self.s_raw:
                data = await self.sr.read(65536)
                if not data:
                    self.out.put_nowait(("eof", None))
                    return
                self.out.put_nowait(("raw", data))
                continue
            try:
                segs = await read_message(self.sr)
            except EOFError:
                segs = None
            if segs is None:
                self.out.put_nowait(("eof", None))
                return
            segs = self.filter_response(segs)
            if segs is None:
                continue
            tagged_starttls = False
            if self.starttls_tag is not None:
                toks = first_line(segs).split(" ", 2)
                if toks[0] == self.starttls_tag:
                    tagged_starttls = True
            self.out.put_nowait(("resp", segs))
            if tagged_starttls:
                # everything after this is TLS
                self.s_raw = True
                self.out.put_nowait(("rawmode", None))

    def filter_response(self, segs):
        if CAPABILITY_RE.match(segs[0][1]):
            segs = [(segs[0][0], COMPRESS_CAP_RE.sub(b"", segs[0][1]))] + segs[1:]
        line = first_line(segs)
        if self.p.size_skew and line.startswith("* "):
            # only in line segments: a literal is message data
            skew = self.p.size_skew
            segs = [(k, re.sub(rb"RFC822\.SIZE (\d+)",
                               lambda m: b"RFC822.SIZE %d" % (int(m.group(1)) + skew),
                               d)) if k == "line" else (k, d)
                    for k, d in segs]
        if line.startswith("* ") and self.p.poison:
            m = re.match(r"\* \d+ FETCH \(", line)
            if m and len(segs) > 1:
                whole = b"".join(d for k, d in segs if k == "line").decode("latin-1")
                um = re.search(r"[( ]UID (\d+)", whole)
                body = re.search(r"(BODY\[\]|RFC822|BINARY\[\]) (~?)\{\d+\}\r\n$",
                                 segs[0][1].decode("latin-1"))
                if um and body:
                    uid = int(um.group(1))
                    for tag, (folder, uidset) in self.fetches.items():
                        if not uidset_contains(uidset, uid):
                            continue
                        for pf, pu in self.p.poison:
                            if pu == uid and (pf is None or pf == folder):
                                self.poisoned_tags.add(tag)
                                self.p.stats.data["poisoned"].append(
                                    {"conn": self.cid, "folder": folder,
                                     "uid": uid, "tag": tag})
                                self.p.stats.flush()
                                return None
                        break
        if not line.startswith("*") and not line.startswith("+"):
            tag = line.split(" ", 1)[0]
            if tag in self.fetches:
                del self.fetches[tag]
                if tag in self.poisoned_tags and not self.p.poison_keep_ok:
                    self.poisoned_tags.discard(tag)
                    rest = line.split(" ", 2)
                    if len(rest) >= 2 and rest[1].upper() == "OK":
                        return [("line", ("%s NO Some messages could not be "
                                          "FETCHed (0.001 + 0.000 secs).\r\n"
                                          % tag).encode())]
        return segs

    async def client_writer(self):
        while True:
            kind, item = await self.out.get()
            if kind == "eof":
                return
            if kind == "rawmode":
                continue
            if kind == "raw":
                self.cw.write(item)
                await self.cw.drain()
                continue
            if kind == "inject":
                segs = [("inject", item)]
            else:
                segs = item
            if await self.write_segs(segs):
                self.closing = True
                return
            if self.bye_armed and kind == "resp":
                self.bye_armed = False
                bye = b"* BYE [UNAVAILABLE] Server shutting down (faultproxy).\r\n"
                self.cw.write(bye)
                await self.cw.drain()
                self.closing = True
                return

    async def write_segs(self, segs):
        """Write, counting bytes; True when the connection was cut."""
        st = self.p.stats.data
        for i, (kind, data) in enumerate(segs):
            if self.record_map:
                self.map.append([self.sent, len(data), kind])
            n = len(data)
            if kind != "literal":
                if self.cut_line is not None and self.cut_line[0] == self.lines:
                    self.cut = self.sent + n * self.cut_line[1] // 1000
                self.lines += 1
            if self.cut is not None and self.sent + n >= self.cut:
                part = self.cut - self.sent
                if part > 0:
                    self.cw.write(data[:part])
                    try:
                        await self.cw.drain()
                    except ConnectionError:
                        pass
                self.account(part)
                self.p.cuts_done += 1
                where, ctx = seg_where(segs, i, 60)
                st["cuts"].append({
                    "conn": self.cid, "offset": self.cut, "in": where,
                    "at": part, "of": n,
                    "context": ctx.decode("latin-1", "replace").rstrip("\r\n"),
                    "t": round(time.time() - self.p.t0, 3)})
                self.p.stats.flush()
                # an abrupt close: no BYE, no FIN-after-data courtesy
                try:
                    self.cw.transport.abort()
                except Exception:
                    self.cw.close()
                self.sw.close()
                return True
            if self.p.stall_pending or self.p.trickle_pending or \
                    self.trickle_until is not None:
                await self.forward_slow(segs, i)
                continue
            self.cw.write(data)
            await self.cw.drain()
            self.account(n)
        return False

    # ---------------------------------------------- stall and trickle

    def slow_event(self, what, offset, segs, i):
        """Log entry for a stall/trickle starting at offset inside segs[i]."""
        data = segs[i][1]
        where, ctx = seg_where(segs, i, 200)
        ev = {"what": what, "conn": self.cid, "offset": offset, "in": where,
              "at": offset - self.sent_before_seg, "of": len(data),
              "context": ctx.decode("latin-1", "replace").rstrip("\r\n"),
              "t": round(time.time() - self.p.t0, 3)}
        # the body FETCH command this literal answers (the last one sent
        # whose UID set has the UID)
        um = re.search(r"[( ]UID (\d+)", ev["context"])
        if where == "body-literal" and um:
            uid = int(um.group(1))
            ev["uid"] = uid
            for folder, uidset in reversed(self.body_fetches):
                if uidset_contains(uidset, uid):
                    ev["fetch_folder"], ev["fetch_uids"] = folder, uidset
                    break
        self.p.stats.data["slow"].append(ev)
        self.p.stats.flush()
        return ev

    async def write_counted(self, data):
        if not data:
            return
        self.cw.write(data)
        await self.cw.drain()
        self.account(len(data))

    def slow_offset(self, at, segs, i):
        """The byte offset of a stall/trickle point on this connection,
        None while an "L<n>:<permille>" point isn't reached yet."""
        if isinstance(at, int):
            return at
        kind, data = segs[i]
        # write_segs counted this line already
        if kind != "literal" and self.lines - 1 == at[0]:
            return self.sent_before_seg + len(data) * at[1] // 1000
        return None

    async def forward_slow(self, segs, i):
        """Forward segs[i] honouring a pending stall or a (pending or
        running) trickle. Cuts are handled before this is called."""
        args = self.p.args
        data = segs[i][1]
        self.sent_before_seg = self.sent
        stall_at = self.slow_offset(args.stall_after_bytes, segs, i) \
            if self.p.stall_pending else None
        trickle_at = self.slow_offset(args.trickle_after_bytes, segs, i) \
            if self.p.trickle_pending else None
        pos = 0
        while pos < len(data):
            rest = len(data) - pos
            if self.trickle_until is not None:
                if time.monotonic() >= self.trickle_until:
                    ev = self.trickle_event
                    ev["ended_t"] = round(time.time() - self.p.t0, 3)
                    ev["ended_offset"] = self.sent
                    self.trickle_until = self.trickle_event = None
                    self.p.stats.flush()
                    continue
                chunk = data[pos:pos + max(1, args.trickle_bytes)]
                await self.write_counted(chunk)
                pos += len(chunk)
                self.trickle_event["bytes"] += len(chunk)
                await asyncio.sleep(args.trickle_interval)
                continue
            # the nearest pending trigger inside what is left
            trig = None
            if self.p.stall_pending and stall_at is not None and \
                    self.sent <= stall_at < self.sent + rest:
                trig = ("stall", stall_at)
            if self.p.trickle_pending and trickle_at is not None and \
                    self.sent <= trickle_at < self.sent + rest and \
                    (trig is None or trickle_at < trig[1]):
                trig = ("trickle", trickle_at)
            if trig is None:
                await self.write_counted(data[pos:])
                return
            what, offset = trig
            head = offset - self.sent
            await self.write_counted(data[pos:pos + head])
            pos += head
            ev = self.slow_event(what, offset, segs, i)
            if what == "trickle":
                self.p.trickle_pending = False
                ev["bytes"] = 0
                self.trickle_event = ev
                self.trickle_until = time.monotonic() + args.trickle_secs
                continue
            self.p.stall_pending = False
            ev["secs"] = args.stall_secs
            try:
                if args.stall_secs > 0:
                    await asyncio.sleep(args.stall_secs)
                    ev["ended"] = "resumed"
                else:
                    # until the client goes away: run() cancels this
                    await asyncio.Event().wait()
            except asyncio.CancelledError:
                ev["ended"] = "client closed"
                ev["ended_t"] = round(time.time() - self.p.t0, 3)
                self.p.stats.flush()
                raise
            ev["ended_t"] = round(time.time() - self.p.t0, 3)
            self.p.stats.flush()

    def account(self, n):
        self.sent += n
        st = self.p.stats.data
        st["bytes_to_client"] += n
        st["conn_bytes"][self.cid - 1] += n
        self.p.window()["bytes"] += n


async def main_async(args):
    proxy = Proxy(args)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port,
                                        limit=MAX_LINE)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.replace(args.port_file + ".tmp", args.port_file)
    print(port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.max_lifetime:
        loop.call_later(args.max_lifetime, stop.set)
    await stop.wait()
    server.close()
    proxy.stats.flush()
    if args.pid_file:
        try:
            os.unlink(args.pid_file)
        except OSError:
            pass
    # open connections must not keep a stopped proxy alive
    os._exit(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target-host", default="127.0.0.1")
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--pid-file")
    ap.add_argument("--log", help="JSON statistics file (rewritten)")
    ap.add_argument("--record-map", action="store_true",
                    help="store connection 1's byte map in the log")
    ap.add_argument("--cut-after-bytes", default="")
    ap.add_argument("--cuts", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plan")
    ap.add_argument("--throttle-bytes", type=int)
    ap.add_argument("--window-secs", type=float, default=1.0)
    ap.add_argument("--throttle-fetch", default="")
    ap.add_argument("--bye-after-fetch", default="")
    ap.add_argument("--unavailable-fetch", default="")
    ap.add_argument("--refuse-command", action="append", default=[])
    ap.add_argument("--count-fetch", choices=("any", "body", "list", "flags"),
                    default="any")
    ap.add_argument("--poison", "--poison-uid", dest="poison", default="")
    ap.add_argument("--poison-keep-ok", action="store_true")
    ap.add_argument("--stall-after-bytes", type=parse_at,
                    help="once, after N server->client bytes of a connection, "
                    "forward nothing from the server for --stall-secs")
    ap.add_argument("--stall-secs", type=float, default=0,
                    help="0: until the client closes the connection")
    ap.add_argument("--trickle-after-bytes", type=parse_at,
                    help="once, after N server->client bytes of a connection, "
                    "forward slowly for --trickle-secs")
    ap.add_argument("--trickle-secs", type=float, default=8)
    ap.add_argument("--trickle-bytes", type=int, default=2048)
    ap.add_argument("--trickle-interval", type=float, default=0.5)
    ap.add_argument("--size-skew", type=int, default=0)
    ap.add_argument("--max-lifetime", type=float, default=900,
                    help="exit after this many seconds (a safety net)")
    args = ap.parse_args()
    if args.cuts and not args.plan:
        ap.error("--cuts needs --plan")
    if args.target_host not in ("127.0.0.1", "localhost", "::1"):
        ap.error("loopback targets only")
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write("%d\n" % os.getpid())
    try:
        asyncio.run(main_async(args))
    finally:
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass


if __name__ == "__main__":
    main()
