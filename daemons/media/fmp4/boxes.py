"""ISO BMFF box framing: headers (32-bit, 64-bit ``largesize``, ``uuid``), bounded field reads
inside one box's payload, walking a container's children, and a tiny writer.

Everything here works on complete bytes; the incremental part lives in ``reader.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import FMP4Error

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")

BASIC_HEADER_SIZE = 8  # size(32) + type(32)
LARGE_HEADER_SIZE = 16  # ... + largesize(64)
UUID_SIZE = 16  # a `uuid` box carries its extended type right after the header


def fourcc(box_type: bytes) -> str:
    """A box or sample-entry type as text for messages and codec strings (never fails)."""
    return box_type.decode("latin-1")


@dataclass(frozen=True)
class BoxHeader:
    """Where one box sits: ``start`` is its first byte, ``payload`` the first byte after the
    header (and after a uuid's extended type), ``end`` one past its last byte."""

    type: bytes
    start: int
    payload: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def read_header(data: bytes | bytearray, start: int, available_end: int) -> BoxHeader | None:
    """Parse the header at ``start`` if enough bytes are there, else None.

    Only the header itself must be present; the box may extend past ``available_end``. Sizes
    that cannot be a box (0 = "to end of file", 1..7, a largesize under 16) are rejected here,
    before anything is buffered for them.
    """
    if available_end - start < BASIC_HEADER_SIZE:
        return None
    size, box_type = struct.unpack_from(">I4s", data, start)
    header_size = BASIC_HEADER_SIZE
    if size == 1:
        if available_end - start < LARGE_HEADER_SIZE:
            return None
        size = _U64.unpack_from(data, start + BASIC_HEADER_SIZE)[0]
        header_size = LARGE_HEADER_SIZE
    elif size == 0:
        # Legal only for the last box of a file; on a live pipe its end is unknowable.
        raise FMP4Error(
            f"box {fourcc(box_type)!r} has size 0 (to end of file), unbounded on a stream"
        )
    if box_type == b"uuid":
        header_size += UUID_SIZE
    if size < header_size:
        raise FMP4Error(
            f"box {fourcc(box_type)!r} declares size {size}, "
            f"smaller than its {header_size}-byte header"
        )
    if available_end - start < header_size:
        return None
    return BoxHeader(box_type, start, start + header_size, start + size)


def iter_children(data: bytes, start: int, end: int, parent: str) -> Iterator[BoxHeader]:
    """The boxes packed in ``data[start:end]`` (a container's payload), each checked to fit."""
    while start < end:
        header = read_header(data, start, end)
        if header is None:
            raise FMP4Error(f"{parent}: truncated child box header")
        if header.end > end:
            raise FMP4Error(
                f"{parent}/{fourcc(header.type)}: box size {header.size} overruns its parent"
            )
        yield header
        start = header.end


class FieldReader:
    """Big-endian fields read in order from one box payload; running out names the box and field."""

    def __init__(self, data: bytes, start: int, end: int, box: str) -> None:
        self.data = data
        self.pos = start
        self.end = end
        self.box = box

    def _take(self, n: int, field: str) -> int:
        if self.end - self.pos < n:
            raise FMP4Error(f"{self.box}: truncated at {field}")
        pos = self.pos
        self.pos += n
        return pos

    def u8(self, field: str) -> int:
        return _U8.unpack_from(self.data, self._take(1, field))[0]

    def u16(self, field: str) -> int:
        return _U16.unpack_from(self.data, self._take(2, field))[0]

    def u32(self, field: str) -> int:
        return _U32.unpack_from(self.data, self._take(4, field))[0]

    def i32(self, field: str) -> int:
        return _I32.unpack_from(self.data, self._take(4, field))[0]

    def u64(self, field: str) -> int:
        return _U64.unpack_from(self.data, self._take(8, field))[0]

    def uint(self, version: int, field: str) -> int:
        """A field that is 32 bits in version 0 of its box and 64 bits in version 1."""
        return self.u64(field) if version == 1 else self.u32(field)

    def raw(self, n: int, field: str) -> bytes:
        pos = self._take(n, field)
        return self.data[pos : pos + n]

    def skip(self, n: int, field: str) -> None:
        self._take(n, field)

    def full_box_header(self, max_version: int = 0) -> tuple[int, int]:
        """FullBox version(8) and flags(24); versions this reader does not know are errors."""
        word = self.u32("version/flags")
        version = word >> 24
        if version > max_version:
            raise FMP4Error(f"{self.box}: unsupported version {version}")
        return version, word & 0xFFFFFF

    @property
    def remaining(self) -> int:
        return self.end - self.pos


# -- writing -----------------------------------------------------------------


def box(box_type: bytes, payload: bytes) -> bytes:
    """One box: a 32-bit size when it fits, else the 64-bit largesize form."""
    if len(box_type) != 4:
        raise ValueError(f"box type must be 4 bytes, got {box_type!r}")
    size = BASIC_HEADER_SIZE + len(payload)
    if size <= 0xFFFFFFFF:
        return _U32.pack(size) + box_type + payload
    return (
        _U32.pack(1) + box_type + _U64.pack(size + LARGE_HEADER_SIZE - BASIC_HEADER_SIZE) + payload
    )


def full_box(box_type: bytes, version: int, flags: int, payload: bytes) -> bytes:
    """A FullBox: version(8) and flags(24) ahead of the payload."""
    return box(box_type, _U32.pack((version << 24) | (flags & 0xFFFFFF)) + payload)
