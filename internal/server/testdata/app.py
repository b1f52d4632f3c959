#!/usr/bin/env python3
"""A test backend for ballast's resilience tests: a threaded HTTP/1.1 server
from Python's standard library, run as a real process the tests kill, stop and
restart.

Usage: app.py NAME PORT

  GET  /healthz         "ok"
  GET  /slow?ms=N       answers after N ms
  GET  /any             answers at once
  POST /die             prints "RECV <X-Id>" on stdout, then exits at once
                        without answering (a backend dying mid-request)
  POST /echo            answers with the body's length

Every answer carries X-Backend (the name), X-Start (the time the request
began, Unix ns) and X-Concurrent (requests in progress in this process when it
began, itself included); stdout gets "REQ <method> <path> <X-Id>" per request.
"""
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

lock = threading.Lock()
active = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body in one write, as app servers send them: unbuffered, the
    # body waits behind Nagle for the ACK of the head (a delayed ACK, 40 ms).
    wbufsize = 1 << 16

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except ConnectionError:
            self.close_connection = True

    def answer(self, body, start, conc):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", NAME)
        self.send_header("X-Start", str(start))
        self.send_header("X-Concurrent", str(conc))
        self.end_headers()
        self.wfile.write(body)

    def enter(self):
        global active
        with lock:
            active += 1
            conc = active
        print("REQ %s %s %s" % (self.command, self.path, self.headers.get("X-Id", "-")), flush=True)
        return time.time_ns(), conc

    def leave(self):
        global active
        with lock:
            active -= 1

    def do_GET(self):
        start, conc = self.enter()
        try:
            url = urlparse(self.path)
            if url.path == "/slow":
                ms = int(parse_qs(url.query).get("ms", ["0"])[0])
                time.sleep(ms / 1000)
            body = ("ok\n" if url.path == "/healthz" else NAME + "\n").encode()
            self.answer(body, start, conc)
        finally:
            self.leave()

    def do_POST(self):
        start, conc = self.enter()
        try:
            n = int(self.headers.get("Content-Length", "0"))
            data = self.rfile.read(n)
            if self.path == "/die":
                print("RECV %s" % self.headers.get("X-Id", "-"), flush=True)
                os._exit(1)
            self.answer(b"%d\n" % len(data), start, conc)
        finally:
            self.leave()

    def log_message(self, fmt, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 would drop connections under load
    allow_reuse_address = True


if __name__ == "__main__":
    NAME, PORT = sys.argv[1], int(sys.argv[2])
    Server(("127.0.0.1", PORT), Handler).serve_forever()
