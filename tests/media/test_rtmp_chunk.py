"""Chunk stream: every header format and basic-header width, timestamp deltas and
extended timestamps, chunk size changes, abort, and the limits."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.media.rtmp import RTMPProtocolError
from daemons.media.rtmp.chunk import ChunkReader, ChunkWriter, encode_chunk_header
from daemons.media.rtmp.messages import Message
from tests.media.rtmp_client_bytes import header

P100 = bytes(range(100))
P300 = bytes(i & 0xFF for i in range(300))


def reader(**limits) -> ChunkReader:
    defaults = dict(max_chunk_size=65536, max_message_size=1 << 20, max_chunk_streams=64)
    return ChunkReader(**{**defaults, **limits})


def read_all(data: bytes, r: ChunkReader | None = None) -> list[tuple]:
    r = r or reader()
    buf = bytearray(data)
    pos = 0
    out = []
    while True:
        new_pos, msg = r.read_chunk(buf, pos)
        if new_pos == pos:
            break
        pos = new_pos
        if msg is not None:
            out.append((msg.type_id, msg.stream_id, msg.timestamp, msg.payload))
    assert pos == len(buf), "trailing bytes not parsed"
    return out


CASES = [
    pytest.param(
        header(0, 3, ts=1000, length=4, type_id=20, stream_id=0) + b"abcd",
        [(20, 0, 1000, b"abcd")],
        id="fmt0",
    ),
    pytest.param(
        header(0, 6, ts=1000, length=2, type_id=9, stream_id=1)
        + b"v1"
        + header(1, 6, ts=40, length=3, type_id=8)
        + b"a22",
        [(9, 1, 1000, b"v1"), (8, 1, 1040, b"a22")],
        id="fmt1-delta-length-type",
    ),
    pytest.param(
        header(0, 6, ts=0, length=2, type_id=9, stream_id=1)
        + b"v1"
        + header(1, 6, ts=40, length=2, type_id=9)
        + b"v2"
        + header(2, 6, ts=33)
        + b"v3",
        [(9, 1, 0, b"v1"), (9, 1, 40, b"v2"), (9, 1, 73, b"v3")],
        id="fmt2-delta-only",
    ),
    pytest.param(
        header(0, 6, ts=0, length=2, type_id=9, stream_id=1)
        + b"v1"
        + header(2, 6, ts=40)
        + b"v2"
        + header(3, 6)
        + b"v3"
        + header(3, 6)
        + b"v4",
        [(9, 1, 0, b"v1"), (9, 1, 40, b"v2"), (9, 1, 80, b"v3"), (9, 1, 120, b"v4")],
        id="fmt3-new-message-repeats-delta",
    ),
    pytest.param(
        header(0, 4, ts=20, length=1, type_id=8, stream_id=1) + b"a" + header(3, 4) + b"b",
        [(8, 1, 20, b"a"), (8, 1, 40, b"b")],
        id="fmt3-after-fmt0-uses-its-timestamp-as-delta",
    ),
    pytest.param(
        header(0, 6, ts=5, length=300, type_id=9, stream_id=1)
        + P300[:128]
        + header(3, 6)
        + P300[128:256]
        + header(3, 6)
        + P300[256:],
        [(9, 1, 5, P300)],
        id="fmt3-continuation",
    ),
    pytest.param(
        header(0, 6, length=300, type_id=9, stream_id=1, ext=0x01000000)
        + P300[:128]
        + header(3, 6, ext=0x01000000)
        + P300[128:256]
        + header(3, 6, ext=0x01000000)
        + P300[256:],
        [(9, 1, 0x01000000, P300)],
        id="extended-timestamp-on-continuations",
    ),
    pytest.param(
        header(0, 6, ts=0, length=1, type_id=9, stream_id=1)
        + b"x"
        + header(1, 6, length=1, type_id=9, ext=0x02000000)
        + b"y"
        + header(3, 6, ext=0x02000000)
        + b"z",
        [(9, 1, 0, b"x"), (9, 1, 0x02000000, b"y"), (9, 1, 0x04000000, b"z")],
        id="extended-delta-then-fmt3-new-message",
    ),
    pytest.param(
        header(0, 6, length=1, type_id=9, stream_id=1, ext=0xFFFFFFF0)
        + b"x"
        + header(2, 6, ts=0x20)
        + b"y",
        [(9, 1, 0xFFFFFFF0, b"x"), (9, 1, 0x10, b"y")],
        id="wire-timestamp-wraps-mod-2-32",
    ),
    pytest.param(
        header(0, 6, ts=0, length=300, type_id=9, stream_id=1)
        + P300[:128]
        + header(0, 4, ts=0, length=2, type_id=8, stream_id=1)
        + b"a1"
        + header(3, 6)
        + P300[128:256]
        + header(1, 4, ts=23, length=2, type_id=8)
        + b"a2"
        + header(3, 6)
        + P300[256:],
        [(8, 1, 0, b"a1"), (8, 1, 23, b"a2"), (9, 1, 0, P300)],
        id="interleaved-chunk-streams",
    ),
    pytest.param(
        header(0, 64, ts=1, length=200, type_id=9, stream_id=1)
        + P300[:128]
        + header(0, 320, ts=2, length=1, type_id=8, stream_id=1)
        + b"a"
        + header(3, 64)
        + P300[128:200],
        [(8, 1, 2, b"a"), (9, 1, 1, P300[:200])],
        id="two-and-three-byte-basic-headers",
    ),
    pytest.param(
        header(0, 3, length=0, type_id=20) + header(0, 3, length=1, type_id=20) + b"z",
        [(20, 0, 0, b""), (20, 0, 0, b"z")],
        id="empty-message",
    ),
]


@pytest.mark.parametrize(("data", "expected"), CASES)
def test_chunk_formats(data, expected):
    assert read_all(data) == expected


@pytest.mark.parametrize("csid", [2, 63, 64, 65, 319, 320, 1000, 65599])
def test_basic_header_widths(csid):
    data = (
        header(0, csid, ts=10, length=3, type_id=8, stream_id=1)
        + b"abc"
        + header(2, csid, ts=5)
        + b"def"
    )
    assert len(header(3, csid)) == (1 if csid < 64 else 2 if csid < 320 else 3)
    assert read_all(data) == [(8, 1, 10, b"abc"), (8, 1, 15, b"def")]


def _parse(r: ChunkReader, buf: bytearray, pos: int) -> tuple[int, list]:
    messages = []
    while True:
        new_pos, msg = r.read_chunk(buf, pos)
        if new_pos == pos:
            return pos, messages
        pos = new_pos
        if msg is not None:
            messages.append(msg.payload)


@pytest.mark.parametrize("case", [6, 7, 9, 10], ids=lambda i: CASES[i].id)
def test_incomplete_chunks_change_nothing(case):
    """Cut anywhere: parsing the prefix, then the rest, gives the same messages."""
    data, expected = CASES[case].values
    for cut in range(len(data)):
        r = reader()
        buf = bytearray(data[:cut])
        pos, first = _parse(r, buf, 0)
        buf += data[cut:]
        _, rest = _parse(r, buf, pos)
        assert first + rest == [payload for *_, payload in expected]


def test_set_chunk_size_mid_message():
    r = reader()
    first = header(0, 6, ts=0, length=300, type_id=9, stream_id=1) + P300[:128]
    assert read_all(first, r) == []
    r.set_chunk_size(4096)  # applies to the next chunk of the same message
    assert read_all(header(3, 6) + P300[128:], r) == [(9, 1, 0, P300)]


def test_abort_drops_partial_message():
    r = reader()
    read_all(header(0, 6, ts=0, length=300, type_id=9, stream_id=1) + P300[:128], r)
    assert r.partial_bytes == 128
    r.abort(6)
    assert r.partial_bytes == 0
    assert read_all(header(1, 6, ts=40, length=2, type_id=9) + b"ok", r) == [(9, 1, 40, b"ok")]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (header(1, 5, ts=0, length=1, type_id=8) + b"x", "starts with a fmt 1"),
        (header(3, 5) + b"x", "starts with a fmt 3"),
        (
            header(0, 6, length=300, type_id=9, stream_id=1)
            + P300[:128]
            + header(1, 6, ts=0, length=1, type_id=9),
            "while a message is incomplete",
        ),
    ],
)
def test_header_violations(data, match):
    with pytest.raises(RTMPProtocolError, match=match):
        read_all(data)


def test_oversized_message_fails_on_the_header_alone():
    r = reader(max_message_size=1 << 20)
    buf = bytearray(header(0, 6, length=0xFFFFFF, type_id=9, stream_id=1))
    with pytest.raises(RTMPProtocolError, match="exceeds max_message_size"):
        r.read_chunk(buf, 0)


def test_partial_messages_share_one_budget():
    r = reader(max_message_size=1000)
    read_all(header(0, 6, length=900, type_id=9, stream_id=1) + bytes(128), r)
    with pytest.raises(RTMPProtocolError, match="messages in progress"):
        read_all(header(0, 7, length=900, type_id=9, stream_id=1), r)


def test_chunk_stream_limit():
    data = b"".join(header(0, csid, length=1, type_id=8) + b"x" for csid in range(2, 6))
    with pytest.raises(RTMPProtocolError, match="max_chunk_streams"):
        read_all(data, reader(max_chunk_streams=3))


def test_chunk_size_above_limit():
    with pytest.raises(RTMPProtocolError, match="exceeds the limit"):
        reader(max_chunk_size=65536).set_chunk_size(0x7FFFFFFF)


@pytest.mark.parametrize("csid", [0, 1, 65600])
def test_encode_chunk_header_refuses_unencodable_csid(csid):
    with pytest.raises(ValueError):
        encode_chunk_header(0, csid)


@pytest.mark.parametrize(("fmt", "size"), [(0, 12), (1, 8), (2, 4), (3, 1)])
def test_encode_chunk_header_sizes(fmt, size):
    assert len(encode_chunk_header(fmt, 3, timestamp=1, length=1, type_id=8)) == size


@settings(max_examples=100, deadline=None)
@given(
    messages=st.lists(
        st.tuples(
            st.sampled_from([2, 3, 63, 64, 319, 320, 65599]),
            st.sampled_from([8, 9, 18, 20]),
            st.integers(0, 3),
            st.integers(0, 0xFFFFFFFF),
            st.binary(max_size=600),
        ),
        max_size=8,
    ),
    chunk_size=st.sampled_from([1, 128, 4096]),
)
def test_writer_output_reads_back(messages, chunk_size):
    writer = ChunkWriter()
    writer.chunk_size = chunk_size
    out = bytearray()
    for csid, type_id, stream_id, ts, payload in messages:
        writer.write(out, csid, Message(type_id, stream_id, ts, payload))
    r = reader()
    r.set_chunk_size(chunk_size)
    assert read_all(bytes(out), r) == [(t, s, ts, p) for _, t, s, ts, p in messages]
