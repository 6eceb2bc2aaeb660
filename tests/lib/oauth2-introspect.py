#!/usr/bin/env python3
"""An OAuth2 token introspection endpoint (RFC 7662 style, POST token=...)
on 127.0.0.1 for Dovecot's oauth2 passdb (test-tls-auth)."""
import http.server, json, sys, urllib.parse
port, good, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class H(http.server.BaseHTTPRequestHandler):
    def reply(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def token(self):
        n = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        tok = (form.get("token") or [""])[0]
        auth = self.headers.get("Authorization", "")
        if not tok and auth.lower().startswith("bearer "):
            tok = auth[7:]
        return tok

    def do_POST(self):
        tok = self.token()
        ok = tok == good
        with open(log, "a") as f:
            f.write("%s %s\n" % (self.path, "active" if ok else "inactive"))
        if ok:
            self.reply({"active": "true", "username": "alice"})
        else:
            self.reply({"active": "false"})

    do_GET = do_POST

    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
