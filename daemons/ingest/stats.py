"""What the ingest daemon measures per publisher: `PublisherStats`.

One per accepted publish, fed by the connection handler with every media event (whose tag header
the RTMP connection already decoded) and the metadata; `to_json` is what the daemon writes to
`stats/ingest.json` each second, for `sender stream status` and sender-snapshot.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from daemons.media import flv, rtmp
from daemons.runtime import logging as slog

log = slog.get("ingest")

BITRATE_WINDOW_S = 5.0


@dataclass
class PublisherStats:
    """What one publish measures; `to_json` is what other daemons read."""

    remote: str
    connected_since: str
    bytes_in: int = 0
    video_frames: int = 0
    audio_frames: int = 0
    keyframes: int = 0
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    last_timestamp_ms: int = 0
    keyframe_interval_s: float | None = None  # the publisher's GOP, measured
    _last_keyframe_ms: int | None = None
    _samples: deque = field(default_factory=deque, repr=False)  # (time, bytes_in)

    def sample(self, now: float, bytes_in: int) -> None:
        self.bytes_in = bytes_in
        self._samples.append((now, bytes_in))
        while len(self._samples) > 2 and self._samples[1][0] <= now - BITRATE_WINDOW_S:
            self._samples.popleft()

    def bitrate_bps(self, now: float) -> int:
        if len(self._samples) < 2:
            return 0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        span = max(now - t0, t1 - t0)
        return int((b1 - b0) * 8 / span) if span > 0 else 0

    def on_metadata(self, data: dict) -> None:
        w, h, fps = data.get("width"), data.get("height"), data.get("framerate")
        if isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0:
            self.width, self.height = self.width or int(w), self.height or int(h)
        if isinstance(fps, (int, float)) and 0 < fps < 1000:
            self.frame_rate = float(fps)

    def on_video(self, event: rtmp.VideoData) -> None:
        header = event.header
        if header.is_sequence_header:
            if header.fourcc == flv.VideoCodec.AVC:
                try:
                    config = flv.parse_avc_decoder_config(event.payload[header.data_offset : header.data_end])
                    self.video_codec, self.width, self.height = config.codec_string, config.width, config.height
                except flv.FLVError as e:
                    log.debug("unreadable video sequence header: %s", e)
            return
        if not header.is_coded_frame and not header.is_end_of_sequence:
            return  # metadata or a command: no frame
        self.video_frames += 1
        self.last_timestamp_ms = event.timestamp
        if header.is_random_access:
            self.keyframes += 1
            if self._last_keyframe_ms is not None and event.timestamp > self._last_keyframe_ms:
                self.keyframe_interval_s = (event.timestamp - self._last_keyframe_ms) / 1000
            self._last_keyframe_ms = event.timestamp

    def on_audio(self, event: rtmp.AudioData) -> None:
        header = event.header
        if header.is_sequence_header:
            if header.fourcc == flv.AudioCodec.AAC:
                try:
                    config = flv.parse_aac_audio_specific_config(event.payload[header.data_offset : header.data_end])
                    self.audio_codec = config.codec_string
                except flv.FLVError as e:
                    log.debug("unreadable audio sequence header: %s", e)
            return
        if header.is_coded_frame:
            self.audio_frames += 1

    def to_json(self, now: float) -> dict:
        return {
            "remote": self.remote,
            "connected_since": self.connected_since,
            "bytes_in": self.bytes_in,
            "bitrate_bps": self.bitrate_bps(now),
            "video_frames": self.video_frames,
            "audio_frames": self.audio_frames,
            "keyframes": self.keyframes,
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec,
            "width": self.width,
            "height": self.height,
            "frame_rate": self.frame_rate,
            "keyframe_interval_s": self.keyframe_interval_s,
            "media_time_ms": self.last_timestamp_ms,
        }
