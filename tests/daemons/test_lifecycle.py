"""The end of a broadcast: the reconnect grace with real publishers, a real ingest daemon and a
real sender-http (playback API, /api/streams), including an ingest daemon killed and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import trio

from daemons.core import domain
from daemons.media.hls import parse_media_playlist
from tests.daemons.conftest import add_stream, ffmpeg_publish_cmd, make_install, needs_ffmpeg, start_ingest, wait_for
from tests.http.conftest import start_http

pytestmark = needs_ffmpeg


def _generation(inst, stream_id: str) -> dict | None:
    with inst.open_store() as store:
        return domain.generations.latest(store, stream_id)


def _playlists(pipeline) -> list[str]:
    return [(pipeline.directory / r["name"] / "index.m3u8").read_text() for r in pipeline.renditions]


def _parts_only(rendition):
    """(playlist, bytes of its parts) while the playlist lists parts of its first segment only."""
    try:
        text = (rendition / "index.m3u8").read_text()
    except FileNotFoundError:
        return None
    playlist = parse_media_playlist(text)
    if playlist.segments or len(playlist.partial_parts) < 2:
        return None
    return playlist, [(rendition / p.uri).read_bytes() for p in playlist.partial_parts]


async def _publisher(cmd: list[str]) -> trio.Process:
    return await trio.lowlevel.open_process(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _kill(proc: trio.Process) -> float:
    """Kill a publisher the way a crashed encoder or a lost uplink goes: no FCUnpublish, no goodbye."""
    proc.kill()
    await proc.wait()
    return time.monotonic()


async def _live_pipeline(running, stream_id: str):
    pipeline = await wait_for(lambda: next((p for p in running.daemon.pipelines.values() if p.stream["id"] == stream_id), None),
                              timeout=15)
    await wait_for(lambda: pipeline.live and stream_id in running.daemon.publishers, timeout=15)
    return pipeline


async def test_a_publisher_that_never_returns_ends_the_broadcast_after_the_grace(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"rtmp.reconnect_grace": "5s", "http.listen": "127.0.0.1:0",
                                             "renditions.ladder": [{"name": "source", "kind": "source"},
                                                                   {"name": "180p", "kind": "transcode", "height": 180,
                                                                    "video_bitrate": 200_000}]})
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst, ladder=inst.config["renditions.ladder"])
    proc = await _publisher(ffmpeg_publish_cmd(ingest.url(s.key), 60))
    pipeline = await _live_pipeline(ingest, s.stream["id"])
    async with httpx.AsyncClient(base_url=f"http://{http.host}:{http.port}") as client:
        before = (await client.get("/api/streams/demo/playback")).json()
        assert (before["status"], before["publisher_connected"], before["publisher_left_at"]) == ("live", True, None)

        killed = await _kill(proc)
        # While it is away: still live, and the playback API says the publisher is gone and until when.
        away = await wait_for(lambda: (g := _generation(inst, s.stream["id"]))["publisher_left_at"] and g, timeout=5)
        assert away["status"] == "live"
        doc = (await client.get("/api/streams/demo/playback")).json()
        assert doc["status"] == "live" and doc["publisher_connected"] is False
        assert doc["publisher_left_at"] == away["publisher_left_at"] and doc["ends_at"] > doc["publisher_left_at"]
        assert [st["publisher_connected"] for st in (await client.get("/api/streams")).json()["streams"]] == [False]

        ended = await wait_for(lambda: (g := _generation(inst, s.stream["id"]))["status"] == "ended" and g, timeout=10)
        took = time.monotonic() - killed
        assert 5.0 - 0.5 <= took <= 5.0 + 2.0, took  # the grace, and the bar of the issue: within grace + 2 s
        assert ended["end_reason"] == "publisher_gone"
        # Every rendition's playlist is closed, exactly as `stream stop` closes it.
        def all_ended():
            texts = _playlists(pipeline)
            return all("#EXT-X-ENDLIST" in t for t in texts) and texts

        texts = await wait_for(all_ended, timeout=5)
        for text in texts:
            playlist = parse_media_playlist(text)
            assert playlist.ended and playlist.preload_hint is None
        doc = (await client.get("/api/streams/demo/playback")).json()
        assert (doc["status"], doc["end_reason"], doc["publisher_connected"], doc["ends_at"]) == ("ended", "publisher_gone", False, None)
        [summary] = (await client.get("/api/streams")).json()["streams"]
        assert (summary["status"], summary["generation_id"]) == ("offline", None)  # no longer listed as live
        # The next publish is a new broadcast.
        proc = await _publisher(ffmpeg_publish_cmd(ingest.url(s.key), 60))
        try:
            nxt = await wait_for(lambda: (g := _generation(inst, s.stream["id"]))["id"] != ended["id"] and g, timeout=10)
            assert nxt["status"] in ("starting", "live")
        finally:
            await _kill(proc)


async def test_a_publisher_back_within_the_grace_continues_the_same_broadcast(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"rtmp.reconnect_grace": "5s"})
    ingest = await start_ingest(nursery, inst)
    s = add_stream(inst)
    proc = await _publisher(ffmpeg_publish_cmd(ingest.url(s.key), 60))
    pipeline = await _live_pipeline(ingest, s.stream["id"])
    first = _generation(inst, s.stream["id"])
    await _kill(proc)
    await wait_for(lambda: _generation(inst, s.stream["id"])["publisher_left_at"], timeout=5)
    await trio.sleep(3)  # the scenario: the broadcaster is away for three seconds
    proc = await _publisher(ffmpeg_publish_cmd(ingest.url(s.key), 60))
    try:
        back = await wait_for(lambda: (g := _generation(inst, s.stream["id"]))["publisher_left_at"] is None and g, timeout=10)
        assert back["id"] == first["id"] and back["status"] == "live"
        # Past the grace counted from the first departure, it is still the same live broadcast.
        deadline = time.monotonic() + 4
        await wait_for(lambda: time.monotonic() > deadline and
                       any(seg.discontinuity for seg in parse_media_playlist(_playlists(pipeline)[0]).segments), timeout=15)
        assert _generation(inst, s.stream["id"])["status"] == "live"
        assert len(ingest.generation_dirs(s.stream["id"])) == 1
    finally:
        await _kill(proc)


async def test_never_waits_for_a_stop_and_a_streams_own_grace_beats_the_config(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"rtmp.reconnect_grace": "never"})
    ingest = await start_ingest(nursery, inst)
    held = add_stream(inst, "held")
    quick = add_stream(inst, "quick")
    with inst.open_store() as store:
        domain.streams.update(store, "quick", reconnect_grace="2s")
    procs = [await _publisher(ffmpeg_publish_cmd(ingest.url(x.key), 60)) for x in (held, quick)]
    for x in (held, quick):
        await _live_pipeline(ingest, x.stream["id"])
    for p in procs:
        await _kill(p)
    # Both departures are judged in the same control-loop passes: when `quick` has ended, `held`
    # has been judged past its departure + 2 s and is still live.
    await wait_for(lambda: _generation(inst, quick.stream["id"])["status"] == "ended", timeout=8)
    await wait_for(lambda: _generation(inst, held.stream["id"])["publisher_left_at"], timeout=1)
    await trio.sleep(3)  # the scenario: 1.5 more grace periods of `quick` go by (nothing may happen)
    held_gen = _generation(inst, held.stream["id"])
    assert held_gen["status"] == "live" and held_gen["end_reason"] is None
    with inst.open_store() as store:
        stopped = domain.streams.stop(store, "held")
    assert stopped["status"] == "ended" and stopped["end_reason"] == "stopped"


async def test_the_grace_counts_from_the_departure_across_an_ingest_daemon_killed_and_restarted(tmp_path):
    """A real `sender daemon ingest` killed with SIGKILL (its publisher with it): the restarted
    daemon ends the broadcast at departure + grace, not at restart + grace."""
    inst = make_install(tmp_path / "var", **{"rtmp.reconnect_grace": "5s", "rtmp.listen": "127.0.0.1:0"})
    s = add_stream(inst)
    config = str(inst.config.path)

    def daemon() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "sender_cli", "--config", config, "daemon", "ingest"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def rtmp_port() -> int | None:
        from daemons.core.stats import read_fresh_stats

        stats = read_fresh_stats(inst.state_dir, "ingest") or {}
        return next((p for scheme, _, p in stats.get("listening", []) if scheme == "rtmp"), None)

    first = daemon()
    try:
        port = await wait_for(rtmp_port, timeout=15)
        proc = await _publisher(ffmpeg_publish_cmd(f"rtmp://127.0.0.1:{port}/live/{s.key}", 60))
        live = await wait_for(lambda: (g := _generation(inst, s.stream["id"])) and g["status"] == "live" and g, timeout=20)
        assert live["publisher_connected_at"] and not live["publisher_left_at"]
        gen_dir = inst.spool_root / "streams" / s.stream["id"] / live["id"]
        rendition = gen_dir / "source"
        # Killed while the first segment is still open: the playlist lists its parts only.
        before = await wait_for(lambda: _parts_only(rendition), timeout=10)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        await proc.wait()  # the publisher loses its server
        await trio.sleep(3)  # down for three seconds
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    second = daemon()
    try:
        ended = await wait_for(lambda: (g := _generation(inst, s.stream["id"]))["status"] == "ended" and g, timeout=15)
        took = time.monotonic() - killed
        # Ends at departure + 5 s (+ the restart and a control tick), not at restart + 5 s (= 8 s).
        assert took < 7.0, took
        assert ended["end_reason"] == "publisher_gone" and ended["publisher_left_at"]
        final = await wait_for(lambda: "#EXT-X-ENDLIST" in (t := (rendition / "index.m3u8").read_text()) and t, timeout=5)
        # The open segment was closed from the parts the last playlist listed: same names, same
        # bytes; the segment it became is the concatenation of those parts.
        ended_playlist = parse_media_playlist(final)
        listed, files = before
        assert [seg.msn for seg in ended_playlist.segments] == [listed.next_msn]
        assert [p.uri for p in ended_playlist.segments[0].parts] == [p.uri for p in listed.partial_parts]
        for part, data in zip(listed.partial_parts, files):
            assert (rendition / part.uri).read_bytes() == data
        assert (rendition / ended_playlist.segments[0].uri).read_bytes() == b"".join(files)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=10)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()
    assert os.path.exists(gen_dir / "master.m3u8")
