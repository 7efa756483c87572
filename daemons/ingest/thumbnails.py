"""Thumbnails: for each live stream, a JPEG of a recent keyframe every `thumbnails.interval_s`,
written atomically as `<spool>/streams/<stream>/<generation>/thumbnail.jpg` (the generation's last
one stays with it: a recording has one too). sender-http serves it at
`/api/streams/<slug>/thumbnail.jpg`.

Designed for cost. Starting ffmpeg costs ~80 ms of CPU here (it loads some 200 libraries), more
than the 0.5 % of a core per stream allowed at a 10 s interval; so each publish gets one ffmpeg
that stays: `KeyframeTap` (one of the publish's `MediaSink`s) keeps only the newest keyframe the
publisher sent, and every interval the `Thumbnailer` feeds that one frame to the stream's
`JPEGDecoder` — FLV in (the sequence header once), a JPEG scaled to `thumbnails.width` out. After
each keyframe it sends an H.264 end-of-sequence NAL, which makes ffmpeg's decoder hand out the
frame at once instead of holding it for B-frame reordering. Only keyframes are decoded: about
10 ms per thumbnail of a 720p stream (tests/daemons/test_thumbnails.py measures it).

The Thumbnailer is one supervised task of sender-ingest. The tap does nothing but keep a
reference; a decoder that fails, hangs or writes garbage is stopped and started again at the
next interval; nothing here can reach ingest, viewers or another stream's thumbnail.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import trio

from daemons.media import flv, rtmp
from daemons.media.names import THUMBNAIL
from daemons.runtime import children
from daemons.runtime import logging as slog
from daemons.core.files import atomic_write

log = slog.get("ingest.thumbnails")

TICK_S = 1.0  # the task looks at its streams at least this often
MIN_TICK_S = 0.1  # and at most this often (a due stream whose next keyframe is late)
KEYFRAME_SLACK_S = 0.05  # a due stream's expected keyframe is looked for this long after it is due
DECODE_TIMEOUT_S = 5.0
MAX_JPEG_BYTES = 8 * 1024 * 1024
# An AVC NALU tag holding one end-of-sequence NAL unit (type 10): ffmpeg's H.264 decoder outputs a
# frame it holds for reordering when it gets one (send_next_delayed_frame). A few, for deep reordering.
_END_OF_SEQUENCE = bytes([0x17, 0x01, 0, 0, 0]) + struct.pack(">I", 1) + bytes([0x0A])
FLUSHES = 4
# What ffmpeg's H.264 parser says of each of those packets: expected, not worth a log line.
_EXPECTED_NOISE = (b"missing picture in access unit", b"Last message repeated")


class JPEGError(Exception):
    """The decoder's output is not a sequence of JPEG images."""


class JPEGSplitter:
    """Splits a stream of concatenated JPEG images (ffmpeg's image2pipe) into images: marker
    segments by their lengths, the entropy-coded data up to the next marker that is not a
    stuffed 0xFF or a restart marker. Feed bytes, get the images they complete."""

    def __init__(self, max_bytes: int = MAX_JPEG_BYTES):
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._pos = 0  # where parsing of the current image stopped
        self._in_scan = False

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        images = []
        while True:
            end = self._parse()
            if end is None:
                break
            images.append(bytes(self._buf[:end]))
            del self._buf[:end]
            self._pos, self._in_scan = 0, False
        if len(self._buf) > self.max_bytes:
            raise JPEGError(f"an image of more than {self.max_bytes} bytes")
        return images

    def _parse(self) -> int | None:
        """The end of the first image when it is complete, else None (progress kept)."""
        buf = self._buf
        if self._pos == 0:
            if len(buf) < 2:
                return None
            if buf[0] != 0xFF or buf[1] != 0xD8:
                raise JPEGError("not a JPEG image (no SOI marker)")
            self._pos = 2
        while True:
            pos = self._pos
            if self._in_scan:
                # Entropy-coded data: 0xFF 0x00 is a stuffed byte, 0xFF 0xD0-D7 a restart marker.
                while True:
                    pos = buf.find(b"\xff", pos)
                    if pos < 0 or pos + 1 >= len(buf):
                        self._pos = len(buf) - 1 if pos >= 0 else len(buf)
                        return None
                    nxt = buf[pos + 1]
                    if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                        pos += 1 if nxt == 0xFF else 2
                        continue
                    break
                self._in_scan = False
                self._pos = pos
            if len(buf) < pos + 2:
                return None
            if buf[pos] != 0xFF:
                raise JPEGError(f"no marker at byte {pos}")
            marker = buf[pos + 1]
            if marker == 0xFF:  # fill byte
                self._pos = pos + 1
                continue
            if marker == 0xD9:  # EOI
                return pos + 2
            if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
                self._pos = pos + 2
                continue
            if marker == 0xD8 or marker == 0x00:
                raise JPEGError(f"unexpected marker 0xFF{marker:02X} at byte {pos}")
            if len(buf) < pos + 4:
                return None
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            if length < 2:
                raise JPEGError(f"segment length {length} at byte {pos}")
            if len(buf) < pos + 2 + length:
                return None
            self._pos = pos + 2 + length
            if marker == 0xDA:  # SOS: the scan's data follows
                self._in_scan = True


def decoder_command(ffmpeg: str, width: int) -> list[str]:
    """A persistent ffmpeg: FLV (video only) in, one JPEG per video frame out, at most `width`
    wide (never scaled up), single-threaded (it decodes a frame now and then)."""
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats", "-threads", "1",
        "-probesize", "32", "-analyzeduration", "0", "-f", "flv", "-i", "pipe:0",
        "-map", "0:v:0", "-vf", f"scale='min({width},iw)':-2", "-threads", "1", "-fps_mode", "passthrough",
        "-c:v", "mjpeg", "-q:v", "5", "-f", "image2pipe", "-flush_packets", "1", "pipe:1",
    ]


def can_decode(header: flv.VideoTagHeader) -> bool:
    """A legacy FLV codec ffmpeg 5.1's FLV demuxer reads (not Enhanced RTMP, not HEVC as CodecID 12)."""
    return not header.enhanced and header.codec_id not in (0, flv.CODEC_HEVC)


class KeyframeTap:
    """One publish's `MediaSink` for thumbnails: keeps the newest keyframe and the video sequence
    header (references only: no copy, no work)."""

    def __init__(self, thumbnailer: "Thumbnailer", stream: dict, generation_id: str, directory: Path):
        self.thumbnailer = thumbnailer
        self.stream = stream
        self.generation_id = generation_id
        self.directory = Path(directory)
        self.sequence_header: bytes | None = None
        self.keyframe: rtmp.VideoData | None = None
        self.keyframes = 0  # counts keyframes seen: a new one since the last thumbnail?
        self.thumbnailed = 0  # `keyframes` at the last thumbnail
        self.due_at = -float("inf")
        self.keyframe_at: float | None = None  # trio time the newest keyframe came
        self.keyframe_gap: float | None = None  # and the one before it, that much earlier
        self.decoder: JPEGDecoder | None = None
        self.closed = False

    @property
    def fields(self) -> dict:
        return {"stream": self.stream["slug"], "generation": self.generation_id}

    async def open(self) -> None:
        self.thumbnailer.taps[self.stream["id"]] = self
        self.thumbnailer.tapped.set()

    async def metadata(self, data: dict) -> None:
        pass

    async def write(self, media: rtmp.AudioData | rtmp.VideoData) -> None:
        self.take(media, trio.current_time())

    leasable = True  # `take` needs nothing of trio: the media thread may call it

    def take(self, media: rtmp.AudioData | rtmp.VideoData, now: float) -> None:
        if not isinstance(media, rtmp.VideoData) or not can_decode(media.header):
            return
        if media.header.is_sequence_header:
            self.sequence_header = media.payload
        elif media.header.is_random_access and self.sequence_header is not None:
            self.keyframe = media
            self.keyframes += 1
            if self.keyframe_at is not None:
                self.keyframe_gap = now - self.keyframe_at
            self.keyframe_at = now

    def next_look(self, now: float) -> float | None:
        """When the thumbnailer should look at this tap next (None: nothing to decode): when its
        thumbnail is due if a keyframe waits, else when its next keyframe is expected."""
        if self.sequence_header is None or self.closed:
            return None  # audio only, or a codec the decoder cannot read
        if self.keyframes != self.thumbnailed:
            return self.due_at
        if self.keyframe_at is None or not self.keyframe_gap:
            return max(self.due_at, now + TICK_S)
        return max(self.due_at, self.keyframe_at + self.keyframe_gap + KEYFRAME_SLACK_S)

    async def aclose(self) -> None:
        self.closed = True
        if self.thumbnailer.taps.get(self.stream["id"]) is self:
            del self.thumbnailer.taps[self.stream["id"]]
        decoder, self.decoder = self.decoder, None
        if decoder is not None:
            await decoder.aclose()


class JPEGDecoder:
    """One publish's ffmpeg that turns keyframes into JPEGs, one at a time."""

    def __init__(self, ffmpeg: str, width: int, sequence_header: bytes, avc: bool):
        self.sequence_header = sequence_header
        self.avc = avc
        self.child = children.spawn(decoder_command(ffmpeg, width), stdin=children.PIPE, stdout=children.PIPE,
                                    stderr=children.PIPE)
        self.splitter = JPEGSplitter()
        self.errors: list[str] = []
        self._started = False
        self._timestamp = 0

    async def jpeg(self, keyframe: rtmp.VideoData) -> bytes:
        """The keyframe as a JPEG. Raises JPEGError (or trio's stream errors) when ffmpeg fails."""
        out = bytearray()
        if not self._started:
            out += flv.flv_header(has_audio=False, has_video=True) + flv.encode_tag(flv.TAG_VIDEO, 0, self.sequence_header)
            self._started = True
        # Timestamps of our own, rising: the publisher's may jump back after its reconnect.
        self._timestamp += 1000
        out += flv.encode_tag(flv.TAG_VIDEO, self._timestamp, keyframe.payload)
        if self.avc:
            for i in range(1, FLUSHES + 1):
                out += flv.encode_tag(flv.TAG_VIDEO, self._timestamp + i, _END_OF_SEQUENCE)
        await self.child.stdin.send_all(bytes(out))
        while True:
            data = await self.child.stdout.receive_some(65536)
            if not data:
                raise JPEGError("ffmpeg closed its output" + (f": {self.errors[-1]}" if self.errors else ""))
            images = self.splitter.feed(data)
            if images:
                return images[-1]

    async def read_errors(self) -> None:
        buf = b""
        while chunk := await self.child.stderr.receive_some(4096):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            buf = buf[-4096:]
            for line in lines:
                if line.strip() and not any(noise in line for noise in _EXPECTED_NOISE):
                    self.errors = [*self.errors[-4:], line.decode("utf-8", "replace").strip()[:300]]

    @property
    def pid(self) -> int:
        return self.child.pid

    async def aclose(self) -> None:
        await self.child.aclose()


class Thumbnailer:
    """The task: every second, each stream whose thumbnail is due and that sent a new keyframe
    since its last one gets a new thumbnail."""

    def __init__(self, config, nursery: trio.Nursery | None = None):
        self.ffmpeg = config["backend.ffmpeg"]
        self.interval_s = config["thumbnails.interval_s"]
        self.width = config["thumbnails.width"]
        self.nursery = nursery
        self.taps: dict[str, KeyframeTap] = {}  # stream id → its publish's tap
        self.made = 0
        self.failed = 0
        self.tapped = trio.Event()  # set when a tap opens: with none, the task does not tick

    def tap(self, stream: dict, generation_id: str, directory: Path) -> KeyframeTap:
        return KeyframeTap(self, stream, generation_id, directory)

    async def run(self) -> None:
        """Supervised: a bug in one round is logged and the next round goes on."""
        while True:
            if not self.taps:
                self.tapped = trio.Event()
                await self.tapped.wait()
            await trio.sleep_until(self._next_round())
            try:
                await self.round()
            except Exception:
                log.exception("thumbnail round failed")

    def _next_round(self) -> float:
        """The next time a tap may have a thumbnail to make: a round then, not on a fixed tick
        (a keyframe that came just after a tick would wait a whole one, and with keyframes as
        frequent as thumbnails every other thumbnail would be skipped); a late keyframe is looked
        for every MIN_TICK_S, and every tap at least every TICK_S."""
        now = trio.current_time()
        looks = [at for tap in self.taps.values() if (at := tap.next_look(now)) is not None]
        return max(min([*looks, now + TICK_S]), now + MIN_TICK_S)

    async def round(self) -> None:
        now = trio.current_time()
        for tap in list(self.taps.values()):
            if tap.keyframes != tap.thumbnailed and now >= tap.due_at and tap.keyframe is not None:
                tap.due_at = now + self.interval_s
                tap.thumbnailed = tap.keyframes
                await self.make(tap)

    async def make(self, tap: KeyframeTap) -> bool:
        """One thumbnail of the tap's newest keyframe; False (logged, decoder stopped) when it fails."""
        if tap.closed:
            return False
        keyframe = tap.keyframe
        decoder = tap.decoder
        if decoder is not None and decoder.sequence_header != tap.sequence_header:
            await self._stop(tap)  # new codec parameters (a new resolution): a new decoder
            decoder = None
        try:
            if decoder is None:
                decoder = tap.decoder = JPEGDecoder(self.ffmpeg, self.width, tap.sequence_header,
                                                    avc=keyframe.header.codec_id == flv.CODEC_AVC)
                self.nursery.start_soon(self._errors_of, decoder)
            with trio.fail_after(DECODE_TIMEOUT_S):
                jpeg = await decoder.jpeg(keyframe)
            await trio.to_thread.run_sync(atomic_write, tap.directory / THUMBNAIL, jpeg)
        except (JPEGError, OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as e:
            if tap.closed:  # the publisher left meanwhile, and took the decoder with it
                return False
            self.failed += 1
            error = "no JPEG within %gs" % DECODE_TIMEOUT_S if isinstance(e, trio.TooSlowError) else str(e) or type(e).__name__
            if decoder is not None and decoder.errors:
                error += f" (ffmpeg: {decoder.errors[-1]})"
            slog.log(log, logging.WARNING, "thumbnail failed; trying again at the next interval", error=error, **tap.fields)
            await self._stop(tap)
            return False
        self.made += 1
        return True

    async def _errors_of(self, decoder: JPEGDecoder) -> None:
        try:
            await decoder.read_errors()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _stop(self, tap: KeyframeTap) -> None:
        decoder, tap.decoder = tap.decoder, None
        if decoder is not None:
            await decoder.aclose()
