"""A real OBS Studio (Debian's 29, headless under Xvfb: tests/daemons/obs.py) streams H.264 + AAC
to the ingest daemon with the native backend: the live playlists pass the strict checks in every
version, no packet is dropped, and once stopped ffprobe reads OBS's picture and sound through
the master playlist, whose CODECS are those of OBS's configuration records.
"""

from __future__ import annotations

import json
import logging
import subprocess

import pytest
import trio

from daemons.core import domain
from daemons.media.hls.validate import check_media_playlist
from tests.daemons.conftest import (
    FFMPEG,
    FFPROBE,
    add_stream,
    make_install,
    needs_ffmpeg,
    start_ingest,
    wait_for,
)
from tests.daemons.obs import OBS, XVFB_RUN, OBSPublisher
from tests.daemons.test_pipeline import PlaylistWatcher

OBS_SECONDS = 25  # OBS runs this long (about 3 s of it starting up), then gets SIGTERM

pytestmark = [
    needs_ffmpeg,
    pytest.mark.skipif(OBS is None or XVFB_RUN is None, reason="obs-studio and xvfb not installed (run .ci/bootstrap --test)"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def obs_media(tmp_path_factory):
    path = tmp_path_factory.mktemp("obs") / "test.mp4"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "20", "-c:v", "libx264",
                    "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-y", str(path)], check=True)
    return path


async def test_obs_studio_publishes_through_the_native_backend(nursery, tmp_path, obs_media, caplog):
    caplog.set_level(logging.WARNING)
    inst = make_install(tmp_path / "var", **{"backend.kind": "native", "rtmp.record": False})
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    obs = OBSPublisher(tmp_path / "obs-home", obs_media, f"rtmp://{running.host}:{running.port}/live", s.key, keyint_s=2)
    result = {}
    async with trio.open_nursery() as n:

        async def run_obs():
            with trio.fail_after(OBS_SECONDS + 30):
                result["obs"] = await trio.run_process(obs.command(OBS_SECONDS), env=obs.env(), check=False,
                                                       capture_stdout=True, capture_stderr=True)

        n.start_soon(run_obs)
        pipeline = await wait_for(lambda: next(iter(running.daemon.pipelines.values()), None), timeout=OBS_SECONDS)
        watcher = PlaylistWatcher(pipeline.directory)
        scope = trio.CancelScope()

        async def watch():
            with scope:
                await watcher.run()

        n.start_soon(watch)
        await wait_for(lambda: "obs" in result, timeout=OBS_SECONDS + 30)
        await running.publisher_left(s.stream["id"])
        watcher.poll()
        scope.cancel()
    log_text = "".join(p.read_text(errors="replace") for p in obs.logs.glob("*.txt"))
    assert result["obs"].returncode == 124, result["obs"].stderr[-2000:]  # stopped by the timeout, as planned
    assert "==== Streaming Start" in log_text and "Connection to rtmp://" in log_text
    assert watcher.seen > 20
    assert not [r for r in caplog.records if r.getMessage() in ("packet dropped", "native backend failed on a packet")]
    with inst.open_store() as store:
        domain.streams.stop(store, "demo")
        [rendition] = domain.renditions.list_(store, s.stream["id"])
    text = await wait_for(lambda: (t := (pipeline.directory / "source" / "index.m3u8").read_text()) and "#EXT-X-ENDLIST" in t and t)
    playlist = check_media_playlist(text)
    assert not any(seg.discontinuity for seg in playlist.segments)
    listed = sum(seg.duration for seg in playlist.segments)
    assert OBS_SECONDS - 10 < listed < OBS_SECONDS, listed
    master = (pipeline.directory / "master.m3u8").read_text()
    assert rendition["video_codec"].startswith("avc1.64") and rendition["audio_codec"] == "mp4a.40.2"
    assert f'CODECS="{rendition["video_codec"]},mp4a.40.2",RESOLUTION=1280x720' in master
    out = await trio.run_process([FFPROBE, "-v", "error", "-count_packets", "-show_streams", "-of", "json",
                                  str(pipeline.directory / "master.m3u8")], capture_stdout=True)
    kinds = {st["codec_type"]: st for st in json.loads(out.stdout)["streams"]}
    assert kinds["video"]["codec_name"] == "h264" and (kinds["video"]["width"], kinds["video"]["height"]) == (1280, 720)
    assert int(kinds["video"]["nb_read_packets"]) == pytest.approx(listed * 30, abs=2)  # 30 fps, every frame listed
    assert kinds["audio"]["codec_name"] == "aac"
