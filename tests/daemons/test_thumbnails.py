"""Thumbnails: real ffmpeg publishers into a real ingest daemon, the JPEG read back from a real
sender-http (magic bytes, decoded size by ffprobe, a new picture as the test pattern moves), the
visibility rules, the pages that show it; the JPEG splitter against garbage; the CPU figure."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.core.domain import playback
from daemons.ingest import thumbnails
from daemons.ingest.thumbnails import JPEGError, JPEGSplitter
from daemons.media import flv, rtmp
from tests.daemons.conftest import (
    FFMPEG,
    FFPROBE,
    add_stream,
    ffmpeg_publish_cmd,
    make_install,
    needs_ffmpeg,
    run_publisher,
    start_ingest,
    wait_for,
)
from tests.http.conftest import start_http
from tests.http.test_management import add_token
from tests.web.test_admin import signed_in

JPEG_MAGIC = b"\xff\xd8\xff"


def _jpeg_size(data: bytes, tmp_path) -> tuple[int, int]:
    path = tmp_path / f"t{time.monotonic_ns()}.jpg"
    path.write_bytes(data)
    out = subprocess.run([FFPROBE, "-v", "error", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    [s] = json.loads(out)["streams"]
    assert s["codec_name"] == "mjpeg"
    return s["width"], s["height"]


def _thumbnail_install(tmp_path, **kw):
    return make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0", "thumbnails.interval_s": 1.0,
                                             "thumbnails.width": 160, "rtmp.record": False, **kw})


@needs_ffmpeg
async def test_live_thumbnails_are_served_with_the_visibility_rules_and_change_as_the_picture_moves(nursery, tmp_path):
    inst = _thumbnail_install(tmp_path)
    running = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    public, private = add_stream(inst, "pub", title="Public"), add_stream(inst, "priv", visibility="private")
    idle = add_stream(inst, "idle")
    await http.daemon.ctx.directory.refresh()
    token = playback.mint_token(inst.playback_secret(), private.stream["id"], 600)["token"]
    published = {}

    async def publish(s):
        published[s.stream["slug"]] = await run_publisher(ffmpeg_publish_cmd(running.url(s.key), 9))

    for s in (public, private):
        nursery.start_soon(publish, s)
    async with http.client() as c:
        async def served(slug, **params):
            r = await c.get(f"/api/streams/{slug}/thumbnail.jpg", params=params)
            return r if r.status_code == 200 else None

        first = None
        with trio.fail_after(20):
            while first is None:
                first = await served("pub")
                await trio.sleep(0.1)
        assert first.headers["content-type"] == "image/jpeg" and first.content[:3] == JPEG_MAGIC
        assert first.headers["cache-control"] == "public, max-age=1" and first.headers["etag"]
        assert _jpeg_size(first.content, tmp_path) == (160, 120)  # thumbnails.width, the picture's 4:3 kept
        with trio.fail_after(10):  # testsrc2 moves: the next thumbnail is another picture
            while (later := await served("pub")) is None or later.content == first.content:
                await trio.sleep(0.2)
        assert later.content[:3] == JPEG_MAGIC and _jpeg_size(later.content, tmp_path) == (160, 120)

        # A private stream's picture: only with its playback token, and cached privately.
        with trio.fail_after(20):
            while await served("priv", token=token) is None:
                await trio.sleep(0.1)
        for params in ({}, {"token": "1.abc"}, {"token": playback.mint_token(inst.playback_secret(), public.stream["id"], 600)["token"]}):
            r = await c.get("/api/streams/priv/thumbnail.jpg", params=params)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", params
            assert r.headers["cache-control"] == "no-store"
        mine = await c.get("/api/streams/priv/thumbnail.jpg", params={"token": token})
        assert mine.content[:3] == JPEG_MAGIC and mine.headers["cache-control"] == "private, max-age=1"

        # Pages: the index shows the live public stream's picture; the watch page has it as og:image and poster.
        index = (await c.get("/")).text
        assert '<img class="thumbnail" src="/api/streams/pub/thumbnail.jpg"' in index and "priv" not in index
        watch = (await c.get("/watch/pub")).text
        assert f'<meta property="og:image" content="{http.base_url}/api/streams/pub/thumbnail.jpg">' in watch
        assert '<img slot="poster" src="/api/streams/pub/thumbnail.jpg"' in watch
        private_watch = (await c.get("/watch/priv", params={"token": token})).text
        assert "og:image" not in private_watch  # a link preview has no token
        assert f'<img slot="poster" src="/api/streams/priv/thumbnail.jpg?token={token}"' in private_watch
        assert "thumbnail" not in (await c.get("/watch/priv")).text
        metrics = (await c.get("/metrics")).text
        made = next(line for line in metrics.splitlines() if line.startswith("sender_thumbnails_made_total "))
        assert float(made.split()[1]) >= 1 and "sender_thumbnails_failed_total 0.0" in metrics
        # The admin page: each live stream's picture, a private one's with a token of its own.
        await signed_in(c, add_token(inst))
        admin = (await c.get("/admin")).text
        assert '<img class="pic" src="/api/streams/pub/thumbnail.jpg" alt="picture of pub"' in admin
        own = re.search(r'<img class="pic" src="(/api/streams/priv/thumbnail.jpg\?token=[^"]+)"', admin).group(1)
        assert (await c.get(own)).content[:3] == JPEG_MAGIC

        with trio.fail_after(30):
            while len(published) < 2:
                await trio.sleep(0.1)
        assert all(p.returncode == 0 for p in published.values()), {k: p.stderr[-300:] for k, p in published.items()}
        await running.publisher_left(public.stream["id"])
        # The broadcast keeps its last picture (a recording has one too), by generation as well.
        [gen_dir] = running.generation_dirs(public.stream["id"])
        kept = await c.get("/api/streams/pub/thumbnail.jpg")
        assert kept.status_code == 200 and kept.content == (gen_dir / "thumbnail.jpg").read_bytes()
        by_generation = await c.get("/api/streams/pub/thumbnail.jpg", params={"generation": gen_dir.name})
        assert by_generation.content == kept.content
        again = await c.get("/api/streams/pub/thumbnail.jpg", headers={"If-None-Match": kept.headers["etag"]})
        assert again.status_code == 304 and again.content == b""

        # 404 until there is one; 400 for a malformed generation.
        assert (await c.get("/api/streams/idle/thumbnail.jpg")).status_code == 404
        assert (await c.get("/api/streams/nope/thumbnail.jpg")).status_code == 404
        r = await c.get("/api/streams/pub/thumbnail.jpg", params={"generation": "../../etc"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "generation"
        r = await c.get("/api/streams/pub/thumbnail.jpg", params={"generation": "gen_0000000000000000"})
        assert r.status_code == 404
    assert idle.stream["slug"] == "idle"
    assert running.daemon.thumbnails.failed == 0


@needs_ffmpeg
async def test_a_decoder_that_dies_is_replaced_and_touches_nothing_else(nursery, tmp_path):
    inst = _thumbnail_install(tmp_path)
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    done = []
    nursery.start_soon(lambda: _publish_into(done, running.url(s.key), 8))
    thumbnailer = running.daemon.thumbnails
    tap = await wait_for(lambda: (t := thumbnailer.taps.get(s.stream["id"])) and t.decoder and t)
    path = running.generation_dirs(s.stream["id"])[0] / "thumbnail.jpg"
    await wait_for(path.exists)
    killed = tap.decoder.pid
    tap.decoder.child.kill()
    # The next round fails once (logged), stops that decoder; the one after starts a new one.
    await wait_for(lambda: tap.decoder is not None and tap.decoder.pid != killed and thumbnailer.made >= 3, timeout=15)
    before = path.stat().st_mtime_ns
    await wait_for(lambda: path.stat().st_mtime_ns != before, timeout=10)
    assert thumbnailer.failed >= 1
    await wait_for(lambda: done, timeout=30)
    assert done[0].returncode == 0  # the publisher never noticed
    pipeline_dir = running.generation_dirs(s.stream["id"])[0]
    assert "#EXT-X-DISCONTINUITY\n" not in (pipeline_dir / "source" / "index.m3u8").read_text()


@needs_ffmpeg
async def test_thumbnails_off_means_no_tap_no_decoder_no_file(nursery, tmp_path):
    inst = _thumbnail_install(tmp_path, **{"thumbnails.enabled": False})
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    done = []
    nursery.start_soon(lambda: _publish_into(done, running.url(s.key), 4))
    await wait_for(lambda: s.stream["id"] in running.daemon.publishers, timeout=20)
    assert running.daemon.thumbnails.taps == {}  # while it publishes
    await wait_for(lambda: done, timeout=30)
    await running.publisher_left(s.stream["id"])
    assert running.daemon.thumbnails.made == 0
    assert not (running.generation_dirs(s.stream["id"])[0] / "thumbnail.jpg").exists()


async def _publish_into(done: list, url: str, seconds: float) -> None:
    done.append(await run_publisher(ffmpeg_publish_cmd(url, seconds)))


async def _run_into(done: list, cmd: list[str]) -> None:
    done.append(await run_publisher(cmd, timeout=90))


def _h264_tags(tmp_path) -> tuple[rtmp.VideoData, list[rtmp.VideoData]]:
    """A real x264 stream with B-frames as the RTMP connection hands it on: its sequence header and keyframes."""
    path = tmp_path / "src.flv"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                    "-t", "3", "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "25", "-pix_fmt", "yuv420p",
                    "-f", "flv", str(path)], check=True)
    video = [rtmp.VideoData(t.timestamp, t.body, flv.parse_video_tag(t.body))
             for t in flv.FLVReader().feed(path.read_bytes()) if t.type == flv.TAG_VIDEO]
    return next(v for v in video if v.is_sequence_header), [v for v in video if v.header.is_random_access]


@needs_ffmpeg
async def test_a_thumbnail_is_due_once_per_interval_and_only_for_a_new_keyframe(nursery, tmp_path, mock_clock):
    """The schedule on trio's MockClock (the decoder is the real one: time stands still while it works)."""
    inst = make_install(tmp_path / "var", **{"thumbnails.interval_s": 10.0, "thumbnails.width": 64})
    thumbnailer = thumbnails.Thumbnailer(inst.config, nursery)
    directory = tmp_path / "generation"
    directory.mkdir()
    tap = thumbnailer.tap({"id": "st_0000000000000001", "slug": "clock"}, "gen_0000000000000001", directory)
    await tap.open()
    sequence_header, keyframes = _h264_tags(tmp_path)
    picture = directory / "thumbnail.jpg"
    await thumbnailer.round()
    assert thumbnailer.made == 0 and not picture.exists()  # no keyframe yet
    await tap.write(sequence_header)
    await tap.write(keyframes[0])
    await thumbnailer.round()  # the first keyframe: at once
    first = picture.read_bytes()
    assert thumbnailer.made == 1 and first[:3] == JPEG_MAGIC and _jpeg_size(first, tmp_path) == (64, 48)
    await tap.write(keyframes[1])
    mock_clock.jump(9.9)
    await thumbnailer.round()  # a new keyframe, but the interval has not passed
    assert thumbnailer.made == 1 and picture.read_bytes() == first
    mock_clock.jump(0.1)
    await thumbnailer.round()
    assert thumbnailer.made == 2 and picture.read_bytes() != first  # testsrc2 moved in that second
    mock_clock.jump(60)
    await thumbnailer.round()  # due, but no new keyframe since: nothing to decode
    assert thumbnailer.made == 2 and thumbnailer.failed == 0
    # When the task looks next: a due tap waiting for a keyframe, when the next is expected
    # (one keyframe gap after the newest, seen on the clock) — not a fixed tick, which a keyframe
    # arriving just after it would miss by a whole tick.
    now = trio.current_time()
    tap.take(keyframes[0], now - 1.5)
    tap.thumbnailed = tap.keyframes  # its thumbnail made
    tap.take(keyframes[1], now - 0.5)
    tap.thumbnailed = tap.keyframes
    assert tap.next_look(now) == pytest.approx(now + 0.5 + thumbnails.KEYFRAME_SLACK_S)
    assert thumbnailer._next_round() == pytest.approx(now + 0.5 + thumbnails.KEYFRAME_SLACK_S)
    tap.take(keyframes[2], now)  # it came: the thumbnail when due
    tap.due_at = now + 0.3
    assert thumbnailer._next_round() == pytest.approx(now + 0.3)
    tap.due_at = now + 60  # far off: still looked at within a tick (a new tap may open meanwhile)
    assert thumbnailer._next_round() == pytest.approx(now + thumbnails.TICK_S)
    tap.due_at = now - 5  # overdue with a keyframe waiting: soon, not in a busy loop
    assert thumbnailer._next_round() == pytest.approx(now + thumbnails.MIN_TICK_S)
    await tap.aclose()
    assert thumbnailer.taps == {} and tap.decoder is None


# --- the JPEG splitter ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    """Three real JPEGs from ffmpeg's mjpeg encoder (as the decoder writes them), one with restart markers."""
    if FFMPEG is None:
        pytest.skip("ffmpeg not installed")
    out = []
    for extra in ([], ["-huffman", "0"], ["-q:v", "2"]):
        out.append(subprocess.run(
            [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64", "-frames:v", "1",
             *extra, "-c:v", "mjpeg", "-f", "image2pipe", "pipe:1"], capture_output=True, check=True).stdout)
    return out


def test_splitter_finds_each_image_at_any_chunking(jpegs):
    stream = b"".join(jpegs)
    for size in (1, 2, 3, 7, 100, len(stream)):
        splitter, images = JPEGSplitter(), []
        for i in range(0, len(stream), size):
            images += splitter.feed(stream[i:i + size])
        assert images == jpegs, size


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_splitter_takes_garbage_without_crashing(data, cuts):
    splitter = JPEGSplitter(max_bytes=4096)
    pieces = [data[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)])]
    try:
        for piece in pieces:
            for image in splitter.feed(piece):
                assert image[:2] == b"\xff\xd8" and image[-2:] == b"\xff\xd9"
    except JPEGError:
        pass


@settings(max_examples=100, deadline=None)
@given(prefix=st.binary(min_size=1, max_size=50))
def test_splitter_refuses_what_is_not_a_jpeg(prefix):
    if prefix.startswith(b"\xff\xd8") or prefix == b"\xff":
        return
    with pytest.raises(JPEGError):
        JPEGSplitter().feed(prefix + b"\xff\xd8" * 4)


def test_splitter_bounds_an_endless_image():
    splitter = JPEGSplitter(max_bytes=1000)
    splitter.feed(b"\xff\xd8\xff\xda\x00\x02")  # a scan that never ends
    with pytest.raises(JPEGError):
        splitter.feed(b"\x11" * 2000)
