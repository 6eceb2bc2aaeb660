#!/usr/bin/env python3
"""A minimal inetd for the integration tests (stdlib only): listens on
127.0.0.1, and for every connection forks a child that runs COMMAND with
the connection as its stdin and stdout, as --user. For IMAP servers that
only run from inetd (GNU mailutils imap4d --inetd).

  inetd.py --port-file F --pid-file P --user vmail [--max-lifetime S] -- CMD ARGS...

The listener exits after --max-lifetime seconds (default 600) or on
SIGTERM; children still serving a connection end when it closes."""

import argparse
import os
import pwd
import signal
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--pid-file")
    ap.add_argument("--user", required=True)
    ap.add_argument("--max-lifetime", type=float, default=600)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("no command")
    pw = pwd.getpwnam(args.user)

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", args.port))
    lsock.listen(16)
    lsock.settimeout(1.0)
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write("%d\n" % os.getpid())
    with open(args.port_file + ".tmp", "w") as f:
        f.write("%d\n" % lsock.getsockname()[1])
    os.rename(args.port_file + ".tmp", args.port_file)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    # children are reaped automatically
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    end = time.time() + args.max_lifetime
    while not stop and time.time() < end:
        try:
            conn, _ = lsock.accept()
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        pid = os.fork()
        if pid == 0:
            try:
                lsock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.dup2(conn.fileno(), 0)
                os.dup2(conn.fileno(), 1)
                conn.close()
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.setgroups([])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
                os.execvp(cmd[0], cmd)
            finally:
                os._exit(127)
        conn.close()
    lsock.close()


if __name__ == "__main__":
    main()
