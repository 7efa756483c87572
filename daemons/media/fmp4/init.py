"""The initialization segment: ``ftyp`` + ``moov`` parsed into one ``Track`` per ``trak``.

Owns the movie-level boxes: ``tkhd`` (track id, display size), ``mdhd`` (timescale), ``hdlr``
(kind), ``stsd`` (first sample entry: coded size, audio rate and channels, codec string) and
``mvex/trex`` (the per-track sample defaults that fragments fall back on).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .boxes import BoxHeader, FieldReader, fourcc, iter_children
from .codecs import (
    av1_codec,
    avc_codec,
    hevc_codec,
    mp4a_channels,
    mp4a_codec,
    opus_channels,
)
from .errors import FMP4Error

HANDLER_KINDS = {b"vide": "video", b"soun": "audio"}
# VisualSampleEntry: SampleEntry (reserved 6, data_reference_index 2) and 16 reserved bytes
# before width/height; resolutions, frame_count, compressorname, depth and pre_defined after.
VISUAL_ENTRY_PREFIX = 8 + 16
VISUAL_ENTRY_SUFFIX = 50
# QuickTime sound description v1 adds samples per packet, bytes per packet, frame and sample.
AUDIO_V1_EXTENSION = 16
CONFIG_BOX = {
    b"avc1": b"avcC",
    b"avc3": b"avcC",
    b"hvc1": b"hvcC",
    b"hev1": b"hvcC",
    b"av01": b"av1C",
    b"mp4a": b"esds",
}


@dataclass(frozen=True)
class Track:
    """One ``trak`` of the movie, with its ``trex`` defaults if the movie is fragmented."""

    track_id: int
    kind: str  # "video" | "audio" | else the hdlr handler type, e.g. "subt"
    timescale: int
    codec: str  # RFC 6381, e.g. "avc1.64001f", "hvc1.1.6.L93.B0", "mp4a.40.2"
    width: int | None
    height: int | None
    sample_rate: int | None
    channels: int | None
    default_sample_duration: int | None = None
    default_sample_size: int | None = None
    default_sample_flags: int | None = None


@dataclass(frozen=True)
class InitSegment:
    """``data`` is the ``ftyp`` through ``moov`` bytes exactly as read: what init.mp4 holds."""

    data: bytes
    tracks: dict[int, Track]

    @property
    def video(self) -> Track | None:
        return next((t for t in self.tracks.values() if t.kind == "video"), None)

    @property
    def audio(self) -> Track | None:
        return next((t for t in self.tracks.values() if t.kind == "audio"), None)


def parse_init(data: bytes, moov: BoxHeader) -> InitSegment:
    """Parse the tracks of ``moov`` (located in ``data``, which starts with the ftyp)."""
    tracks: dict[int, Track] = {}
    trex: dict[int, tuple[int, int, int]] = {}
    for child in iter_children(data, moov.payload, moov.end, "moov"):
        if child.type == b"trak":
            track = _parse_trak(data, child)
            if track.track_id in tracks:
                raise FMP4Error(f"moov: two traks with track_ID {track.track_id}")
            tracks[track.track_id] = track
        elif child.type == b"mvex":
            for entry in iter_children(data, child.payload, child.end, "moov/mvex"):
                if entry.type == b"trex":
                    track_id, defaults = _parse_trex(data, entry)
                    trex[track_id] = defaults
    if not tracks:
        raise FMP4Error("moov: no trak")
    for track_id, (duration, size, flags) in trex.items():
        if track_id in tracks:  # a trex for a track that is not there describes nothing
            tracks[track_id] = replace(
                tracks[track_id],
                default_sample_duration=duration,
                default_sample_size=size,
                default_sample_flags=flags,
            )
    return InitSegment(data, tracks)


def _parse_trex(data: bytes, trex: BoxHeader) -> tuple[int, tuple[int, int, int]]:
    fields = FieldReader(data, trex.payload, trex.end, "trex")
    fields.full_box_header()
    track_id = fields.u32("track_ID")
    fields.u32("default_sample_description_index")
    duration = fields.u32("default_sample_duration")
    size = fields.u32("default_sample_size")
    return track_id, (duration, size, fields.u32("default_sample_flags"))


def _children(data: bytes, start: int, end: int, path: str) -> dict[bytes, BoxHeader]:
    """The first child of each type in ``data[start:end]`` (the boxes read here occur once)."""
    found: dict[bytes, BoxHeader] = {}
    for child in iter_children(data, start, end, path):
        found.setdefault(child.type, child)
    return found


def _children_of(data: bytes, parent: BoxHeader, path: str) -> dict[bytes, BoxHeader]:
    return _children(data, parent.payload, parent.end, path)


def _require(children: dict[bytes, BoxHeader], box_type: bytes, path: str) -> BoxHeader:
    if box_type not in children:
        raise FMP4Error(f"{path}: no {fourcc(box_type)}")
    return children[box_type]


def _parse_trak(data: bytes, trak: BoxHeader) -> Track:
    trak_children = _children_of(data, trak, "trak")
    track_id, display_width, display_height = _parse_tkhd(
        data, _require(trak_children, b"tkhd", "trak")
    )
    path = f"trak[{track_id}]"
    mdia = _children_of(data, _require(trak_children, b"mdia", path), f"{path}/mdia")
    timescale = _parse_mdhd(data, _require(mdia, b"mdhd", f"{path}/mdia"))
    handler = _parse_hdlr(data, _require(mdia, b"hdlr", f"{path}/mdia"))
    minf = _children_of(data, _require(mdia, b"minf", f"{path}/mdia"), f"{path}/minf")
    stbl = _children_of(data, _require(minf, b"stbl", f"{path}/minf"), f"{path}/stbl")
    entry = _first_sample_entry(data, _require(stbl, b"stsd", f"{path}/stbl"))
    kind = HANDLER_KINDS.get(handler, fourcc(handler))
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    config: dict[bytes, BoxHeader] = {}
    if kind == "video":
        width, height, config = _parse_visual_entry(data, entry)
        # The coded size from the sample entry; tkhd's display size only if the entry has none.
        width, height = width or display_width, height or display_height
    elif kind == "audio":
        sample_rate, channels, config = _parse_audio_entry(data, entry)
        channels = _configured_channels(data, entry.type, config) or channels
        sample_rate = sample_rate or timescale  # a rate over 65535 Hz does not fit the 16.16 field
    return Track(
        track_id=track_id,
        kind=kind,
        timescale=timescale,
        codec=_codec(data, entry.type, config),
        width=width,
        height=height,
        sample_rate=sample_rate,
        channels=channels,
    )


def _parse_tkhd(data: bytes, tkhd: BoxHeader) -> tuple[int, int, int]:
    fields = FieldReader(data, tkhd.payload, tkhd.end, "tkhd")
    version, _ = fields.full_box_header(max_version=1)
    fields.uint(version, "creation_time")
    fields.uint(version, "modification_time")
    track_id = fields.u32("track_ID")
    if track_id == 0:
        raise FMP4Error("tkhd: track_ID 0")
    fields.skip(4, "reserved")
    fields.uint(version, "duration")
    fields.skip(52, "layer/alternate_group/volume/matrix")
    width = fields.u32("width") >> 16  # 16.16 fixed point
    return track_id, width, fields.u32("height") >> 16


def _parse_mdhd(data: bytes, mdhd: BoxHeader) -> int:
    fields = FieldReader(data, mdhd.payload, mdhd.end, "mdhd")
    version, _ = fields.full_box_header(max_version=1)
    fields.uint(version, "creation_time")
    fields.uint(version, "modification_time")
    timescale = fields.u32("timescale")
    if timescale == 0:
        raise FMP4Error("mdhd: timescale 0")
    return timescale


def _parse_hdlr(data: bytes, hdlr: BoxHeader) -> bytes:
    fields = FieldReader(data, hdlr.payload, hdlr.end, "hdlr")
    fields.full_box_header()
    fields.u32("pre_defined")
    return fields.raw(4, "handler_type")


def _first_sample_entry(data: bytes, stsd: BoxHeader) -> BoxHeader:
    fields = FieldReader(data, stsd.payload, stsd.end, "stsd")
    fields.full_box_header(max_version=1)
    if fields.u32("entry_count") == 0:
        raise FMP4Error("stsd: entry_count 0")
    for entry in iter_children(data, fields.pos, stsd.end, "stsd"):
        return entry
    raise FMP4Error("stsd: no sample entry")


def _parse_visual_entry(data: bytes, entry: BoxHeader) -> tuple[int, int, dict[bytes, BoxHeader]]:
    name = fourcc(entry.type)
    fields = FieldReader(data, entry.payload, entry.end, name)
    fields.skip(VISUAL_ENTRY_PREFIX, "reserved")
    width = fields.u16("width")
    height = fields.u16("height")
    fields.skip(VISUAL_ENTRY_SUFFIX, "compressorname")
    return width, height, _children(data, fields.pos, entry.end, name)


def _parse_audio_entry(data: bytes, entry: BoxHeader) -> tuple[int, int, dict[bytes, BoxHeader]]:
    name = fourcc(entry.type)
    fields = FieldReader(data, entry.payload, entry.end, name)
    fields.skip(8, "reserved/data_reference_index")
    version = fields.u16("entry_version")
    fields.skip(6, "revision/vendor")
    channels = fields.u16("channelcount")
    fields.skip(6, "samplesize/pre_defined/reserved")
    sample_rate = fields.u32("samplerate") >> 16  # 16.16 fixed point
    if version == 1:
        fields.skip(AUDIO_V1_EXTENSION, "sound description v1")
    elif version != 0:
        raise FMP4Error(f"{name}: unsupported audio sample entry version {version}")
    config = _children(data, fields.pos, entry.end, name)
    if b"esds" not in config and b"wave" in config:  # QuickTime v1 tucks esds into wave
        wave = config[b"wave"]
        config = _children(data, wave.payload, wave.end, f"{name}/wave")
    return sample_rate, channels, config


def _codec(data: bytes, entry_type: bytes, config: dict[bytes, BoxHeader]) -> str:
    entry = fourcc(entry_type)
    if entry_type == b"Opus":
        return "opus"
    box_type = CONFIG_BOX.get(entry_type)
    if box_type is None:
        return entry
    if box_type not in config:
        raise FMP4Error(f"{entry} sample entry: no {fourcc(box_type)}")
    payload = _payload(data, config[box_type])
    if box_type == b"avcC":
        return avc_codec(entry, payload)
    if box_type == b"hvcC":
        return hevc_codec(entry, payload)
    if box_type == b"av1C":
        return av1_codec(entry, payload)
    return mp4a_codec(payload)


def _configured_channels(
    data: bytes, entry_type: bytes, config: dict[bytes, BoxHeader]
) -> int | None:
    """The channel count the codec configuration states, if it states one."""
    if entry_type == b"mp4a" and b"esds" in config:
        return mp4a_channels(_payload(data, config[b"esds"]))
    if entry_type == b"Opus" and b"dOps" in config:
        return opus_channels(_payload(data, config[b"dOps"]))
    return None


def _payload(data: bytes, header: BoxHeader) -> bytes:
    return data[header.payload : header.end]
