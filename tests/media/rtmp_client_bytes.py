"""What a publisher would send, built by hand for table tests, and helpers to read
what the server answered. Independent of the server's own encoders where the test
is about those encoders (handshake digests, chunk headers)."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from daemons.media import amf0
from daemons.media.rtmp import NEED_DATA, ConnectionClosed, PublishRequest, ServerConnection
from daemons.media.rtmp.chunk import ChunkReader

FP_KEY = b"Genuine Adobe Flash Player 001"
FMS_KEY = b"Genuine Adobe Flash Media Server 001"
KEY_TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")


def digest_pos(packet: bytes, scheme: int) -> int:
    base = 8 if scheme == 0 else 772
    return base + 4 + (packet[base] + packet[base + 1] + packet[base + 2] + packet[base + 3]) % 728


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def simple_c0c1() -> bytes:
    return b"\x03" + bytes(8) + os.urandom(1528)


def digest_c1(scheme: int) -> tuple[bytes, bytes]:
    """A Flash Player 9 style C1 (version 9.0.124.2, as ffmpeg sends) and its digest."""
    c1 = bytearray(b"\x00\x00\x00\x00\x09\x00\x7c\x02" + os.urandom(1528))
    pos = digest_pos(c1, scheme)
    digest = hmac_sha256(FP_KEY, bytes(c1[:pos] + c1[pos + 32 :]))
    c1[pos : pos + 32] = digest
    return bytes(c1), digest


def c2() -> bytes:
    return os.urandom(1536)


def basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes([(fmt << 6) | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([(fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])


def header(
    fmt: int,
    csid: int,
    ts: int = 0,
    length: int = 0,
    type_id: int = 0,
    stream_id: int = 0,
    ext: int | None = None,
) -> bytes:
    """A chunk header written field by field; ``ext`` forces an extended timestamp value."""
    out = basic_header(fmt, csid)
    field = 0xFFFFFF if ext is not None else ts
    if fmt <= 2:
        out += field.to_bytes(3, "big")
    if fmt <= 1:
        out += length.to_bytes(3, "big") + bytes([type_id])
    if fmt == 0:
        out += struct.pack("<I", stream_id)
    if ext is not None:
        out += struct.pack(">I", ext)
    return out


def message(
    type_id: int,
    payload: bytes,
    *,
    csid: int = 3,
    stream_id: int = 0,
    ts: int = 0,
    chunk_size: int = 128,
) -> bytes:
    """A message as fmt 0 + fmt 3 chunks."""
    ext = ts if ts >= 0xFFFFFF else None
    out = header(0, csid, ts, len(payload), type_id, stream_id, ext)
    out += payload[:chunk_size]
    for i in range(chunk_size, len(payload), chunk_size):
        out += header(3, csid, ext=ext) + payload[i : i + chunk_size]
    return out


def command(
    name: str, txid: float, obj: object = None, *args: object, stream_id: int = 0, csid: int = 3
) -> bytes:
    return message(20, amf0.encode_values(name, txid, obj, *args), csid=csid, stream_id=stream_id)


def set_chunk_size(size: int) -> bytes:
    return message(1, struct.pack(">I", size), csid=2)


CONNECT = command(
    "connect",
    1.0,
    {"app": "live", "type": "nonprivate", "flashVer": "FMLE/3.0", "tcUrl": "rtmp://h/live"},
)


def publish_preamble(name: str = "somekey") -> bytes:
    """Handshake, connect, releaseStream, FCPublish, createStream, publish (ffmpeg's order)."""
    return (
        simple_c0c1()
        + c2()
        + CONNECT
        + command("releaseStream", 2.0, None, name)
        + command("FCPublish", 3.0, None, name)
        + command("createStream", 4.0, None)
        + command("publish", 5.0, None, name, "live", stream_id=1, csid=8)
    )


def drain(conn: ServerConnection) -> list:
    """Events until NEED_DATA, a PublishRequest (which needs an answer) or the close."""
    events = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, (PublishRequest, ConnectionClosed)):
            break
    return events


def publishing_connection(**kwargs) -> ServerConnection:
    """A connection that has accepted a publish of 'somekey' on stream 1."""
    conn = ServerConnection(**kwargs)
    conn.receive_data(publish_preamble())
    drain(conn)
    conn.accept_publish()
    conn.data_to_send()
    return conn


class ServerOutput:
    """Reads the server's answers (after S0-S2) as messages, tracking its chunk size."""

    def __init__(self) -> None:
        self.reader = ChunkReader(
            max_chunk_size=1 << 20, max_message_size=1 << 24, max_chunk_streams=64
        )
        self.buf = bytearray()
        self.skip = 0

    def feed(self, data: bytes) -> list:
        self.buf += data
        out = []
        pos = 0
        while True:
            new_pos, msg = self.reader.read_chunk(self.buf, pos)
            if new_pos == pos:
                break
            pos = new_pos
            if msg is not None:
                if msg.type_id == 1:
                    self.reader.set_chunk_size(struct.unpack(">I", msg.payload)[0])
                out.append(msg)
        del self.buf[:pos]
        return out


def commands_in(messages: list) -> list[list]:
    return [amf0.decode_values(msg.payload) for msg in messages if msg.type_id == 20]
