"""Sans-IO RTMP, server side: enough of the protocol to serve publishers.

Feed bytes to a ``ServerConnection``, take events out, send what it queues::

    conn = ServerConnection(limits=Limits())
    conn.receive_data(data)            # b"" on EOF
    while (event := conn.next_event()) is not NEED_DATA:
        ...                            # PublishRequest -> conn.accept_publish()
    sock.send(conn.data_to_send())

Modules by concern: ``handshake``, ``chunk`` (chunk stream reader/writer),
``messages`` (type ids, protocol control and command messages; their values are
AMF0, ``daemons.media.amf0``), ``events``, ``connection``; ``errors`` holds the one
exception.
"""

from .connection import (
    NEED_DATA,
    TRANSITIONS,
    ConnectionState,
    Input,
    Limits,
    ServerConnection,
)
from .errors import RTMPProtocolError
from .events import (
    AudioData,
    Connect,
    ConnectionClosed,
    Event,
    Metadata,
    PublishRequest,
    Unpublish,
    UnreadableMedia,
    VideoData,
)

__all__ = [
    "NEED_DATA",
    "TRANSITIONS",
    "AudioData",
    "Connect",
    "ConnectionClosed",
    "ConnectionState",
    "Event",
    "Input",
    "Limits",
    "Metadata",
    "PublishRequest",
    "RTMPProtocolError",
    "ServerConnection",
    "Unpublish",
    "UnreadableMedia",
    "VideoData",
]
