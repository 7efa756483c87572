"""Fuzzing FMP4Reader: any split reads the same, a truncated stream says so at end(), and
whatever arrives (bit flips, random bytes, random box trees, absurd sizes), the only exception
out is FMP4Error while what the reader holds stays within max_buffered."""

from __future__ import annotations

import struct
from itertools import pairwise
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemons.media.fmp4 import FMP4Error, FMP4Reader, box, full_box

DATA = Path(__file__).parent / "data" / "fmp4"
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The containers whose children the reader walks (it leaves edts, dinf, udta … unread).
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf"}


def _units(data: bytes) -> tuple[list, list[int]]:
    """The whole read of ``data`` and the stream offsets where each unit ends."""
    events = FMP4Reader().feed(data)
    ends, offset = [0], 0
    for event in events:
        offset += len(event.data)
        ends.append(offset)
    return events, ends


def _head(name: str, fragments: int) -> bytes:
    """A fixture's init segment and first fragments: small enough to fuzz quickly."""
    events = FMP4Reader().feed((DATA / f"{name}.mp4").read_bytes())
    return b"".join(e.data for e in events[: fragments + 1])


FULL = {
    name: (DATA / f"{name}.mp4").read_bytes()
    for name in ("av_frag_200ms", "hevc_frag_every_frame", "opus_frag_200ms")
}
READS = {name: _units(data) for name, data in FULL.items()}
SMALL = [
    _head("av_frag_200ms", 2),
    _head("av_frag_every_frame", 6),
    _head("hevc_frag_every_frame", 3),
]


def _box_headers(data: bytes, start: int = 0, end: int | None = None) -> list[int]:
    """Offsets of every box header in ``data`` the reader looks at."""
    end = len(data) if end is None else end
    found = []
    while start + 8 <= end:
        size, box_type = struct.unpack_from(">I4s", data, start)
        if size < 8 or start + size > end:
            break
        found.append(start)
        if box_type in CONTAINERS:
            found += _box_headers(data, start + 8, start + size)
        start += size
    return found


HEADERS = [(data, _box_headers(data)) for data in SMALL]


def read(pieces, **limits) -> tuple[list, FMP4Error | None]:
    """Feed the pieces and end; every exception but FMP4Error fails the test, and after every
    feed the reader holds no more than its max_buffered."""
    reader = FMP4Reader(**limits)
    events: list = []
    try:
        for piece in pieces:
            events += reader.feed(piece)
            assert reader.buffered_bytes <= limits.get("max_buffered", 64 * 1024 * 1024)
        reader.end()
    except FMP4Error as error:
        return events, error
    return events, None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in pairwise(points)]


@FUZZ
@given(st.sampled_from(sorted(FULL)), st.lists(st.integers(min_value=0), max_size=40))
def test_any_split_reads_the_same(name, cuts):
    events, error = read(split(FULL[name], cuts))
    assert error is None
    assert events == READS[name][0]


@FUZZ
@given(st.sampled_from(sorted(FULL)), st.data())
def test_truncation_is_reported_unless_at_a_unit_boundary(name, data):
    full = FULL[name]
    whole, ends = READS[name]
    cut = data.draw(st.one_of(st.sampled_from(ends), st.integers(0, len(full))), label="cut")
    events, error = read([full[:cut]])
    assert events == whole[: len(events)]
    # Clean ends: between units, or after the trailing mfra (which is never emitted).
    assert (error is None) == (cut in ends or cut == len(full)), (cut, error)


@FUZZ
@given(
    st.sampled_from(range(len(SMALL))),
    st.lists(st.integers(min_value=0), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0), max_size=6),
)
def test_bit_flips(index, flips, cuts):
    data = bytearray(SMALL[index])
    for bit in flips:
        data[bit // 8 % len(data)] ^= 1 << (bit % 8)
    events, _ = read(split(bytes(data), cuts), max_buffered=64 * 1024)
    for event in events:
        assert bytes(event.data) in data


@FUZZ
@given(st.binary(max_size=3000), st.booleans())
def test_random_bytes(garbage, after_init):
    prefix = SMALL[0][: len(READS["av_frag_200ms"][0][0].data)] if after_init else b""
    read([prefix + garbage])


def _box_tree(types):
    leaf = st.builds(lambda t, p: box(t, p), types, st.binary(max_size=24))
    full = st.builds(
        lambda t, v, f, p: full_box(t, v, f, p),
        types,
        st.integers(0, 2),
        st.integers(0, 0xFFFFFF),
        st.binary(max_size=24),
    )
    return st.recursive(
        st.one_of(leaf, full),
        lambda children: st.builds(
            lambda t, kids: box(t, b"".join(kids)), types, st.lists(children, max_size=4)
        ),
        max_leaves=12,
    )


BOX_TYPES = st.sampled_from(
    [
        b"ftyp",
        b"moov",
        b"trak",
        b"tkhd",
        b"mdia",
        b"mdhd",
        b"hdlr",
        b"minf",
        b"stbl",
        b"stsd",
        b"avc1",
        b"mp4a",
        b"esds",
        b"mvex",
        b"trex",
        b"moof",
        b"mfhd",
        b"traf",
        b"tfhd",
        b"tfdt",
        b"trun",
        b"mdat",
        b"mfra",
        b"free",
        b"uuid",
    ]
)


@FUZZ
@given(st.lists(_box_tree(BOX_TYPES), max_size=5), st.booleans())
def test_random_box_trees(boxes, after_init):
    prefix = SMALL[0][: len(READS["av_frag_200ms"][0][0].data)] if after_init else box(b"ftyp", b"")
    read([prefix + b"".join(boxes)])


@FUZZ
@given(st.sampled_from(range(len(HEADERS))), st.data())
def test_absurd_box_sizes_in_real_streams(index, data):
    stream, headers = HEADERS[index]
    at = data.draw(st.sampled_from(headers), label="box")
    size = data.draw(
        st.one_of(
            st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1)
        ),
        label="size",
    )
    mutated = stream[:at] + struct.pack(">I", size) + stream[at + 4 :]
    _, error = read([mutated], max_box_size=1 << 20, max_buffered=1 << 21)
    # (Size 1 takes a 64-bit size from the next bytes, which may happen to fit.)
    if size == 0 or 2 <= size < 8 or size >= 1 << 21:
        assert error is not None


IMPOSSIBLE_OR_HUGE = st.one_of(
    st.sampled_from([0, 2, 3, 4, 5, 6, 7]).map(lambda size: (struct.pack(">I", size), b"")),
    st.integers(4097, 2**32 - 1).map(lambda size: (struct.pack(">I", size), b"")),
    st.one_of(st.integers(0, 15), st.integers(4097, 2**64 - 1), st.just(2**63)).map(
        lambda size: (struct.pack(">I", 1), struct.pack(">Q", size))
    ),
)


@FUZZ
@given(
    st.sampled_from([b"ftyp", b"moov", b"moof", b"mdat", b"free", b"mfra"]),
    IMPOSSIBLE_OR_HUGE,
    st.sampled_from(["start", "after init", "inside a fragment"]),
)
def test_a_header_announcing_a_huge_or_impossible_box_raises_at_once(box_type, size_fields, where):
    """Only the header is fed: the reader must refuse it before waiting for its body."""
    init = READS["av_frag_200ms"][0][0].data
    first = READS["av_frag_200ms"][0][1].data
    moof_size = struct.unpack(">I", first[:4])[0]
    prefix = {"start": b"", "after init": init, "inside a fragment": init + first[:moof_size]}[
        where
    ]
    reader = FMP4Reader(max_box_size=4096)
    reader.feed(prefix)
    size, largesize = size_fields
    try:
        reader.feed(size + box_type + largesize)
    except FMP4Error:
        return
    raise AssertionError(
        f"accepted a {box_type!r} header with size {(size + largesize).hex()} {where}"
    )


@FUZZ
@given(
    st.sampled_from(sorted(FULL)),
    st.integers(2000, 40000),
    st.lists(st.integers(min_value=0), max_size=30),
)
def test_memory_stays_within_max_buffered(name, max_buffered, cuts):
    events, error = read(split(FULL[name], cuts), max_buffered=max_buffered)
    whole, ends = READS[name]
    largest = max(len(FULL[name]) - ends[-1], *(len(e.data) for e in whole))  # the mfra counts too
    assert events == whole[: len(events)]
    if largest <= max_buffered:
        assert error is None and len(events) == len(whole)
    else:
        assert error is not None and "max_buffered" in str(error)
