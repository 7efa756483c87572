"""The ingest daemon with real publishers (ffmpeg, GStreamer) on 127.0.0.1."""

from __future__ import annotations

import os
import random

import pytest
import trio
import trustme

from daemons.core import domain
from daemons.core.stats import read_stats
from tests.daemons import rtmp_probe
from tests.daemons.conftest import (
    FFMPEG,
    add_stream,
    ffmpeg_publish_cmd,
    ffprobe,
    gst_publish_cmd,
    make_install,
    needs_ffmpeg,
    needs_gst,
    run_publisher,
    start_ingest,
    wait_for,
)

FRAME_S = 1 / 25


async def flv_files(running, stream_id: str):
    """The publish's recordings, once the publisher has left (its sink flushes on close)."""
    await running.publisher_left(stream_id)
    return sorted(p for d in running.generation_dirs(stream_id) for p in (d / "ingest").glob("*.flv"))


def assert_flv(path, *, width=320, height=240, duration=3.0):
    info = ffprobe(path)
    codecs = {s["codec_type"]: s for s in info["streams"]}
    assert codecs["video"]["codec_name"] == "h264"
    assert (codecs["video"]["width"], codecs["video"]["height"]) == (width, height)
    assert codecs["audio"]["codec_name"] == "aac"
    assert abs(float(info["format"]["duration"]) - duration) <= FRAME_S + 1e-6, info["format"]["duration"]
    return codecs


@needs_ffmpeg
async def test_ffmpeg_publish_is_handed_on_as_valid_flv(ingest):
    s = add_stream(ingest.install)
    async with trio.open_nursery() as n:
        result = {}

        async def publish():
            result["p"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 3))

        n.start_soon(publish)
        # While publishing: the stats file shows the publisher with codecs and resolution.
        stats = await wait_for(lambda: _publisher_stats(ingest, s.stream["id"], lambda p: p["video_codec"] and p["width"]))
        assert stats["audio_codec"] == "mp4a.40.2"
        assert stats["video_codec"].startswith("avc1.")
        assert (stats["width"], stats["height"]) == (320, 240)
        assert stats["remote"].startswith("127.0.0.1:")
    assert result["p"].returncode == 0, result["p"].stderr
    [path] = await flv_files(ingest, s.stream["id"])
    video = assert_flv(path)["video"]
    assert int(video["nb_read_frames"]) == 75
    with ingest.install.open_store() as store:
        gen = domain.generations.active(store, s.stream["id"])
    assert gen is not None and gen["status"] == "live"  # the packager made it playable
    assert path.parent.parent.name == gen["id"]


def _publisher_stats(running, stream_id, cond=lambda p: True):
    stats = read_stats(running.install.state_dir, "ingest") or {}
    for p in stats.get("publishers", []):
        if p["stream_id"] == stream_id and cond(p):
            return p
    return None


@needs_gst
async def test_gstreamer_publish_is_handed_on_as_valid_flv(ingest):
    s = add_stream(ingest.install)
    result = await run_publisher(gst_publish_cmd(ingest.url(s.key), 75))
    assert result.returncode == 0, result.stderr
    [path] = await flv_files(ingest, s.stream["id"])
    codecs = assert_flv(path)
    assert int(codecs["video"]["nb_read_frames"]) == 75


async def test_refused_publishes_get_the_right_status(ingest):
    inst = ingest.install
    good = add_stream(inst, "good")
    revoked = add_stream(inst, "revoked")
    deleted = add_stream(inst, "deleted")
    manual = add_stream(inst, "manual", auto_start=False)
    with inst.open_store() as store:
        domain.keys.revoke(store, revoked.key_id)
        domain.streams.delete(store, "deleted")
    h, p = ingest.host, ingest.port
    prefix = good.key.split("_", 1)[0]
    assert await rtmp_probe.status_of(h, p, f"{prefix}_{'A' * 32}") == "NetStream.Publish.BadName"
    assert await rtmp_probe.status_of(h, p, "not-a-key") == "NetStream.Publish.BadName"
    assert await rtmp_probe.status_of(h, p, revoked.key) == "NetStream.Publish.BadName"
    assert await rtmp_probe.status_of(h, p, deleted.key) == "NetStream.Publish.BadName"
    assert await rtmp_probe.status_of(h, p, manual.key) == "NetStream.Publish.Denied"
    assert await rtmp_probe.status_of(h, p, good.key, app="other") == "NetStream.Publish.BadName"
    # Once an admin starts the stream, the same key is accepted.
    with inst.open_store() as store:
        domain.streams.start(store, "manual")
    assert await rtmp_probe.status_of(h, p, manual.key) == "NetStream.Publish.Start"
    assert await rtmp_probe.status_of(h, p, good.key) == "NetStream.Publish.Start"


@needs_ffmpeg
async def test_second_publisher_is_refused_and_first_is_unaffected(ingest):
    s = add_stream(ingest.install)
    async with trio.open_nursery() as n:
        result = {}

        async def publish():
            result["p"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 3))

        n.start_soon(publish)
        await wait_for(lambda: s.stream["id"] in ingest.daemon.publishers)
        assert await rtmp_probe.status_of(ingest.host, ingest.port, s.key) == "NetStream.Publish.BadName"
    assert result["p"].returncode == 0, result["p"].stderr
    [path] = await flv_files(ingest, s.stream["id"])
    assert_flv(path)


@needs_ffmpeg
async def test_takeover_switch_lets_the_newer_publisher_in(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"rtmp.allow_takeover": True})
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    async with trio.open_nursery() as n:
        result = {}

        async def publish():
            result["p"] = await run_publisher(ffmpeg_publish_cmd(running.url(s.key), 20))

        n.start_soon(publish)
        first = await wait_for(lambda: running.daemon.publishers.get(s.stream["id"]))
        code, probe = await rtmp_probe.publish(running.host, running.port, s.key)
        assert code == "NetStream.Publish.Start"
        await first.done.wait()
        assert running.daemon.publishers[s.stream["id"]] is not first
        await probe.aclose()
    assert result["p"].returncode != 0  # the old publisher was disconnected


@needs_ffmpeg
async def test_rtmps_publish(nursery, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    inst = make_install(
        tmp_path / "var",
        **{"rtmp.rtmps_listen": "127.0.0.1:0", "rtmp.tls_cert": str(cert_path), "rtmp.tls_key": str(key_path)},
    )
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    result = await run_publisher(ffmpeg_publish_cmd(running.url(s.key, "rtmps"), 3))
    assert result.returncode == 0, result.stderr
    [path] = await flv_files(running, s.stream["id"])
    assert_flv(path)


@needs_ffmpeg
async def test_reconnect_continues_the_generation(ingest):
    s = add_stream(ingest.install)
    for _ in range(2):
        result = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 1))
        assert result.returncode == 0, result.stderr
        await wait_for(lambda: s.stream["id"] not in ingest.daemon.publishers)
    [gen_dir] = ingest.generation_dirs(s.stream["id"])
    files = sorted((gen_dir / "ingest").glob("*.flv"))
    assert [f.name for f in files] == ["0000.flv", "0001.flv"]
    for f in files:
        assert_flv(f, duration=1.0)


@needs_ffmpeg
async def test_daemon_restart_resumes_active_generation(nursery, sender_install):
    s = add_stream(sender_install)
    first = await start_ingest(nursery, sender_install)
    assert (await run_publisher(ffmpeg_publish_cmd(first.url(s.key), 1))).returncode == 0
    first.cancel.cancel()
    second = await start_ingest(nursery, sender_install)
    assert (await run_publisher(ffmpeg_publish_cmd(second.url(s.key), 1))).returncode == 0
    [gen_dir] = second.generation_dirs(s.stream["id"])
    assert len(list((gen_dir / "ingest").glob("*.flv"))) == 2


@needs_ffmpeg
async def test_admin_stop_disconnects_the_publisher(ingest):
    s = add_stream(ingest.install)
    async with trio.open_nursery() as n:
        result = {}

        async def publish():
            result["p"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 30))
            result["at"] = trio.current_time()

        n.start_soon(publish)
        await wait_for(lambda: s.stream["id"] in ingest.daemon.publishers)
        with ingest.install.open_store() as store:
            gen = domain.streams.stop(store, "demo")
        stopped_at = trio.current_time()
    assert gen["status"] == "ended"
    assert result["p"].returncode != 0
    assert result["at"] - stopped_at < 5  # honoured within the control interval, not at -t 30


async def test_handshake_timeout_closes_silent_connections(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"rtmp.limits.handshake_timeout_s": 0.3})
    running = await start_ingest(nursery, inst)
    async with await trio.open_tcp_stream(running.host, running.port) as stream:
        with trio.fail_after(5):
            assert await stream.receive_some(100) == b""  # the server closed it


async def test_publish_past_max_publishers_is_refused_and_idle_sockets_take_no_slot(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"rtmp.max_publishers": 1})
    running = await start_ingest(nursery, inst)
    first, second = add_stream(inst, "first"), add_stream(inst, "second")
    idle = [await trio.open_tcp_stream(running.host, running.port) for _ in range(4)]
    try:
        await wait_for(lambda: running.daemon.admission.pending == 4)
        code, publishing = await rtmp_probe.publish(running.host, running.port, first.key)
        async with publishing:
            assert code == "NetStream.Publish.Start"  # idle sockets did not take the only slot
            # The slot is taken: a valid key for another stream gets a clear refusal, not a reset.
            assert await rtmp_probe.status_of(running.host, running.port, second.key) == "NetStream.Publish.Denied"
        await running.publisher_left(first.stream["id"])
        assert await rtmp_probe.status_of(running.host, running.port, second.key) == "NetStream.Publish.Start"
    finally:
        for s in idle:
            await s.aclose()


async def test_failed_attempts_are_rate_limited_per_source(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"rtmp.auth_failures_per_minute": 3})
    running = await start_ingest(nursery, inst)
    s = add_stream(inst)
    for _ in range(3):
        assert await rtmp_probe.status_of(running.host, running.port, "sk0000000000_" + "B" * 32) == "NetStream.Publish.BadName"
    # Locked out: even the valid key is refused from this address for now.
    assert await rtmp_probe.status_of(running.host, running.port, s.key) == "NetStream.Publish.BadName"
    assert s.stream["id"] not in running.daemon.publishers


@needs_ffmpeg
async def test_survives_garbage_connections_while_publishing(ingest):
    s = add_stream(ingest.install)
    rng = random.Random(1234)
    captured = _capture_prefix()

    def garbage() -> bytes:
        kind = rng.randrange(4)
        if kind == 0:
            return os.urandom(rng.randrange(1, 4000))
        if kind == 1:  # a real session's start, truncated
            return captured[: rng.randrange(1, len(captured))]
        if kind == 2:  # a real session's start with bit flips
            b = bytearray(captured[: rng.randrange(1600, len(captured))])
            for _ in range(rng.randrange(1, 20)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            return bytes(b)
        return b"\x03" + bytes(1536) + os.urandom(rng.randrange(0, 3000))  # handshake then noise

    async def attack(count: int) -> None:
        for _ in range(count):
            try:
                stream = await trio.open_tcp_stream(ingest.host, ingest.port)
                await stream.send_all(garbage())
                await stream.aclose()
            except (trio.BrokenResourceError, OSError):
                pass

    async with trio.open_nursery() as n:
        result = {}

        async def publish():
            result["p"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 4))

        n.start_soon(publish)
        await wait_for(lambda: s.stream["id"] in ingest.daemon.publishers)
        async with trio.open_nursery() as attackers:
            for _ in range(20):
                attackers.start_soon(attack, 50)  # 1,000 connections in all
    assert result["p"].returncode == 0, result["p"].stderr
    [path] = await flv_files(ingest, s.stream["id"])
    assert_flv(path, duration=4.0)
    await wait_for(lambda: ingest.daemon.connections == 0)


def _capture_prefix() -> bytes:
    path = os.path.join(os.path.dirname(__file__), "..", "media", "data", "ffmpeg_publish.bin")
    with open(path, "rb") as f:
        return f.read(8000)


async def _config_record(codec_args: list[str], box: bytes) -> bytes:
    """A real encoder's decoder configuration record (hvcC, av1C): ffmpeg encodes a few frames to
    MP4, and the record is the body of that box, as an Enhanced RTMP publisher sends it."""
    out = (await trio.run_process(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-frames:v", "3", *codec_args, "-f", "mp4", "-movflags", "frag_keyframe+empty_moov", "pipe:1"],
        capture_stdout=True, check=True,
    )).stdout
    at = out.index(box)
    size = int.from_bytes(out[at - 4 : at], "big")
    return out[at + 4 : at - 4 + size]


ENHANCED = [
    pytest.param(9, b"\x90hvc1", ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"], b"hvcC",
                 "video codec hvc1 (Enhanced RTMP)", id="hevc"),
    pytest.param(9, b"\x90av01", ["-c:v", "libsvtav1", "-preset", "12"], b"av1C", "video codec av01 (Enhanced RTMP)", id="av1"),
    pytest.param(9, b"\x1c\x00\x00\x00\x00", ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
                 b"hvcC", "video codec hvc1 (FLV CodecID 12)", id="hevc-legacy-codec-id"),
    pytest.param(8, b"\x90Opus", None, None, "audio codec Opus (Enhanced RTMP)", id="opus"),
]


@needs_ffmpeg
@pytest.mark.parametrize(("type_id", "header", "codec_args", "box", "reason"), ENHANCED)
async def test_enhanced_rtmp_publish_is_refused_at_its_first_sequence_header(nursery, tmp_path, caplog, type_id, header, codec_args, box, reason):
    """With the ffmpeg backend (the native one takes these: tests/daemons/test_native.py)."""
    ingest = await start_ingest(nursery, make_install(tmp_path / "var", **{"backend.kind": "ffmpeg"}))
    s = add_stream(ingest.install)
    sid = s.stream["id"]
    record = await _config_record(codec_args, box) if codec_args else b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
    answers = bytearray()
    code, stream = await rtmp_probe.publish(ingest.host, ingest.port, s.key, received=answers,
                                            connect={"fourCcList": ["av01", "vp09", "hvc1"]})
    assert code == "NetStream.Publish.Start"
    # connect's _result answered the fourCcList with the codecs Sender packages: none of them yet.
    assert b"\x00\x0afourCcList\x0a\x00\x00\x00\x00" in answers
    await stream.send_all(rtmp_probe.message(6, type_id, header + record, stream_id=1))
    reply = await rtmp_probe.until_closed(stream)
    assert b"NetStream.Failed" in reply and reason.encode() in reply  # the publisher is told why
    await ingest.publisher_left(sid)
    [line] = [r for r in caplog.records if r.getMessage() == "publish refused: codec not supported"]
    assert line.fields["reason"].startswith(reason) and line.fields["stream"] == "demo"
    # Nothing was started for it; the generation waits (reconnect grace) and takes an H.264 publish.
    with ingest.install.open_store() as store:
        gen = domain.generations.active(store, sid)
    pipeline = ingest.daemon.pipelines[gen["id"]]
    assert pipeline.sink is None and pipeline.restarts == 0 and not pipeline.inits
    assert gen["publisher_left_at"] is not None
    result = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 2))
    assert result.returncode == 0, result.stderr
    with ingest.install.open_store() as store:
        assert domain.generations.get(store, gen["id"])["status"] == "live"


async def test_legacy_publisher_gets_no_fourcc_list(ingest):
    s = add_stream(ingest.install)
    answers = bytearray()
    code, stream = await rtmp_probe.publish(ingest.host, ingest.port, s.key, received=answers)
    await stream.aclose()
    assert code == "NetStream.Publish.Start" and b"fourCcList" not in answers
