"""What Sender tells an admin and a broadcaster: one rule each, shared by the CLI (`sender stream
status`), the management API (`stream.status`), the admin page and the OBS runbook.

The one keyframe interval Sender recommends is the segment target (`hls.segment_target_s`),
in whole seconds because that is what OBS's "Keyframe Interval" takes. Why that one: the
packager cuts a segment at the first keyframe at or after the target, so a longer interval makes
every segment as long as the interval (and TARGETDURATION, and the HOLD-BACK of players without
LL-HLS, three times that), while a shorter one spends bits on keyframes without lowering
latency — with LL-HLS the parts, not the segments, set how far behind viewers are.
"""

from __future__ import annotations

import math

# A keyframe interval this much over the target still makes segments of the target's length
# (timestamps jitter by a frame or so).
_TOLERANCE_S = 0.05


def recommended_keyframe_interval_s(segment_target_s: float) -> int:
    """The keyframe interval to set in OBS (whole seconds): the segment target, or 1 s when the
    target is not a whole number of seconds (every segment then still starts on a keyframe)."""
    whole = round(segment_target_s)
    return whole if whole >= 1 and abs(whole - segment_target_s) < 1e-9 else 1


def keyframe_advice(segment_target_s: float) -> str:
    """The recommendation as one sentence for OBS and ffmpeg users."""
    k = recommended_keyframe_interval_s(segment_target_s)
    return (f"OBS: Settings → Output → Streaming → Keyframe Interval = {k} s (not 0/auto); "
            f"ffmpeg: -g <frame rate × {k}>, e.g. -g {30 * k} at 30 fps")


def stream_warnings(publisher: dict | None, pipeline: dict | None, *, segment_target_s: float, spool_root: str) -> list[str]:
    """Warnings for a stream from the ingest daemon's stats of its publisher and pipeline."""
    out = []
    gop = (publisher or {}).get("keyframe_interval_s")
    if gop is not None and gop > segment_target_s + _TOLERANCE_S:
        # What the viewer pays: segments as long as the GOP, and a TARGETDURATION (and a hold-back
        # for players without LL-HLS) to match.
        segment = math.ceil(segment_target_s / gop - 1e-9) * gop
        target = max(round(segment), 1)
        out.append(
            f"the publisher sends a keyframe every {gop:.2f} s, longer than hls.segment_target_s = {segment_target_s:g} s "
            f"(OBS's Keyframe Interval 0/auto sends one every ~8 s): segments are {segment:.1f} s long instead of "
            f"{segment_target_s:g} s, TARGETDURATION becomes {target} s and players without LL-HLS wait "
            f"{3 * target} s behind live (HOLD-BACK); LL-HLS viewers join up to {gop:.1f} s late. "
            f"Set {keyframe_advice(segment_target_s)}."
        )
    if pipeline and pipeline.get("spool_full"):
        out.append(f"the spool ({spool_root}) refuses writes: viewers get no new parts. Free space.")
    return out
