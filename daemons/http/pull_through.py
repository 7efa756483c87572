"""Pull-through on edge nodes: a miss in the local spool is fetched from the generation's upstream once.

sender-edge-fill keeps an edge's spool ahead of its viewers; when a viewer still asks for a file
the spool does not have (edge-fill is a moment behind, or has not started on that rendition), the
HLS handler asks `PullThrough` instead of answering 404:

* **Whose generation.** `<spool>/streams/<sid>/<gid>/generation.json` names the upstream the edge
  follows for that generation: `"upstream": {"endpoint_id": "…", "base_url": "http://host:port"}`
  (edge-fill writes it; absent or null on an origin). Read once per generation and re-read when
  the file's identity (inode, mtime, size) changes. Pull-through also needs `edge_fill.pull_through`
  and a distribution key: every upstream request carries `Authorization: Bearer <node token>`, which
  a Sender source accepts in place of a playback token for private streams.
* **Only finalized objects** (`finalized`): init files; segments before the local playlist's next
  msn; parts the local playlist lists; anything while the rendition has no local playlist yet.
  Everything else is never asked upstream (a future part is not an edge's to guess): a part or
  segment in the local playlist's segment in progress or the next is held until edge-fill writes
  it (a viewer who saw the upstream's playlist through a forwarded request is that much ahead;
  `hls_route.EDGE_CATCH_UP_S` at most), anything else is the usual 404.
* **Media files** (`media_file`): one upstream GET per path at a time; concurrent misses for the
  same path wait on that one fetch (a `Flight`) and get the same answer. The body (at most
  `MAX_BODY_BYTES`) is written into the spool under a temporary name and renamed into place, in a
  worker thread, then served through the `FileCache` like any local file. At most
  `MAX_MEDIA_FETCHES` media fetches run at once per worker.
* **Playlists** (`playlist`): while the rendition (or the generation's master playlist) has no
  local file yet, the request is forwarded with its `_HLS_msn` / `_HLS_part` / `_HLS_skip`,
  identical (path, query) requests coalesced, nothing stored; the upstream's Cache-Control is
  passed through (a live playlist stays cacheable for no longer than the source allows).
* **Errors** are never stored, and every waiter of a flight gets the same one: upstream 404 → 404;
  upstream 5xx (or any other refusal of ours) → 502; connection refused → 502; no answer within
  `edge_fill.request_timeout_s` → 504. Playlists also pass a 400 (bad directives) through.

Fetches run in the worker's own nursery (`run`), not in the request's task, so a viewer that
goes away does not cancel the fetch the others wait on. One `httpx.AsyncClient` per worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import partial
from email.utils import formatdate
from pathlib import Path
from urllib.parse import urlencode

import httpx
import trio

from daemons.core.domain import distribution
from daemons.http.spool_view import CachedFile, FileCache, file_key
from daemons.http.state import Counters
from daemons.media.hls import MediaPlaylist
from daemons.runtime import logging as slog
from daemons.core.files import atomic_write

log = slog.get("http.pull_through")

MAX_BODY_BYTES = 64 * 1024 * 1024  # a larger answer is refused (502), not stored
MAX_MEDIA_FETCHES = 16  # media fetches at once, per worker
MAX_PLAYLIST_FORWARDS = 64  # forwarded playlist requests at once, per worker (blocking ones are held upstream)
BLOCKING_RELOAD_EXTRA_S = 30.0  # a blocking reload is held upstream up to 3 target durations: it may take this much longer
MAX_GENERATIONS_CACHED = 4096
FORWARDED_DIRECTIVES = ("_HLS_msn", "_HLS_part", "_HLS_skip")


class PullFailed(Exception):
    """What a viewer gets instead of the file: `status` (404, 400, 502, 504) and a message."""

    def __init__(self, status: int, message: str, reason: str):
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


@dataclass(frozen=True, slots=True)
class Upstream:
    endpoint_id: str
    base_url: str  # scheme://host[:port], no trailing slash


@dataclass(frozen=True, slots=True)
class ForwardedPlaylist:
    cache_control: bytes
    etag: bytes | None
    last_modified: bytes | None
    body: bytes


class Flight:
    """One upstream request in progress, and everything waiting for its answer."""

    __slots__ = ("done", "result", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result = None
        self.error: PullFailed | None = None

    async def answer(self):
        await self.done.wait()
        if self.error is not None:
            e = self.error
            raise PullFailed(e.status, e.message, e.reason)  # a fresh exception per waiter
        return self.result


def upstream_of(doc: object) -> Upstream | None:
    """The `upstream` of a generation.json document, or None (an origin's, or malformed)."""
    if not isinstance(doc, dict):
        return None
    up = doc.get("upstream")
    if not isinstance(up, dict):
        return None
    base_url, endpoint_id = up.get("base_url"), up.get("endpoint_id")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        return None
    return Upstream(endpoint_id if isinstance(endpoint_id, str) else "", base_url.rstrip("/"))


def finalized(kind: str, filename: str, playlist: MediaPlaylist | None) -> bool:
    """Whether an init/part/segment may be pulled: it exists for good upstream, as far as the local
    playlist tells (with no local playlist yet, the upstream's word is all there is)."""
    if kind == "init" or playlist is None:
        return True
    if kind == "segment":
        return int(filename.split(".", 1)[0]) < playlist.next_msn
    if kind == "part":
        return any(p.uri == filename for p in playlist.partial_parts) or any(
            p.uri == filename for s in playlist.segments for p in s.parts)
    return False


class PullThrough:
    """One worker's pull-through: generation.json cache, in-flight fetches, the upstream client."""

    def __init__(self, *, spool_root: Path, files: FileCache, counters: Counters, node_key: bytes | None,
                 enabled: bool, timeout_s: float):
        self.root = str(Path(spool_root) / "streams")
        self.files = files
        self.counters = counters
        self.node_key = node_key
        self.enabled = enabled and node_key is not None
        self.timeout_s = timeout_s
        self.client: httpx.AsyncClient | None = None
        self._nursery: trio.Nursery | None = None
        self._generations: dict[tuple[str, str], tuple[tuple[int, int, int], Upstream | None]] = {}
        self._media: dict[str, Flight] = {}  # spool path → the fetch in flight
        self._playlists: dict[str, Flight] = {}  # upstream URL (with its directives) → the request in flight
        self._media_slots = trio.CapacityLimiter(MAX_MEDIA_FETCHES)
        self._playlist_slots = trio.CapacityLimiter(MAX_PLAYLIST_FORWARDS)

    @property
    def active(self) -> bool:
        return self.enabled and self._nursery is not None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The worker's lifetime: the client and the nursery fetches run in; closed on the way out."""
        if not self.enabled:
            task_status.started()
            return
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s), follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=MAX_MEDIA_FETCHES + MAX_PLAYLIST_FORWARDS, max_keepalive_connections=32),
            headers={"authorization": f"Bearer {distribution.node_token(self.node_key)}",
                     "accept-encoding": "identity", "user-agent": "sender-http pull-through"},
        )
        try:
            async with trio.open_nursery() as nursery:
                self.client, self._nursery = client, nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await client.aclose()

    # --- whose generation ----------------------------------------------------------------

    def upstream(self, stream_id: str, generation_id: str) -> Upstream | None:
        """The generation's upstream, when this worker may pull from it."""
        if not self.active:
            return None
        path = f"{self.root}/{stream_id}/{generation_id}/generation.json"
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (stream_id, generation_id)
        cached = self._generations.get(key)
        if cached is not None and cached[0] == file_key(st):
            return cached[1]
        try:
            with open(path, "rb") as f:
                upstream = upstream_of(json.loads(f.read()))
        except (OSError, ValueError):
            return None  # half a file cannot be (renames are atomic); unreadable: not followed, re-read next time
        if len(self._generations) >= MAX_GENERATIONS_CACHED:
            self._generations.clear()
        self._generations[key] = (file_key(st), upstream)
        return upstream

    # --- media files -----------------------------------------------------------------------

    async def media_file(self, upstream: Upstream, stream_id: str, generation_id: str, rendition: str,
                         filename: str, kind: str) -> CachedFile:
        """The file, fetched once from upstream and kept in the spool; PullFailed otherwise."""
        path = f"{self.root}/{stream_id}/{generation_id}/{rendition}/{filename}"
        flight = self._media.get(path)
        if flight is None:
            flight = self._media[path] = Flight()
            url = f"{upstream.base_url}/hls/{stream_id}/{generation_id}/{rendition}/{filename}"
            self._nursery.start_soon(self._fetch_media, path, url, kind, flight)
        else:
            self.counters.pull_coalesced += 1
        return await flight.answer()

    async def _fetch_media(self, path: str, url: str, kind: str, flight: Flight) -> None:
        try:
            async with self._media_slots:
                _, data = await self._get(url, kind, timeout_s=self.timeout_s)
            try:
                await trio.to_thread.run_sync(partial(atomic_write, path, data, make_dirs=True))
            except OSError as e:
                slog.log(log, logging.WARNING, "cannot keep a pulled file: served, not stored", path=path, error=e)
                flight.result = _in_memory(data)
            else:
                flight.result = self.files.get(path) or _in_memory(data)
        except PullFailed as e:
            flight.error = e
        except Exception as e:  # noqa: BLE001 - a bug here must not end the worker: the waiters get a 502
            slog.log(log, logging.ERROR, "pull-through failed", url=url, error=repr(e))
            flight.error = PullFailed(502, "the upstream fetch failed", "internal")
        finally:
            self._settle(flight, self._media, path)

    # --- playlists ---------------------------------------------------------------------------

    async def playlist(self, upstream: Upstream, stream_id: str, generation_id: str, rendition: str | None,
                       filename: str, query: dict[str, str]) -> ForwardedPlaylist:
        """The upstream's answer to this playlist request (directives only), never stored."""
        middle = f"/{rendition}" if rendition else ""
        directives = urlencode([(k, query[k]) for k in FORWARDED_DIRECTIVES if k in query])
        url = f"{upstream.base_url}/hls/{stream_id}/{generation_id}{middle}/{filename}" + (f"?{directives}" if directives else "")
        flight = self._playlists.get(url)
        if flight is None:
            flight = self._playlists[url] = Flight()
            kind = "playlist" if rendition else "master"
            self._nursery.start_soon(self._forward_playlist, url, kind, flight, "_HLS_msn" in query)
        else:
            self.counters.pull_coalesced += 1
        return await flight.answer()

    async def _forward_playlist(self, url: str, kind: str, flight: Flight, blocking: bool) -> None:
        timeout = self.timeout_s + (BLOCKING_RELOAD_EXTRA_S if blocking else 0)
        try:
            async with self._playlist_slots:
                headers, body = await self._get(url, kind, timeout_s=timeout, pass_400=True)
            flight.result = ForwardedPlaylist(
                headers.get("cache-control", "no-store").encode("latin-1"),
                headers["etag"].encode("latin-1") if "etag" in headers else None,
                headers["last-modified"].encode("latin-1") if "last-modified" in headers else None,
                body,
            )
        except PullFailed as e:
            flight.error = e
        except Exception as e:  # noqa: BLE001
            slog.log(log, logging.ERROR, "playlist forwarding failed", url=url, error=repr(e))
            flight.error = PullFailed(502, "the upstream fetch failed", "internal")
        finally:
            self._settle(flight, self._playlists, url)

    def _settle(self, flight: "Flight", in_flight: dict, key: str) -> None:
        """A fetch ended (answer, error or cancellation): wake everyone waiting on it."""
        if flight.result is None and flight.error is None:  # cancelled: the worker is stopping
            flight.error = PullFailed(503, "the server is stopping", "cancelled")
        if flight.error is not None:
            self.counters.pull_errors[flight.error.reason] += 1
        del in_flight[key]
        flight.done.set()

    # --- one upstream GET --------------------------------------------------------------------

    async def _get(self, url: str, kind: str, *, timeout_s: float, pass_400: bool = False) -> tuple[httpx.Headers, bytes]:
        self.counters.pull_fetches[kind] += 1
        with trio.move_on_after(timeout_s):
            try:
                async with self.client.stream("GET", url, timeout=timeout_s) as r:
                    if r.status_code == 404:
                        raise PullFailed(404, "no such file (yet), upstream either", "not_found")
                    if r.status_code == 400 and pass_400:
                        raise PullFailed(400, (await _short_body(r)) or "bad request", "bad_request")
                    if r.status_code != 200:
                        raise PullFailed(502, f"the upstream answered {r.status_code}", "upstream_status")
                    length = r.headers.get("content-length")
                    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
                        raise PullFailed(502, "the upstream's answer is too large", "too_large")
                    chunks, size = [], 0
                    async for chunk in r.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_BODY_BYTES:
                            raise PullFailed(502, "the upstream's answer is too large", "too_large")
                        chunks.append(chunk)
                    self.counters.pull_bytes += size
                    return r.headers, b"".join(chunks)
            except httpx.TimeoutException:
                raise PullFailed(504, "the upstream did not answer in time", "timeout") from None
            except httpx.HTTPError as e:
                raise PullFailed(502, f"the upstream is unreachable ({type(e).__name__})", "unreachable") from None
        raise PullFailed(504, "the upstream did not answer in time", "timeout")


async def _short_body(r: httpx.Response) -> str:
    data = b""
    async for chunk in r.aiter_bytes():
        data += chunk
        if len(data) > 500:
            break
    return data[:500].decode("utf-8", "replace").strip()


def _in_memory(data: bytes) -> CachedFile:
    """A fetched file that could not be kept: served from memory, with an etag of its content."""
    digest = hashlib.blake2b(data, digest_size=12).hexdigest()
    return CachedFile((0, 0, len(data)), data, f'"p-{digest}"'.encode(), formatdate(usegmt=True).encode())
