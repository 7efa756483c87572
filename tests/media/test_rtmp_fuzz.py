"""Fuzzing ServerConnection: whatever arrives, the only exception out is
RTMPProtocolError, and what the connection holds stays bounded by its limits."""

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemons.media.rtmp import (
    NEED_DATA,
    AudioData,
    ConnectionClosed,
    Limits,
    PublishRequest,
    RTMPProtocolError,
    ServerConnection,
    UnreadableMedia,
    VideoData,
)
from daemons.media.rtmp.chunk import MAX_HEADER_SIZE
from tests.media.rtmp_client_bytes import header, message, publish_preamble

DATA = Path(__file__).parent / "data"
CAPTURES = {name: (DATA / f"{name}_publish.bin").read_bytes() for name in ("ffmpeg", "gstreamer")}
SMALL = Limits(
    max_chunk_size=1024,
    max_message_size=4096,
    max_chunk_streams=8,
    max_amf_depth=8,
    max_amf_items=64,
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def bound(conn: ServerConnection) -> int:
    # Partial messages are capped by max_message_size together; unparsed input
    # by one chunk (largest header plus the largest chunk size).
    return conn.limits.max_message_size + conn.limits.max_chunk_size + MAX_HEADER_SIZE


def run(data: bytes, limits: Limits = SMALL, piece: int = 4096, eof: bool = True) -> list:
    """Feed ``data`` in pieces, accepting any publish; return events, or raise RTMPProtocolError."""
    conn = ServerConnection(limits)
    events = []
    chunks = [data[i : i + piece] for i in range(0, len(data), piece)] + ([b""] if eof else [])
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
            if isinstance(event, PublishRequest):
                conn.accept_publish()
            if isinstance(event, ConnectionClosed):
                return events
        conn.data_to_send()
        assert conn.buffered_bytes <= bound(conn)
    return events


def only_protocol_errors(data: bytes, **kwargs) -> None:
    with contextlib.suppress(RTMPProtocolError):
        run(data, **kwargs)


@FUZZ
@given(st.binary(max_size=4000))
def test_random_bytes(data):
    only_protocol_errors(data)


@FUZZ
@given(st.binary(max_size=3000), st.integers(1, 600))
def test_random_bytes_after_publish(data, piece):
    only_protocol_errors(publish_preamble() + data, piece=piece)


@FUZZ
@given(
    st.sampled_from(sorted(CAPTURES)),
    st.lists(st.integers(3073, 10**6), min_size=1, max_size=8),
    st.integers(0, 7),
)
def test_bit_flips_in_captures(name, positions, bit):
    data = bytearray(CAPTURES[name])
    for position in positions:
        data[position % len(data)] ^= 1 << bit
    only_protocol_errors(bytes(data), limits=Limits(), piece=8192)


@FUZZ
@given(st.sampled_from(sorted(CAPTURES)), st.integers(0, 10**6))
def test_truncated_captures_close_cleanly(name, cut):
    data = CAPTURES[name]
    events = run(data[: cut % len(data)], limits=Limits())
    assert isinstance(events[-1], ConnectionClosed)


def chunk_strategy():
    """Chunks with absurd field values: any format, csid, timestamp, length, type."""
    return st.builds(
        lambda fmt, csid, ts, length, type_id, stream_id, body: (
            header(
                fmt,
                csid,
                ts=ts if ts < 0xFFFFFF else 0,
                length=length,
                type_id=type_id,
                stream_id=stream_id,
                ext=ts if ts >= 0xFFFFFF else None,
            )
            + body
        ),
        st.integers(0, 3),
        st.sampled_from([2, 3, 4, 5, 6, 8, 63, 64, 319, 320, 65599]),
        st.sampled_from([0, 1, 40, 0xFFFFFE, 0xFFFFFF, 0x1000000, 0xFFFFFFFF]),
        st.sampled_from([0, 1, 4, 5, 127, 128, 129, 1024, 4096, 4097, 0xFFFFFF]),
        st.sampled_from([1, 2, 3, 4, 5, 6, 8, 9, 15, 17, 18, 20, 22, 0, 255]),
        st.sampled_from([0, 1, 2, 0xFFFFFFFF]),
        st.binary(max_size=300),
    )


def control_strategy():
    """Protocol control messages with absurd values."""
    u32 = st.sampled_from([0, 1, 127, 128, 1024, 1025, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
    return st.one_of(
        st.builds(lambda v: message(1, struct.pack(">I", v), csid=2), u32),
        st.builds(lambda v: message(2, struct.pack(">I", v), csid=2), u32),
        st.builds(lambda v: message(5, struct.pack(">I", v), csid=2), u32),
        st.builds(
            lambda e, v: message(4, struct.pack(">HI", e, v), csid=2), st.integers(0, 0xFFFF), u32
        ),
    )


@FUZZ
@given(st.lists(st.one_of(chunk_strategy(), control_strategy()), max_size=12), st.integers(1, 5000))
def test_absurd_chunks_and_control_messages(chunks, piece):
    only_protocol_errors(publish_preamble() + b"".join(chunks), piece=piece)


@FUZZ
@given(st.sampled_from([15, 17, 18, 20]), st.binary(max_size=400))
def test_amf_garbage_in_commands_and_data(type_id, body):
    only_protocol_errors(publish_preamble() + message(type_id, body, stream_id=1))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from([8, 9]),
            st.one_of(
                st.binary(max_size=60),
                # Enhanced RTMP prefixes (ExHeader, ModEx, multitrack) followed by garbage.
                st.builds(lambda a, b: a + b, st.sampled_from([b"\x90", b"\x97", b"\x96", b"\x95"]), st.binary(max_size=40)),
            ),
        ),
        max_size=10,
    )
)
def test_garbage_media_while_publishing_is_dropped_not_fatal(media):
    data = publish_preamble() + b"".join(
        message(t, body, csid=6, stream_id=1, ts=i) for i, (t, body) in enumerate(media)
    )
    events = run(data, eof=False)
    decoded = [e for e in events if isinstance(e, (AudioData, VideoData, UnreadableMedia))]
    assert len(decoded) == sum(1 for _, body in media if body)  # one event per non-empty message
    for event, (type_id, body) in zip(decoded, [m for m in media if m[1]]):
        if isinstance(event, UnreadableMedia):
            assert event.media == ("video" if type_id == 9 else "audio")
        else:
            assert event.payload == body and isinstance(event, VideoData) == (type_id == 9)


@pytest.mark.parametrize("limits", [Limits(), SMALL])
def test_huge_message_header_raises_before_any_body(limits):
    conn = ServerConnection(limits)
    conn.receive_data(publish_preamble())
    while not isinstance(conn.next_event(), PublishRequest):
        pass
    conn.accept_publish()
    conn.receive_data(header(0, 6, length=0xFFFFFF, type_id=9, stream_id=1))
    with pytest.raises(RTMPProtocolError, match="exceeds max_message_size"):
        conn.next_event()
    assert conn.buffered_bytes < 100


def test_partial_messages_on_many_chunk_streams_stay_within_one_budget():
    # Start a 4000-byte message on each of several chunk streams: the second one
    # would hold more than max_message_size in partial messages together.
    starts = b"".join(
        header(0, csid, length=4000, type_id=9, stream_id=1) + bytes(128) for csid in (4, 5, 6)
    )
    with pytest.raises(RTMPProtocolError, match="messages in progress"):
        run(publish_preamble() + starts)


def test_spec_maximum_chunk_size_is_refused():
    with pytest.raises(RTMPProtocolError, match="exceeds the limit"):
        run(publish_preamble() + message(1, struct.pack(">I", 0x7FFFFFFF), csid=2), limits=Limits())
