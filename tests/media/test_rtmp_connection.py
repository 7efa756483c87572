"""ServerConnection: the publish sequence and the answers clients wait for,
protocol control (acks, pings, chunk size, abort), events and their rules."""

import struct
from itertools import pairwise

import pytest

from daemons.media import amf0, flv
from daemons.media.rtmp import (
    NEED_DATA,
    TRANSITIONS,
    AudioData,
    Connect,
    ConnectionClosed,
    ConnectionState,
    Input,
    Limits,
    Metadata,
    PublishRequest,
    RTMPProtocolError,
    ServerConnection,
    Unpublish,
    UnreadableMedia,
    VideoData,
)
from tests.media.rtmp_client_bytes import (
    CONNECT,
    ServerOutput,
    c2,
    command,
    commands_in,
    drain,
    header,
    message,
    publish_preamble,
    publishing_connection,
    set_chunk_size,
    simple_c0c1,
)

AVC_SEQUENCE_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff"
AVC_KEYFRAME = b"\x17\x01\x00\x00\x00" + b"\x00" * 20
AVC_INTER = b"\x27\x01\x00\x00\x00" + b"\x00" * 20
AAC_SEQUENCE_HEADER = b"\xaf\x00\x12\x10"
AAC_FRAME = b"\xaf\x01" + b"\x00" * 10


def video(payload: bytes, ts: int = 0) -> bytes:
    return message(9, payload, csid=6, stream_id=1, ts=ts)


def audio(payload: bytes, ts: int = 0) -> bytes:
    return message(8, payload, csid=4, stream_id=1, ts=ts)


def server_messages(conn: ServerConnection, out: ServerOutput | None = None) -> list:
    out = out or ServerOutput()
    data = conn.data_to_send()
    if conn.bytes_received >= 3073 and len(data) > 3073 and data[0] == 3:
        data = data[3073:]  # S0+S1+S2
    return out.feed(data)


def test_publish_sequence_and_answers():
    conn = ServerConnection()
    conn.receive_data(publish_preamble("somekey?token=abc"))
    connect, request = drain(conn)
    assert connect == Connect("live", "rtmp://h/live", connect.params)
    assert connect.params["flashVer"] == "FMLE/3.0"
    assert request == PublishRequest("somekey", "live", 1, "token=abc")
    assert conn.state is ConnectionState.PUBLISH_REQUESTED
    assert (conn.app, conn.tc_url, conn.stream_name) == ("live", "rtmp://h/live", "somekey")

    messages = server_messages(conn)
    # Window Ack Size, Set Peer Bandwidth, Set Chunk Size, then _result for connect.
    assert [msg.type_id for msg in messages[:3]] == [5, 6, 1]
    assert struct.unpack(">I", messages[2].payload)[0] == 4096
    cmds = commands_in(messages)
    name, txid, props, info = cmds[0]
    assert (name, txid) == ("_result", 1.0)
    assert props["fmsVer"].startswith("FMS/")
    assert info["code"] == "NetConnection.Connect.Success"
    assert info["level"] == "status"
    assert info["objectEncoding"] == 0.0
    assert cmds[1] == ["_result", 2.0, None]  # releaseStream
    assert cmds[2][0] == "onFCPublish"
    assert cmds[3] == ["_result", 3.0, None]  # FCPublish
    assert cmds[4] == ["_result", 4.0, None, 1.0]  # createStream -> stream 1

    conn.accept_publish()
    messages = ServerOutput()
    messages.reader.set_chunk_size(4096)
    accepted = messages.feed(conn.data_to_send())
    assert accepted[0].type_id == 4  # Stream Begin 1
    assert accepted[0].payload == b"\x00\x00\x00\x00\x00\x01"
    status = commands_in(accepted)[0]
    assert status[0] == "onStatus"
    assert status[3]["code"] == "NetStream.Publish.Start"
    assert accepted[1].stream_id == 1
    assert conn.state is ConnectionState.PUBLISHING


def test_connect_echoes_object_encoding_and_accepts_amf3_command():
    body = b"\x00" + amf0.encode_values("connect", 1.0, {"app": "app", "objectEncoding": 3.0})
    conn = ServerConnection()
    conn.receive_data(simple_c0c1() + c2() + message(17, body))
    assert drain(conn)[0].app == "app"
    info = commands_in(server_messages(conn))[0][3]
    assert info["objectEncoding"] == 3.0


def _answered(conn: ServerConnection) -> list:
    out = ServerOutput()
    out.reader.set_chunk_size(4096)
    return out.feed(conn.data_to_send())


@pytest.mark.parametrize(
    ("kwargs", "code", "description"),
    [
        ({}, "NetStream.Publish.BadName", "Publishing refused."),
        (
            {"code": "NetStream.Publish.Denied", "description": "key revoked"},
            "NetStream.Publish.Denied",
            "key revoked",
        ),
    ],
)
def test_reject_publish(kwargs, code, description):
    conn = ServerConnection()
    conn.receive_data(publish_preamble())
    drain(conn)
    conn.data_to_send()
    conn.reject_publish(**kwargs)
    status = commands_in(_answered(conn))[0][3]
    assert status == {"level": "error", "code": code, "description": description}
    assert conn.state is ConnectionState.CONNECTED
    conn.receive_data(video(AVC_KEYFRAME))
    assert conn.next_event() is NEED_DATA  # media of a refused publish is dropped


def test_answer_required_before_next_event():
    conn = ServerConnection()
    conn.receive_data(publish_preamble())
    drain(conn)
    with pytest.raises(RuntimeError, match="accept_publish"):
        conn.next_event()


def test_accept_without_request_is_a_usage_error():
    with pytest.raises(RuntimeError, match="pending PublishRequest"):
        ServerConnection().accept_publish()


def test_media_before_accept_is_dropped():
    conn = ServerConnection()
    conn.receive_data(
        simple_c0c1()
        + c2()
        + CONNECT
        + video(AVC_KEYFRAME)
        + message(18, amf0.encode_values("onMetaData", {"w": 1.0}), stream_id=1)
    )
    assert [type(e) for e in drain(conn)] == [Connect]


def test_media_events():
    conn = publishing_connection()
    conn.receive_data(
        message(
            18,
            amf0.encode_values("@setDataFrame", "onMetaData", amf0.ECMAArray(width=320.0)),
            stream_id=1,
        )
        + video(AVC_SEQUENCE_HEADER)
        + audio(AAC_SEQUENCE_HEADER)
        + video(AVC_KEYFRAME, ts=40)
        + audio(AAC_FRAME, ts=23)
        + video(AVC_INTER, ts=80)
        + message(15, b"\x00" + amf0.encode_values("onMetaData", {"height": 240.0}), stream_id=1)
    )
    events = drain(conn)
    v, a = flv.parse_video_tag, flv.parse_audio_tag
    assert events == [
        Metadata({"width": 320.0}),
        VideoData(0, AVC_SEQUENCE_HEADER, v(AVC_SEQUENCE_HEADER)),
        AudioData(0, AAC_SEQUENCE_HEADER, a(AAC_SEQUENCE_HEADER)),
        VideoData(40, AVC_KEYFRAME, v(AVC_KEYFRAME)),
        AudioData(23, AAC_FRAME, a(AAC_FRAME)),
        VideoData(80, AVC_INTER, v(AVC_INTER)),
        Metadata({"height": 240.0}),
    ]
    assert type(events[0].data) is dict
    flags = [(e.is_keyframe, e.is_sequence_header) for e in events if isinstance(e, VideoData)]
    assert flags == [(True, True), (True, False), (False, False)]
    assert [e.is_sequence_header for e in events if isinstance(e, AudioData)] == [True, False]


@pytest.mark.parametrize(
    ("payload", "keyframe", "sequence_header"),
    [
        (b"\x90hvc1", True, True),  # Enhanced RTMP: keyframe, SequenceStart
        (b"\x91hvc1\x00\x00\x00", True, False),  # keyframe, CodedFrames
        (b"\xa3av01", False, False),  # inter frame, CodedFramesX
        (b"\x1c\x00\x00\x00\x00", True, True),  # legacy HEVC sequence header
    ],
)
def test_enhanced_and_hevc_video_flags(payload, keyframe, sequence_header):
    conn = publishing_connection()
    conn.receive_data(video(payload))
    (event,) = drain(conn)
    assert (event.is_keyframe, event.is_sequence_header) == (keyframe, sequence_header)


@pytest.mark.parametrize(
    ("payload", "sequence_header"),
    [
        (b"\x2f\xff\xfb", False),  # MP3
        (b"\x90Opus", True),  # Enhanced RTMP audio, SequenceStart
        (b"\x91Opus\x00", False),  # Enhanced RTMP audio, CodedFrames
    ],
)
def test_audio_flags(payload, sequence_header):
    conn = publishing_connection()
    conn.receive_data(audio(payload))
    (event,) = drain(conn)
    assert event.is_sequence_header is sequence_header


@pytest.mark.parametrize(
    ("data", "media", "reason"),
    [
        (video(b"\x07\x00"), "video", "frame type 0"),
        (video(b"\x17\x00\x00"), "video", "5-byte header"),
        (video(b"\x90hv"), "video", "FourCC"),
        (audio(b"\xaf"), "audio", "packet type"),
        (audio(b"\x93Opus"), "audio", "reserved"),
    ],
)
def test_unreadable_media_is_reported_and_the_publish_goes_on(data, media, reason):
    conn = publishing_connection()
    conn.receive_data(video(AVC_KEYFRAME, ts=0) + data + video(AVC_INTER, ts=40))
    first, bad, after = drain(conn)
    assert isinstance(bad, UnreadableMedia) and bad.media == media and reason in bad.reason
    assert (first.timestamp, after.timestamp) == (0, 40)
    assert conn.state is ConnectionState.PUBLISHING


def test_enhanced_video_carries_its_decoded_header():
    conn = publishing_connection()
    conn.receive_data(video(b"\x90hvc1\x01\x02") + video(b"\x91hvc1\x00\x00\x28\x00\x00", ts=40))
    start, frame = drain(conn)
    assert start.header == flv.parse_video_tag(b"\x90hvc1\x01\x02")
    assert (start.header.fourcc, start.header.packet_type) == ("hvc1", flv.VideoPacketType.SEQUENCE_START)
    assert (frame.header.composition_time, frame.header.is_random_access) == (40, True)


@pytest.mark.parametrize(
    ("declared", "ours", "answered"),
    [
        (None, ("hvc1",), None),  # a legacy client: nothing added
        (["av01", "vp09", "hvc1"], (), []),  # we take none of them
        (["av01", "vp09", "hvc1"], ("hvc1", "av01"), ["hvc1", "av01"]),
        (["*"], ("hvc1", "av01"), ["hvc1", "av01"]),
        (["hvc1", 3.0, "toolong"], ("hvc1",), ["hvc1"]),  # entries that are no FourCC are ignored
    ],
)
def test_connect_fourcc_list_is_answered(declared, ours, answered):
    params = {"app": "live", "tcUrl": "rtmp://h/live"}
    if declared is not None:
        params["fourCcList"] = declared
    conn = ServerConnection(fourccs=ours)
    conn.receive_data(simple_c0c1() + c2() + command("connect", 1.0, params))
    (connect,) = drain(conn)
    expected = None if declared is None else tuple(c for c in declared if isinstance(c, str) and len(c) == 4 or c == "*")
    assert connect.fourcc_list == expected
    props = commands_in(server_messages(conn))[0][2]
    assert props.get("fourCcList") == answered
    assert props["fmsVer"].startswith("FMS/")


def test_transition_table():
    S, I = ConnectionState, Input
    # Every live state can be closed or fail; the terminal ones go nowhere.
    for state in S:
        terminal = state in (S.CLOSED, S.ERROR)
        assert ((state, I.CLOSE) in TRANSITIONS) is not terminal
        assert ((state, I.FAIL) in TRANSITIONS) is not terminal
        assert not any(s is state for s, _ in TRANSITIONS) if terminal else True
    # Every state is reachable from HANDSHAKE.
    reached, frontier = {S.HANDSHAKE}, [S.HANDSHAKE]
    while frontier:
        state = frontier.pop()
        for (s, _), to in TRANSITIONS.items():
            if s is state and to not in reached:
                reached.add(to)
                frontier.append(to)
    assert reached == set(S)
    # Only PUBLISH_REQUESTED takes the application's answer; publishing takes no second publish.
    assert {s for s, i in TRANSITIONS if i in (I.ACCEPT, I.REJECT)} == {S.PUBLISH_REQUESTED}
    assert (S.PUBLISHING, I.PUBLISH) not in TRANSITIONS


def test_the_state_follows_the_table_through_a_publish():
    conn = ServerConnection()
    steps = [
        (Input.C0_C1, lambda: conn.receive_data(simple_c0c1())),
        (Input.C2, lambda: conn.receive_data(c2())),
        (Input.CONNECT, lambda: conn.receive_data(CONNECT)),
        (Input.COMMAND, lambda: conn.receive_data(command("createStream", 4.0, None))),
        (Input.PUBLISH, lambda: conn.receive_data(command("publish", 5.0, None, "k", stream_id=1, csid=8))),
        (Input.ACCEPT, conn.accept_publish),
        (Input.UNPUBLISH, lambda: conn.receive_data(command("FCUnpublish", 6.0, None, "k"))),
        (Input.CLOSE, lambda: conn.receive_data(b"")),
    ]
    for what, step in steps:
        before = conn.state
        step()
        drain(conn)
        assert conn.state is TRANSITIONS[(before, what)], what
    assert conn.state is ConnectionState.CLOSED


def test_reject_without_request_is_a_usage_error():
    conn = publishing_connection()
    with pytest.raises(RuntimeError, match="reject_publish.*state is publishing"):
        conn.reject_publish()


def test_empty_media_is_dropped():
    conn = publishing_connection()
    conn.receive_data(audio(b"") + video(b""))
    assert drain(conn) == []


def test_timestamps_never_go_negative():
    conn = publishing_connection()
    conn.receive_data(video(AVC_KEYFRAME, ts=10) + video(AVC_INTER, ts=0xFFFFFFF0))
    assert [e.timestamp for e in drain(conn)] == [10, 0xFFFFFFF0]


def test_timestamps_unwrap_past_32_bits():
    conn = publishing_connection()
    data = video(AVC_KEYFRAME, ts=0xFFFFFF00)
    data += header(1, 6, ts=0x80, length=len(AVC_INTER), type_id=9) + AVC_INTER
    data += header(1, 6, ts=0x80, length=len(AVC_INTER), type_id=9) + AVC_INTER
    data += audio(AAC_FRAME, ts=0x20)  # slightly behind video after the wrap
    conn.receive_data(data)
    stamps = [e.timestamp for e in drain(conn)]
    assert stamps == [0xFFFFFF00, 0x1_0000_0000 - 0x100 + 0x80, 0x1_0000_0000, 0x1_0000_0020]


@pytest.mark.parametrize(
    "ending",
    [
        command("FCUnpublish", 6.0, None, "somekey"),
        command("deleteStream", 6.0, None, 1.0),
        command("closeStream", 0.0, None, stream_id=1, csid=8),
    ],
)
def test_unpublish_once(ending):
    conn = publishing_connection()
    conn.receive_data(ending + command("deleteStream", 7.0, None, 1.0) + b"")
    conn.receive_data(b"")
    events = drain(conn)
    assert events == [Unpublish("somekey"), ConnectionClosed("peer closed the connection")]
    statuses = [c for c in commands_in(_answered(conn)) if c[0] == "onStatus"]
    assert [s[3]["code"] for s in statuses] == ["NetStream.Unpublish.Success"]
    assert conn.state is ConnectionState.CLOSED


def test_eof_while_publishing():
    conn = publishing_connection()
    conn.receive_data(video(AVC_KEYFRAME)[:10])
    conn.receive_data(b"")
    events = drain(conn)
    assert events[0] == Unpublish("somekey")
    assert "incomplete" in events[1].reason
    assert conn.next_event() == events[1]  # closed stays closed


def test_republish_after_unpublish():
    conn = publishing_connection()
    conn.receive_data(
        command("FCUnpublish", 6.0, None, "somekey")
        + command("publish", 7.0, None, "other", "live", stream_id=1, csid=8)
    )
    assert drain(conn) == [Unpublish("somekey"), PublishRequest("other", "live", 1)]


def test_close_while_publishing():
    conn = publishing_connection()
    conn.close("stream key revoked")
    status = commands_in(_answered(conn))[0][3]
    assert status["level"] == "error"
    assert status["description"] == "stream key revoked"
    assert drain(conn) == [Unpublish("somekey"), ConnectionClosed("stream key revoked")]
    conn.receive_data(b"ignored after close")
    assert conn.state is ConnectionState.CLOSED


def test_close_is_idempotent_and_input_after_it_ignored():
    conn = ServerConnection()
    conn.close("shutting down")
    conn.close("again")
    assert conn.data_to_send() == b""  # nothing to tell a peer that never published
    assert drain(conn) == [ConnectionClosed("shutting down")]


def test_input_after_a_protocol_error_is_ignored():
    conn = ServerConnection()
    conn.receive_data(b"\x06")
    with pytest.raises(RTMPProtocolError):
        conn.next_event()
    conn.receive_data(bytes(10_000))
    assert conn.buffered_bytes <= 1


def test_acknowledgement_sent_when_window_crossed():
    conn = ServerConnection()
    conn.receive_data(simple_c0c1() + c2() + CONNECT + message(5, struct.pack(">I", 5000), csid=2))
    drain(conn)
    conn.data_to_send()
    padding = command("noop", 0.0, None, "x" * 1000)  # ignored command, ~1 KB each
    acks = []
    for _ in range(12):
        conn.receive_data(padding)
        drain(conn)
        acks += [m for m in _answered(conn) if m.type_id == 3]
    sequence = [struct.unpack(">I", m.payload)[0] for m in acks]
    # One ack each time the parsed byte count crosses the window, within one chunk
    # (header + 128 bytes) of the crossing, and none owed at the end.
    assert len(sequence) >= 2
    assert all(5000 <= b - a < 5000 + 146 for a, b in pairwise([0, *sequence]))
    assert conn.bytes_received - sequence[-1] < 5000 + 146


def test_ping_request_gets_ping_response():
    conn = ServerConnection()
    conn.receive_data(
        simple_c0c1()
        + c2()
        + CONNECT
        + message(4, b"\x00\x06\x00\x01\x02\x03", csid=2)
        + message(4, b"\x00\x03\x00\x00\x00\x01\x00\x00\x0b\xb8", csid=2)
    )
    drain(conn)
    pings = [m for m in server_messages(conn) if m.type_id == 4]
    assert [m.payload for m in pings] == [b"\x00\x07\x00\x01\x02\x03"]


def test_set_chunk_size_and_abort_from_peer():
    conn = publishing_connection()
    big = AVC_KEYFRAME + bytes(5000)
    conn.receive_data(
        set_chunk_size(4096)
        + header(0, 6, ts=0, length=len(big), type_id=9, stream_id=1)
        + big[:4096]
        + message(2, struct.pack(">I", 6), csid=2)  # Abort chunk stream 6
        + message(9, big, csid=6, stream_id=1, ts=40, chunk_size=4096)
    )
    events = drain(conn)
    assert [(e.timestamp, len(e.payload)) for e in events] == [(40, len(big))]


def test_peer_control_messages_that_need_no_answer():
    conn = publishing_connection()
    conn.receive_data(
        message(6, b"\x00\x26\x25\xa0\x02", csid=2)  # Set Peer Bandwidth
        + message(3, b"\x00\x00\x10\x00", csid=2)  # Acknowledgement
        + message(4, b"\x00\x07\x00\x00\x00\x01", csid=2)  # Ping Response
        + command("_result", 3.0, None)
        + command("onBWDone", 4.0, None)
    )
    assert drain(conn) == []
    assert conn.data_to_send() == b""


def test_unknown_command_with_transaction_gets_error_and_zero_is_ignored():
    conn = publishing_connection()
    conn.receive_data(command("play", 9.0, None, "x") + command("onFoo", 0.0, None))
    assert drain(conn) == []
    cmds = commands_in(_answered(conn))
    assert len(cmds) == 1
    assert cmds[0][:2] == ["_error", 9.0]
    assert cmds[0][3]["code"] == "NetConnection.Call.Failed"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (command("createStream", 2.0, None), "before connect"),
        (CONNECT + CONNECT, "second connect"),
        (command("connect", 1.0, {"tcUrl": "x"}), "without an app"),
        (command("connect", 1.0, None), "without a command object"),
        (CONNECT + command("publish", 5.0, None, "k", stream_id=1), "createStream did not create"),
        (
            CONNECT
            + command("createStream", 4.0, None)
            + command("publish", 5.0, None, stream_id=1),
            "without a stream name",
        ),
        (message(20, amf0.encode_values(1.0, "connect")), "does not start with a name"),
        (CONNECT + message(22, b"\x00"), "aggregate"),
        (CONNECT + message(7, b"\x00"), "unknown message type 7"),
        (CONNECT + message(1, b"\x00\x01", csid=2), "needs 4"),
        (CONNECT + message(1, b"\x80\x00\x00\x00", csid=2), "reserved top bit"),
        (CONNECT + message(1, b"\x00\x00\x00\x00", csid=2), "Set Chunk Size 0"),
        (CONNECT + message(1, b"\x00\x10\x00\x01", csid=2), "exceeds the limit"),
        (CONNECT + message(5, b"\x00\x00\x00\x00", csid=2), "Window Acknowledgement Size 0"),
        (CONNECT + message(4, b"\x00", csid=2), "User Control"),
        (CONNECT + message(4, b"\x00\x06\x00", csid=2), "Ping Request"),
        (CONNECT + message(6, b"\x00", csid=2), "Set Peer Bandwidth"),
    ],
)
def test_protocol_violations(data, match):
    conn = ServerConnection()
    conn.receive_data(simple_c0c1() + c2() + data)
    with pytest.raises(RTMPProtocolError, match=match):
        drain(conn)
    assert conn.state is ConnectionState.ERROR
    with pytest.raises(RTMPProtocolError, match="already failed"):
        conn.next_event()


def test_second_publish_while_publishing():
    conn = publishing_connection()
    conn.receive_data(command("publish", 6.0, None, "k2", "live", stream_id=1, csid=8))
    with pytest.raises(RTMPProtocolError, match="already publishing"):
        drain(conn)


def test_create_stream_limit():
    conn = ServerConnection(Limits(max_message_streams=2))
    conn.receive_data(simple_c0c1() + c2() + CONNECT + command("createStream", 2.0, None) * 3)
    with pytest.raises(RTMPProtocolError, match="max_message_streams"):
        drain(conn)


def test_receive_after_eof_is_a_usage_error():
    conn = ServerConnection()
    conn.receive_data(b"")
    with pytest.raises(RuntimeError):
        conn.receive_data(b"x")


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_chunk_streams"):
        Limits(max_chunk_streams=0)


def test_limits_defaults():
    limits = Limits()
    assert limits.max_chunk_size == 65536
    assert limits.max_message_size == 8 * 1024 * 1024
    assert limits.max_chunk_streams == 64
    assert (limits.handshake_timeout_s, limits.idle_timeout_s) == (10.0, 30.0)
