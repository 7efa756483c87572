"""Edge pull-through over real HTTP: an origin sender-http, an edge sender-http whose generation.json
names the origin (or a small real server standing in for a failing one) as its upstream."""

from __future__ import annotations

import functools
import json
import socket
from dataclasses import dataclass, field

import httpx
import pytest
import trio

from daemons.core import domain
from daemons.core.domain import distribution, playback
from daemons.http import hls_route, pull_through
from daemons.http.metrics import worker_stats
from daemons.http.pull_through import MAX_MEDIA_FETCHES, finalized, upstream_of
from daemons.media.hls import parse_media_playlist
from tests.http.conftest import RunningHTTP, make_http_install, start_http
from tests.http.spool_writer import GenerationWriter, part_bytes, segment_bytes

KEY = "k" * 40
SOURCE = "ep_origin"


# --- two nodes ------------------------------------------------------------------------------


@dataclass
class Nodes:
    origin: RunningHTTP
    edge: RunningHTTP
    gen: GenerationWriter  # the origin's generation
    stream: dict

    @property
    def sid(self) -> str:
        return self.gen.stream_id

    @property
    def gid(self) -> str:
        return self.gen.generation_id

    def edge_dir(self):
        return self.edge.install.spool_root / "streams" / self.sid / self.gid

    def follow(self, base_url: str | None = None, *, upstream: object = ...) -> None:
        """The edge's generation.json, as edge-fill writes it: the upstream it follows."""
        if upstream is ...:
            upstream = {"endpoint_id": SOURCE, "base_url": base_url or self.origin.base_url}
        doc = {"stream_id": self.sid, "generation_id": self.gid, "renditions": ["source"], "ended": False,
               "upstream": upstream}
        d = self.edge_dir()
        d.mkdir(parents=True, exist_ok=True)
        (d / ".generation.json.tmp").write_text(json.dumps(doc))
        (d / ".generation.json.tmp").replace(d / "generation.json")

    def edge_writer(self, segments: int) -> GenerationWriter:
        """The edge's own copy of the generation (what edge-fill has written so far)."""
        w = GenerationWriter(self.edge.install.spool_root, self.edge.install.state_dir, self.sid, generation_id=self.gid)
        w.add_segments(segments)
        return w

    def origin_asked(self, kind: str) -> int:
        """Requests of this kind the origin answered (counted once the answer is sent)."""
        return sum(n for (k, _), n in self.origin.daemon.ctx.counters.requests.items() if k == kind)

    async def origin_answered(self, **expected: int) -> None:
        """The origin's count of each kind reaches the number expected (the count follows the
        answer's last byte: it may lag the client by a scheduling step), and goes no further."""
        await until(lambda: all(self.origin_asked(k) >= n for k, n in expected.items()))
        assert {k: self.origin_asked(k) for k in expected} == expected

    @property
    def pull(self):
        return self.edge.daemon.ctx.counters


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "distribution.key"
    path.write_text(KEY + "\n")
    return str(path)


async def start_nodes(nursery, tmp_path, key_file, *, visibility="public", **edge_config) -> Nodes:
    origin = await start_http(nursery, make_http_install(tmp_path / "origin", **{"distribution.key_file": key_file}))
    edge = await start_http(nursery, make_http_install(tmp_path / "edge", **{"distribution.key_file": key_file, **edge_config}))
    with origin.install.open_store() as store:
        stream = domain.streams.create(store, "demo", visibility=visibility)
        listing = distribution.listing(store, node_id="origin", spool_root=origin.install.spool_root)
    with edge.install.open_store() as store:
        distribution.mirror(store, SOURCE, listing)  # the edge carries the origin's stream, same id
    gen = GenerationWriter(origin.install.spool_root, origin.install.state_dir, stream["id"])
    gen.add_segments(3)
    gen.add_part()  # 3.0
    for node in (origin, edge):
        await node.daemon.ctx.directory.refresh()
    return Nodes(origin, edge, gen, stream)


@pytest.fixture
async def nodes(nursery, tmp_path, key_file) -> Nodes:
    return await start_nodes(nursery, tmp_path, key_file)


# --- a small real HTTP server standing in for an upstream -------------------------------------


@dataclass
class TinyUpstream:
    """HTTP/1.1 on 127.0.0.1, one request per connection: answers with `status` and `body` once
    `gate` is set (or never, with `silent`); records every request line."""

    status: int = 200
    body: bytes = b""
    silent: bool = False
    gate: trio.Event = field(default_factory=trio.Event)
    paths: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, nursery) -> TinyUpstream:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]
        return self

    async def _handle(self, stream) -> None:
        data = b""
        async with stream:
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                data += chunk
            self.paths.append(data.split(b" ", 2)[1].decode())
            if self.silent:
                await trio.sleep_forever()
            await self.gate.wait()
            reason = {200: b"OK", 500: b"Internal Server Error", 503: b"Service Unavailable"}.get(self.status, b"X")
            await stream.send_all(b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\ncontent-type: video/mp4\r\n"
                                  b"connection: close\r\n\r\n" % (self.status, reason, len(self.body)) + self.body)


async def until(condition, timeout: float = 10) -> None:
    """Wait for a condition (polled): a state of the daemons, never a guess at a duration."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


# --- hit and miss -----------------------------------------------------------------------------


async def test_a_local_file_is_served_without_asking_upstream(nodes):
    nodes.edge_writer(3)
    nodes.follow()
    async with nodes.edge.client() as c:
        r = await c.get(nodes.gen.url("1.m4s"))
        init = await c.get(nodes.gen.url("init.mp4"))
    assert r.status_code == 200 and r.content == segment_bytes(1) and init.status_code == 200
    assert nodes.origin_asked("segment") == nodes.origin_asked("init") == 0
    assert not nodes.pull.pull_fetches


async def test_a_miss_is_fetched_once_kept_and_then_served_locally(nodes):
    nodes.follow()
    async with nodes.edge.client() as c:
        first = await c.get(nodes.gen.url("1.m4s"))
        again = await c.get(nodes.gen.url("1.m4s"))
        part = await c.get(nodes.gen.url("3.0.m4s"))
        init = await c.get(nodes.gen.url("init.mp4"))
    assert first.status_code == again.status_code == part.status_code == init.status_code == 200
    assert first.content == again.content == segment_bytes(1)
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert first.headers["content-type"] == "video/mp4"
    assert part.content == part_bytes(3, 0) and init.content == b"init segment"
    rendition = nodes.edge_dir() / "source"
    assert (rendition / "1.m4s").read_bytes() == segment_bytes(1)  # kept in the edge's spool
    assert (rendition / "3.0.m4s").read_bytes() == part_bytes(3, 0)
    assert not [p.name for p in rendition.iterdir() if p.name.startswith(".")]  # no temporary left
    await nodes.origin_answered(segment=1, part=1, init=1)
    counters = nodes.pull
    assert dict(counters.pull_fetches) == {"segment": 1, "part": 1, "init": 1}
    assert counters.pull_bytes == len(segment_bytes(1)) + len(part_bytes(3, 0)) + len(b"init segment")
    stats = worker_stats(nodes.edge.daemon.ctx)["pull_through"]  # what the worker's stats file holds
    assert stats == {"fetches": {"segment": 1, "part": 1, "init": 1}, "bytes": counters.pull_bytes, "coalesced": 0, "errors": {}}
    async with nodes.edge.client() as c:
        metrics = (await c.get("/metrics")).text
    assert 'sender_pull_through_fetches_total{kind="segment"} 1.0' in metrics
    assert f"sender_pull_through_bytes_total {float(counters.pull_bytes)}" in metrics
    assert "sender_pull_through_coalesced_total 0.0" in metrics


async def test_concurrent_misses_wait_on_one_upstream_request(nursery, nodes):
    upstream = await TinyUpstream(body=segment_bytes(2)).serve(nursery)
    nodes.follow(upstream.base_url)
    results = []
    async with nodes.edge.client(limits=httpx.Limits(max_connections=100)) as c, trio.open_nursery() as n:
        async def request():
            results.append(await c.get(nodes.gen.url("2.m4s")))

        for _ in range(50):
            n.start_soon(request)
        await until(lambda: nodes.pull.pull_coalesced == 49)  # 49 wait on the first one's fetch
        upstream.gate.set()
    assert len(results) == 50 and {r.status_code for r in results} == {200}
    assert {r.content for r in results} == {segment_bytes(2)}
    assert upstream.paths == [f"/hls/{nodes.sid}/{nodes.gid}/source/2.m4s"]
    assert (nodes.edge_dir() / "source" / "2.m4s").read_bytes() == segment_bytes(2)


async def test_fetches_of_different_files_run_side_by_side_up_to_the_bound(nursery, nodes):
    upstream = await TinyUpstream(body=b"x").serve(nursery)
    nodes.follow(upstream.base_url)
    results = []
    async with nodes.edge.client(limits=httpx.Limits(max_connections=100)) as c, trio.open_nursery() as n:
        async def request(msn):
            results.append(await c.get(nodes.gen.url(f"{msn}.m4s")))

        for msn in range(MAX_MEDIA_FETCHES + 4):
            n.start_soon(request, msn)
        await until(lambda: len(upstream.paths) == MAX_MEDIA_FETCHES)
        await until(lambda: sum(nodes.pull.pull_fetches.values()) == MAX_MEDIA_FETCHES)
        assert len(upstream.paths) == MAX_MEDIA_FETCHES  # the others wait for a slot
        upstream.gate.set()
    assert {r.status_code for r in results} == {200} and len(upstream.paths) == MAX_MEDIA_FETCHES + 4


# --- upstream failures: answered, never stored ------------------------------------------------


async def test_an_upstream_5xx_is_a_502_for_every_waiter_and_nothing_is_kept(nursery, nodes):
    upstream = await TinyUpstream(status=500, body=b"broken").serve(nursery)
    nodes.follow(upstream.base_url)
    results = []
    async with nodes.edge.client() as c:
        async with trio.open_nursery() as n:
            async def request():
                results.append(await c.get(nodes.gen.url("1.m4s")))

            for _ in range(5):
                n.start_soon(request)
            await until(lambda: nodes.pull.pull_coalesced == 4)
            upstream.gate.set()
        again = await c.get(nodes.gen.url("1.m4s"))  # not remembered: asked again
    assert [r.status_code for r in results] == [502] * 5 and again.status_code == 502
    assert results[0].headers["cache-control"] == "no-store"
    assert len(upstream.paths) == 2
    assert not (nodes.edge_dir() / "source").exists()
    assert nodes.pull.pull_errors["upstream_status"] == 2


async def test_an_upstream_404_is_a_404_no_store(nodes):
    nodes.follow()
    async with nodes.edge.client() as c:
        r = await c.get(nodes.gen.url("77.m4s"))  # no local playlist: asked, and upstream has none
    assert r.status_code == 404 and r.headers["cache-control"] == "no-store"
    await nodes.origin_answered(segment=1)
    assert not (nodes.edge_dir() / "source" / "77.m4s").exists()


async def test_an_upstream_that_never_answers_is_a_504_within_the_timeout(nursery, nodes, autojump_clock):
    upstream = await TinyUpstream(silent=True).serve(nursery)
    nodes.follow(upstream.base_url)
    timeout = nodes.edge.install.config["edge_fill.request_timeout_s"]
    async with nodes.edge.client() as c:
        started = trio.current_time()
        r = await c.get(nodes.gen.url("1.m4s"))
        elapsed = trio.current_time() - started
    assert r.status_code == 504 and r.headers["cache-control"] == "no-store"
    assert timeout <= elapsed < timeout + 1
    assert upstream.paths and not (nodes.edge_dir() / "source" / "1.m4s").exists()
    assert nodes.pull.pull_errors["timeout"] == 1


async def test_a_refused_connection_is_a_502(nodes):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    nodes.follow(f"http://127.0.0.1:{port}")
    async with nodes.edge.client() as c:
        r = await c.get(nodes.gen.url("1.m4s"))
    assert r.status_code == 502 and r.headers["cache-control"] == "no-store"
    assert nodes.pull.pull_errors["unreachable"] == 1


async def test_an_answer_over_the_size_bound_is_a_502_and_not_kept(nursery, nodes, monkeypatch):
    monkeypatch.setattr(pull_through, "MAX_BODY_BYTES", 1000)
    upstream = await TinyUpstream(body=b"x" * 1001).serve(nursery)
    upstream.gate.set()
    nodes.follow(upstream.base_url)
    async with nodes.edge.client() as c:
        r = await c.get(nodes.gen.url("1.m4s"))
    assert r.status_code == 502 and not (nodes.edge_dir() / "source").exists()
    assert nodes.pull.pull_errors["too_large"] == 1


# --- only finalized objects -------------------------------------------------------------------


async def test_a_future_part_or_segment_is_a_404_without_asking_upstream(nodes):
    nodes.edge_writer(3)  # the edge lists 0..2, and hints 3.0
    nodes.follow()
    for name in ("3.m4s", "5.m4s", "3.2.m4s", "2.7.m4s"):
        (nodes.edge_dir() / "source" / name).unlink(missing_ok=True)
    listed = parse_media_playlist((nodes.edge_dir() / "source" / "index.m3u8").read_text())
    hold = min(hls_route.EDGE_CATCH_UP_S, listed.target_duration)
    async with nodes.edge.client() as c:
        for name in ("5.m4s", "2.7.m4s"):  # far ahead; a part no longer listed: at once
            r = await c.get(nodes.gen.url(name))
            assert r.status_code == 404 and r.headers["cache-control"] == "no-store", name
        for name in ("3.m4s", "3.2.m4s"):  # just ahead: held for edge-fill a while, then the same 404
            started = trio.current_time()
            r = await c.get(nodes.gen.url(name))
            assert r.status_code == 404 and r.headers["cache-control"] == "no-store", name
            assert hold - 0.1 <= trio.current_time() - started <= hold + 2
    assert nodes.origin_asked("segment") == nodes.origin_asked("part") == 0
    assert not nodes.pull.pull_fetches


async def test_a_part_just_ahead_of_the_edge_is_served_once_edge_fill_writes_it(nursery, nodes):
    # A viewer saw the origin's playlist (forwarded while the edge had none) and asks the edge for
    # its newest part, which edge-fill is a moment from writing: held, then served from the edge's
    # own copy — never a 404, never a second request to the origin for it.
    edge = nodes.edge_writer(3)
    nodes.follow()
    got = {}

    async def viewer():
        async with nodes.edge.client() as c:
            got["part"] = await c.get(nodes.gen.url("3.1.m4s"))

    nursery.start_soon(viewer)
    await until(lambda: nodes.edge.daemon.ctx.counters.blocked_now == 1)
    edge.add_part()  # 3.0: not yet
    edge.add_part()  # 3.1, then its playlist (edge-fill's order)
    await until(lambda: "part" in got)
    assert got["part"].status_code == 200 and got["part"].content == part_bytes(3, 1)
    assert nodes.origin_asked("part") == 0 and not nodes.pull.pull_fetches


async def test_listed_segments_and_parts_missing_locally_are_pulled(nodes):
    nodes.edge_writer(3)
    nodes.follow()
    (nodes.edge_dir() / "source" / "1.m4s").unlink()
    (nodes.edge_dir() / "source" / "2.3.m4s").unlink()
    async with nodes.edge.client() as c:
        seg = await c.get(nodes.gen.url("1.m4s"))
        part = await c.get(nodes.gen.url("2.3.m4s"))
    assert seg.content == segment_bytes(1) and part.content == part_bytes(2, 3)
    await nodes.origin_answered(segment=1, part=1)


async def test_no_pull_through_when_it_is_off_or_the_generation_has_no_upstream(nursery, tmp_path, key_file):
    nodes = await start_nodes(nursery, tmp_path, key_file, **{"edge_fill.pull_through": False})
    nodes.follow()
    async with nodes.edge.client() as c:
        r = await c.get(nodes.gen.url("1.m4s"))
        playlist = await c.get(nodes.gen.url())
    assert r.status_code == playlist.status_code == 404 and r.headers["cache-control"] == "no-store"
    assert nodes.origin_asked("segment") == nodes.origin_asked("playlist") == 0 and not nodes.pull.pull_fetches


async def test_an_origin_generation_is_never_pulled(nodes):
    nodes.follow(upstream=None)  # an origin's generation.json: no upstream
    async with nodes.edge.client() as c:
        r = await c.get(nodes.gen.url("1.m4s"))
    assert r.status_code == 404 and nodes.origin_asked("segment") == 0 and not nodes.pull.pull_fetches


async def test_no_pull_through_without_a_distribution_key(nursery, tmp_path):
    origin = await start_http(nursery, make_http_install(tmp_path / "origin"))
    edge = await start_http(nursery, make_http_install(tmp_path / "edge"))
    assert not edge.daemon.ctx.pull.enabled and origin.daemon.ctx.pull.upstream("st_0", "gen_0") is None


# --- playlists ---------------------------------------------------------------------------------


async def test_a_playlist_missing_locally_is_forwarded_fresh_each_time_and_not_kept(nodes):
    nodes.follow()
    async with nodes.edge.client() as c:
        first = await c.get(nodes.gen.url())
        nodes.gen.add_part()  # the origin moves on: the edge must not answer the old one
        second = await c.get(nodes.gen.url())
        delta = await c.get(nodes.gen.url(), params={"_HLS_skip": "YES"})
        master = await c.get(nodes.gen.url("master.m3u8", rendition=False))
        cached = await c.get(nodes.gen.url(), headers={"If-None-Match": second.headers["etag"]})
    assert first.status_code == second.status_code == 200
    assert first.headers["cache-control"] == second.headers["cache-control"] == "public, max-age=1"
    assert first.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert [p.uri for p in parse_media_playlist(first.text).partial_parts] == ["3.0.m4s"]
    assert parse_media_playlist(second.text) == nodes.gen.playlist()
    assert delta.status_code == 200 and delta.text.startswith("#EXTM3U")
    assert master.status_code == 200 and "source/index.m3u8" in master.text
    assert master.headers["cache-control"] == "public, max-age=1"
    assert cached.status_code == 304
    assert not (nodes.edge_dir() / "source" / "index.m3u8").exists()
    assert not (nodes.edge_dir() / "master.m3u8").exists()
    await nodes.origin_answered(playlist=4, master=1)


async def test_identical_blocking_reloads_are_forwarded_once(nodes):
    nodes.follow()
    results = []
    async with nodes.edge.client() as c, trio.open_nursery() as n:
        async def request():
            results.append(await c.get(nodes.gen.url(), params={"_HLS_msn": 3, "_HLS_part": 2}))

        for _ in range(20):
            n.start_soon(request)
        await until(lambda: nodes.pull.pull_coalesced == 19)
        path = f"{nodes.sid}/{nodes.gid}/source"
        await until(lambda: (v := nodes.origin.daemon.ctx.spool.views.get(path)) is not None and v.waiters == 1)
        nodes.gen.add_part()  # 3.1: not yet
        nodes.gen.add_part()  # 3.2: answered
    assert {r.status_code for r in results} == {200} and len({r.content for r in results}) == 1
    assert results[0].headers["cache-control"] == "public, max-age=3"  # the origin's, passed through
    assert [p.uri for p in parse_media_playlist(results[0].text).partial_parts] == ["3.0.m4s", "3.1.m4s", "3.2.m4s"]
    await nodes.origin_answered(playlist=1)


async def test_bad_directives_are_refused_before_asking_upstream(nodes):
    nodes.follow()
    async with nodes.edge.client() as c:
        r = await c.get(nodes.gen.url(), params={"_HLS_part": 1})
        far = await c.get(nodes.gen.url(), params={"_HLS_msn": 40})  # the origin's rule: too far ahead
    assert r.status_code == 400 and far.status_code == 400 and far.headers["cache-control"] == "no-store"
    assert dict(nodes.pull.pull_fetches) == {"playlist": 1}  # only the second one was asked upstream
    await nodes.origin_answered(playlist=1)


# --- private streams ----------------------------------------------------------------------------


async def test_a_private_stream_is_pulled_with_the_node_token(nursery, tmp_path, key_file):
    nodes = await start_nodes(nursery, tmp_path, key_file, visibility="private")
    nodes.follow()
    token = playback.mint_token(KEY.encode(), nodes.sid)["token"]
    async with nodes.origin.client() as c:
        assert (await c.get(nodes.gen.url("1.m4s"))).status_code == 403  # the origin refuses a viewer without a token
    async with nodes.edge.client() as c:
        refused = await c.get(nodes.gen.url("1.m4s"))  # and so does the edge, before asking anyone
        seg = await c.get(nodes.gen.url("1.m4s"), params={"token": token})
        playlist = await c.get(nodes.gen.url(), params={"token": token})
    assert refused.status_code == 403
    assert seg.status_code == 200 and seg.content == segment_bytes(1)
    assert seg.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert playlist.status_code == 200 and playlist.headers["cache-control"] == "private, max-age=1"
    assert f"3.0.m4s?token={token}" in playlist.text  # the viewer's token carried into every URI
    await nodes.origin_answered(segment=1)  # the edge's one fetch (a refusal is counted as kind "hls")
    assert nodes.origin.daemon.ctx.counters.requests[("segment", 200)] == 1


# --- MPEG-TS ------------------------------------------------------------------------------------


async def test_mpeg_ts_segments_are_served_and_pulled(nursery, nodes):
    upstream = await TinyUpstream(body=b"\x47" * 188).serve(nursery)
    upstream.gate.set()
    nodes.follow(upstream.base_url)
    local = nodes.edge_dir() / "source" / "4.ts"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(b"\x47ts")
    async with nodes.edge.client() as c:
        r = await c.get(nodes.gen.url("4.ts"))
        pulled = await c.get(nodes.gen.url("5.ts"))
        part = await c.get(nodes.gen.url("5.1.ts"))
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp2t" and r.content == b"\x47ts"
    assert pulled.status_code == 200 and pulled.headers["content-type"] == "video/mp2t"
    assert (nodes.edge_dir() / "source" / "5.ts").read_bytes() == b"\x47" * 188
    # An MPEG-TS part (what an edge keeps from an external LL-HLS origin serving TS) is a name too.
    assert part.status_code == 200 and part.headers["content-type"] == "video/mp2t"
    assert upstream.paths == [f"/hls/{nodes.sid}/{nodes.gid}/source/5.ts", f"/hls/{nodes.sid}/{nodes.gid}/source/5.1.ts"]


# --- the rules, directly ----------------------------------------------------------------------------


def test_upstream_of_generation_json():
    assert upstream_of({"upstream": {"endpoint_id": "ep_1", "base_url": "http://a:1/"}}).base_url == "http://a:1"
    for doc in ({}, {"upstream": None}, {"upstream": {"base_url": "file:///etc"}}, {"upstream": "http://a"}, []):
        assert upstream_of(doc) is None


def test_finalized_objects():
    w = GenerationWriter.__new__(GenerationWriter)
    w.segments, w.parts, w.ended, w.window, w.rendition = [0, 1, 2], 2, False, 20, "source"
    playlist = w.playlist()
    assert finalized("init", "init.mp4", playlist) and finalized("segment", "2.m4s", playlist)
    assert not finalized("segment", "3.m4s", playlist)
    assert finalized("part", "3.1.m4s", playlist) and finalized("part", "2.3.m4s", playlist)
    assert not finalized("part", "3.2.m4s", playlist)
    assert finalized("part", "9.9.m4s", None) and finalized("segment", "9.ts", None)
