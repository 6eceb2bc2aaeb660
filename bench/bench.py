#!/usr/bin/env python3
"""dovecot-migrate benchmark driver (started by bench/run-bench.sh).

Compares `doveadm migrate run` with `doveadm sync -1 -R` from imapc (with
default settings and with mail_prefetch_count=100) and with mbsync, pulling
a synthetic corpus from a private source Dovecot on 127.0.0.1, optionally
through a latency proxy. Standard library only. See bench/README.md.
"""

import argparse
import datetime
import glob
import hashlib
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
# one table of tool names for the run and its report
from report import TOOL_LABEL, OWN_MAILDIR, TOOL_PASSES, LOCAL_ONLY, READ_ONLY, \
    FORMAT_FREE  # noqa: E402


def raw_fetch(argv):
    """The "raw-fetch" tool, run as `bench.py raw-fetch --port P --user U
    --password-file F`: the wire limit of a first pass. One connection:
    LOGIN, LIST, then for every selectable folder EXAMINE and
    `UID FETCH 1:* BODY.PEEK[]`, all of them (and LOGOUT) sent in one write;
    every literal is read and discarded. Prints {"messages", "bytes",
    "folders"} (what it read) as JSON; exit 1 on any NO/BAD."""
    ap = argparse.ArgumentParser(prog="bench.py raw-fetch")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True)
    a = ap.parse_args(argv)
    with open(a.password_file) as f:
        password = f.read().strip()
    sock = socket.create_connection((a.host, a.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rf = sock.makefile("rb", buffering=1 << 20)

    def quote(x):
        return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def line():
        """One response line with its literals: (text, [literal sizes]);
        the literals themselves are read and discarded."""
        text, sizes = b"", []
        while True:
            ln = rf.readline()
            if not ln:
                raise RuntimeError("connection closed by the server")
            m = re.search(rb"\{(\d+)\}\r\n$", ln)
            if not m:
                return text + ln, sizes
            n = int(m.group(1))
            sizes.append(n)
            text += ln[:m.start()] + b"{}"
            while n > 0:
                n -= len(rf.read(min(n, 1 << 20)))

    def until(tag):
        """Untagged lines up to the tagged reply of tag."""
        got = []
        while True:
            text, sizes = line()
            if text.startswith(tag + b" "):
                if not text[len(tag) + 1:].startswith(b"OK"):
                    raise RuntimeError(text.decode(errors="replace").strip())
                return got
            got.append((text, sizes))

    line()  # greeting
    sock.sendall(("a LOGIN %s %s\r\n" % (quote(a.user), quote(password))).encode())
    until(b"a")
    sock.sendall(b'b LIST "" "*"\r\n')
    folders = []
    for text, sizes in until(b"b"):
        m = re.match(rb'\* LIST \(([^)]*)\) (?:NIL|"(?:[^"\\]|\\.)*") (.*)\r\n$', text)
        if not m or re.search(rb"\\(?i:noselect|nonexistent)", m.group(1)):
            continue
        if sizes:
            raise RuntimeError("literal mailbox names are not handled")
        name = m.group(2)
        folders.append(name if name.startswith(b'"') else b'"' + name + b'"')
    cmds = []
    for i, name in enumerate(folders):
        cmds.append(b"e%d EXAMINE %s\r\nf%d UID FETCH 1:* BODY.PEEK[]\r\n" % (i, name, i))
    sock.sendall(b"".join(cmds) + b"z LOGOUT\r\n")
    messages = nbytes = 0
    for i in range(len(folders)):
        until(b"e%d" % i)
        for text, sizes in until(b"f%d" % i):
            if sizes and b" FETCH " in text:
                messages += 1
                nbytes += sum(sizes)
    until(b"z")
    sock.close()
    json.dump({"messages": messages, "bytes": nbytes, "folders": len(folders)}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["raw-fetch"]:
    sys.exit(raw_fetch(sys.argv[2:]))

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
PLUGIN_DIR = os.path.join(TOP, "doveadm-cmd", ".libs")
PLUGIN_SO = os.path.join(PLUGIN_DIR, "lib20_doveadm_migrate_plugin.so")
MAIL_USER = "vmail"
TIME_FMT = "%e %M %U %S"
TOOLS = list(TOOL_LABEL)
PASSES = ["first", "nochange", "plus1"]
PASS_LABEL = {"first": "first pass", "nochange": "no-change pass", "plus1": "+1 % new mail"}
IMAPC_FEATURES = "rfc822.size fetch-headers"
FORMATS = {
    "maildir": ("maildir", "~/Maildir", "fs"),
    "sdbox": ("sdbox", "~/mail", None),
    "mdbox": ("mdbox", "~/mdbox", None),
}


def dovecot_24():
    """The Dovecot on PATH is 2.4 or later (its configs are written the
    2.4 way; on 2.3 as before)."""
    try:
        v = subprocess.run(["dovecot", "--version"], stdout=subprocess.PIPE,
                           timeout=20).stdout.decode()
        major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", v).groups())
        return (major, minor) >= (2, 4)
    except Exception:
        return False


DV24 = dovecot_24()


# 2.4 listens on the global "listen" (an address inside a listener is 2.3's)
LISTEN_ADDRESS = "" if DV24 else "    address = 127.0.0.1\n"


def conf_head():
    """What a 2.4 config file must begin with (nothing on 2.3)."""
    if not DV24:
        return ""
    v = re.match(r"[0-9.]+", versions()["dovecot"]).group(0)
    return "dovecot_config_version = %s\ndovecot_storage_version = %s\n" % (v, v)


def conf_mail_location_src():
    if DV24:
        return "mail_driver = maildir\nmail_path = ~/Maildir\n"
    return "mail_location = maildir:~/Maildir\n"


def conf_settings(**kw):
    """migrate_* settings: a plugin { } block on 2.3, top level on 2.4."""
    lines = "".join("%s%s = %s\n" % ("" if DV24 else "  ", k, v) for k, v in kw.items())
    return lines if DV24 else "plugin {\n" + lines + "}\n"


def conf_mail_location(fmt):
    driver, path, layout = FORMATS[fmt]
    if DV24:
        return "mail_driver = %s\nmail_path = %s\n%s" % (
            driver, path, "mailbox_list_layout = %s\n" % layout if layout else "")
    return "mail_location = %s:%s%s\n" % (driver, path, ":LAYOUT=" + layout if layout else "")


def setting_opt(name):
    """A migrate_* setting for doveadm -o: plugin/NAME on 2.3, NAME on 2.4."""
    return name if DV24 else "plugin/" + name
SPECIAL = ["Sent", "Drafts", "Trash", "Junk", "Archive"]
# the source's Gmail-like folders (gencorpus --shape gmail), flagged like Gmail's
SOURCE_SPECIAL = [(b, b) for b in SPECIAL] + [
    ("[Gmail]/All Mail", "All"), ("[Gmail]/Sent Mail", "Sent")]
# --shapes: user, table label, gencorpus --shape
SHAPES = {"even": ("alice", "standard"), "inbox-heavy": ("inboxy", "INBOX-heavy"),
          "gmail": ("gmail", "Gmail-like")}
# one source password for every bench user: the dsync config needs it
# literally (imapc_password is not %-expanded) and off the command line
SRC_PASSWORD = "bench-src-pw"
# pause between passes: mbsync (and Dovecot's maildir code) treat a
# directory changed within the current second as "dirty" - mbsync sleeps a
# second then; real passes are never back to back within one second
PASS_GAP = 1.1


def log(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


class Bench:
    def __init__(self, args):
        self.a = args
        self.dovecot_base_dirs = []
        self.wrapper_secs = 0.0
        self.procs = []
        self.T = None
        pw = pwd.getpwnam(MAIL_USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.rows = []
        self.anomalies = []
        self.scenarios = {}

    # ------------------------------------------------------------ processes

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.procs = []
        for d in self.dovecot_base_dirs:
            stop_dovecot(d)
        self.dovecot_base_dirs = []

    def run(self, cmd, timeout=300, check=True, **kw):
        """Unmeasured helper command, bounded by `timeout` (coreutils)."""
        full = ["timeout", "-k", "5", str(int(timeout))] + cmd
        p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout + 30, **kw)
        if check and p.returncode != 0:
            raise RuntimeError("%s failed (exit %d): %s" % (
                " ".join(cmd), p.returncode, p.stderr.decode(errors="replace")[-2000:]))
        return p

    # ------------------------------------------------------------ configs

    def common_conf(self, d, name):
        if DV24:
            auth = """auth_allow_cleartext = yes
passdb users {{
  driver = passwd-file
  passwd_file_path = {d}/passwd
}}
userdb users {{
  driver = passwd-file
  passwd_file_path = {d}/passwd
  fields {{
    uid:default = {u}
    gid:default = {u}
  }}
}}
"""
        else:
            auth = """disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/passwd
  default_fields = uid={u} gid={u}
}}
"""
        return ("""# generated by bench/bench.py: a private instance, not the system one
base_dir = {d}/run
state_dir = {d}/state
instance_name = dm-bench-{tn}-{name}
protocols = imap
listen = 127.0.0.1
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
mail_uid = {u}
mail_gid = {u}
first_valid_uid = 1
first_valid_gid = 1
auth_mechanisms = plain login
ssl = no
""" + auth).format(d=d, u=MAIL_USER, name=name, tn=os.path.basename(self.T))

    def write_passwd(self, d, prefix):
        with open(os.path.join(d, "passwd"), "w") as f:
            for user in self.scenarios:
                pw = prefix % user if "%s" in prefix else prefix
                f.write("%s:{PLAIN}%s::::%s/home/%s::\n" % (user, pw, d, user))
        os.chmod(os.path.join(d, "passwd"), 0o644)

    def setup_source(self):
        d = os.path.join(self.T, "src")
        for sub in ("home", "state", "run"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chown(os.path.join(d, "home"), self.uid, self.gid)
        self.src_dir = d
        self.src_port = free_port()
        self.write_passwd(d, SRC_PASSWORD)
        boxes = "".join(
            "  mailbox \"%s\" {\n    special_use = \\%s\n    auto = no\n  }\n" % (b, u)
            for b, u in SOURCE_SPECIAL
            if "gmail" in self.a.shapes or not b.startswith("[Gmail]/"))
        conf = conf_head() + self.common_conf(d, "src") + conf_mail_location_src() + """
service imap-login {{
  inet_listener imap {{
{address}    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
{boxes}}}
""".format(port=self.src_port, boxes=boxes, address=LISTEN_ADDRESS)
        self.src_conf = os.path.join(d, "dovecot.conf")
        with open(self.src_conf, "w") as f:
            f.write(conf)

    def setup_dest(self):
        d = os.path.join(self.T, "dst")
        for sub in ("home", "state", "run"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chown(os.path.join(d, "home"), self.uid, self.gid)
        self.dst_dir = d
        self.dst_port = free_port()
        self.write_passwd(d, "dpw-%s")
        pwdir = os.path.join(self.T, "srcpw")
        os.makedirs(pwdir, exist_ok=True)
        os.chmod(pwdir, 0o755)
        for user in self.scenarios:
            p = os.path.join(pwdir, user)
            with open(p, "w") as f:
                f.write(SRC_PASSWORD)
            os.chown(p, self.uid, self.gid)
            os.chmod(p, 0o400)
        boxes = "".join(
            "  mailbox %s {\n    special_use = \\%s\n    auto = no\n  }\n" % (b, b)
            for b in SPECIAL)
        common = self.common_conf(d, "dst") + """mail_fsync = {fsync}
service imap-login {{
  inet_listener imap {{
{address}    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
{boxes}}}
{settings}""".format(port=self.dst_port, boxes=boxes, fsync=self.a.mail_fsync,
                     address=LISTEN_ADDRESS, settings=conf_settings(
                         migrate_source_host="127.0.0.1", migrate_source_ssl="no",
                         migrate_source_password_file=pwdir + ("/%{user}" if DV24 else "/%u")))
        with open(os.path.join(d, "common.conf"), "w") as f:
            f.write(common)
        self.dst_conf = {}
        self.dsync_conf = {}
        for fmt in FORMATS:
            c = os.path.join(d, "dovecot-%s.conf" % fmt)
            with open(c, "w") as f:
                f.write("%s!include %s/common.conf\n%s" % (conf_head(), d, conf_mail_location(fmt)))
            self.dst_conf[fmt] = c
            # dsync: imapc settings; the password stays off the command line
            c2 = os.path.join(d, "dsync-%s.conf" % fmt)
            with open(c2, "w") as f:
                f.write(conf_head() + "!include %s\nimapc_ssl = no\nimapc_password = %s\n" % (c, SRC_PASSWORD))
            os.chmod(c2, 0o600)
            self.dsync_conf[fmt] = c2
        # --served-config: the running destination serves one config that
        # both Dovecot tools read, so it holds dsync's imapc settings too
        self.served_fmt = "maildir" if self.a.served_config else None

    def start_dovecot(self, conf, d, port):
        self.run(["doveconf", "-c", conf, "-n"])
        self.dovecot_base_dirs.append(os.path.join(d, "run"))
        # the master daemonizes: it must not inherit our pipes
        with open(os.path.join(d, "start.log"), "wb") as lf:
            rc = subprocess.run(["timeout", "-k", "5", "30", "dovecot", "-c", conf],
                                stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                timeout=60).returncode
        if rc != 0:
            raise RuntimeError("dovecot -c %s failed (exit %d): %s" % (
                conf, rc, tail(os.path.join(d, "start.log"), 10)))
        if not wait_port(port, 20):
            raise RuntimeError("dovecot (%s) does not listen on %d; log:\n%s"
                               % (conf, port, tail(os.path.join(d, "dovecot.log"), 20)))

    def calibrate_wrappers(self):
        """median start-up cost of the measuring wrappers (timeout and
        /usr/bin/time around `true`), taken off every measured wall time"""
        tfile = os.path.join(self.T, "calibrate.time")
        ts = []
        for _ in range(21):
            t0 = time.monotonic()
            subprocess.run(["timeout", "-k", "10", "60", "/usr/bin/time", "-f", TIME_FMT,
                            "-o", tfile, "true"], stdin=subprocess.DEVNULL, timeout=60)
            ts.append(time.monotonic() - t0)
        ts.sort()
        return ts[len(ts) // 2]

    def serve_config(self):
        """doveadm without -c first asks the config socket at Dovecot's
        compiled-in /run/dovecot/config (as it does on a mail server) and
        only without one executes doveconf; show it the destination's, in
        the private mount namespace run-bench.sh made (DM_BENCH_NS)."""
        if os.environ.get("DM_BENCH_NS") != "1":
            raise RuntimeError("--served-config needs run-bench.sh's private mount namespace")
        conf = self.dsync_conf[self.served_fmt]
        os.makedirs("/run/dovecot", exist_ok=True)
        for src, dst in ((os.path.join(self.dst_dir, "run"), "/run/dovecot"),
                         (conf, "/etc/dovecot/dovecot.conf")):
            self.run(["mount", "--bind", src, dst])
        p = self.run(["doveconf", "-h", "base_dir"])
        served = p.stdout.decode().strip()
        if served != os.path.join(self.dst_dir, "run"):
            raise RuntimeError("the served config is not the destination's: base_dir=%r" % served)

    def conf_args(self, conf, fmt):
        """-c CONF, or nothing where the running destination serves it"""
        return [] if fmt == self.served_fmt else ["-c", conf]

    def src_master_pid(self):
        with open(os.path.join(self.src_dir, "run", "master.pid")) as f:
            return int(f.read().strip())

    # ------------------------------------------------------------ corpus

    def maildir(self, user):
        return os.path.join(self.src_dir, "home", user, "Maildir")

    def gencorpus(self, mode, user, *extra):
        home = os.path.join(self.src_dir, "home", user)
        os.makedirs(home, exist_ok=True)
        os.chown(home, self.uid, self.gid)
        cmd = [sys.executable, os.path.join(HERE, "gencorpus.py"), mode,
               "--maildir", self.maildir(user), "--uid", str(self.uid),
               "--gid", str(self.gid)] + list(extra)
        p = self.run(cmd, timeout=1800)
        return json.loads(p.stdout.decode())

    def src_index(self, user):
        """Let the source Dovecot (re)index the user's maildir (untimed)."""
        self.run(["doveadm", "-c", self.src_conf, "index", "-u", user, "*"], timeout=1800)

    def mailbox_counts(self, conf, user):
        """(messages, folders): the sum and number of the selectable
        mailboxes `doveadm mailbox status` reports (a parent that is only a
        name, like Maildir++'s "Lists" of "Lists/list01", is not one)."""
        p = self.run(["doveadm", "-c", conf, "mailbox", "status", "-u", user, "messages", "*"],
                     check=False)
        counts = [int(m.group(1)) for m in
                  re.finditer(r"\bmessages=(\d+)[ \t]*$", p.stdout.decode(errors="replace"), re.M)]
        return (sum(counts) if counts else None), len(counts)

    def src_count(self, user):
        return self.mailbox_counts(self.src_conf, user)[0]

    def build_corpora(self):
        for user, spec in self.scenarios.items():
            t0 = time.time()
            info = self.gencorpus(spec["corpus"], user, *spec["gen_args"])
            t1 = time.time()
            self.src_index(user)
            n, folders = self.mailbox_counts(self.src_conf, user)
            if n != info["messages"] or folders != info["folders"]:
                raise RuntimeError("source %s has %s messages in %s folders, wrote %d in %d" % (
                    user, n, folders, info["messages"], info["folders"]))
            spec.update(info)
            if info.get("all_labelled"):
                spec["all_messages"] = info["per_folder"].get("[Gmail]/All Mail")
            spec["gen_seconds"] = round(t1 - t0, 1)
            spec["index_seconds"] = round(time.time() - t1, 1)
            spec["extra"] = max(1, round(info["messages"] * 0.01))
            log("corpus %s: %d messages, %.1f MB, %d folders (generated in %.1fs, "
                "indexed by the source in %.1fs)" % (
                    user, info["messages"], info["bytes"] / 1e6, info["folders"],
                    spec["gen_seconds"], spec["index_seconds"]))

    def add_extra(self, user, tag):
        """Write the +1 % mail; its gencorpus summary."""
        spec = self.scenarios[user]
        info = self.gencorpus("extra", user, "--messages", str(spec["extra"]), "--tag", tag,
                              "--corpus", spec.get("extra_corpus", spec["corpus"]))
        self.src_index(user)
        return info

    def expected_msgs(self, tool, total, all_labelled):
        """Messages the tool must leave: migrate copies a message of a
        \\All folder only if no label folder has it (the Gmail corpus),
        the others copy every folder as it is."""
        return total - all_labelled if tool in ("migrate", "migrate-1") else total

    def remove_extra(self, user, tag):
        pat = "X%s.bench" % tag
        gone = 0
        for d in glob.glob(os.path.join(self.maildir(user), "**", "cur"), recursive=True) + \
                glob.glob(os.path.join(self.maildir(user), "**", "new"), recursive=True) + \
                glob.glob(os.path.join(self.maildir(user), ".*", "cur")) + \
                glob.glob(os.path.join(self.maildir(user), ".*", "new")):
            for name in os.listdir(d) if os.path.isdir(d) else []:
                if pat in name:
                    try:
                        os.unlink(os.path.join(d, name))
                        gone += 1
                    except FileNotFoundError:
                        pass
        self.src_index(user)
        return gone

    # ------------------------------------------------------------ tools

    def dst_home(self, user):
        return os.path.join(self.dst_dir, "home", user)

    def mbsync_root(self, user):
        return os.path.join(self.T, "mbsync", user)

    def cp_root(self, user):
        return os.path.join(self.T, "cp", user)

    def own_root(self, tool, user):
        """Directory of an OWN_MAILDIR tool's copy."""
        return self.mbsync_root(user) if tool == "mbsync" else self.cp_root(user)

    def discard(self, path):
        """Move a previous copy out of the way; it is deleted with the work
        directory. Deleting thousands of files right before a measured
        run slows that run: ext4 skips recently freed inodes when it
        allocates new ones (a linear scan on file systems without a
        journal), which would charge whichever tool runs next."""
        if not os.path.lexists(path):
            return
        trash = os.path.join(self.T, "trash")
        os.makedirs(trash, exist_ok=True)
        self.trash_n = getattr(self, "trash_n", 0) + 1
        os.rename(path, os.path.join(trash, str(self.trash_n)))

    def wipe(self, tool, user):
        if tool in READ_ONLY:
            return
        if tool == "cp":
            # cp -r SRC DST copies SRC as DST only if DST does not exist
            self.discard(self.cp_root(user))
            os.makedirs(self.cp_root(user))
        elif tool == "mbsync":
            root = self.mbsync_root(user)
            self.discard(root)
            os.makedirs(os.path.join(root, "Maildir"))
            self.write_mbsyncrc(user)
        else:
            home = self.dst_home(user)
            self.discard(home)
            os.makedirs(home)
            os.chown(home, self.uid, self.gid)
            os.chmod(home, 0o700)

    def write_mbsyncrc(self, user):
        root = self.mbsync_root(user)
        rc = """IMAPAccount src
Host 127.0.0.1
Port {port}
User {user}
Pass {pw}
SSLType None
AuthMechs LOGIN
PipelineDepth 100

IMAPStore src-imap
Account src

MaildirStore local
Path {root}/Maildir/
Inbox {root}/Maildir/INBOX
SubFolders Verbatim

Channel bench
Far :src-imap:
Near :local:
Patterns *
Create Near
Sync Pull
SyncState *
CopyArrivalDate yes
Expunge None
""".format(port=self.port, user=user, root=root, pw=SRC_PASSWORD)
        p = os.path.join(root, "mbsyncrc")
        with open(p, "w") as f:
            f.write(rc)
        os.chmod(p, 0o600)

    def tool_cmd(self, tool, fmt, user):
        if tool in ("migrate", "migrate-1"):
            serial = ["-o", setting_opt("migrate_parallel_folders") + "=1"] if tool == "migrate-1" else []
            return ["doveadm"] + self.conf_args(self.dst_conf[fmt], fmt) + [
                    "-o", "mail_plugin_dir=" + self.plugin_dir,
                    "-o", "mail_plugins=doveadm_migrate",
                    "-o", setting_opt("migrate_source_port") + "=%d" % self.port] + serial + \
                [x for kv in self.a.migrate_set for x in ("-o", setting_opt(kv))] + [
                    "migrate", "run", "-u", user]
        if tool in ("dsync", "dsync-pf100"):
            cmd = ["doveadm"] + self.conf_args(self.dsync_conf[fmt], fmt) + [
                   "-o", "imapc_host=127.0.0.1",
                   "-o", "imapc_port=%d" % self.port,
                   "-o", "imapc_user=" + user]
            # 2.4 turned every imapc feature on by default: its defaults
            if not DV24:
                cmd += ["-o", "imapc_features=" + IMAPC_FEATURES]
            if tool == "dsync-pf100":
                cmd += ["-o", "mail_prefetch_count=100"]
            return cmd + ["sync", "-1", "-R", "-u", user, "imapc:"]
        if tool == "mbsync":
            return ["mbsync", "-c", os.path.join(self.mbsync_root(user), "mbsyncrc"), "bench"]
        if tool == "cp":
            return ["cp", "-r", self.maildir(user), os.path.join(self.cp_root(user), "Maildir")]
        if tool == "raw-fetch":
            return [sys.executable, os.path.join(HERE, "bench.py"), "raw-fetch",
                    "--port", str(self.port), "--user", user,
                    "--password-file", os.path.join(self.T, "srcpw", user)]
        raise ValueError(tool)

    def dest_counts(self, tool, fmt, user):
        """(messages, folders) at the destination, read without the tool:
        Dovecot's selectable mailboxes, or the maildirs (directories with a
        cur/) of an OWN_MAILDIR tool's copy."""
        if tool in OWN_MAILDIR:
            msgs = folders = 0
            for dirpath, dirnames, filenames in os.walk(os.path.join(self.own_root(tool, user), "Maildir")):
                base = os.path.basename(dirpath)
                if base in ("cur", "new"):
                    msgs += len(filenames)
                if "cur" in dirnames:
                    folders += 1
            return msgs, folders
        return self.mailbox_counts(self.dst_conf[fmt], user)

    def dest_bytes(self, tool, user):
        root = self.own_root(tool, user) if tool in OWN_MAILDIR else self.dst_home(user)
        p = self.run(["du", "-sb", root], check=False)
        try:
            return int(p.stdout.split()[0])
        except (IndexError, ValueError):
            return None

    def src_children_cpu(self):
        """CPU seconds of the source master's reaped children (the imap and
        imap-login processes that served finished sessions)."""
        pid = self.src_master_pid()
        # imap processes exit after their session (service_count=1); wait
        # for them so their CPU is in the master's cutime/cstime
        for _ in range(100):
            if not [c for c in children(pid) if c[1] in ("imap", "imap-login")]:
                break
            time.sleep(0.1)
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[13]) + int(rest[14])) / os.sysconf("SC_CLK_TCK")

    def measure(self, tool, fmt, user, tag):
        cmd = self.tool_cmd(tool, fmt, user)
        logdir = os.path.join(self.T, "logs")
        os.makedirs(logdir, exist_ok=True)
        tfile = os.path.join(logdir, tag + ".time")
        out = os.path.join(logdir, tag + ".out")
        err = os.path.join(logdir, tag + ".err")
        # every command starts with nothing dirty in the page cache: a tool
        # that syncs (migrate's syncfs(), dsync's fsync()s) must not pay
        # for the writeback of the copy the previous tool left unsynced
        os.sync()
        src0 = self.src_children_cpu()
        full = ["timeout", "-k", "10", str(self.a.timeout), "/usr/bin/time", "-f", TIME_FMT,
                "-o", tfile] + cmd
        t0 = time.monotonic()
        with open(out, "wb") as fo, open(err, "wb") as fe:
            p = subprocess.run(full, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                               timeout=self.a.timeout + 60)
        wall_py = time.monotonic() - t0
        src1 = self.src_children_cpu()
        # wall: /usr/bin/time's %e (10 ms steps). wall_clock: this clock,
        # less the wrappers' calibrated start-up; kept for reference only:
        # it also holds each wrapper's wake-up after its child exits, which
        # on a loaded machine added 5-40 ms that %e doesn't have
        r = {"rc": p.returncode, "wall": round(wall_py, 3),
             "wall_clock": round(max(wall_py - self.wrapper_secs, 0.001), 3),
             "src_cpu": round(src1 - src0, 2), "cmd": " ".join(cmd), "out": out}
        try:
            with open(tfile) as f:
                last = [l for l in f.read().splitlines() if re.match(r"^[\d.]+ \d+ [\d.]+ [\d.]+$", l)]
            e, m, u, s = last[-1].split()
            r.update({"wall": float(e), "rss_kb": int(m), "cpu_user": float(u),
                      "cpu_sys": float(s), "cpu": round(float(u) + float(s), 2)})
        except (OSError, IndexError, ValueError):
            r.update({"rss_kb": None, "cpu_user": None, "cpu_sys": None, "cpu": None})
        if p.returncode == 124 or p.returncode == 137:
            r["error"] = "timeout after %ds" % self.a.timeout
        elif p.returncode != 0:
            r["error"] = "exit %d: %s" % (p.returncode, first_error_lines(err, out))
        return r

    def run_case(self, user, fmt, tool, rep):
        spec = self.scenarios[user]
        n = spec["messages"]
        # unique in the run (RTTs included): a maildir file name that reappears
        # after its expunge gets a new UID, and Dovecot 2.3 then misses its
        # second removal (the source kept 505 of 500 messages)
        tag = re.sub(r"[^A-Za-z0-9]", "", "%s%s%s%dr%d" % (user, fmt, tool, rep, self.rtt))
        self.wipe(tool, user)
        passes = TOOL_PASSES.get(tool, PASSES)
        for pas in passes:
            expected = self.expected_msgs(tool, n, spec.get("all_labelled", 0))
            if pas == "plus1":
                x = self.add_extra(user, tag)
                expected += self.expected_msgs(tool, x["messages"], x.get("all_labelled", 0))
            time.sleep(PASS_GAP)
            r = self.measure(tool, fmt, user, "%s-%s" % (tag, pas))
            bytes_read = None
            if tool in READ_ONLY:  # what it read: its JSON line
                try:
                    with open(r["out"]) as f:
                        got = json.loads(f.read().strip().splitlines()[-1])
                    msgs, folders, bytes_read = got["messages"], got["folders"], got["bytes"]
                except (OSError, ValueError, KeyError, IndexError):
                    msgs = folders = None
            else:
                msgs, folders = self.dest_counts(tool, fmt, user)
            row = {"scenario": user,
                   "format": fmt if tool not in FORMAT_FREE else
                   "- (%s)" % tool if tool in READ_ONLY else "maildir (%s)" % tool,
                   "dest_format": fmt, "tool": tool, "rep": rep, "pass": pas,
                   "msgs": msgs, "msgs_expected": expected, "folders": folders,
                   "folders_expected": spec["folders"], "rtt_ms": self.rtt}
            row.update(r)
            if pas == "first" and tool not in READ_ONLY:
                row["dest_bytes"] = self.dest_bytes(tool, user)
            if bytes_read is not None:
                row["bytes_read"] = bytes_read
            ok = r["rc"] == 0 and msgs == expected and folders == spec["folders"]
            row["ok"] = ok
            if not ok:
                why = r.get("error") or ""
                if msgs != expected:
                    why = (why + "; " if why else "") + "destination has %s messages, expected %d" % (msgs, expected)
                if folders != spec["folders"]:
                    why = (why + "; " if why else "") + "destination has %s folders, expected %d" % (
                        folders, spec["folders"])
                self.anomalies.append("%s / %s / %s / rep %d / %s: %s" % (
                    user, fmt, TOOL_LABEL[tool], rep + 1, PASS_LABEL[pas], why))
            self.rows.append(row)
            with open(os.path.join(self.T, "results.jsonl"), "a") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            log("  %-7s %-7s %-18s rep %d %-8s wall %7.2fs cpu %6.2fs rss %6.1f MiB src-cpu %6.2fs "
                "msgs %s/%d folders %s/%d%s" % (
                    user, fmt if tool not in FORMAT_FREE else "-", TOOL_LABEL[tool], rep + 1, pas,
                    r["wall"], r["cpu"] or 0, (r["rss_kb"] or 0) / 1024, r["src_cpu"], msgs, expected,
                    folders, spec["folders"],
                    "" if ok else "  <-- " + (r.get("error") or "count mismatch")))
        if tool == "cp":
            self.discard(self.cp_root(user))
        if "plus1" not in passes:
            return
        removed = self.remove_extra(user, tag)
        after = self.src_count(user)
        if after != n:
            raise RuntimeError("source %s has %s messages after removing %d extra, expected %d"
                               % (user, after, removed, n))

    # ------------------------------------------------------------ main

    def prepare(self):
        """The work directory and a snapshot of the plugin in it."""
        a = self.a
        self.T = tempfile.mkdtemp(prefix="dm-bench.", dir=a.workdir)
        os.chmod(self.T, 0o755)
        log("work directory %s" % self.T)
        # a snapshot of the plugin: a rebuild in the tree during the run
        # (make by someone else) must not change or break what is measured
        self.plugin_dir = os.path.join(self.T, "plugin")
        os.makedirs(self.plugin_dir)
        empty_conf = "/dev/null"
        if DV24:  # 2.4 refuses a config without its version
            empty_conf = os.path.join(self.T, "empty.conf")
            with open(empty_conf, "w") as f:
                f.write(conf_head())
        for attempt in range(6):
            shutil.copy2(PLUGIN_SO, self.plugin_dir)
            chk = subprocess.run(
                ["timeout", "30", "doveadm", "-c", empty_conf, "-o", "mail_plugin_dir=" + self.plugin_dir,
                 "-o", "mail_plugins=doveadm_migrate", "migrate"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
            if b"run " in chk.stdout:
                break
            log("plugin copy does not load (being rebuilt?), retrying: %s"
                % chk.stdout.decode(errors="replace").strip()[:200])
            time.sleep(5)
        else:
            raise RuntimeError("the plugin %s does not load into doveadm" % PLUGIN_SO)
        with open(os.path.join(self.plugin_dir, os.path.basename(PLUGIN_SO)), "rb") as f:
            self.plugin_sha = hashlib.sha256(f.read()).hexdigest()[:12]
        log("plugin %s (sha256 %s…) copied to %s" % (PLUGIN_SO, self.plugin_sha, self.plugin_dir))
        # the tree's commit now, when the plugin was copied (not at the end)
        self.versions = dict(versions(), plugin_sha256=self.plugin_sha)

    def main(self):
        a = self.a
        self.prepare()
        # user: corpus (gencorpus mode), its arguments, repetitions
        for shape in a.shapes:
            user, label = SHAPES[shape]
            self.scenarios[user] = {"kind": "standard", "label": label, "corpus": "base",
                                    "gen_args": ["--messages", str(a.messages)] +
                                    (["--shape", shape] if shape != "even" else []),
                                    "reps": a.reps}
            if shape != "even":
                self.scenarios[user]["extra_corpus"] = shape
        if a.scaling:
            self.scenarios["scale"] = {
                "kind": "standard", "corpus": "base", "reps": a.big_reps,
                "label": "standard %s" % (("%dk" % (a.scaling_messages // 1000))
                                          if a.scaling_messages % 1000 == 0 else a.scaling_messages),
                "gen_args": ["--messages", str(a.scaling_messages)]}
        if a.many:
            self.scenarios["many"] = {"kind": "many", "label": "100k small", "corpus": "many",
                                      "gen_args": ["--messages", str(a.many_messages)],
                                      "reps": a.big_reps}
        if a.huge:
            self.scenarios["huge"] = {"kind": "huge", "label": "one huge message", "corpus": "huge",
                                      "gen_args": ["--mb", str(a.huge_mb)], "reps": a.big_reps}
        if a.wide:
            self.scenarios["wide"] = {"kind": "wide", "label": "1,000 folders", "corpus": "wide",
                                      "gen_args": [], "reps": a.big_reps}
        self.setup_source()
        self.setup_dest()
        self.start_dovecot(self.src_conf, self.src_dir, self.src_port)
        if self.served_fmt:
            self.start_dovecot(self.dsync_conf[self.served_fmt], self.dst_dir, self.dst_port)
            self.serve_config()
        else:
            self.start_dovecot(self.dst_conf[a.formats[0]], self.dst_dir, self.dst_port)
        log("source dovecot on 127.0.0.1:%d, destination (auth) on :%d"
            % (self.src_port, self.dst_port))
        self.build_corpora()
        started = time.time()
        for rtt in a.rtts:
            self.rtt = rtt
            self.port = self.src_port
            proxy = None
            if rtt > 0 or a.proxy:
                proxy = self.start_proxy(rtt)
            self.rows, self.anomalies = [], []
            # cp -r has no network: a limit for RTT 0 only
            self.tools = [t for t in a.tools if rtt == 0 or t not in LOCAL_ONLY]
            if self.tools != a.tools:
                log("rtt=%dms: not measuring %s (no network)" % (
                    rtt, ", ".join(t for t in a.tools if t not in self.tools)))
            tools = self.tools
            t_rtt = time.time()
            self.load_start = loadavg()
            self.wrapper_secs = self.calibrate_wrappers()
            for user, spec in self.scenarios.items():
                reps = spec["reps"]
                for rep in range(reps):
                    order = tools[rep % len(tools):] + tools[:rep % len(tools)]
                    for fmt in a.formats:
                        for tool in order:
                            if tool in FORMAT_FREE and fmt != a.formats[0]:
                                continue  # its own Maildir or none: format-independent
                            log("%s rtt=%dms rep %d/%d format %s: %s" % (
                                user, rtt, rep + 1, reps, fmt, TOOL_LABEL[tool]))
                            self.run_case(user, fmt, tool, rep)
            if proxy:
                self.stop_proxy(proxy)
            self.write_report(rtt, time.time() - t_rtt)
        log("benchmark done in %.1f min" % ((time.time() - started) / 60))

    def start_proxy(self, rtt):
        pf = os.path.join(self.T, "proxy-%d.port" % rtt)
        logf = open(os.path.join(self.T, "proxy-%d.log" % rtt), "wb")
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "latency_proxy.py"),
                              "--target-port", str(self.src_port), "--rtt-ms", str(rtt),
                              "--port-file", pf], stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        self.procs.append(p)
        for _ in range(100):
            if os.path.exists(pf) or p.poll() is not None:
                break
            time.sleep(0.1)
        if not os.path.exists(pf):
            raise RuntimeError("latency proxy did not start")
        with open(pf) as f:
            self.port = int(f.read())
        log("latency proxy pid %d on 127.0.0.1:%d -> :%d, RTT %d ms"
            % (p.pid, self.port, self.src_port, rtt))
        return p

    def stop_proxy(self, p):
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        self.procs.remove(p)

    def write_report(self, rtt, seconds):
        a = self.a
        meta = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "rtt_ms": rtt,
            "proxy": rtt > 0 or a.proxy,
            "reps": a.reps, "big_reps": a.big_reps,
            "quick": a.quick,
            "formats": a.formats, "tools": self.tools,
            "mail_fsync": a.mail_fsync,
            "served_config": a.served_config,
            "journaled_fs": a.journaled_fs,
            "wrapper_ms": round(self.wrapper_secs * 1000, 2),
            "imapc_features": "2.4 defaults (all on)" if DV24 else IMAPC_FEATURES,
            "command": a.command_line,
            "seconds": round(seconds, 1),
            "host": host_info(),
            "loadavg": {"start": self.load_start, "end": loadavg()},
            "versions": self.versions,
            "scenarios": {u: {k: v for k, v in s.items() if k != "per_folder"}
                          for u, s in self.scenarios.items()},
        }
        if a.scaling:
            meta["scaling"] = {"small": "alice", "large": "scale"}
        import report
        self.save_results("%s-rtt%d%s" % (datetime.date.today().isoformat(), rtt,
                                          "-quick" if a.quick else ""), meta, report.render)

    def save_results(self, stem, meta, render):
        """STEM[-name].json (the raw rows) and .md (render's table) in
        --results-dir; the table is printed too"""
        a = self.a
        os.makedirs(a.results_dir, exist_ok=True)
        if a.name:
            stem += "-" + a.name
        jpath = os.path.join(a.results_dir, stem + ".json")
        with open(jpath, "w") as f:
            json.dump({"meta": meta, "rows": self.rows, "anomalies": self.anomalies}, f,
                      indent=1, sort_keys=True)
        md = render(meta, self.rows, self.anomalies)
        mpath = os.path.join(a.results_dir, stem + ".md")
        with open(mpath, "w") as f:
            f.write(md)
        sys.stdout.write("\n" + md + "\n")
        log("wrote %s and %s" % (mpath, jpath))


# ---------------------------------------------------------------- bulk

# --bulk: the tools measured on many users at once (-A / N at a time)
BULK_TOOLS = ["migrate", "migrate-1", "dsync-pf100", "mbsync"]
BULK_DEFAULT_TOOLS = ["migrate", "dsync-pf100", "mbsync"]
BULK_PASSES = ["first", "nochange"]
# wrappers in the measured process tree that are not the tool's own
BULK_WRAPPERS = ("timeout", "time", "xargs", "sh")


def proc_table():
    """{pid: (ppid, comm)} of every process."""
    out = {}
    for st in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(st) as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.find("(") + 1:data.rfind(")")]
        rest = data.rsplit(")", 1)[1].split()
        out[int(st.split("/")[2])] = (int(rest[1]), comm)
    return out


def proc_mem_kb(pid):
    """(VmRSS, VmHWM) of pid in KiB, or None when it is gone."""
    rss = hwm = None
    try:
        with open("/proc/%d/status" % pid) as f:
            for l in f:
                if l.startswith("VmRSS:"):
                    rss = int(l.split()[1])
                elif l.startswith("VmHWM:"):
                    hwm = int(l.split()[1])
    except (OSError, ValueError):
        return None
    return (rss or 0, hwm or 0)


def established(port):
    """Established TCP connections whose local port is `port` (the server
    side of each session: /proc/net/tcp lists both ends on loopback)."""
    n = 0
    hexport = ":%04X" % port
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for l in f:
                    fields = l.split()
                    if fields[1].endswith(hexport) and fields[3] == "01":
                        n += 1
        except (OSError, StopIteration):
            pass
    return n


class TreeSampler(threading.Thread):
    """Samples, every `interval` seconds while a bulk command runs: the
    processes of the command's tree plus the destination's doveadm-server
    processes (the workers are the Dovecot master's children, not the
    client's): the sum of their RSS (the tree's total at that moment), each
    one's VmHWM (its own peak, exact for a process sampled at least once),
    and the source's established IMAP connections."""

    def __init__(self, root_pid, dst_master, src_port, interval=0.2):
        threading.Thread.__init__(self, daemon=True)
        self.root_pid, self.dst_master, self.src_port = root_pid, dst_master, src_port
        self.interval = interval
        self.halt = threading.Event()
        self.tree_peak_kb = 0
        self.tree_peak_procs = 0
        self.proc_peak_kb = 0
        self.proc_peak_comm = None
        self.conn_peak = 0
        self.workers_seen = set()
        self.samples = 0

    def tree(self):
        table = proc_table()
        kids = {}
        for pid, (ppid, comm) in table.items():
            kids.setdefault(ppid, []).append(pid)
        roots = [self.root_pid] + [p for p in kids.get(self.dst_master, [])
                                   if table[p][1] == "doveadm-server"]
        self.workers_seen.update(roots[1:])
        out, pending = [], list(roots)
        while pending:
            p = pending.pop()
            if p not in table:
                continue
            out.append((p, table[p][1]))
            pending.extend(kids.get(p, []))
        return out

    def sample(self):
        total = procs = 0
        for pid, comm in self.tree():
            if comm in BULK_WRAPPERS:
                continue
            m = proc_mem_kb(pid)
            if m is None:
                continue
            total += m[0]
            procs += 1
            if m[1] > self.proc_peak_kb:
                self.proc_peak_kb, self.proc_peak_comm = m[1], comm
        if total > self.tree_peak_kb:
            self.tree_peak_kb, self.tree_peak_procs = total, procs
        self.conn_peak = max(self.conn_peak, established(self.src_port))
        self.samples += 1

    def run(self):
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join(10)


class BulkBench(Bench):
    """--bulk UxM[,UxM…]: U users with M messages each (the standard corpus
    scaled, a seed per user), migrated all at once: `migrate run -A` and
    `sync -1 -R -A imapc:` with doveadm_worker_count = --workers (the
    destination's doveadm-server processes), mbsync --workers at a time
    (xargs -P, one channel per user). First and no-change pass per tool."""

    def set_users(self, users, msgs):
        return ["b%dx%d_%03d" % (users, msgs, i + 1) for i in range(users)]

    def main(self):
        a = self.a
        self.prepare()
        for users, msgs in a.bulk:
            for i, u in enumerate(self.set_users(users, msgs)):
                self.scenarios[u] = {"set": (users, msgs), "seed": 101 + i}
        self.setup_source()
        self.setup_dest()
        # the started destination reads bulk.conf: its doveadm service
        # (the workers) gets the tool's settings there, -o doesn't reach it
        self.bulk_conf = os.path.join(self.dst_dir, "bulk.conf")
        self.port = self.src_port
        self.write_bulk_conf(BULK_DEFAULT_TOOLS[0])
        with open(self.dst_conf["maildir"], "a") as f:
            f.write("!include %s\n" % self.bulk_conf)
        self.start_dovecot(self.src_conf, self.src_dir, self.src_port)
        self.start_dovecot(self.dst_conf["maildir"], self.dst_dir, self.dst_port)
        log("source dovecot on 127.0.0.1:%d, destination on :%d, bulk sets %s, %d workers"
            % (self.src_port, self.dst_port,
               ", ".join("%dx%d" % s for s in a.bulk), a.workers))
        self.bulk_corpora()
        started = time.time()
        for rtt in a.rtts:
            self.rtt = rtt
            self.port = self.src_port
            proxy = self.start_proxy(rtt) if rtt > 0 or a.proxy else None
            self.rows, self.anomalies = [], []
            self.load_start = loadavg()
            t_rtt = time.time()
            for users, msgs in a.bulk:
                self.use_set(users, msgs)
                for rep in range(a.reps):
                    tools = a.tools[rep % len(a.tools):] + a.tools[:rep % len(a.tools)]
                    for tool in tools:
                        log("bulk %dx%d rtt=%dms rep %d/%d: %s, %d workers" % (
                            users, msgs, rtt, rep + 1, a.reps, TOOL_LABEL[tool], a.workers))
                        self.bulk_case(users, msgs, tool, rep)
            if proxy:
                self.stop_proxy(proxy)
            self.write_bulk_report(rtt, time.time() - t_rtt)
        log("benchmark done in %.1f min" % ((time.time() - started) / 60))

    def bulk_corpora(self):
        t0 = time.time()
        for user, spec in self.scenarios.items():
            users, msgs = spec["set"]
            spec.update(self.gencorpus("base", user, "--messages", str(msgs),
                                       "--seed", str(spec["seed"])))
        t1 = time.time()
        self.run(["doveadm", "-c", self.src_conf, "index", "-A", "*"], timeout=3600)
        counts = self.counts_all(self.src_conf)
        bad = [u for u, s in self.scenarios.items()
               if counts.get(u) != (s["messages"], s["folders"])]
        if bad:
            raise RuntimeError("source users with other counts than written: %s" % ", ".join(bad[:5]))
        log("bulk corpora: %d users, %d messages, %.0f MB (generated in %.0fs, indexed in %.0fs)" % (
            len(self.scenarios), sum(s["messages"] for s in self.scenarios.values()),
            sum(s["bytes"] for s in self.scenarios.values()) / 1e6, t1 - t0, time.time() - t1))

    def counts_all(self, conf, users=None):
        """{user: (messages, folders)} for every user of the config's
        userdb (`mailbox status -A`, in-process; the flow formatter puts
        the user name first), like mailbox_counts()."""
        p = self.run(["doveadm", "-c", conf, "-o", "doveadm_worker_count=0", "-f", "flow",
                      "mailbox", "status", "-A", "messages", "*"], check=False, timeout=1800)
        out = {}
        for m in re.finditer(r"^(\S+) .*\bmessages=(\d+)[ \t]*$",
                             p.stdout.decode(errors="replace"), re.M):
            msgs, folders = out.get(m.group(1), (0, 0))
            out[m.group(1)] = (msgs + int(m.group(2)), folders + 1)
        return out

    def use_set(self, users, msgs):
        """The destination's userdb (passwd-file, iterated by -A) holds
        exactly this set's users."""
        self.cur_users = self.set_users(users, msgs)
        path = os.path.join(self.dst_dir, "passwd")
        with open(path + ".new", "w") as f:
            for user in self.cur_users:
                f.write("%s:{PLAIN}dpw-%s::::%s/home/%s::\n" % (user, user, self.dst_dir, user))
        os.chmod(path + ".new", 0o644)
        os.rename(path + ".new", path)
        with open(os.path.join(self.T, "bulk-users"), "w") as f:
            f.write("".join(u + "\n" for u in self.cur_users))

    def write_bulk_conf(self, tool):
        """What the destination's doveadm-server processes need for `tool`."""
        a = self.a
        kw = {"migrate_source_port": self.port}
        if tool == "migrate-1":
            kw["migrate_parallel_folders"] = 1
        for kv in a.migrate_set:
            k, v = kv.split("=", 1)
            kw[k] = v
        if DV24:
            plugins = "protocol doveadm {\n  mail_plugins {\n    doveadm_migrate = yes\n  }\n}\n"
        else:
            plugins = "protocol doveadm {\n  mail_plugins = $mail_plugins doveadm_migrate\n}\n"
        conf = ("# generated by bench/bench.py --bulk for %s\n"
                "doveadm_worker_count = %d\nmail_plugin_dir = %s\n%s%s"
                "imapc_host = 127.0.0.1\nimapc_port = %d\nimapc_user = %s\nimapc_password = %s\n"
                "imapc_ssl = no\n") % (
            tool, a.workers, self.plugin_dir, plugins, conf_settings(**kw), self.port,
            "%{user}" if DV24 else "%u", SRC_PASSWORD)
        if not DV24:
            conf += "imapc_features = %s\n" % IMAPC_FEATURES
        if tool == "dsync-pf100":
            conf += "mail_prefetch_count = 100\n"
        with open(self.bulk_conf + ".new", "w") as f:
            f.write(conf)
        os.chmod(self.bulk_conf + ".new", 0o600)
        os.rename(self.bulk_conf + ".new", self.bulk_conf)

    def reload_dest(self, tool):
        """bulk.conf for `tool`, checked, and the destination reloaded
        (new doveadm-server processes read it; the old ones have exited)."""
        self.write_bulk_conf(tool)
        conf = self.dst_conf["maildir"]
        self.run(["doveconf", "-c", conf, "-n"])
        self.run(["doveadm", "-c", conf, "reload"])
        time.sleep(1.0)

    def dst_master_pid(self):
        with open(os.path.join(self.dst_dir, "run", "master.pid")) as f:
            return int(f.read().strip())

    def bulk_cmd(self, tool):
        conf = self.dst_conf["maildir"]
        if tool in ("migrate", "migrate-1"):
            return ["doveadm", "-c", conf, "-o", "mail_plugin_dir=" + self.plugin_dir,
                    "-o", "mail_plugins=doveadm_migrate", "migrate", "run", "-A"]
        if tool == "dsync-pf100":
            return ["doveadm", "-c", conf, "sync", "-1", "-R", "-A", "imapc:"]
        if tool == "mbsync":
            return ["xargs", "-P", str(self.a.workers), "-a", os.path.join(self.T, "bulk-users"),
                    "-I", "{}", "mbsync", "-c", os.path.join(self.T, "mbsync", "{}", "mbsyncrc"),
                    "bench"]
        raise ValueError(tool)

    def bulk_wipe(self, tool):
        if tool == "mbsync":
            for user in self.cur_users:
                self.wipe(tool, user)
            return
        self.discard(os.path.join(self.dst_dir, "home"))
        home = os.path.join(self.dst_dir, "home")
        os.makedirs(home)
        os.chown(home, self.uid, self.gid)
        for user in self.cur_users:
            h = self.dst_home(user)
            os.makedirs(h)
            os.chown(h, self.uid, self.gid)
            os.chmod(h, 0o700)

    def bulk_measure(self, tool, tag):
        cmd = self.bulk_cmd(tool)
        logdir = os.path.join(self.T, "logs")
        os.makedirs(logdir, exist_ok=True)
        tfile, out, err = (os.path.join(logdir, tag + x) for x in (".time", ".out", ".err"))
        os.sync()
        src0 = self.src_children_cpu()
        full = ["timeout", "-k", "10", str(self.a.timeout), "/usr/bin/time", "-f", TIME_FMT,
                "-o", tfile] + cmd
        t0 = time.monotonic()
        with open(out, "wb") as fo, open(err, "wb") as fe:
            p = subprocess.Popen(full, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
            s = TreeSampler(p.pid, self.dst_master_pid(), self.src_port)
            s.start()
            try:
                p.wait(self.a.timeout + 60)
            finally:
                s.stop()
                if p.poll() is None:  # interrupted: stop it (timeout passes TERM on)
                    p.terminate()
                    p.wait(30)
        wall = time.monotonic() - t0
        src1 = self.src_children_cpu()
        r = {"rc": p.returncode, "wall": round(wall, 3), "src_cpu": round(src1 - src0, 2),
             "cmd": " ".join(cmd), "rss_tree_peak_kb": s.tree_peak_kb,
             "rss_tree_peak_procs": s.tree_peak_procs, "rss_sampled_max_kb": s.proc_peak_kb,
             "rss_sampled_max_comm": s.proc_peak_comm, "src_conn_peak": s.conn_peak,
             "workers_seen": len(s.workers_seen), "samples": s.samples}
        try:
            with open(tfile) as f:
                last = [l for l in f.read().splitlines() if re.match(r"^[\d.]+ \d+ [\d.]+ [\d.]+$", l)]
            e, m, u, sy = last[-1].split()
            # %M: the largest of the command and its waited-for descendants
            # (mbsync under xargs); the workers are sampled
            r.update({"wall": float(e), "rss_kb": int(m), "cpu": round(float(u) + float(sy), 2)})
        except (OSError, IndexError, ValueError):
            r.update({"rss_kb": None, "cpu": None})
        r["rss_proc_max_kb"] = max(r["rss_kb"] or 0, s.proc_peak_kb)
        if p.returncode in (124, 137):
            r["error"] = "timeout after %ds" % self.a.timeout
        elif p.returncode != 0:
            r["error"] = "exit %d: %s" % (p.returncode, first_error_lines(err, out))
        return r

    def bulk_counts(self, tool):
        if tool == "mbsync":
            return {u: self.dest_counts(tool, "maildir", u) for u in self.cur_users}
        return self.counts_all(self.dst_conf["maildir"])

    def bulk_case(self, users, msgs, tool, rep):
        if tool != "mbsync":
            self.reload_dest(tool)
        self.bulk_wipe(tool)  # (mbsync: a fresh mbsyncrc per user too)
        for pas in BULK_PASSES:
            time.sleep(PASS_GAP)
            tag = "bulk%dx%d-%s-r%d-rtt%d-%s" % (users, msgs, tool, rep, self.rtt, pas)
            r = self.bulk_measure(tool, tag)
            counts = self.bulk_counts(tool)
            exact = [u for u in self.cur_users if counts.get(u) == (
                self.scenarios[u]["messages"], self.scenarios[u]["folders"])]
            row = {"scenario": "%dx%d" % (users, msgs), "users": users, "msgs_per_user": msgs,
                   "tool": tool, "rep": rep, "pass": pas, "rtt_ms": self.rtt,
                   "workers": self.a.workers, "users_exact": len(exact),
                   "users_per_min": round(users * 60.0 / r["wall"], 1) if r["wall"] else None}
            row.update(r)
            row["ok"] = r["rc"] == 0 and len(exact) == users
            if not row["ok"]:
                wrong = [u for u in self.cur_users if u not in exact]
                why = r.get("error") or ""
                if wrong:
                    why = (why + "; " if why else "") + "%d users with other counts, e.g. %s" % (
                        len(wrong), ", ".join("%s %s/%s" % (u, counts.get(u), (
                            self.scenarios[u]["messages"], self.scenarios[u]["folders"]))
                            for u in wrong[:3]))
                self.anomalies.append("%dx%d / %s / rep %d / %s: %s" % (
                    users, msgs, TOOL_LABEL[tool], rep + 1, pas, why))
            self.rows.append(row)
            with open(os.path.join(self.T, "results.jsonl"), "a") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            log("  %dx%d %-22s rep %d %-8s wall %7.2fs %7.1f users/min rss max %5.1f MiB "
                "tree %6.1f MiB conns %3d src-cpu %6.2fs exact %d/%d%s" % (
                    users, msgs, TOOL_LABEL[tool], rep + 1, pas, r["wall"], row["users_per_min"] or 0,
                    r["rss_proc_max_kb"] / 1024, r["rss_tree_peak_kb"] / 1024, r["src_conn_peak"],
                    r["src_cpu"], len(exact), users,
                    "" if row["ok"] else "  <-- " + (r.get("error") or "count mismatch")))

    def write_bulk_report(self, rtt, seconds):
        a = self.a
        meta = {
            "bulk": True,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "rtt_ms": rtt, "proxy": rtt > 0 or a.proxy, "reps": a.reps,
            "workers": a.workers, "sets": ["%dx%d" % s for s in a.bulk],
            "tools": a.tools, "mail_fsync": a.mail_fsync,
            "imapc_features": "2.4 defaults (all on)" if DV24 else IMAPC_FEATURES,
            "migrate_set": a.migrate_set,
            "command": a.command_line, "seconds": round(seconds, 1),
            "host": host_info(), "loadavg": {"start": self.load_start, "end": loadavg()},
            "versions": self.versions,
            "corpus": {"%dx%d" % (u, m): {
                "messages": sum(s["messages"] for s in self.scenarios.values() if s["set"] == (u, m)),
                "bytes": sum(s["bytes"] for s in self.scenarios.values() if s["set"] == (u, m)),
                "folders_per_user": max(s["folders"] for s in self.scenarios.values()
                                        if s["set"] == (u, m))} for u, m in a.bulk},
        }
        import report
        self.save_results("%s-rtt%d-bulk" % (datetime.date.today().isoformat(), rtt), meta,
                          report.render_bulk)


# ---------------------------------------------------------------- helpers

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, limit):
    end = time.time() + limit
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def children(pid):
    """[(pid, comm)] of the direct children of pid."""
    return [(p, comm) for p, (ppid, comm) in proc_table().items() if ppid == pid]


def stop_dovecot(base_dir):
    """TERM the master in base_dir/master.pid (only if it is a dovecot);
    KILL it and its children by pid if it doesn't go within 10 s."""
    pf = os.path.join(base_dir, "master.pid")
    try:
        with open(pf) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"dovecot" not in f.read():
                return
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    for c, _ in children(pid):
        try:
            os.kill(c, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def first_error_lines(err, out):
    lines = []
    for path in (err, out):
        try:
            with open(path, errors="replace") as f:
                for l in f:
                    l = l.strip()
                    if l and not re.match(r"^(Command exited|[\d.]+ \d+ [\d.]+ [\d.]+$)", l):
                        lines.append(l)
        except OSError:
            pass
    pick = [l for l in lines if re.search(r"error|fatal|fail|panic", l, re.I)] or lines
    return " | ".join(pick[:3])[:600]


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def host_info():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for l in f:
                if l.startswith("model name"):
                    model = l.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = "%.0f GiB" % (int(f.readline().split()[1]) / 1024 / 1024)
    except (OSError, ValueError, IndexError):
        pass
    return "%s, %d CPUs (%s), %s RAM, kernel %s" % (
        platform.node(), os.cpu_count(), model, mem, platform.release())


def versions():
    def cmd(c):
        try:
            return subprocess.run(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=20).stdout.decode().strip().splitlines()[0]
        except Exception:
            return "?"
    return {
        "dovecot": cmd(["dovecot", "--version"]),
        "mbsync": cmd(["mbsync", "--version"]),
        # (a copy of the tree without .git gets it from run-bench-trixie.sh)
        "plugin": os.environ.get("DM_BENCH_PLUGIN_VERSION") or
        cmd(["git", "-C", TOP, "describe", "--always", "--dirty"]),
    }


def main():
    p = argparse.ArgumentParser(description="dovecot-migrate benchmark")
    p.add_argument("--quick", action="store_true",
                   help="1 repetition and a 1,000-message corpus")
    p.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    p.add_argument("--messages", type=int, help="standard corpus size (default 5000, --quick 1000)")
    p.add_argument("--rtt", default="0", help="RTT in ms; comma list for several (one result file each)")
    p.add_argument("--proxy", action="store_true", help="use the latency proxy even at RTT 0")
    p.add_argument("--formats", default="maildir", help="comma list of maildir,sdbox,mdbox")
    p.add_argument("--tools", help="comma list of %s (default: all; cp = the `cp -r` limit, "
                   "RTT 0 only; raw-fetch = the wire limit, one connection reading every body, "
                   "first pass only; with --scaling: migrate)" % ",".join(TOOLS))
    p.add_argument("--shapes", default="even",
                   help="comma list of the standard corpus' shapes, one table each: even "
                   "(user alice, today's spread), inbox-heavy (user inboxy, half of the mail "
                   "in INBOX), gmail (user gmail, every message in a \\All folder, label "
                   "folders hold copies); default: even")
    p.add_argument("--big", action="store_true",
                   help="add the 100k-small-messages, the 300 MB-message and the 1,000-folder corpora")
    p.add_argument("--many", action="store_true", help="add only the 100k-small-messages corpus")
    p.add_argument("--huge", action="store_true", help="add only the 300 MB-message corpus")
    p.add_argument("--wide", action="store_true",
                   help="add only the 1,000-folder corpus (user wide: 1,001 folders x 10 messages)")
    p.add_argument("--scaling", action="store_true",
                   help="add the standard corpus at --scaling-messages (user scale, --big-reps "
                   "repetitions) and a scaling table against the --messages one")
    p.add_argument("--scaling-messages", type=int, default=50000)
    p.add_argument("--many-messages", type=int, default=100000)
    p.add_argument("--huge-mb", type=int, default=300)
    p.add_argument("--big-reps", type=int, default=1,
                   help="repetitions for the --big and --scaling corpora")
    p.add_argument("--bulk", metavar="UxM[,UxM...]",
                   help="bulk onboarding instead of the per-mailbox tables: U users with M "
                   "messages each (the standard corpus scaled), e.g. 200x200,20x5000; tools "
                   "%s (default %s), first and no-change pass, all users at once" % (
                       ",".join(BULK_TOOLS), ",".join(BULK_DEFAULT_TOOLS)))
    p.add_argument("--workers", type=int, default=4,
                   help="--bulk: doveadm_worker_count for migrate and dsync, mbsync processes "
                   "at a time (default 4)")
    p.add_argument("--mail-fsync", default="optimized",
                   help="destination mail_fsync for migrate and dsync (default: optimized)")
    p.add_argument("--migrate-set", action="append", default=[], metavar="NAME=VALUE",
                   help="a migrate_* setting for every migrate run (repeatable), "
                   "e.g. migrate_source_compress=no")
    p.add_argument("--served-config", action="store_true",
                   help="run doveadm as on a mail server: no -c, the configuration served by "
                   "the running destination Dovecot's config socket (bind-mounted at "
                   "/run/dovecot in a private mount namespace; Maildir only) instead of "
                   "doveadm executing doveconf at every start")
    p.add_argument("--journaled-fs", type=int, metavar="GB", default=0,
                   help="put the work directory on a fresh journaled ext4 file system of GB "
                   "gigabytes (a sparse image under /var/tmp, loop-mounted in a private mount "
                   "namespace) instead of --workdir's: on a file system without a journal, "
                   "ext4 scans past recently deleted inodes on every create, which charges "
                   "the tools that write files and not the raw FETCH limit")
    p.add_argument("--timeout", type=int, default=1800, help="limit per measured command (s)")
    p.add_argument("--workdir", default="/tmp")
    p.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--name", help="suffix for the result file names")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    a = p.parse_args()
    a.command_line = " ".join(["bench/run-bench.sh"] + sys.argv[1:])
    a.reps = a.reps or (1 if a.quick else 3)
    a.messages = a.messages or (1000 if a.quick else 5000)
    a.rtts = [int(x) for x in a.rtt.split(",") if x != ""]
    a.formats = [x for x in a.formats.split(",") if x]
    if a.bulk:
        try:
            a.bulk = [tuple(int(x) for x in spec.lower().split("x")) for spec in a.bulk.split(",") if spec]
            assert a.bulk and all(len(x) == 2 and x[0] > 0 and x[1] > 0 for x in a.bulk)
        except (ValueError, AssertionError):
            p.error("--bulk wants UxM[,UxM...], e.g. 200x200,20x5000")
        if a.workers < 1:
            p.error("--workers must be at least 1")
        a.tools = a.tools or ",".join(BULK_DEFAULT_TOOLS)
        for t in a.tools.split(","):
            if t and t not in BULK_TOOLS:
                p.error("--bulk: unknown tool %s (one of %s)" % (t, ",".join(BULK_TOOLS)))
    if a.tools is None:
        a.tools = "migrate" if a.scaling else ",".join(TOOLS)
    a.tools = [x for x in a.tools.split(",") if x]
    a.shapes = [x for x in a.shapes.split(",") if x]
    for x in a.shapes:
        if x not in SHAPES:
            p.error("unknown shape %s (one of %s)" % (x, ",".join(SHAPES)))
    if a.scaling and "even" not in a.shapes:
        p.error("--scaling compares with the even corpus: --shapes must include even")
    for f in a.formats:
        if f not in FORMATS:
            p.error("unknown format %s" % f)
    for t in a.tools if not a.bulk else []:
        if t not in TOOLS:
            p.error("unknown tool %s" % t)
    if a.big:
        a.many = a.huge = a.wide = True
    if os.geteuid() != 0:
        p.error("must run as root (private Dovecot instances, chown to %s)" % MAIL_USER)
    if not os.path.exists(PLUGIN_SO):
        p.error("plugin not built: %s" % PLUGIN_SO)

    fs_image = None
    if a.journaled_fs:
        if os.environ.get("DM_BENCH_NS") != "1":
            p.error("--journaled-fs needs run-bench.sh's private mount namespace")
        fd, fs_image = tempfile.mkstemp(prefix="dm-bench-fs.", suffix=".img", dir="/var/tmp")
        os.close(fd)
        os.truncate(fs_image, a.journaled_fs << 30)
        a.workdir = tempfile.mkdtemp(prefix="dm-bench-fs.", dir="/tmp")
        for cmd in (["mkfs.ext4", "-q", "-F", fs_image],
                    ["mount", "-o", "loop", fs_image, a.workdir]):
            if subprocess.run(["timeout", "120"] + cmd).returncode != 0:
                os.unlink(fs_image)
                p.error("%s failed" % " ".join(cmd))
        log("work file system: journaled ext4, %d GB, on %s" % (a.journaled_fs, a.workdir))

    b = BulkBench(a) if a.bulk else Bench(a)

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    rc = 0
    try:
        b.main()
    except KeyboardInterrupt as e:
        log("interrupted (%s)" % e)
        rc = 130
    except Exception as e:
        log("FAILED: %s" % e)
        rc = 1
    finally:
        b.cleanup()
        if b.T and os.path.isdir(b.T):
            if a.keep or rc != 0:
                log("work directory kept: %s" % b.T)
            else:
                shutil.rmtree(b.T, ignore_errors=True)
        if fs_image is not None:
            if not (a.keep or rc != 0):
                subprocess.run(["timeout", "120", "umount", a.workdir])
                os.rmdir(a.workdir)
                os.unlink(fs_image)
            else:
                log("file system kept mounted in this namespace only: image %s" % fs_image)
    return rc


if __name__ == "__main__":
    sys.exit(main())
