"""Fragmented MP4 (ISO BMFF), sans-IO: what Sender's packager reads from ffmpeg's pipe.

Owns reading a live fMP4 stream into an ``InitSegment`` (ftyp+moov: tracks, timescales, RFC 6381
codec strings) and ``Fragment`` values (moof+mdat: per-track decode time, duration, sample sizes,
whether the first sample is a keyframe), each carrying its bytes exactly as read; and a tiny box
writer. Every malformed input raises ``FMP4Error``.

Modules: ``boxes`` (framing, field reads, writer), ``codecs`` (codec strings), ``init``
(moov), ``fragment`` (moof), ``reader`` (the incremental stream reader).
"""

from .boxes import box, full_box
from .errors import FMP4Error
from .fragment import Fragment, TrackFragment, is_sync_sample
from .init import InitSegment, Track
from .reader import FMP4Reader

__all__ = [
    "FMP4Error",
    "FMP4Reader",
    "Fragment",
    "InitSegment",
    "Track",
    "TrackFragment",
    "box",
    "full_box",
    "is_sync_sample",
]
