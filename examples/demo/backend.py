#!/usr/bin/env python3
"""A tiny demo backend for ballast, written with Python's standard library only.

Usage: backend.py NAME PORT

It answers every GET with one line naming itself, so that responses rotating
across backends are easy to see, and /healthz with "ok".
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real app server would
    # Head and body in one write, as app servers send them; unbuffered, the
    # body would wait behind Nagle for the ACK of the head (40 ms).
    wbufsize = 1 << 16

    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok\n"
        else:
            body = (
                "hello from %s (port %d) path=%s x-forwarded-for=%s\n"
                % (
                    NAME,
                    PORT,
                    self.path,
                    self.headers.get("X-Forwarded-For", "-"),
                )
            ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", NAME)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(length)
        body = json.dumps({"backend": NAME, "received_bytes": len(data)}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):  # quiet: ballast is the star of the demo
        pass


if __name__ == "__main__":
    NAME, PORT = sys.argv[1], int(sys.argv[2])
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
