"""Writes a generation into a real spool the way the packager does, step by step, for HTTP tests.

Files are renamed into place, media before the playlist that lists it, and a spool-event
datagram follows each playlist change — the contract of docs/arch.md — so the HTTP daemon under
test sees exactly what it sees behind a real ingest daemon, at the pace a test chooses.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from daemons.media import hls
from daemons.runtime import spool_events
from daemons.runtime.spool_events import SpoolEventSender

PART_S = 0.25
SEGMENT_PARTS = 4  # 1 s segments, TARGETDURATION 1


def part_bytes(msn: int, part: int) -> bytes:
    return f"part {msn}.{part} ".encode() * 50


def segment_bytes(msn: int) -> bytes:
    return b"".join(part_bytes(msn, i) for i in range(SEGMENT_PARTS))


def _atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class GenerationWriter:
    spool_root: Path
    state_dir: Path
    stream_id: str
    generation_id: str = field(default_factory=lambda: f"gen_{secrets.token_hex(8)}")
    rendition: str = "source"
    segments: list[int] = field(default_factory=list)  # complete msns
    parts: int = 0  # parts of the open segment
    ended: bool = False
    window: int = 20

    def __post_init__(self) -> None:
        self.dir = self.spool_root / "streams" / self.stream_id / self.generation_id
        _atomic(self.dir / self.rendition / "init.mp4", b"init segment")
        _atomic(self.dir / "master.m3u8", hls.MasterPlaylist((hls.Variant(f"{self.rendition}/index.m3u8", 500_000, codecs="avc1.42c01e,mp4a.40.2"),)).render().encode())

    @property
    def next_msn(self) -> int:
        return self.segments[-1] + 1 if self.segments else 0

    def playlist(self) -> hls.MediaPlaylist:
        shown = self.segments[-self.window:]
        first = shown[0] if shown else self.next_msn
        near_edge = set(shown[-3:])
        segments = tuple(
            hls.Segment(msn, f"{msn}.m4s", SEGMENT_PARTS * PART_S, map_uri="init.mp4",
                        parts=tuple(hls.Part(f"{msn}.{i}.m4s", PART_S, independent=i == 0) for i in range(SEGMENT_PARTS)) if msn in near_edge else ())
            for msn in shown
        )
        partial = tuple(hls.Part(f"{self.next_msn}.{i}.m4s", PART_S, independent=i == 0) for i in range(self.parts))
        return hls.MediaPlaylist(
            target_duration=1, media_sequence=first, segments=segments, partial_parts=partial,
            next_map_uri="init.mp4" if partial else None, part_target=PART_S,
            server_control=hls.ServerControl(can_block_reload=True, part_hold_back=3 * PART_S, hold_back=3.0, can_skip_until=6.0),
            preload_hint=None if self.ended else f"{self.next_msn}.{self.parts}.m4s", ended=self.ended,
        )

    def _publish(self) -> None:
        _atomic(self.dir / self.rendition / "index.m3u8", self.playlist().render().encode())
        last = self.playlist().last_msn_part()
        if last is not None:
            events = SpoolEventSender(self.state_dir)  # lists the readers' sockets afresh
            try:
                events.send(spool_events.encode(f"{self.stream_id}/{self.generation_id}/{self.rendition}", *last))
            finally:
                events.close()

    def add_part(self) -> None:
        """The next part; the segment closes (and is written whole) after SEGMENT_PARTS parts."""
        msn, i = self.next_msn, self.parts
        _atomic(self.dir / self.rendition / f"{msn}.{i}.m4s", part_bytes(msn, i))
        self.parts += 1
        if self.parts == SEGMENT_PARTS:
            _atomic(self.dir / self.rendition / f"{msn}.m4s", segment_bytes(msn))
            self.segments.append(msn)
            self.parts = 0
        self._publish()

    def add_segments(self, n: int) -> None:
        for _ in range(n * SEGMENT_PARTS):
            self.add_part()

    def end(self) -> None:
        self.ended = True
        self._publish()

    def url(self, name: str = "index.m3u8", *, rendition: bool = True) -> str:
        middle = f"/{self.rendition}" if rendition else ""
        return f"/hls/{self.stream_id}/{self.generation_id}{middle}/{name}"
