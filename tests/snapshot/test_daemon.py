"""sender-snapshot against real stats files, a real store, real daemons and a real HTTP receiver."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import trio

from daemons.core import config as config_mod
from daemons.core import domain
from daemons.core.install import Install
from daemons.core.errors import Conflict
from daemons.core.stats import read_stats, stats_path
from daemons.runtime.store import StoreWorker
from daemons.core.domain.common import iso
from daemons.snapshot.daemon import SnapshotDaemon
from daemons.core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify_report
from tests.daemons.conftest import add_stream, ffmpeg_publish_cmd, make_install, needs_ffmpeg, run_publisher, start_ingest, wait_for
from tests.http.conftest import start_http
from tests.ops.test_notify import free_port

T0 = 1_700_000_000.0
KEY = b"k" * 32


def write_doc(state_dir, name: str, at: float, **payload) -> None:
    path = stats_path(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(json.dumps({"daemon": name, "updated_at": iso(at), **payload}))
    os.replace(tmp, path)


async def test_stats_that_stop_arriving_turn_degraded_then_stale(tmp_path, mock_clock, nursery):
    # Jumps only after 50 ms of real idleness: a store call running in a thread is not "idle",
    # so virtual time cannot race ahead of the daemon while it writes.
    mock_clock.autojump_threshold = 0.05
    inst = make_install(tmp_path / "var", **{"snapshot.interval_s": 1.0, "health.stats_stale_after_s": 3.0})
    wall = lambda: T0 + trio.current_time()  # noqa: E731 - the wall clock, on trio's MockClock
    writing = {"ingest": True, "http-0": True}

    async def daemons_writing_stats():
        while True:
            for name, on in writing.items():
                if on:
                    write_doc(inst.state_dir, name, wall(), generations=[], publishers=[], bytes_sent={}, viewers=[])
            await trio.sleep(1)

    nursery.start_soon(daemons_writing_stats)
    snap = SnapshotDaemon(inst, StoreWorker(inst.open_store()), wall_clock=wall)
    await nursery.start(snap.serve)
    status = lambda: snap.last.rows[0]["status"]  # noqa: E731
    await wait_for(lambda: status() == "healthy", timeout=30, interval=0.5)
    writing["ingest"] = False
    stopped = trio.current_time()
    await wait_for(lambda: status() == "degraded", timeout=30, interval=0.5)
    assert trio.current_time() - stopped > 3.0  # not before the threshold
    writing["http-0"] = False
    stopped = trio.current_time()
    await wait_for(lambda: status() == "stale", timeout=30, interval=0.5)
    assert trio.current_time() - stopped > 3.0
    with inst.open_store() as store:
        seen = [r["status"] for r in reversed(domain.snapshots.history(store, inst.config["node.id"]))]
        assert domain.snapshots.list_(store)[0]["status"] == "stale"
    assert seen[0] == "healthy" and seen[-1] == "stale"
    assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s] == ["healthy", "degraded", "stale"]


async def test_an_edges_snapshots_carry_the_time_of_its_newest_segment(tmp_path):
    """On an edge endpoint sender-snapshot reads sender-edge-fill's stats: its rows say when the
    edge's newest closed segment arrived (an edge's spool has no packager state.json)."""
    inst = make_install(tmp_path / "var", **{"node.id": "edge-1"})
    with inst.open_store() as store:
        domain.endpoints.upsert(store, "edge-1", type="tribes_edge", node_id="edge-1")
        stream = domain.streams.create(store, "show")
        gid = "gen_ba7816bf8f01cfea"
        with store.write() as db:  # as distribution.mirror writes a mirrored generation
            db["stream_generations"].insert({"id": gid, "stream_id": stream["id"], "status": "live", "mode": "edge_mirror",
                                             "started_at": iso(time.time() - 60), "live_at": None, "ended_at": None,
                                             "failure_reason": None, "discontinuity_count": 0, "updated_at": iso(time.time())})
    arrived = time.time() - 0.5
    write_doc(inst.state_dir, "edge-fill", time.time(), edges={}, counters={}, generations=[
        {"stream_id": stream["id"], "generation_id": gid, "live": True, "ended": False, "segment_lag": 0,
         "source": "origin", "switches": 0, "renditions": {}, "last_segment_at": iso(arrived)}])
    write_doc(inst.state_dir, "http-0", time.time(), bytes_sent={}, viewers=[], playlists=[])
    worker = StoreWorker(inst.open_store())
    try:
        built = await SnapshotDaemon(inst, worker).collect()
    finally:
        await worker.aclose()
    top, row = built.rows
    assert row["generation_id"] == gid and row["last_segment_at"] == top["last_segment_at"] == iso(arrived)
    with inst.open_store() as store:
        stored = store.one("SELECT * FROM endpoint_snapshots WHERE endpoint_id = 'edge-1' AND generation_id = ?", (gid,))
    assert stored["last_segment_at"] == iso(arrived) and stored["status"] == "healthy"


async def test_a_node_never_writes_another_nodes_endpoint(tmp_path, nursery):
    inst = make_install(tmp_path / "var", **{"node.id": "node-a", "snapshot.history_limit": 3})
    with inst.open_store() as store:
        domain.endpoints.upsert(store, "node-b", type="tribes_edge", node_id="node-b")
        domain.snapshots.record(store, {"endpoint_id": "node-b", "status": "healthy", "viewers": 7, "reporter": "node-b"}, history_limit=10)
        domain.endpoints.upsert(store, "taken", type="tribes_origin", node_id="node-b")
    snap = SnapshotDaemon(inst, StoreWorker(inst.open_store()))
    await nursery.start(snap.serve)  # creates node-a, owned by node-a
    for _ in range(4):
        await snap.collect()
    with inst.open_store() as store:
        me = domain.endpoints.get(store, "node-a")
        assert (me["type"], me["node_id"]) == ("tribes_origin", "node-a")
        rows = domain.snapshots.list_(store)
        assert {(r["endpoint_id"], r["reporter"]) for r in rows} == {("node-a", "node-a"), ("node-b", "node-b")}
        assert next(r for r in rows if r["endpoint_id"] == "node-b")["viewers"] == 7
        assert len(domain.snapshots.history(store, "node-a")) == 3  # bounded history
        with pytest.raises(Conflict):
            domain.snapshots.record(store, {"endpoint_id": "node-b", "status": "stale"}, history_limit=10, owner="node-a")
        # Reassigned to another node while running: the daemon stops writing it.
        domain.endpoints.upsert(store, "node-a", node_id="node-b")
        before = domain.snapshots.history(store, "node-a")
    assert await snap.collect() is None
    with inst.open_store() as store:
        assert domain.snapshots.history(store, "node-a") == before
    # A node whose node.id is another node's endpoint refuses to start.
    config_mod.write(inst.config.with_value("node.id", "taken"), tmp_path / "other.toml")  # same store, other node id
    other = Install.load(tmp_path / "other.toml")
    with pytest.raises(Conflict, match="belongs to node 'node-b'"):
        await SnapshotDaemon(other, StoreWorker(other.open_store())).serve()


class Receiver:
    """A control plane's report endpoint: real HTTP on 127.0.0.1, checking every signature."""

    def __init__(self, port: int):
        self.reports: list[dict] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify_report(KEY, self.headers[TIMESTAMP_HEADER], body, self.headers[SIGNATURE_HEADER], time.time(), 60)
                if ok:
                    receiver.reports.append(json.loads(body))
                else:
                    receiver.refused += 1
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_signature_checks_body_key_and_timestamp():
    body, ts = b'{"a":1}', str(int(T0))
    sig = sign(KEY, ts, body)
    assert verify_report(KEY, ts, body, sig, T0 + 10, 60)
    assert not verify_report(KEY, ts, b'{"a":2}', sig, T0, 60)  # tampered body
    assert not verify_report(b"x" * 32, ts, body, sig, T0, 60)  # other key
    assert not verify_report(KEY, ts, body, sig, T0 + 61, 60)  # replayed later
    assert not verify_report(KEY, str(int(T0) + 1), body, sig, T0, 60)  # timestamp changed
    assert not verify_report(KEY, None, body, sig, T0, 60) and not verify_report(KEY, "soon", body, sig, T0, 60)


async def test_reports_are_signed_queued_while_the_receiver_is_down_and_delivered_when_back(tmp_path, nursery):
    port = free_port()
    key_file = tmp_path / "report.key"
    key_file.write_bytes(KEY + b"\n")
    inst = make_install(tmp_path / "var", **{"control_plane.report_url": f"http://127.0.0.1:{port}/reports",
                                              "control_plane.signing_key_file": str(key_file)})
    snap = SnapshotDaemon(inst, StoreWorker(inst.open_store()))
    snap.reporter.backoff, snap.reporter.max_queue = (0.05, 0.2), 5
    await nursery.start(snap.serve)
    for _ in range(7):
        await snap.collect()  # never blocked by the missing receiver
    assert snap.reporter.sent == 0 and snap.reporter.last_error is not None
    assert snap.reporter.dropped == 3
    assert read_stats(inst.state_dir, "snapshot")["report"]["dropped"] == 3
    queued = [json.loads(b)["report_id"] for b in snap.reporter.queue]
    assert len(queued) == 5
    receiver = await trio.to_thread.run_sync(Receiver, port)
    try:
        await wait_for(lambda: len(receiver.reports) >= 5, timeout=10)
        assert [r["report_id"] for r in receiver.reports] == queued  # the newest five, in order
        await snap.collect()
        await wait_for(lambda: len(receiver.reports) == 6, timeout=10)
    finally:
        await trio.to_thread.run_sync(receiver.close)
    assert receiver.refused == 0
    last = receiver.reports[-1]
    assert last["node_id"] == inst.config["node.id"] and last["snapshots"][0]["endpoint_id"] == inst.config["node.id"]
    assert last["spool_free_bytes"] > 0 and set(last["sources"]) == {"ingest", "http-0"}


@needs_ffmpeg
async def test_snapshots_of_a_live_publish_count_viewers_and_measure_bitrate(tmp_path, nursery):
    viewers, kbps = 3, 800
    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0", "snapshot.interval_s": 0.5})
    s = add_stream(inst, "live")
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    snap = SnapshotDaemon(inst, StoreWorker(inst.open_store()))
    await nursery.start(snap.serve)
    extra = ["-b:v", f"{kbps}k", "-minrate", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps // 2}k", "-x264-params", "nal-hrd=cbr"]
    result = {}

    async def publish():
        result["p"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 14, extra=extra))

    nursery.start_soon(publish)
    async with http.client() as c:
        async def playback():
            r = await c.get("/api/streams/live/playback")
            return r.status_code == 200 and r.json()["status"] == "live" and r.json()
        info = await wait_for_async(playback, timeout=15)
        media = urlsplit(info["master_url"]).path.replace("master.m3u8", "source/index.m3u8")
        gid = media.split("/")[3]

        async def player(n: int):  # a player: reload the playlist, fetch each new whole segment
            got = set()
            while True:
                r = await c.get(media, params={"session": f"viewer-{n}"})
                for line in r.text.splitlines():
                    if line.endswith(".m4s") and line.count(".") == 1 and line not in got:
                        got.add(line)
                        await c.get(media.rsplit("/", 1)[0] + "/" + line.split("?")[0])
                await trio.sleep(0.5)

        async with trio.open_nursery() as players:
            for n in range(viewers):
                players.start_soon(player, n)

            def gen_row():
                return next((r for r in (snap.last.rows if snap.last else ()) if r["generation_id"] == gid), None)

            await wait_for(lambda: (r := gen_row()) and r["viewers"] == viewers and r["egress_bps"] > 0, timeout=20)
            # Past x264's start-up burst: sample the steady part of the publish.
            await wait_for(lambda: ingest.daemon.publishers[s.stream["id"]].stats.last_timestamp_ms >= 6000, timeout=15)
            samples = []
            for _ in range(3):  # the next collections, not a lucky one
                n = snap.collections
                await wait_for(lambda: snap.collections > n, timeout=5)
                samples.append(gen_row())
            players.cancel_scope.cancel()
    await ingest.publisher_left(s.stream["id"])
    await wait_for(lambda: "p" in result)  # the daemon may see the unpublish before ffmpeg has exited
    assert result["p"].returncode == 0, result["p"].stderr
    # The publisher's own bitrate: what it sent, recorded as FLV (rtmp.record), over its 14 s.
    flv = next((inst.spool_root / "streams" / s.stream["id"] / gid / "ingest").glob("*.flv"))
    expected = flv.stat().st_size * 8 / 14
    for row in samples:
        assert row["viewers"] == viewers and row["status"] == "healthy", row
        assert abs(row["ingress_bps"] - expected) <= 0.1 * expected, (row["ingress_bps"], expected)
        assert row["playlist_age_s"] is not None and row["playlist_age_s"] < 3
        assert row["last_segment_at"] is not None and row["segment_lag"] == 0
    top = snap.last.rows[0]
    assert top["viewers"] == viewers and top["ingress_bps"] >= 0
    with inst.open_store() as store:
        assert {r["generation_id"] for r in domain.snapshots.list_(store)} == {"", gid}


async def wait_for_async(predicate, timeout: float = 10.0, interval: float = 0.1):
    with trio.fail_after(timeout):
        while True:
            value = await predicate()
            if value:
                return value
            await trio.sleep(interval)
