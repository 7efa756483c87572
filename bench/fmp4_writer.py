#!/usr/bin/env python3
"""What Sender's own fMP4 writer costs per frame (issue 16, the native backend): the cached
720p30 3 Mbps clip of the other benchmarks (harness.SourceClip, H.264 + AAC FLV) is read and its
tags decoded once, untimed; then every frame goes through ``Remuxer`` (frame check, timing,
moof+mdat bytes and the Fragment value) as an RTMP session would hand it over, in FLV order,
best of ``--rounds``, in CPU time of the thread (so other processes on a busy machine do not
count). For scale, the same output read back by ``FMP4Reader`` in 64 KiB reads (what the ffmpeg
backend pays today, in the daemon, to parse ffmpeg's fMP4) is timed too.

Run from the checkout:  .venv/bin/python bench/fmp4_writer.py [--rounds 7] [--json]
Needs: ffmpeg with libx264 (only to encode the clip once; it is cached in bench/.cache/).
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(BENCH_DIR.parent))

from harness import SourceClip

from daemons.media import flv
from daemons.media.fmp4 import (
    FMP4Reader,
    Remuxer,
    parse_audio_config,
    parse_video_config,
)

PIPE_READ = 65536


def load(clip: Path):
    """The clip's configurations and frames, in FLV order: ("v", ts, cto, key, data) / ("a", ts, data)."""
    video = audio = None
    frames = []
    for tag in flv.FLVReader().feed(clip.read_bytes()):
        if tag.type == flv.TAG_VIDEO:
            header = flv.parse_video_tag(tag.body)
            payload = tag.body[header.data_offset :]
            if header.is_sequence_header:
                video = parse_video_config("avc1", payload)
            elif header.packet_type == 1:
                frames.append(("v", tag.timestamp, header.composition_time, header.is_keyframe, payload))
        elif tag.type == flv.TAG_AUDIO:
            header = flv.parse_audio_tag(tag.body)
            payload = tag.body[header.data_offset :]
            if header.is_sequence_header:
                audio = parse_audio_config("mp4a", payload)
            else:
                frames.append(("a", tag.timestamp, payload))
    return video, audio, frames


def write_once(video, audio, frames, hold: bool) -> tuple[float, list]:
    remuxer = Remuxer(video, audio, hold_video=hold)
    out = [remuxer.init]
    video_call, audio_call = remuxer.video, remuxer.audio
    gc.disable()
    try:
        start = time.thread_time()
        for frame in frames:
            if frame[0] == "v":
                out += video_call(frame[1], frame[2], frame[3], frame[4])
            else:
                out += audio_call(frame[1], frame[2])
        out += remuxer.flush()
        elapsed = time.thread_time() - start
    finally:
        gc.enable()
    return elapsed, out


def read_once(data: bytes) -> float:
    """The reader fed as from a pipe, 64 KiB at a time."""
    reader = FMP4Reader()
    start = time.thread_time()
    for offset in range(0, len(data), PIPE_READ):
        reader.feed(data[offset : offset + PIPE_READ])
    return time.thread_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print("ffmpeg is needed to encode the clip (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    clip = SourceClip()
    path = clip.ensure(ffmpeg)
    video, audio, frames = load(path)
    video_frames = sum(1 for f in frames if f[0] == "v")
    audio_frames = len(frames) - video_frames
    media_s = max(f[1] for f in frames) / 1000
    report = {
        "clip": str(path.relative_to(BENCH_DIR.parent)),
        "codecs": [video.codec, audio.codec],
        "video_frames": video_frames,
        "audio_frames": audio_frames,
        "media_bytes": sum(len(f[-1]) for f in frames),
        "rounds": args.rounds,
        "python": sys.version.split()[0],
    }
    for hold in (False, True):
        best, out = min((write_once(video, audio, frames, hold) for _ in range(args.rounds)),
                        key=lambda r: r[0])
        report["hold" if hold else "immediate"] = {
            "us_per_frame": round(best / len(frames) * 1e6, 2),
            "core_percent_per_stream": round(best / media_s * 100, 3),
            "output_bytes": sum(len(e.data) for e in out),
        }
    data = b"".join(e.data for e in out)
    read = min(read_once(data) for _ in range(args.rounds))
    report["reader_us_per_frame"] = round(read / len(frames) * 1e6, 2)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"clip: {report['clip']} ({video_frames} video + {audio_frames} audio frames, "
          f"{media_s:.1f} s, {report['media_bytes'] * 8 / media_s / 1e6:.2f} Mbps of frames)")
    for mode in ("immediate", "hold"):
        r = report[mode]
        print(f"writer ({mode:9}): {r['us_per_frame']:6.2f} µs/frame  = {r['core_percent_per_stream']:.3f} % of a "
              f"core per stream  ({r['output_bytes'] / report['media_bytes'] - 1:+.2%} bytes over the frames)")
    print(f"reader (same output): {report['reader_us_per_frame']:6.2f} µs/frame  (best of {args.rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
