"""External origins that report nothing are probed through their playlist: a real sender-http
plays the external origin here (any HLS server would do), on 127.0.0.1."""

from __future__ import annotations

import time

from daemons.core import domain
from daemons.runtime.store import StoreWorker
from daemons.snapshot.daemon import SnapshotDaemon
from tests.daemons.test_up import free_port
from tests.http.conftest import make_http_install, start_http
from tests.http.spool_writer import GenerationWriter


async def test_silent_external_origin_is_probed_healthy_stale_or_offline(tmp_path, nursery):
    origin_inst = make_http_install(tmp_path / "origin")
    with origin_inst.open_store() as store:
        stream = domain.streams.create(store, "mux")
    gen = GenerationWriter(origin_inst.spool_root, origin_inst.state_dir, stream["id"])
    gen.add_segments(2)
    origin = await start_http(nursery, origin_inst)
    await origin.daemon.ctx.directory.refresh()

    inst = make_http_install(tmp_path / "node", **{"health.max_playlist_age_s": 5.0})
    with inst.open_store() as store:
        domain.endpoints.upsert(store, "mux", type="external_origin", public_base_url=f"{origin.base_url}{gen.url('master.m3u8', rendition=False)}")
        domain.endpoints.upsert(store, "dark", type="external_origin", public_base_url=f"http://127.0.0.1:{free_port()}/live.m3u8")
        domain.endpoints.upsert(store, "talker", type="external_origin", public_base_url=f"{origin.base_url}{gen.url()}")
        domain.snapshots.record(store, {"endpoint_id": "talker", "reporter": "talker", "status": "healthy"}, history_limit=10)
    offset = {"s": 0.0}
    snap = SnapshotDaemon(inst, StoreWorker(inst.open_store()), wall_clock=lambda: time.time() + offset["s"])

    rows = {r["endpoint_id"]: r for r in await snap.probe_external()}
    assert set(rows) == {"mux", "dark"}  # "talker" reports for itself: left alone
    assert rows["mux"]["status"] == "healthy" and 0 <= rows["mux"]["playlist_age_s"] < 5
    assert rows["mux"]["reporter"] == f"probe:{inst.config['node.id']}"
    assert rows["dark"]["status"] == "offline"

    offset["s"] = 30.0  # the origin's playlist has not changed for 30 s (and "talker" went quiet)
    rows = {r["endpoint_id"]: r for r in await snap.probe_external()}
    assert rows["mux"]["status"] == "stale" and rows["mux"]["playlist_age_s"] >= 30
    assert rows["talker"]["status"] == "stale"
    with inst.open_store() as store:
        assert domain.snapshots.list_(store, "mux")[0]["status"] == "stale"
