"""The RTMP chunk stream: messages cut into chunks and interleaved by chunk stream id.

A chunk is a basic header (format + chunk stream id in 1, 2 or 3 bytes), a
message header whose size the format picks, an optional extended timestamp and
up to ``chunk_size`` bytes of body:

* fmt 0 (11 bytes): timestamp, length, type id, message stream id — absolute;
* fmt 1 (7 bytes): timestamp delta, length, type id — same message stream;
* fmt 2 (3 bytes): timestamp delta — same length, type and stream;
* fmt 3 (none): continues the message in progress, or starts a new one that
  repeats the previous header including its delta. After a fmt 0 header that
  delta is the fmt 0 timestamp itself (RTMP 1.0 spec, 5.3.1.2.4).

A 24-bit timestamp field of 0xFFFFFF means a 4-byte extended timestamp follows;
it then also follows every fmt 3 chunk of that chunk stream until a new header.

``ChunkReader`` parses chunks out of a caller-owned ``bytearray`` at an offset,
so the connection keeps one receive buffer and never re-slices it per chunk.
Limits are checked as soon as a header is complete, before any byte of the
body is kept.
``ChunkWriter`` emits fmt 0 then fmt 3 chunks: what the server sends is a
handful of small messages, and a full header is read the same way by every peer.
"""

from __future__ import annotations

import struct

from .errors import RTMPProtocolError
from .messages import Message

DEFAULT_CHUNK_SIZE = 128
MAX_CSID = 65599
EXTENDED_TIMESTAMP = 0xFFFFFF
# Largest chunk header: 3-byte basic header, 11-byte fmt 0 header, extended timestamp.
MAX_HEADER_SIZE = 18

_U32 = struct.Struct(">I")
_U32_LE = struct.Struct("<I")
_MESSAGE_HEADER_SIZE = (11, 7, 3, 0)


class _ChunkStream:
    """What a chunk stream remembers from its previous header, and its message in progress."""

    __slots__ = ("timestamp", "delta", "length", "type_id", "stream_id", "extended", "partial")

    def __init__(self) -> None:
        self.timestamp = 0  # 32-bit wire timestamp of the current/last message
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False
        self.partial: bytearray | None = None


class ChunkReader:
    """Reassembles messages from inbound chunks."""

    def __init__(
        self, *, max_chunk_size: int, max_message_size: int, max_chunk_streams: int
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._max_chunk_size = max_chunk_size
        self._max_message_size = max_message_size
        self._max_chunk_streams = max_chunk_streams
        self._streams: dict[int, _ChunkStream] = {}
        # Sum of the announced lengths of messages in progress on all chunk streams:
        # bounds reassembly memory as a whole, not per chunk stream.
        self._announced_partial = 0
        self.partial_bytes = 0

    def set_chunk_size(self, size: int) -> None:
        if size > self._max_chunk_size:
            raise RTMPProtocolError(
                f"peer chunk size {size} exceeds the limit of {self._max_chunk_size}"
            )
        self.chunk_size = size

    def abort(self, csid: int) -> None:
        """Drop the message in progress on ``csid`` (an Abort message)."""
        stream = self._streams.get(csid)
        if stream is not None and stream.partial is not None:
            self._announced_partial -= stream.length
            self.partial_bytes -= len(stream.partial)
            stream.partial = None

    def read_chunk(self, buf: bytearray, pos: int) -> tuple[int, Message | None]:
        """Parse one chunk at ``buf[pos:]``.

        Returns the offset after it and the message it completed, if any. An
        unchanged offset means the chunk is not all there yet; nothing changed.
        """
        end = len(buf)
        if pos >= end:
            return pos, None
        b0 = buf[pos]
        fmt = b0 >> 6
        csid = b0 & 0x3F
        p = pos + 1
        if csid == 0:
            if end - p < 1:
                return pos, None
            csid = 64 + buf[p]
            p += 1
        elif csid == 1:
            if end - p < 2:
                return pos, None
            csid = 64 + buf[p] + (buf[p + 1] << 8)
            p += 2

        if end - p < _MESSAGE_HEADER_SIZE[fmt]:
            return pos, None
        stream = self._streams.get(csid)
        if stream is None:
            if fmt != 0:
                raise RTMPProtocolError(
                    f"chunk stream {csid} starts with a fmt {fmt} header, not fmt 0"
                )
            if len(self._streams) >= self._max_chunk_streams:
                raise RTMPProtocolError(
                    f"more than {self._max_chunk_streams} chunk streams (max_chunk_streams)"
                )

        if fmt == 3:
            extended = stream.extended
            if extended:
                if end - p < 4:
                    return pos, None
                ext = _U32.unpack_from(buf, p)[0]
                p += 4
            if stream.partial is not None:
                return self._continue(pos, stream, buf, p)
            # A new message repeating the previous header (and its delta).
            delta = ext if extended else stream.delta
            timestamp = (stream.timestamp + delta) & 0xFFFFFFFF
            return self._start(
                pos,
                csid,
                stream,
                buf,
                p,
                timestamp,
                delta,
                stream.length,
                stream.type_id,
                stream.stream_id,
                extended,
            )

        field = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
        if fmt == 2:
            length, type_id, stream_id = stream.length, stream.type_id, stream.stream_id
            p += 3
        else:
            length = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
            type_id = buf[p + 6]
            if fmt == 0:
                stream_id = _U32_LE.unpack_from(buf, p + 7)[0]
                p += 11
            else:
                stream_id = stream.stream_id
                p += 7
        extended = field == EXTENDED_TIMESTAMP
        if extended:
            if end - p < 4:
                return pos, None
            field = _U32.unpack_from(buf, p)[0]
            p += 4
        if stream is not None and stream.partial is not None:
            raise RTMPProtocolError(
                f"fmt {fmt} header on chunk stream {csid} while a message is incomplete"
            )
        # fmt 0 carries the absolute timestamp, which a following fmt 3 reuses as its delta.
        timestamp = field if fmt == 0 else (stream.timestamp + field) & 0xFFFFFFFF
        return self._start(
            pos, csid, stream, buf, p, timestamp, field, length, type_id, stream_id, extended
        )

    def _start(
        self,
        pos: int,
        csid: int,
        stream: _ChunkStream | None,
        buf: bytearray,
        p: int,
        timestamp: int,
        delta: int,
        length: int,
        type_id: int,
        stream_id: int,
        extended: bool,
    ) -> tuple[int, Message | None]:
        """Begin a message whose header ends at ``p``; ``pos`` is where the chunk began."""
        if length > self._max_message_size:
            raise RTMPProtocolError(
                f"message of {length} bytes (type {type_id}) on chunk stream {csid} exceeds "
                f"max_message_size {self._max_message_size}"
            )
        chunk_size = self.chunk_size
        whole = length <= chunk_size
        if not whole and self._announced_partial + length > self._max_message_size:
            raise RTMPProtocolError(
                f"messages in progress on all chunk streams would exceed max_message_size "
                f"{self._max_message_size}"
            )
        body = length if whole else chunk_size
        if len(buf) - p < body:
            return pos, None

        if stream is None:
            stream = self._streams[csid] = _ChunkStream()
        stream.timestamp = timestamp
        stream.delta = delta
        stream.length = length
        stream.type_id = type_id
        stream.stream_id = stream_id
        stream.extended = extended
        if whole:
            return p + body, Message(type_id, stream_id, timestamp, bytes(buf[p : p + body]))
        stream.partial = buf[p : p + body]
        self._announced_partial += length
        self.partial_bytes += body
        return p + body, None

    def _continue(
        self, pos: int, stream: _ChunkStream, buf: bytearray, p: int
    ) -> tuple[int, Message | None]:
        partial = stream.partial
        body = min(self.chunk_size, stream.length - len(partial))
        if len(buf) - p < body:
            return pos, None
        partial += buf[p : p + body]
        self.partial_bytes += body
        p += body
        if len(partial) < stream.length:
            return p, None
        stream.partial = None
        self._announced_partial -= stream.length
        self.partial_bytes -= stream.length
        return p, Message(stream.type_id, stream.stream_id, stream.timestamp, bytes(partial))


def encode_basic_header(fmt: int, csid: int) -> bytes:
    """The 1-, 2- or 3-byte basic header for a chunk stream id in 2..65599."""
    if csid < 2 or csid > MAX_CSID:
        raise ValueError(f"chunk stream id {csid} outside 2..{MAX_CSID}")
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    return bytes(((fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))


def encode_chunk_header(
    fmt: int,
    csid: int,
    *,
    timestamp: int = 0,
    length: int = 0,
    type_id: int = 0,
    stream_id: int = 0,
    extended: bool | None = None,
) -> bytes:
    """Encode any chunk header. ``timestamp`` is the absolute timestamp for fmt 0 and
    the delta for fmt 1/2; for fmt 3, pass ``extended=True`` with the value to repeat."""
    out = bytearray(encode_basic_header(fmt, csid))
    if extended is None:
        extended = timestamp >= EXTENDED_TIMESTAMP
    if fmt < 3:
        out += (EXTENDED_TIMESTAMP if extended else timestamp).to_bytes(3, "big")
    if fmt < 2:
        out += length.to_bytes(3, "big") + bytes((type_id,))
    if fmt == 0:
        out += _U32_LE.pack(stream_id)
    if extended:
        out += _U32.pack(timestamp & 0xFFFFFFFF)
    return bytes(out)


class ChunkWriter:
    """Cuts outbound messages into chunks of ``chunk_size``."""

    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE

    def write(self, out: bytearray, csid: int, message: Message) -> None:
        payload = message.payload
        timestamp = message.timestamp & 0xFFFFFFFF
        extended = timestamp >= EXTENDED_TIMESTAMP
        out += encode_chunk_header(
            0,
            csid,
            timestamp=timestamp,
            length=len(payload),
            type_id=message.type_id,
            stream_id=message.stream_id,
        )
        size = self.chunk_size
        out += payload[:size]
        if len(payload) > size:
            continuation = encode_chunk_header(3, csid, timestamp=timestamp, extended=extended)
            for offset in range(size, len(payload), size):
                out += continuation
                out += payload[offset : offset + size]
