"""The front tier under `sender up --front nginx` (tests/front/conftest.py): HTTPS and HTTP/2,
LL-HLS and ffprobe through the front, no part or playlist of a public stream reaching sender-http
however many sessions fetch it (media from the spool, playlists from sender-front's pushes),
viewers counted from what the front saw, private streams checked by sender-http on every request,
and `sender config set front.*` reloading without a restart."""

from __future__ import annotations

import json
import re
import ssl

import httpx
import trio

from daemons.core import config as config_mod
from daemons.core.domain import playback
from daemons.core.install import Install
from daemons.runtime.checks import port_holders
from tests.daemons.conftest import FFPROBE, wait_for
from tests.front.conftest import needs_front

pytestmark = needs_front

PART = re.compile(r'#EXT-X-PART:[^\n]*URI="([0-9]+)\.([0-9]+)\.m4s')


def client(node, **kw) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.https, http2=True, verify=ssl.create_default_context(cafile=str(node.ca_file)),
                             timeout=30, **kw)


async def media_url(node, c: httpx.AsyncClient, slug: str = "show", token: str | None = None) -> str:
    info = (await c.get(f"/api/streams/{slug}/playback", params={"token": token} if token else None)).json()
    return info["master_url"].split("?")[0].replace("master.m3u8", "source/index.m3u8")


def next_part(text: str) -> tuple[int, int]:
    """The part after the newest listed (the next one to block on)."""
    msn, part = map(int, PART.findall(text)[-1])
    return (msn + 1, 0) if f"\n{msn}.m4s" in text else (msn, part + 1)


async def test_https_http2_llhls_and_ffprobe_through_the_front(front_node):
    async with client(front_node) as c:
        info = (await c.get("/api/streams/show/playback")).json()
        assert info["status"] == "live"
        # The public base is the front's HTTPS address (its X-Forwarded-Proto/Host, trusted on loopback).
        assert info["master_url"].startswith(f"{front_node.https}/hls/"), info["master_url"]
        url = await media_url(front_node, c)
        r = await c.get(url)
        assert r.status_code == 200 and r.http_version == "HTTP/2"
        # An LL-HLS client: blocking reload for the next part, then the part, a few times over.
        text = r.text
        for _ in range(6):
            msn, part = next_part(text)
            reload = await c.get(url, params={"_HLS_msn": msn, "_HLS_part": part})
            assert reload.status_code == 200 and reload.http_version == "HTTP/2"
            text = reload.text
            listed = {(int(a), int(b)) for a, b in PART.findall(text)}
            asked = (msn, part) if (msn, part) in listed else (msn + 1, 0)
            got = await c.get(url.replace("index.m3u8", f"{asked[0]}.{asked[1]}.m4s"))
            assert got.status_code == 200 and len(got.content) > 100
            assert got.headers["content-type"] == "video/iso.segment"
            assert got.headers["cache-control"] == "public, max-age=31536000, immutable"
        # ffprobe's HLS reader knows segments, not parts: it needs the first whole segment listed
        # (a busy machine may get here within the first segment's two seconds).
        with trio.fail_after(10):
            while "#EXTINF" not in text:
                msn, part = next_part(text)
                text = (await c.get(url, params={"_HLS_msn": msn, "_HLS_part": part})).text
    probe = await trio.run_process([FFPROBE, "-v", "error", "-ca_file", str(front_node.ca_file), "-tls_verify", "1",
                                    "-show_streams", "-of", "json", info["master_url"]],
                                   capture_stdout=True, capture_stderr=True, check=False)
    assert probe.returncode == 0, probe.stderr.decode()
    assert {s["codec_type"] for s in json.loads(probe.stdout)["streams"]} == {"video", "audio"}


async def test_plain_http_is_redirected_to_https(front_node):
    async with httpx.AsyncClient(base_url=front_node.http) as c:
        r = await c.get("/watch/show")
    assert r.status_code == 301 and r.headers["location"] == f"{front_node.https}/watch/show"


async def test_fifty_sessions_reach_sender_http_once_per_part_and_count_fifty_viewers(front_node):
    """50 players block on the same next part and fetch it: sender-http answers neither that part
    nor that playlist version (its own counters); the viewers are the 50 sessions, counted from
    what the front saw."""
    sessions = [f"front-test-{i}" for i in range(50)]
    async with client(front_node, limits=httpx.Limits(max_connections=60)) as c:
        url = await media_url(front_node, c)
        msn, part = next_part((await c.get(url)).text)
        await trio.sleep(1.5)  # sender-http's stats file: its counts before the players ask
        parts_before, playlists_before = front_node.origin_requests("part"), front_node.origin_requests("playlist")
        answers = {}

        async def player(session: str) -> None:
            reload = await c.get(url, params={"_HLS_msn": msn, "_HLS_part": part, "session": session})
            listed = {(int(a), int(b)) for a, b in PART.findall(reload.text)}
            asked = (msn, part) if (msn, part) in listed else (msn + 1, 0)
            got = await c.get(url.replace("index.m3u8", f"{asked[0]}.{asked[1]}.m4s"), params={"session": session})
            answers[session] = (reload.status_code, got.status_code, asked, got.content)

        async with trio.open_nursery() as n:
            for s in sessions:
                n.start_soon(player, s)
    assert {a[:2] for a in answers.values()} == {(200, 200)}
    assert len({a[2] for a in answers.values()}) == 1 and len({a[3] for a in answers.values()}) == 1
    await trio.sleep(2.5)  # two more stats writes of sender-http: nothing arrives
    assert front_node.origin_requests("part") - parts_before == 0
    assert front_node.origin_requests("playlist") - playlists_before == 0

    def ours() -> set[str]:
        seen = {s for r in front_node.http_stats()["viewers"] for s in r["sessions"]}
        return {s for s in seen if s.startswith("s:front-test-")}

    assert await wait_for(lambda: len(ours()) == 50, timeout=5)
    async with client(front_node) as c:
        viewers = (await c.get("/api/streams/show/playback")).json()["viewers"]
    assert viewers >= 50  # this test's 50 sessions, and those of the tests before it within the window
    # Egress: what the front sent (its log, or its counts pulled once a second).
    assert await wait_for(lambda: front_node.http_stats()["bytes_sent"].get("part", 0) >= 50 * len(answers[sessions[0]][3]),
                          timeout=5)


async def test_private_stream_403_at_the_front_without_a_token_and_plays_with_one(front_node):
    sid = front_node.stream_ids["members"]
    token = playback.mint_token(Install.load(front_node.env["SENDER_CONFIG"]).playback_secret(), sid, 600)["token"]
    async with client(front_node) as c:
        assert (await c.get("/api/streams/members/playback")).status_code == 403
        url = await media_url(front_node, c, "members", token)
        denied = await c.get(url)
        assert denied.status_code == 403 and b"#EXTM3U" not in denied.content and "video" not in denied.headers["content-type"]
        allowed = await c.get(url, params={"token": token})
        assert allowed.status_code == 200 and "#EXTM3U" in allowed.text and f"token={token}" in allowed.text
        msn, part = map(int, PART.findall(allowed.text)[-1])
        part_url = url.replace("index.m3u8", f"{msn}.{part}.m4s")
        no_token = await c.get(part_url)
        assert no_token.status_code == 403 and len(no_token.content) < 200  # a refusal, not media
        before = front_node.origin_requests("part")
        with_token = [await c.get(part_url, params={"token": token}) for _ in range(3)]
        assert all(r.status_code == 200 and r.headers["content-type"] == "video/mp4" for r in with_token)
        # Never answered by nginx itself: each request with its token is checked by sender-http.
        await wait_for(lambda: front_node.origin_requests("part") - before >= 3, timeout=5)


async def test_config_set_front_reloads_without_restarting_the_front(front_node):
    def master_pids() -> set[int]:
        return {pid for pid, cmd in port_holders(front_node.ports["http_front"]) if "nginx: master" in cmd}

    pids = master_pids()
    assert pids
    done = await trio.to_thread.run_sync(lambda: front_node.cli("config", "set", "front.redirect_http", "false"))
    assert done.returncode == 0, done.stderr
    try:
        async with httpx.AsyncClient(base_url=front_node.http) as c:
            async def served() -> bool:
                return (await c.get("/api/streams/show/playback")).status_code == 200

            with trio.fail_after(10):
                while not await served():
                    await trio.sleep(0.2)
            r = await c.get("/api/streams/show/playback")
        assert r.json()["master_url"].startswith(front_node.http)  # plain HTTP now says http://
        assert master_pids() == pids  # reloaded (new workers), not restarted
        assert "reloaded nginx" in front_node.log()
    finally:
        assert front_node.cli("config", "set", "front.redirect_http", "true").returncode == 0


def test_sender_up_front_without_nginx_installed_says_so_in_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from daemons.core import front_config
    from sender_cli.app import app
    from tests.daemons.test_up import new_install

    env, _, _ = new_install(tmp_path / "var")
    monkeypatch.setattr(front_config, "SBIN_DIRS", ())
    monkeypatch.setattr(front_config, "NGINX_LUA", {k: str(tmp_path / "absent") for k in front_config.NGINX_LUA})
    result = CliRunner().invoke(app, ["up", "--front", "nginx"], env={"SENDER_CONFIG": env["SENDER_CONFIG"], "PATH": "/nonexistent"})
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1
    assert len(lines) == 1 and "apt-get install libnginx-mod-http-lua lua-resty-core nginx" in lines[0], result.output
    assert config_mod.load(env["SENDER_CONFIG"])["front.kind"] == ""


# --- the nginx front's own answers (sender_front.lua, daemons/front/pusher.py) -----------------


async def test_nginx_answers_delta_updates_and_leaves_what_it_does_not_handle_to_sender_http(front_node):
    async with client(front_node) as c:
        url = await media_url(front_node, c)
        with trio.fail_after(40):  # a delta update skips segments older than CAN-SKIP-UNTIL (6 x 2 s)
            while int(PART.findall((full := await c.get(url)).text)[-1][0]) < 9 or "etag" in full.headers:
                await trio.sleep(0.5)  # (an ETag: sender-http answered, the rendition not pushed yet)
        await trio.sleep(1.5)  # sender-http's stats file: its counts before the requests below
        full = await c.get(url)
        msn, part = next_part(full.text)
        before = front_node.origin_requests("playlist")
        delta = await c.get(url, params={"_HLS_msn": msn, "_HLS_part": part, "_HLS_skip": "YES"})
        assert delta.status_code == 200 and "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in delta.text
        assert delta.headers["cache-control"].startswith("public, max-age=")
        listed = {(int(a), int(b)) for a, b in PART.findall(delta.text)}
        assert (msn, part) in listed or (msn + 1, 0) in listed
        head = await c.head(url)
        assert head.status_code == 200 and int(head.headers["content-length"]) > 100 and head.content == b""
        # Far ahead of the live edge: 400 (sender-http's answer, RFC 8216bis 6.2.5.2); malformed: 400.
        ahead = await c.get(url, params={"_HLS_msn": msn + 50})
        bad = await c.get(url, params={"_HLS_msn": "x"})
        assert ahead.status_code == 400 and bad.status_code == 400
        await trio.sleep(1.5)  # sender-http's stats file
        assert front_node.origin_requests("playlist", 400) >= 2
        assert front_node.origin_requests("playlist") == before  # the others never reached it


async def test_nginx_push_listener_rejects_garbage_and_keeps_serving(front_node):
    from daemons.core.front_nginx import push_key

    push = f"http://127.0.0.1:{front_node.ports['proxy']}"
    key = push_key(Install.load(front_node.env["SENDER_CONFIG"]).secret())
    async with httpx.AsyncClient(base_url=push, timeout=10) as p:
        # Another local user (no key, a wrong one) can neither push, drop nor read the counts.
        for headers in ({}, {"X-Sender-Key": "0" * 32}):
            for target in ("/push?r=st_0123456789abcdef/gen_0123456789abcdef/source&full=1", "/drop?s=st_1", "/stats"):
                r = await p.request("GET" if target == "/stats" else "POST", target, content=b"#", headers=headers)
                assert r.status_code == 403, (target, headers, r.status_code)
        for target, body in (("/push", b""), ("/push?r=../../etc&full=3", b"abc"), ("/push?r=st_1/gen_2/x&full=99", b"short"),
                             ("/push?r=st_1/gen_2/x&full=1&next_msn=x", b"a"), ("/drop?s=../x", b""), ("/other", b"")):
            r = await p.post(target, content=body, headers={"X-Sender-Key": key})
            assert r.status_code in (400, 404), (target, r.status_code)
    async with client(front_node) as c:
        url = await media_url(front_node, c)
        r = await c.get(url)
        assert r.status_code == 200 and "#EXT-X-PART" in r.text


async def test_nginx_writes_the_admins_access_log_when_asked(front_node):
    """front.access_log: one JSON line per viewer request (Sender counts without it)."""
    path = front_node.dir / "state" / "front-access.log"
    async with client(front_node, headers={"X-Playback-Session-Id": "access-log-test", "User-Agent": 'a "quoted"\tagent'}) as c:
        url = await media_url(front_node, c)
        with trio.fail_after(10):  # a rendition's first requests go to sender-http (ETag) until it is pushed
            while "etag" in (r := await c.get(url)).headers:
                await trio.sleep(0.2)
        assert r.status_code == 200

    def ours() -> list[dict]:
        lines = path.read_text().splitlines() if path.exists() else []
        return [r for r in map(json.loads, lines) if r["session"] == "access-log-test"]

    target = httpx.URL(url).path
    assert await wait_for(lambda: any(r["request"].startswith(f"GET {target} ") for r in ours()), timeout=5)
    line = next(r for r in ours() if r["request"].startswith(f"GET {target} "))
    assert line["status"] == 200 and line["handling"] == "hit" and line["bytes"] > 100
    assert line["user_agent"] == 'a "quoted"\tagent' and line["address"] == "127.0.0.1"


async def test_a_stream_made_private_is_no_longer_served_by_the_front(front_node):
    """The public stream turns private: within seconds the front stops serving its playlists and
    media without a token (sender-http refuses them), and serves them again once it is public."""
    async with client(front_node) as c:
        url = await media_url(front_node, c)
        text = (await c.get(url)).text
        msn, part = map(int, PART.findall(text)[-1])
        part_url = url.replace("index.m3u8", f"{msn}.{part}.m4s")
        assert (await c.get(part_url)).status_code == 200
        done = await trio.to_thread.run_sync(lambda: front_node.cli("stream", "update", "show", "--visibility", "private"))
        assert done.returncode == 0, done.stderr
        try:
            async def refused() -> bool:
                return (await c.get(part_url)).status_code == 403 and (await c.get(url)).status_code == 403

            with trio.fail_after(10):
                while not await refused():
                    await trio.sleep(0.2)
        finally:
            assert front_node.cli("stream", "update", "show", "--visibility", "public").returncode == 0
        with trio.fail_after(10):
            while (await c.get(part_url)).status_code != 200:
                await trio.sleep(0.2)
