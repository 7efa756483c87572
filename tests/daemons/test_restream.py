"""Restream with real parts: a real ffmpeg publisher into Sender's ingest, pushed to a local
nginx-rtmp (the stand-in for YouTube) and to a second Sender over RTMPS (trustme certificate);
both receive the stream (their HLS read back with ffprobe). Targets that refuse or die are tried
again with backoff while Sender's own output goes on without a discontinuity; target changes
reach a live publisher within a second; the URL's stream key is never in a log, a stats file, the
CLI's output, /metrics or the admin page. The backoff and the progress parser are unit-tested."""

from __future__ import annotations

import json
import logging
import subprocess

import trio
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from daemons.core import domain
from daemons.core.domain import restream
from daemons.core.stats import read_stats
from daemons.ingest.restream import Backoff, ProgressParser, Restreamer, RestreamSink, total_size
from daemons.media import flv, rtmp
from sender_cli.app import app as sender_app
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
from tests.daemons.enhanced_rtmp import ex_video
from tests.daemons.nginx_rtmp import NginxRtmp, needs_nginx_rtmp, nginx_rtmp  # noqa: F401 - fixture
from tests.http.conftest import start_http
from tests.http.test_management import add_token
from tests.web.test_admin import signed_in

NGINX_KEY = "nginxsecretkey-4815162342"


def _ffprobe(path) -> dict:
    out = subprocess.run([FFPROBE, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def _assert_plays(playlist, min_duration_s: float) -> None:
    """ffprobe reads the HLS playlist's media (the test pattern's video and audio), and its
    segments add up to at least `min_duration_s`."""
    kinds = {s["codec_type"]: s for s in _ffprobe(playlist)["streams"]}
    assert kinds["video"]["codec_name"] == "h264" and (kinds["video"]["width"], kinds["video"]["height"]) == (320, 240)
    assert kinds["audio"]["codec_name"] == "aac"
    listed = sum(float(line.split(":", 1)[1].split(",")[0]) for line in playlist.read_text().splitlines()
                 if line.startswith("#EXTINF:"))
    assert listed >= min_duration_s, (playlist, listed)


def _pushes(running, stream_id: str) -> dict[str, dict]:
    return {p["target_id"]: p for p in running.daemon.restream.stats() if p["stream_id"] == stream_id}


def _second_sender(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return make_install(tmp_path / "second", **{"rtmp.rtmps_listen": "127.0.0.1:0", "rtmp.tls_cert": str(cert_path),
                                                "rtmp.tls_key": str(key_path), "rtmp.record": False})


def _publish(nursery, url: str, seconds: float) -> list:
    done: list = []

    async def run():
        done.append(await run_publisher(ffmpeg_publish_cmd(url, seconds), timeout=seconds + 60))

    nursery.start_soon(run)
    return done


@needs_ffmpeg
@needs_nginx_rtmp
async def test_restream_to_nginx_rtmp_and_to_a_second_sender_over_rtmps(nursery, tmp_path, nginx_rtmp, caplog):
    caplog.set_level(logging.DEBUG)
    inst = make_install(tmp_path / "var", **{"rtmp.record": False, "http.listen": "127.0.0.1:0"})
    second_inst = _second_sender(tmp_path)
    running = await start_ingest(nursery, inst)
    second = await start_ingest(nursery, second_inst)
    http = await start_http(nursery, inst)
    show = add_stream(inst, "show")
    mirror = add_stream(second_inst, "mirror")
    with inst.open_store() as store:
        to_nginx = restream.add(store, "show", nginx_rtmp.url(NGINX_KEY), label="nginx", max_targets=8)
        to_sender = restream.add(store, "show", second.url(mirror.key, "rtmps"), label="second sender", max_targets=8)
    assert to_nginx["url"] == f"rtmp://127.0.0.1:{nginx_rtmp.rtmp_port}/live/ng…42"
    secrets = (NGINX_KEY, mirror.key, mirror.key.split("_", 1)[1])
    done = _publish(nursery, running.url(show.key), 16)
    sid = show.stream["id"]
    await wait_for(lambda: {p["state"] for p in _pushes(running, sid).values()} == {"live"}
                   and len(_pushes(running, sid)) == 2, timeout=20)
    await wait_for(lambda: all(p["bitrate_bps"] > 0 for p in _pushes(running, sid).values()), timeout=5)

    # Shown everywhere, masked: the ingest stats file, stream status (CLI and domain), /metrics, /admin.
    stats = await wait_for(lambda: (doc := read_stats(inst.state_dir, "ingest")) and len(doc.get("restream", ())) == 2
                           and all(p["state"] == "live" and p["bytes"] > 0 for p in doc["restream"]) and doc, timeout=5)
    with inst.open_store() as store:
        status = domain.stream_views.status(store, "show", stats, inst.config)
    assert {t["id"]: t["state"] for t in status["restream"]} == {to_nginx["id"]: "live", to_sender["id"]: "live"}
    cli = CliRunner().invoke(sender_app, ["--config", str(inst.config.path), "stream", "status", "show"])
    assert cli.exit_code == 0 and "Restream targets" in cli.output and to_nginx["url"] in cli.output, cli.output
    listed = CliRunner().invoke(sender_app, ["--config", str(inst.config.path), "restream", "list", "show", "--json"])
    assert {t["id"]: t["state"] for t in json.loads(listed.output)} == {to_nginx["id"]: "live", to_sender["id"]: "live"}
    token = add_token(inst)
    async with http.client() as c:
        metrics = (await c.get("/metrics")).text
        assert f'sender_restream_target_state{{label="nginx",state="live",stream="show",target="{to_nginx["id"]}"}} 1.0' in metrics
        assert "sender_restream_sent_bytes_total{" in metrics and "sender_restream_bitrate_bits{" in metrics
        await signed_in(c, token)
        admin = (await c.get("/admin")).text
        assert to_nginx["url"] in admin and 'data-target="' + to_sender["id"] + '"' in admin
    for text in (json.dumps(stats), cli.output, listed.output, metrics, admin):
        assert not any(s in text for s in secrets)

    # Target changes reach the live publisher within a second (the control loop): disabled → stopped.
    with inst.open_store() as store:
        restream.set_enabled(store, to_sender["id"], False)
    with trio.fail_after(1.5):
        await wait_for(lambda: to_sender["id"] not in _pushes(running, sid), timeout=1.5, interval=0.02)
    with inst.open_store() as store:
        restream.set_enabled(store, to_sender["id"], True)
    await wait_for(lambda: _pushes(running, sid).get(to_sender["id"], {}).get("state") == "live", timeout=10)

    await wait_for(lambda: done, timeout=60)
    assert done[0].returncode == 0, done[0].stderr[-500:]
    await running.publisher_left(sid)
    assert _pushes(running, sid) == {}

    # Both received it: nginx-rtmp's HLS and the second Sender's LL-HLS read back with ffprobe.
    await wait_for(lambda: nginx_rtmp.playlist(NGINX_KEY).exists(), timeout=10)
    _assert_plays(nginx_rtmp.playlist(NGINX_KEY), 10)
    await second.publisher_left(mirror.stream["id"])
    [received] = second.generation_dirs(mirror.stream["id"])
    _assert_plays(received / "source" / "index.m3u8", 8)
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert "restream target live" in logged
    assert not any(s in logged for s in secrets), "a stream key reached the log"


@needs_ffmpeg
@needs_nginx_rtmp
async def test_targets_that_refuse_or_die_are_retried_without_touching_the_stream(nursery, tmp_path, nginx_rtmp, caplog):
    caplog.set_level(logging.DEBUG)
    inst = make_install(tmp_path / "var", **{"rtmp.record": False, "restream.backoff_max_s": 2.0})
    running = await start_ingest(nursery, inst)
    dying = NginxRtmp(tmp_path / "dying")
    dying.start()
    try:
        show = add_stream(inst, "show")
        with inst.open_store() as store:
            stable = restream.add(store, "show", nginx_rtmp.url(NGINX_KEY), label="stable", max_targets=8)
            refused = restream.add(store, "show", nginx_rtmp.url("refusedkey-0000111122", app="refuse"), label="refusing",
                                   max_targets=8)
            dies = restream.add(store, "show", dying.url("dyingkey-99998888"), label="dies", max_targets=8)
        secrets = (NGINX_KEY, "refusedkey-0000111122", "dyingkey-99998888")
        done = _publish(nursery, running.url(show.key), 22)
        sid = show.stream["id"]

        def state(target) -> dict:
            return _pushes(running, sid).get(target["id"], {})

        await wait_for(lambda: state(stable).get("state") == "live" and state(dies).get("state") == "live", timeout=20)
        # The refusing target: failing, its error kept (masked), tried again with backoff.
        await wait_for(lambda: state(refused).get("attempts", 0) >= 3, timeout=15)
        assert state(refused)["state"] in ("failing", "connecting") and state(refused)["last_error"]
        assert state(refused)["bytes"] == 0
        # The dying target: its server crashes; the push fails, is retried while the server is down,
        # and is live again once it is back.
        dying.kill()
        await wait_for(lambda: state(dies).get("state") != "live", timeout=15)
        attempts = state(dies)["attempts"]
        await wait_for(lambda: state(dies)["attempts"] >= attempts + 1, timeout=10)
        dying.start()
        await wait_for(lambda: state(dies).get("state") == "live" and state(dies)["attempts"] > attempts, timeout=15)
        # Through all of it the stable target kept its one push, and the publisher noticed nothing.
        assert state(stable)["state"] == "live" and state(stable)["attempts"] == 1
        await wait_for(lambda: done, timeout=60)
        assert done[0].returncode == 0, done[0].stderr[-500:]
        await running.publisher_left(sid)
    finally:
        dying.stop()
    [generation] = running.generation_dirs(sid)
    playlist = (generation / "source" / "index.m3u8").read_text()
    assert "#EXT-X-DISCONTINUITY\n" not in playlist, "Sender's own output was interrupted"
    with inst.open_store() as store:
        assert domain.generations.get(store, generation.name)["discontinuity_count"] == 0
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert "restream target failed; retrying" in logged
    assert not any(s in logged for s in secrets), "a stream key reached the log"


@needs_ffmpeg
@needs_nginx_rtmp
async def test_a_reconnecting_publisher_pushes_again_after_its_previous_push_unpublished(nursery, tmp_path, nginx_rtmp):
    inst = make_install(tmp_path / "var", **{"rtmp.record": False})
    running = await start_ingest(nursery, inst)
    show = add_stream(inst, "show")
    with inst.open_store() as store:
        target = restream.add(store, "show", nginx_rtmp.url(NGINX_KEY), max_targets=8)
    sid = show.stream["id"]
    for publish in range(2):
        done = _publish(nursery, running.url(show.key), 5)
        await wait_for(lambda: _pushes(running, sid).get(target["id"], {}).get("state") == "live", timeout=20)
        assert _pushes(running, sid)[target["id"]]["attempts"] == 1, publish  # not refused as a duplicate publish
        await wait_for(lambda: done, timeout=60)
        assert done[0].returncode == 0
        with trio.fail_after(2):  # the publisher's teardown does not wait for the push to unpublish
            await running.publisher_left(sid)
    await wait_for(lambda: not running.daemon.restream.finishing, timeout=10)
    assert NGINX_KEY not in json.dumps(read_stats(inst.state_dir, "ingest"))


async def test_a_codec_ffmpeg_cannot_read_fails_its_targets_without_starting_ffmpeg(nursery, tmp_path):
    """An Enhanced RTMP publish (HEVC through the native backend): the targets say why, no ffmpeg runs."""
    inst = make_install(tmp_path / "var")
    restreamer = Restreamer(inst.config, nursery)
    stream = {"id": "st_0000000000000001", "slug": "hevc"}
    sink = RestreamSink(restreamer, stream, [restream.Target("rt_1", stream["id"], "", "rtmp://127.0.0.1:9/live/key-12345678")])
    await sink.open()
    for packet_type, keyframe in ((0, True), (1, True)):  # SequenceStart, then a keyframe's CodedFrames
        body = ex_video("hvc1", packet_type, keyframe, b"\x00" * (3 if packet_type == 1 else 0) + b"\x01\x02")
        await sink.write(rtmp.VideoData(0, body, flv.parse_video_tag(body)))
    [push] = sink.pushes.values()
    await wait_for(lambda: push.state == "failing")
    assert push.attempts == 0 and "hvc1 cannot be pushed" in push.last_error
    assert restreamer.stats()[0]["last_error"] == push.last_error
    await sink.aclose()
    await wait_for(push.done.is_set)


# --- sans-IO parts ----------------------------------------------------------------------------


def test_backoff_doubles_to_its_ceiling_and_starts_over_after_a_stable_run():
    b = Backoff(max_s=30.0, start_s=1.0, stable_s=10.0)
    assert [b.after_run(None) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.after_run(3.0) == 30  # live, but briefly: a flapping target is not hammered
    assert b.after_run(10.0) == 1 and b.after_run(None) == 2
    assert Backoff(max_s=0.5).after_run(None) == 0.5


def test_progress_blocks_give_the_bytes_written():
    p = ProgressParser()
    assert p.feed(b"frame=1\ntotal_size=4") == []
    [block] = p.feed(b"8\nout_time_us=1\nprogress=continue\nframe=2\n")
    assert total_size(block) == 48 and block["progress"] == "continue"
    [end] = p.feed(b"total_size=N/A\nprogress=end\n")
    assert total_size(end) == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=10))
def test_progress_parser_takes_garbage(chunks):
    p = ProgressParser()
    for chunk in chunks:
        for block in p.feed(chunk):
            assert isinstance(block, dict) and total_size(block) >= 0
