"""The watch page over HTTPS through the front (`sender up --front nginx`): hls.js in Chromium
plays the live stream, every request on HTTP/2 through nginx."""

from __future__ import annotations

import threading

import pytest
from playwright.sync_api import sync_playwright

from tests.front.conftest import needs_front
from tests.web.test_watch_page import CHROMIUM, CSP_WATCH, Browser, assert_hlsjs, wait_status

pytestmark = [*needs_front, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: Debian's chromium package (run .ci/bootstrap --test)")]

PROTOCOLS = "() => performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation')).map(e => [e.name, e.nextHopProtocol])"


async def test_hlsjs_plays_the_watch_page_over_https_through_the_front(front_node):
    import trio

    out: dict = {}
    done = threading.Event()

    def browse():
        with sync_playwright() as pw:
            b = Browser(pw)
            try:
                # The certificate is from this test's throwaway CA, which Chromium does not know.
                page = b.browser.new_context(ignore_https_errors=True, viewport={"width": 960, "height": 640}).new_page()
                page.add_init_script(CSP_WATCH)
                page.on("pageerror", lambda e: b.console.append(f"pageerror: {e}"))
                page.goto(f"{front_node.https}/watch/show", wait_until="load", timeout=20_000)
                first = wait_status(page, lambda x: x["playing"] and x["currentTime"] > 0, 40, "autoplay through the front")
                out["played"] = wait_status(page, lambda x: x["currentTime"] - first["currentTime"] >= 3, 15, "currentTime +3 s")
                assert_hlsjs(page, out["played"])
                out["protocols"] = page.evaluate(PROTOCOLS)
                out["csp"] = page.evaluate("window.__csp || []")
            finally:
                out["console"] = b.console
                b.close()
                done.set()

    await trio.to_thread.run_sync(browse)
    played = out["played"]
    assert played["masterUrl"].startswith(f"{front_node.https}/hls/"), played
    # Entries still in flight (a held blocking reload) name no protocol yet.
    hls = [p for name, p in out["protocols"] if "/hls/" in name and p]
    assert len(hls) >= 10 and set(hls) == {"h2"}, out["protocols"]
    assert out["csp"] == [], out["csp"]
