"""The reference servers of bench/http_serving.py: the same bytes from memory, with nothing of Sender.

* `app` — a bare ASGI app: an exact path → (bytes, content type) lookup, then one
  `http.response.start` and one `http.response.body`. What hypercorn's trio worker can do
  with the least an application can do.
* `quart_app` — the same through a quart-trio route (what a framework costs per request).

The files are read once at startup from BARE_FILES: `URL-path=file` pairs separated by
newlines (the URL path is the one Sender serves, so every server gets the same URL).

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
    found = FILES.get(scope["raw_path"])
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
