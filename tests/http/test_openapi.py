"""The OpenAPI document: served as built, equal to docs/openapi.json, valid, complete (every route
of the Quart app and of the HLS handler), and schemathesis driven by it finds no 5xx on a live
daemon over real HTTP."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import schemathesis
import tomli_w
import trio

from daemons.core import config as config_mod
from daemons.core import domain
from daemons.core.domain import mgmt_tokens, playback
from daemons.core.install import Install
from daemons.http import hls_route, management, openapi, schemas
from daemons.http.app import SenderApp
from tests.http.conftest import answer_before_late_body, make_http_install
from tests.http.spool_writer import PART_S, GenerationWriter

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
HLS_METHODS = {"get", "head", "options"}
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}  # added by Quart to every rule; not documented per route


@pytest.fixture
def install_with_token(tmp_path) -> tuple[Install, str]:
    """An install that knows one management token, and the token."""
    # Telemetry's per-address limit would turn most of schemathesis' batches into 429s.
    inst = make_http_install(tmp_path / "var", **{"http.telemetry_events_per_minute": 1_000_000})
    token, verifier, _ = mgmt_tokens.create(inst.secret(), label="tests")
    config_mod.write(inst.config.with_value("management.token_verifiers", [verifier]), inst.config.path)
    return Install.load(inst.config.path), token


@pytest.fixture
def http_install(install_with_token) -> Install:
    return install_with_token[0]


@pytest.fixture
def management_token(install_with_token) -> str:
    return install_with_token[1]


async def test_served_document_is_the_built_one_and_the_docs_copy(http):
    async with http.client() as c:
        r = await c.get("/api/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == openapi.document()
    assert DOCS.read_text() == openapi.dumps(), "docs/openapi.json is stale: python -m daemons.http.openapi > docs/openapi.json"


def test_document_is_valid_openapi():
    schema = schemathesis.openapi.from_dict(openapi.document())
    schema.validate()  # against the OpenAPI 3.1 meta-schema schemathesis ships
    operations = [op.ok() for op in schema.get_all_operations()]  # .ok() raises on an unusable operation
    assert len({op.definition.raw["operationId"] for op in operations}) == len(operations)


def _template(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path: /a/<slug>/b, /a/<int:n> → /a/{slug}/b, /a/{n}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


async def test_every_quart_route_is_documented(http):
    paths = openapi.document()["paths"]
    api = SenderApp(http.daemon.ctx).quart
    seen = set()
    for rule in api.url_map.iter_rules():
        path = _template(rule.rule)
        assert path in paths, f"route {rule.rule} is not in the OpenAPI document"
        for method in sorted(rule.methods - IMPLICIT_METHODS):
            assert method.lower() in paths[path], f"{method} {rule.rule} is not in the OpenAPI document"
        seen.add(path)
    assert {"/healthz", "/readyz", "/metrics", "/api/openapi.json", "/api/streams",
            "/api/streams/{slug}/playback", "/api/player/events", "/api/admin/management"} <= seen


def _path_regex(template: str, item: dict) -> re.Pattern:
    """The raw paths a documented path template admits, its parameters' patterns filled in."""
    patterns = {}
    for operation in [item] + [item[m] for m in HLS_METHODS & set(item)]:
        for p in operation.get("parameters", ()):
            if p["in"] == "path":
                patterns[p["name"]] = p["schema"]["pattern"].removeprefix("^").removesuffix("$")
    parts = re.split(r"\{([^}]+)\}", template)
    return re.compile("".join(re.escape(x) if i % 2 == 0 else f"(?:{patterns[x]})" for i, x in enumerate(parts)))


HLS_SAMPLES = [
    f"/hls/st_{'a' * 16}/gen_{'b' * 16}/{tail}"
    for tail in (
        "master.m3u8", "source/index.m3u8", "720p/index.m3u8", "source/init.mp4", "source/init-12.mp4",
        "source/7.m4s", "source/123456789012.m4s", "source/7.3.m4s", "a-b/7.123456.m4s",
        # not routes
        "index.m3u8", "source/master.m3u8", "source/x.m4s", "source/7.m4s.tmp", "source/../master.m3u8",
        "Source/index.m3u8", "-source/index.m3u8", "source/init-.mp4", "source/1234567890123.m4s", "source/7.1234567.m4s",
        "source/sub/index.m3u8", "source/7..m4s", "source/.7.m4s", "source/init.m4s",
    )
] + ["/hls/st_abc/gen_" + "b" * 16 + "/master.m3u8", f"/hls/st_{'a' * 16}/gen_{'B' * 16}/master.m3u8", "/hls/"]


def test_every_hls_route_is_documented():
    """The documented /hls paths admit exactly the URLs hls_route.ROUTE serves, with every method it answers."""
    paths = {p: item for p, item in openapi.document()["paths"].items() if p.startswith("/hls/")}
    assert paths
    documented = [_path_regex(p, item) for p, item in paths.items()]
    for item in paths.values():
        assert HLS_METHODS <= set(item), item
    for sample in HLS_SAMPLES:
        routed = hls_route.ROUTE.fullmatch(sample.encode()) is not None
        in_docs = any(r.fullmatch(sample) for r in documented)
        assert routed == in_docs, f"{sample}: served {routed}, documented {in_docs}"


def test_each_management_method_is_one_model_everywhere():
    """A method's params model is the schema capabilities answers and the one the document
    publishes: the same object, not an equal copy."""
    components = openapi.document()["components"]["schemas"]
    calls = {c["properties"]["method"]["const"]: c for c in components["ManagementRequest"]["oneOf"]}
    assert list(calls) == list(management.METHODS)
    envelope = schemas.schema_of(schemas.Call)
    for name, m in management.METHODS.items():
        params = schemas.schema_of(m.params)
        assert m.describe()["params"] is params and calls[name]["properties"]["params"] is params, name
        assert calls[name]["description"] == m.description
        assert calls[name]["properties"]["id"] is envelope["properties"]["id"]
        if m.result is not None:
            assert components[calls[name]["x-result"]] is schemas.schema_of(m.result), name
        else:
            assert "x-result" not in calls[name]


def test_every_body_schema_is_its_models():
    components = openapi.document()["components"]["schemas"]
    for model in openapi.MODELS:
        assert components[model.__name__] is schemas.schema_of(model), model.__name__


async def test_document_lists_the_management_methods_capabilities_answers(http, management_token):
    async with http.client(headers={"Authorization": f"Bearer {management_token}"}) as c:
        r = await c.post("/api/admin/management", json={"jsonrpc": "2.0", "method": "capabilities", "id": 1})
    assert r.status_code == 200, r.text
    calls = openapi.document()["components"]["schemas"]["ManagementRequest"]["oneOf"]
    documented = {c["properties"]["method"]["const"]: c["properties"]["params"] for c in calls}
    assert documented == {m["name"]: m["params"] for m in r.json()["result"]["methods"]}


async def test_a_keep_alive_connection_survives_an_answer_sent_before_the_request_body(http):
    """Found by schemathesis: a 405 (or 413, 429) answered by the Quart app before the request's
    body arrived left the connection neither closed nor reusable; the next request hung."""
    status, rest = await answer_before_late_body(http, "PUT", b"/healthz")
    assert status == b"HTTP/1.1 405 "
    assert rest == b"" or rest.startswith(b"HTTP/1.1 200")  # closed, or answered: never hanging


# --- schemathesis against a live daemon ---------------------------------------------------

async def _advance(gen: GenerationWriter) -> None:
    """The packager: one part per PART_S, so blocking reloads and preload hints resolve as live."""
    while True:
        await trio.sleep(PART_S)
        gen.add_part()


async def test_schemathesis_finds_no_server_error(http, management_token, tmp_path):
    secret = http.install.secret()
    with http.install.open_store() as store:
        public = domain.streams.create(store, "open", visibility="public")
        private = domain.streams.create(store, "hidden", visibility="private")
        unlisted = domain.streams.create(store, "quiet", visibility="unlisted")  # offline: no generation
        generations = {}
        for stream in (public, private):
            row, _ = domain.streams.start(store, stream["slug"])
            domain.generations.mark_live(store, row["id"])
            generations[stream["slug"]] = row["id"]
    live = GenerationWriter(http.install.spool_root, http.install.state_dir, public["id"], generation_id=generations["open"])
    live.add_segments(2)
    done = GenerationWriter(http.install.spool_root, http.install.state_dir, private["id"], generation_id=generations["hidden"])
    done.add_segments(2)
    done.end()
    await http.daemon.ctx.directory.refresh()

    # Real ids, slugs, files and tokens, drawn half of the time, so requests reach real data.
    config_file = tmp_path / "schemathesis.toml"
    dictionaries = {
        "slugs": [public["slug"], private["slug"], unlisted["slug"]],
        "stream_ids": [public["id"], private["id"], unlisted["id"]],
        "generation_ids": list(generations.values()),
        "renditions": ["source"],
        "files": ["init.mp4", "0.m4s", "1.m4s", "1.3.m4s", "2.0.m4s", "2.1.m4s", "3.m4s"],
        "tokens": [playback.mint_token(secret, private["id"], 600)["token"], "1.forged"],
    }
    bindings = {
        "path.slug": "slugs", "body.stream": "slugs", "path.stream_id": "stream_ids",
        "path.generation_id": "generation_ids", "body.generation_id": "generation_ids",
        "path.rendition": "renditions", "path.file": "files", "query.token": "tokens",
    }
    config_file.write_text(tomli_w.dumps({
        "dictionaries": {name: {"values": values} for name, values in dictionaries.items()},
        "parameters": {key: {"dictionary": name, "probability": 0.5} for key, name in bindings.items()},
    }))

    command = [
        str(SCHEMATHESIS), "--no-color", "--config-file", str(config_file), "run", f"{http.base_url}/api/openapi.json",
        "--url", http.base_url, "--checks", "not_a_server_error", "--max-examples", "25",
        # One worker: with several, hypothesis' lambda descriptions (ast.parse in threads) break on CPython 3.11.
        "--phases", "examples,coverage,fuzzing", "--workers", "1", "--seed", "1",
        "--request-timeout", "10", "--suppress-health-check", "all",
        "--header", f"Authorization: Bearer {management_token}",
    ]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_advance, live)
        with trio.fail_after(90):
            result = await trio.run_process(command, cwd=tmp_path, capture_stdout=True, capture_stderr=True, check=False)
        nursery.cancel_scope.cancel()
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, output
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected and tested and tested[1] == selected[1] == selected[2], output  # every operation, tested
