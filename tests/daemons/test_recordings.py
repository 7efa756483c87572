"""Recordings with real parts (issue 17): ffmpeg publishes into a real ingest daemon with
recording on, a real sender-http serves the replays, ffprobe and two independent playlist parsers
read them.

- a 40 s broadcast: while live the DVR playlist (EVENT) lists the first segment although the live
  playlist's window has moved on (and keeps its LL-HLS tags); once ended the VOD playlist lists
  every segment from the first, their durations add up to the publish (± one segment), ffprobe
  reads it end to end over HTTP; cache headers; hls-parser (strict) and m3u8 accept every replay
  playlist and master;
- a private stream's replays: 403 without a token, its token carried into every URI;
- retention by size (oldest first, never a live one) and by age, applied by sender-ingest.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timezone

import httpx
import trio

from daemons.core import domain
from daemons.media.hls import parse_master_playlist, parse_media_playlist
from tests.conftest import SENDER
from tests.daemons.conftest import (
    FFPROBE,
    add_stream,
    ffmpeg_publish_cmd,
    ffprobe,
    make_install,
    needs_ffmpeg,
    run_publisher,
    start_ingest,
    wait_for,
)
from tests.http.conftest import start_http
from tests.http.test_management import API, add_token
from tests.judges import assert_every_judge_accepts, hls_parser_strict, needs_hls_parser

pytestmark = needs_ffmpeg

PUBLISH_S = 40


def recording_install(root, **overrides):
    return make_install(root, **{"recording.enabled": True, "http.listen": "127.0.0.1:0", "rtmp.record": False, **overrides})


def fast_publish_cmd(url: str, seconds: float) -> list[str]:
    """A publisher faster than real time (no -re): `seconds` of media in a fraction of that."""
    return [c for c in ffmpeg_publish_cmd(url, seconds) if c != "-re"]


async def record_fast(ingest, s, seconds: float, slug: str = "demo"):
    """A whole broadcast published faster than real time, then stopped: its generation directory
    once the playlists are closed."""
    await run_publisher(fast_publish_cmd(ingest.url(s.key), seconds))
    await ingest.publisher_left(s.stream["id"])  # its sinks closed: every segment written
    with ingest.install.open_store() as store:
        generation = domain.streams.stop(store, slug)
    gen_dir = ingest.install.spool_root / "streams" / s.stream["id"] / generation["id"]
    await wait_for(lambda: json.loads((gen_dir / "generation.json").read_text())["ended"], timeout=10)
    return gen_dir


async def ffprobe_url(url: str) -> dict:
    """ffprobe reading a playlist and every segment it lists (packets counted), as a subprocess
    that does not block the loop the daemons run on."""
    done = await trio.run_process(
        [FFPROBE, "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of", "json", url],
        capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


async def get_text(client: httpx.AsyncClient, url: str, **params) -> httpx.Response:
    r = await client.get(url, params=params)
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r


@needs_hls_parser
async def test_a_recorded_broadcast_has_a_dvr_playlist_while_live_and_a_vod_once_ended(nursery, tmp_path):
    # A five-segment live window: the live playlist moves on while the DVR playlist keeps the start.
    inst = recording_install(tmp_path / "var", **{"spool.live_window_segments": 5})
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst)
    await http.daemon.ctx.directory.refresh()
    published = trio.Event()

    async def publish():
        await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), PUBLISH_S), timeout=PUBLISH_S + 30)
        published.set()

    nursery.start_soon(publish)
    async with http.client() as client:
        doc = {}

        async def master_url():
            doc.update((await client.get("/api/streams/demo/playback")).json())
            return doc["master_url"]

        with trio.fail_after(20):
            while not await master_url():
                await trio.sleep(0.1)
        gen_dir = ingest.install.spool_root / "streams" / s.stream["id"] / doc["generation_id"]
        with inst.open_store() as store:
            assert domain.generations.get(store, doc["generation_id"])["recorded"] is True
        base = doc["master_url"].rsplit("/", 1)[0]

        # While live, once the live window has moved past the first segment.
        def window_moved():
            try:
                return parse_media_playlist((gen_dir / "source" / "index.m3u8").read_text()).media_sequence > 0
            except (FileNotFoundError, ValueError):
                return False

        await wait_for(window_moved, timeout=30)
        live = (await get_text(client, f"{base}/source/index.m3u8")).text
        dvr = await get_text(client, f"{base}/source/dvr.m3u8")
        master_dvr = await get_text(client, f"{base}/master-dvr.m3u8")
        assert dvr.headers["cache-control"] == master_dvr.headers["cache-control"] == "public, max-age=1"
        live_playlist, dvr_playlist = parse_media_playlist(live), parse_media_playlist(dvr.text)
        assert live_playlist.media_sequence > 0 and "#EXT-X-PART:" in live and "#EXT-X-PRELOAD-HINT" in live
        assert "CAN-BLOCK-RELOAD=YES" in live
        assert dvr_playlist.playlist_type == "EVENT" and not dvr_playlist.ended
        assert dvr_playlist.media_sequence == 0 and dvr_playlist.segments[0].msn == 0
        # LL-HLS at its live edge: the live playlist's parts, preload hint and blocking reloads.
        assert "#EXT-X-PART-INF:" in dvr.text and "#EXT-X-PART:" in dvr.text and "#EXT-X-PRELOAD-HINT" in dvr.text
        assert "CAN-BLOCK-RELOAD=YES" in dvr.text and "CAN-SKIP-UNTIL" not in dvr.text
        assert not any(seg.parts for seg in dvr_playlist.segments[:-3])  # older segments are whole
        # A blocking reload of the DVR playlist for the part after the newest one it lists is
        # answered when that part exists, and lists it.
        msn, nxt = dvr_playlist.next_msn, len(dvr_playlist.partial_parts)
        assert not dvr_playlist.contains(msn, nxt)
        with trio.fail_after(3 * dvr_playlist.target_duration):
            held = await client.get(f"{base}/source/dvr.m3u8", params={"_HLS_msn": msn, "_HLS_part": nxt})
        assert held.status_code == 200 and parse_media_playlist(held.text).contains(msn, nxt), held.text
        assert held.headers["cache-control"] == f"public, max-age={3 * dvr_playlist.target_duration}"
        assert (await client.get(f"{base}/source/dvr.m3u8", params={"_HLS_msn": msn, "_HLS_skip": "YES"})).status_code == 400
        assert (await client.get(f"{base}/source/0.m4s")).status_code == 200  # out of the live window, kept
        assert [v.uri for v in parse_master_playlist(master_dvr.text).variants] == ["source/dvr.m3u8"]
        assert "#EXT-X-START:TIME-OFFSET=0" in master_dvr.text  # a replay starts at the start, not the live edge
        assert (await client.get(f"{base}/master-vod.m3u8")).status_code == 404  # not before the end
        live_texts = [live, dvr.text, held.text, master_dvr.text]

        with trio.fail_after(PUBLISH_S + 30):
            await published.wait()
        with inst.open_store() as store:
            domain.streams.stop(store, "demo")
        await wait_for(lambda: (gen_dir / "master-vod.m3u8").exists(), timeout=10)

        vod = await get_text(client, f"{base}/source/vod.m3u8")
        master_vod = await get_text(client, f"{base}/master-vod.m3u8")
        dvr_ended = await get_text(client, f"{base}/source/dvr.m3u8")
        assert vod.headers["cache-control"] == master_vod.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert dvr_ended.headers["cache-control"] == "public, max-age=3600"
        assert (await get_text(client, f"{base}/master-dvr.m3u8")).headers["cache-control"] == "public, max-age=3600"
        playlist = parse_media_playlist(vod.text)
        assert playlist.playlist_type == "VOD" and playlist.ended
        assert [seg.msn for seg in playlist.segments] == list(range(len(playlist.segments)))  # every one, from the first
        total = sum(seg.duration for seg in playlist.segments)
        assert abs(total - PUBLISH_S) <= playlist.target_duration, total
        for seg in playlist.segments:
            assert (gen_dir / "source" / seg.uri).is_file()
        ended_dvr = parse_media_playlist(dvr_ended.text)
        assert ended_dvr.ended and [seg.uri for seg in ended_dvr.segments] == [seg.uri for seg in playlist.segments]
        assert [v.uri for v in parse_master_playlist(master_vod.text).variants] == ["source/vod.m3u8"]

        # ffprobe reads the whole VOD over HTTP: every segment's packets, for the whole duration.
        probe = await ffprobe_url(f"{base}/master-vod.m3u8")
        video = next(st for st in probe["streams"] if st["codec_type"] == "video")
        audio = next(st for st in probe["streams"] if st["codec_type"] == "audio")
        assert abs(int(video["nb_read_packets"]) - 25 * total) <= 25, video["nb_read_packets"]
        assert abs(int(audio["nb_read_packets"]) - 44100 / 1024 * total) <= 50, audio["nb_read_packets"]
        assert abs(float(probe["format"]["duration"]) - total) <= 1.0, probe["format"]["duration"]

    assert_every_judge_accepts(live_texts + [vod.text, master_vod.text, dvr_ended.text])
    judged = hls_parser_strict([vod.text, dvr.text, held.text])
    assert judged[0]["segments"] == len(playlist.segments) and judged[0]["ended"] and not judged[1]["ended"]
    assert judged[1]["segments"] == len(dvr_playlist.segments) and not judged[2]["ended"]


async def test_a_private_streams_replays_need_its_token_and_carry_it(nursery, tmp_path):
    inst = recording_install(tmp_path / "var")
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst, visibility="private")
    await http.daemon.ctx.directory.refresh()
    gen_dir = await record_fast(ingest, s, 8)
    await wait_for(lambda: (gen_dir / "master-vod.m3u8").exists())
    token = domain.playback.mint_token(inst.playback_secret(), s.stream["id"], 600)["token"]
    base = f"/hls/{s.stream['id']}/{gen_dir.name}"
    async with http.client() as client:
        for name in ("master-vod.m3u8", "master-dvr.m3u8", "source/vod.m3u8", "source/dvr.m3u8"):
            assert (await client.get(f"{base}/{name}")).status_code == 403
            r = await get_text(client, f"{base}/{name}", token=token)
            assert r.headers["cache-control"].startswith("private, ")
            uris = [line for line in r.text.splitlines() if line and not line.startswith("#")]
            uris += re.findall(r'URI="([^"]*)"', r.text)
            assert uris and all(u.endswith(f"?token={token}") for u in uris), r.text
        # What the VOD lists is served with the token (and only with it).
        first = parse_media_playlist((await get_text(client, f"{base}/source/vod.m3u8", token=token)).text).segments[0]
        assert (await client.get(f"{base}/source/{first.uri.split('?')[0]}")).status_code == 403
        assert (await client.get(f"{base}/source/{first.uri}")).status_code == 200


async def test_an_unrecorded_generation_has_no_replays(nursery, tmp_path):
    inst = recording_install(tmp_path / "var", **{"recording.enabled": False})
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst)
    await http.daemon.ctx.directory.refresh()
    gen_dir = await record_fast(ingest, s, 8)
    with inst.open_store() as store:
        assert domain.generations.get(store, gen_dir.name)["recorded"] is False
    assert "#EXT-X-ENDLIST" in (gen_dir / "source" / "index.m3u8").read_text()
    assert not list(gen_dir.glob("**/dvr.m3u8")) and not list(gen_dir.glob("**/vod.m3u8"))
    async with http.client() as client:
        for name in ("master-vod.m3u8", "master-dvr.m3u8", "source/vod.m3u8", "source/dvr.m3u8"):
            r = await client.get(f"/hls/{s.stream['id']}/{gen_dir.name}/{name}")
            assert r.status_code == 404 and r.headers["cache-control"] == "no-store"


def with_config(inst, **values):
    """The install's config file with these values (read by the next daemon started on it)."""
    from daemons.core import config as config_mod
    from daemons.core.install import Install

    cfg = inst.config
    for key, value in values.items():
        cfg = cfg.with_value(key, value)
    config_mod.write(cfg, inst.config.path)
    return Install.load(inst.config.path)


async def test_retention_removes_the_oldest_recording_first_over_max_bytes_never_a_live_one(nursery, tmp_path):
    # Three ended recordings, oldest first, made by a daemon without a size limit.
    inst = recording_install(tmp_path / "var", **{"spool.ended_retention": "1s"})
    first = await start_ingest(nursery, inst)
    s = add_stream(inst)
    a, b, c = [await record_fast(first, s, 6) for _ in range(3)]
    first.cancel.cancel()
    sizes = {d.name: domain.recordings.disk_usage(d) for d in (a, b, c)}
    # Room for b and c and one byte: a, the oldest, goes at once; then, as a live recording grows,
    # b, then c — and never the live one.
    inst = with_config(inst, **{"recording.max_bytes": sizes[b.name] + sizes[c.name] + 1})
    ingest = await start_ingest(nursery, inst)
    await wait_for(lambda: not a.exists(), timeout=5)
    assert b.exists() and c.exists()
    assert ingest.daemon.recordings == {"count": 2, "bytes": sizes[b.name] + sizes[c.name]}
    nursery.start_soon(run_publisher, ffmpeg_publish_cmd(ingest.url(s.key), 60), 90)
    live = await wait_for(lambda: next(iter(ingest.daemon.pipelines.values()), None), timeout=15)
    gone = []

    def removed_in_order():
        for d in (b, c):
            if not d.exists() and d.name not in gone:
                gone.append(d.name)
        assert live.directory.exists()  # the live recording: never removed
        return len(gone) == 2

    await wait_for(removed_in_order, timeout=40, interval=0.1)
    assert gone == [b.name, c.name]
    with inst.open_store() as store:
        assert domain.generations.get(store, live.generation_id)["status"] == "live"
        domain.streams.stop(store, "demo")


async def test_retention_removes_a_recording_past_recording_keep_never_a_live_one(nursery, tmp_path):
    inst = recording_install(tmp_path / "var", **{"recording.keep": "3s"})
    ingest = await start_ingest(nursery, inst)
    s = add_stream(inst)
    other = add_stream(inst, "other")
    # A live recording first: by the time the ended one is past recording.keep, it is older still.
    nursery.start_soon(run_publisher, ffmpeg_publish_cmd(ingest.url(other.key), 30), 60)
    live = await wait_for(lambda: next((p for p in ingest.daemon.pipelines.values() if p.stream["slug"] == "other"), None),
                          timeout=15)
    ended = await record_fast(ingest, s, 6)
    with inst.open_store() as store:
        ended_at = domain.recordings.get(store, inst.spool_root, ended.name)["ended_at"]
    await wait_for(lambda: not ended.exists(), timeout=10)
    now = datetime.now(timezone.utc)
    assert (now - _time(ended_at)).total_seconds() >= 3.0  # not before recording.keep
    with inst.open_store() as store:
        started = domain.generations.get(store, live.generation_id)["started_at"]
        assert (now - _time(started)).total_seconds() > 3.0
        domain.streams.stop(store, "other")
    assert live.directory.exists()  # older than recording.keep, but live: kept


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def sender_cli(inst, *args: str) -> subprocess.CompletedProcess:
    """The real `sender` command on this install, without blocking the daemons' loop (text out)."""
    done = await trio.run_process([str(SENDER), "--config", str(inst.config.path), *args], capture_stdout=True,
                                  capture_stderr=True, check=False, stdin=subprocess.DEVNULL)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


async def test_the_cli_and_the_management_api_list_show_export_and_delete_recordings(nursery, tmp_path):
    inst = recording_install(tmp_path / "var", **{"rtmp.reconnect_grace": "never"})
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst)
    # A recording with a reconnect in it (two publishes, one broadcast: a discontinuity), and one more.
    await run_publisher(fast_publish_cmd(ingest.url(s.key), 6))
    await ingest.publisher_left(s.stream["id"])
    first = await record_fast(ingest, s, 6)
    second = await record_fast(ingest, s, 4)

    listed = await sender_cli(inst, "recording", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["generation_id"] for r in rows] == [second.name, first.name]
    shown = await sender_cli(inst, "recording", "show", first.name, "--json")
    row = json.loads(shown.stdout)
    assert row["complete"] and row["discontinuities"] == 1 and abs(row["duration_s"] - 12) <= 2 * 2
    assert row["replay_url"] == f"{inst.config['node.public_base_url'].rstrip('/')}/watch/demo/{first.name}"

    # Export: one MP4, both publishes, the whole duration.
    out = tmp_path / "first.mp4"
    exported = await sender_cli(inst, "recording", "export", first.name, "--mp4", str(out), "--json")
    assert exported.returncode == 0, exported.stderr
    probe = ffprobe(out)
    assert probe["format"]["format_name"].startswith("mov,mp4")
    assert abs(float(probe["format"]["duration"]) - row["duration_s"]) <= 0.5, (probe["format"]["duration"], row["duration_s"])
    video = next(st for st in probe["streams"] if st["codec_type"] == "video")
    assert abs(int(video["nb_read_frames"]) - 25 * row["duration_s"]) <= 25
    again = await sender_cli(inst, "recording", "export", first.name, "--mp4", str(out))
    assert again.returncode == 1 and "exists" in again.stderr  # never overwritten without --force

    # The management API: the same list, and a delete (a live one is a conflict).
    token = add_token(inst)
    nursery.start_soon(run_publisher, ffmpeg_publish_cmd(ingest.url(s.key), 30), 60)
    live = await wait_for(lambda: next(iter(ingest.daemon.pipelines.values()), None), timeout=15)
    async with http.client() as client:
        api = API(client, token)
        result = await api.ok("recording.list", stream="demo")
        assert [r["generation_id"] for r in result["recordings"]][1:] == [second.name, first.name]
        assert result["recordings"][0]["generation_id"] == live.generation_id and result["recordings"][0]["active"]
        await api.fails("recording.delete", {"generation_id": live.generation_id}, 409, -32009, "generation_id")
        deleted = await api.ok("recording.delete", generation_id=second.name)
        assert deleted["deleted"] and not second.exists()
        await api.fails("recording.delete", {"generation_id": second.name}, 404, -32004, "generation_id")
        # A stream's own setting over the API: its next broadcasts (null: the node's recording.enabled).
        assert (await api.ok("stream.update", stream="demo", recording=False))["recording"] is False
        assert (await api.ok("stream.create", slug="later", recording=True))["recording"] is True
        await api.fails("stream.update", {"stream": "demo", "recording": "yes"}, 400, -32602, "recording")
        assert (await api.ok("stream.update", stream="demo", recording=None))["recording"] is None
    gone = await sender_cli(inst, "recording", "delete", first.name)
    assert gone.returncode == 0 and not first.exists(), gone.stderr
    with inst.open_store() as store:
        domain.streams.stop(store, "demo")


async def test_the_disk_recordings_take_in_sender_status_doctor_and_metrics(nursery, tmp_path):
    inst = recording_install(tmp_path / "var", **{"spool.ended_retention": "1s"})  # the retention loop: every 0.5 s
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst)
    for _ in range(2):
        await record_fast(ingest, s, 4)
    with inst.open_store() as store:
        usage = domain.recordings.usage(store, inst.spool_root)
    assert usage["count"] == 2 and usage["bytes"] > 100_000
    await wait_for(lambda: ingest.daemon.recordings == usage, timeout=5)

    async def metric(name: str) -> float | None:
        async with http.client() as client:
            text = (await client.get("/metrics")).text
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(found.group(1)) if found else None

    with trio.fail_after(10):  # once sender-ingest's stats file carries the retention loop's count
        while await metric("sender_recordings_bytes") != usage["bytes"]:
            await trio.sleep(0.2)
    assert await metric("sender_recordings") == 2
    status = await sender_cli(inst, "status", "--json")
    assert json.loads(status.stdout)["recordings"] == usage
    doctor = await sender_cli(inst, "doctor", "--json")
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "recordings")
    # Recording on with no size limit: worth a warning, with the figure.
    assert check["status"] == "warn" and check["detail"].startswith("2 recording(s), ") and "no size limit" in check["detail"]
    human = await sender_cli(inst, "status")
    assert f"2, {usage['bytes'] / 2**20:.1f} MiB" in human.stdout
