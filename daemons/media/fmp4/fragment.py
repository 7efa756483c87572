"""Movie fragments: ``moof`` (``mfhd``, and per track ``tfhd``/``tfdt``/``trun``) read into
per-track timing, sample sizes and keyframe flags, plus where each run's sample data lies in
the stream so the reader can tell when the following ``mdat`` holds all of it.

Sample values fall back from ``trun`` to the ``tfhd`` defaults to the ``trex`` defaults
(ISO/IEC 14496-12 §8.8.7-8.8.8).
"""

from __future__ import annotations

from dataclasses import dataclass

from .boxes import BoxHeader, FieldReader, iter_children
from .errors import FMP4Error
from .init import InitSegment, Track

# tfhd flags
TFHD_BASE_DATA_OFFSET = 0x000001
TFHD_SAMPLE_DESCRIPTION_INDEX = 0x000002
TFHD_DEFAULT_SAMPLE_DURATION = 0x000008
TFHD_DEFAULT_SAMPLE_SIZE = 0x000010
TFHD_DEFAULT_SAMPLE_FLAGS = 0x000020
TFHD_DURATION_IS_EMPTY = 0x010000
TFHD_DEFAULT_BASE_IS_MOOF = 0x020000

# trun flags
TRUN_DATA_OFFSET = 0x000001
TRUN_FIRST_SAMPLE_FLAGS = 0x000004
TRUN_SAMPLE_DURATION = 0x000100
TRUN_SAMPLE_SIZE = 0x000200
TRUN_SAMPLE_FLAGS = 0x000400
TRUN_COMPOSITION_OFFSET = 0x000800
TRUN_PER_SAMPLE_FIELDS = (
    TRUN_SAMPLE_DURATION,
    TRUN_SAMPLE_SIZE,
    TRUN_SAMPLE_FLAGS,
    TRUN_COMPOSITION_OFFSET,
)

# Far beyond any live fragment (about 20 s of one-frame PCM samples at 48 kHz), and it keeps a
# corrupt sample_count with no per-sample fields from building a huge tuple.
MAX_SAMPLES_PER_TRACK_FRAGMENT = 1 << 20


def is_sync_sample(sample_flags: int) -> bool:
    """Whether ISO sample_flags describe a sync sample (keyframe): sample_is_non_sync_sample
    clear, and sample_depends_on not 1 ("depends on others"); 2 (on none) or 0 (unknown) do."""
    depends_on = (sample_flags >> 24) & 0x3
    non_sync = (sample_flags >> 16) & 0x1
    return not non_sync and depends_on != 1


@dataclass(frozen=True)
class TrackFragment:
    """One ``traf``: times in the track's timescale."""

    track_id: int
    base_decode_time: int  # tfdt
    sample_count: int
    duration: int  # sum of sample durations
    sample_sizes: tuple[int, ...]
    first_sample_sync: bool
    composition_offsets_present: bool


@dataclass(frozen=True)
class Fragment:
    """``data`` is the moof and its mdat exactly as read (after any side boxes that preceded the
    moof, such as styp, sidx, prft, emsg or free)."""

    data: bytes
    sequence_number: int  # mfhd
    tracks: dict[int, TrackFragment]

    def decode_time_s(self, init: InitSegment, track_id: int) -> float:
        return self.tracks[track_id].base_decode_time / init.tracks[track_id].timescale

    def duration_s(self, init: InitSegment, track_id: int) -> float:
        return self.tracks[track_id].duration / init.tracks[track_id].timescale


@dataclass(frozen=True)
class MovieFragment:
    """A parsed moof still waiting for its sample data: ``runs`` are the [start, end) stream
    offsets of every non-empty trun's data."""

    sequence_number: int
    tracks: dict[int, TrackFragment]
    runs: tuple[tuple[int, int], ...]


def parse_moof(
    data: bytes, moof: BoxHeader, init: InitSegment, moof_offset: int, file_offset: int
) -> MovieFragment:
    """Parse ``moof`` (located in ``data``) that starts at stream offset ``moof_offset``;
    ``file_offset`` is the stream offset of the init segment's ftyp, against which an explicit
    tfhd base_data_offset counts."""
    sequence_number: int | None = None
    tracks: dict[int, TrackFragment] = {}
    runs: list[tuple[int, int]] = []
    data_end = moof_offset  # implicit base of the first traf; then the end of the previous one
    for child in iter_children(data, moof.payload, moof.end, "moof"):
        if child.type == b"mfhd":
            fields = FieldReader(data, child.payload, child.end, "mfhd")
            fields.full_box_header()
            sequence_number = fields.u32("sequence_number")
        elif child.type == b"traf":
            fragment, data_end = _parse_traf(
                data, child, init, moof_offset, file_offset, data_end, runs
            )
            if fragment.track_id in tracks:
                raise FMP4Error(f"moof: two trafs for track_ID {fragment.track_id}")
            tracks[fragment.track_id] = fragment
    if sequence_number is None:
        raise FMP4Error("moof: no mfhd")
    return MovieFragment(sequence_number, tracks, tuple(runs))


def _parse_traf(
    data: bytes,
    traf: BoxHeader,
    init: InitSegment,
    moof_offset: int,
    file_offset: int,
    previous_data_end: int,
    runs: list[tuple[int, int]],
) -> tuple[TrackFragment, int]:
    children = list(iter_children(data, traf.payload, traf.end, "traf"))
    tfhd = next((c for c in children if c.type == b"tfhd"), None)
    if tfhd is None:
        raise FMP4Error("traf: no tfhd")
    fields = FieldReader(data, tfhd.payload, tfhd.end, "tfhd")
    _, flags = fields.full_box_header()
    track_id = fields.u32("track_ID")
    track = init.tracks.get(track_id)
    if track is None:
        raise FMP4Error(f"tfhd: track_ID {track_id} is not in the moov")
    trex_duration, trex_size, trex_flags = _trex_defaults(track)
    if flags & TFHD_BASE_DATA_OFFSET:
        base = file_offset + fields.u64("base_data_offset")
    elif flags & TFHD_DEFAULT_BASE_IS_MOOF:
        base = moof_offset
    else:
        base = previous_data_end
    if flags & TFHD_SAMPLE_DESCRIPTION_INDEX:
        fields.u32("sample_description_index")
    default_duration = (
        fields.u32("default_sample_duration")
        if flags & TFHD_DEFAULT_SAMPLE_DURATION
        else trex_duration
    )
    default_size = (
        fields.u32("default_sample_size") if flags & TFHD_DEFAULT_SAMPLE_SIZE else trex_size
    )
    default_flags = (
        fields.u32("default_sample_flags") if flags & TFHD_DEFAULT_SAMPLE_FLAGS else trex_flags
    )

    tfdt = next((c for c in children if c.type == b"tfdt"), None)
    if tfdt is None:
        raise FMP4Error(f"traf for track_ID {track_id}: no tfdt")
    fields = FieldReader(data, tfdt.payload, tfdt.end, "tfdt")
    version, _ = fields.full_box_header(max_version=1)
    base_decode_time = fields.uint(version, "baseMediaDecodeTime")

    run = _SampleRun(track_id, default_duration, default_size, default_flags)
    data_end = base
    if not flags & TFHD_DURATION_IS_EMPTY:
        for trun in (c for c in children if c.type == b"trun"):
            start, data_end = run.read(data, trun, base, data_end)
            if data_end > start:
                runs.append((start, data_end))
    return (
        TrackFragment(
            track_id=track_id,
            base_decode_time=base_decode_time,
            sample_count=len(run.sizes),
            duration=run.duration,
            sample_sizes=tuple(run.sizes),
            first_sample_sync=run.first_sample_sync,
            composition_offsets_present=run.composition_offsets_present,
        ),
        data_end,
    )


def _trex_defaults(track: Track) -> tuple[int, int, int]:
    """The trex sample duration, size and flags every traf of the track falls back on."""
    duration, size, flags = (
        track.default_sample_duration,
        track.default_sample_size,
        track.default_sample_flags,
    )
    if duration is None or size is None or flags is None:
        raise FMP4Error(f"traf for track_ID {track.track_id}, which has no trex in moov/mvex")
    return duration, size, flags


class _SampleRun:
    """Accumulates the samples of one traf's truns."""

    def __init__(self, track_id: int, duration: int, size: int, flags: int) -> None:
        self.track_id = track_id
        self.default_duration = duration
        self.default_size = size
        self.default_flags = flags
        self.sizes: list[int] = []
        self.duration = 0
        self.first_sample_sync = False
        self.composition_offsets_present = False

    def read(self, data: bytes, trun: BoxHeader, base: int, previous_end: int) -> tuple[int, int]:
        """Read one trun; the [start, end) stream offsets of its sample data."""
        fields = FieldReader(data, trun.payload, trun.end, f"trun (track_ID {self.track_id})")
        _, flags = fields.full_box_header(max_version=1)
        count = fields.u32("sample_count")
        start = base + fields.i32("data_offset") if flags & TRUN_DATA_OFFSET else previous_end
        first_flags = fields.u32("first_sample_flags") if flags & TRUN_FIRST_SAMPLE_FLAGS else None
        entry_size = 4 * sum(1 for bit in TRUN_PER_SAMPLE_FIELDS if flags & bit)
        if count * entry_size > fields.remaining:
            raise FMP4Error(f"{fields.box}: sample_count {count} overruns the box")
        if len(self.sizes) + count > MAX_SAMPLES_PER_TRACK_FRAGMENT:
            raise FMP4Error(
                f"{fields.box}: sample_count {count} exceeds "
                f"{MAX_SAMPLES_PER_TRACK_FRAGMENT} per traf"
            )
        if flags & TRUN_COMPOSITION_OFFSET:
            self.composition_offsets_present = True
        run_bytes = 0
        for index in range(count):
            duration = (
                fields.u32("sample_duration")
                if flags & TRUN_SAMPLE_DURATION
                else self.default_duration
            )
            size = fields.u32("sample_size") if flags & TRUN_SAMPLE_SIZE else self.default_size
            sample_flags = (
                fields.u32("sample_flags") if flags & TRUN_SAMPLE_FLAGS else self.default_flags
            )
            if flags & TRUN_COMPOSITION_OFFSET:
                fields.u32("sample_composition_time_offset")
            if index == 0 and first_flags is not None:
                sample_flags = first_flags
            if not self.sizes:
                self.first_sample_sync = is_sync_sample(sample_flags)
            self.sizes.append(size)
            self.duration += duration
            run_bytes += size
        return start, start + run_bytes
