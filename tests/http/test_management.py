"""The management API (POST /api/admin/management) over real HTTP on 127.0.0.1: every method, the
bearer token (missing, garbled, wrong, revoked), malformed calls answered with the JSON-RPC code
and the offending field, idempotent upserts, random bodies that never make a 5xx, and the flow
Legion runs with a real ffmpeg publisher and ffprobe as the player."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from daemons.core import config as config_mod
from daemons.core import domain
from daemons.core.domain import mgmt_tokens, playback
from daemons.http import management, schemas
from sender_cli.app import app as sender_app
from tests.daemons.conftest import FFPROBE, ffmpeg_publish_cmd, make_install, needs_ffmpeg, run_publisher, start_ingest
from tests.http.conftest import make_http_install, start_http

PATH = "/api/admin/management"
MANAGEMENT_DOC = Path(__file__).resolve().parents[2] / "docs" / "management-api.md"
TOKENS = "management.token_verifiers"


def add_token(inst, label: str = "test") -> str:
    """What `sender token create` does: the verifier into the config file, the token to the caller."""
    cfg = config_mod.load(inst.config.path)
    token, entry, _ = mgmt_tokens.create(inst.secret(), label=label)
    config_mod.write(cfg.with_value(TOKENS, [*cfg[TOKENS], entry]), cfg.path)
    return token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


class API:
    """A management API client that checks the JSON-RPC envelope of every answer."""

    def __init__(self, client: httpx.AsyncClient, token: str):
        self.client = client
        self.token = token
        self.next_id = 0

    async def post(self, body, headers: dict | None = None) -> httpx.Response:
        headers = bearer(self.token) if headers is None else headers
        if isinstance(body, (bytes, str)):
            return await self.client.post(PATH, content=body, headers={"Content-Type": "application/json", **headers})
        return await self.client.post(PATH, json=body, headers=headers)

    async def call(self, method: str, params: dict | None = None) -> httpx.Response:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "method": method, "id": self.next_id}
        if params is not None:
            body["params"] = params
        r = await self.post(body)
        assert r.headers["content-type"] == "application/json"
        doc = r.json()
        assert doc["jsonrpc"] == "2.0" and doc["id"] == self.next_id
        schemas.check(schemas.CallResult if r.status_code == 200 else schemas.CallFailure, doc)
        return r

    async def ok(self, method: str, **params):
        r = await self.call(method, params)
        assert r.status_code == 200, r.text
        result = r.json()["result"]
        if management.METHODS[method].result is not None:  # the answer is its model's shape, exactly
            schemas.check(management.METHODS[method].result, result)
        return result

    async def fails(self, method: str, params: dict, status: int, code: int, field: str | None = None) -> dict:
        r = await self.call(method, params)
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert error["code"] == code, error
        assert error["data"]["field"] == field, error
        assert isinstance(error["message"], str) and error["message"]
        return error


@pytest.fixture
def token(http_install) -> str:
    return add_token(http_install)


@pytest.fixture
async def api(http, token):
    async with http.client() as c:
        yield API(c, token)


# --- methods -------------------------------------------------------------------------------


def documented_methods() -> dict[str, tuple[set[str], set[str], bool]]:
    """method → (params, required params, sensitive) as docs/management-api.md's table lists them."""
    out = {}
    for line in MANAGEMENT_DOC.read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 3 or not re.fullmatch(r"`[a-z_.]+`", cells[0]):
            continue
        listed = re.sub(r"\([^)]*\)", "", cells[1].split("→")[0])
        params = [p.strip() for p in listed.split(",") if p.strip() not in ("", "—")]
        out[cells[0].strip("`")] = ({p.strip("*") for p in params}, {p.strip("*") for p in params if p.startswith("**")},
                                    cells[2] == "yes")
    return out


async def test_capabilities_describe_every_method(api, http):
    caps = await api.ok("capabilities")
    schemas.check(schemas.Capabilities, caps)
    # The methods, their params and which are sensitive: what docs/management-api.md promises Legion.
    documented = documented_methods()
    assert [m["name"] for m in caps["methods"]] == list(documented)
    for m in caps["methods"]:
        params, required, sensitive = documented[m["name"]]
        assert m["params"]["type"] == "object" and m["params"]["additionalProperties"] is False, m["name"]
        assert set(m["params"]["properties"]) == params and set(m["params"]["required"]) == required, m["name"]
        assert m["sensitive"] is sensitive and m["description"], m["name"]
    by_name = {m["name"]: m for m in caps["methods"]}
    assert by_name["stream.create"]["params"]["properties"]["visibility"]["enum"] == ["public", "unlisted", "private"]
    assert caps["limits"]["max_request_body"] == http.install.config["http.max_request_body"]
    assert caps["version"] == 1 and caps["node"] == http.install.config["node.id"]


async def test_stream_create_get_list_update_delete(api, http):
    created = await api.ok("stream.create", slug="show", title="The Show", visibility="unlisted", auto_start=False)
    assert created["slug"] == "show" and created["title"] == "The Show" and created["auto_start"] is False
    assert created["id"].startswith("st_")
    got = await api.ok("stream.get", stream="show")
    assert got["id"] == created["id"] and [r["name"] for r in got["renditions"]] == ["source"]
    assert got["keys"] == [] and got["generation"] is None
    assert (await api.ok("stream.get", stream=created["id"]))["slug"] == "show"  # by id too

    # An existing slug is a conflict, blamed on the slug.
    error = await api.fails("stream.create", {"slug": "show"}, 409, -32009, "slug")
    assert error["data"]["type"] == "conflict" and "already exists" in error["message"]
    # The domain's own rules come back with the field named.
    await api.fails("stream.create", {"slug": "Bad Slug"}, 400, -32602, "slug")

    await api.ok("stream.create", slug="other")
    listed = await api.ok("stream.list")
    assert [s["slug"] for s in listed["streams"]] == ["other", "show"]
    assert all(s["generation"] is None for s in listed["streams"])

    updated = await api.ok("stream.update", stream="show", slug="renamed", visibility="public")
    assert updated["slug"] == "renamed" and updated["visibility"] == "public" and updated["title"] == "The Show"
    await api.fails("stream.update", {"stream": "renamed", "slug": "other"}, 409, -32009, "slug")
    # The HTTP daemon's own directory follows at once: the playback API finds the new slug.
    assert (await api.client.get("/api/streams/renamed/playback")).status_code == 200

    deleted = await api.ok("stream.delete", stream="renamed")
    assert deleted["deleted_at"]
    await api.fails("stream.get", {"stream": "renamed"}, 404, -32004, "stream")
    assert [s["slug"] for s in (await api.ok("stream.list"))["streams"]] == ["other"]
    assert {s["slug"] for s in (await api.ok("stream.list", include_deleted=True))["streams"]} == {"other", "renamed"}
    assert (await api.client.get("/api/streams/renamed/playback")).status_code == 404


async def test_stream_create_with_a_ladder(api):
    ladder = [{"name": "source", "kind": "source"},
              {"name": "480p", "kind": "transcode", "height": 480, "video_bitrate": 1_200_000}]
    await api.ok("stream.create", slug="ladder", ladder=ladder)
    got = await api.ok("stream.get", stream="ladder")
    assert {r["name"]: r["height"] for r in got["renditions"]} == {"source": None, "480p": 480}
    await api.fails("stream.create", {"slug": "x", "ladder": [{"name": "a", "kind": "transcode"}]}, 400, -32602, "ladder")
    await api.fails("stream.create", {"slug": "x", "ladder": [{"name": "a", "kind": "source", "height": "tall"}]},
                    400, -32602, "ladder[0].height")


async def test_start_stop_and_status_without_a_publisher(api):
    await api.ok("stream.create", slug="s", auto_start=False)
    assert (await api.ok("stream.status", stream="s"))["status"] == "offline"
    first = await api.ok("stream.start", stream="s")
    assert first["created"] is True and first["generation"]["status"] == "starting"
    again = await api.ok("stream.start", stream="s")
    assert again == {"generation": first["generation"], "created": False}
    status = await api.ok("stream.status", stream="s")
    assert status["status"] == "starting" and status["active"] is True
    assert status["generation"]["id"] == first["generation"]["id"]
    assert status["publisher"] is None and status["ingest_running"] is False and status["warnings"] == []

    stopped = await api.ok("stream.stop", stream="s")
    assert stopped["stopped"] is True and stopped["generation"]["status"] == "ended"
    assert (await api.ok("stream.stop", stream="s")) == {"generation": None, "stopped": False}
    status = await api.ok("stream.status", stream="s")
    assert status["status"] == "ended" and status["active"] is False
    assert status["generation"]["id"] == first["generation"]["id"] and status["generation"]["ended_at"]
    for m in ("stream.start", "stream.stop", "stream.status"):
        await api.fails(m, {"stream": "ghost"}, 404, -32004, "stream")


async def test_playback_token_opens_a_private_stream(api, http):
    stream = await api.ok("stream.create", slug="hidden", visibility="private")
    minted = await api.ok("stream.playback_token", stream="hidden", ttl_s=120)
    assert set(minted) == {"token", "expires_at", "ttl_s"} and minted["ttl_s"] == 120
    assert playback.token_valid(http.install.secret(), stream["id"], minted["token"])
    c = api.client
    assert (await c.get("/api/streams/hidden/playback")).status_code == 403
    r = await c.get("/api/streams/hidden/playback", params={"token": minted["token"]})
    assert r.status_code == 200 and r.json()["stream"]["slug"] == "hidden"
    # The default lifetime is the config's http.playback_token_ttl (6h).
    assert (await api.ok("stream.playback_token", stream="hidden"))["ttl_s"] == 6 * 3600
    await api.fails("stream.playback_token", {"stream": "hidden", "ttl_s": 0}, 400, -32602, "ttl_s")
    await api.fails("stream.playback_token", {"stream": "hidden", "ttl_s": "1h"}, 400, -32602, "ttl_s")
    await api.fails("stream.playback_token", {"stream": "ghost"}, 404, -32004, "stream")


async def test_stream_keys_created_once_revoked_and_never_logged(api, http, caplog):
    caplog.set_level(logging.DEBUG)
    await api.ok("stream.create", slug="k")
    created = await api.ok("stream_key.create", stream="k", label="legion")
    key = created["key"]
    assert created["prefix"] == key.split("_", 1)[0] and created["label"] == "legion" and created["stream"] == "k"
    assert created["url"] == f"{created['server']}/{key}" and "verifier" not in created
    secret = http.install.secret()
    with http.install.open_store() as store:
        assert domain.keys.verify(store, secret, key, touch=False).ok
    listed = (await api.ok("stream.get", stream="k"))["keys"]
    assert [k["id"] for k in listed] == [created["id"]] and key not in json.dumps(listed)

    revoked = await api.ok("stream_key.revoke", key_id=created["prefix"])
    assert revoked["revoked_at"] and revoked["id"] == created["id"]
    assert (await api.ok("stream_key.revoke", key_id=created["id"]))["revoked_at"] == revoked["revoked_at"]
    with http.install.open_store() as store:
        assert domain.keys.verify(store, secret, key, touch=False).reason == "revoked"
    await api.fails("stream_key.revoke", {"key_id": "key_nope"}, 404, -32004, "key_id")
    await api.fails("stream_key.create", {"stream": "ghost"}, 404, -32004, "stream")

    # Sensitive results never reach the log: the calls are logged by method, id and outcome only.
    minted = await api.ok("stream.playback_token", stream="k")
    calls = [r for r in caplog.records if r.name == "sender.http.management"]
    assert {r.fields["method"] for r in calls} >= {"stream_key.create", "stream.playback_token", "stream_key.revoke"}
    logged = caplog.text + json.dumps([r.fields for r in calls])
    assert key not in logged and key.split("_", 1)[1] not in logged
    assert minted["token"] not in logged and api.token not in logged and "legion" not in logged


async def test_upserts_are_idempotent(api):
    origin = {"id": "origin", "type": "tribes_origin", "public_base_url": "https://origin.example"}
    first = await api.ok("media_endpoints.upsert", **origin)
    assert await api.ok("media_endpoints.upsert", **origin) == first  # same state, updated_at unmoved
    edge = {"id": "edge-1", "type": "tribes_edge", "sources": ["origin"], "health_thresholds": {"max_segment_lag": 2}}
    e1 = await api.ok("media_endpoints.upsert", **edge)
    assert e1["sources"] == ["origin"] and e1["health_thresholds"] == {"max_segment_lag": 2}
    assert await api.ok("media_endpoints.upsert", **edge) == e1
    changed = await api.ok("media_endpoints.upsert", id="edge-1", enabled=False)
    assert changed["enabled"] is False and changed["sources"] == ["origin"] and changed["updated_at"] >= e1["updated_at"]
    listed = await api.ok("media_endpoints.list")
    assert [e["id"] for e in listed["endpoints"]] == ["edge-1", "origin"]

    # The graph stays acyclic; missing sources and bad values name the field.
    await api.fails("media_endpoints.upsert", {"id": "origin", "sources": ["edge-1"]}, 409, -32009, "sources")
    await api.fails("media_endpoints.upsert", {"id": "edge-2", "type": "tribes_edge", "sources": ["ghost"]}, 404, -32004, "sources")
    await api.fails("media_endpoints.upsert", {"id": "Bad Id", "type": "tribes_edge"}, 400, -32602, "id")
    await api.fails("media_endpoints.upsert", {"id": "e", "type": "cdn"}, 400, -32602, "type")
    await api.fails("media_endpoints.upsert", {"id": "e", "type": "tribes_edge", "public_base_url": "ftp://x"},
                    400, -32602, "public_base_url")
    await api.fails("media_endpoints.upsert", {"id": "e", "type": "tribes_edge", "sources": ["origin", "origin"]},
                    400, -32602, "sources")
    await api.fails("media_endpoints.upsert", {"id": "e", "type": "tribes_edge", "health_thresholds": {"max_segment_lag": "2"}},
                    400, -32602, "health_thresholds.max_segment_lag")

    await api.ok("stream.create", slug="r")
    rendition = {"stream": "r", "name": "720p", "kind": "transcode", "height": 720, "video_bitrate": 2_500_000}
    r1 = await api.ok("renditions.upsert", **rendition)
    assert r1["height"] == 720 and r1["name"] == "720p"
    assert await api.ok("renditions.upsert", **rendition) == r1
    r2 = await api.ok("renditions.upsert", **{**rendition, "video_bitrate": 3_000_000})
    assert r2["id"] == r1["id"] and r2["video_bitrate"] == 3_000_000
    assert len((await api.ok("stream.get", stream="r"))["renditions"]) == 2
    await api.fails("renditions.upsert", {**rendition, "height": 99999}, 400, -32602, "height")
    await api.fails("renditions.upsert", {**rendition, "stream": "ghost"}, 404, -32004, "stream")


async def test_endpoint_snapshots_report(api, http):
    await api.ok("media_endpoints.upsert", id="edge", type="external_edge")
    snap = await api.ok("endpoint_snapshots.report", endpoint_id="edge", status="healthy", viewers=12,
                        egress_bps=3_000_000, playlist_age_s=0.4, reporter="legion")
    assert snap["viewers"] == 12 and snap["status"] == "healthy" and snap["observed_at"]
    await api.ok("endpoint_snapshots.report", endpoint_id="edge", status="degraded", viewers=3)
    with http.install.open_store() as store:
        latest = domain.snapshots.list_(store, "edge")
        history = domain.snapshots.history(store, "edge")
    assert [(s["status"], s["viewers"]) for s in latest] == [("degraded", 3)]
    assert [h["status"] for h in history] == ["degraded", "healthy"]
    await api.fails("endpoint_snapshots.report", {"endpoint_id": "ghost", "status": "healthy"}, 404, -32004, "endpoint_id")
    await api.fails("endpoint_snapshots.report", {"endpoint_id": "edge", "status": "fine"}, 400, -32602, "status")
    await api.fails("endpoint_snapshots.report", {"endpoint_id": "edge", "status": "healthy", "viewers": -1}, 400, -32602, "viewers")
    await api.fails("endpoint_snapshots.report", {"endpoint_id": "edge"}, 400, -32602, "status")


# --- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("authorization, status", [
    (None, 401),
    ("Basic dXNlcjpwYXNz", 401),
    ("Bearer", 401),
    ("Bearer a b", 401),
    ("Bearer not-a-token", 403),
    ("Bearer mt0123456789_" + "A" * 32, 403),  # well formed, never created
])
async def test_auth_is_required_before_the_body_is_read(api, authorization, status):
    headers = {} if authorization is None else {"Authorization": authorization}
    for body in (b'{"method": "capabilities", "id": 7}', b"{not json"):
        r = await api.post(body, headers=headers)
        assert r.status_code == status, r.text
        doc = r.json()
        assert doc["id"] is None and "result" not in doc  # the body was not even parsed
        assert doc["error"]["code"] == (-32001 if status == 401 else -32003)
        assert doc["error"]["data"]["type"] == ("unauthorized" if status == 401 else "forbidden")
    if status == 401:
        assert "Bearer" in doc["error"]["message"]
        assert r.headers["www-authenticate"] == 'Bearer realm="sender-management"'


async def test_failed_logins_are_rate_limited_per_address(nursery, tmp_path):
    inst = make_http_install(tmp_path / "var", **{"management.auth_failures_per_minute": 3})
    token = add_token(inst)
    http = await start_http(nursery, inst)
    async with http.client() as c:
        api = API(c, token)
        for _ in range(3):
            assert (await api.post({"method": "capabilities", "id": 1}, headers=bearer("mt0123456789_" + "B" * 32))).status_code == 403
        limited = await api.post({"method": "capabilities", "id": 1})  # even the right token, for a minute
    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    assert limited.json()["error"]["data"] == {"field": None, "type": "rate_limited"}
    schemas.check(schemas.CallFailure, limited.json())


async def test_a_wrong_token_and_a_revoked_one_are_forbidden(api, http):
    r = await api.post({"method": "capabilities"}, headers=bearer(api.token[:-1] + ("A" if api.token[-1] != "A" else "B")))
    assert r.status_code == 403
    r = await api.post({"method": "capabilities"}, headers={"Authorization": f"bearer {api.token}"})  # scheme is case-insensitive
    assert r.status_code == 200
    # A token of another install (another secret) is not valid here.
    other = mgmt_tokens.create(b"x" * 64)[0]
    assert (await api.post({"method": "capabilities"}, headers=bearer(other))).status_code == 403

    second = add_token(http.install, "second")  # the daemon re-reads the config when it changes
    assert (await api.post({"method": "capabilities"}, headers=bearer(second))).status_code == 200
    cfg = config_mod.load(http.install.config.path)
    kept, gone = mgmt_tokens.revoke(cfg[TOKENS], api.token.split("_", 1)[0])
    config_mod.write(cfg.with_value(TOKENS, kept), cfg.path)
    r = await api.post({"method": "capabilities", "id": 1})
    assert r.status_code == 403 and r.json()["error"]["code"] == -32003
    assert (await api.post({"method": "capabilities"}, headers=bearer(second))).status_code == 200


async def test_tokens_from_the_cli_work_at_once_without_a_restart(http):
    runner = CliRunner()
    env = {"SENDER_CONFIG": str(http.install.config.path)}
    created = runner.invoke(sender_app, ["token", "create", "--label", "legion", "--json"], env=env)
    assert created.exit_code == 0, created.output
    token = json.loads(created.stdout)["token"]
    async with http.client() as c:
        r = await c.post(PATH, json={"method": "capabilities", "id": "a"}, headers=bearer(token))
        assert r.status_code == 200 and r.json()["id"] == "a"
        revoked = runner.invoke(sender_app, ["token", "revoke", json.loads(created.stdout)["prefix"]], env=env)
        assert revoked.exit_code == 0, revoked.output
        r = await c.post(PATH, json={"method": "capabilities", "id": "b"}, headers=bearer(token))
        assert r.status_code == 403


# --- malformed calls -----------------------------------------------------------------------


@pytest.mark.parametrize("body, status, code, field", [
    (b"", 400, -32700, None),
    (b"{", 400, -32700, None),
    (b"\xff\xfe{}", 400, -32700, None),
    (b'{"method": "capabilities", "id": NaN}', 400, -32700, None),
    (b'{"method": "stream.get", "params": {"stream": 1e999}}', 400, -32700, None),
    (b'{"method": "stream.get", "params": {"stream": "\\ud800"}}', 400, -32700, None),
    (b"[" * 200_000 + b"]" * 200_000, 400, -32700, None),
    (b"[]", 400, -32600, None),
    (b'[{"method": "capabilities"}]', 400, -32600, None),
    (b'"capabilities"', 400, -32600, None),
    (b"42", 400, -32600, None),
    (b"{}", 400, -32600, "method"),
    (b'{"method": 5}', 400, -32600, "method"),
    (b'{"method": "capabilities", "jsonrpc": "1.0"}', 400, -32600, "jsonrpc"),
    (b'{"method": "capabilities", "id": {"a": 1}}', 400, -32600, "id"),
    (b'{"method": "capabilities", "id": true}', 400, -32600, "id"),
    (b'{"method": "capabilities", "extra": 1}', 400, -32600, "extra"),
    (b'{"method": "stream.nuke"}', 404, -32601, "method"),
    (b'{"method": "stream.get", "params": ["demo"]}', 400, -32602, "params"),
    (b'{"method": "stream.get", "params": {}}', 400, -32602, "stream"),
    (b'{"method": "stream.get", "params": {"stream": 5}}', 400, -32602, "stream"),
    (b'{"method": "stream.get", "params": {"stream": "demo", "force": true}}', 400, -32602, "force"),
    (b'{"method": "stream.create", "params": {"slug": "x", "auto_start": "yes"}}', 400, -32602, "auto_start"),
    (b'{"method": "stream.create", "params": {"slug": "x", "visibility": "secret"}}', 400, -32602, "visibility"),
    (b'{"method": "stream.list", "params": {"include_deleted": 1}}', 400, -32602, "include_deleted"),
    (b'{"method": "renditions.upsert", "params": {"stream": "x", "name": "a", "kind": "source", "width": 1.5}}', 400, -32602, "width"),
    (b'{"method": "media_endpoints.upsert", "params": {"id": "e", "sources": ["a", 1]}}', 400, -32602, "sources[1]"),
    (b'{"method": "stream.playback_token", "params": {"stream": "x", "ttl_s": true}}', 400, -32602, "ttl_s"),
])
async def test_malformed_calls_name_what_is_wrong(api, body, status, code, field):
    r = await api.post(body)
    assert r.status_code == status, r.text
    doc = r.json()
    assert doc["jsonrpc"] == "2.0" and "result" not in doc
    assert doc["error"]["code"] == code and doc["error"]["data"]["field"] == field, doc
    assert doc["error"]["message"]


async def test_ids_are_echoed(api):
    for call_id in ("abc", 0, -12, 2**52, None):
        r = await api.post({"method": "capabilities", "id": call_id})
        assert r.status_code == 200 and r.json()["id"] == call_id
    r = await api.post({"method": "stream.nuke", "id": "x-1"})
    assert r.status_code == 404 and r.json()["id"] == "x-1"
    r = await api.post({"method": "stream.get", "params": {"stream": 1}, "id": 99})
    assert r.json()["id"] == 99 and r.json()["error"]["code"] == -32602
    assert (await api.post({"method": "capabilities"})).json()["id"] is None  # no id: answered all the same


async def test_a_huge_body_is_refused_with_json(api, http):
    limit = http.install.config["http.max_request_body"]
    body = json.dumps({"method": "stream.create", "params": {"slug": "big", "title": "x" * (2 * limit)}, "id": 1})

    def post(headers: dict) -> httpx.Response:
        # A blocking client: the daemon answers before reading the body, which an async client's
        # request stream takes badly (an unexhausted async generator).
        return httpx.post(http.base_url + PATH, content=body, headers={"Content-Type": "application/json", **headers}, timeout=30)

    for headers in (bearer(api.token), {}):  # refused before anything else, the token too
        r = await trio.to_thread.run_sync(post, headers)
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "body_too_large"
    await api.fails("stream.get", {"stream": "big"}, 404, -32004, "stream")  # nothing was created


# --- random bodies never make a 5xx ----------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_param_names = sorted({p for m in management.METHODS.values() for p in m.describe()["params"]["properties"]})
_valueish = (
    _json_values
    | st.sampled_from(["demo", "st_0000000000000000", "source", "origin", "healthy", "private", "transcode", "", "Bad Slug"])
    | st.integers(min_value=-5, max_value=100_000)
)
_calls = st.fixed_dictionaries(
    {"method": st.sampled_from(sorted(management.METHODS)) | st.text(max_size=20)},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0"]) | _json_values,
        "id": st.integers() | st.text(max_size=20) | st.none() | _json_values,
        "params": st.dictionaries(st.sampled_from(_param_names) | st.text(max_size=10), _valueish, max_size=6)
                  | _json_values,
    },
)
_bodies = st.one_of(
    _calls.map(lambda c: json.dumps(c).encode()),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    _calls.map(lambda c: json.dumps(c).encode()).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
)


async def test_random_bodies_never_make_a_server_error(api, http):
    with http.install.open_store() as store:
        domain.streams.create(store, "demo")
        domain.endpoints.upsert(store, "origin", type="tribes_origin")
    seen_codes = set()

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(body=_bodies)
    def fuzz(client, body):
        r = client.post(PATH, content=body, headers={**bearer(api.token), "Content-Type": "application/json"})
        assert r.status_code < 500, (body, r.text)
        doc = r.json()
        assert doc["jsonrpc"] == "2.0" and ("result" in doc) != ("error" in doc), doc
        if r.status_code == 200:
            assert "result" in doc
        else:
            schemas.check(schemas.CallFailure, doc)
            seen_codes.add(doc["error"]["code"])

    def run():
        with httpx.Client(base_url=http.base_url, timeout=30) as client:
            fuzz(client)

    await trio.to_thread.run_sync(run)
    assert {-32700, -32600, -32602} <= seen_codes  # the fuzzing reached parsing, the call's shape and params


# --- the flow Legion runs ------------------------------------------------------------------


async def poll(fn, timeout: float):
    """Call an async condition until it returns something truthy."""
    with trio.fail_after(timeout):
        while not (value := await fn()):
            await trio.sleep(0.1)
        return value


@needs_ffmpeg
async def test_legion_flow_end_to_end(nursery, tmp_path):
    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0"})
    token = add_token(inst, "legion")
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    async with http.client() as c:
        api = API(c, token)
        stream = await api.ok("stream.create", slug="legion", title="Legion live", auto_start=False)
        key = await api.ok("stream_key.create", stream="legion", label="studio")
        started = await api.ok("stream.start", stream="legion")
        assert started["created"] and started["generation"]["status"] == "starting"
        generation_id = started["generation"]["id"]

        async with trio.open_nursery() as n:
            published = {}

            async def publish():
                published["p"] = await run_publisher(ffmpeg_publish_cmd(ingest.url(key["key"]), 6))

            n.start_soon(publish)

            async def live_with_publisher():
                s = await api.ok("stream.status", stream="legion")
                return s if s["status"] == "live" and s["publisher"] else None

            status = await poll(live_with_publisher, timeout=15)
            assert status["generation"]["id"] == generation_id and status["active"] is True
            assert status["publisher"]["video_codec"].startswith("avc1.") and status["ingest_running"] is True

            info = (await c.get("/api/streams/legion/playback")).json()
            assert info["status"] == "live" and info["generation_id"] == generation_id and info["master_url"]
            media = info["master_url"].replace("master.m3u8", "source/index.m3u8")
            await poll(lambda: _has_segment(c, media), timeout=10)
            probe = await trio.run_process([FFPROBE, "-v", "error", "-show_streams", "-of", "json", info["master_url"]],
                                           capture_stdout=True, capture_stderr=True)
            assert {s["codec_type"] for s in json.loads(probe.stdout)["streams"]} == {"video", "audio"}
        assert published["p"].returncode == 0, published["p"].stderr
        await ingest.publisher_left(stream["id"])

        stopped = await api.ok("stream.stop", stream="legion")
        assert stopped["stopped"] and stopped["generation"]["id"] == generation_id
        status = await api.ok("stream.status", stream="legion")
        assert status["status"] == "ended" and status["active"] is False and status["publisher"] is None
        assert (await c.get("/api/streams/legion/playback")).json()["status"] == "ended"


async def _has_segment(client: httpx.AsyncClient, url: str) -> bool:
    r = await client.get(url)
    return r.status_code == 200 and "#EXTINF" in r.text
