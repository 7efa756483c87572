"""The native media backend (backend.kind = "native") with real media, through the real ingest
daemon on 127.0.0.1: Enhanced RTMP HEVC and AV1 (tests/daemons/enhanced_rtmp.py: libx265 and
libsvtav1 encodes packaged as OBS 30+ sends them, at real-time pace) become LL-HLS that the
strict playlist checks accept while live and that ffprobe reads (codec, picture size, every
frame, duration); CODECS in the master come from the configuration records; a corrupt packet,
a codec change and a publisher drop are what the module says; a ladder runs the native source
and ffmpeg for the transcoded renditions, each fed once; HEVC/AV1 is refused clearly where
ffmpeg would have to take it.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
import trio

from daemons.core import domain
from daemons.media.hls import parse_media_playlist
from daemons.media.hls.validate import check_media_playlist
from tests.daemons import enhanced_rtmp, rtmp_probe
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
from tests.daemons.enhanced_rtmp import Clip, Tag
from tests.daemons.test_pipeline import PlaylistWatcher

pytestmark = needs_ffmpeg

FPS = 30
SECONDS = 6


def ffprobe_json(*args: str) -> dict:
    out = subprocess.run([FFPROBE, "-v", "error", "-of", "json", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# -- the clips: real encodes, packaged as Enhanced RTMP ---------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("native")


@pytest.fixture(scope="module")
def h264(work) -> enhanced_rtmp.Media:
    return enhanced_rtmp.encode_h264_aac(work / "h264.flv", SECONDS, fps=FPS)


@pytest.fixture(scope="module")
def hevc_aac(work, h264) -> Clip:
    video = enhanced_rtmp.encode_video(work / "hevc.mp4", "hvc1", SECONDS, fps=FPS)
    tags = enhanced_rtmp.interleave(enhanced_rtmp.video_tags(video), enhanced_rtmp.aac_tags(h264))
    return enhanced_rtmp.clip("hevc_aac", video, tags, "mp4a.40.2", FPS)


@pytest.fixture(scope="module")
def av1_aac(work, h264) -> Clip:
    video = enhanced_rtmp.encode_video(work / "av1.mp4", "av01", SECONDS, fps=FPS)
    tags = enhanced_rtmp.interleave(enhanced_rtmp.video_tags(video), enhanced_rtmp.aac_tags(h264))
    return enhanced_rtmp.clip("av1_aac", video, tags, "mp4a.40.2", FPS)


@pytest.fixture(scope="module")
def av1_opus(work, av1_aac) -> Clip:
    video = enhanced_rtmp.mp4_video_media(work / "av1.mp4", "av01")
    _, opus = enhanced_rtmp.encode_opus(work / "opus.ogg", SECONDS)
    tags = enhanced_rtmp.interleave(enhanced_rtmp.video_tags(video), opus)
    return enhanced_rtmp.clip("av1_opus", video, tags, "opus", FPS)


@pytest.fixture(scope="module")
def h264_clip(h264) -> Clip:
    tags = enhanced_rtmp.interleave(enhanced_rtmp.video_tags(h264), enhanced_rtmp.aac_tags(h264))
    return enhanced_rtmp.clip("h264_aac", h264, tags, "mp4a.40.2", FPS)


@pytest.fixture
def native_install(tmp_path):
    # Segments cut at 1.9 s: the clips have B-frames (as OBS sends them), so in decode order the
    # first GOP is two frames short of the 2 s keyframe interval, which the packager's half-frame
    # tolerance would not close at 2 s (its first segment would then last 4 s, TARGETDURATION 2 → 4).
    return make_install(tmp_path / "var", **{"backend.kind": "native", "hls.segment_target_s": 1.9})


async def _publish_watched(running, s, c: Clip, *, renditions=("source",)) -> tuple[enhanced_rtmp.Published, PlaylistWatcher]:
    """Publish `c` while a PlaylistWatcher checks every playlist version (strict checks, each
    against the one before, every listed file on disk)."""
    result = {}
    async with trio.open_nursery() as n:

        async def publish():
            result["p"] = await enhanced_rtmp.publish(running.host, running.port, s.key, c)

        n.start_soon(publish)
        pipeline = await wait_for(lambda: next(iter(running.daemon.pipelines.values()), None))
        watcher = PlaylistWatcher(pipeline.directory, renditions=renditions)
        scope = trio.CancelScope()

        async def watch():
            with scope:
                await watcher.run()

        n.start_soon(watch)
        await wait_for(lambda: "p" in result, timeout=SECONDS + 30)
        await running.publisher_left(s.stream["id"])
        watcher.poll()  # the last version too
        scope.cancel()
    return result["p"], watcher


async def _stop_and_end(running, gen_dir: Path, slug: str = "demo", rendition: str = "source") -> str:
    with running.install.open_store() as store:
        domain.streams.stop(store, slug)
    return await wait_for(lambda: (t := (gen_dir / rendition / "index.m3u8").read_text()) and "#EXT-X-ENDLIST" in t and t, timeout=10)


# -- HEVC and AV1 from Enhanced RTMP -------------------------------------------------------------


@pytest.mark.parametrize("name", ["hevc_aac", "av1_aac", "av1_opus"])
async def test_enhanced_rtmp_publish_becomes_ll_hls_that_ffprobe_reads(nursery, native_install, request, name):
    c: Clip = request.getfixturevalue(name)
    running = await start_ingest(nursery, native_install)
    s = add_stream(native_install)
    result, watcher = await _publish_watched(running, s, c)
    assert result.code == "NetStream.Publish.Start" and result.sent == len(c.tags) and not result.closed_early
    # connect's fourCcList was answered with what this backend takes of OBS's list.
    assert b"\x00\x0afourCcList\x0a\x00\x00\x00\x02\x02\x00\x04hvc1\x02\x00\x04av01" in result.answers
    assert watcher.seen > 10
    [gen_dir] = running.generation_dirs(s.stream["id"])
    ended = check_media_playlist(await _stop_and_end(running, gen_dir))
    assert sum(seg.duration for seg in ended.segments) == pytest.approx(c.seconds, abs=2 / FPS)
    assert not any(seg.discontinuity for seg in ended.segments)
    assert [p.name for p in (gen_dir / "source").glob("init*.mp4")] == ["init.mp4"]
    # The master names the codecs of the configuration records and the picture size.
    master = (gen_dir / "master.m3u8").read_text()
    assert f'CODECS="{c.video_codec},{c.audio_codec}"' in master and f"RESOLUTION={c.width}x{c.height}" in master
    with running.install.open_store() as store:
        [rendition] = domain.renditions.list_(store, s.stream["id"])
    assert (rendition["video_codec"], rendition["audio_codec"]) == (c.video_codec, c.audio_codec)
    # ffprobe reads the whole generation through the master: codec, size, every frame, duration.
    info = ffprobe_json("-count_packets", "-show_streams", "-show_format", str(gen_dir / "master.m3u8"))
    kinds = {st["codec_type"]: st for st in info["streams"]}
    video = kinds["video"]
    assert video["codec_name"] == {"hvc1": "hevc", "av01": "av1"}[c.video_codec[:4]]
    assert (video["width"], video["height"]) == (c.width, c.height)
    assert int(video["nb_read_packets"]) == c.frames
    assert kinds["audio"]["codec_name"] == {"mp4a.40.2": "aac", "opus": "opus"}[c.audio_codec]
    assert float(info["format"]["duration"]) == pytest.approx(c.seconds, abs=0.15)
    # Decoded too: every frame, no decoder error.
    decoded = await trio.run_process([FFPROBE, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                                      "stream=nb_read_frames", "-of", "json", str(gen_dir / "master.m3u8")],
                                     capture_stdout=True, capture_stderr=True)
    assert decoded.stderr == b"" and int(json.loads(decoded.stdout)["streams"][0]["nb_read_frames"]) == c.frames


async def test_hevc_with_a_transcoded_ladder_is_refused_at_its_first_tag(nursery, native_install, hevc_aac, caplog):
    running = await start_ingest(nursery, native_install)
    ladder = [{"name": "source", "kind": "source"},
              {"name": "240p", "kind": "transcode", "height": 240, "video_bitrate": 300_000, "audio_bitrate": 64_000}]
    s = add_stream(native_install, ladder=ladder)
    code, stream = await rtmp_probe.publish(running.host, running.port, s.key, connect={"fourCcList": enhanced_rtmp.OBS_FOURCC_LIST})
    assert code == "NetStream.Publish.Start"
    await stream.send_all(enhanced_rtmp.chunks(6, 9, hevc_aac.tags[0].body, 0))  # the hvcC sequence start
    reply = await rtmp_probe.until_closed(stream)
    reason = b"video codec hvc1 (Enhanced RTMP): the transcoded renditions' backend (ffmpeg) cannot decode it"
    assert b"NetStream.Failed" in reply and reason in reply
    await running.publisher_left(s.stream["id"])
    [line] = [r for r in caplog.records if r.getMessage() == "publish refused: codec not supported"]
    assert line.fields["reason"] == reason.decode()
    pipeline = next(iter(running.daemon.pipelines.values()))
    assert pipeline.sink is None and not pipeline.inits  # neither backend started on it


async def test_vp9_is_refused_by_the_native_backend(nursery, native_install):
    running = await start_ingest(nursery, native_install)
    s = add_stream(native_install)
    code, stream = await rtmp_probe.publish(running.host, running.port, s.key, connect={"fourCcList": ["vp09"]})
    assert code == "NetStream.Publish.Start"
    await stream.send_all(enhanced_rtmp.chunks(6, 9, enhanced_rtmp.ex_video("vp09", 0, True, b"\x01\x00\x00\x00"), 0))
    reply = await rtmp_probe.until_closed(stream)
    assert b"NetStream.Failed" in reply and b"video codec vp09 (Enhanced RTMP): the native backend cannot package it" in reply


# -- failures: a corrupt packet, a codec change, a publisher drop --------------------------------


def _corrupt(tags: list[Tag], at_ms: int) -> tuple[list[Tag], int]:
    """The first non-key video frame at or after `at_ms` with its first NAL unit length made too
    long (its NAL units no longer fill it); returns the tags and that frame's timestamp."""
    out, hit = [], None
    for t in tags:
        if hit is None and t.type_id == 9 and t.timestamp >= at_ms and t.body[0] >> 4 == 2 and t.body[1] == 1:
            body = bytearray(t.body)
            body[5:9] = (len(body) * 2).to_bytes(4, "big")
            t, hit = Tag(9, t.timestamp, bytes(body)), t.timestamp
        out.append(t)
    assert hit is not None
    return out, hit


async def test_a_corrupt_packet_is_dropped_with_a_log_line_and_a_discontinuity(nursery, native_install, h264_clip, caplog):
    caplog.set_level(logging.WARNING)
    running = await start_ingest(nursery, native_install)
    s = add_stream(native_install)
    tags, bad_ms = _corrupt(h264_clip.tags, 2500)  # in the second GOP, which runs 2000-3967 ms
    c = Clip(**{**h264_clip.__dict__, "tags": tags})
    result, _ = await _publish_watched(running, s, c)
    assert result.sent == len(tags) and not result.closed_early  # the publish went on
    [line] = [r for r in caplog.records if r.getMessage() == "packet dropped"]
    assert line.fields["media"] == "video" and line.fields["timestamp_ms"] == bad_ms
    assert "does not fit" in line.fields["reason"]
    [gen_dir] = running.generation_dirs(s.stream["id"])
    playlist = check_media_playlist(await _stop_and_end(running, gen_dir))
    # The segment with the bad frame closed before it; the next starts at the next keyframe (4 s)
    # after a discontinuity; the rest of that GOP is gone and nothing else.
    starts, t = [], 0.0
    for seg in playlist.segments:
        starts.append((round(t, 2), seg.discontinuity))
        t += seg.duration
    assert [d for _, d in starts] == [False, False, True]
    assert playlist.segments[1].duration == pytest.approx(bad_ms / 1000 - 2.0, abs=0.04)
    info = ffprobe_json("-count_packets", "-show_streams", str(gen_dir / "master.m3u8"))
    video = next(st for st in info["streams"] if st["codec_type"] == "video")
    lost = sum(1 for f in h264_clip_frames(h264_clip) if bad_ms <= f < 4000)
    assert int(video["nb_read_packets"]) == h264_clip.frames - lost
    with running.install.open_store() as store:
        assert domain.generations.get(store, gen_dir.name)["discontinuity_count"] == 1


def h264_clip_frames(c: Clip) -> list[int]:
    return [t.timestamp for t in c.tags[2:] if t.type_id == 9]


async def test_a_codec_change_mid_publish_gives_a_new_init_after_a_discontinuity(nursery, native_install, h264_clip, hevc_aac):
    running = await start_ingest(nursery, native_install)
    s = add_stream(native_install)
    # H.264 for 2 s (one GOP), then the publisher switches to HEVC (its sequence start, then its
    # frames from its first keyframe), timestamps running on.
    first = [t for t in h264_clip.tags if t.timestamp < 2000]
    switch = [Tag(t.type_id, t.timestamp + 2000, t.body) for t in hevc_aac.tags if t.type_id == 9 and t.timestamp < 4000]
    audio = [Tag(8, t.timestamp, t.body) for t in h264_clip.tags[2:] if t.type_id == 8 and 2000 <= t.timestamp < 6000]
    tags = first + sorted(switch[:1] + sorted(switch[1:] + audio, key=lambda t: t.timestamp), key=lambda t: t.timestamp)
    c = Clip(**{**h264_clip.__dict__, "tags": tags})
    result, _ = await _publish_watched(running, s, c)
    assert result.sent == len(tags)
    [gen_dir] = running.generation_dirs(s.stream["id"])
    playlist = check_media_playlist(await _stop_and_end(running, gen_dir))
    assert sorted(p.name for p in (gen_dir / "source").glob("init*.mp4")) == ["init-1.mp4", "init.mp4"]
    maps = [seg.map_uri for seg in playlist.segments]
    assert maps[0] == "init.mp4" and maps[-1] == "init-1.mp4"
    switched = maps.index("init-1.mp4")
    assert playlist.segments[switched].discontinuity and sum(seg.discontinuity for seg in playlist.segments) == 1
    assert sum(seg.duration for seg in playlist.segments) == pytest.approx(6.0, abs=0.1)
    master = (gen_dir / "master.m3u8").read_text()
    assert f'CODECS="{hevc_aac.video_codec},mp4a.40.2"' in master  # the master follows the newest init


async def test_publisher_drop_and_return_continue_the_generation(nursery, native_install, av1_aac):
    """The publisher's connection is cut mid-GOP, without an unpublish; it comes back within the
    reconnect grace: one generation, one discontinuity, both halves listed."""
    running = await start_ingest(nursery, native_install)
    s = add_stream(native_install)
    half = Clip(**{**av1_aac.__dict__, "tags": [t for t in av1_aac.tags if t.timestamp < 3100]})
    cut = await enhanced_rtmp.publish(running.host, running.port, s.key, half, unpublish=False)
    assert cut.sent == len(half.tags)
    await running.publisher_left(s.stream["id"])
    pipeline = next(iter(running.daemon.pipelines.values()))
    assert pipeline.sink is None
    again = await enhanced_rtmp.publish(running.host, running.port, s.key, av1_aac)
    assert again.sent == len(av1_aac.tags)
    await running.publisher_left(s.stream["id"])
    assert len(running.generation_dirs(s.stream["id"])) == 1
    playlist = check_media_playlist(await _stop_and_end(running, pipeline.directory))
    assert sum(seg.discontinuity for seg in playlist.segments) == 1
    # 3.1 s of the first publish (its open segment closed as it stood) and all 6 s of the second.
    assert sum(seg.duration for seg in playlist.segments) == pytest.approx(3.1 + SECONDS, abs=0.1)


# -- a ladder: the native source and ffmpeg's transcodes, each fed once -----------------------------


async def test_a_ladder_runs_the_native_source_and_ffmpeg_for_the_transcodes(nursery, native_install):
    running = await start_ingest(nursery, native_install)
    ladder = [{"name": "source", "kind": "source"},
              {"name": "180p", "kind": "transcode", "height": 180, "video_bitrate": 200_000, "audio_bitrate": 64_000}]
    s = add_stream(native_install, ladder=ladder)
    seconds = 6
    async with trio.open_nursery() as n:
        result = {}

        async def publish():
            result["p"] = await run_publisher(ffmpeg_publish_cmd(running.url(s.key), seconds, size="640x360", rate=30,
                                                                 extra=["-g", "60"]))

        n.start_soon(publish)
        pipeline = await wait_for(lambda: next(iter(running.daemon.pipelines.values()), None))
        sink = await wait_for(lambda: pipeline.sink)
        ffmpeg_sink = sink.sinks[1]
        proc = await wait_for(lambda: ffmpeg_sink.process, timeout=10)
        # ffmpeg has one output, the transcode: the source is not its job.
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline.count(b"libx264") == 1 and b"copy" not in cmdline
        assert sum(1 for a in cmdline if a.startswith(b"pipe:") and a != b"pipe:0") == 1
        watcher = PlaylistWatcher(pipeline.directory, renditions=("source", "180p"))
        scope = trio.CancelScope()

        async def watch():
            with scope:
                await watcher.run()

        n.start_soon(watch)
        await wait_for(lambda: "p" in result, timeout=60)
        await running.publisher_left(s.stream["id"])
        scope.cancel()
    assert result["p"].returncode == 0, result["p"].stderr
    assert watcher.seen > 10
    master = (pipeline.directory / "master.m3u8").read_text()
    assert "RESOLUTION=640x360" in master and "RESOLUTION=320x180" in master
    for name in ("source", "180p"):
        playlist = parse_media_playlist((pipeline.directory / name / "index.m3u8").read_text())
        assert sum(seg.duration for seg in playlist.segments) == pytest.approx(seconds, abs=0.2), name
        assert not any(seg.discontinuity for seg in playlist.segments)


# -- connect ---------------------------------------------------------------------------------------


async def test_fourcc_list_answered_by_backend_kind(nursery, tmp_path):
    for kind, listed in (("native", b"\x02\x00\x04hvc1\x02\x00\x04av01"), ("ffmpeg", b"")):
        inst = make_install(tmp_path / kind, **{"backend.kind": kind})
        running = await start_ingest(nursery, inst)
        s = add_stream(inst)
        answers = bytearray()
        code, stream = await rtmp_probe.publish(running.host, running.port, s.key, received=answers,
                                                connect={"fourCcList": ["av01", "vp09", "hvc1"]})
        await stream.aclose()
        count = len(listed) // 7
        assert code == "NetStream.Publish.Start"
        assert b"\x00\x0afourCcList\x0a" + count.to_bytes(4, "big") + listed in answers, kind
        running.cancel.cancel()

