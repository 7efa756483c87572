"""What Sender tells an admin about a live stream: one rule each, shared by the CLI
(`sender stream status`) and the management API (`stream.status`)."""

from __future__ import annotations


def stream_warnings(publisher: dict | None, pipeline: dict | None, *, segment_target_s: float, spool_root: str) -> list[str]:
    """Warnings for a stream from the ingest daemon's stats of its publisher and pipeline."""
    out = []
    gop = (publisher or {}).get("keyframe_interval_s")
    if gop is not None and gop > segment_target_s + 0.05:
        # A keyframe interval longer than the segment target makes long segments and more latency.
        out.append(
            f"the publisher sends a keyframe every {gop:.2f} s, longer than hls.segment_target_s = {segment_target_s:g} s: "
            f"segments are {gop:.2f} s long and viewers sit further behind. In OBS: Settings → Output → "
            f"Streaming → Keyframe Interval = {max(1, int(segment_target_s))} s (ffmpeg: -g <frame rate × {segment_target_s:g}>)."
        )
    if pipeline and pipeline.get("spool_full"):
        out.append(f"the spool ({spool_root}) refuses writes: viewers get no new parts. Free space.")
    return out
