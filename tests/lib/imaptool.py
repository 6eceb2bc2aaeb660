#!/usr/bin/env python3
"""IMAP helper for the dovecot-migrate integration tests (stdlib only).

  seed     APPEND the test corpus into a deterministic folder tree
  dump     read a whole account back as canonical JSON
  compare  exact multiset comparison of two dumps
  mutate   deterministic flag changes, appends and expunges

Folder names in dumps are "logical": modified UTF-7 decoded, the server's
hierarchy delimiter replaced by '/', the personal namespace prefix (e.g. a
Courier-style "INBOX.") removed. So dumps of servers with different layouts
compare directly.

Dump format (one JSON object):
  {"<folder>": {"uidvalidity": N,
                "messages": [[sha256(body), [flags...], internaldate_utc_epoch
                              (, uid if --uids)], ...]},   # sorted
   ...,
   "subscriptions": ["<folder>", ...]}                     # sorted
"""

import argparse
import base64
import csv
import datetime
import fnmatch
import hashlib
import imaplib
import json
import os
import random
import re
import ssl
import sys
from collections import Counter

# Corpus messages can be several MB; imaplib's default line limit is 1 MB
# (it only applies to lines, but be generous for long header lines too).
imaplib._MAXLINE = 64 * 1024 * 1024

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
SYSTEM_FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"]


def die(msg, code=2):
    print("imaptool: " + msg, file=sys.stderr)
    sys.exit(code)


# ------------------------------------------------------------ modified UTF-7
# RFC 3501 section 5.1.3: printable ASCII stands for itself ("&" is "&-"),
# everything else is UTF-16BE in base64 with "," for "/", between "&" and "-".

def mutf7_encode(text):
    out, run = [], []

    def flush():
        if run:
            raw = "".join(run).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            run.clear()

    for ch in text:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(name):
    out, i = [], 0
    while i < len(name):
        ch = name[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated modified UTF-7 in %r" % name)
        if end == i + 1:
            out.append("&")
        else:
            b64 = name[i + 1:end].replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            out.append(base64.b64decode(b64).decode("utf-16-be"))
        i = end + 1
    return "".join(out)


# ------------------------------------------------------------ IMAP plumbing

def imap_quote(s):
    """An IMAP quoted string (imaplib passes arguments through as-is)."""
    if any(c in s for c in "\r\n\0") or any(ord(c) > 0x7e for c in s):
        raise ValueError("can't quote %r" % s)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tokenize(data):
    """Tokens of a response line: str atoms/quoted, lists, None for NIL.
    Literals have already been split out by imaplib; they are passed in as
    bytes objects inside `data` (a list of str/bytes pieces)."""
    pieces = data if isinstance(data, list) else [data]
    tokens_stack = [[]]
    for piece in pieces:
        if isinstance(piece, bytes) and getattr(piece, "_literal", False):
            tokens_stack[-1].append(piece)
            continue
        s = piece.decode("utf-8", "surrogateescape") if isinstance(piece, bytes) else piece
        i = 0
        while i < len(s):
            c = s[i]
            if c in " \r\n":
                i += 1
            elif c == "(":
                tokens_stack.append([])
                i += 1
            elif c == ")":
                lst = tokens_stack.pop()
                tokens_stack[-1].append(lst)
                i += 1
            elif c == '"':
                j, buf = i + 1, []
                while s[j] != '"':
                    if s[j] == "\\":
                        j += 1
                    buf.append(s[j])
                    j += 1
                tokens_stack[-1].append("".join(buf))
                i = j + 1
            elif c == "{":
                # literal marker: the literal itself is the next piece
                j = s.index("}", i)
                i = j + 1
            else:
                # an atom; "[...]" inside it (BODY[], [Gmail]) may hold
                # anything but "]"
                j, depth = i, 0
                while j < len(s) and (depth or s[j] not in ' ()"\r\n'):
                    if s[j] == "[":
                        depth += 1
                    elif s[j] == "]" and depth:
                        depth -= 1
                    j += 1
                atom = s[i:j]
                tokens_stack[-1].append(None if atom.upper() == "NIL" else atom)
                i += len(atom)
    if len(tokens_stack) != 1:
        raise ValueError("unbalanced parentheses in %r" % (pieces,))
    return tokens_stack[0]


class Literal(bytes):
    _literal = True


def untagged_items(data):
    """Group imaplib's untagged data into responses: each a list of pieces
    (str/bytes text and Literal bodies)."""
    items, cur = [], None
    for d in data:
        if d is None:
            continue
        if isinstance(d, tuple):
            head, lit = d
            if cur is not None and cur[-1] is not None and _continues(cur):
                cur.extend([head, Literal(lit)])
            else:
                cur = [head, Literal(lit)]
                items.append(cur)
        else:
            if cur is not None and _continues(cur):
                cur.append(d)
            else:
                cur = [d]
                items.append(cur)
    return items


def _continues(cur):
    # a response continues after a literal: imaplib then hands us the rest
    # of the line as a separate bytes piece
    return isinstance(cur[-1], Literal)


def connect(args):
    timeout = getattr(args, "timeout", 120)
    if getattr(args, "ssl", False):
        ctx = ssl.create_default_context()
        if args.cafile:
            ctx.load_verify_locations(args.cafile)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        conn = imaplib.IMAP4_SSL(args.host, args.port, ssl_context=ctx, timeout=timeout)
    else:
        conn = imaplib.IMAP4(args.host, args.port, timeout=timeout)
    try:
        # a PREAUTH greeting (an inetd-started server) needs no login
        if conn.state != "AUTH":
            conn.login(args.user, args.password)
    except imaplib.IMAP4.error as e:
        die("login as %s failed: %s" % (args.user, e), 1)
    # imaplib keeps the pre-login capabilities; NAMESPACE, UIDPLUS and
    # UNSELECT are typically only announced after login
    typ, dat = conn.capability()
    if typ == "OK" and dat and dat[-1]:
        conn.capabilities = tuple(dat[-1].decode("ascii", "replace").upper().split())
    return conn


def check(resp, what):
    typ, data = resp
    if typ != "OK":
        raise RuntimeError("%s: %s %r" % (what, typ, data))
    return data


def namespace_info(conn):
    """(personal prefix, delimiter) from NAMESPACE, else LIST "" ""."""
    prefix, delim = "", None
    if "NAMESPACE" in conn.capabilities:
        data = check(conn.namespace(), "NAMESPACE")
        toks = tokenize(untagged_items(data)[0])
        if toks and isinstance(toks[0], list) and toks[0]:
            prefix = mutf7_decode(toks[0][0][0] or "")
            delim = toks[0][0][1]
    if delim is None:
        data = check(conn.list('""', '""'), 'LIST "" ""')
        toks = tokenize(untagged_items(data)[0])
        delim = toks[1]
    return prefix, delim


class Account:
    """Maps logical folder names ('/'-separated, no namespace prefix) to
    the server's names and back."""

    def __init__(self, conn):
        self.conn = conn
        self.prefix, self.delim = namespace_info(conn)

    def to_server(self, logical):
        if logical.upper() == "INBOX":
            return "INBOX"
        parts = logical.split("/")
        if self.delim and any(self.delim in p for p in parts):
            raise ValueError("folder %r contains the server's delimiter %r"
                             % (logical, self.delim))
        return mutf7_encode(self.prefix + (self.delim or "/").join(parts))

    def to_logical(self, server_name):
        name = mutf7_decode(server_name)
        if name.upper() == "INBOX":
            return "INBOX"
        if self.prefix and name.startswith(self.prefix):
            name = name[len(self.prefix):]
        if self.delim and self.delim != "/":
            name = name.replace(self.delim, "/")
        return name

    def list(self, command="LIST"):
        """[(server_name, flags)] for every mailbox the server lists."""
        conn = self.conn
        if command == "LSUB":
            data = check(conn.lsub('""', '"*"'), "LSUB")
        else:
            data = check(conn.list('""', '"*"'), "LIST")
        out = []
        for item in untagged_items(data):
            toks = tokenize(item)
            if len(toks) < 3:
                continue
            flags, name = toks[0], toks[2]
            if isinstance(name, bytes):
                name = name.decode("utf-8", "surrogateescape")
            out.append((name, [f.lower() for f in flags]))
        return out

    def mailbox_arg(self, server_name):
        return imap_quote(server_name)

    def select(self, server_name, readonly=True):
        typ, data = self.conn.select(self.mailbox_arg(server_name), readonly=readonly)
        if typ != "OK":
            raise RuntimeError("SELECT %s: %r" % (server_name, data))
        uv = self.conn.untagged_responses.get("UIDVALIDITY", [b"0"])[-1]
        return int(uv)

    def uids(self):
        data = check(self.conn.uid("SEARCH", "ALL"), "UID SEARCH")
        out = []
        for d in data:
            if d:
                out.extend(int(x) for x in d.split())
        return sorted(out)


def unselect(conn):
    """Leave the mailbox without CLOSE's implicit expunge of \\Deleted."""
    if "UNSELECT" in conn.capabilities:
        check(conn.unselect(), "UNSELECT")
    else:
        # EXAMINE of INBOX is the classic way to drop a selection safely
        conn.select("INBOX", readonly=True)


def uid_set(uids):
    """Compact IMAP sequence set from sorted UIDs."""
    parts, start, prev = [], None, None
    for u in uids:
        if start is None:
            start = prev = u
        elif u == prev + 1:
            prev = u
        else:
            parts.append("%d" % start if start == prev else "%d:%d" % (start, prev))
            start = prev = u
    if start is not None:
        parts.append("%d" % start if start == prev else "%d:%d" % (start, prev))
    return ",".join(parts)


def parse_internaldate(s):
    """'17-Jul-1996 02:44:25 -0700' -> UTC epoch seconds."""
    m = re.match(r"\s*(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", s)
    if not m:
        raise ValueError("bad INTERNALDATE %r" % s)
    d, mon, y, hh, mm, ss, sign, zh, zm = m.groups()
    dt = datetime.datetime(int(y), MONTHS.index(mon.capitalize()) + 1, int(d),
                           int(hh), int(mm), int(ss), tzinfo=datetime.timezone.utc)
    off = (int(zh) * 60 + int(zm)) * (1 if sign == "+" else -1)
    return int(dt.timestamp()) - off * 60


def format_internaldate(epoch, tz_minutes):
    tz = datetime.timezone(datetime.timedelta(minutes=tz_minutes))
    dt = datetime.datetime.fromtimestamp(epoch, tz)
    sign = "+" if tz_minutes >= 0 else "-"
    return '"%02d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        dt.day, MONTHS[dt.month - 1], dt.year, dt.hour, dt.minute, dt.second,
        sign, abs(tz_minutes) // 60, abs(tz_minutes) % 60)


def fetch_messages(conn, uids, with_body=True, batch=50):
    """Yield dicts (uid, flags, internaldate, size, body) for UIDs."""
    items = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])" if with_body \
        else "(UID FLAGS INTERNALDATE RFC822.SIZE)"
    for i in range(0, len(uids), batch):
        chunk = uids[i:i + batch]
        data = check(conn.uid("FETCH", uid_set(chunk), items), "UID FETCH")
        for item in untagged_items(data):
            toks = tokenize(item)
            # "<seq> (<att> <val> ...)" (imaplib strips the "FETCH" word)
            if len(toks) < 2 or not isinstance(toks[-1], list):
                continue
            att = toks[-1]
            msg = {}
            for k in range(0, len(att) - 1, 2):
                key = att[k].upper() if isinstance(att[k], str) else att[k]
                msg[key] = att[k + 1]
            if "UID" not in msg:
                continue  # an unsolicited FETCH (flag update)
            if with_body and "BODY[]" not in msg:
                continue
            body = msg.get("BODY[]")
            if isinstance(body, str):
                body = body.encode("utf-8", "surrogateescape")
            yield {
                "uid": int(msg["UID"]),
                "flags": sorted(f for f in msg.get("FLAGS", []) if f.lower() != "\\recent"),
                "internaldate": parse_internaldate(msg["INTERNALDATE"]),
                "size": int(msg.get("RFC822.SIZE", -1)),
                "body": body if body is not None else b"",
            }


# ------------------------------------------------------------ corpus / seed

def read_corpus(corpus_dir):
    manifest = os.path.join(corpus_dir, "MANIFEST.tsv")
    if not os.path.isfile(manifest):
        die("no MANIFEST.tsv in %s" % corpus_dir)
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [r["file"] for r in rows]


LONE_LF = re.compile(rb"\r\n|\r(?!\n)|\n")


def crlf(data):
    # the same normalisation imaplib applies to APPEND literals, so what we
    # send is what we mean
    return LONE_LF.sub(b"\r\n", data)


# (logical folder, weight). Weight 0 = created empty.
FOLDERS_DEFAULT = [
    ("INBOX", 30), ("Sent", 12), ("Drafts", 4), ("Trash", 5), ("Junk", 3),
    ("Archive", 8), ("Archive/2018", 5), ("Work", 8), ("Work/Projects", 4),
    ("Work/Projects/2019", 5), ("Отправленные-old", 4), ("Entwürfe", 3),
    ("Q&A Notes", 3), ("Lists/dovecot users", 3), ('Say "hi"', 2),
    ("Empty", 0),
]
FOLDERS_GMAIL = [
    ("INBOX", 30), ("[Gmail]/Sent Mail", 12), ("[Gmail]/Drafts", 4),
    ("[Gmail]/Trash", 5), ("[Gmail]/Spam", 3), ("Work", 8),
    ("Work/Projects/2019", 5), ("Отправленные-old", 4), ("Entwürfe", 3),
    ("Q&A Notes", 3), ('Say "hi"', 2), ("Empty", 0),
]
SUBSCRIBED = {"INBOX", "Sent", "Drafts", "Work", "Work/Projects/2019",
              "Entwürfe", "Lists/dovecot users", "[Gmail]/Sent Mail",
              "[Gmail]/Drafts", "[Gmail]/All Mail"}
DRAFTS = {"Drafts", "[Gmail]/Drafts", "Entwürfe"}
NOT_IN_ALL_MAIL = {"[Gmail]/Trash", "[Gmail]/Spam"}


def random_flags(rng, folder):
    flags = []
    draft = folder in DRAFTS
    if rng.random() < (0.2 if draft else 0.7):
        flags.append("\\Seen")
    if rng.random() < 0.15:
        flags.append("\\Answered")
    if rng.random() < 0.10:
        flags.append("\\Flagged")
    if rng.random() < (0.9 if draft else 0.01):
        flags.append("\\Draft")
    if rng.random() < 0.03:
        flags.append("\\Deleted")
    if rng.random() < 0.08:
        flags.append("$Forwarded")
    if rng.random() < 0.05:
        flags.append("Work")
    if rng.random() < 0.02:
        flags.append("$MDNSent")
    return flags


def random_date(rng):
    lo = int(datetime.datetime(2005, 1, 1, tzinfo=datetime.timezone.utc).timestamp())
    hi = int(datetime.datetime(2024, 12, 31, tzinfo=datetime.timezone.utc).timestamp())
    tz = rng.choice([-480, -300, 0, 60, 120, 330, 540, 765])
    return rng.randrange(lo, hi), tz


def create_folder(conn, acct, logical):
    server = acct.to_server(logical)
    typ, data = conn.create(acct.mailbox_arg(server))
    if typ != "OK" and b"exists" not in b" ".join(d or b"" for d in data).lower():
        raise RuntimeError("CREATE %s: %r" % (server, data))
    return server


def append(conn, server_name, flags, date, body):
    typ, data = conn.append(imap_quote(server_name),
                            "(" + " ".join(flags) + ")" if flags else None,
                            date, body)
    if typ != "OK":
        raise RuntimeError("APPEND to %s: %r" % (server_name, data))


def big_message(size_mb, seed):
    """A deterministic large message with a base64 attachment."""
    rng = random.Random("big-%s" % seed)
    raw = bytes(rng.getrandbits(8) for _ in range(min(size_mb, 64) * 1024 * 768))
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    head = ("From: Big Sender <big@example.org>\r\n"
            "To: alice@example.org\r\n"
            "Subject: large message (%d MB)\r\n"
            "Date: Mon, 01 Jan 2018 10:00:00 +0000\r\n"
            "Message-ID: <big-%s-%d@dovecot-migrate.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            "--b1\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
            "--b1\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=\"blob.bin\"\r\n\r\n"
            % (size_mb, seed, size_mb)).encode()
    return head + b64 + b"--b1--\r\n"


def cmd_seed(args):
    files = read_corpus(args.corpus)
    rng = random.Random(args.seed)
    if args.limit is not None and args.limit < len(files):
        keep = set(rng.sample(range(len(files)), args.limit))
        files = [f for i, f in enumerate(files) if i in keep]
    gmail = args.layout == "gmail"
    folders = FOLDERS_GMAIL if gmail else FOLDERS_DEFAULT
    # a server may refuse some names (Cyrus: no '"' in a mailbox name)
    folders = [(f, w) for f, w in folders if f not in (args.skip_folder or [])]

    conn = connect(args)
    acct = Account(conn)
    if args.layout == "courier" and acct.prefix != "INBOX" + (acct.delim or ""):
        print("imaptool: warning: --layout courier but the server's namespace "
              "prefix is %r" % acct.prefix, file=sys.stderr)

    server = {}
    all_folders = [f for f, _ in folders] + (["[Gmail]/All Mail"] if gmail else [])
    for logical in all_folders:
        server[logical] = create_folder(conn, acct, logical) \
            if logical != "INBOX" else "INBOX"

    names = [f for f, w in folders if w > 0]
    weights = [w for f, w in folders if w > 0]
    counts = Counter()
    total_bytes = 0
    refused = []

    def put(logical, flags, date, body):
        nonlocal total_bytes
        if args.system_flags:
            flags = [f for f in flags if f.startswith("\\")]
        append(conn, server[logical], flags, date, body)
        counts[logical] += 1
        total_bytes += len(body)
        if gmail and logical not in NOT_IN_ALL_MAIL and logical != "[Gmail]/All Mail":
            # Gmail shows every message that isn't in Trash/Spam in All Mail
            append(conn, server["[Gmail]/All Mail"], flags, date, body)
            counts["[Gmail]/All Mail"] += 1

    for idx, name in enumerate(files):
        with open(os.path.join(args.corpus, name), "rb") as f:
            body = crlf(f.read())
        folder = rng.choices(names, weights)[0]
        flags = random_flags(rng, folder)
        epoch, tz = random_date(rng)
        date = format_internaldate(epoch, tz)
        try:
            put(folder, flags, date, body)
            if idx == 0:
                # multiset case: the very same message twice in one folder
                put(folder, flags, date, body)
            if idx == 1:
                # the same message in a second folder, other flags
                other = "Work" if folder != "Work" else "INBOX"
                put(other, random_flags(rng, other), date, body)
        except (RuntimeError, imaplib.IMAP4.error) as e:
            if not (args.skip_refused and str(e).startswith("APPEND to")):
                die("%s: %s" % (name, e), 1)
            # the server refused this message (Cyrus: "invalid header"):
            # a real account on it can't hold it either
            refused.append(name)

    if args.big_mb:
        body = big_message(args.big_mb, args.seed)
        epoch, tz = random_date(rng)
        put("INBOX", ["\\Seen"], format_internaldate(epoch, tz), body)

    for logical in all_folders:
        if logical in SUBSCRIBED:
            resp = conn.subscribe(acct.mailbox_arg(server[logical]))
            if args.skip_refused and resp[0] != "OK":
                refused.append("SUBSCRIBE " + logical)
                continue
            check(resp, "SUBSCRIBE " + logical)
    conn.logout()

    print("seeded %s: %d messages, %d bytes, %d corpus files, layout %s "
          "(prefix %r, delimiter %r)" % (args.user, sum(counts.values()),
                                        total_bytes, len(files), args.layout,
                                        acct.prefix, acct.delim))
    if refused:
        print("  refused by the server and left out: %d (%s)"
              % (len(refused), ", ".join(refused)))
    for logical in all_folders:
        print("  %-24s %5d%s" % (logical, counts[logical],
                                 "  (subscribed)" if logical in SUBSCRIBED else ""))
    return 0


# ------------------------------------------------------------ dump

def cmd_dump(args):
    conn = connect(args)
    acct = Account(conn)
    out = {}
    for server_name, flags in sorted(acct.list()):
        if "\\noselect" in flags or "\\nonexistent" in flags:
            continue
        logical = acct.to_logical(server_name)
        uidvalidity = acct.select(server_name, readonly=True)
        msgs = []
        for m in fetch_messages(conn, acct.uids()):
            if m["size"] >= 0 and m["size"] != len(m["body"]):
                print("imaptool: warning: %s UID %d: RFC822.SIZE %d but BODY[] "
                      "has %d bytes" % (logical, m["uid"], m["size"], len(m["body"])),
                      file=sys.stderr)
            entry = [hashlib.sha256(m["body"]).hexdigest(), m["flags"], m["internaldate"]]
            if args.uids:
                entry.append(m["uid"])
            msgs.append(entry)
        unselect(conn)
        msgs.sort(key=lambda e: json.dumps(e))
        if logical in out:
            die("two server folders map to %r" % logical, 1)
        out[logical] = {"uidvalidity": uidvalidity, "messages": msgs}
    if "subscriptions" in out:
        die("a folder is called 'subscriptions': the dump format can't hold it", 1)
    out["subscriptions"] = [] if args.no_subscriptions else \
        sorted({acct.to_logical(n) for n, _ in acct.list("LSUB")})
    conn.logout()
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


# ------------------------------------------------------------ compare

def describe(entry):
    s = "%s flags=%s date=%s" % (entry[0][:12], " ".join(entry[1]) or "-",
                                "-" if entry[2] is None else
                                datetime.datetime.fromtimestamp(
                                    entry[2], datetime.timezone.utc)
                                .strftime("%Y-%m-%dT%H:%M:%SZ"))
    if len(entry) > 3:
        s += " uid=%d" % entry[3]
    return s


def load_dump(path, fmap, ignore, uids, dates=True):
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    subs = d.pop("subscriptions", [])
    folders = {}
    for name, box in d.items():
        name = fmap.get(name, name)
        if any(fnmatch.fnmatchcase(name, pat) for pat in ignore):
            continue
        msgs = box["messages"]
        if not uids:
            msgs = [m[:3] for m in msgs]
        if not dates:
            msgs = [m[:2] + [None] + m[3:] for m in msgs]
        entry = folders.setdefault(name, {"uidvalidity": box["uidvalidity"],
                                           "messages": Counter()})
        entry["messages"].update(json.dumps(m) for m in msgs)
    subs = {fmap.get(s, s) for s in subs}
    subs = {s for s in subs if not any(fnmatch.fnmatchcase(s, p) for p in ignore)}
    return folders, subs


def cmd_compare(args):
    fmap = json.loads(args.folders_map) if args.folders_map else {}
    ignore = args.ignore_folders or []
    a, asubs = load_dump(args.a, fmap, ignore, args.uids, not args.ignore_dates)
    b, bsubs = load_dump(args.b, {}, ignore, args.uids, not args.ignore_dates)
    diffs = 0
    for name in sorted(set(a) | set(b)):
        if name not in b:
            print("folder %r: only in A (%d messages)" % (name, sum(a[name]["messages"].values())))
            diffs += 1
            continue
        if name not in a:
            print("folder %r: only in B (%d messages)" % (name, sum(b[name]["messages"].values())))
            diffs += 1
            continue
        ma, mb = a[name]["messages"], b[name]["messages"]
        missing, extra = ma - mb, mb - ma
        if args.uidvalidity and a[name]["uidvalidity"] != b[name]["uidvalidity"]:
            print("folder %r: uidvalidity %d in A, %d in B" % (
                name, a[name]["uidvalidity"], b[name]["uidvalidity"]))
            diffs += 1
        if not missing and not extra:
            continue
        diffs += 1
        print("folder %r: A has %d, B has %d; %d missing in B, %d extra in B" % (
            name, sum(ma.values()), sum(mb.values()),
            sum(missing.values()), sum(extra.values())))
        extra_by_hash = {}
        for k in extra:
            extra_by_hash.setdefault(json.loads(k)[0], []).append(json.loads(k))
        for k, n in sorted(missing.items()):
            e = json.loads(k)
            hint = ""
            if e[0] in extra_by_hash:
                hint = "  (B has it as: %s)" % "; ".join(describe(x) for x in extra_by_hash[e[0]])
            print("  missing x%d: %s%s" % (n, describe(e), hint))
        missing_hashes = {json.loads(k)[0] for k in missing}
        for k, n in sorted(extra.items()):
            e = json.loads(k)
            if e[0] in missing_hashes:
                continue  # already shown as a difference above
            what = "duplicate" if k in ma else "extra"
            print("  %s x%d: %s" % (what, n, describe(e)))
    if not args.ignore_subscriptions and asubs != bsubs:
        diffs += 1
        print("subscriptions: only in A %s; only in B %s" % (
            sorted(asubs - bsubs), sorted(bsubs - asubs)))
    if diffs:
        print("%d difference(s)" % diffs)
        return 1
    print("equal: %d folders, %d messages" % (
        len(a), sum(sum(x["messages"].values()) for x in a.values())))
    return 0


# ------------------------------------------------------------ mutate

def synthetic_message(seed, i, epoch):
    date = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return ("From: Mutator <mutate@example.org>\r\n"
            "To: alice@example.org\r\n"
            "Subject: new message %d after the first migration\r\n"
            "Date: %s\r\n"
            "Message-ID: <mutate-%s-%d@dovecot-migrate.test>\r\n"
            "\r\n"
            "Body of new message %d (seed %s).\r\n"
            % (i, date.strftime("%a, %d %b %Y %H:%M:%S +0000"), seed, i, i, seed)
            ).encode()


def cmd_mutate(args):
    rng = random.Random("mutate-%s" % args.seed)
    conn = connect(args)
    acct = Account(conn)
    boxes = sorted(n for n, fl in acct.list()
                   if "\\noselect" not in fl and "\\nonexistent" not in fl)
    if args.folder:
        wanted = set(args.folder)
        boxes = [b for b in boxes if acct.to_logical(b) in wanted]
    if not boxes:
        die("no folders to mutate", 1)
    pool = []
    for box in boxes:
        acct.select(box, readonly=True)
        pool.extend((box, uid) for uid in acct.uids())
        unselect(conn)

    def pick(n):
        return sorted(rng.sample(pool, min(n, len(pool))))

    changes = Counter()
    flag_choices = ["\\Seen", "\\Answered", "\\Flagged", "$Forwarded", "Mutated"]
    if args.system_flags:
        flag_choices = [f for f in flag_choices if f.startswith("\\")]
    by_box = {}
    for box, uid in pick(args.flags):
        by_box.setdefault(box, []).append(uid)
    for box, uids in sorted(by_box.items()):
        acct.select(box, readonly=False)
        current = {m["uid"]: m["flags"] for m in fetch_messages(conn, uids, with_body=False)}
        for uid in uids:
            flag = rng.choice(flag_choices)
            op = "-FLAGS.SILENT" if flag in current.get(uid, []) else "+FLAGS.SILENT"
            check(conn.uid("STORE", str(uid), op, "(%s)" % flag), "UID STORE")
            changes["flag"] += 1
        unselect(conn)

    corpus = read_corpus(args.corpus) if args.corpus else None
    for i in range(args.append):
        box = rng.choice(boxes)
        epoch, tz = random_date(rng)
        if corpus:
            with open(os.path.join(args.corpus, rng.choice(corpus)), "rb") as f:
                body = crlf(f.read())
        else:
            body = synthetic_message(args.seed, i, epoch)
        flags = random_flags(rng, acct.to_logical(box))
        if args.system_flags:
            flags = [f for f in flags if f.startswith("\\")]
        append(conn, box, [f for f in flags if f != "\\Deleted"],
               format_internaldate(epoch, tz), body)
        changes["append"] += 1

    by_box = {}
    for box, uid in pick(args.expunge):
        by_box.setdefault(box, []).append(uid)
    for box, uids in sorted(by_box.items()):
        acct.select(box, readonly=False)
        s = uid_set(sorted(uids))
        check(conn.uid("STORE", s, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE")
        if "UIDPLUS" in conn.capabilities:
            # only these UIDs: other \Deleted messages stay
            check(conn.uid("EXPUNGE", s), "UID EXPUNGE")
        else:
            check(conn.expunge(), "EXPUNGE")
        changes["expunge"] += len(uids)
        unselect(conn)
    conn.logout()
    print("mutated %s: %d flag changes, %d appended, %d expunged" % (
        args.user, changes["flag"], changes["append"], changes["expunge"]))
    return 0


# ------------------------------------------------------------ selftest

def cmd_selftest(args):
    """The parsing helpers, without a server."""
    for text, enc in [("Отправленные-old", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1--old"),
                      ("Entwürfe", "Entw&APw-rfe"), ("Q&A", "Q&-A"),
                      ("日本語", "&ZeVnLIqe-"), ("a~b", "a~b")]:
        assert mutf7_encode(text) == enc, (text, mutf7_encode(text))
        assert mutf7_decode(enc) == text, (enc, mutf7_decode(enc))
    assert uid_set([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    assert parse_internaldate(" 7-Jul-1996 02:44:25 -0700") == 836732665
    assert format_internaldate(836732665, -420) == '"07-Jul-1996 02:44:25 -0700"'
    # a LIST reply with a literal mailbox name, as imaplib hands it over
    data = [(b'(\\HasNoChildren) "/" {9}', b'Say "hi"!'), b'',
            b'(\\Noselect \\HasChildren) "/" [Gmail]',
            b'(\\HasNoChildren) "/" "back\\\\slash \\"q\\""']
    items = [tokenize(i) for i in untagged_items(data)]
    assert items[0] == [["\\HasNoChildren"], "/", b'Say "hi"!'], items[0]
    assert items[1] == [["\\Noselect", "\\HasChildren"], "/", "[Gmail]"], items[1]
    assert items[2][2] == 'back\\slash "q"', items[2]
    # two FETCH replies, the first with its literal, then an unsolicited one
    data = [(b'1 (UID 5 FLAGS (\\Seen $Fwd) INTERNALDATE "01-Jan-2020 00:00:00 +0000" '
             b'RFC822.SIZE 3 BODY[] {3}', b'a\r\n'), b')',
            (b'2 (UID 6 FLAGS () INTERNALDATE "01-Jan-2020 00:00:00 +0100" '
             b'RFC822.SIZE 0 BODY[] {0}', b''), b' MODSEQ (4))',
            b'3 (FLAGS (\\Deleted))']
    items = [tokenize(i) for i in untagged_items(data)]
    assert len(items) == 3, items
    assert items[0][1][-1] == b"a\r\n" and items[0][1][1] == "5", items[0]
    assert items[1][1][-4:] == ["BODY[]", b"", "MODSEQ", ["4"]], items[1]
    assert items[2] == ["3", ["FLAGS", ["\\Deleted"]]], items[2]
    print("selftest ok")
    return 0


# ------------------------------------------------------------ main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def conn_opts(sp):
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--user", required=True)
        sp.add_argument("--password", required=True)
        sp.add_argument("--ssl", action="store_true", help="implicit TLS (IMAPS)")
        sp.add_argument("--cafile", help="verify the server against this CA "
                        "(without it, --ssl doesn't verify)")
        sp.add_argument("--timeout", type=float, default=120)

    sp = sub.add_parser("seed", help="APPEND the corpus into a folder tree")
    conn_opts(sp)
    sp.add_argument("--corpus", required=True)
    sp.add_argument("--layout", choices=["default", "courier", "gmail"], default="default")
    sp.add_argument("--system-flags", action="store_true",
                    help="no keywords (a server without PERMANENTFLAGS \\*)")
    sp.add_argument("--skip-refused", action="store_true",
                    help="leave out messages the server refuses to APPEND")
    sp.add_argument("--skip-folder", action="append", metavar="FOLDER",
                    help="leave this (logical) folder out of the tree; repeatable")
    sp.add_argument("--limit", type=int)
    sp.add_argument("--seed", default="1")
    sp.add_argument("--big-mb", type=int, default=0,
                    help="also APPEND one generated message of about N MB")

    sp = sub.add_parser("dump", help="dump an account as JSON")
    conn_opts(sp)
    sp.add_argument("--uids", action="store_true")
    sp.add_argument("--no-subscriptions", action="store_true",
                    help="no LSUB (a server that refuses it): an empty list")

    sp = sub.add_parser("compare", help="compare two dumps")
    sp.add_argument("a")
    sp.add_argument("b")
    sp.add_argument("--folders-map", help='JSON object renaming A\'s folders, '
                    'e.g. \'{"[Gmail]/Sent Mail": "Sent"}\'')
    sp.add_argument("--ignore-folders", nargs="*", default=[],
                    help="folder names or glob patterns to leave out")
    sp.add_argument("--uids", action="store_true", help="UIDs must match too")
    sp.add_argument("--uidvalidity", action="store_true",
                    help="UIDVALIDITY must match too")
    sp.add_argument("--ignore-dates", action="store_true",
                    help="leave INTERNALDATE out (a server whose dates change "
                    "from session to session)")
    sp.add_argument("--ignore-subscriptions", action="store_true")

    sp = sub.add_parser("mutate", help="change an account deterministically")
    conn_opts(sp)
    sp.add_argument("--seed", default="1")
    sp.add_argument("--flags", type=int, default=0, help="flag changes")
    sp.add_argument("--system-flags", action="store_true",
                    help="no keywords (a server without PERMANENTFLAGS \\*)")
    sp.add_argument("--append", type=int, default=0, help="new messages")
    sp.add_argument("--expunge", type=int, default=0, help="messages to expunge")
    sp.add_argument("--folder", action="append",
                    help="only these (logical) folders; repeatable")
    sp.add_argument("--corpus", help="take appended messages from the corpus "
                    "(default: synthetic ones with unique Message-IDs)")

    sub.add_parser("selftest", help="test the parsing helpers offline")

    args = p.parse_args(argv)
    try:
        return {"seed": cmd_seed, "dump": cmd_dump, "compare": cmd_compare,
                "mutate": cmd_mutate, "selftest": cmd_selftest}[args.cmd](args)
    except (OSError, imaplib.IMAP4.error, RuntimeError, ValueError) as e:
        die("%s: %s" % (args.cmd, e), 1)


if __name__ == "__main__":
    sys.exit(main())
