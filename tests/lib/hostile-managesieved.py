#!/usr/bin/env python3
"""A misbehaving ManageSieve server (RFC 5804) for test-sieve.sh: it greets
and accepts any AUTHENTICATE like a real one, then plays one fault:

  huge-literal   GETSCRIPT answers {999999999} and nothing more
  endless-list   LISTSCRIPTS sends script lines without end
  hang           no greeting at all
  bad-greeting   an HTTP status line instead of capabilities
  nul-literal    GETSCRIPT answers a literal holding a NUL byte and a
                 CR LF, which the client must keep byte for byte
  unsafe-names   script names the destination refuses ("a/b", the
                 active one, and one of 300 characters) beside "ok"

  hostile-managesieved.py --case NAME --port-file F [--max-seconds S]
"""

import argparse
import os
import socketserver
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import serve_until  # noqa: E402

GREETING = (b'"IMPLEMENTATION" "hostile"\r\n"SIEVE" "fileinto"\r\n'
            b'"SASL" "PLAIN"\r\n"VERSION" "1.0"\r\nOK "ready"\r\n')
NUL_SCRIPT = b'require "fileinto";\r\n# \x00 nul\r\nfileinto "INBOX.A";\r\n'
PLAIN_SCRIPT = b'require "fileinto";\r\nfileinto "INBOX.A";\r\n'
LONG_NAME = b"L" * 300


class Handler(socketserver.StreamRequestHandler):
    def send(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def handle(self):
        case = self.server.case
        if case == "hang":
            time.sleep(30)
            return
        if case == "bad-greeting":
            self.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            return
        self.send(GREETING)
        for line in self.rfile:
            cmd = line.split(b" ", 1)[0].upper().strip()
            if cmd == b"AUTHENTICATE":
                self.send(b"OK\r\n")
            elif cmd == b"LISTSCRIPTS":
                if case == "endless-list":
                    try:
                        n = 0
                        while True:
                            self.send((b'"s%d"\r\n' % n) * 1000)
                            n += 1
                    except OSError:
                        return
                if case == "unsafe-names":
                    self.send(b'"a/b" ACTIVE\r\n"ok"\r\n"' + LONG_NAME +
                              b'"\r\nOK\r\n')
                    continue
                self.send(b'"s" ACTIVE\r\nOK\r\n')
            elif cmd == b"GETSCRIPT":
                if case == "huge-literal":
                    self.send(b"{999999999}\r\n")
                    time.sleep(30)
                    return
                body = PLAIN_SCRIPT if case == "unsafe-names" else NUL_SCRIPT
                self.send(b"{%d}\r\n" % len(body) + body + b"\r\nOK\r\n")
            elif cmd == b"LOGOUT":
                self.send(b'OK "bye"\r\n')
                return
            else:
                self.send(b'NO "unknown"\r\n')


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--case", required=True,
                   choices=["huge-literal", "endless-list", "hang",
                            "bad-greeting", "nul-literal", "unsafe-names"])
    p.add_argument("--port-file", required=True)
    p.add_argument("--max-seconds", type=float, default=170)
    args = p.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.case = args.case
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    serve_until(srv, args.max_seconds)


if __name__ == "__main__":
    main()
