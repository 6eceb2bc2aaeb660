#!/usr/bin/env python3
"""A hostile POP3 server (test-pop3): an endless UIDL line, or a listing
that never ends."""
import os, socket, sys, threading, time
mode, portfile = sys.argv[1], sys.argv[2]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0))
ls.listen(4)
open(portfile + ".tmp", "w").write(str(ls.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
def serve(c):
    f = c.makefile("rb")
    c.sendall(b"+OK fake\r\n")
    try:
        for line in f:
            cmd = line.split(b" ")[0].strip().upper()
            if cmd in (b"USER", b"PASS", b"QUIT"):
                c.sendall(b"+OK\r\n")
            elif cmd == b"UIDL" and mode == "longline":
                c.sendall(b"+OK\r\n1 " + b"x" * 200000 + b"\r\n.\r\n")
            elif cmd == b"UIDL":
                c.sendall(b"+OK\r\n1 abc\r\n")
                time.sleep(30)
            else:
                c.sendall(b"-ERR no\r\n")
    except OSError:
        pass
    c.close()
ls.settimeout(60)
end = time.time() + 60
while time.time() < end:
    try:
        c, _ = ls.accept()
    except socket.timeout:
        break
    threading.Thread(target=serve, args=(c,), daemon=True).start()
