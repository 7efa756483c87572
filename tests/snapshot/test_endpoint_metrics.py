"""Endpoint snapshots at /metrics (gauges and 1-minute rollups) of a real sender-http, and a real
VictoriaMetrics scraping it with the shipped scrape config."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from daemons.core import domain
from daemons.core.stats import write_stats
from daemons.core.domain.common import iso
from tests.http.conftest import make_http_install, start_http
from tests.ops.test_notify import free_port

REPO = Path(__file__).resolve().parents[2]
SCRAPE_CONFIG = REPO / "config" / "victoria-metrics-scrape.yml"


def samples(text: str) -> dict[tuple, float]:
    """{(name, (label pairs sorted)): value} of a Prometheus exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def record_history(inst, endpoint_id: str, viewers: list[int], *, status: str = "healthy") -> None:
    now = time.time()
    with inst.open_store() as store:
        for i, v in enumerate(viewers):  # oldest first, the last one now
            at = iso(now - (len(viewers) - 1 - i) * 5)
            domain.snapshots.record_external(store, endpoint_id, [{
                "status": status, "viewers": v, "ingress_bps": 1000 * v, "egress_bps": 2000 * v,
                "playlist_age_s": 0.5 + i, "segment_lag": i, "observed_at": at}], history_limit=100)


async def scrape(client: httpx.AsyncClient) -> dict:
    r = await client.get("/metrics")
    assert r.status_code == 200
    return samples(r.text)


async def test_metrics_show_endpoint_gauges_rollups_and_report_counters(nursery, tmp_path):
    inst = make_http_install(tmp_path / "var")
    with inst.open_store() as store:
        domain.endpoints.upsert(store, "mux1", type="external_origin")
        domain.endpoints.upsert(store, "gone", type="external_edge")
    record_history(inst, "mux1", [10, 40, 25])
    record_history(inst, "gone", [3])
    with inst.open_store() as store:
        domain.endpoints.delete(store, "gone")
        # an hour-old row is history, not part of the last minute
        store.db["endpoint_history"].insert({"endpoint_id": "mux1", "generation_id": "", "observed_at": iso(time.time() - 3600),
                                             "reporter": "mux1", "status": "healthy", "viewers": 9999})
    write_stats(inst.state_dir, "snapshot", {"endpoint_id": "node-1", "report": {"url": "x", "queued": 3, "sent": 17, "dropped": 2, "rejected": 1}})
    http = await start_http(nursery, inst)
    async with http.client() as c:
        m = await scrape(c)
    ep = (("endpoint", "mux1"),)
    assert m[("sender_endpoint_viewers", ep)] == 25
    assert m[("sender_endpoint_ingress_bits", ep)] == 25_000
    assert m[("sender_endpoint_egress_bits", ep)] == 50_000
    assert m[("sender_endpoint_playlist_age_seconds", ep)] == 2.5
    assert m[("sender_endpoint_segment_lag", ep)] == 2
    assert m[("sender_endpoint_status", (("endpoint", "mux1"), ("status", "healthy")))] == 1
    assert m[("sender_endpoint_status", (("endpoint", "mux1"), ("status", "stale")))] == 0
    assert 0 <= m[("sender_endpoint_snapshot_age_seconds", ep)] < 60
    stat = lambda name, s: m[(name, (("endpoint", "mux1"), ("stat", s)))]  # noqa: E731
    assert (stat("sender_endpoint_viewers_1m", "min"), stat("sender_endpoint_viewers_1m", "avg"), stat("sender_endpoint_viewers_1m", "max")) == (10, 25, 40)
    assert stat("sender_endpoint_egress_bits_1m", "max") == 80_000
    assert stat("sender_endpoint_segment_lag_1m", "avg") == 1
    assert not any(dict(labels).get("endpoint") == "gone" for _, labels in m)  # deleted endpoints leave /metrics
    assert m[("sender_reports_sent_total", ())] == 17
    assert m[("sender_reports_dropped_total", ())] == 2
    assert m[("sender_reports_rejected_total", ())] == 1
    assert m[("sender_reports_queued", ())] == 3


async def test_a_new_report_shows_up_at_metrics(nursery, tmp_path):
    inst = make_http_install(tmp_path / "var")
    with inst.open_store() as store:
        domain.endpoints.upsert(store, "mux1", type="external_origin")
        token = domain.endpoints.mint_report_token(store, inst.secret(), "mux1")
    http = await start_http(nursery, inst)
    async with http.client() as c:
        assert not any(name == "sender_endpoint_viewers" for name, _ in await scrape(c))
        r = await c.post("/api/endpoints/mux1/snapshots", json={"status": "overloaded", "viewers": 5000},
                         headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 202
        key = ("sender_endpoint_status", (("endpoint", "mux1"), ("status", "overloaded")))

        async def seen():
            return (await scrape(c)).get(key) == 1

        with trio.fail_after(10):
            while not await seen():  # the cache is at most a second old
                await trio.sleep(0.2)
        assert (await scrape(c))[("sender_endpoint_viewers", (("endpoint", "mux1"),))] == 5000


@pytest.mark.skipif(shutil.which("victoria-metrics") is None,
                    reason="the victoria-metrics binary is not installed (apt-get install victoria-metrics; .ci/bootstrap --test does)")
async def test_victoria_metrics_scrapes_metrics_and_answers_the_viewer_gauge(nursery, tmp_path):
    inst = make_http_install(tmp_path / "var")
    with inst.open_store() as store:
        domain.endpoints.upsert(store, "mux1", type="external_origin")
        token = domain.endpoints.mint_report_token(store, inst.secret(), "mux1")
    http = await start_http(nursery, inst)
    async with http.client() as c:
        r = await c.post("/api/endpoints/mux1/snapshots", json={"status": "healthy", "viewers": 42},
                         headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 202

    # The shipped scrape config, pointed at this sender-http and scraping every second.
    text = SCRAPE_CONFIG.read_text()
    assert '"127.0.0.1:8080"' in text and "scrape_interval: 5s" in text
    config = tmp_path / "scrape.yml"
    config.write_text(text.replace('"127.0.0.1:8080"', f'"{http.host}:{http.port}"').replace("scrape_interval: 5s", "scrape_interval: 1s")
                      .replace("scrape_timeout: 4s", "scrape_timeout: 1s"))
    port = free_port()
    log = tmp_path / "victoria-metrics.log"
    with log.open("wb") as out:  # the child keeps its own descriptor
        vm = subprocess.Popen(
            ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={tmp_path / 'vm'}",
             f"-promscrape.config={config}", "-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=ERROR"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as vmc:
            async def viewers():
                if vm.poll() is not None:
                    raise AssertionError(f"victoria-metrics exited {vm.returncode}: {log.read_text()}")
                try:
                    r = await vmc.get("/api/v1/query", params={"query": 'sender_endpoint_viewers{endpoint="mux1"}'})
                except httpx.HTTPError:
                    return None  # not listening yet
                result = r.json()["data"]["result"] if r.status_code == 200 else []
                return result[0] if result else None

            with trio.fail_after(60):
                while (found := await viewers()) is None:
                    await trio.sleep(0.5)
        assert found["value"][1] == "42"
        assert found["metric"]["job"] == "sender" and found["metric"]["node"] == "node-1"
    finally:
        vm.terminate()
        try:
            vm.wait(timeout=10)
        except subprocess.TimeoutExpired:
            vm.kill()
            vm.wait()
