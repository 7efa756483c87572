"""``ServerConnection``: one publisher's RTMP connection as a sans-IO state machine.

The caller owns the socket. It feeds received bytes with ``receive_data`` (b""
for EOF), pulls events with ``next_event`` until ``NEED_DATA``, answers a
``PublishRequest`` with ``accept_publish``/``reject_publish``, and writes
whatever ``data_to_send`` returns. Nothing here blocks, sleeps or reads a clock:
the timeouts in ``Limits`` are carried for the caller's I/O loop to enforce.

The connection answers on its own what every publisher waits for (handshake,
connect, releaseStream, FCPublish, createStream, pings, acknowledgements) and
leaves to the application only the decision that needs it: who may publish.

Everything that moves the connection from one ``ConnectionState`` to another is
in ``TRANSITIONS`` (as h11's ``_state.py``): a move the table does not hold raises
what the peer (``RTMPProtocolError``) or the application (``RuntimeError``) did
wrong. Each audio/video message's tag header is decoded here, once
(``daemons.media.flv``); the events carry it.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

from .. import flv
from . import handshake
from . import messages as m
from .chunk import ChunkReader, ChunkWriter
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


@dataclass(frozen=True)
class Limits:
    """Bounds on what a peer can make the connection hold or do."""

    max_chunk_size: int = 65536  # largest Set Chunk Size accepted (the spec allows 2**31-1)
    max_message_size: int = 8 * 1024 * 1024  # one message, and all partial messages together
    max_chunk_streams: int = 64  # distinct chunk stream ids a peer may use
    max_message_streams: int = 8  # createStream calls a peer may make
    max_amf_depth: int = 32  # nesting of AMF0 objects/arrays
    max_amf_items: int = 4096  # AMF0 values in one message
    handshake_timeout_s: float = 10.0  # enforced by the caller's I/O loop
    idle_timeout_s: float = 30.0  # enforced by the caller's I/O loop

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"Limits.{name} must be positive, not {value}")


class ConnectionState(enum.Enum):
    HANDSHAKE = "handshake"  # waiting for C0+C1
    HANDSHAKE_ACK = "handshake_ack"  # S0+S1+S2 sent, waiting for C2
    CONNECTING = "connecting"  # waiting for the connect command
    CONNECTED = "connected"
    PUBLISH_REQUESTED = "publish_requested"  # waiting for accept_publish/reject_publish
    PUBLISHING = "publishing"
    CLOSED = "closed"
    ERROR = "error"


class Input(enum.Enum):
    """What moves a connection: the peer's bytes and commands, the application's answers."""

    C0_C1 = "C0+C1"
    C2 = "C2"
    CONNECT = "connect"
    COMMAND = "command"  # any other command (releaseStream, createStream, ...): the state stays
    PUBLISH = "publish"
    ACCEPT = "accept_publish"  # the application's answer to a PublishRequest
    REJECT = "reject_publish"
    UNPUBLISH = "unpublish"  # FCUnpublish, deleteStream or closeStream of the published stream
    CLOSE = "close"  # end of input, or close() by the application
    FAIL = "protocol error"


S, I = ConnectionState, Input
_LIVE = (S.HANDSHAKE, S.HANDSHAKE_ACK, S.CONNECTING, S.CONNECTED, S.PUBLISH_REQUESTED, S.PUBLISHING)

TRANSITIONS: dict[tuple[ConnectionState, Input], ConnectionState] = {
    (S.HANDSHAKE, I.C0_C1): S.HANDSHAKE_ACK,
    (S.HANDSHAKE_ACK, I.C2): S.CONNECTING,
    (S.CONNECTING, I.CONNECT): S.CONNECTED,
    (S.CONNECTED, I.COMMAND): S.CONNECTED,
    (S.CONNECTED, I.PUBLISH): S.PUBLISH_REQUESTED,
    (S.PUBLISH_REQUESTED, I.ACCEPT): S.PUBLISHING,
    (S.PUBLISH_REQUESTED, I.REJECT): S.CONNECTED,
    (S.PUBLISHING, I.COMMAND): S.PUBLISHING,
    (S.PUBLISHING, I.UNPUBLISH): S.CONNECTED,
    **{(s, I.CLOSE): S.CLOSED for s in _LIVE},
    **{(s, I.FAIL): S.ERROR for s in _LIVE},
}
"""(state, input) → the next state. Media is taken only while PUBLISHING; an unpublish of
nothing published, and close() once closed, are no-ops; every other pair not here raises."""

# Why a peer's move the table does not hold is wrong, by input (before connect: any command).
_PEER_ERRORS = {
    I.CONNECT: "second connect on one connection",
    I.PUBLISH: "publish while already publishing",
}
del S, I


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
"""Returned by ``next_event`` when more bytes must be received first."""

SERVER_CHUNK_SIZE = 4096
SERVER_WINDOW_ACK_SIZE = 2_500_000
_FMS_PROPERTIES = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0, "mode": 1.0}
_U32_WRAP = 1 << 32
_HALF_WRAP = 1 << 31


class ServerConnection:
    """The server side of one RTMP connection whose peer publishes."""

    def __init__(self, limits: Limits | None = None, *, fourccs: Collection[str] = ()) -> None:
        """``fourccs``: the Enhanced RTMP codecs (FourCCs) the application takes; a peer that
        declares a ``fourCcList`` in connect is answered with the ones of its list among them."""
        self.limits = limits = limits or Limits()
        self.fourccs = tuple(fourccs)
        self._state = ConnectionState.HANDSHAKE
        # Received bytes not yet parsed live in _buf[_pos:]; parsing moves _pos
        # and the parsed prefix is dropped once per next_event call.
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._error: RTMPProtocolError | None = None
        self._closed_event: ConnectionClosed | None = None
        self._reader = ChunkReader(
            max_chunk_size=limits.max_chunk_size,
            max_message_size=limits.max_message_size,
            max_chunk_streams=limits.max_chunk_streams,
        )
        self._writer = ChunkWriter()
        self._bytes_received = 0
        self._bytes_parsed = 0
        self._peer_window: int | None = None
        self._last_ack = 0
        self._used_digest = False
        self._app: str | None = None
        self._tc_url: str | None = None
        self._message_streams: set[int] = set()
        self._next_stream_id = 1
        self._stream_name: str | None = None
        self._publish_stream_id = 0
        self._last_timestamp: dict[int, int] = {}

    # -- what the caller reads -------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def app(self) -> str | None:
        return self._app

    @property
    def tc_url(self) -> str | None:
        return self._tc_url

    @property
    def stream_name(self) -> str | None:
        """The name of the stream requested or being published (before any '?')."""
        return self._stream_name

    @property
    def bytes_received(self) -> int:
        return self._bytes_received

    @property
    def buffered_bytes(self) -> int:
        """Bytes held: unparsed input plus partially reassembled messages."""
        return len(self._buf) - self._pos + self._reader.partial_bytes

    @property
    def used_digest_handshake(self) -> bool:
        """Whether the peer's C1 carried a Flash Player digest (and got one back)."""
        return self._used_digest

    # -- the caller's side of the I/O ------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means the peer closed its side."""
        if self._state in (ConnectionState.CLOSED, ConnectionState.ERROR):
            return
        if self._eof and data:
            raise RuntimeError("receive_data() after EOF")
        if not data:
            self._eof = True
            return
        self._buf += data
        self._bytes_received += len(data)

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | _NeedData:
        """Parse buffered bytes until one event is ready; ``NEED_DATA`` if none can be.

        After a ``PublishRequest``, answer it (accept or reject) before calling
        again: the peer is waiting for that answer, not sending. Once
        ``ConnectionClosed`` has been returned, it is returned on every call.
        """
        if self._error is not None:
            raise RTMPProtocolError(f"connection already failed: {self._error}")
        if self._state is ConnectionState.PUBLISH_REQUESTED:
            raise RuntimeError(
                "answer the PublishRequest with accept_publish() or reject_publish() first"
            )
        if not self._events:
            try:
                self._process()
            except RTMPProtocolError as exc:
                self._error = exc
                self._move(Input.FAIL)
                raise
        if self._events:
            return self._events.popleft()
        if self._closed_event is not None:
            return self._closed_event
        return NEED_DATA

    # -- the application's decisions ---------------------------------------------

    def accept_publish(self) -> None:
        """Let the requested publish start: Stream Begin + NetStream.Publish.Start."""
        self._require_publish_request("accept_publish")
        self._send(
            m.CSID_PROTOCOL_CONTROL, m.encode_user_control(m.STREAM_BEGIN, self._publish_stream_id)
        )
        self._send_status(
            "status", "NetStream.Publish.Start", f"{self._stream_name} is now published."
        )
        self._move(Input.ACCEPT)

    def reject_publish(
        self,
        code: str = "NetStream.Publish.BadName",
        description: str = "Publishing refused.",
    ) -> None:
        """Refuse the requested publish with an error onStatus; the connection stays up."""
        self._require_publish_request("reject_publish")
        self._send_status("error", code, description)
        self._move(Input.REJECT)
        self._stream_name = None

    def close(
        self, description: str = "Server closed the connection.", code: str = "NetStream.Failed"
    ) -> None:
        """End the connection from our side; tell a (would-be) publisher why first.

        Queues Unpublish (if publishing) and ConnectionClosed as the next events.
        """
        if (self._state, Input.CLOSE) not in TRANSITIONS:
            return  # already closed (or failed)
        if self._state in (ConnectionState.PUBLISHING, ConnectionState.PUBLISH_REQUESTED):
            self._send_status("error", code, description)
        self._finish(description)

    # -- parsing ---------------------------------------------------------------

    def _process(self) -> None:
        buf = self._buf
        reader = self._reader
        while not self._events:
            state = self._state
            pos = self._pos
            available = len(buf) - pos
            if state is ConnectionState.HANDSHAKE:
                if available:
                    handshake.check_c0(buf[pos])
                if available < 1 + handshake.PACKET_SIZE:
                    break
                response, self._used_digest = handshake.server_response(
                    bytes(buf[pos : pos + 1 + handshake.PACKET_SIZE])
                )
                self._out += response
                self._advance(1 + handshake.PACKET_SIZE)
                self._move(Input.C0_C1)
            elif state is ConnectionState.HANDSHAKE_ACK:
                # C2 echoes S1 (or signs S2); peers differ, and nothing depends on it.
                if available < handshake.PACKET_SIZE:
                    break
                self._advance(handshake.PACKET_SIZE)
                self._move(Input.C2)
            elif state is ConnectionState.CLOSED:
                break
            else:
                new_pos, message = reader.read_chunk(buf, pos)
                if new_pos == pos:
                    break
                self._advance(new_pos - pos)
                if message is not None:
                    self._on_message(message)
        if not self._events and self._eof and self._state is not ConnectionState.CLOSED:
            self._on_eof()
        del buf[: self._pos]
        self._pos = 0

    def _advance(self, n: int) -> None:
        self._pos += n
        self._bytes_parsed += n
        window = self._peer_window
        if window is not None and self._bytes_parsed - self._last_ack >= window:
            self._last_ack = self._bytes_parsed
            self._send(m.CSID_PROTOCOL_CONTROL, m.encode_acknowledgement(self._bytes_parsed))

    def _on_eof(self) -> None:
        leftover = len(self._buf) - self._pos + self._reader.partial_bytes
        if self._state in (ConnectionState.HANDSHAKE, ConnectionState.HANDSHAKE_ACK):
            reason = "peer closed the connection during the handshake"
        else:
            reason = "peer closed the connection"
        if leftover:
            reason += f" ({leftover} bytes of an incomplete message discarded)"
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self._state is ConnectionState.PUBLISHING:
            self._events.append(Unpublish(self._stream_name or ""))
        self._move(Input.CLOSE)
        self._closed_event = ConnectionClosed(reason)
        self._events.append(self._closed_event)

    def _on_message(self, message: m.Message) -> None:
        type_id = message.type_id
        if type_id == m.VIDEO or type_id == m.AUDIO:
            self._on_media(message)
        elif type_id == m.AMF0_COMMAND or type_id == m.AMF3_COMMAND:
            command = m.decode_command(
                message, max_depth=self.limits.max_amf_depth, max_items=self.limits.max_amf_items
            )
            self._on_command(command, message.stream_id)
        elif type_id == m.AMF0_DATA or type_id == m.AMF3_DATA:
            self._on_data(message)
        elif type_id == m.SET_CHUNK_SIZE:
            self._reader.set_chunk_size(m.decode_set_chunk_size(message.payload))
        elif type_id == m.ABORT:
            self._reader.abort(m.decode_abort(message.payload))
        elif type_id == m.ACKNOWLEDGEMENT:
            m.decode_acknowledgement(message.payload)  # we do not throttle on the peer's acks
        elif type_id == m.WINDOW_ACK_SIZE:
            self._peer_window = m.decode_window_ack_size(message.payload)
        elif type_id == m.SET_PEER_BANDWIDTH:
            m.decode_set_peer_bandwidth(message.payload)  # we send little; nothing to limit
        elif type_id == m.USER_CONTROL:
            self._on_user_control(message.payload)
        elif type_id == m.AGGREGATE:
            raise RTMPProtocolError(
                "aggregate messages (type 22) are not supported from publishers"
            )
        elif type_id not in (m.AMF0_SHARED_OBJECT, m.AMF3_SHARED_OBJECT):
            raise RTMPProtocolError(f"unknown message type {type_id}")

    def _on_user_control(self, payload: bytes) -> None:
        event_type, data = m.decode_user_control(payload)
        if event_type == m.PING_REQUEST:
            if len(data) < 4:
                raise RTMPProtocolError("Ping Request without a 4-byte timestamp")
            self._send(
                m.CSID_PROTOCOL_CONTROL,
                m.encode_user_control(m.PING_RESPONSE, int.from_bytes(data[:4], "big")),
            )
        # Stream Begin/EOF/Dry, SetBufferLength, Ping Response: nothing for a server to do.

    def _on_media(self, message: m.Message) -> None:
        if (
            self._state is not ConnectionState.PUBLISHING
            or message.stream_id != self._publish_stream_id
        ):
            return
        payload = message.payload
        if not payload:
            return
        timestamp = self._unwrap(message.stream_id, message.timestamp)
        try:
            if message.type_id == m.VIDEO:
                event = VideoData(timestamp, payload, flv.parse_video_tag(payload))
            else:
                event = AudioData(timestamp, payload, flv.parse_audio_tag(payload))
        except flv.FLVError as exc:
            media = "video" if message.type_id == m.VIDEO else "audio"
            event = UnreadableMedia(timestamp, media, str(exc))
        self._events.append(event)

    def _unwrap(self, stream_id: int, wire_timestamp: int) -> int:
        """Extend a 32-bit wire timestamp to an int that keeps counting past 2**32."""
        last = self._last_timestamp.get(stream_id)
        if last is None:
            timestamp = wire_timestamp
        else:
            # Nearest interpretation: audio and video interleave slightly out of order.
            delta = (wire_timestamp - last + _HALF_WRAP) % _U32_WRAP - _HALF_WRAP
            timestamp = last + delta
            if timestamp < 0:
                timestamp = last + delta % _U32_WRAP
        self._last_timestamp[stream_id] = timestamp
        return timestamp

    def _on_data(self, message: m.Message) -> None:
        if (
            self._state is not ConnectionState.PUBLISHING
            or message.stream_id != self._publish_stream_id
        ):
            return
        values = m.decode_data(
            message, max_depth=self.limits.max_amf_depth, max_items=self.limits.max_amf_items
        )
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            self._events.append(Metadata(dict(values[1])))

    # -- commands --------------------------------------------------------------

    def _on_command(self, command: m.Command, stream_id: int) -> None:
        name = command.name
        if name == "connect":
            self._on_connect(command)
            return
        self._require(Input.PUBLISH if name == "publish" else Input.COMMAND, name)
        if name in ("releaseStream", "FCPublish", "FCUnpublish"):
            if name == "FCPublish":
                self._send_on_fc_publish(command)
            elif name == "FCUnpublish":
                self._end_publish()
            # Transaction id 0 asks for no answer (GStreamer sends these with 0).
            if command.transaction_id:
                self._send_result(command.transaction_id, None)
        elif name == "createStream":
            self._on_create_stream(command)
        elif name == "publish":
            self._on_publish(command, stream_id)
        elif name == "deleteStream":
            deleted = (
                command.args[0] if command.args and isinstance(command.args[0], float) else None
            )
            if deleted == self._publish_stream_id:
                self._end_publish()
            if deleted is not None and deleted.is_integer():
                self._message_streams.discard(int(deleted))
        elif name == "closeStream":
            if stream_id == self._publish_stream_id:
                self._end_publish()
        elif name in ("_result", "_error", "onStatus", "onBWDone"):
            pass  # answers to calls we never make, or courtesy calls
        elif command.transaction_id:
            self._send(
                m.CSID_COMMAND,
                m.encode_command(
                    "_error",
                    command.transaction_id,
                    None,
                    {
                        "level": "error",
                        "code": "NetConnection.Call.Failed",
                        "description": f"Method not found ({name}).",
                    },
                ),
            )

    def _on_connect(self, command: m.Command) -> None:
        self._require(Input.CONNECT, "connect")
        params = command.command_object
        if not isinstance(params, dict):
            raise RTMPProtocolError("connect without a command object")
        app = params.get("app")
        if not isinstance(app, str):
            raise RTMPProtocolError("connect without an app name")
        tc_url = params.get("tcUrl")
        object_encoding = params.get("objectEncoding", 0.0)
        self._app = app
        self._tc_url = tc_url if isinstance(tc_url, str) else ""

        self._send(m.CSID_PROTOCOL_CONTROL, m.encode_window_ack_size(SERVER_WINDOW_ACK_SIZE))
        self._send(m.CSID_PROTOCOL_CONTROL, m.encode_set_peer_bandwidth(SERVER_WINDOW_ACK_SIZE))
        self._send(m.CSID_PROTOCOL_CONTROL, m.encode_set_chunk_size(SERVER_CHUNK_SIZE))
        self._writer.chunk_size = SERVER_CHUNK_SIZE
        info = {
            "level": "status",
            "code": "NetConnection.Connect.Success",
            "description": "Connection succeeded.",
            "objectEncoding": object_encoding if isinstance(object_encoding, float) else 0.0,
        }
        properties = dict(_FMS_PROPERTIES)
        declared = _fourcc_list(params.get("fourCcList"))
        if declared is not None:
            # Enhanced RTMP: answer with the codecs of the peer's list that we take ("*": any).
            properties["fourCcList"] = [c for c in self.fourccs if c in declared or "*" in declared]
        self._send_result(command.transaction_id, properties, info)
        self._move(Input.CONNECT)
        self._events.append(Connect(app, self._tc_url, dict(params), declared))

    def _send_on_fc_publish(self, command: m.Command) -> None:
        name = command.args[0] if command.args and isinstance(command.args[0], str) else ""
        info = {"code": "NetStream.Publish.Start", "description": name}
        self._send(m.CSID_COMMAND, m.encode_command("onFCPublish", 0.0, None, info))

    def _on_create_stream(self, command: m.Command) -> None:
        if len(self._message_streams) >= self.limits.max_message_streams:
            limit = self.limits.max_message_streams
            raise RTMPProtocolError(f"more than {limit} createStream calls (max_message_streams)")
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self._message_streams.add(stream_id)
        self._send_result(command.transaction_id, None, float(stream_id))

    def _on_publish(self, command: m.Command, stream_id: int) -> None:
        if stream_id not in self._message_streams:
            raise RTMPProtocolError(
                f"publish on message stream {stream_id}, which createStream did not create"
            )
        args = command.args
        if not args or not isinstance(args[0], str):
            raise RTMPProtocolError("publish without a stream name")
        publish_type = args[1] if len(args) > 1 and isinstance(args[1], str) else "live"
        stream_name, _, query = args[0].partition("?")
        self._stream_name = stream_name
        self._publish_stream_id = stream_id
        self._move(Input.PUBLISH)
        self._events.append(PublishRequest(stream_name, publish_type, stream_id, query))

    def _end_publish(self) -> None:
        """FCUnpublish, deleteStream or closeStream of the published stream: once per publish."""
        if (self._state, Input.UNPUBLISH) not in TRANSITIONS:
            return
        self._send_status(
            "status", "NetStream.Unpublish.Success", f"{self._stream_name} is now unpublished."
        )
        self._events.append(Unpublish(self._stream_name or ""))
        self._move(Input.UNPUBLISH)
        self._stream_name = None

    # -- the state machine -------------------------------------------------------

    def _require(self, what: Input, name: str) -> None:
        """Raise unless ``TRANSITIONS`` lets the peer's ``what`` (command ``name``) happen now."""
        if (self._state, what) in TRANSITIONS:
            return
        if self._state is ConnectionState.CONNECTING:
            raise RTMPProtocolError(f"command {name!r} before connect")
        reason = _PEER_ERRORS.get(what, f"{what.value} while {self._state.value}")
        raise RTMPProtocolError(reason)

    def _move(self, what: Input) -> None:
        try:
            self._state = TRANSITIONS[(self._state, what)]
        except KeyError:
            raise RuntimeError(f"{what.value} is not a move from {self._state.value}") from None

    # -- sending ---------------------------------------------------------------

    def _require_publish_request(self, method: str) -> None:
        if (self._state, Input(method)) not in TRANSITIONS:
            raise RuntimeError(
                f"{method}() needs a pending PublishRequest; state is {self._state.value}"
            )

    def _send(self, csid: int, message: m.Message) -> None:
        self._writer.write(self._out, csid, message)

    def _send_result(self, transaction_id: float, command_object: object, *args: object) -> None:
        self._send(
            m.CSID_COMMAND, m.encode_command("_result", transaction_id, command_object, *args)
        )

    def _send_status(self, level: str, code: str, description: str) -> None:
        info = {"level": level, "code": code, "description": description}
        self._send(
            m.CSID_STREAM,
            m.encode_command("onStatus", 0.0, None, info, stream_id=self._publish_stream_id),
        )


def _fourcc_list(value: object) -> tuple[str, ...] | None:
    """A connect's ``fourCcList`` (a strict array of FourCC strings); None if absent or not one."""
    if not isinstance(value, list):
        return None
    return tuple(v for v in value if isinstance(v, str) and (len(v) == 4 or v == "*"))
