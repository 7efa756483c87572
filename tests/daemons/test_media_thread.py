"""The media thread (daemons/ingest/media_thread.py) with real parts: a real ffmpeg publishes
into a real ingest daemon on 127.0.0.1, and once its publish is steady the connection is leased
to the thread, which reads, packages and writes it outside trio's loop.

What must hold: the output is what trio's path makes (every playlist version passes the strict
checks, the FLV recording and the HLS read back in ffprobe with every frame), whether the thread
is on or off, and while it leaves a socket unread between a part's frames; and everything that needs trio takes the connection back: a kick (an admin stop),
a publisher gone silent (the idle timeout), a restream target added while it runs, the end of
the stream.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import trio

from daemons.core import domain
from daemons.core.domain import restream
from tests.daemons.conftest import (
    add_stream,
    ffmpeg_publish_cmd,
    ffprobe,
    make_install,
    needs_ffmpeg,
    run_publisher,
    start_ingest,
    wait_for,
)
from tests.daemons.nginx_rtmp import needs_nginx_rtmp, nginx_rtmp  # noqa: F401 - fixture
from tests.daemons.test_pipeline import PlaylistWatcher

RATE = 25


def _leased(running) -> int:
    return running.daemon.media.stats()["leased"]


async def _start_publisher(nursery, url: str, seconds: float) -> list:
    """A real ffmpeg publishing for `seconds` (its result lands in the returned list)."""
    done: list = []

    async def run():
        done.append(await run_publisher(ffmpeg_publish_cmd(url, seconds, rate=RATE), timeout=seconds + 60))

    nursery.start_soon(run)
    return done


@needs_ffmpeg
@pytest.mark.parametrize("media_thread", [True, False], ids=["media-thread", "event-loop"])
async def test_a_steady_publish_gives_the_same_output_through_either_path(nursery, tmp_path, media_thread):
    inst = make_install(tmp_path / "var", **{"rtmp.media_thread": media_thread})  # rtmp.record is on: the FLV too
    fx = add_stream(inst)
    running = await start_ingest(nursery, inst)
    done = await _start_publisher(nursery, running.url(fx.key), 8)
    pipeline = await wait_for(lambda: next(iter(running.daemon.pipelines.values()), None))
    watcher = PlaylistWatcher(pipeline.directory)
    with trio.CancelScope() as watching:
        async with trio.open_nursery() as n:
            n.start_soon(watcher.run)
            if media_thread:
                # Live and steady: the connection is in the thread, which takes the frames.
                await wait_for(lambda: _leased(running) == 1 and running.daemon.media.frames > 2 * RATE, timeout=15)
            await wait_for(lambda: done, timeout=60)
            await running.publisher_left(fx.stream["id"])
            watcher.poll()  # the last version too
            watching.cancel()
    assert done[0].returncode == 0, done[0].stderr[-500:]
    assert watcher.seen > 20  # every version the watcher saw passed the strict checks
    if media_thread:
        stats = running.daemon.media.stats()
        assert stats["leased"] == 0 and stats["leases"] >= 1
        # Most frames went through the thread: trio saw the start, sequence headers and the
        # follow-ups (a new bandwidth step for the master, going live). Unless the disk was slow
        # (a batch over SLOW_WRITE_S, as on a loaded machine): then the writes go to a worker
        # thread for a while, and the publish to trio with them — the fallback, not a failure.
        if not pipeline.spool.threaded:
            assert stats["frames"] > 0.8 * (8 * RATE + 8 * 44100 / 1024)
            assert stats["ended"].get("end of stream", 0) + stats["ended"].get("event", 0) >= 1
            # Between a part's frames the socket is left unread (one wake-up for several
            # frames): about once a part (5 a second) while leased.
            assert stats["quiets"] >= 2 * 6
        else:
            assert stats["frames"] > 0 and stats["ended"].get("follow-up", 0) >= 1
        assert "error" not in stats["ended"]
    else:
        assert running.daemon.media is None
    # The HLS and the FLV recording decode whole in ffprobe: ~8 s of 25 fps video each.
    gen = pipeline.directory
    with inst.open_store() as store:
        domain.streams.stop(store, "demo")  # ENDLIST: ffprobe reads the playlist from its start
    await wait_for(lambda: "#EXT-X-ENDLIST" in (gen / "source" / "index.m3u8").read_text())
    hls = {s["codec_type"]: s for s in ffprobe(gen / "source" / "index.m3u8")["streams"]}
    [flv_file] = (gen / "ingest").glob("*.flv")
    flv = {s["codec_type"]: s for s in ffprobe(flv_file)["streams"]}
    for probe in (hls, flv):
        assert probe["audio"]["codec_name"] == "aac"
        assert 7 * RATE <= int(probe["video"]["nb_read_frames"]) <= 8 * RATE + 1


@needs_ffmpeg
async def test_an_admin_stop_takes_the_connection_back_and_ends_the_generation(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"rtmp.record": False})
    fx = add_stream(inst)
    running = await start_ingest(nursery, inst)
    done = await _start_publisher(nursery, running.url(fx.key), 30)
    await wait_for(lambda: _leased(running) == 1, timeout=15)
    [gen] = running.generation_dirs(fx.stream["id"])
    with inst.open_store() as store:
        domain.streams.stop(store, "demo")
    # The control loop kicks within half a second; the thread gives the connection back at once.
    await wait_for(lambda: fx.stream["id"] not in running.daemon.publishers, timeout=3)
    assert _leased(running) == 0 and running.daemon.media.stats()["ended"].get("reclaimed", 0) >= 1
    await wait_for(lambda: done, timeout=10)
    assert done[0].returncode != 0  # ffmpeg saw its connection closed long before its 30 s
    await wait_for(lambda: "#EXT-X-ENDLIST" in (gen / "source" / "index.m3u8").read_text())


@needs_ffmpeg
async def test_a_publisher_gone_silent_in_the_media_thread_is_dropped_after_the_idle_timeout(nursery, tmp_path):
    idle_s = 2.0
    inst = make_install(tmp_path / "var", **{"rtmp.record": False, "rtmp.limits.idle_timeout_s": idle_s})
    fx = add_stream(inst)
    running = await start_ingest(nursery, inst)
    cmd = ffmpeg_publish_cmd(running.url(fx.key), 60, rate=RATE)
    proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: _leased(running) == 1, timeout=15)
        os.kill(proc.pid, signal.SIGSTOP)  # its socket stays open, and nothing more comes
        stopped_at = trio.current_time()
        await wait_for(lambda: fx.stream["id"] not in running.daemon.publishers, timeout=idle_s + 5)
        waited = trio.current_time() - stopped_at
        # The thread checks once a second (IDLE_CHECK_S); bytes already queued count as heard.
        assert idle_s - 0.1 <= waited <= idle_s + 2.5
        assert running.daemon.media.stats()["ended"].get("idle", 0) == 1
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        await proc.wait()


@needs_ffmpeg
@needs_nginx_rtmp
async def test_a_restream_target_added_while_leased_starts_pushing(nursery, tmp_path, nginx_rtmp):
    inst = make_install(tmp_path / "var", **{"rtmp.record": False})
    fx = add_stream(inst, "show")
    running = await start_ingest(nursery, inst)
    done = await _start_publisher(nursery, running.url(fx.key), 14)
    await wait_for(lambda: _leased(running) == 1, timeout=15)
    with inst.open_store() as store:
        restream.add(store, "show", nginx_rtmp.url("mediathreadkey"), label="nginx", max_targets=8)
    # The control loop takes the connection back before the sink gets its push; the publish then
    # stays in trio (each tag goes to the push), and nginx-rtmp receives the stream.
    await wait_for(lambda: [p["state"] for p in running.daemon.restream.stats()] == ["live"], timeout=10)
    assert _leased(running) == 0
    await wait_for(lambda: any(p["bytes"] > 100_000 for p in running.daemon.restream.stats()), timeout=15)
    await wait_for(lambda: done, timeout=60)
    assert done[0].returncode == 0, done[0].stderr[-500:]
    await wait_for(lambda: nginx_rtmp.playlist("mediathreadkey").exists(), timeout=15)
    pushed = {s["codec_type"] for s in ffprobe(nginx_rtmp.playlist("mediathreadkey"))["streams"]}
    assert pushed == {"video", "audio"}
