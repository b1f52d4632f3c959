"""A Flask app to run under gunicorn behind ballast.

    gunicorn -w 2 -b 127.0.0.1:8001 app:app

Routes:
  /         hello, naming the worker process
  /healthz  ok
  /api      a fast request: 5 ms of work, a small JSON answer
  /report   a slow request: 300 ms of work
  /work     one path, two kinds of request: 300 ms with probability 0.1, else 5 ms;
            the response header X-Slow says which (1 or 0)
  /echo     POST: answers with the length of the request body
"""
import os
import random
import time

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def hello():
    return "hello from pid %d\n" % os.getpid()


@app.get("/healthz")
def healthz():
    return "ok\n"


@app.get("/api")
def api():
    time.sleep(0.005)
    return jsonify(ok=True, pid=os.getpid())


@app.get("/report")
def report():
    time.sleep(0.3)
    return jsonify(report="done", pid=os.getpid())


@app.get("/work")
def work():
    # X-Work: slow|fast says which (a benchmark that wants every proxy to
    # meet the same sequence); without it, one request in ten is slow.
    how = request.headers.get("X-Work")
    slow = how == "slow" if how in ("slow", "fast") else random.random() < 0.1
    time.sleep(0.3 if slow else 0.005)
    resp = jsonify(slow=slow, pid=os.getpid())
    resp.headers["X-Slow"] = "1" if slow else "0"
    return resp


@app.post("/echo")
def echo():
    return jsonify(length=len(request.get_data()))
