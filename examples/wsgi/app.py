#!/usr/bin/env python3
"""A small WSGI app for ballast, with Python's standard library only.

Usage: app.py PORT   (listens on 127.0.0.1:PORT)

Routes:
  /            one line naming the process: hello from pid <pid> (port <port>) path=<path>
  /healthz     ok
  /slow?ms=N   sleeps N milliseconds (at most 10000), then answers like /

SIGTERM (and Ctrl-C) stop it cleanly: it stops accepting, lets requests in
progress finish (for at most DRAIN_SECONDS), and exits with code 0.
"""
import os
import signal
import socketserver
import sys
import threading
import time
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

MAX_SLEEP_MS = 10000
DRAIN_SECONDS = 5

in_flight = 0
in_flight_cond = threading.Condition()


class Server(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per connection, so that a slow request does not hold up others."""

    daemon_threads = True
    allow_reuse_address = True


class Handler(WSGIRequestHandler):
    """Counts the requests in progress (response written included) for the drain."""

    def handle(self):
        global in_flight
        with in_flight_cond:
            in_flight += 1
        try:
            super().handle()
        finally:
            with in_flight_cond:
                in_flight -= 1
                in_flight_cond.notify_all()

    def log_message(self, format, *args):  # no access log on stderr
        pass


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/healthz":
        return text(start_response, "200 OK", "ok\n")
    if path == "/slow":
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            ms = int(qs.get("ms", ["0"])[0])
        except ValueError:
            return text(start_response, "400 Bad Request", "ms must be an integer\n")
        time.sleep(min(max(ms, 0), MAX_SLEEP_MS) / 1000)
    elif path != "/":
        return text(start_response, "404 Not Found", "not found: %s\n" % path)
    body = "hello from pid %d (port %d) path=%s\n" % (os.getpid(), PORT, path)
    return text(start_response, "200 OK", body)


def text(start_response, status, body):
    data = body.encode()
    start_response(status, [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(data))),
    ])
    return [data]


def main():
    global PORT
    if len(sys.argv) != 2:
        print("usage: app.py PORT", file=sys.stderr)
        return 2
    PORT = int(sys.argv[1])
    server = make_server("127.0.0.1", PORT, app, server_class=Server, handler_class=Handler)

    def stop(signum, frame):
        # shutdown() waits for serve_forever to return, so call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("listening on 127.0.0.1:%d" % PORT, flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    with in_flight_cond:
        in_flight_cond.wait_for(lambda: in_flight == 0, timeout=DRAIN_SECONDS)
    return 0


PORT = 0

if __name__ == "__main__":
    sys.exit(main())
