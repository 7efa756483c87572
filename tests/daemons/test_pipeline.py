"""Publisher → ingest → media backend (ffmpeg, or the native one) → packager → spool, with real
ffmpeg publishers and ffprobe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import trio

from daemons.core import domain
from daemons.core.stats import read_stats
from daemons.media.hls import parse_media_playlist
from daemons.runtime.spool_events import SpoolEventReceiver
from daemons.media.hls.validate import check_media_playlist, check_renditions
from daemons.core.advice import stream_warnings
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

pytestmark = needs_ffmpeg


@pytest.fixture(params=["ffmpeg", "native"])
def backend_kind(request) -> str:
    """Every test here runs with each media backend (backend.kind), unless it names one."""
    return request.param


@pytest.fixture
def sender_install(tmp_path, backend_kind):
    return make_install(tmp_path / "var", **{"backend.kind": backend_kind})


def generation_dir(running, stream_id):
    [d] = running.generation_dirs(stream_id)
    return d


def read_playlist(d, rendition="source"):
    try:
        return (d / rendition / "index.m3u8").read_text()
    except FileNotFoundError:
        return None


class PlaylistWatcher:
    """Checks every playlist version seen against the spec and against the previous version."""

    def __init__(self, directory, renditions=("source",)):
        self.directory = directory
        self.renditions = renditions
        self.previous = {}
        self.seen = 0

    def poll(self):
        current = {}
        for r in self.renditions:
            text = read_playlist(self.directory, r)
            if text is None:
                return
            current[r] = check_media_playlist(text, previous=self.previous.get(r))
            for seg in current[r].segments:  # everything listed is whole on disk
                assert (self.directory / r / seg.uri).stat().st_size > 0
                for part in seg.parts:
                    assert (self.directory / r / part.uri).exists() or seg.parts == ()
            for part in current[r].partial_parts:
                assert (self.directory / r / part.uri).exists()
        if len(current) > 1:
            check_renditions({f"{r}/index.m3u8": playlist for r, playlist in current.items()})
        self.previous = current
        self.seen += 1

    async def run(self, interval=0.1):
        while True:
            self.poll()
            await trio.sleep(interval)


def ffprobe_json(*args):
    out = subprocess.run([FFPROBE, "-v", "error", "-of", "json", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


async def test_publish_makes_a_valid_ll_hls_generation(ingest):
    s = add_stream(ingest.install)
    async with trio.open_nursery() as n:
        result = {}

        async def publish():
            result["p"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 6))

        n.start_soon(publish)
        gen_dir = await wait_for(lambda: ingest.generation_dirs(s.stream["id"]) and generation_dir(ingest, s.stream["id"]))
        watcher = PlaylistWatcher(gen_dir)
        watch = trio.CancelScope()
        n.start_soon(_run_in, watch, watcher.run)
        await wait_for(lambda: "p" in result, timeout=30)
        watch.cancel()
    assert result["p"].returncode == 0, result["p"].stderr
    assert watcher.seen > 10
    await ingest.publisher_left(s.stream["id"])
    with ingest.install.open_store() as store:
        gen = domain.generations.active(store, s.stream["id"])
        [rendition] = domain.renditions.list_(store, s.stream["id"])
    assert gen["status"] == "live"
    assert rendition["video_codec"].startswith("avc1.") and rendition["audio_codec"] == "mp4a.40.2"
    assert (rendition["width"], rendition["height"]) == (320, 240)

    playlist = parse_media_playlist(read_playlist(gen_dir))
    total = sum(seg.duration for seg in playlist.segments)
    assert abs(total - 6.0) < 0.1, total  # six seconds published, six seconds listed
    assert playlist.segments[0].msn == 0
    for seg in playlist.segments:
        assert seg.duration <= playlist.target_duration + 0.5
    # Once the generation is stopped (ENDLIST), ffprobe reads the whole of it through the master
    # playlist, from the file system, with the source's codecs.
    with ingest.install.open_store() as store:
        domain.streams.stop(store, "demo")
    await wait_for(lambda: "#EXT-X-ENDLIST" in read_playlist(gen_dir), timeout=10)
    info = ffprobe_json("-count_packets", "-show_streams", str(gen_dir / "master.m3u8"))
    kinds = {st["codec_type"]: st for st in info["streams"]}
    assert kinds["video"]["codec_name"] == "h264" and kinds["audio"]["codec_name"] == "aac"
    assert (kinds["video"]["width"], kinds["video"]["height"]) == (320, 240)
    assert int(kinds["video"]["nb_read_packets"]) == 150  # every frame published is playable
    # ... and every audio frame: none lost where parts and segments are cut.
    # The backend starts at the first keyframe, so what came before it in the recording is all
    # that may be missing.
    [flv] = sorted((gen_dir / "ingest").glob("*.flv"))
    packets = ffprobe_json("-show_entries", "packet=codec_type,flags", str(flv))["packets"]
    first_key = next(i for i, p in enumerate(packets) if p["codec_type"] == "video" and "K" in p["flags"])
    fed_audio = sum(1 for p in packets[first_key:] if p["codec_type"] == "audio")
    assert int(kinds["audio"]["nb_read_packets"]) == fed_audio
    master = (gen_dir / "master.m3u8").read_text()
    assert rendition["video_codec"] in master and "RESOLUTION=320x240" in master
    # The measured bandwidth is recorded when the generation ends: what the final master announces
    # (an earlier measurement may be in the store for a moment: it is recorded at most every 10 s).
    def recorded():
        with ingest.install.open_store() as store:
            [row] = domain.renditions.list_(store, s.stream["id"])
        announced = f"BANDWIDTH={row['measured_bandwidth']},AVERAGE-BANDWIDTH={row['measured_average_bandwidth']}"
        return row["measured_bandwidth"] and announced in (gen_dir / "master.m3u8").read_text() and row
    row = await wait_for(recorded)
    assert 0 < row["measured_average_bandwidth"] <= row["measured_bandwidth"]


async def _run_in(scope, fn):
    with scope:
        await fn()


@pytest.mark.parametrize("backend_kind", ["ffmpeg"])
async def test_ffmpeg_killed_mid_stream_restarts_with_a_discontinuity(ingest):
    s = add_stream(ingest.install)
    async with trio.open_nursery() as n:
        result = {}

        async def publish():
            result["p"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 8))

        n.start_soon(publish)
        gen_dir = await wait_for(lambda: ingest.generation_dirs(s.stream["id"]) and generation_dir(ingest, s.stream["id"]))
        watcher = PlaylistWatcher(gen_dir)
        watch = trio.CancelScope()
        n.start_soon(_run_in, watch, watcher.run)
        pipeline = await wait_for(lambda: next(iter(ingest.daemon.pipelines.values()), None))
        await wait_for(lambda: pipeline.live, timeout=10)
        sink = pipeline.sink
        old = await wait_for(lambda: sink.process)
        os.kill(old.pid, signal.SIGKILL)
        await wait_for(lambda: sink.process is not None and sink.process is not old, timeout=10)
        await wait_for(lambda: "p" in result, timeout=30)
        watch.cancel()
    assert result["p"].returncode == 0, result["p"].stderr
    assert pipeline.restarts == 1
    playlist = parse_media_playlist(read_playlist(gen_dir))
    assert any(seg.discontinuity for seg in playlist.segments)
    with ingest.install.open_store() as store:
        gen = domain.generations.active(store, s.stream["id"])
    assert gen["status"] == "live" and gen["discontinuity_count"] == 1
    # generation.json agrees with the store and with the playlist.
    doc = await wait_for(lambda: (d := json.loads((gen_dir / "generation.json").read_text()))["restarts"] == 1 and d, timeout=5)
    assert doc["discontinuities"] == 1 == playlist.discontinuity_sequence + sum(seg.discontinuity for seg in playlist.segments)


async def test_publisher_gone_and_back_continues_with_a_discontinuity(ingest):
    s = add_stream(ingest.install)
    async with trio.open_nursery() as n:
        gen_dir_box = {}

        async def watch_when_ready(scope):
            gen_dir = await wait_for(lambda: ingest.generation_dirs(s.stream["id"]) and generation_dir(ingest, s.stream["id"]))
            gen_dir_box["w"] = watcher = PlaylistWatcher(gen_dir)
            with scope:
                await watcher.run()

        scope = trio.CancelScope()
        n.start_soon(watch_when_ready, scope)
        first = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 3))
        assert first.returncode == 0, first.stderr
        await trio.sleep(5)  # the scenario: the publisher is away for five seconds
        second = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 3))
        assert second.returncode == 0, second.stderr
        await ingest.publisher_left(s.stream["id"])
        scope.cancel()
    watcher = gen_dir_box["w"]
    assert watcher.seen > 20
    assert len(ingest.generation_dirs(s.stream["id"])) == 1  # same generation
    playlist = parse_media_playlist(read_playlist(watcher.directory))
    assert sum(seg.discontinuity for seg in playlist.segments) == 1
    assert abs(sum(seg.duration for seg in playlist.segments) - 6.0) < 0.2


async def test_admin_stop_ends_the_playlists_and_retention_removes_them(nursery, tmp_path, backend_kind):
    inst = make_install(tmp_path / "var", **{"spool.ended_retention": "4s", "backend.kind": backend_kind})
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    async with trio.open_nursery() as n:
        n.start_soon(run_publisher, ffmpeg_publish_cmd(running.url(s.key), 30))
        pipeline = await wait_for(lambda: next(iter(running.daemon.pipelines.values()), None))
        await wait_for(lambda: pipeline.live, timeout=10)
        gen_dir = pipeline.directory
        with inst.open_store() as store:
            domain.streams.stop(store, "demo")
    text = await wait_for(lambda: (t := read_playlist(gen_dir)) and "#EXT-X-ENDLIST" in t and t, timeout=10)
    ended = check_media_playlist(text)
    assert ended.ended and ended.preload_hint is None
    # generation.json follows the playlists (a separate file: a moment later).
    await wait_for(lambda: json.loads((gen_dir / "generation.json").read_text())["ended"], timeout=5)
    await wait_for(lambda: not gen_dir.exists(), timeout=10)


async def test_two_rendition_ladder_keeps_up_with_real_time(nursery, tmp_path):
    inst = make_install(tmp_path / "var")
    running = await start_ingest(nursery, inst)
    ladder = [
        {"name": "360p", "kind": "transcode", "height": 360, "video_bitrate": 800_000, "audio_bitrate": 96_000},
        {"name": "240p", "kind": "transcode", "height": 240, "video_bitrate": 400_000, "audio_bitrate": 64_000},
    ]
    s = add_stream(inst, ladder=ladder)
    seconds = 8
    async with trio.open_nursery() as n:
        result = {}

        async def publish():
            started = time.monotonic()
            result["p"] = await run_publisher(ffmpeg_publish_cmd(running.url(s.key), seconds, size="640x360", rate=30))
            result["elapsed"] = time.monotonic() - started

        n.start_soon(publish)
        pipeline = await wait_for(lambda: next(iter(running.daemon.pipelines.values()), None))
        watcher = PlaylistWatcher(pipeline.directory, renditions=("360p", "240p"))
        watch = trio.CancelScope()
        n.start_soon(_run_in, watch, watcher.run)
        await wait_for(lambda: "p" in result, timeout=60)
        watch.cancel()
    assert result["p"].returncode == 0, result["p"].stderr
    await running.publisher_left(s.stream["id"])
    for name in ("360p", "240p"):
        playlist = parse_media_playlist(read_playlist(pipeline.directory, name))
        listed = sum(seg.duration for seg in playlist.segments)
        assert abs(listed - seconds) < 0.2, (name, listed)  # every second published was packaged
    # The packager kept up: the last segment was listed within a second of the publisher's end.
    assert result["elapsed"] < seconds * 1.15
    master = (pipeline.directory / "master.m3u8").read_text()
    assert "RESOLUTION=640x360" in master and "RESOLUTION=426x240" in master


async def test_long_keyframe_interval_still_plays_with_an_honest_target_duration(ingest):
    s = add_stream(ingest.install)
    # 25 fps with a keyframe every 100 frames: a 4 s GOP against the 2 s segment target.
    cmd = ffmpeg_publish_cmd(ingest.url(s.key), 9)
    cmd[cmd.index("-g") + 1] = "100"
    async with trio.open_nursery() as n:
        result = {}

        async def publish():
            result["p"] = await run_publisher(cmd)

        n.start_soon(publish)
        stats = await wait_for(lambda: _publisher(ingest, s.stream["id"], "keyframe_interval_s"), timeout=15)
        assert abs(stats["keyframe_interval_s"] - 4.0) < 0.05
        [warning] = stream_warnings(stats, None, segment_target_s=ingest.install.config["hls.segment_target_s"], spool_root="")
        assert "4.00 s" in warning and "Keyframe Interval" in warning
        await wait_for(lambda: "p" in result, timeout=30)
    assert result["p"].returncode == 0, result["p"].stderr
    await ingest.publisher_left(s.stream["id"])
    gen_dir = generation_dir(ingest, s.stream["id"])
    playlist = check_media_playlist(read_playlist(gen_dir))
    assert playlist.target_duration == 4
    assert [round(seg.duration) for seg in playlist.segments][:2] == [4, 4]


def _publisher(running, stream_id, field):
    for p in (read_stats(running.install.state_dir, "ingest") or {}).get("publishers", []):
        if p["stream_id"] == stream_id and p.get(field):
            return p
    return None


async def test_readers_are_woken_for_every_new_part(ingest):
    receiver = SpoolEventReceiver(ingest.install.state_dir, "test-reader")
    await receiver.bind()
    try:
        s = add_stream(ingest.install)
        async with trio.open_nursery() as n:
            n.start_soon(run_publisher, ffmpeg_publish_cmd(ingest.url(s.key), 3))
            events = []
            with trio.fail_after(15):
                while len(events) < 5:
                    events.append(await receiver.receive())
        path, msn, part = events[-1]
        stream_id, generation_id, rendition = path.split("/")
        assert stream_id == s.stream["id"] and rendition == "source"
        # Each wake-up names a part the playlist on disk already lists.
        playlist = parse_media_playlist(read_playlist(generation_dir(ingest, stream_id)))
        assert playlist.contains(msn, part)
        assert [e[1:] for e in events] == sorted(e[1:] for e in events)
    finally:
        receiver.close()
