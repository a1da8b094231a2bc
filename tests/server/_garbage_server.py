"""A tiny real HTTP server that answers like a broken stageguard server, for the client's fault tests.

Run as ``python _garbage_server.py PORT``. The first path segment picks the misbehaviour, so one process
serves every mode (``http://127.0.0.1:PORT/html`` is a "server" that answers HTML to everything).
"""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "html": (200, "text/html", b"<html><body><h1>Welcome to nginx!</h1></body></html>"),
    "null": (200, "application/json", b"null"),
    "empty": (200, "application/json", b""),
    "list": (200, "application/json", b"[1, 2, 3]"),
    "shape": (200, "application/json", b'{"unexpected": {"nested": true}, "status": 12}'),
    "string": (200, "application/json", b'"ok"'),
    "truncated": (200, "application/json", b'{"status": "NOT_TRIG'),
    "redirect": (302, "text/html", b"moved"),
    "error500": (500, "text/html", b"<h1>Internal Server Error</h1>"),
    "error503": (503, "application/json", b'{"detail": "maintenance"}'),
    "html404": (404, "text/html", b"<h1>404 Not Found</h1>"),
    "html401": (401, "text/html", b"<h1>401 Authorization Required</h1>"),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        mode = self.path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        if mode == "hang":
            time.sleep(60)
            return
        if mode == "die":  # read the request, then drop the connection without an answer
            self.close_connection = True
            self.connection.close()
            return
        status, kind, body = ANSWERS.get(mode, (404, "text/plain", b"no such mode"))
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        if status in (301, 302, 307, 308):
            self.send_header("location", "https://login.example.com/sso")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()
