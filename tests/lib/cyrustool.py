#!/usr/bin/env python3
"""IMAP steps on the Cyrus source that the shared imaptool doesn't offer
(test-cyrus)."""
import argparse, os, sys
sys.path.insert(0, os.environ["HARNESS_LIB"])
import imaptool as it

def conn(user):
    return it.connect(argparse.Namespace(host="127.0.0.1",
        port=int(os.environ["CY_PORT"]), user=user, password="cpw-" + user,
        ssl=False, cafile=None, timeout=60))

cmd = sys.argv[1]
if cmd == "mkuser":
    c = conn("cyrus")
    name = "user" + (it.Account(c).delim or ".") + sys.argv[2]
    it.check(c.create(name), "CREATE " + name)
elif cmd == "archive":
    # "Old Stuff" carries \Archive; it gets copies of INBOX 1:3
    c = conn("alice")
    box = it.Account(c).mailbox_arg(it.Account(c).to_server("Old Stuff"))
    it.check(c._simple_command("CREATE", box, "(USE (\\Archive))"),
             "CREATE (USE)")
    c.select("INBOX")
    it.check(c.uid("COPY", "1:3", box), "UID COPY")
elif cmd == "rebuild":
    # a new UIDVALIDITY and new UIDs for the same messages and flags
    c = conn("alice")
    folder = it.Account(c).to_server(sys.argv[2])
    old = c.status(folder, "(UIDVALIDITY MESSAGES)")
    it.check(c.create(folder + "-rebuilt"), "CREATE")
    c.select(folder)
    it.check(c.uid("COPY", "1:*", folder + "-rebuilt"), "UID COPY")
    c.close()
    it.check(c.delete(folder), "DELETE")
    it.check(c.rename(folder + "-rebuilt", folder), "RENAME")
    new = c.status(folder, "(UIDVALIDITY MESSAGES)")
    print(old[1][0].decode(), "->", new[1][0].decode())
elif cmd == "sieveput":
    # PUTSCRIPT NAME from stdin over Cyrus's ManageSieve, SETACTIVE it
    # when asked: Cyrus compiles (and refuses) scripts when they arrive
    import base64, socket
    s = socket.create_connection(("127.0.0.1", int(os.environ["CY_SIEVE_PORT"])), 30)
    f = s.makefile("rb")
    def response(what):
        while True:
            line = f.readline()
            if not line or line.startswith((b"NO", b"BYE")):
                sys.exit("%s: %r" % (what, line))
            if line.startswith(b"OK"):
                return
    response("greeting")
    s.sendall(b'AUTHENTICATE "PLAIN" "' +
              base64.b64encode(b"\0alice\0cpw-alice") + b'"\r\n')
    response("AUTHENTICATE")
    data = sys.stdin.buffer.read()
    name = sys.argv[2].encode()
    s.sendall(b'PUTSCRIPT "%s" {%d+}\r\n' % (name, len(data)) + data + b"\r\n")
    response("PUTSCRIPT")
    if len(sys.argv) > 3:
        s.sendall(b'SETACTIVE "%s"\r\n' % name)
        response("SETACTIVE")
    s.sendall(b"LOGOUT\r\n")
    sys.exit(0)
c.logout()
