"""The reference servers of bench/http_serving.py: the same bytes from memory, with nothing of Sender.

* `app` — a bare ASGI app: an exact path → (bytes, content type) lookup, then one
  `http.response.start` and one `http.response.body`. What hypercorn's trio worker can do
  with the least an application can do.
* `quart_app` — the same through a quart-trio route (what a framework costs per request).

The files are read once at startup from BARE_FILES: `URL-path=file` pairs separated by
newlines (the URL path is the one Sender serves, so every server gets the same URL).

For bench/held_requests.py, `app` also holds requests whose query string has `_HLS_msn` (a
blocking playlist reload) until a datagram arrives on the Unix socket BARE_RELEASE_SOCK (the
way Sender's spool events wake its readers); then it reads the file once and answers every held
request with those bytes. `GET /_held` answers how many requests are held.

    BARE_FILES=$'/hls/a/index.m3u8=/spool/a/index.m3u8\n...' \\
        hypercorn --worker-class trio --bind 127.0.0.1:PORT bare_asgi:app
"""

from __future__ import annotations

import os

TYPES = {".m3u8": b"application/vnd.apple.mpegurl", ".m4s": b"video/mp4", ".mp4": b"video/mp4"}


def _load() -> dict[bytes, tuple[bytes, bytes]]:
    files = {}
    for line in os.environ.get("BARE_FILES", "").splitlines():
        if "=" not in line:
            continue
        url_path, file_path = line.split("=", 1)
        with open(file_path, "rb") as f:
            data = f.read()
        files[url_path.encode()] = (data, TYPES.get(os.path.splitext(file_path)[1], b"application/octet-stream"))
    return files


FILES = _load()
NOT_FOUND = b"not found\n"


class Held:
    """Blocking requests waiting for the release datagram, and the bytes they all get."""

    def __init__(self) -> None:
        self.count = 0
        self.event = None
        self.body: dict[bytes, bytes] = {}

    async def run_release_socket(self, path: str) -> None:
        import socket

        import trio

        self.event = trio.Event()
        if os.path.exists(path):
            os.unlink(path)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        await sock.bind(path)
        try:
            while True:
                await sock.recv(4096)
                self.event.set()
                self.event = trio.Event()
        finally:
            sock.close()

    async def wait(self, raw_path: bytes, file_path: str) -> bytes:
        if raw_path in self.body:  # released already: answered at once
            return self.body[raw_path]
        self.count += 1
        try:
            await self.event.wait()
        finally:
            self.count -= 1
        body = self.body.get(raw_path)
        if body is None:  # read once after the release, shared by every waiter
            with open(file_path, "rb") as f:
                body = self.body[raw_path] = f.read()
        return body


HELD = Held()
PATHS = {line.split("=", 1)[0].encode(): line.split("=", 1)[1]
         for line in os.environ.get("BARE_FILES", "").splitlines() if "=" in line}


async def _lifespan(receive, send):
    release_sock = os.environ.get("BARE_RELEASE_SOCK")
    message = await receive()
    assert message["type"] == "lifespan.startup"
    if not release_sock:
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    import trio

    async with trio.open_nursery() as nursery:
        nursery.start_soon(HELD.run_release_socket, release_sock)
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        nursery.cancel_scope.cancel()
    await send({"type": "lifespan.shutdown.complete"})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    raw_path = scope["raw_path"]
    if raw_path == b"/_held":
        body = b"%d\n" % HELD.count
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
        return
    if HELD.event is not None and b"_HLS_msn" in scope["query_string"] and raw_path in PATHS:
        body = await HELD.wait(raw_path, PATHS[raw_path])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", FILES[raw_path][1]), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
        return
    found = FILES.get(raw_path)
    if found is None:
        status, body, ctype = 404, NOT_FOUND, b"text/plain"
    else:
        status, (body, ctype) = 200, found
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def _quart():
    from quart import Response
    from quart_trio import QuartTrio

    q = QuartTrio("bare")
    by_path = {k.decode(): v for k, v in FILES.items()}

    @q.route("/hls/<path:rest>")
    async def hls(rest: str):
        found = by_path.get("/hls/" + rest)
        if found is None:
            return Response(NOT_FOUND, status=404, content_type="text/plain")
        body, ctype = found
        return Response(body, content_type=ctype.decode())

    return q


quart_app = _quart() if os.environ.get("BARE_QUART") else None
