"""What a ``ServerConnection`` tells the application, one frozen value per event.

Timestamps are absolute milliseconds on the publisher's message stream,
unwrapped past 2**32 (plain Python ints). ``payload`` is the RTMP message body,
which is exactly an FLV tag body; ``header`` is its tag header, decoded once here
(``daemons.media.flv``) for everything downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..flv import TAG_AUDIO, TAG_VIDEO, AudioTagHeader, VideoTagHeader


@dataclass(frozen=True, slots=True)
class Connect:
    """The peer sent ``connect``; the server already answered Connect.Success.

    ``fourcc_list`` is the Enhanced RTMP ``fourCcList`` the peer declared (None if it sent none).
    """

    app: str
    tc_url: str
    params: dict = field(repr=False)
    fourcc_list: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """The peer wants to publish; answer with ``accept_publish`` or ``reject_publish``.

    ``stream_name`` is the part of the published name before any '?', ``query``
    the part after it ("" if none).
    """

    stream_name: str
    publish_type: str
    stream_id: int
    query: str = ""


@dataclass(frozen=True, slots=True)
class Metadata:
    """@setDataFrame/onMetaData: the ECMA array (or object) as a dict."""

    data: dict


@dataclass(frozen=True, slots=True)
class AudioData:
    tag_type: ClassVar[int] = TAG_AUDIO  # the FLV tag this body is, when written to FLV
    timestamp: int
    payload: bytes = field(repr=False)
    header: AudioTagHeader

    @property
    def is_sequence_header(self) -> bool:
        return self.header.is_sequence_header


@dataclass(frozen=True, slots=True)
class VideoData:
    tag_type: ClassVar[int] = TAG_VIDEO
    timestamp: int
    payload: bytes = field(repr=False)
    header: VideoTagHeader

    @property
    def is_keyframe(self) -> bool:
        return self.header.is_keyframe

    @property
    def is_sequence_header(self) -> bool:
        return self.header.is_sequence_header


@dataclass(frozen=True, slots=True)
class UnreadableMedia:
    """An audio or video message whose tag header does not decode; it is dropped, the
    connection goes on (one bad packet never ends a publish)."""

    timestamp: int
    media: str  # "audio" | "video"
    reason: str


@dataclass(frozen=True, slots=True)
class Unpublish:
    """An accepted publish ended: FCUnpublish, deleteStream, closeStream, close() or EOF.

    Exactly once per accepted publish.
    """

    stream_name: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection is over; nothing follows."""

    reason: str


Event = (
    Connect | PublishRequest | Metadata | AudioData | VideoData | UnreadableMedia | Unpublish
    | ConnectionClosed
)
