"""The ffmpeg media backend: one supervised ffmpeg per publisher session.

ffmpeg reads FLV on stdin and writes fragmented MP4 (CMAF: empty_moov, default_base_moof, one
fragment per frame) to one pipe per rendition; Sender's packager makes parts, segments and
playlists from those fragments. The `source` rendition is a remux (`-c copy`); transcoded
renditions are encoded with libx264/AAC with keyframes forced on the segment grid, so every
rendition cuts its segments at the same instants.

No ffmpeg outlives its daemon: each runs in its own process group (a Ctrl-C in a terminal does
not reach it; we stop it in order) with PR_SET_PDEATHSIG=SIGKILL. The death signal belongs to the
*thread* that forked, so the fork happens on the daemon's main thread (the trio thread), never in
a worker thread that may exit while ffmpeg runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Callable

import trio

from daemons.runtime.children import die_with_parent

# Minimal input probing: the FLV's sequence headers come first, so ffmpeg need not probe; the
# default probing costs over a second of latency (shared/notes/media-pipeline.md). Not
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

    popen: subprocess.Popen
    stdin: trio.lowlevel.FdStream
    outputs: list[trio.lowlevel.FdStream]
    stderr: trio.lowlevel.FdStream
    _pidfd: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    async def wait(self) -> int:
        """Wait for exit without polling (a pidfd becomes readable when the process exits)."""
        await trio.lowlevel.wait_readable(self._pidfd)
        return self.popen.wait()

    def kill_group(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    async def aclose(self) -> None:
        for s in (self.stdin, *self.outputs, self.stderr):
            await trio.aclose_forcefully(s)
        if self.popen.poll() is None:
            self.kill_group()
            with trio.CancelScope(shield=True):
                await self.wait()
        os.close(self._pidfd)


def spawn(build_command: Callable[[list[int]], list[str]], n_outputs: int) -> BackendProcess:
    """Start ffmpeg on the calling (main) thread; see the module docstring for why.

    `build_command` gets the child's file descriptors for the outputs (for `pipe:FD`)."""
    stdin_r, stdin_w = os.pipe()
    err_r, err_w = os.pipe()
    outs = [os.pipe() for _ in range(n_outputs)]
    child_ends = [w for _, w in outs]
    try:
        popen = subprocess.Popen(
            build_command(child_ends),
            stdin=stdin_r,
            stdout=subprocess.DEVNULL,
            stderr=err_w,
            pass_fds=child_ends,
            start_new_session=True,
            preexec_fn=die_with_parent(),
            close_fds=True,
        )
    except BaseException:
        for fd in (stdin_r, stdin_w, err_r, err_w, *[fd for pair in outs for fd in pair]):
            os.close(fd)
        raise
    for fd in (stdin_r, err_w, *child_ends):
        os.close(fd)
    return BackendProcess(
        popen=popen,
        stdin=trio.lowlevel.FdStream(stdin_w),
        outputs=[trio.lowlevel.FdStream(r) for r, _ in outs],
        stderr=trio.lowlevel.FdStream(err_r),
        _pidfd=os.pidfd_open(popen.pid),
    )
