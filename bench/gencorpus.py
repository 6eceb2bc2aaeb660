#!/usr/bin/env python3
"""Deterministic synthetic mail corpus, written straight into a Maildir++.

Standard library only. The same arguments always give byte-identical
messages (file names, contents, mtimes): every random choice comes from
random.Random(seed).

  gencorpus.py base  --maildir DIR [--messages 5000] [--total-mb 95] [--seed 1]
                     [--shape even|inbox-heavy|gmail]
  gencorpus.py extra --maildir DIR --messages 50 --tag T [--corpus base] [--seed 2]
  gencorpus.py many  --maildir DIR [--messages 100000] [--seed 3]
  gencorpus.py huge  --maildir DIR [--mb 300] [--seed 4]
  gencorpus.py wide  --maildir DIR [--messages 10010] [--seed 5]

"base" writes the standard corpus: 10 nested folders, log-normal sizes
between 600 B and 2 MiB scaled to --total-mb, 2 % of the messages without
a Message-ID, a mix of \\Seen \\Answered \\Flagged. Its --shape says
how the messages are spread: "even" (today's spread, 28 % in INBOX),
"inbox-heavy" (about half in INBOX, the rest over the nine other folders
in the even spread's proportions) or "gmail" (every message in
"[Gmail]/All Mail", which the source declares \\All; about 80 % also as a
copy in one or two label folders: INBOX, "[Gmail]/Sent Mail" or a user
label; --messages counts the messages of All Mail, the copies come on
top). "all_labelled" in the summary is how many messages of the \\All
folder also are in a label folder. "extra" writes new
mail (no flags, into new/) whose file names contain the tag, so that it
can be found and removed again after a pass; it writes into the folders of
the --corpus it is added to. "many" writes many small messages (600 B -
8 KiB) into 10 folders; "huge" writes one message with a single base64
attachment of --mb MiB into INBOX; "wide" writes small messages (600 B -
8 KiB), the same number into each of 1,001 folders: INBOX and 100 top-level
folders with 9 children each, many names with spaces and non-ASCII
characters (and '&'), so that modified UTF-7 is exercised.

Files are written with LF line ends; the names carry S=<size> and
W=<size with CRLF> like Dovecot's own. Folder directories and the
subscriptions file use Dovecot's Maildir++ storage names ('.'-separated,
modified UTF-7). --uid/--gid chown everything. A JSON summary goes to
stdout ("folders" counts the mailboxes created, INBOX included).
"""

import argparse
import base64
import bisect
import json
import math
import os
import random
import sys
import time

# IMAP modified UTF-7 (RFC 3501 5.1.3): how Dovecot names mailboxes on
# disk; the test tools' implementation
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "lib"))
from imaptool import mutf7_encode  # noqa: E402

FOLDERS = [
    # (IMAP name, share of the messages)
    ("INBOX", 0.28),
    ("Sent", 0.12),
    ("Drafts", 0.01),
    ("Trash", 0.04),
    ("Archive", 0.05),
    ("Archive/2022", 0.15),
    ("Archive/2023", 0.15),
    ("Projects", 0.06),
    ("Projects/Alpha", 0.09),
    ("Projects/Alpha/Specs", 0.05),
]

MIN_SIZE = 600
MAX_SIZE = 2 * 1024 * 1024
SIGMA = 1.6  # log-normal shape; mu is solved for the requested total
START = 1609459200  # 2021-01-01T00:00:00Z
SPAN = 2 * 365 * 86400
TEXT_LIMIT = 12 * 1024  # larger messages get a base64 attachment

SYLLABLES = ("ka lo mi ne ru ta shi po ve da an el or is um ex in re de "
             "con pro tra ser mon lit gra fen bor qui zan hel").split()
NAMES = ("Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory "
         "Niaj Olivia Peggy Rupert Sybil Trent Victor Walter").split()

# "wide": 100 top-level folders (10 styles x 10) with these 9 children each
WIDE_TOP = ["Project %02d", "Kunden %02d", "Café %02d", "Ärger und Ölpreise %02d",
            "Отчёты %02d", "資料 %02d", "R&D %02d", "Old Stuff %02d",
            "Ünïcødé Tést %02d", "Customers %02d"]
WIDE_CHILDREN = ["2019", "2020", "Année 2021", "Q1 Reports", "Über uns", "Дела",
                 "進行中", "Notes & Ideas", "Misc"]


# --shape inbox-heavy: INBOX holds half, the other nine keep their proportions
INBOX_HEAVY = [("INBOX", 0.5)] + [(n, w * 0.5 / (1 - FOLDERS[0][1])) for n, w in FOLDERS[1:]]

# --shape gmail: every message is in ALL_MAIL; the labels are folders
ALL_MAIL = "[Gmail]/All Mail"
GMAIL_SENT = "[Gmail]/Sent Mail"
GMAIL_LABELS = ["Work", "Work/Clients", "Family", "Receipts", "Travel", "Newsletters",
                "Lists/dovecot"]
GMAIL_FOLDERS = ["INBOX", ALL_MAIL, GMAIL_SENT] + GMAIL_LABELS


def gmail_labels(rng):
    """The label folders of one message: INBOX 35 %, Sent 15 %, archived
    only 20 %, one user label 30 %; a second user label 25 % of the time."""
    r = rng.random()
    if r < 0.35:
        labels = ["INBOX"]
    elif r < 0.50:
        labels = [GMAIL_SENT]
    elif r < 0.70:
        labels = []
    else:
        labels = [rng.choice(GMAIL_LABELS)]
    if rng.random() < 0.25:
        extra = rng.choice(GMAIL_LABELS)
        if extra not in labels:
            labels.append(extra)
    return labels


def wide_folders():
    names = ["INBOX"]
    for style in WIDE_TOP:
        for k in range(10):
            top = style % k
            names.append(top)
            names += [top + "/" + c for c in WIDE_CHILDREN]
    return [(n, 1.0) for n in names]


def corpus_folders(corpus):
    """[(IMAP name, share)] of a corpus ("extra" writes into these)."""
    if corpus == "many":
        return [("INBOX", 0.3)] + [("Lists/list%02d" % k, 0.7 / 9) for k in range(1, 10)]
    if corpus == "wide":
        return wide_folders()
    if corpus == "huge":
        return [("INBOX", 1.0)]
    if corpus == "inbox-heavy":
        return INBOX_HEAVY
    if corpus == "gmail":
        return [(n, 1.0) for n in GMAIL_FOLDERS]
    return FOLDERS


def storage_name(name):
    """Maildir++ storage name of an IMAP folder name ('/' separated)."""
    return mutf7_encode(name).replace("/", ".")


def folder_dir(maildir, name):
    """Maildir++ directory of an IMAP folder name ('/' separated)."""
    if name == "INBOX":
        return maildir
    return os.path.join(maildir, "." + storage_name(name))


class Writer:
    def __init__(self, maildir, uid, gid):
        self.maildir = maildir
        self.uid = uid
        self.gid = gid
        self.files = 0
        self.bytes = 0
        self.per_folder = {}
        self.created = {"INBOX"}

    def chown(self, path):
        if self.uid is not None:
            os.chown(path, self.uid, self.gid)

    def mkdirs(self, names):
        self.created.update(names)
        for d in [self.maildir] + [folder_dir(self.maildir, n) for n in names]:
            for sub in ("", "cur", "new", "tmp"):
                p = os.path.join(d, sub) if sub else d
                os.makedirs(p, mode=0o700, exist_ok=True)
                self.chown(p)

    def subscribe(self, names):
        path = os.path.join(self.maildir, "subscriptions")
        have = set()
        if os.path.exists(path):
            with open(path) as f:
                have = {l.rstrip("\n") for l in f}
        with open(path, "a", encoding="ascii") as f:
            for n in names:
                if n != "INBOX" and storage_name(n) not in have:
                    f.write(storage_name(n) + "\n")
        self.chown(path)

    def write(self, folder, sub, base, data, flags, mtime):
        d = os.path.join(folder_dir(self.maildir, folder), sub)
        size = len(data)
        vsize = size + data.count(b"\n")
        name = "%s,S=%d,W=%d" % (base, size, vsize)
        if sub == "cur":
            name += ":2," + flags
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(data)
        self.chown(path)
        os.utime(path, (mtime, mtime))
        self.files += 1
        self.bytes += size
        self.per_folder[folder] = self.per_folder.get(folder, 0) + 1
        return path


class TextPool:
    """A few MB of deterministic word text; bodies are slices of it."""

    def __init__(self, rng, size=2 * 1024 * 1024):
        words = []
        for _ in range(3000):
            n = rng.choice((1, 2, 2, 3, 3, 4))
            words.append("".join(rng.choice(SYLLABLES) for _ in range(n)))
        lines, total, line = [], 0, []
        width = 0
        while total < size:
            w = rng.choice(words)
            if width + len(w) + 1 > 72:
                s = " ".join(line) + "\n"
                lines.append(s)
                total += len(s)
                line, width = [], 0
                if rng.random() < 0.08:
                    lines.append("\n")
                    total += 1
            line.append(w)
            width += len(w) + 1
        self.text = "".join(lines).encode()
        self.offsets = [0]
        for i, c in enumerate(self.text):
            if c == 10:
                self.offsets.append(i + 1)
        self.offsets.pop()

    def take(self, rng, n):
        if n <= 0:
            return b""
        start = self.offsets[rng.randrange(len(self.offsets) // 2)]
        chunk = self.text[start:start + n - 1]
        return chunk + b"\n"  # exactly n bytes (the pool is > n long)


def rfc2822_date(ts):
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(ts))


def headers(rng, i, ts, with_mid, tag, extra=()):
    sender = rng.choice(NAMES)
    h = [
        "Return-Path: <%s@example.org>" % sender.lower(),
        "Date: %s" % rfc2822_date(ts),
        "From: \"%s Example\" <%s@example.org>" % (sender, sender.lower()),
        "To: Alice <alice@example.net>",
    ]
    if rng.random() < 0.3:
        h.append("Cc: %s <%s@example.com>" % ((rng.choice(NAMES),) * 2))
    h.append("Subject: [%s] message %d about %s" %
             (tag, i, " ".join(rng.choice(SYLLABLES) for _ in range(3))))
    if with_mid:
        h.append("Message-ID: <%s.%d.%08x@bench.example.org>" %
                 (tag, i, rng.getrandbits(32)))
    h.extend(extra)
    h.append("MIME-Version: 1.0")
    return h


def make_message(rng, pool, i, ts, size, with_mid, tag):
    """A message of about `size` bytes (LF line ends)."""
    if size <= TEXT_LIMIT:
        h = headers(rng, i, ts, with_mid, tag) + [
            "Content-Type: text/plain; charset=us-ascii",
            "Content-Transfer-Encoding: 7bit",
        ]
        head = ("\n".join(h) + "\n\n").encode()
        body = pool.take(rng, max(size - len(head), 40))
        return head + body
    boundary = "=_bench_%d_%08x" % (i, rng.getrandbits(32))
    h = headers(rng, i, ts, with_mid, tag) + [
        "Content-Type: multipart/mixed; boundary=\"%s\"" % boundary,
    ]
    text = pool.take(rng, rng.randrange(400, 3000))
    parts = [("\n".join(h) + "\n\nThis is a multi-part message in MIME format.\n\n"
              "--%s\nContent-Type: text/plain; charset=us-ascii\n"
              "Content-Transfer-Encoding: 7bit\n\n" % boundary).encode(), text]
    att_head = ("\n--%s\nContent-Type: application/octet-stream; name=\"file%d.bin\"\n"
                "Content-Transfer-Encoding: base64\n"
                "Content-Disposition: attachment; filename=\"file%d.bin\"\n\n"
                % (boundary, i, i)).encode()
    tail = ("\n--%s--\n" % boundary).encode()
    used = sum(len(p) for p in parts) + len(att_head) + len(tail)
    raw = max((size - used) * 57 // 77, 57)
    parts += [att_head, base64.encodebytes(rng.randbytes(raw)), tail]
    return b"".join(parts)


def lognormal_sizes(rng, n, total, lo, hi, sigma):
    """n sizes: clamp(exp(mu + sigma*z), lo, hi) with mu solved so that the
    sum is about `total` (bisection; deterministic)."""
    zs = [rng.gauss(0.0, 1.0) for _ in range(n)]

    def tot(mu):
        return sum(min(max(math.exp(mu + sigma * z), lo), hi) for z in zs)

    a, b = math.log(lo) - 5, math.log(hi) + 5
    for _ in range(60):
        m = (a + b) / 2
        if tot(m) < total:
            a = m
        else:
            b = m
    mu = (a + b) / 2
    return [int(min(max(math.exp(mu + sigma * z), lo), hi)) for z in zs]


def pick_folders(rng, n, folders):
    cum, acc = [], 0.0
    for _, w in folders:
        acc += w
        cum.append(acc)
    return [folders[min(bisect.bisect(cum, rng.random() * acc), len(folders) - 1)][0]
            for _ in range(n)]


def flags_for(rng):
    f = ""
    if rng.random() < 0.05:
        f += "F"
    if rng.random() < 0.10:
        f += "R"
    if rng.random() < 0.70:
        f += "S"
    return f


def cmd_base(a, w, folders=None, lo=MIN_SIZE, hi=MAX_SIZE, sigma=SIGMA, tag="bench",
             round_robin=False):
    shape = getattr(a, "shape", "even")
    if folders is None:
        folders = corpus_folders(shape)
    rng = random.Random(a.seed)
    pool = TextPool(random.Random(a.seed * 7919 + 1))
    n = a.messages
    sizes = lognormal_sizes(rng, n, a.total_mb * 1e6 * n / max(a.messages_ref, 1), lo, hi, sigma)
    names = [f for f, _ in folders]
    if round_robin:  # the same number in every folder
        where = [names[i % len(names)] for i in range(n)]
    else:
        where = pick_folders(rng, n, folders)
    no_mid = set(rng.sample(range(n), round(n * 0.02)))
    w.mkdirs(names)
    w.subscribe(names)
    step = max(SPAN // n, 1)
    # the labels come from their own generator: the messages stay those
    # of the other shapes
    lrng = random.Random(a.seed * 15485863 + 11)
    labelled = 0
    for i in range(n):
        ts = START + i * step
        data = make_message(rng, pool, i, ts, sizes[i], i not in no_mid, tag)
        base = "%d.M%dP%d.%s" % (ts, i, a.seed, tag)
        flags = flags_for(rng)
        if shape != "gmail":
            w.write(where[i], "cur", base, data, flags, ts)
            continue
        w.write(ALL_MAIL, "cur", base, data, flags, ts)
        labels = gmail_labels(lrng)
        labelled += 1 if labels else 0
        for k, label in enumerate(labels):
            w.write(label, "cur", "%s.L%d" % (base, k), data, flags, ts)
    return {"no_message_id": len(no_mid), "min_size": min(sizes), "max_size": max(sizes),
            "shape": shape, "all_labelled": labelled}


def cmd_extra(a, w):
    """New mail: the same a.messages messages for a given seed (so every
    repetition adds identical mail), in new/, tagged file names."""
    rng = random.Random(a.seed * 104729 + 17)
    pool = TextPool(random.Random(a.seed * 7919 + 1))
    folders = corpus_folders(a.corpus)
    w.mkdirs([f for f, _ in folders])
    sizes = lognormal_sizes(rng, a.messages, 19000 * a.messages, MIN_SIZE, MAX_SIZE, SIGMA)
    where = pick_folders(rng, a.messages, folders)
    now = int(time.time())
    for i in range(a.messages):
        ts = START + SPAN + 86400 + i * 60
        data = make_message(rng, pool, 900000 + i, ts, sizes[i], True, "new")
        base = "%d.M%dP%dX%s.bench" % (ts, i, a.seed, a.tag)
        if a.corpus == "gmail":  # new mail: in All Mail and labelled INBOX
            w.write(ALL_MAIL, "new", base, data, "", now)
            w.write("INBOX", "new", base + ".L0", data, "", now)
        else:
            w.write(where[i], "new", base, data, "", now)
    return {"all_labelled": a.messages if a.corpus == "gmail" else 0}


def cmd_many(a, w):
    a.messages_ref = a.messages
    a.total_mb = a.messages * 1800 / 1e6
    return cmd_base(a, w, folders=corpus_folders("many"), lo=600, hi=8192, sigma=0.6, tag="many")


def cmd_wide(a, w):
    a.messages_ref = a.messages
    a.total_mb = a.messages * 1800 / 1e6
    return cmd_base(a, w, folders=corpus_folders("wide"), lo=600, hi=8192, sigma=0.6, tag="wide",
                    round_robin=True)


def cmd_huge(a, w):
    rng = random.Random(a.seed)
    pool = TextPool(random.Random(a.seed * 7919 + 1))
    w.mkdirs(["INBOX"])
    ts = START + 86400
    boundary = "=_bench_huge"
    h = headers(rng, 0, ts, True, "huge") + [
        "Content-Type: multipart/mixed; boundary=\"%s\"" % boundary]
    head = ("\n".join(h) + "\n\n--%s\nContent-Type: text/plain\n\n" % boundary).encode()
    head += pool.take(rng, 1000)
    head += ("\n--%s\nContent-Type: application/octet-stream; name=\"huge.bin\"\n"
             "Content-Transfer-Encoding: base64\n\n" % boundary).encode()
    tail = ("\n--%s--\n" % boundary).encode()
    d = os.path.join(w.maildir, "tmp")
    tmp = os.path.join(d, "huge.tmp")
    size = lines = 0
    raw_total = a.mb * 1024 * 1024 * 57 // 77
    with open(tmp, "wb") as f:
        for chunk in (head,):
            f.write(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
        left = raw_total
        blk = 57 * 16384
        while left > 0:
            b = base64.encodebytes(rng.randbytes(min(blk, left)))
            f.write(b)
            size += len(b)
            lines += b.count(b"\n")
            left -= blk
        f.write(tail)
        size += len(tail)
        lines += tail.count(b"\n")
    name = "%d.M0P%d.huge,S=%d,W=%d:2,S" % (ts, a.seed, size, size + lines)
    path = os.path.join(w.maildir, "cur", name)
    os.rename(tmp, path)
    w.chown(path)
    os.utime(path, (ts, ts))
    w.files, w.bytes, w.per_folder = 1, size, {"INBOX": 1}
    return {}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("base", "extra", "many", "huge", "wide"))
    p.add_argument("--maildir", required=True)
    p.add_argument("--messages", type=int)
    p.add_argument("--total-mb", type=float, default=95.0,
                   help="size of the 5,000-message corpus; scaled with --messages")
    p.add_argument("--mb", type=int, default=300, help="huge: attachment size")
    p.add_argument("--seed", type=int)
    p.add_argument("--tag", default="x")
    p.add_argument("--shape", default="even", choices=("even", "inbox-heavy", "gmail"),
                   help="base: how the messages are spread over the folders")
    p.add_argument("--corpus", default="base",
                   choices=("base", "many", "huge", "wide", "inbox-heavy", "gmail"),
                   help="extra: the corpus whose folders get the new mail")
    p.add_argument("--uid", type=int)
    p.add_argument("--gid", type=int)
    a = p.parse_args()
    a.messages_ref = 5000
    defaults = {"base": (5000, 1), "extra": (50, 2), "many": (100000, 3), "huge": (1, 4),
                "wide": (10 * len(wide_folders()), 5)}
    if a.messages is None:
        a.messages = defaults[a.mode][0]
    if a.seed is None:
        a.seed = defaults[a.mode][1]
    w = Writer(a.maildir, a.uid, a.gid)
    t0 = time.time()
    info = {"base": cmd_base, "extra": cmd_extra, "many": cmd_many, "huge": cmd_huge,
            "wide": cmd_wide}[a.mode](a, w)
    info.update({"mode": a.mode, "messages": w.files, "bytes": w.bytes,
                 "folders": len(w.created), "per_folder": w.per_folder,
                 "seconds": round(time.time() - t0, 2)})
    json.dump(info, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
