"""A long recording made by the real packager, then exported to one MP4 (issue 17): what
`sender recording export --mp4` costs, and how long `sender recording list` takes, on it.

1. The harness's source clip (720p30 H.264 3 Mb/s + AAC 128 kb/s) is looped with `-c copy` for
   --minutes and published *faster than real time* (no -re) into a `sender daemon ingest` with
   recording.enabled = true: a real recording in a real spool (every segment, its parts, the DVR
   and VOD playlists), made by the same code as a live one.
2. The broadcast is stopped (`sender stream stop`) and its VOD playlist written.
3. `sender recording list` and `sender recording export GEN --mp4 FILE` are timed (wall clock, and
   CPU of the command with its ffmpeg), the MP4 is probed (duration, streams, size). The recording
   was just written, so its files are in the page cache: the figure is the remux, not the disk.

    .venv/bin/python bench/recording_export.py                 # one hour (~5 min here)
    .venv/bin/python bench/recording_export.py --minutes 10 --keep --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402 - the benchmark's own directory first
    SetupError,
    SourceClip,
    free_port,
    machine_facts,
    port_open,
    require_tools,
    run_checked,
    sender_cli,
    stop_process,
    tail,
    wait_until,
)


def timed(cmd: list[str], what: str) -> tuple[subprocess.CompletedProcess, float, float]:
    """(the finished command, wall seconds, CPU seconds of it and every process it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = run_checked(cmd, what)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the recording (default 60)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (install, spool, MP4, logs)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    tools = require_tools(nginx=False)
    sender = str(sender_cli())
    clip = SourceClip()
    clip_path = clip.ensure(tools["ffmpeg"])
    work = Path(tempfile.mkdtemp(prefix="sender-recording-bench-"))
    config = work / "var" / "sender.toml"
    port = free_port()
    report: dict = {"machine": machine_facts(tools), "source": clip.probe(tools["ffprobe"]), "minutes": args.minutes}
    ingest = None

    def cli(*a: str, what: str) -> subprocess.CompletedProcess:
        return run_checked([sender, "--config", str(config), *a], what)

    try:
        run_checked([sender, "init", "--dir", str(work / "var")], "sender init")
        for key, value in (("recording.enabled", "true"), ("rtmp.listen", f"127.0.0.1:{port}"),
                           ("thumbnails.enabled", "false"), ("rtmp.record", "false")):
            cli("config", "set", key, value, what=f"sender config set {key}")
        cli("stream", "create", "long", what="sender stream create")
        key = json.loads(cli("key", "create", "long", "--json", what="sender key create").stdout)["key"]
        log = work / "ingest.log"
        with open(log, "wb") as f:
            ingest = subprocess.Popen([sender, "--config", str(config), "daemon", "ingest"], stdin=subprocess.DEVNULL,
                                      stdout=f, stderr=subprocess.STDOUT)
        wait_until(lambda: port_open("127.0.0.1", port), 20, "sender daemon ingest listening",
                   alive=lambda: None if ingest.poll() is None else f"exited: {tail(log)}")

        seconds = round(args.minutes * 60)
        _, publish_wall, _ = timed(
            [tools["ffmpeg"], "-nostdin", "-hide_banner", "-loglevel", "error", "-stream_loop", "-1", "-i", str(clip_path),
             "-t", str(seconds), "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{port}/live/{key}"],
            "publishing the recording")
        cli("stream", "stop", "long", what="sender stream stop")
        spool = work / "var" / "spool" / "streams"
        vod = wait_until(lambda: next(iter(spool.glob("*/*/master-vod.m3u8")), None), 600, "the VOD master playlist",
                         interval_s=0.5, alive=lambda: None if ingest.poll() is None else f"ingest exited: {tail(log)}")
        generation = vod.parent.name
        report["publish"] = {"media_s": seconds, "wall_s": round(publish_wall, 1),
                             "times_real_time": round(seconds / publish_wall, 1)}

        listed, list_wall, _ = timed([sender, "--config", str(config), "recording", "list", "--json"], "sender recording list")
        [recording] = json.loads(listed.stdout)
        report["recording"] = {k: recording[k] for k in ("generation_id", "duration_s", "segments", "discontinuities", "bytes")}
        report["recording"]["files"] = sum(1 for p in vod.parent.rglob("*") if p.is_file())
        report["list_wall_s"] = round(list_wall, 3)

        out = work / "long.mp4"
        _, export_wall, export_cpu = timed([sender, "--config", str(config), "recording", "export", generation, "--mp4", str(out)],
                                           "sender recording export")
        probe = json.loads(run_checked([tools["ffprobe"], "-v", "error", "-show_format", "-show_streams", "-of", "json", str(out)],
                                       "ffprobe of the MP4").stdout)
        duration = float(probe["format"]["duration"])
        report["export"] = {
            "wall_s": round(export_wall, 1), "cpu_s": round(export_cpu, 1),
            "media_s_per_wall_s": round(duration / export_wall, 1),
            "mp4_bytes": out.stat().st_size, "mp4_duration_s": round(duration, 2),
            "duration_error_s": round(duration - recording["duration_s"], 3),
            "streams": [f"{s['codec_type']}:{s['codec_name']}" for s in probe["streams"]],
            "moov_first": _moov_first(out),
        }
        report["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        if ingest is not None:
            stop_process(ingest)
        if args.keep:
            report["work_dir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        r, e = report["recording"], report["export"]
        print(f"recording: {r['duration_s'] / 60:.1f} min, {r['segments']} segments, {r['files']} files, "
              f"{r['bytes'] / 2**30:.2f} GiB (published in {report['publish']['wall_s']} s, "
              f"{report['publish']['times_real_time']}x real time)")
        print(f"sender recording list: {report['list_wall_s']} s")
        print(f"sender recording export --mp4: {e['wall_s']} s wall, {e['cpu_s']} s CPU "
              f"({e['media_s_per_wall_s']}x real time); MP4 {e['mp4_bytes'] / 2**30:.2f} GiB, {e['mp4_duration_s']} s "
              f"({e['duration_error_s']:+} s vs the playlist), {', '.join(e['streams'])}, moov first: {e['moov_first']}")
        print(f"machine: {report['machine']['nproc']} cores {report['machine']['cpu_model']}, "
              f"load {' '.join(report['machine']['loadavg_at_start'])} → {' '.join(report['machine']['loadavg_at_end'])}")
    return 0


def _moov_first(path: Path) -> bool:
    """Whether the MP4's index comes before its media (+faststart: it plays while downloading)."""
    with open(path, "rb") as f:
        while header := f.read(8):
            size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if kind in (b"moov", b"mdat"):
                return kind == b"moov"
            if size == 1:
                size = int.from_bytes(f.read(8), "big") - 8
            f.seek(size - 8, os.SEEK_CUR)
    return False


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
