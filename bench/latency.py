#!/usr/bin/env python3
"""Latency: Sender's LL-HLS (native and ffmpeg backends) vs nginx-rtmp's HLS — startup,
availability delay, player latency, CPU; and what a corrupt packet and a publisher drop do.

Issues 4 and 16. The servers: Sender's `sender daemon ingest` with `backend.kind = "native"`
(Sender writes the source rendition's CMAF from the RTMP packets itself) and with `"ffmpeg"` (an
ffmpeg remux per publish), both packaging LL-HLS; nginx with libnginx-mod-rtmp and the team's
peer config, HLS with 2 s fragments. For each frame rate asked (`--fps 30,15`: the cached
720p 3 Mbps clip encoded at that rate, 2 s GOP) and each server, one run does:

1. start the server on 127.0.0.1 and watch the directory its playlist will appear in (inotify);
2. publish the cached 720p30 3 Mbps clip (2 s GOP) with the real-time RTMP publisher below,
   which paces FLV tags by their timestamps against the wall clock (like `ffmpeg -re`) and records
   when each video frame was sent;
3. startup = publisher start (TCP connect) → first playable playlist (Sender: the rendition's
   `index.m3u8` listing a part or segment; nginx: `<name>.m3u8` listing a segment);
4. after a warm-up, over `--seconds`: every part (Sender) and segment (both) first listed in a
   playlist version → its media end time (segment start + cumulated part/EXTINF durations, media
   time 0 = the first video frame, where both servers start) → its last video frame → availability
   delay = first listed − that frame's send time; the server's CPU (its process tree: Sender's
   daemon + its ffmpeg remux, if any; nginx's master + worker + cache manager) from /proc;
5. player latency estimate = availability delay + PART-HOLD-BACK (Sender, LL-HLS; read from the
   playlist) or + HOLD-BACK (3 × TARGETDURATION when the playlist has none: nginx).

Then, to see where Sender's part delay goes: the part files' rename times (from the same inotify
watch) against the playlist's, and a standalone run of the exact ffmpeg command Sender's daemon
ran (read from /proc), fed the same paced FLV on stdin, timing each video frame's fragment on stdout.

With `--faults`, one more run per server (30 fps): the publisher sends one corrupt video packet
(a P-frame whose first NAL unit length is made too long), then its connection is cut mid-GOP
and it publishes again a second later from the clip's start (timestamps from 0, as a
reconnecting encoder does); what each server did is read from its output: whether the publish
survived the packet, discontinuities, media listed vs sent, decoder errors in the listed media
(ffmpeg decodes every listed segment), and how long until new media was listed again.

Run from the checkout:  .venv/bin/python bench/latency.py [--seconds 60] [--fps 30,15] [--faults] [--json]
Needs: apt-get install nginx libnginx-mod-rtmp ffmpeg
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(BENCH_DIR.parent))  # daemons.media: Sender's sans-IO media library, used as a library

from harness import (  # noqa: E402
    finish_report,
    IN_CLOSE_WRITE,
    IN_MOVED_TO,
    NGINX_RTMP_MODULE,
    Inotify,
    SetupError,
    SourceClip,
    Window,
    descendants,
    distribution,
    export_revision,
    machine_facts,
    process_cmdline,
    process_name,
    require_tools,
    sender_cli,
    snapshot_worktree,
    tail,
    wait_until,
)
from servers import NginxRtmp, SenderIngest  # noqa: E402

from daemons.media import flv, hls  # noqa: E402
from daemons.media.fmp4 import FMP4Error, FMP4Reader, InitSegment  # noqa: E402
from daemons.media import amf0  # noqa: E402

# Issue 16's goals for the native backend (issue 4's: startup <= 1.0 s, part delay p95 <= 100 ms,
# player latency <= 1.0 s, CPU <= 3 % per stream).
GOAL_STARTUP_S = 1.0
GOAL_PART_DELAY_P95_MS = 10.0  # at every frame rate measured
GOAL_PLAYER_LATENCY_S = 1.0
GOAL_CPU_PCT_PER_STREAM = 2.0
GOAL_SERVER = "native"

# Sender with each media backend (and "sender": as the revision's config has it), and the peer.
SERVERS = ("native", "ffmpeg", "sender", "nginx")
LABELS = {"native": "Sender (native)", "ffmpeg": "Sender (ffmpeg)", "sender": SenderIngest.label, "nginx": NginxRtmp.label}
BACKENDS = {"native": "native", "ffmpeg": "ffmpeg"}
STARTUP_TIMEOUT_S = 20.0
TAIL_S = 5.0  # after the window: segments whose last frame was sent near its end get listed (≤ 2 s GOP + delay)
BUSY_MACHINE_PCT = 50.0
MAPPING_TOLERANCE_MS = 5.0  # a listed end time further than this from a frame boundary is flagged
CHUNK_SIZE = 65536
CSID_MEDIA, CSID_DATA = 4, 5
MESSAGE_STREAM = 1


def log(message: str) -> None:
    print(f"[latency] {message}", file=sys.stderr, flush=True)


# --- the clip, ready to loop ------------------------------------------------------------------


@dataclass
class Clip:
    """The cached FLV split into what a publisher sends once (metadata, sequence headers) and media."""

    metadata: dict
    headers: list[flv.FLVTag]
    media: list[flv.FLVTag]  # one loop: audio + video media tags in timestamp order, video from 0
    loop_ms: int  # the next loop's timestamps are offset by this: the video cadence runs on unbroken
    frame_ms: float


def load_clip(path: Path) -> Clip:
    metadata: dict = {}
    headers, media = [], []
    for tag in flv.FLVReader().feed(path.read_bytes()):
        if tag.type == flv.TAG_SCRIPT:
            name, value = flv.parse_script_tag(tag.body)
            if name == "onMetaData" and isinstance(value, dict):
                metadata = dict(value)
        elif tag.type == flv.TAG_VIDEO:
            info = flv.parse_video_tag(tag.body)
            if info.is_sequence_header:
                headers.append(tag)
            elif info.packet_type != 2:  # not the AVC end-of-sequence tag at the end of the file
                media.append(tag)
        elif flv.parse_audio_tag(tag.body).is_sequence_header:
            headers.append(tag)
        else:
            media.append(tag)
    video = [t for t in media if t.type == flv.TAG_VIDEO]
    if len(video) < 2 or not flv.parse_video_tag(video[0].body).is_keyframe or video[0].timestamp != 0:
        raise SetupError(f"{path}: expected video that starts with a keyframe at timestamp 0")
    frame_ms = (video[-1].timestamp - video[0].timestamp) / (len(video) - 1)
    loop_ms = round(video[-1].timestamp + frame_ms)
    # Audio past the last video frame would overlap the next loop's first audio: leave it out.
    media = sorted((t for t in media if t.timestamp < loop_ms), key=lambda t: t.timestamp)
    metadata.update({"duration": 0.0, "filesize": 0.0})  # a live publisher's metadata
    return Clip(metadata, headers, media, loop_ms, frame_ms)


@dataclass
class SentTag:
    type: int
    ts: int  # ms, cumulated over loops; the first video frame is 0
    keyframe: bool
    due: float  # monotonic time it was scheduled for
    sent: float  # monotonic time the send call returned (TCP_NODELAY: the bytes are on their way)


def pace(clip: Clip, write: Callable[[int, int, bytes], None], stop: threading.Event, max_media_s: float,
         record: list[SentTag]) -> float:
    """Send the clip's media in real time, looping, until `stop` or `max_media_s`; returns the start time."""
    t0 = time.monotonic()
    loop = 0
    while True:
        for tag in clip.media:
            ts = tag.timestamp + loop * clip.loop_ms
            if stop.is_set() or ts / 1000 > max_media_s:
                return t0
            due = t0 + ts / 1000
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            write(tag.type, ts, tag.body)
            keyframe = tag.type == flv.TAG_VIDEO and flv.parse_video_tag(tag.body).is_keyframe
            record.append(SentTag(tag.type, ts, keyframe, due, time.monotonic()))
        loop += 1


# --- a real-time RTMP publisher ---------------------------------------------------------------


def rtmp_message(csid: int, type_id: int, payload: bytes, *, stream_id: int = 0, timestamp: int = 0) -> bytes:
    """One message: a fmt-0 chunk, then fmt-3 continuation chunks past CHUNK_SIZE (Set Chunk Size is sent first)."""
    if not (2 <= csid < 64) or not (0 <= timestamp < 0xFFFFFF):
        raise ValueError("csid 2..63 and timestamps below 0xFFFFFF only")
    out = bytearray(bytes([csid]) + timestamp.to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes([type_id])
                    + struct.pack("<I", stream_id))
    out += payload[:CHUNK_SIZE]
    for offset in range(CHUNK_SIZE, len(payload), CHUNK_SIZE):
        out += bytes([0xC0 | csid]) + payload[offset:offset + CHUNK_SIZE]
    return bytes(out)


def rtmp_command(name: str, txn: float, *args, stream_id: int = 0, csid: int = 3) -> bytes:
    return rtmp_message(csid, 20, amf0.encode_values(name, txn, *args), stream_id=stream_id)


PUBLISH_CODES = (b"NetStream.Publish.Start", b"NetStream.Publish.BadName", b"NetStream.Publish.Denied",
                 b"NetStream.Publish.Failed")


class RtmpPublisher:
    """Publishes a Clip in real time over RTMP (simple handshake, connect/createStream/publish, then
    @setDataFrame, the sequence headers and the media, each message one chunk on csid 4/5) and
    records every media tag's send time. The approach of tests/daemons/rtmp_probe.py, with threads."""

    def __init__(self, url: str, clip: Clip):
        u = urlparse(url)
        app, _, name = u.path.lstrip("/").partition("/")
        self.host, self.port, self.app, self.name = u.hostname or "127.0.0.1", u.port or 1935, app, name
        self.clip = clip
        self.sent: list[SentTag] = []
        self.t_connect: float | None = None  # publisher start: the TCP connect begins
        self.t_accepted: float | None = None  # onStatus NetStream.Publish.Start received
        self.t_media0: float | None = None  # media timestamp 0 sent
        self.error: str | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self, max_media_s: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(max_media_s,), name="rtmp-publisher", daemon=True)
        self._thread.start()

    def _run(self, max_media_s: float) -> None:
        try:
            self.t_connect = time.monotonic()
            sock = self._sock = socket.create_connection((self.host, self.port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._handshake(sock)
            self._publish(sock)
            self.t_accepted = time.monotonic()
            sock.settimeout(None)
            threading.Thread(target=self._drain, args=(sock,), name="rtmp-drain", daemon=True).start()
            meta = amf0.encode_values("@setDataFrame", "onMetaData", amf0.ECMAArray(self.clip.metadata))
            sock.sendall(rtmp_message(CSID_DATA, flv.TAG_SCRIPT, meta, stream_id=MESSAGE_STREAM)
                         + b"".join(rtmp_message(CSID_MEDIA, t.type, t.body, stream_id=MESSAGE_STREAM) for t in self.clip.headers))

            def write(tag_type: int, ts: int, body: bytes) -> None:
                sock.sendall(rtmp_message(CSID_MEDIA, tag_type, body, stream_id=MESSAGE_STREAM, timestamp=ts))

            self.t_media0 = time.monotonic()
            pace(self.clip, write, self._stop, max_media_s, self.sent)
        except (OSError, EOFError, ValueError) as e:
            if not self._stop.is_set():
                self.error = f"RTMP publisher to {self.host}:{self.port}/{self.app}: {e or type(e).__name__}"
        finally:
            self.done.set()

    def _handshake(self, sock: socket.socket) -> None:
        sock.sendall(b"\x03" + bytes(8) + os.urandom(1528))  # C0 + C1 (time 0, zero: the simple handshake)
        got = bytearray()
        while len(got) < 1 + 1536 + 1536:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection during the handshake")
            got += chunk
        sock.sendall(bytes(got[1:1 + 1536]))  # C2 echoes S1

    def _publish(self, sock: socket.socket) -> None:
        tc_url = f"rtmp://{self.host}:{self.port}/{self.app}"
        sock.sendall(
            rtmp_message(2, 1, struct.pack(">I", CHUNK_SIZE))  # Set Chunk Size
            + rtmp_command("connect", 1, {"app": self.app, "type": "nonprivate", "flashVer": "FMLE/3.0", "tcUrl": tc_url})
            + rtmp_command("releaseStream", 2, None, self.name)
            + rtmp_command("FCPublish", 3, None, self.name)
            + rtmp_command("createStream", 4, None)
            + rtmp_command("publish", 5, None, self.name, "live", stream_id=MESSAGE_STREAM, csid=CSID_MEDIA)
        )
        received = bytearray()
        while True:
            at = received.find(b"onStatus")  # onFCPublish carries a code too; only onStatus answers publish
            if at >= 0:
                for code in PUBLISH_CODES:
                    if code in received[at:]:
                        if code != PUBLISH_CODES[0]:
                            raise EOFError(f"publish refused: {code.decode()}")
                        return
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection before answering publish")
            received += chunk

    def _drain(self, sock: socket.socket) -> None:
        """Read (and drop) what the server sends: acknowledgements, pings; notice a close."""
        try:
            while sock.recv(65536):
                pass
            if not self._stop.is_set() and not self.done.is_set():
                self.error = "the server closed the RTMP connection"
        except OSError:
            pass

    def video(self) -> list[SentTag]:
        return [t for t in self.sent if t.type == flv.TAG_VIDEO]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()


# --- watching a rendition directory -----------------------------------------------------------


class PlaylistWatcher(threading.Thread):
    """Records when each version of a playlist, and each media file, appeared in one directory.

    `find_dir` is polled (every 2 ms) until it names the directory; from then on inotify reports
    renames into place (Sender: every file; nginx: the playlist) and closes after writing (nginx's
    .ts fragments). Each playlist version is read at once and kept with the time it appeared.
    """

    def __init__(self, find_dir: Callable[[], Path | None], playlist_name: str):
        super().__init__(name="playlist-watcher", daemon=True)
        self.find_dir = find_dir
        self.playlist_name = playlist_name
        self.dir: Path | None = None
        self.versions: list[tuple[float, str]] = []
        self.files: dict[str, float] = {}
        self.first_listing: float | None = None  # the first version that lists a part or a segment
        self.missed_start = False  # the playlist was already there when the watch began
        self.error: str | None = None
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        ino = Inotify()
        try:
            while not self.stopping.is_set():
                d = self.find_dir()
                if d is not None and d.is_dir():
                    break
                time.sleep(0.002)
            else:
                return
            ino.watch(d, IN_MOVED_TO | IN_CLOSE_WRITE)
            self.dir = d
            self.ready.set()
            if (d / self.playlist_name).exists():
                self.missed_start = True
                self._read(time.monotonic())
            while not self.stopping.is_set():
                at, events = ino.read(0.05)
                playlist = False
                for _, _, name in events:
                    if name == self.playlist_name:
                        playlist = True
                    elif name and not name.startswith(".") and not name.endswith((".tmp", ".bak")):
                        self.files.setdefault(name, at)
                if playlist:
                    self._read(at)
        except Exception as e:  # noqa: BLE001 - reported by the run, which stops
            self.error = f"playlist watcher: {type(e).__name__}: {e}"
        finally:
            ino.close()
            self.ready.set()

    def _read(self, at: float) -> None:
        try:
            text = (self.dir / self.playlist_name).read_text()
        except FileNotFoundError:
            return
        if self.versions and self.versions[-1][1] == text:
            return
        self.versions.append((at, text))
        if self.first_listing is None and ("#EXTINF" in text or "#EXT-X-PART:" in text):
            self.first_listing = at

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def sender_rendition_dir(streams: Path) -> Callable[[], Path | None]:
    """The first rendition directory of the (only) generation: generation.json names the renditions."""

    def find() -> Path | None:
        for gen in streams.glob("*/*/generation.json"):
            try:
                renditions = json.loads(gen.read_text())["renditions"]
            except (OSError, ValueError, KeyError):
                continue
            if renditions:
                return gen.parent / renditions[0]
        return None

    return find


# --- from playlists to availability delays ----------------------------------------------------


@dataclass
class Listed:
    """A part or segment, when it was first listed, and what it covers."""

    kind: str  # "part" | "segment"
    name: str  # its URI
    end_ms: float  # media end (ms from the first video frame)
    seen: float  # monotonic time of the playlist version that first listed it
    file_seen: float | None = None  # when its file was renamed into place / closed


@dataclass
class PlaylistFacts:
    target_duration: int | None = None
    part_target: float | None = None
    part_hold_back: float | None = None
    hold_back: float | None = None
    discontinuities: int = 0
    versions: int = 0
    first_listing_items: int = 0  # parts + segments in the first version that lists any


def sender_listings(versions: list[tuple[float, str]], files: dict[str, float]) -> tuple[list[Listed], PlaylistFacts]:
    """Sender's LL-HLS playlist versions → parts and segments with their media end times.

    A segment starts where the previous one ended (the first at media time 0: the packager starts
    at the publisher's first keyframe); a part ends at its segment's start plus the durations of the
    segment's parts up to and including it.
    """
    facts = PlaylistFacts(versions=len(versions))
    seg_duration: dict[int, float] = {}
    seg_uri: dict[int, str] = {}
    seg_seen: dict[int, float] = {}
    part_duration: dict[tuple[int, int], float] = {}
    part_uri: dict[tuple[int, int], str] = {}
    part_seen: dict[tuple[int, int], float] = {}
    first_msn = None
    for at, text in versions:
        pl = hls.parse_media_playlist(text)
        if first_msn is None and (pl.segments or pl.partial_parts):
            first_msn = pl.media_sequence
            facts.first_listing_items = len(pl.segments) + len(pl.partial_parts) + sum(len(s.parts) for s in pl.segments)
        facts.target_duration, facts.part_target = pl.target_duration, pl.part_target
        if pl.server_control is not None:
            facts.part_hold_back, facts.hold_back = pl.server_control.part_hold_back, pl.server_control.hold_back
        for seg in pl.segments:
            if seg.msn not in seg_seen:
                seg_seen[seg.msn], seg_duration[seg.msn], seg_uri[seg.msn] = at, seg.duration, seg.uri
                facts.discontinuities += seg.discontinuity
            for i, part in enumerate(seg.parts):
                if (seg.msn, i) not in part_seen:
                    part_seen[(seg.msn, i)], part_duration[(seg.msn, i)], part_uri[(seg.msn, i)] = at, part.duration, part.uri
        for i, part in enumerate(pl.partial_parts):
            if (pl.next_msn, i) not in part_seen:
                part_seen[(pl.next_msn, i)], part_duration[(pl.next_msn, i)], part_uri[(pl.next_msn, i)] = at, part.duration, part.uri
    if first_msn is None:
        return [], facts
    start = {first_msn: 0.0}
    msn = first_msn
    while msn in seg_duration:
        start[msn + 1] = start[msn] + seg_duration[msn] * 1000
        msn += 1
    out = []
    for msn, d in seg_duration.items():
        if msn in start:
            out.append(Listed("segment", seg_uri[msn], start[msn] + d * 1000, seg_seen[msn], files.get(seg_uri[msn])))
    for (msn, i), seen in part_seen.items():
        if msn not in start or any((msn, k) not in part_duration for k in range(i)):
            continue
        end = start[msn] + 1000 * sum(part_duration[(msn, k)] for k in range(i + 1))
        out.append(Listed("part", part_uri[(msn, i)], end, seen, files.get(part_uri[(msn, i)])))
    return out, facts


_EXTINF = re.compile(r"#EXTINF:\s*([0-9.]+)")


def simple_listings(versions: list[tuple[float, str]], files: dict[str, float]) -> tuple[list[Listed], PlaylistFacts]:
    """A plain HLS playlist (nginx-rtmp's) → segments: EXTINF durations cumulated from its first segment."""
    facts = PlaylistFacts(versions=len(versions))
    durations: dict[int, float] = {}
    uris: dict[int, str] = {}
    seen: dict[int, float] = {}
    first_msn = None
    for at, text in versions:
        media_sequence, pending, index, discontinuity = 0, None, 0, False
        found = []
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
                media_sequence = int(line.split(":", 1)[1])
            elif line.startswith("#EXT-X-TARGETDURATION:"):
                facts.target_duration = int(line.split(":", 1)[1])
            elif line == "#EXT-X-DISCONTINUITY":
                discontinuity = True
            elif (m := _EXTINF.match(line)):
                pending = float(m.group(1))
            elif line and not line.startswith("#") and pending is not None:
                found.append((media_sequence + index, pending, line, discontinuity))
                index, pending, discontinuity = index + 1, None, False
        if first_msn is None and found:
            first_msn = found[0][0]
            facts.first_listing_items = len(found)
        for msn, d, uri, disc in found:
            if msn not in seen:
                seen[msn], durations[msn], uris[msn] = at, d, uri
                facts.discontinuities += disc
    if first_msn is None:
        return [], facts
    out, end, msn = [], 0.0, first_msn
    while msn in durations:
        end += durations[msn] * 1000
        out.append(Listed("segment", uris[msn], end, seen[msn], files.get(uris[msn])))
        msn += 1
    return out, facts


def delays(listed: list[Listed], video: list[SentTag], frame_ms: float, window: tuple[float, float]) -> dict:
    """Availability delay of each item whose last frame was sent within `window`.

    The item's last frame is the one before the frame that starts at (nearest to) its end time;
    how far that frame boundary is from the listed end is kept as a check of the mapping.
    """
    ts = [t.ts for t in video]
    out: dict[str, dict] = {}
    for kind in ("part", "segment"):
        delay_ms, file_ms, after_file_ms, residuals, items = [], [], [], [], []
        for item in (x for x in listed if x.kind == kind):
            j = bisect.bisect_left(ts, item.end_ms)
            bounds = [(k, ts[k] if k < len(ts) else ts[-1] + frame_ms) for k in (j - 1, j) if 0 <= k <= len(ts)]
            nxt, boundary = min(bounds, key=lambda kb: abs(kb[1] - item.end_ms))
            last = nxt - 1
            if last < 0:
                continue
            sent = video[last].sent
            if not (window[0] <= sent <= window[1]):
                continue
            residuals.append(boundary - item.end_ms)
            delay_ms.append((item.seen - sent) * 1000)
            items.append({"name": item.name, "end_ms": round(item.end_ms, 2), "last_frame_ts": video[last].ts,
                          "delay_ms": round(delay_ms[-1], 2)})
            if item.file_seen is not None:
                file_ms.append((item.file_seen - sent) * 1000)
                after_file_ms.append((item.seen - item.file_seen) * 1000)
        out[kind] = {
            "delay_ms": distribution(delay_ms),
            "file_written_after_last_frame_ms": distribution(file_ms),
            "listed_after_file_ms": distribution(after_file_ms),
            "mapping_residual_ms_max": max((abs(r) for r in residuals), default=None),
            "mapping_off_by_more_than_tolerance": sum(abs(r) > MAPPING_TOLERANCE_MS for r in residuals),
            "items": items,  # each one: its URI, media end, last frame's timestamp, delay
        }
    return out


# --- one server -------------------------------------------------------------------------------


def ffmpeg_children(root_pid: int) -> list[list[str]]:
    return [process_cmdline(pid) for pid in descendants(root_pid) if pid != root_pid and process_name(pid) == "ffmpeg"]


def make_server(server_name: str, root: Path, tools: dict, sender_source: Path | None, publishers: int = 1):
    """The server, set up for `publishers`: Sender with the backend asked for (thumbnails off: a
    separate feature with an ffmpeg of its own every few seconds; left at the revision's default
    where it has no such key), or nginx-rtmp."""
    if server_name == "nginx":
        server = NginxRtmp(root / "server", tools["nginx"], NGINX_RTMP_MODULE)
        server.setup(publishers)
        return server
    server = SenderIngest(root / "server", sender_cli(), sender_source)
    server.name, server.label = server_name, LABELS[server_name]
    server.setup(publishers)
    if server_name in BACKENDS:
        server._cli("config", "set", "backend.kind", BACKENDS[server_name])
    try:
        server._cli("config", "set", "thumbnails.enabled", "false")
    except SetupError:
        pass  # a revision before thumbnails
    return server


def measure(server_name: str, root: Path, tools: dict, clip: Clip, args: argparse.Namespace,
            sender_source: Path | None, fps: int = 30) -> dict:
    root.mkdir(parents=True)
    server = make_server(server_name, root, tools, sender_source)
    log(f"{server.label} at {fps} fps: set up in {root}")
    is_sender = server_name != "nginx"
    publisher = watcher = None
    exit_code = None
    ffmpeg_cmds: list[list[str]] = []
    try:
        server.start()
        if is_sender:
            watcher = PlaylistWatcher(sender_rendition_dir(server.spool_streams), "index.m3u8")
        else:
            playlist = server.playlist(server.names[0])
            watcher = PlaylistWatcher(lambda: playlist.parent, playlist.name)
        watcher.start()
        if server_name == "nginx":
            watcher.ready.wait(5)
        publisher = RtmpPublisher(server.urls()[0], clip)

        def problem() -> str | None:
            return server.problem() or publisher.error or watcher.error or (
                "the publisher stopped" if publisher.done.is_set() else None)

        def check() -> None:
            if (p := problem()):
                raise SetupError(f"{server.label}: {p}")

        publisher.start(max_media_s=args.warmup + args.seconds + TAIL_S + 10)
        wait_until(lambda: publisher.t_accepted, STARTUP_TIMEOUT_S, f"{server.label} to accept the publisher",
                   interval_s=0.005, alive=problem)
        wait_until(lambda: watcher.first_listing, STARTUP_TIMEOUT_S, f"{server.label}'s first playable playlist",
                   interval_s=0.005, alive=problem)
        startup = watcher.first_listing - publisher.t_connect
        log(f"{server.label}: publisher accepted after {publisher.t_accepted - publisher.t_connect:.3f} s, "
            f"first playable playlist after {startup:.3f} s")
        if is_sender:
            ffmpeg_cmds = ffmpeg_children(server.pid)
        time.sleep(max(0.0, publisher.t_media0 + args.warmup - time.monotonic()))
        check()
        window = Window(server.pid, other_pids=lambda: [os.getpid()])
        window.begin()
        w0 = time.monotonic()
        window.run_for(args.seconds, check=check)
        cpu = window.end()
        w1 = time.monotonic()
        time.sleep(TAIL_S)
        check()
    finally:
        if publisher is not None:
            publisher.stop()
        if watcher is not None:
            watcher.stop()
        exit_code = server.stop()

    video = publisher.video()
    lateness = [(t.sent - t.due) * 1000 for t in publisher.sent]
    if is_sender:
        listed, facts = sender_listings(watcher.versions, watcher.files)
        ffmpeg_warnings = sum("ffmpeg:" in line for line in server.log.read_text(errors="replace").splitlines())
    else:
        listed, facts = simple_listings(watcher.versions, watcher.files)
        ffmpeg_warnings = None
    figures = delays(listed, video, clip.frame_ms, (w0, w1))
    # Player latency estimates: LL-HLS players hold PART-HOLD-BACK behind the live edge, others HOLD-BACK
    # (3 × TARGETDURATION when the playlist does not say).
    hold_back = facts.hold_back if facts.hold_back is not None else 3 * (facts.target_duration or 0)
    estimates = {}
    if facts.part_hold_back is not None and figures["part"]["delay_ms"]["n"]:
        estimates["ll_hls"] = {q: figures["part"]["delay_ms"][q] / 1000 + facts.part_hold_back for q in ("median", "p95")}
    if figures["segment"]["delay_ms"]["n"]:
        estimates["hls"] = {q: figures["segment"]["delay_ms"][q] / 1000 + hold_back for q in ("median", "p95")}
    result = {
        "server": server_name,
        "label": server.label,
        "fps": fps,
        "startup_s": startup,
        "startup_detail": {
            "publish_accepted_s": publisher.t_accepted - publisher.t_connect,
            "first_media_sent_s": publisher.t_media0 - publisher.t_connect,
            "first_playlist_after_first_media_s": watcher.first_listing - publisher.t_media0,
            "items_in_first_playlist": facts.first_listing_items,
            "first_playlist_seen_by_polling": watcher.missed_start,
        },
        "window_s": w1 - w0,
        "parts": figures["part"],
        "segments": figures["segment"],
        "playlist": {
            "target_duration": facts.target_duration, "part_target": facts.part_target,
            "part_hold_back": facts.part_hold_back, "hold_back": facts.hold_back, "hold_back_used": hold_back,
            "versions": facts.versions, "discontinuities": facts.discontinuities,
        },
        "player_latency_estimate_s": estimates,
        "cpu": cpu,
        "cpu_pct_per_stream": cpu["cpu_pct_of_core"],
        "publisher": {
            "video_frames_sent": len(video),
            "media_seconds_sent": (publisher.sent[-1].ts / 1000) if publisher.sent else 0,
            "lateness_ms": distribution(lateness),
        },
        "ffmpeg_commands": [" ".join(c) for c in ffmpeg_cmds],
        "ffmpeg_warnings_logged_per_s": (ffmpeg_warnings / (publisher.sent[-1].ts / 1000)) if ffmpeg_warnings is not None and publisher.sent else None,
        "exit_code": exit_code,
        "_ffmpeg_argv": ffmpeg_cmds[0] if ffmpeg_cmds else None,
    }
    p, s = result["parts"]["delay_ms"], result["segments"]["delay_ms"]
    log(f"{server.label} at {fps} fps: {p['n']} parts (delay median {fmt(p['median'])} ms, p95 {fmt(p['p95'])} ms), "
        f"{s['n']} segments (median {fmt(s['median'])} ms, p95 {fmt(s['p95'])} ms), CPU {cpu['cpu_pct_of_core']:.2f} % of a core, "
        f"exit code {exit_code}")
    return result


# --- faults: a corrupt packet, a publisher drop ------------------------------------------------

FAULT_CORRUPT_AT_MS = 5500  # the corrupt packet: the first P-frame at or after this media time (third GOP)
FAULT_DROP_AT_S = 9.3  # the connection is cut here (mid-GOP), without an unpublish
FAULT_GONE_S = 1.0  # the publisher comes back this long after
FAULT_SECOND_S = 8.0  # and publishes this much of the clip again, from its start
FAULT_TAIL_S = 4.0


def corrupted(clip: Clip, at_ms: int) -> tuple[Clip, int]:
    """The clip with one P-frame's first NAL unit length made longer than the frame (as a broken
    encoder or a bit error before the RTMP layer would): its NAL units no longer fill it."""
    media = list(clip.media)
    for i, tag in enumerate(media):
        if tag.type == flv.TAG_VIDEO and tag.timestamp >= at_ms and tag.body[0] >> 4 == 2 and tag.body[1] == 1:
            body = bytearray(tag.body)
            body[5:9] = (len(body) * 4).to_bytes(4, "big")
            media[i] = flv.FLVTag(tag.type, tag.timestamp, bytes(body))
            return Clip(clip.metadata, clip.headers, media, clip.loop_ms, clip.frame_ms), tag.timestamp
    raise SetupError(f"no P-frame after {at_ms} ms in the clip")


class SegmentKeeper(threading.Thread):
    """Copies each media segment (and Sender's init segments) the moment a playlist version lists
    it, before retention can delete it, for decoding afterwards."""

    def __init__(self, watcher: PlaylistWatcher, dest: Path):
        super().__init__(name="segment-keeper", daemon=True)
        self.watcher, self.dest = watcher, dest
        self.kept: dict[str, tuple[float, Path, str | None]] = {}  # uri → (first listed, copy, its init's copy)
        self.stopping = threading.Event()

    def run(self) -> None:
        self.dest.mkdir(parents=True, exist_ok=True)
        seen = 0
        while not self.stopping.wait(0.05):
            versions = self.watcher.versions[seen:]
            seen += len(versions)
            for at, text in versions:
                init = None
                for line in text.splitlines():
                    if line.startswith("#EXT-X-MAP:"):
                        init = line.split('URI="', 1)[1].split('"', 1)[0]
                        self._copy(init)
                    elif line and not line.startswith("#") and line not in self.kept:
                        if (copy := self._copy(line)) is not None:
                            self.kept[line] = (at, copy, init)

    def _copy(self, name: str) -> Path | None:
        target = self.dest / name
        if target.exists():
            return target
        try:
            shutil.copyfile(self.watcher.dir / name, target)
        except OSError:
            return None
        return target

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def decode_errors(ffmpeg: str, segment: Path, init: Path | None) -> int:
    """Error lines ffmpeg prints decoding one segment (with its init segment for fMP4)."""
    data = (init.read_bytes() if init is not None else b"") + segment.read_bytes()
    out = subprocess.run([ffmpeg, "-hide_banner", "-v", "error", "-i", "pipe:0", "-f", "null", "-"], input=data,
                         capture_output=True, timeout=60)
    return sum(1 for line in out.stderr.decode(errors="replace").splitlines() if line.strip())


def faults(server_name: str, root: Path, tools: dict, clip: Clip, sender_source: Path | None) -> dict:
    """One publish with a corrupt packet, cut mid-GOP, and a second publish a second later (see
    the module docstring); what the server made of it, from its playlists and its log."""
    root.mkdir(parents=True)
    server = make_server(server_name, root, tools, sender_source)
    is_sender = server_name != "nginx"
    log(f"{server.label}: faults run in {root}")
    bad_clip, bad_ts = corrupted(clip, FAULT_CORRUPT_AT_MS)
    first = second = watcher = keeper = None
    try:
        server.start()
        if is_sender:
            watcher = PlaylistWatcher(sender_rendition_dir(server.spool_streams), "index.m3u8")
        else:
            playlist = server.playlist(server.names[0])
            watcher = PlaylistWatcher(lambda: playlist.parent, playlist.name)
        watcher.start()
        first = RtmpPublisher(server.urls()[0], bad_clip)
        first.start(max_media_s=FAULT_DROP_AT_S)
        wait_until(lambda: watcher.ready.is_set() and watcher.dir, STARTUP_TIMEOUT_S, f"{server.label}'s playlist directory",
                   alive=server.problem)
        keeper = SegmentKeeper(watcher, root / "kept")
        keeper.start()
        wait_until(first.done.is_set, FAULT_DROP_AT_S + 20, f"{server.label}: the first publish", alive=server.problem)
        survived = first.error is None
        first.stop()  # the connection is cut: no FCUnpublish, no deleteStream
        t_drop = time.monotonic()
        time.sleep(FAULT_GONE_S)
        second = RtmpPublisher(server.urls()[0], clip)
        second.start(max_media_s=FAULT_SECOND_S)
        wait_until(second.done.is_set, FAULT_SECOND_S + 20, f"{server.label}: the second publish", alive=server.problem)
        second_error = second.error
        time.sleep(FAULT_TAIL_S)
    finally:
        for x in (second, first, keeper, watcher):
            if x is not None:
                x.stop()
        exit_code = server.stop()
    bad_sent = next(t.sent for t in first.sent if t.type == flv.TAG_VIDEO and t.ts == bad_ts)
    listed, facts = (sender_listings if is_sender else simple_listings)(watcher.versions, watcher.files)
    # Listings (parts and segments) by when they appeared: the longest wait for new media after the
    # corrupt packet, before the drop; the first after the publisher came back.
    seen = sorted(x.seen for x in listed)
    around = [t for t in seen if bad_sent - 1.0 <= t <= t_drop]
    longest_gap = max((b - a for a, b in zip(around, around[1:]) if b > bad_sent), default=None)
    resumed = next((t for t in seen if t > second.t_connect), None)
    # Media sent vs listed, per publish (a segment first listed before the second publish began is
    # the first one's).
    segments = sorted((x for x in listed if x.kind == "segment"), key=lambda x: x.seen)
    durations = {}
    for at, text in watcher.versions:
        pl = hls.parse_media_playlist(text) if is_sender else None
        if pl is not None:
            durations.update({seg.uri: seg.duration for seg in pl.segments})
        else:
            pending = None
            for line in text.splitlines():
                if (m := _EXTINF.match(line.strip())):
                    pending = float(m.group(1))
                elif line.strip() and not line.startswith("#") and pending is not None:
                    durations[line.strip()] = pending
                    pending = None
    first_listed = sum(durations.get(x.name, 0) for x in segments if x.seen < second.t_connect)
    second_listed = sum(durations.get(x.name, 0) for x in segments if x.seen >= second.t_connect)
    first_sent = (first.video()[-1].ts + clip.frame_ms) / 1000 if first.video() else 0
    second_sent = (second.video()[-1].ts + clip.frame_ms) / 1000 if second.video() else 0
    errors_first = errors_second = 0
    for uri, (at, copy, init) in keeper.kept.items():
        init_copy = keeper.dest / init if init else None
        n = decode_errors(tools["ffmpeg"], copy, init_copy if init_copy and init_copy.exists() else None)
        if at < second.t_connect:
            errors_first += n
        else:
            errors_second += n
    log_text = server.log.read_text(errors="replace")
    result = {
        "server": server_name, "label": server.label,
        "corrupt_packet": {
            "frame_ts_ms": bad_ts,
            "publish_survived": survived,
            "longest_wait_for_new_media_listed_s": longest_gap,
            "media_sent_s": round(first_sent, 3), "media_listed_s": round(first_listed, 3),
            "decoder_error_lines_in_listed_media": errors_first,
            "server_log_lines": {
                "packet dropped": log_text.count("packet dropped"),
                "ffmpeg stderr": log_text.count("ffmpeg:"),
                "nginx error.log": len(log_text.splitlines()) if not is_sender else None,
            },
        },
        "publisher_drop": {
            "second_publish_error": second_error,
            "new_media_listed_after_reconnect_s": None if resumed is None else resumed - second.t_connect,
            "media_sent_s": round(second_sent, 3), "media_listed_s": round(second_listed, 3),
            "decoder_error_lines_in_listed_media": errors_second,
        },
        "discontinuities_listed": facts.discontinuities,
        "segments_kept": len(keeper.kept),
        "exit_code": exit_code,
    }
    log(f"{server.label}: faults: {json.dumps({k: result[k] for k in ('corrupt_packet', 'publisher_drop', 'discontinuities_listed')})}")
    return result


def render_faults(runs: list[dict]) -> str:
    out = [f"Faults (30 fps): a corrupt P-frame at ~{FAULT_CORRUPT_AT_MS / 1000:g} s, the connection cut at "
           f"{FAULT_DROP_AT_S:g} s, the publisher back {FAULT_GONE_S:g} s later from the clip's start"]
    for r in runs:
        c, d = r["corrupt_packet"], r["publisher_drop"]
        out.append(f"  {r['label']}: corrupt packet: publish {'went on' if c['publish_survived'] else 'DROPPED'}; longest wait for "
                   f"new media listed {fmt(c['longest_wait_for_new_media_listed_s'], 2)} s; listed {c['media_listed_s']:.2f} of "
                   f"{c['media_sent_s']:.2f} s sent; {c['decoder_error_lines_in_listed_media']} decoder error lines in the listed "
                   f"media; log: {', '.join(f'{k} {v}' for k, v in c['server_log_lines'].items() if v is not None)}")
        out.append(f"  {r['label']}: publisher drop: new media listed {fmt(d['new_media_listed_after_reconnect_s'], 3)} s after "
                   f"the reconnect; listed {d['media_listed_s']:.2f} of {d['media_sent_s']:.2f} s sent; "
                   f"{d['decoder_error_lines_in_listed_media']} decoder error lines; discontinuities in the playlists: "
                   f"{r['discontinuities_listed']}")
    return "\n".join(out)


# --- ffmpeg alone: what Sender's remux adds ---------------------------------------------------


def ffmpeg_probe(argv: list[str], clip: Clip, seconds: float, root: Path) -> dict:
    """Run Sender's ffmpeg command standalone: paced FLV in on stdin, fMP4 out on stdout; per video
    frame, the time from writing its FLV tag to reading the fragment that holds it."""
    # The daemon passes its rendition pipe as pipe:N; here the one output goes to stdout.
    cmd = [("pipe:1" if re.fullmatch(r"pipe:\d+", a) and a != "pipe:0" else a) for a in argv]
    root.mkdir(parents=True, exist_ok=True)
    stderr = open(root / "ffmpeg-probe.log", "wb")
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, bufsize=0)
    arrivals: list[tuple[float, int]] = []  # (when read, video samples in the fragment)
    errors: list[str] = []

    def read() -> None:
        reader, video_track = FMP4Reader(), None
        try:
            while (data := os.read(proc.stdout.fileno(), 1 << 16)):
                if reader is None:
                    continue  # keep draining, or ffmpeg blocks on its output and the writer on its input
                at = time.monotonic()
                try:
                    items = reader.feed(data)
                except FMP4Error as e:
                    errors.append(f"ffmpeg's output is not readable fMP4: {e}")
                    reader = None
                    continue
                for item in items:
                    if isinstance(item, InitSegment):
                        video_track = item.video.track_id if item.video else None
                    elif video_track is not None and (trf := item.tracks.get(video_track)):
                        arrivals.append((at, trf.sample_count))
        except OSError as e:
            errors.append(str(e))

    reader_thread = threading.Thread(target=read, name="ffmpeg-probe-reader", daemon=True)
    reader_thread.start()
    deadline = threading.Timer(seconds + 30, proc.kill)  # bounded, whatever ffmpeg does
    deadline.start()
    sent: list[SentTag] = []
    stop = threading.Event()
    try:
        prelude = flv.flv_header() + flv.encode_script_tag(clip.metadata)
        prelude += b"".join(flv.encode_tag(t.type, 0, t.body) for t in clip.headers)
        proc.stdin.write(prelude)
        pace(clip, lambda tag_type, ts, body: proc.stdin.write(flv.encode_tag(tag_type, ts, body)), stop, seconds, sent)
    except BrokenPipeError:
        errors.append("ffmpeg closed its input")
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        deadline.cancel()
        reader_thread.join(timeout=5)
        stderr.close()
    video = [t for t in sent if t.type == flv.TAG_VIDEO]
    lag, after_next_tag, after_next_video, held = [], [], [], []
    frame = 0
    order = {id(t): i for i, t in enumerate(sent)}
    for at, count in arrivals:
        for k in range(frame, min(frame + count, len(video))):
            lag.append((at - video[k].sent) * 1000)
        last = frame + count - 1
        if last + 1 < len(video):
            after_next_video.append((at - video[last + 1].sent) * 1000)
            nxt = order[id(video[last])] + 1
            after_next_tag.append((at - sent[nxt].sent) * 1000)
            # Tags (audio or video) that had been sent when the fragment came out, past its last frame.
            held.append(sum(1 for t in sent[nxt:nxt + 10] if t.sent <= at))
        frame += count
    return {
        "command": " ".join(cmd),
        "seconds": seconds,
        "fragments": len(arrivals),
        "video_frames": len(video),
        "video_frames_in_fragments": frame,
        "frame_to_fragment_ms": distribution(lag),
        "fragment_after_next_tag_sent_ms": distribution(after_next_tag),
        "fragment_after_next_video_frame_sent_ms": distribution(after_next_video),
        "tags_sent_past_last_frame_before_fragment": distribution(held),
        "errors": errors,
        "exit_code": proc.returncode,
        "stderr_tail": tail(root / "ffmpeg-probe.log", 3),
    }


# --- report -----------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summarize(runs: list[dict], servers: list[str], rates: list[int]) -> tuple[list[dict], list[dict], dict]:
    """Medians over rounds per (server, frame rate); each Sender's ratios to nginx-rtmp; the goals."""
    rows = []
    for fps in rates:
        for s in servers:
            rs = [r for r in runs if r["server"] == s and r["fps"] == fps]
            if not rs:
                continue

            def med(get: Callable[[dict], float | None]) -> float | None:
                values = [v for v in (get(r) for r in rs) if v is not None]
                return statistics.median(values) if values else None

            rows.append({
                "server": s, "label": LABELS[s], "fps": fps, "rounds": len(rs),
                "startup_s": med(lambda r: r["startup_s"]),
                "startup_s_all": [round(r["startup_s"], 3) for r in rs],
                "parts": sum(r["parts"]["delay_ms"]["n"] for r in rs),
                "part_delay_median_ms": med(lambda r: r["parts"]["delay_ms"]["median"]),
                "part_delay_p95_ms": med(lambda r: r["parts"]["delay_ms"]["p95"]),
                "part_delay_max_ms": max((r["parts"]["delay_ms"]["max"] or 0 for r in rs), default=None) if any(r["parts"]["delay_ms"]["n"] for r in rs) else None,
                "part_file_median_ms": med(lambda r: r["parts"]["file_written_after_last_frame_ms"]["median"]),
                "segments": sum(r["segments"]["delay_ms"]["n"] for r in rs),
                "segment_delay_median_ms": med(lambda r: r["segments"]["delay_ms"]["median"]),
                "segment_delay_p95_ms": med(lambda r: r["segments"]["delay_ms"]["p95"]),
                "part_hold_back_s": rs[0]["playlist"]["part_hold_back"],
                "hold_back_s": rs[0]["playlist"]["hold_back_used"],
                "ll_hls_latency_median_s": med(lambda r: (r["player_latency_estimate_s"].get("ll_hls") or {}).get("median")),
                "ll_hls_latency_p95_s": med(lambda r: (r["player_latency_estimate_s"].get("ll_hls") or {}).get("p95")),
                "hls_latency_median_s": med(lambda r: (r["player_latency_estimate_s"].get("hls") or {}).get("median")),
                "hls_latency_p95_s": med(lambda r: (r["player_latency_estimate_s"].get("hls") or {}).get("p95")),
                "cpu_pct_per_stream": med(lambda r: r["cpu_pct_per_stream"]),
                "cpu_by_process": {name: med(lambda r, n=name: r["cpu"]["by_process_name"].get(n, {}).get("cpu_pct_of_core"))
                                   for name in sorted({n for r in rs for n in r["cpu"]["by_process_name"]})},
                "rss_mb_peak": max(r["cpu"]["rss_mb_peak"] for r in rs),
            })
    by = {(r["server"], r["fps"]): r for r in rows}

    def ratio(x: float | None, y: float | None) -> float | None:
        return x / y if x is not None and y else None

    ratios = []
    for fps in rates:
        b = by.get(("nginx", fps))
        for s in servers:
            a = by.get((s, fps))
            if s == "nginx" or not a or not b:
                continue
            ratios.append({
                "server": s, "fps": fps,
                "startup": ratio(a["startup_s"], b["startup_s"]),
                "segment_delay_p95": ratio(a["segment_delay_p95_ms"], b["segment_delay_p95_ms"]),
                "part_delay_p95_vs_nginx_segment_delay_p95": ratio(a["part_delay_p95_ms"], b["segment_delay_p95_ms"]),
                "player_latency_p95": ratio(a["ll_hls_latency_p95_s"] or a["hls_latency_p95_s"], b["hls_latency_p95_s"]),
                "cpu_per_stream": ratio(a["cpu_pct_per_stream"], b["cpu_pct_per_stream"]),
            })
    goals = {}
    for fps in rates:
        a = by.get((GOAL_SERVER, fps))
        if not a:
            continue
        goals[f"startup_s@{fps}fps"] = {"limit": GOAL_STARTUP_S, "value": a["startup_s"],
                                        "met": a["startup_s"] is not None and a["startup_s"] <= GOAL_STARTUP_S}
        goals[f"part_delay_p95_ms@{fps}fps"] = {
            "limit": GOAL_PART_DELAY_P95_MS, "value": a["part_delay_p95_ms"],
            "met": a["part_delay_p95_ms"] is not None and a["part_delay_p95_ms"] <= GOAL_PART_DELAY_P95_MS}
        goals[f"player_latency_s@{fps}fps"] = {
            "limit": GOAL_PLAYER_LATENCY_S, "value": a["ll_hls_latency_p95_s"],
            "met": a["ll_hls_latency_p95_s"] is not None and a["ll_hls_latency_p95_s"] <= GOAL_PLAYER_LATENCY_S,
            "note": "with the p95 part delay"}
        goals[f"cpu_pct_per_stream@{fps}fps"] = {
            "limit": GOAL_CPU_PCT_PER_STREAM, "value": a["cpu_pct_per_stream"],
            "met": a["cpu_pct_per_stream"] is not None and a["cpu_pct_per_stream"] <= GOAL_CPU_PCT_PER_STREAM}
    return rows, ratios, goals


def render(report: dict) -> str:
    f, clip, rows, ratios, goals = report["machine"], report["clip"], report["summary"], report["ratios"], report["goals"]
    st = report["settings"]
    out = [
        f"Machine: {f['nproc']} CPUs, {f['cpu_model']}, Linux {f['kernel']}, load {' '.join(f['loadavg_at_start'])} at start",
        f"Sender: {report['sender_code']}, on {f['sender_python']}; {f.get('ffmpeg')}; {f.get('nginx', '-')}"
        + (f" + libnginx-mod-rtmp {f['libnginx-mod-rtmp']}" if f.get("libnginx-mod-rtmp") else ""),
        *(f"Source: {c['description']}, {c['duration_s']} s looped, {c['total_bitrate_mbps']} Mbps total; "
          f"real-time RTMP publisher (this script, TCP_NODELAY)" for c in clip.values()),
        f"Window: {st['seconds']:g} s after {st['warmup']:g} s warm-up from the first media sent; rounds: {st['rounds']}"
        + (" (medians of per-round figures)" if st["rounds"] > 1 else ""),
        "",
    ]
    header = ["server", "fps", "startup s", "parts", "part delay med/p95 ms", "segments", "segment delay med/p95 ms",
              "hold-back s", "player latency est. s (med/p95)", "CPU % core/stream", "RSS MB"]
    table = [header]
    for r in rows:
        if r["part_delay_median_ms"] is not None:
            hb = f"PART {fmt(r['part_hold_back_s'], 2)}"
            est = f"{fmt(r['ll_hls_latency_median_s'], 2)}/{fmt(r['ll_hls_latency_p95_s'], 2)} (LL); " \
                  f"{fmt(r['hls_latency_median_s'], 2)}/{fmt(r['hls_latency_p95_s'], 2)} (HLS, {fmt(r['hold_back_s'], 1)})"
        else:
            hb = f"{fmt(r['hold_back_s'], 1)}"
            est = f"{fmt(r['hls_latency_median_s'], 2)}/{fmt(r['hls_latency_p95_s'], 2)}"
        table.append([
            r["label"], str(r["fps"]),
            fmt(r["startup_s"], 3) + (f" ({'/'.join(f'{v:.2f}' for v in r['startup_s_all'])})" if r["rounds"] > 1 else ""),
            str(r["parts"]), f"{fmt(r['part_delay_median_ms'], 1)}/{fmt(r['part_delay_p95_ms'], 1)}",
            str(r["segments"]), f"{fmt(r['segment_delay_median_ms'])}/{fmt(r['segment_delay_p95_ms'])}",
            hb, est, fmt(r["cpu_pct_per_stream"], 2), fmt(r["rss_mb_peak"], 1),
        ])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        out.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    for r in rows:
        if r["cpu_by_process"]:
            out.append(f"CPU of {r['label']} at {r['fps']} fps by process: "
                       + ", ".join(f"{n} {fmt(v, 2)} %" for n, v in r["cpu_by_process"].items()))
    for q in ratios:
        out.append(f"{LABELS[q['server']]} / nginx-rtmp at {q['fps']} fps: " + ", ".join(
            f"{name.replace('_', ' ')} {fmt(v, 2)}x" for name, v in q.items() if name not in ("server", "fps")))
    for name, g in goals.items():
        out.append(f"Goal ({LABELS[GOAL_SERVER]}) {name} <= {g['limit']:g}: {'MET' if g['met'] else 'NOT MET'} ({fmt(g['value'], 3)}"
                   + (f", {g['note']})" if g.get("note") else ")"))
    out.append("")
    out.append("Where Sender's part delay goes (last round of each):")
    for r in report["runs"][::-1]:
        if r["server"] == "nginx" or any(x["server"] == r["server"] and x["fps"] == r["fps"] and x is not r
                                         for x in report["runs"][report["runs"].index(r) + 1:]):
            continue
        p = r["parts"]
        out.append(f"  {r['label']} at {r['fps']} fps: part file renamed into place {fmt(p['file_written_after_last_frame_ms']['median'], 1)} ms "
                   f"(median; p95 {fmt(p['file_written_after_last_frame_ms']['p95'], 1)}) after its last frame was sent, listed in "
                   f"index.m3u8 {fmt(p['listed_after_file_ms']['median'], 1)} ms (p95 {fmt(p['listed_after_file_ms']['p95'], 1)}) after its file"
                   + (f"; ffmpeg stderr lines logged: {r['ffmpeg_warnings_logged_per_s']:.1f}/s" if r.get("ffmpeg_warnings_logged_per_s") else ""))
    if (probe := report.get("ffmpeg_probe")):
        d, n, v, h = (probe["frame_to_fragment_ms"], probe["fragment_after_next_tag_sent_ms"],
                      probe["fragment_after_next_video_frame_sent_ms"], probe["tags_sent_past_last_frame_before_fragment"])
        out.append(f"  ffmpeg alone (the daemon's command, {probe['seconds']:g} s, paced FLV on stdin): video frame → its fragment on "
                   f"stdout median {fmt(d['median'])} ms, p95 {fmt(d['p95'])} ms; fragment out {fmt(n['median'], 1)} ms (median) after "
                   f"the next tag went in, {fmt(v['median'], 1)} ms after the next video frame; tags sent past a fragment's last "
                   f"frame before it came out: median {fmt(h['median'])}, max {fmt(h['max'])}")
    if (faults := report.get("faults")):
        out.append("")
        out.append(render_faults(faults))
    for w in report["warnings"]:
        out.append(f"WARNING: {w}")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="measurement window per server (default 60)")
    p.add_argument("--warmup", type=float, default=4.0, help="seconds from the first media sent to the window (default 4)")
    p.add_argument("--servers", default="native,ffmpeg,nginx",
                   help="comma-separated: native, ffmpeg (Sender with that backend.kind), sender (as configured by "
                        "default), nginx (default native,ffmpeg,nginx)")
    p.add_argument("--fps", default="30,15", help="comma-separated frame rates of the clip (default 30,15)")
    p.add_argument("--faults", action="store_true", help="also: a corrupt packet and a publisher drop, once per server (30 fps)")
    p.add_argument("--rounds", type=int, default=1, help="repeat each server's run, alternating the order (default 1)")
    p.add_argument("--probe-seconds", type=float, default=15.0,
                   help="run Sender's ffmpeg command alone this long (0: skip; default 15)")
    p.add_argument("--sender-rev", metavar="REV",
                   help="measure this git revision of Sender (git archive) instead of a snapshot of the working tree")
    p.add_argument("--json", action="store_true", help="print the full report as JSON on stdout (the table goes to stderr)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (installs, logs, spool, HLS)")
    args = p.parse_args(argv)
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not args.server_list or any(s not in SERVERS for s in args.server_list):
        p.error("--servers: native, ffmpeg, sender and/or nginx")
    try:
        args.rates = [int(x) for x in args.fps.split(",") if x.strip()]
    except ValueError:
        p.error("--fps: comma-separated integers, e.g. 30,15")
    if not args.rates or any(not 5 <= r <= 60 for r in args.rates):
        p.error("--fps: between 5 and 60 each")
    if not (5 <= args.seconds <= 600) or not (2 <= args.warmup <= 60) or not (1 <= args.rounds <= 5) \
            or not (0 <= args.probe_seconds <= 120):
        p.error("bounds: 5 <= --seconds <= 600, 2 <= --warmup <= 60, 1 <= --rounds <= 5, 0 <= --probe-seconds <= 120")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sender-bench-latency-"))
    try:
        tools = require_tools(nginx="nginx" in args.server_list)
        sender_source = None
        sender_code = "-"
        if any(s != "nginx" for s in args.server_list):
            sender_cli()
            sender_source = workdir / "sender-source"
            if args.sender_rev:
                commit = export_revision(args.sender_rev, sender_source)
                sender_code = f"git archive {args.sender_rev} ({commit})"
            else:
                sender_code = "working tree at " + snapshot_worktree(sender_source)
            log(f"measuring Sender: {sender_code}")
        sources = {fps: SourceClip(fps=fps, gop=2 * fps) for fps in sorted({*args.rates, 30} if args.faults else args.rates, reverse=True)}
        clips = {}
        for fps, source in sources.items():
            log(f"source clip at {fps} fps: " + ("cached" if source.path().exists() else "encoding once (cached under bench/.cache)"))
            clips[fps] = load_clip(source.ensure(tools["ffmpeg"]))
        report = {
            "benchmark": "latency",
            "machine": machine_facts(tools),
            "sender_code": sender_code,
            "clip": {fps: source.probe(tools["ffprobe"]) for fps, source in sources.items()},
            "settings": {"seconds": args.seconds, "warmup": args.warmup, "servers": args.server_list, "fps": args.rates,
                         "rounds": args.rounds, "probe_seconds": args.probe_seconds, "tail_s": TAIL_S, "faults": args.faults},
            "runs": [],
            "warnings": [],
        }
        report["machine"]["sender_revision"] = sender_code
        for rnd in range(args.rounds):
            order = args.server_list if rnd % 2 == 0 else list(reversed(args.server_list))
            for fps, s in ((fps, s) for fps in args.rates for s in order):
                r = measure(s, workdir / f"r{rnd + 1}-{s}-{fps}fps", tools, clips[fps], args, sender_source, fps)
                r["round"] = rnd + 1
                report["runs"].append(r)
                others = r["cpu"]["machine_busy_pct_of_core"] - r["cpu"]["cpu_pct_of_core"] - r["cpu"]["publishers_cpu_pct_of_core"]
                r["other_load_pct_of_core"] = others
                if others > BUSY_MACHINE_PCT:
                    report["warnings"].append(f"{r['label']} round {rnd + 1}: other processes used {others:.0f} % of a core "
                                              f"during the window")
                if r["publisher"]["lateness_ms"]["p95"] and r["publisher"]["lateness_ms"]["p95"] > 5:
                    report["warnings"].append(f"{r['label']} round {rnd + 1}: the publisher sent late (p95 "
                                              f"{r['publisher']['lateness_ms']['p95']:.1f} ms behind schedule)")
                for kind in ("parts", "segments"):
                    if r[kind]["mapping_off_by_more_than_tolerance"]:
                        report["warnings"].append(
                            f"{r['label']} round {rnd + 1}: {r[kind]['mapping_off_by_more_than_tolerance']} {kind} end more than "
                            f"{MAPPING_TOLERANCE_MS:g} ms from a frame boundary (max {r[kind]['mapping_residual_ms_max']:.1f} ms): "
                            "the media times are off")
                if r["exit_code"] not in (0, None):
                    report["warnings"].append(f"{r['label']} round {rnd + 1} exited with {r['exit_code']} on SIGTERM")
        probed = next((r for r in reversed(report["runs"]) if r.get("_ffmpeg_argv")), None)
        if args.probe_seconds and probed:
            argv_ffmpeg = probed["_ffmpeg_argv"]
            log(f"ffmpeg alone for {args.probe_seconds:g} s at {probed['fps']} fps: {' '.join(argv_ffmpeg)}")
            report["ffmpeg_probe"] = ffmpeg_probe(argv_ffmpeg, clips[probed["fps"]], args.probe_seconds, workdir / "ffmpeg-probe")
        if args.faults:
            report["faults"] = [faults(s, workdir / f"faults-{s}", tools, clips[30], sender_source) for s in args.server_list]
        for r in report["runs"]:
            r.pop("_ffmpeg_argv", None)
    except SetupError as e:
        print(f"latency: setup failed: {e}", file=sys.stderr)
        print(f"latency: work directory kept for inspection (logs, installs): {workdir}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latency: interrupted", file=sys.stderr)
        return 130
    report["summary"], report["ratios"], report["goals"] = summarize(report["runs"], args.server_list, args.rates)
    text = render(report)
    return finish_report(report, text, workdir, keep=args.keep, as_json=args.json, log=log)


if __name__ == "__main__":
    sys.exit(main())
