"""The pages over real HTTP: strict CSP, no external resource, the built assets served from an
allow-list with a long cache, the index of public live streams, the watch page's markup."""

from __future__ import annotations

import json
import re

from daemons.core import domain
from daemons.http import pages


def _csp(r) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (x.strip() for x in r.headers["content-security-policy"].split(";")) if d}


async def test_watch_page_is_strict_and_self_contained(http):
    with http.install.open_store() as store:
        domain.streams.create(store, "demo", title="<b>Demo</b>")
    await http.daemon.ctx.directory.refresh()
    async with http.client() as c:
        r = await c.get("/watch/demo")
        assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
        csp = _csp(r)
        assert csp["default-src"] == ["'none'"] and csp["script-src"] == ["'self'"]
        assert csp["connect-src"] == ["'self'"] and csp["media-src"] == ["'self'", "blob:"]
        assert csp["worker-src"] == ["'self'", "blob:"] and csp["frame-ancestors"] == ["'none'"]
        assert "'unsafe-inline'" not in r.headers["content-security-policy"]
        assert r.headers["referrer-policy"] == "no-referrer"
        html = r.text
        assert 'data-slug="demo"' in html and "<hls-video" in html and "<live-video-skin>" in html
        assert "<script>" not in html and "style=" not in html  # no inline script or style
        assert not re.search(r'(src|href)="(https?:)?//', html), "nothing from another origin"
        manifest = json.loads((pages.STATIC_DIR / "manifest.json").read_text())
        for entry, content_type in (("watch.js", "text/javascript"), ("watch.css", "text/css")):
            assert f'/static/{manifest[entry]}"' in html
            asset = await c.get(f"/static/{manifest[entry]}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(content_type)
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert asset.content == (pages.STATIC_DIR / manifest[entry]).read_bytes()
        for name in ("manifest.json", "..%2Fpages.py", "watch.js", "nope.js"):
            assert (await c.get(f"/static/{name}")).status_code == 404, name
        missing = await c.get("/watch/nope")
        assert missing.status_code == 404 and "No such stream" in missing.text and "content-security-policy" in missing.headers


async def test_index_lists_public_live_streams_only(http):
    with http.install.open_store() as store:
        for slug, visibility in (("open", "public"), ("quiet", "unlisted"), ("hidden", "private"), ("idle", "public")):
            domain.streams.create(store, slug, title=f"{slug} & co", visibility=visibility)
            if slug != "idle":
                row, _ = domain.streams.start(store, slug)
                domain.generations.mark_live(store, row["id"])
    async with http.client() as c:
        r = await c.get("/")
    assert r.status_code == 200 and "content-security-policy" in r.headers
    assert '<a href="/watch/open">' in r.text and "open &amp; co" in r.text
    for slug in ("quiet", "hidden", "idle"):
        assert f"/watch/{slug}" not in r.text
