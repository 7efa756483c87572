"""What a ``ServerConnection`` tells the application, one frozen value per event.

Timestamps are absolute milliseconds on the publisher's message stream,
unwrapped past 2**32 (plain Python ints). ``payload`` is the RTMP message body,
which is exactly an FLV tag body.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Connect:
    """The peer sent ``connect``; the server already answered Connect.Success."""

    app: str
    tc_url: str
    params: dict = field(repr=False)


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
    timestamp: int
    payload: bytes = field(repr=False)
    is_sequence_header: bool


@dataclass(frozen=True, slots=True)
class VideoData:
    timestamp: int
    payload: bytes = field(repr=False)
    is_keyframe: bool
    is_sequence_header: bool


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


Event = Connect | PublishRequest | Metadata | AudioData | VideoData | Unpublish | ConnectionClosed
