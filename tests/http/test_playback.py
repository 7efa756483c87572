"""Visibility, the playback API, viewers, telemetry and metrics over real HTTP."""

from __future__ import annotations

import json
import time

import pytest
import trio

from daemons.core import domain
from daemons.core.domain import playback
from daemons.http import schemas
from daemons.media.hls import parse_master_playlist, parse_media_playlist
from tests.http.conftest import make_http_install, start_http
from tests.http.spool_writer import GenerationWriter

URL_KINDS = ("master", "playlist", "init", "segment", "part")


async def live_generation(http, slug: str, visibility: str) -> tuple[dict, GenerationWriter]:
    with http.install.open_store() as store:
        stream = domain.streams.create(store, slug, visibility=visibility)
        gen_row, _ = domain.streams.start(store, slug)
        domain.generations.mark_live(store, gen_row["id"])
    gen = GenerationWriter(http.install.spool_root, http.install.state_dir, stream["id"], generation_id=gen_row["id"])
    gen.add_segments(2)
    gen.add_part()
    await http.daemon.ctx.directory.refresh()
    return stream, gen


def playback_answer(r) -> dict:
    """The playback API's answer, held against its model (every member, nothing more)."""
    assert r.status_code == 200, r.text
    return schemas.check(schemas.Playback, r.json())


def hls_url(gen: GenerationWriter, kind: str) -> str:
    return {
        "master": gen.url("master.m3u8", rendition=False),
        "playlist": gen.url(),
        "init": gen.url("init.mp4"),
        "segment": gen.url("1.m4s"),
        "part": gen.url("2.0.m4s"),
    }[kind]


def tokens_for(secret: bytes, stream: dict, other: dict) -> dict[str, str | None]:
    return {
        "none": None,
        "valid": playback.mint_token(secret, stream["id"], 600)["token"],
        "expired": playback.mint_token(secret, stream["id"], 1, now=time.time() - 10)["token"],
        "other-stream": playback.mint_token(secret, other["id"], 600)["token"],
        "garbage": "12345.not-a-signature",
    }


@pytest.mark.parametrize("visibility", ["public", "unlisted", "private"])
async def test_visibility_matrix(http, visibility):
    stream, gen = await live_generation(http, "watched", visibility)
    other, _ = await live_generation(http, "other", "private")
    secret = http.install.secret()
    async with http.client() as c:
        for token_name, token in tokens_for(secret, stream, other).items():
            params = {"token": token} if token else {}
            allowed = visibility != "private" or token_name == "valid"
            api = await c.get("/api/streams/watched/playback", params=params)
            assert api.status_code == (200 if allowed else 403), (visibility, token_name, api.text)
            for kind in URL_KINDS:
                r = await c.get(hls_url(gen, kind), params=params)
                assert r.status_code == (200 if allowed else 403), (visibility, token_name, kind, r.text)
                if not allowed:
                    assert b"#EXT" not in r.content and b"part" not in r.content  # nothing of the stream
        listed = schemas.check(schemas.StreamList, (await c.get("/api/streams")).json())["streams"]
    assert ("watched" in [s["slug"] for s in listed]) == (visibility == "public")


async def test_private_playlists_carry_the_token_into_every_uri(http):
    stream, gen = await live_generation(http, "secret", "private")
    token = playback.mint_token(http.install.secret(), stream["id"], 600)["token"]
    async with http.client() as c:
        info = (await c.get("/api/streams/secret/playback", params={"token": token})).json()
        assert info["status"] == "live" and info["master_url"].endswith(f"master.m3u8?token={token}")
        master = await c.get(info["master_url"])
        variant = parse_master_playlist(master.text).variants[0].uri
        assert variant.endswith(f"?token={token}")
        base = info["master_url"].rsplit("/", 1)[0]
        media = await c.get(f"{base}/{variant}")
        assert media.status_code == 200 and media.headers["cache-control"].startswith("private")
        playlist = parse_media_playlist(media.text)
        uris = [s.uri for s in playlist.segments] + [p.uri for p in playlist.partial_parts] + [playlist.preload_hint]
        assert uris and all(u.endswith(f"?token={token}") for u in uris)
        assert f'URI="init.mp4?token={token}"' in media.text
        # Following the URIs as a player does works: each is a relative URL with the token.
        rendition_base = f"{base}/{variant.rsplit('/', 1)[0]}"
        for uri in uris[:-1]:
            assert (await c.get(f"{rendition_base}/{uri}")).status_code == 200


async def test_playback_api_states(http):
    with http.install.open_store() as store:
        stream = domain.streams.create(store, "show", title="The Show")
    await http.daemon.ctx.directory.refresh()
    async with http.client() as c:
        offline = playback_answer(await c.get("/api/streams/show/playback"))
        assert offline["status"] == "offline" and offline["master_url"] is None and offline["generation_id"] is None
        assert offline["stream"] == {"id": stream["id"], "slug": "show", "title": "The Show", "visibility": "public"}
        assert offline["low_latency"] is True and offline["renditions"][0]["name"] == "source"

        with http.install.open_store() as store:
            gen_row, _ = domain.streams.start(store, "show")
        starting = playback_answer(await c.get("/api/streams/show/playback"))
        assert starting["status"] == "starting" and starting["master_url"] is None

        gen = GenerationWriter(http.install.spool_root, http.install.state_dir, stream["id"], generation_id=gen_row["id"])
        gen.add_segments(1)
        with http.install.open_store() as store:
            domain.generations.mark_live(store, gen_row["id"])
        live = playback_answer(await c.get("/api/streams/show/playback"))
        assert live["status"] == "live" and live["generation_id"] == gen_row["id"]
        assert live["master_url"] == f"{http.base_url}/hls/{stream['id']}/{gen_row['id']}/master.m3u8"
        assert live["started_at"] and live["live_at"]
        assert (await c.get(live["master_url"])).status_code == 200

        with http.install.open_store() as store:
            domain.streams.stop(store, "show")
        ended = playback_answer(await c.get("/api/streams/show/playback"))
        assert ended["status"] == "ended" and ended["ended_at"] and ended["master_url"] == live["master_url"]
        assert ended["end_reason"] == "stopped" and ended["publisher_connected"] is False and ended["ends_at"] is None

        with http.install.open_store() as store:
            domain.streams.delete(store, "show")
        await http.daemon.ctx.directory.refresh()
        assert (await c.get("/api/streams/show/playback")).status_code == 404
        assert (await c.get(live["master_url"])).status_code == 404  # deleted: nothing served
        missing = schemas.check(schemas.Error, (await c.get("/api/streams/never-was/playback")).json())
        assert missing["error"]["code"] == "not_found"


async def test_forwarded_headers_only_from_trusted_proxies(tmp_path, nursery):
    inst = make_http_install(tmp_path / "var", **{"http.trusted_proxies": ["127.0.0.1/32"]})
    http = await start_http(nursery, inst)
    stream, gen = await live_generation(http, "proxied", "public")
    async with http.client() as c:
        r = await c.get("/api/streams/proxied/playback", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "tv.example"})
    assert r.json()["master_url"].startswith("https://tv.example/hls/")
    # Without trust, the same headers change nothing.
    async with (await _untrusting(tmp_path, nursery, gen)).client() as c:
        r = await c.get("/api/streams/proxied/playback", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "tv.example"})
    assert r.json()["master_url"].startswith("http://127.0.0.1:")


async def _untrusting(tmp_path, nursery, gen):
    # A second worker on the same install, without trusted proxies.
    from daemons.core import config as config_mod
    from daemons.core.install import Install

    path = tmp_path / "var" / "sender.toml"
    config_mod.write(config_mod.load(path).with_value("http.trusted_proxies", []), path)
    return await start_http(nursery, Install.load(path), worker=1)


async def test_viewers_are_counted_per_session(http):
    stream, gen = await live_generation(http, "popular", "public")
    async with http.client() as c:
        for session in ("viewer-one", "viewer-two"):
            for _ in range(3):
                await c.get(gen.url(), params={"session": session})
        await c.get(gen.url(), headers={"X-Playback-Session-Id": "apple-player-3"})
        await c.get(gen.url(), headers={"User-Agent": "anonymous/1.0"})  # counted by address + agent
        metrics = (await c.get("/metrics")).text
        info = (await c.get("/api/streams/popular/playback")).json()
    assert 'sender_viewers{stream="popular"} 4.0' in metrics
    assert 'sender_rendition_viewers{rendition="source",stream="popular"} 4.0' in metrics
    assert info["viewers"] == 4


async def test_viewers_leave_after_the_window(http, autojump_clock):
    stream, gen = await live_generation(http, "brief", "public")
    async with http.client() as c:
        await c.get(gen.url(), params={"session": "short-visit"})
        assert http.daemon.ctx.viewers.snapshot()[0]["viewers"] == 1
        await trio.sleep(http.install.config["http.viewer_window_s"] + 1)
    assert http.daemon.ctx.viewers.snapshot() == []


async def test_metrics_count_requests_bytes_and_playlist_age(http):
    stream, gen = await live_generation(http, "measured", "public")
    async with http.client() as c:
        seg = await c.get(gen.url("1.m4s"))
        missing = await c.get(gen.url("99.m4s"))
        await c.get(gen.url())
        text = (await c.get("/metrics")).text
    assert 'sender_http_requests_total{code="200",kind="segment"} 1.0' in text
    assert 'sender_http_requests_total{code="404",kind="segment"} 1.0' in text
    assert f'sender_http_bytes_sent_total{{kind="segment"}} {float(len(seg.content) + len(missing.content))}' in text
    assert 'sender_playlist_age_seconds{generation="%s",rendition="source",stream="measured"}' % gen.generation_id in text
    assert "sender_hls_blocked_requests 0.0" in text
    assert "sender_ingest_publishers 0.0" in text


async def test_workers_add_up_in_metrics(http, nursery):
    """A second worker's counters reach the first worker's /metrics through its stats file."""
    stream, gen = await live_generation(http, "shared", "public")
    second = await start_http(nursery, http.install, worker=1)
    async with second.client() as c:
        await c.get(gen.url("1.m4s"))
        await c.get(gen.url(), params={"session": "on-worker-two"})
    async with http.client() as c:
        await c.get(gen.url("1.m4s"))

        async def scraped():
            return (await c.get("/metrics")).text

        with trio.fail_after(5):
            while 'sender_http_requests_total{code="200",kind="segment"} 2.0' not in (text := await scraped()):
                await trio.sleep(0.1)
    assert 'sender_viewers{stream="shared"} 1.0' in text


async def test_health_and_readiness(http):
    async with http.client() as c:
        assert schemas.check(schemas.Health, (await c.get("/healthz")).json()) == {"status": "ok"}
        ready = await c.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"store": "ok", "spool": "ok"}
    schemas.check(schemas.Readiness, ready.json())


# --- telemetry ------------------------------------------------------------------------------


def batch(**kw) -> dict:
    doc = {"session_id": "page-session-1", "stream": "tv", "events": [
        {"kind": "startup", "value": 0.84}, {"kind": "live_edge", "value": 1.9}, {"kind": "error", "detail": "networkError"},
    ]}
    doc.update(kw)
    return doc


async def test_player_events_are_stored_and_counted(http):
    await live_generation(http, "tv", "public")
    async with http.client() as c:
        r = await c.post("/api/player/events", json=batch())
        text = (await c.get("/metrics")).text
    assert r.status_code == 202 and schemas.check(schemas.Accepted, r.json()) == {"accepted": 3}
    assert 'sender_player_events_total{kind="startup"} 1.0' in text
    with http.install.open_store() as store:
        rows = store.query("SELECT kind, value, detail, session_id FROM player_events ORDER BY id")
    assert [(r["kind"], r["value"], r["detail"]) for r in rows] == [("startup", 0.84, None), ("live_edge", 1.9, None), ("error", None, "networkError")]


@pytest.mark.parametrize("body, field", [
    (b"not json", None),
    (b"[1, 2]", None),
    (json.dumps(batch(session_id="x")).encode(), "session_id"),
    (json.dumps(batch(stream=7)).encode(), "stream"),
    (json.dumps(batch(stream="nope")).encode(), "stream"),
    (json.dumps(batch(events=[])).encode(), "events"),
    (json.dumps(batch(events=[{"kind": "explode"}])).encode(), "events[0].kind"),
    (json.dumps(batch(events=[{"kind": "startup", "value": "fast"}])).encode(), "events[0].value"),
    (json.dumps(batch(events=[{"kind": "startup", "value": True}])).encode(), "events[0].value"),
    (json.dumps(batch(events=[{"kind": "error", "detail": "x" * 501}])).encode(), "events[0].detail"),
    (json.dumps(batch(extra=1)).encode(), "extra"),
    (json.dumps(batch(generation_id="../../etc")).encode(), "generation_id"),
])
async def test_bad_player_events_get_a_clear_400(http, body, field):
    await live_generation(http, "tv", "public")
    async with http.client() as c:
        r = await c.post("/api/player/events", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    error = schemas.check(schemas.Error, r.json())["error"]
    assert error["code"] == "invalid_input" and error["message"]
    assert error.get("field") == field


async def test_player_events_are_size_and_rate_limited(tmp_path, nursery):
    inst = make_http_install(tmp_path / "var", **{"http.telemetry_events_per_minute": 5})
    http = await start_http(nursery, inst)
    await live_generation(http, "tv", "public")
    async with http.client() as c:
        huge = await c.post("/api/player/events", content=b"{" + b" " * 20_000 + b"}")
        assert huge.status_code == 413
        assert (await c.post("/api/player/events", json=batch())).status_code == 202  # 3 events
        assert (await c.post("/api/player/events", json=batch())).status_code == 202  # 6: over from now on
        limited = await c.post("/api/player/events", json=batch())
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"


async def test_player_events_kept_are_bounded(tmp_path, nursery):
    inst = make_http_install(tmp_path / "var", **{"http.telemetry_keep_events": 4})
    http = await start_http(nursery, inst)
    await live_generation(http, "tv", "public")
    async with http.client() as c:
        for _ in range(3):
            assert (await c.post("/api/player/events", json=batch())).status_code == 202
    with http.install.open_store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM player_events")["n"] == 4
