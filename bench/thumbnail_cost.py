#!/usr/bin/env python3
"""What thumbnails cost (issue 17's goal: under 0.5 % of a core per stream at the default interval).

One real ingest daemon on 127.0.0.1 with thumbnails on, one ffmpeg publisher of 720p30 (x264
veryfast, B-frames, 3 Mb/s) for 24 s. Measured: the thumbnail decoder's CPU per thumbnail (its
/proc ticks over a dozen thumbnails made at a 1 s interval), the keyframe tap's cost per second
of media (every tag of the publish through it), and Sender's own work per thumbnail (the tag
encoded, the JPEG split); the share of a core at the default thumbnails.interval_s follows.

Run from the checkout:  .venv/bin/python bench/thumbnail_cost.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemons.core import config as config_mod  # noqa: E402
from daemons.ingest import thumbnails  # noqa: E402
from daemons.ingest.thumbnails import JPEGSplitter, KeyframeTap  # noqa: E402
from daemons.media import flv, rtmp  # noqa: E402
from tests.daemons.conftest import add_stream, ffmpeg_publish_cmd, make_install, run_publisher, start_ingest, wait_for  # noqa: E402

DEFAULT_INTERVAL_S = config_mod.SCHEMA["thumbnails.interval_s"].default


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks


async def measure(tmp_path: Path) -> str:
    async with trio.open_nursery() as nursery:
        inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0", "thumbnails.interval_s": 1.0,
                                                 "thumbnails.width": 640, "rtmp.record": False})
        running = await start_ingest(nursery, inst)
        s = add_stream(inst)
        cmd = ffmpeg_publish_cmd(running.url(s.key), 24, size="1280x720", rate=30,
                                 extra=["-preset", "veryfast", "-bf", "2", "-b:v", "3M"])
        nursery.start_soon(run_publisher, cmd, 90)
        thumbnailer = running.daemon.thumbnails
        tap = await wait_for(lambda: (t := thumbnailer.taps.get(s.stream["id"])) and t.decoder and thumbnailer.made >= 1 and t,
                             timeout=30)
        pid, made0, ticks0 = tap.decoder.pid, thumbnailer.made, _cpu_ticks(tap.decoder.pid)
        await wait_for(lambda: thumbnailer.made >= made0 + 12, timeout=40)
        made, ticks = thumbnailer.made - made0, _cpu_ticks(pid) - ticks0
        per_thumbnail_s = ticks / os.sysconf("SC_CLK_TCK") / made
        # The tap's share: what it does with each tag of that publish (30 video + ~43 audio tags a second).
        keyframe = tap.keyframe
        audio = rtmp.AudioData(0, b"\xaf\x01" + b"\x00" * 300, flv.parse_audio_tag(b"\xaf\x01" + b"\x00" * 300))
        probe = KeyframeTap(thumbnails.Thumbnailer(inst.config), s.stream, "gen", tmp_path)
        probe.sequence_header = tap.sequence_header
        n = 20_000
        started = time.perf_counter()
        for _ in range(n):
            await probe.write(keyframe)
            await probe.write(audio)
        tap_per_second_s = (time.perf_counter() - started) / (2 * n) * 73
        jpeg = (running.generation_dirs(s.stream["id"])[0] / "thumbnail.jpg").read_bytes()
        started = time.perf_counter()
        for _ in range(200):
            flv.encode_tag(flv.TAG_VIDEO, 0, keyframe.payload)
            JPEGSplitter().feed(jpeg)
        ours_per_thumbnail_s = (time.perf_counter() - started) / 200
        nursery.cancel_scope.cancel()
    share = (per_thumbnail_s + ours_per_thumbnail_s) / DEFAULT_INTERVAL_S + tap_per_second_s
    return (f"thumbnail CPU per 720p30 stream at a {DEFAULT_INTERVAL_S:g} s interval: {share * 100:.3f} % of a core "
            f"(decoder {per_thumbnail_s * 1000:.1f} ms per thumbnail over {made}, ours "
            f"{ours_per_thumbnail_s * 1e6:.0f} us per thumbnail, tap {tap_per_second_s * 1e6:.1f} us per second); goal < 0.5 %")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sender-thumbs-") as tmp:
        print(trio.run(measure, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
