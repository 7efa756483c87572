"""``FMP4Reader``: fragmented MP4 bytes in (any split), ``InitSegment`` and ``Fragment`` out.

The stream is read box by box at the top level:

* ``ftyp`` [other boxes] ``moov`` → one ``InitSegment`` (a later ftyp+moov → a new one);
* side boxes (``styp``, ``sidx``, ``prft``, ``emsg``, ``free`` … anything not named below) are
  held and become the head of the next fragment's ``data``; any still held when an ``ftyp`` or
  ``mfra`` arrives, or when the stream ends, are dropped;
* ``moof`` then ``mdat`` (and any boxes between) → one ``Fragment``, emitted as soon as the
  mdat(s) read so far hold every trun's sample data: the moof tells exactly where that is;
* ``mfra`` (the random-access index ffmpeg appends at the end) is dropped.

Memory is bounded before it is spent: each box header is checked against ``max_box_size`` and
the unit it belongs to (the init segment or fragment being assembled) against ``max_buffered``
as soon as the header is read. Bytes are kept in one bytearray whose consumed head is cut off
only once it outweighs the live tail, so each byte is copied a bounded number of times.
"""

from __future__ import annotations

import enum

from .boxes import BoxHeader, fourcc, read_header
from .errors import FMP4Error
from .fragment import Fragment, MovieFragment, parse_moof
from .init import InitSegment, parse_init

DEFAULT_MAX_BOX_SIZE = 32 * 1024 * 1024
DEFAULT_MAX_BUFFERED = 64 * 1024 * 1024


class _Expect(enum.Enum):
    FTYP = "ftyp"  # start of the stream
    MOOV = "moov"  # after ftyp
    MOOF = "moof"  # between fragments
    MDAT = "mdat"  # after a moof, until its sample data is all read


class FMP4Reader:
    """Sans-IO reader of one fragmented MP4 stream, such as ffmpeg's ``-f mp4`` on a pipe."""

    def __init__(
        self, *, max_box_size: int = DEFAULT_MAX_BOX_SIZE, max_buffered: int = DEFAULT_MAX_BUFFERED
    ) -> None:
        self._max_box_size = max_box_size
        self._max_buffered = max_buffered
        self._buf = bytearray()
        self._origin = 0  # stream offset of _buf[0]
        self._unit = 0  # _buf index where the init segment or fragment being assembled starts
        self._pos = 0  # _buf index of the next box header
        self._expect = _Expect.FTYP
        self._init: InitSegment | None = None
        # Stream offset of the current ftyp: explicit tfhd base_data_offsets count from it.
        self._file_offset = 0
        self._moof: MovieFragment | None = None
        self._pending_runs: list[tuple[int, int]] = []  # trun data not yet found in an mdat

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the unit being assembled (and any partial box header after it)."""
        return len(self._buf) - self._unit

    def feed(self, data: bytes) -> list[InitSegment | Fragment]:
        """Take the next bytes of the stream (``b""`` is not the end); what they completed."""
        events: list[InitSegment | Fragment] = []
        offset = 0
        while offset < len(data):
            # Take no more than may be held, so a huge chunk cannot overshoot max_buffered.
            room = self._max_buffered - self.buffered_bytes
            if room <= 0:
                raise FMP4Error(f"{self._unit_name()} exceeds max_buffered {self._max_buffered}")
            self._buf += data[offset : offset + room]
            offset += room
            self._parse(events)
        return events

    def end(self) -> None:
        """The stream ended: an error if it stopped inside a box or before a fragment's mdat;
        else side boxes still held (with no fragment left to lead) are let go."""
        if self._pos < len(self._buf):
            header = read_header(self._buf, self._pos, len(self._buf))
            if header is None:
                raise FMP4Error(
                    f"stream ended inside a box header ({len(self._buf) - self._pos} bytes)"
                )
            have = len(self._buf) - header.start
            raise FMP4Error(
                f"stream ended inside box {fourcc(header.type)!r} ({have} of {header.size} bytes)"
            )
        if self._expect is _Expect.MOOV:
            raise FMP4Error("stream ended after ftyp, before moov")
        if self._expect is _Expect.MDAT:
            raise FMP4Error(f"stream ended before the sample data (mdat) of {self._unit_name()}")
        del self._buf[:]
        self._origin += self._pos
        self._unit = self._pos = 0

    # -- internals ---------------------------------------------------------------

    def _parse(self, events: list[InitSegment | Fragment]) -> None:
        while (header := read_header(self._buf, self._pos, len(self._buf))) is not None:
            self._admit(header)
            if header.end > len(self._buf):
                break
            self._pos = header.end
            self._complete(header, events)
        if self._unit * 2 > len(self._buf):
            # The consumed head outweighs what is still held: cut it off (amortized O(1) per byte).
            del self._buf[: self._unit]
            self._origin += self._unit
            self._pos -= self._unit
            self._unit = 0

    def _unit_name(self) -> str:
        if self._expect is _Expect.MDAT and self._moof is not None:
            return f"fragment {self._moof.sequence_number}"
        return "init segment" if self._expect in (_Expect.FTYP, _Expect.MOOV) else "fragment"

    def _admit(self, header: BoxHeader) -> None:
        """Checks made as soon as a box header is read, before its body is buffered."""
        name = fourcc(header.type)
        if header.size > self._max_box_size:
            raise FMP4Error(
                f"box {name!r} size {header.size} exceeds max_box_size {self._max_box_size}"
            )
        if header.end - self._unit > self._max_buffered:
            raise FMP4Error(
                f"box {name!r} would grow the {self._unit_name()} "
                f"past max_buffered {self._max_buffered}"
            )
        box_type, expect = header.type, self._expect
        if expect is _Expect.FTYP and box_type != b"ftyp":
            raise FMP4Error(f"stream starts with box {name!r}, not ftyp")
        if expect is _Expect.MOOV and box_type in (b"ftyp", b"moof", b"mdat", b"mfra"):
            raise FMP4Error(f"box {name!r} before moov")
        if expect is _Expect.MOOF and box_type in (b"moov", b"mdat"):
            raise FMP4Error(
                f"box {name!r} without a {'ftyp' if box_type == b'moov' else 'moof'} before it"
            )
        if expect is _Expect.MDAT and box_type in (b"ftyp", b"moov", b"moof", b"mfra"):
            raise FMP4Error(f"box {name!r} before all sample data of {self._unit_name()} was read")

    def _complete(self, header: BoxHeader, events: list[InitSegment | Fragment]) -> None:
        """Act on a box that is now entirely in the buffer."""
        box_type = header.type
        if box_type == b"ftyp":
            self._unit = header.start  # drops side boxes held before it
            self._file_offset = self._origin + header.start
            self._expect = _Expect.MOOV
        elif box_type == b"moov":
            data = bytes(self._buf[self._unit : header.end])
            shift = self._unit
            moov = BoxHeader(
                box_type, header.start - shift, header.payload - shift, header.end - shift
            )
            self._init = parse_init(data, moov)
            events.append(self._init)
            self._unit = header.end
            self._expect = _Expect.MOOF
        elif box_type == b"mfra":
            self._unit = header.end
        elif box_type == b"moof":
            assert self._init is not None  # _admit allows a moof only after a moov
            moof_data = bytes(self._buf[header.start : header.end])
            moof = BoxHeader(box_type, 0, header.payload - header.start, header.size)
            self._moof = parse_moof(
                moof_data, moof, self._init, self._origin + header.start, self._file_offset
            )
            self._pending_runs = list(self._moof.runs)
            self._expect = _Expect.MDAT
        elif box_type == b"mdat" and self._expect is _Expect.MDAT:
            self._take_mdat(header, events)

    def _take_mdat(self, header: BoxHeader, events: list[InitSegment | Fragment]) -> None:
        assert self._moof is not None
        payload_start, payload_end = self._origin + header.payload, self._origin + header.end
        still_pending = []
        for start, end in self._pending_runs:
            if payload_start <= start and end <= payload_end:
                continue
            if start < payload_end:
                # Starts before the end of this mdat but does not lie inside it: outside any mdat.
                raise FMP4Error(
                    f"fragment {self._moof.sequence_number}: trun data at stream offsets "
                    f"[{start}, {end}) is not inside an mdat payload"
                )
            still_pending.append((start, end))
        self._pending_runs = still_pending
        if not still_pending:
            events.append(
                Fragment(
                    bytes(self._buf[self._unit : header.end]),
                    self._moof.sequence_number,
                    self._moof.tracks,
                )
            )
            self._unit = header.end
            self._moof = None
            self._expect = _Expect.MOOF
