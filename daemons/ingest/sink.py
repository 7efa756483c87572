"""The narrow interface between ingest and the media pipeline, and its first implementation.

Ingest hands a generation's audio/video to a `MediaSink`: one per accepted publish, opened on
publish and closed when the publisher leaves. It gets each media message as the RTMP connection
emitted it (`rtmp.AudioData`/`rtmp.VideoData`: the tag body and its decoded header). A sink that
cannot take a codec raises `UnsupportedMedia`, and the publish is refused. `FLVSpoolSink` writes
what it receives as an FLV file in the generation's spool directory (one file per publish,
numbered) when `rtmp.record` is on; `daemons.ingest.pipeline.BackendSink` feeds the media backend.

A sink whose publish may run in the media thread (daemons/ingest/media_thread.py) also has
`leasable` (whether it can take frames there now) and `take(media, now)`: `write` without trio,
called from that thread while the connection is leased.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import trio

from daemons.media import flv, rtmp

FLUSH_BYTES = 256 * 1024
FLUSH_INTERVAL_S = 0.1


class UnsupportedMedia(Exception):
    """What a publisher sends cannot be taken (a codec the media backend cannot package)."""


class MediaSink(Protocol):
    async def open(self) -> None: ...
    async def metadata(self, data: dict) -> None: ...
    async def write(self, media: rtmp.AudioData | rtmp.VideoData) -> None: ...
    async def aclose(self) -> None: ...


def generation_dir(spool_root: Path, stream_id: str, generation_id: str) -> Path:
    return Path(spool_root) / "streams" / stream_id / generation_id


class FLVSpoolSink:
    """Buffers tags and appends them to `<generation>/ingest/<n>.flv` from a worker thread (or
    from the media thread, while it holds the publish)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory) / "ingest"
        self.path: Path | None = None
        self._buffer = bytearray()
        self._last_flush = 0.0
        self._file = None
        self._lock = trio.Lock()

    async def open(self) -> None:
        def create() -> None:
            self.directory.mkdir(parents=True, exist_ok=True)
            n = len(list(self.directory.glob("*.flv")))
            self.path = self.directory / f"{n:04d}.flv"
            self._file = open(self.path, "xb")

        await trio.to_thread.run_sync(create)
        self._buffer += flv.flv_header()
        self._last_flush = trio.current_time()

    async def metadata(self, data: dict) -> None:
        self._buffer += flv.encode_script_tag(data)

    async def write(self, media: rtmp.AudioData | rtmp.VideoData) -> None:
        self._buffer += flv.encode_tag(media.tag_type, media.timestamp, media.payload)
        if len(self._buffer) >= FLUSH_BYTES or trio.current_time() - self._last_flush >= FLUSH_INTERVAL_S:
            await self._flush()

    leasable = True  # `take` needs nothing of trio: the media thread may call it

    def take(self, media: rtmp.AudioData | rtmp.VideoData, now: float) -> None:
        """`write` from the media thread (daemons/ingest/media_thread.py), which owns this sink
        while it holds the publish: the appends are written there, as its spool writes are."""
        self._buffer += flv.encode_tag(media.tag_type, media.timestamp, media.payload)
        if len(self._buffer) >= FLUSH_BYTES or now - self._last_flush >= FLUSH_INTERVAL_S:
            data, self._buffer = bytes(self._buffer), bytearray()
            self._last_flush = now
            if self._file is not None:
                self._file.write(data)
                self._file.flush()

    async def _flush(self) -> None:
        async with self._lock:
            data, self._buffer = bytes(self._buffer), bytearray()
            self._last_flush = trio.current_time()
            if data and self._file is not None:
                f = self._file
                await trio.to_thread.run_sync(lambda: (f.write(data), f.flush()))

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._flush()
            if self._file is not None:
                f, self._file = self._file, None
                await trio.to_thread.run_sync(f.close)
