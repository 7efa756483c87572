"""RTMP messages: type ids, the reassembled ``Message``, and one decode/encode
pair per protocol control message, user control event and command.

Protocol control messages (types 1-6) travel on chunk stream 2, message stream 0,
and are tiny fixed-layout big-endian payloads. Commands (type 20, or 17 for the
AMF3 wrapper) are AMF0 values: name, transaction id, command object, arguments.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .. import amf0
from .errors import RTMPProtocolError

SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
AMF3_DATA = 15
AMF3_SHARED_OBJECT = 16
AMF3_COMMAND = 17
AMF0_DATA = 18
AMF0_SHARED_OBJECT = 19
AMF0_COMMAND = 20
AGGREGATE = 22

# User control event types (payload: u16 event type, then event data).
STREAM_BEGIN = 0
STREAM_EOF = 1
STREAM_DRY = 2
SET_BUFFER_LENGTH = 3
STREAM_IS_RECORDED = 4
PING_REQUEST = 6
PING_RESPONSE = 7

# Set Peer Bandwidth limit types.
LIMIT_HARD = 0
LIMIT_SOFT = 1
LIMIT_DYNAMIC = 2

# Conventional chunk stream ids for what the server sends.
CSID_PROTOCOL_CONTROL = 2
CSID_COMMAND = 3
CSID_STREAM = 5

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_U16_U32 = struct.Struct(">HI")
_U32_U8 = struct.Struct(">IB")


@dataclass(frozen=True, slots=True)
class Message:
    """One reassembled RTMP message; ``timestamp`` is the 32-bit wire value."""

    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


def _u32_payload(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise RTMPProtocolError(f"{what} message has {len(payload)} bytes, needs 4")
    return _U32.unpack_from(payload)[0]


def decode_set_chunk_size(payload: bytes) -> int:
    size = _u32_payload(payload, "Set Chunk Size")
    if size & 0x80000000:
        raise RTMPProtocolError(f"Set Chunk Size 0x{size:08x} has the reserved top bit set")
    if size == 0:
        raise RTMPProtocolError("Set Chunk Size 0")
    return size


def encode_set_chunk_size(size: int) -> Message:
    return Message(SET_CHUNK_SIZE, 0, 0, _U32.pack(size))


def decode_abort(payload: bytes) -> int:
    """The chunk stream id whose partial message is to be dropped."""
    return _u32_payload(payload, "Abort")


def decode_acknowledgement(payload: bytes) -> int:
    return _u32_payload(payload, "Acknowledgement")


def encode_acknowledgement(sequence_number: int) -> Message:
    return Message(ACKNOWLEDGEMENT, 0, 0, _U32.pack(sequence_number & 0xFFFFFFFF))


def decode_window_ack_size(payload: bytes) -> int:
    size = _u32_payload(payload, "Window Acknowledgement Size")
    if size == 0:
        raise RTMPProtocolError("Window Acknowledgement Size 0")
    return size


def encode_window_ack_size(size: int) -> Message:
    return Message(WINDOW_ACK_SIZE, 0, 0, _U32.pack(size))


def decode_set_peer_bandwidth(payload: bytes) -> tuple[int, int]:
    """(window size, limit type)."""
    if len(payload) < 5:
        raise RTMPProtocolError(f"Set Peer Bandwidth message has {len(payload)} bytes, needs 5")
    return _U32_U8.unpack_from(payload)


def encode_set_peer_bandwidth(size: int, limit_type: int = LIMIT_DYNAMIC) -> Message:
    return Message(SET_PEER_BANDWIDTH, 0, 0, _U32_U8.pack(size, limit_type))


def decode_user_control(payload: bytes) -> tuple[int, bytes]:
    """(event type, event data)."""
    if len(payload) < 2:
        raise RTMPProtocolError(f"User Control message has {len(payload)} bytes, needs 2+")
    return _U16.unpack_from(payload)[0], payload[2:]


def encode_user_control(event_type: int, value: int) -> Message:
    """A user control event with one u32 argument (a stream id or a ping timestamp)."""
    return Message(USER_CONTROL, 0, 0, _U16_U32.pack(event_type, value & 0xFFFFFFFF))


@dataclass(frozen=True, slots=True)
class Command:
    """A decoded command message: ``name(transaction_id, command_object, *args)``."""

    name: str
    transaction_id: float
    command_object: object
    args: tuple


def decode_command(message: Message, *, max_depth: int, max_items: int) -> Command:
    try:
        if message.type_id == AMF3_COMMAND:
            values = amf0.decode_amf3_wrapped(message.payload, max_depth=max_depth, max_items=max_items)
        else:
            values = amf0.decode_values(message.payload, max_depth=max_depth, max_items=max_items)
    except amf0.AMF0Error as exc:
        raise RTMPProtocolError(str(exc)) from exc
    if len(values) < 2 or not isinstance(values[0], str) or not isinstance(values[1], float):
        raise RTMPProtocolError("command message does not start with a name and a transaction id")
    command_object = values[2] if len(values) > 2 else None
    return Command(values[0], values[1], command_object, tuple(values[3:]))


def encode_command(
    name: str, transaction_id: float, command_object: object, *args: object, stream_id: int = 0
) -> Message:
    payload = amf0.encode_values(name, transaction_id, command_object, *args)
    return Message(AMF0_COMMAND, stream_id, 0, payload)


def decode_data(message: Message, *, max_depth: int, max_items: int) -> list:
    """The AMF0 values of a data message (type 18, or 15 with the AMF3 wrapper byte)."""
    payload = message.payload
    # Type 15 bodies usually carry the 0x00 format byte; a data body never starts
    # with a number, so a leading 0x00 can only be that byte.
    offset = 1 if message.type_id == AMF3_DATA and payload[:1] == b"\x00" else 0
    try:
        return amf0.decode_values(payload, offset, max_depth=max_depth, max_items=max_items)
    except amf0.AMF0Error as exc:
        raise RTMPProtocolError(str(exc)) from exc
