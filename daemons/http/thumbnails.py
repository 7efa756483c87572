"""`/api/streams/<slug>/thumbnail.jpg`: the JPEG sender-ingest keeps of each live stream
(`daemons/ingest/thumbnails.py`), with the stream's visibility rules.

The stream's latest generation's picture (the live one, else the last broadcast's), or a given
generation's (`?generation=`, a recording's). Unknown stream or no picture yet → 404; a private
stream without a valid playback token (`?token=`) → 403. The URL names no generation, so the
answer is cached briefly: `max-age` is `thumbnails.interval_s` (`private` for private streams),
with an ETag for revalidation.
"""

from __future__ import annotations

import os
from email.utils import formatdate
from pathlib import Path

import trio
from quart import Response, request

from daemons.core.domain import generations, playback
from daemons.http.responses import error_response
from daemons.media.names import GENERATION_ID_RE, THUMBNAIL


def path_of(spool_root: Path, stream_id: str, generation_id: str) -> Path:
    return Path(spool_root) / "streams" / stream_id / generation_id / THUMBNAIL


def url_of(slug: str, token: str | None = None, *, generation: str | None = None) -> str:
    """The route for a stream's thumbnail (relative): its latest broadcast's, or `generation`'s,
    carrying a private stream's token."""
    query = "&".join(f"{k}={v}" for k, v in (("generation", generation), ("token", token)) if v)
    return f"/api/streams/{slug}/thumbnail.jpg" + (f"?{query}" if query else "")


def _read(path: Path) -> tuple[bytes, os.stat_result] | None:
    try:
        with open(path, "rb") as f:
            return f.read(), os.fstat(f.fileno())
    except (FileNotFoundError, NotADirectoryError):
        return None


async def serve(ctx, slug: str) -> Response:
    entry = await ctx.directory.find(slug)
    if entry is None:
        return error_response(404, "not_found", f"no stream {slug!r}")
    private = entry.visibility == "private"
    if private and not playback.token_valid(ctx.playback_secret, entry.id, request.args.get("token")):
        return error_response(403, "forbidden", "this stream is private: a valid playback token is required")
    generation_id = request.args.get("generation")
    if generation_id is None:
        latest = await ctx.store.run(generations.latest, entry.id)
        generation_id = latest["id"] if latest else None
    elif not GENERATION_ID_RE.fullmatch(generation_id):
        return error_response(400, "invalid_input", "generation must be a generation id (gen_ and 16 hex digits)",
                              field="generation")
    found = await trio.to_thread.run_sync(_read, path_of(ctx.install.spool_root, entry.id, generation_id)) \
        if generation_id else None
    if found is None:
        return error_response(404, "not_found", f"stream {slug!r} has no thumbnail yet")
    data, st = found
    etag = f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'
    headers = {
        "Cache-Control": f"{'private' if private else 'public'}, max-age={max(1, round(ctx.config['thumbnails.interval_s']))}",
        "ETag": etag,
        "Last-Modified": formatdate(st.st_mtime, usegmt=True),
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("If-None-Match", ""):
        return Response(b"", status=304, headers=headers)
    return Response(data, content_type="image/jpeg", headers=headers)


def exists(spool_root: Path, stream_id: str, generation_id: str | None) -> bool:
    """Whether the generation has a thumbnail (blocking: a stat)."""
    return bool(generation_id) and path_of(spool_root, stream_id, generation_id).is_file()
