#!/usr/bin/env python3
"""POP3 and IMAP steps test-pop3 needs on a source: UIDL listings, hiding
messages from POP3, appending, creating a Cyrus user."""
import imaplib, poplib, sys
cmd, port, user, pw = sys.argv[1:5]
if cmd == "uidl":
    # "UIDL" lines in POP3 order; the password comes from stdin
    p = poplib.POP3("127.0.0.1", int(port), timeout=30)
    p.user(user)
    p.pass_(pw)
    for line in p.uidl()[1]:
        print(line.decode().split(" ", 1)[1])
    p.quit()
elif cmd == "hide":
    # flag INBOX messages (IMAP sequence numbers) hidden from POP3
    m = imaplib.IMAP4("127.0.0.1", int(port))
    m.login(user, pw)
    m.select("INBOX")
    for seq in sys.argv[5:]:
        m.store(seq, "+FLAGS", "(POP3Hidden)")
    m.logout()
elif cmd == "append":
    # a corpus message, made new by a Message-ID of its own, into INBOX
    m = imaplib.IMAP4("127.0.0.1", int(port))
    m.login(user, pw)
    with open(sys.argv[5], "rb") as f:
        msg = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    msg = b"Message-ID: <pop3-new@dovecot-migrate.test>\r\n" + msg
    m.append("INBOX", None, None, msg)
    m.logout()
elif cmd == "mkuser":
    # Cyrus: the admin creates the user's INBOX
    m = imaplib.IMAP4("127.0.0.1", int(port))
    m.login(user, pw)
    typ, data = m.create("user." + sys.argv[5])
    if typ != "OK":
        sys.exit("CREATE: %r" % data)
    m.logout()
