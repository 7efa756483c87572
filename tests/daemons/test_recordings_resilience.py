"""A recording survives what a live broadcast survives (issue 17): a `sender daemon ingest` killed
with SIGKILL and restarted while its publisher comes back, and a spool whose disk fills up for a
while (a real tmpfs). Either way the ended recording's VOD playlist lists every segment from the
first, in order, with the break as a discontinuity, every file it lists is on disk, and ffprobe
reads it end to end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import trio

from daemons.core import domain
from daemons.media.hls import parse_media_playlist
from tests.daemons.conftest import (
    FFPROBE,
    add_stream,
    ffmpeg_publish_cmd,
    make_install,
    needs_ffmpeg,
    run_publisher,
    start_ingest,
    wait_for,
)
from tests.daemons.test_spool_full import fill, small_fs  # noqa: F401 - the tmpfs fixture

pytestmark = needs_ffmpeg


def dvr_segments(rendition: Path) -> int:
    try:
        return len(parse_media_playlist((rendition / "dvr.m3u8").read_text()).segments)
    except (FileNotFoundError, ValueError):
        return 0


async def assert_plays_end_to_end(generation: Path) -> tuple:
    """The VOD playlist: every segment from msn 0 in order, every file there; ffprobe reads all of
    it (packets for the whole duration). (the playlist, the number of discontinuities)"""
    playlist = parse_media_playlist((generation / "source" / "vod.m3u8").read_text())
    assert playlist.playlist_type == "VOD" and playlist.ended
    assert [s.msn for s in playlist.segments] == list(range(len(playlist.segments)))
    for s in playlist.segments:
        assert (generation / "source" / s.uri).is_file(), s.uri
        if s.map_uri:
            assert (generation / "source" / s.map_uri).is_file(), s.map_uri
    total = sum(s.duration for s in playlist.segments)
    done = await trio.run_process(
        [FFPROBE, "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of", "json",
         str(generation / "master-vod.m3u8")], capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    probe = json.loads(done.stdout)
    video = next(st for st in probe["streams"] if st["codec_type"] == "video")
    assert abs(int(video["nb_read_packets"]) - 25 * total) <= 30, (video["nb_read_packets"], total)
    return playlist, sum(s.discontinuity for s in playlist.segments)


async def test_a_recording_goes_on_across_an_ingest_daemon_killed_and_restarted(tmp_path):
    inst = make_install(tmp_path / "var", **{"recording.enabled": True, "rtmp.record": False, "rtmp.listen": "127.0.0.1:0"})
    s = add_stream(inst)
    config = str(inst.config.path)

    def daemon() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "sender_cli", "--config", config, "daemon", "ingest"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def rtmp_port(pid: int):
        from daemons.core.stats import read_fresh_stats

        stats = read_fresh_stats(inst.state_dir, "ingest") or {}
        if stats.get("pid") != pid:
            return None  # the previous daemon's file
        return next((p for scheme, _, p in stats.get("listening", []) if scheme == "rtmp"), None)

    async def publish(port: int, seconds: float) -> trio.Process:
        return await trio.lowlevel.open_process(ffmpeg_publish_cmd(f"rtmp://127.0.0.1:{port}/live/{s.key}", seconds),
                                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    first = daemon()
    second = None
    try:
        port = await wait_for(lambda: rtmp_port(first.pid), timeout=15)
        publisher = await publish(port, 60)
        generation = await wait_for(lambda: (g := domain_latest(inst, s)) and g["status"] == "live" and g, timeout=20)
        gen_dir = inst.spool_root / "streams" / s.stream["id"] / generation["id"]
        await wait_for(lambda: dvr_segments(gen_dir / "source") >= 4, timeout=20)
        before = parse_media_playlist((gen_dir / "source" / "dvr.m3u8").read_text())
        first.send_signal(signal.SIGKILL)
        first.wait()
        await publisher.wait()  # the publisher loses its server
        second = daemon()
        port = await wait_for(lambda: rtmp_port(second.pid), timeout=15)
        publisher = await publish(port, 8)  # it comes back within the reconnect grace: the same broadcast
        with trio.fail_after(30):
            await publisher.wait()
        await wait_for(lambda: dvr_segments(gen_dir / "source") >= len(before.segments) + 3, timeout=15)
        with inst.open_store() as store:
            assert domain.generations.get(store, generation["id"])["status"] == "live"  # one broadcast throughout
            domain.streams.stop(store, "demo")
        await wait_for(lambda: (gen_dir / "master-vod.m3u8").exists(), timeout=15)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    playlist, discontinuities = await assert_plays_end_to_end(gen_dir)
    # What the killed daemon had recorded is the recording's start, as it was.
    assert [(x.msn, x.uri, x.duration) for x in playlist.segments[:len(before.segments)]] == \
        [(x.msn, x.uri, x.duration) for x in before.segments]
    assert discontinuities >= 1 and len(playlist.segments) > len(before.segments) + 3


def domain_latest(inst, s):
    with inst.open_store() as store:
        return domain.generations.latest(store, s.stream["id"])


async def test_a_recording_goes_on_across_a_full_disk(nursery, small_fs, tmp_path):  # noqa: F811 - the fixture
    inst = make_install(tmp_path / "var", **{"spool.root": str(small_fs / "spool"), "rtmp.record": False,
                                             "recording.enabled": True})
    ingest = await start_ingest(nursery, inst)
    s = add_stream(inst)
    nursery.start_soon(run_publisher, ffmpeg_publish_cmd(ingest.url(s.key), 60), 90)
    pipeline = await wait_for(lambda: next(iter(ingest.daemon.pipelines.values()), None), timeout=15)
    rendition = pipeline.directory / "source"
    await wait_for(lambda: dvr_segments(rendition) >= 2, timeout=15)
    filler = await trio.to_thread.run_sync(fill, small_fs)
    await wait_for(lambda: pipeline.media.outage, timeout=10)
    await trio.sleep(2)  # the scenario: two seconds of a full disk
    filler.unlink()
    await wait_for(lambda: not pipeline.media.outage, timeout=5)
    recovered_at = dvr_segments(rendition)
    await wait_for(lambda: dvr_segments(rendition) >= recovered_at + 2, timeout=15)
    with inst.open_store() as store:
        domain.streams.stop(store, "demo")
    await wait_for(lambda: (pipeline.directory / "master-vod.m3u8").exists(), timeout=10)
    playlist, discontinuities = await assert_plays_end_to_end(pipeline.directory)
    assert discontinuities >= 1
