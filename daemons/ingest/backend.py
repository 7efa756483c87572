"""The ffmpeg media backend: one supervised ffmpeg per publisher session.

ffmpeg reads FLV on stdin and writes fragmented MP4 (CMAF: empty_moov, default_base_moof, one
fragment per frame) to one pipe per rendition; Sender's packager makes parts, segments and
playlists from those fragments. The `source` rendition is a remux (`-c copy`); transcoded
renditions are encoded with libx264/AAC with keyframes forced on the segment grid, so every
rendition cuts its segments at the same instants.

No ffmpeg outlives its daemon: it is started by `daemons.runtime.children.spawn` (own process
group, so a Ctrl-C in a terminal does not reach it and we stop it in order; PR_SET_PDEATHSIG=
SIGKILL, forked on the daemon's main thread, where the death signal holds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import trio

from daemons.runtime import children
from daemons.runtime.children import Child

# Minimal input probing: the FLV's sequence headers come first, so ffmpeg need not probe; the
# default probing costs over a second of latency (measured: 1.36 s to the first fragment, against
# 54 ms with these options). Not
# `-fflags nobuffer`: with a pipe it throws away the packets read while probing (the first GOP).
INPUT_ARGS = ["-probesize", "32", "-analyzeduration", "0", "-f", "flv", "-i", "pipe:0"]
# One fragment per video frame. `-frag_duration 1` (µs) cuts at every packet, like
# `+frag_every_frame`, but ffmpeg 5.1's frag_every_frame writes broken AAC durations with -c copy
# (samples of duration 0, a third of the audio dropped); this form keeps every timeline exact.
FMP4_ARGS = ["-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof+delay_moov", "-frag_duration", "1", "-flush_packets", "1"]


def rendition_output_args(rendition: dict, segment_target_s: float) -> list[str]:
    """ffmpeg output options for one rendition (before its `pipe:FD`)."""
    maps = ["-map", "0:v?", "-map", "0:a?"]
    if rendition["kind"] == "source":
        return [*maps, "-c", "copy", *FMP4_ARGS]
    v = rendition
    video = [
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-b:v", str(v["video_bitrate"]), "-maxrate", str(v["video_bitrate"]), "-bufsize", str(v["video_bitrate"]),
        "-vf", f"scale=-2:{v['height']}" if not v.get("width") else f"scale={v['width']}:{v['height']}",
        # Keyframes on the segment grid in every rendition: segments align across the ladder.
        "-force_key_frames", f"expr:gte(t,n_forced*{segment_target_s:g})", "-sc_threshold", "0",
    ]
    if v.get("frame_rate"):
        video += ["-r", f"{v['frame_rate']:g}"]
    audio = ["-c:a", "aac", "-b:a", str(v.get("audio_bitrate") or 128000), "-ac", "2"]
    return [*maps, *video, *audio, *FMP4_ARGS]


def ffmpeg_command(ffmpeg: str, renditions: list[dict], out_fds: list[int], *, segment_target_s: float, extra_args: list[str]) -> list[str]:
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "warning", *INPUT_ARGS, *extra_args]
    for rendition, fd in zip(renditions, out_fds):
        cmd += [*rendition_output_args(rendition, segment_target_s), f"pipe:{fd}"]
    return cmd


@dataclass
class BackendProcess:
    """A running ffmpeg: its stdin for FLV, one fMP4 stream per rendition, its stderr."""

    child: Child
    outputs: list[trio.lowlevel.FdStream]

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def stdin(self) -> trio.lowlevel.FdStream:
        return self.child.stdin

    @property
    def stderr(self) -> trio.lowlevel.FdStream:
        return self.child.stderr

    async def wait(self) -> int:
        return await self.child.wait()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for s in self.outputs:
                await trio.aclose_forcefully(s)
            await self.child.aclose()


def spawn(build_command: Callable[[list[int]], list[str]], n_outputs: int) -> BackendProcess:
    """Start ffmpeg (through `children.spawn`: on the main thread, own process group, SIGKILL if
    the daemon dies). `build_command` gets the child's file descriptors for the outputs (for
    `pipe:FD`)."""
    outs = [os.pipe() for _ in range(n_outputs)]
    child_ends = [w for _, w in outs]
    try:
        child = children.spawn(build_command(child_ends), stdin=children.PIPE, stdout=children.DEVNULL,
                               stderr=children.PIPE, pass_fds=child_ends)
    except BaseException:
        for fd in (fd for pair in outs for fd in pair):
            os.close(fd)
        raise
    for fd in child_ends:
        os.close(fd)
    return BackendProcess(child=child, outputs=[trio.lowlevel.FdStream(r) for r, _ in outs])
