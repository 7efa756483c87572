"""An Enhanced RTMP test publisher: real encodes sent as OBS 30+ sends them, at real-time pace.

Debian's ffmpeg 5.1 cannot write Enhanced RTMP, so ffmpeg only encodes here: HEVC (libx265) and
AV1 (libsvtav1) to MP4 with a millisecond video timescale, H.264 + AAC to FLV, Opus to Ogg. The
configuration records and frames are taken out of those files (the helpers of
tests/media/test_fmp4_writer.py) and packaged as the Enhanced RTMP spec (Veovera, 2023) has them:

* video: ExVideoTagHeader — IsExHeader, frame type, VideoPacketType (SequenceStart with the
  hvcC/av1C record; CodedFrames with a composition time for HEVC, CodedFramesX when it is 0, and
  CodedFrames without one for AV1; SequenceEnd at the end), the FourCC; AV1 temporal units with
  the temporal delimiter a raw encoder puts in front of each;
* audio: legacy AAC (what OBS sends next to HEVC/AV1), or Enhanced RTMP Opus (ExAudioTagHeader,
  SoundFormat 9, FourCC ``Opus``, the OpusHead as its SequenceStart);
* H.264 as legacy FLV tags (or, with ``enhanced_avc``, as Enhanced RTMP ``avc1``).

`publish` connects with a ``fourCcList`` (as OBS 30 does), publishes, sends ``@setDataFrame``
and then each tag as one RTMP message at ``start + timestamp`` on trio's clock, splitting
messages longer than the 64 KiB chunk size into continuation chunks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import trio

from daemons.media import amf0, flv
from tests.daemons import rtmp_probe
from tests.media.test_fmp4_writer import (
    Media,
    ffmpeg,
    ffprobe_json,
    flv_media,
    mp4_video_media,
    ogg_packets,
)

CHUNK_SIZE = 65536  # rtmp_probe.publish sets it first
VIDEO_CSID, AUDIO_CSID, DATA_CSID = 6, 5, 4
STREAM_ID = 1
TD = b"\x12\x00"  # an AV1 temporal delimiter OBU (with its size field: 0)
OBS_FOURCC_LIST = ["av01", "vp09", "hvc1"]  # what OBS 30 declares in connect


@dataclass(frozen=True)
class Tag:
    type_id: int  # 8 audio, 9 video
    timestamp: int  # ms
    body: bytes


@dataclass
class Clip:
    """A publish's tags, in send order, and what the receiver should find."""

    name: str
    tags: list[Tag]
    video_codec: str  # RFC 6381, from the record
    audio_codec: str | None
    width: int
    height: int
    frames: int
    seconds: float
    metadata: dict = field(default_factory=dict)


# -- packaging ---------------------------------------------------------------------------------


def ex_video(fourcc: str, packet_type: int, keyframe: bool, payload: bytes) -> bytes:
    return bytes([0x80 | ((1 if keyframe else 2) << 4) | packet_type]) + fourcc.encode() + payload


def ex_audio(fourcc: str, packet_type: int, payload: bytes) -> bytes:
    return bytes([(flv.SOUND_EX_HEADER << 4) | packet_type]) + fourcc.encode() + payload


def si24(value: int) -> bytes:
    return (value & 0xFFFFFF).to_bytes(3, "big")


def video_tags(media: Media, *, legacy_avc: bool = True) -> list[Tag]:
    v = media.video
    fourcc = v.fourcc
    if fourcc == "avc1" and legacy_avc:
        tags = [Tag(9, 0, b"\x17\x00\x00\x00\x00" + v.record)]
        for f in media.video_frames:
            tags.append(Tag(9, f.timestamp_ms, bytes([0x17 if f.keyframe else 0x27, 1]) + si24(f.composition_ms) + f.data))
        return tags
    tags = [Tag(9, 0, ex_video(fourcc, 0, True, v.record))]
    for f in media.video_frames:
        if fourcc == "av01":
            body = ex_video(fourcc, 1, f.keyframe, TD + f.data)
        elif f.composition_ms:
            body = ex_video(fourcc, 1, f.keyframe, si24(f.composition_ms) + f.data)
        else:
            body = ex_video(fourcc, 3, f.keyframe, f.data)  # CodedFramesX: composition time 0
        tags.append(Tag(9, f.timestamp_ms, body))
    return tags


def aac_tags(media: Media) -> list[Tag]:
    tags = [Tag(8, 0, b"\xaf\x00" + media.audio.record)]
    return tags + [Tag(8, f.timestamp_ms, b"\xaf\x01" + f.data) for f in media.audio_frames]


def interleave(*streams: list[Tag]) -> list[Tag]:
    """Sequence headers first, then every frame by timestamp (video before audio on a tie)."""
    headers = [s[0] for s in streams]
    frames = sorted((t for s in streams for t in s[1:]), key=lambda t: (t.timestamp, -t.type_id))
    return headers + frames


# -- sources: real encodes -----------------------------------------------------------------


def encode_h264_aac(path: Path, seconds: float, size: str = "640x360", fps: int = 30) -> Media:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", str(2 * fps), "-pix_fmt", "yuv420p",
           "-threads", "1", "-c:a", "aac", "-b:a", "96k", "-ac", "2", "-f", "flv", str(path))
    return flv_media(path)


def encode_video(path: Path, codec: str, seconds: float, size: str = "640x360", fps: int = 30) -> Media:
    """HEVC (libx265, B-frames) or AV1 (libsvtav1) as MP4 with a millisecond timescale."""
    args = {
        "hvc1": ["-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
                 "-x265-params", f"log-level=error:pools=1:frame-threads=1:bframes=2:keyint={2 * fps}:min-keyint={2 * fps}"],
        "av01": ["-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "lp=1", "-g", str(2 * fps)],
    }[codec]
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds), *args, "-pix_fmt", "yuv420p",
           "-video_track_timescale", "1000", "-movflags", "+faststart", str(path))
    return mp4_video_media(path, codec)


def encode_opus(path: Path, seconds: float) -> tuple[bytes, list[Tag]]:
    """Opus in Ogg: its OpusHead and the packets as Enhanced RTMP Opus tags (ms timestamps)."""
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
           "-c:a", "libopus", "-b:a", "64k", "-ac", "2", "-f", "ogg", str(path))
    head, _tags, *packets = ogg_packets(path.read_bytes())
    probed = ffprobe_json(path, "-show_entries", "packet=pts")["packets"]
    first = probed[0]["pts"]
    tags = [Tag(8, 0, ex_audio("Opus", 0, head))]
    tags += [Tag(8, round((p["pts"] - first) / 48), ex_audio("Opus", 1, data)) for p, data in zip(probed, packets, strict=True)]
    return head, tags


def clip(name: str, media: Media, tags: list[Tag], audio_codec: str | None, fps: int) -> Clip:
    v = media.video
    return Clip(name, tags, v.codec, audio_codec, v.width, v.height, len(media.video_frames),
                len(media.video_frames) / fps,
                metadata={"width": float(v.width), "height": float(v.height), "framerate": float(fps),
                          "videocodecid": float(int.from_bytes(v.fourcc.encode(), "big"))})


# -- the wire ------------------------------------------------------------------------------


def chunks(csid: int, type_id: int, payload: bytes, timestamp: int, stream_id: int = STREAM_ID) -> bytes:
    """One message: a fmt-0 chunk, then fmt-3 continuation chunks every CHUNK_SIZE bytes."""
    ts = min(timestamp, 0xFFFFFF)
    ext = struct.pack(">I", timestamp) if timestamp >= 0xFFFFFF else b""
    out = bytearray(bytes([csid]) + ts.to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes([type_id])
                    + struct.pack("<I", stream_id) + ext)
    for at in range(0, len(payload), CHUNK_SIZE):
        if at:
            out += bytes([0xC0 | csid]) + ext
        out += payload[at : at + CHUNK_SIZE]
    return bytes(out)


@dataclass
class Published:
    code: str | None
    answers: bytes  # what the server sent up to its publish answer
    sent: int = 0  # tags sent
    closed_early: bool = False  # the server closed the connection before the end


async def publish(host: str, port: int, key: str, c: Clip, *, fourccs: list[str] | None = OBS_FOURCC_LIST,
                  pace: bool = True, unpublish: bool = True) -> Published:
    """Publish `c` (see the module docstring); at the end unpublish (FCUnpublish, deleteStream)
    and close, or (not `unpublish`) just close the connection, as a dropped publisher does."""
    answers = bytearray()
    connect = {"fourCcList": fourccs} if fourccs is not None else {}
    code, stream = await rtmp_probe.publish(host, port, key, connect=connect, received=answers)
    result = Published(code, bytes(answers))
    try:
        if code != "NetStream.Publish.Start":
            return result
        meta = amf0.encode_values("@setDataFrame", "onMetaData", amf0.ECMAArray(c.metadata))
        await stream.send_all(chunks(DATA_CSID, 18, meta, 0))
        start = trio.current_time()
        for tag in c.tags:
            if pace:
                await trio.sleep_until(start + tag.timestamp / 1000)
            try:
                await stream.send_all(chunks(VIDEO_CSID if tag.type_id == 9 else AUDIO_CSID, tag.type_id, tag.body, tag.timestamp))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                result.closed_early = True
                return result
            result.sent += 1
        if unpublish:
            await stream.send_all(rtmp_probe.command("FCUnpublish", 6, None, key)
                                  + rtmp_probe.command("deleteStream", 7, None, float(STREAM_ID)))
        return result
    finally:
        await stream.aclose()
