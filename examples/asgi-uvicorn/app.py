"""A plain ASGI app (no framework) to run under uvicorn behind ballast.

    python3 -m uvicorn --host 127.0.0.1 --port 8001 app:app

Routes: /  (hello, naming the process and path), /healthz (ok), and
POST /echo (answers with the length of the request body).
"""
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/echo" and scope["method"] == "POST":
        length, more = 0, True
        while more:
            message = await receive()
            length += len(message.get("body", b""))
            more = message.get("more_body", False)
        status, body = 200, '{"length": %d}\n' % length
    elif path == "/healthz":
        status, body = 200, "ok\n"
    elif path == "/":
        status, body = 200, "hello from pid %d path=%s\n" % (os.getpid(), path)
    else:
        status, body = 404, "not found: %s\n" % path
    data = body.encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(data)).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": data})
