"""Shared by the test IMAP emulators (gmail-imapd.py, hostile-imapd.py)."""

import threading
import time


def serve_until(srv, seconds):
    """Serve srv (a socketserver) in a thread until seconds have passed,
    the thread died or Ctrl-C; then shut it down and close it."""
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True)
    t.start()
    deadline = time.time() + seconds
    try:
        while time.time() < deadline and t.is_alive():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    srv.shutdown()
    srv.server_close()
