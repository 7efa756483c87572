"""Fragmented MP4 (ISO BMFF), sans-IO: what Sender's packager reads from ffmpeg's pipe, and what
Sender writes itself from RTMP media.

Owns reading a live fMP4 stream into an ``InitSegment`` (ftyp+moov: tracks, timescales, RFC 6381
codec strings) and ``Fragment`` values (moof+mdat: per-track decode time, duration, sample sizes,
whether the first sample is a keyframe), each carrying its bytes exactly as read; and writing
those same values from FLV-level media (configuration records, frames with millisecond
timestamps). Every malformed input raises ``FMP4Error``.

Modules: ``boxes`` (framing, field reads, writer), ``codecs`` (codec strings), ``init``
(moov), ``fragment`` (moof), ``reader`` (the incremental stream reader), ``records`` (codec
configuration records as FLV carries them: codec strings, picture sizes, frame checks),
``writer`` (init segments and fragments from records and frames).
"""

from .boxes import box, full_box
from .errors import FMP4Error
from .fragment import Fragment, TrackFragment, is_sync_sample
from .init import InitSegment, Track
from .reader import FMP4Reader
from .records import (
    AudioConfig,
    CodecConfigError,
    VideoConfig,
    parse_audio_config,
    parse_video_config,
)
from .writer import AudioTiming, FMP4Writer, Remuxer, Sample, VideoTiming

__all__ = [
    "AudioConfig",
    "AudioTiming",
    "CodecConfigError",
    "FMP4Error",
    "FMP4Reader",
    "FMP4Writer",
    "Fragment",
    "InitSegment",
    "Remuxer",
    "Sample",
    "Track",
    "TrackFragment",
    "VideoConfig",
    "VideoTiming",
    "box",
    "full_box",
    "is_sync_sample",
    "parse_audio_config",
    "parse_video_config",
]
