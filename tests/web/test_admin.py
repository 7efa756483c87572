"""/admin over real HTTP: sign-in, cookie flags, CSRF on every form, and — in headless Chromium —
creating a stream and a key, publishing with that key, and seeing it live; each stream's card
charting its last hour from snapshot history."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from playwright.sync_api import sync_playwright

from daemons.core import domain
from daemons.core.domain import mgmt_tokens
from daemons.runtime.store import StoreWorker
from daemons.core.domain.common import iso
from daemons.snapshot.daemon import SnapshotDaemon, ensure_node_endpoint
from tests.daemons.conftest import (add_stream, ffmpeg_publish_cmd, make_install, needs_ffmpeg, run_publisher,
                                    start_ingest, wait_for)
from tests.http.conftest import start_http
from tests.http.test_management import add_token
from tests.web.test_watch_page import CHROMIUM, CHROMIUM_ARGS


def login_csrf(page_html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page_html).group(1)


async def signed_in(c: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await c.get("/admin")
    return await c.post("/admin/login", data={"token": token, "csrf": login_csrf(form.text)})


async def test_sign_in_sets_a_strict_session_cookie_and_wrong_tokens_fail(http):
    token = add_token(http.install)
    async with http.client() as c:
        page = await c.get("/admin")
        assert page.status_code == 200 and "Management token" in page.text
        assert page.headers["cache-control"] == "no-store" and "script-src 'self'" in page.headers["content-security-policy"]
        wrong = await c.post("/admin/login", data={"token": "mt0123456789_" + "A" * 32, "csrf": login_csrf(page.text)})
        assert wrong.status_code == 403 and "not valid" in wrong.text and "sender_admin" not in c.cookies
        right = await signed_in(c, token)
        assert right.status_code == 303 and right.headers["location"] == "/admin"
        cookie = right.headers["set-cookie"]
        assert "sender_admin=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
        home = await c.get("/admin")
        assert "Sign out" in home.text and "Create stream" in home.text


async def test_the_sign_in_form_itself_needs_its_csrf_cookie(http):
    token = add_token(http.install)
    async with http.client() as c:
        r = await c.post("/admin/login", data={"token": token, "csrf": "made-up"})
    assert r.status_code == 403 and "sender_admin" not in r.headers.get("set-cookie", "")


async def test_forms_refuse_requests_without_the_csrf_token(http):
    token = add_token(http.install)
    async with http.client() as c:
        await signed_in(c, token)
        no_csrf = await c.post("/admin/streams", data={"slug": "sneaky"})
        wrong_csrf = await c.post("/admin/streams", data={"slug": "sneaky", "csrf": "x" * 32})
        csrf = login_csrf((await c.get("/admin")).text)
        made = await c.post("/admin/streams", data={"slug": "fine", "csrf": csrf})
    assert no_csrf.status_code == wrong_csrf.status_code == 403
    assert made.status_code == 303
    with http.install.open_store() as store:
        assert [s["slug"] for s in domain.streams.list_(store)] == ["fine"]


async def test_a_revoked_token_ends_the_session_and_sign_out_works(http):
    token = add_token(http.install)
    async with http.client() as c:
        await signed_in(c, token)
        csrf = login_csrf((await c.get("/admin")).text)
        out = await c.post("/admin/logout", data={"csrf": csrf})
        assert out.status_code == 303 and "Management token" in (await c.get("/admin")).text
        await signed_in(c, token)
        assert "Sign out" in (await c.get("/admin")).text
        from daemons.core import config as config_mod

        cfg = config_mod.load(http.install.config.path)
        kept, _ = mgmt_tokens.revoke(list(cfg["management.token_verifiers"]), token.split("_", 1)[0])
        config_mod.write(cfg.with_value("management.token_verifiers", kept), cfg.path)
        assert "Management token" in (await c.get("/admin")).text  # the session went with its token
        refused = await c.post("/admin/streams", data={"slug": "late", "csrf": csrf})
    assert refused.status_code == 401


@needs_ffmpeg
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: Debian's chromium package (run .ci/bootstrap --test)")
async def test_in_the_browser_create_a_stream_and_a_key_publish_and_see_it_live(nursery, tmp_path, record_property):
    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0"})
    token = add_token(inst)
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    got: dict = {}
    published = threading.Event()
    shot = tmp_path / "admin.png"

    def browse():
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=20_000)
            try:
                page = browser.new_page()
                page.goto(f"{http.base_url}/admin")
                page.fill("#token", "mt0123456789_" + "B" * 32)
                page.click("button[type=submit]")
                got["wrong"] = page.inner_text("[role=alert]")
                page.fill("#token", token)
                page.click("button[type=submit]")
                page.fill("input[name=slug]", "studio")
                page.fill("input[name=title]", "Studio A")
                page.click("text=Create stream")
                page.select_option("select[name=stream]", "studio")
                page.click("text=Create key")
                got["server"] = page.inner_text("#obs-server")
                got["key"] = page.inner_text("#stream-key")  # last: the test waits for it
                page.click("text=Back to the admin page")
                published.wait(60)
                for _ in range(100):  # the page is server-rendered: reload until the state shows
                    page.goto(f"{http.base_url}/admin")
                    state = page.get_attribute('[data-stream="studio"] .badge', "data-status")
                    if state == "live" and "Mb/s" in page.inner_text('[data-stream="studio"] .facts'):
                        break
                    page.wait_for_timeout(100)
                got["state"] = state
                got["row"] = page.inner_text('[data-stream="studio"]')
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()

    async with trio.open_nursery() as n:
        n.start_soon(trio.to_thread.run_sync, browse)
        try:
            await wait_for(lambda: "key" in got, timeout=30)
        except BaseException:
            published.set()  # never leave the browser waiting when this fails
            raise
        assert got["server"] == f"rtmp://127.0.0.1:{ingest.port}/live"

        async def publish():
            got["publisher"] = await run_publisher(ffmpeg_publish_cmd(f"{got['server']}/{got['key']}", 15))

        n.start_soon(publish)
        with inst.open_store() as store:
            stream_id = domain.streams.get(store, "studio")["id"]
        await wait_for(lambda: stream_id in ingest.daemon.publishers, timeout=15)
        published.set()
    record_property("admin_screenshot", str(shot))
    assert "not valid" in got["wrong"]
    assert got["state"] == "live", got["row"]
    assert "127.0.0.1:" in got["row"]  # the publisher's address, from the ingest daemon's stats
    assert got["publisher"].returncode == 0
    assert Path(shot).stat().st_size > 0


@needs_ffmpeg
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: Debian's chromium package (run .ci/bootstrap --test)")
async def test_in_the_browser_a_streams_card_charts_its_last_hour_from_snapshot_history(nursery, tmp_path, record_property):
    """An earlier broadcast's 40 minutes of history (recorded through the domain as sender-snapshot
    records it: nobody waits an hour in a test), then a real publish watched by two players, with
    the real sender-snapshot recording it: the card's charts plot both, broken between them."""
    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0", "snapshot.interval_s": 0.5,
                                               "recording.enabled": True, "thumbnails.interval_s": 2.0})
    s = add_stream(inst, "studio", title="Studio A")
    token = add_token(inst)
    now = datetime.now(timezone.utc)
    with inst.open_store() as store:
        node = ensure_node_endpoint(store, inst.config)["id"]
        earlier, _ = domain.generations.begin(store, s.stream["id"])
        for minute in range(50, 10, -1):
            domain.snapshots.record(store, {
                "endpoint_id": node, "generation_id": earlier["id"], "status": "healthy", "viewers": 1 + (50 - minute) // 4,
                "ingress_bps": 2_400_000 + 50_000 * (minute % 3), "observed_at": iso((now - timedelta(minutes=minute)).timestamp())},
                history_limit=inst.config["snapshot.history_limit"])
        domain.generations.end(store, earlier["id"], domain.generations.EndReason.PUBLISHER_GONE)
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    snap = SnapshotDaemon(inst, StoreWorker(inst.open_store()))
    await nursery.start(snap.serve)
    published: dict = {}

    async def publish():
        published["p"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(s.key), 25))

    nursery.start_soon(publish)
    await wait_for(lambda: s.stream["id"] in ingest.daemon.publishers, timeout=15)
    with inst.open_store() as store:
        live = domain.generations.active(store, s.stream["id"])["id"]
    got: dict = {}
    shot = tmp_path / "admin-charts.png"

    def browse():
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=20_000)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(f"{http.base_url}/admin")
                page.fill("#token", token)
                page.click("button[type=submit]")
                card = '[data-stream="studio"]'
                page.wait_for_selector(f"{card} img.pic", timeout=20_000)
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=page.query_selector(f"{card} img.pic"))
                got["picture_width"] = page.evaluate(f"document.querySelector('{card} img.pic').naturalWidth")
                for kind in ("viewers", "bitrate"):
                    chart = f'{card} svg.chart[data-kind="{kind}"]'
                    box = page.locator(chart).bounding_box()
                    got[kind] = {
                        "points": int(page.get_attribute(chart, "data-points")),
                        "circles": page.locator(f"{chart} circle").count(),
                        "drawn": page.locator(f"{chart} circle").evaluate_all(
                            "cs => cs.filter(c => c.getBoundingClientRect().width > 0).length"),
                        "box": box,
                        "path": page.get_attribute(f"{chart} path", "d"),
                        "last": page.locator(f"{chart} circle title").last.text_content(),
                    }
                got["facts"] = page.inner_text(f"{card} .facts")
                got["recording"] = page.get_attribute(f"{card} .recordings li a", "href")
                got["since_title"] = page.get_attribute(f"{card} .facts time", "title")
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()

    async with http.client() as c:
        with trio.fail_after(15):
            while (info := (await c.get("/api/streams/studio/playback")).json())["status"] != "live":
                await trio.sleep(0.1)
        media = urlsplit(info["master_url"]).path.replace("master.m3u8", "source/index.m3u8")

        async def player(n: int):  # reload the playlist as a player does, as a session of its own
            while True:
                await c.get(media, params={"session": f"viewer-{n}"})
                await trio.sleep(0.5)

        async with trio.open_nursery() as players:
            for n in range(2):
                players.start_soon(player, n)
            row = lambda: next((r for r in (snap.last.rows if snap.last else ()) if r["generation_id"] == live), None)  # noqa: E731
            await wait_for(lambda: (r := row()) and r["viewers"] == 2 and r["ingress_bps"] > 0, timeout=20)
            # The card lists the live recording once it has a replay (its DVR master, written once
            # the first recorded segment closed): the page is rendered once, so wait for that first.
            def replayable():
                with inst.open_store() as store:
                    return domain.recordings.replays(store, inst.spool_root, s.stream["id"])
            await wait_for(replayable, timeout=15)
            await trio.to_thread.run_sync(browse)
            players.cancel_scope.cancel()
    record_property("admin_charts_screenshot", str(shot))
    for kind in ("viewers", "bitrate"):
        chart = got[kind]
        # 40 minutes of the earlier broadcast, then the live one's minute (two, across a minute's turn).
        assert 41 <= chart["points"] <= 42 and chart["circles"] == chart["drawn"] == chart["points"], chart
        assert chart["box"]["width"] > 100 and chart["box"]["height"] > 20, chart
        assert chart["path"].count("M") == 2, chart  # ten minutes without a broadcast: the line breaks
    assert re.fullmatch(r"[12] watching at \d\d:\d\d UTC", got["viewers"]["last"]), got["viewers"]
    assert float(got["bitrate"]["last"].split()[0]) > 0, got["bitrate"]
    assert "2 watching" in got["facts"] and "Mb/s" in got["facts"] and "live since" in got["facts"], got["facts"]
    assert got["since_title"].endswith(" UTC")
    assert got["recording"] == f"/watch/studio/{live}" and got["picture_width"] > 0
