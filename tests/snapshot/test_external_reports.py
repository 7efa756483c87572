"""External endpoints report their own snapshots to a real sender-http on 127.0.0.1:
POST /api/endpoints/<id>/snapshots with the endpoint's token or its HMAC signature."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import trio

from daemons.core import domain
from daemons.core.domain.common import iso
from daemons.core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.conftest import SenderProcess
from tests.http.conftest import make_http_install, start_http


@pytest.fixture
def inst(tmp_path):
    inst = make_http_install(tmp_path / "var")
    with inst.open_store() as store:
        domain.endpoints.upsert(store, "mux1", type="external_origin", name="ffmpeg packager")
        domain.endpoints.upsert(store, "mux2", type="external_edge")
        domain.endpoints.upsert(store, "origin", type="tribes_origin", node_id="node-x")
    return inst


def mint(inst, endpoint_id: str) -> str:
    with inst.open_store() as store:
        return domain.endpoints.mint_report_token(store, inst.secret(), endpoint_id)


def signed(token: str, doc, ts: int | None = None) -> tuple[bytes, dict]:
    body = json.dumps(doc).encode()
    stamp = str(int(time.time()) if ts is None else ts)
    return body, {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(token.encode(), stamp, body)}


def stored(inst, endpoint_id: str) -> tuple[list, list]:
    with inst.open_store() as store:
        return domain.snapshots.list_(store, endpoint_id), domain.snapshots.history(store, endpoint_id, limit=10_000)


async def test_signed_report_is_recorded_once_and_a_replay_is_refused(nursery, inst):
    http = await start_http(nursery, inst)
    token = mint(inst, "mux1")
    doc = {"snapshots": [
        {"status": "healthy", "viewers": 42, "ingress_bps": 3_000_000, "egress_bps": 90_000_000, "playlist_age_s": 0.8,
         "observed_at": iso(time.time())},
        {"generation_id": "show-1", "status": "healthy", "viewers": 42, "segment_lag": 0},
    ]}
    body, headers = signed(token, doc)
    async with http.client() as c:
        r = await c.post("/api/endpoints/mux1/snapshots", content=body, headers=headers)
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 2
        latest, hist = stored(inst, "mux1")
        assert [(s["generation_id"], s["viewers"], s["reporter"]) for s in latest] == [("", 42, "mux1"), ("show-1", 42, "mux1")]
        assert len(hist) == 2

        again = await c.post("/api/endpoints/mux1/snapshots", content=body, headers=headers)  # captured and replayed
        assert again.status_code == 409 and again.json()["error"]["code"] == "replayed"
        assert len(stored(inst, "mux1")[1]) == 2

        # The plain bearer token works too.
        r = await c.post("/api/endpoints/mux1/snapshots", json={"status": "degraded", "viewers": 7},
                         headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 202, r.text
        assert stored(inst, "mux1")[0][0]["status"] == "degraded"


async def test_a_replay_to_another_http_worker_is_refused_too(nursery, inst):
    first = await start_http(nursery, inst)
    second = await start_http(nursery, inst, worker=1)  # another worker of the same node
    body, headers = signed(mint(inst, "mux1"), {"status": "healthy", "viewers": 5})
    async with first.client() as a, second.client() as b:
        assert (await a.post("/api/endpoints/mux1/snapshots", content=body, headers=headers)).status_code == 202
        again = await b.post("/api/endpoints/mux1/snapshots", content=body, headers=headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "replayed"
    assert len(stored(inst, "mux1")[1]) == 1


async def test_bad_signature_old_timestamp_wrong_token_and_missing_auth_write_nothing(nursery, inst):
    http = await start_http(nursery, inst)
    token = mint(inst, "mux1")
    other = mint(inst, "mux2")
    doc = {"status": "healthy", "viewers": 1}
    async with http.client() as c:
        body, headers = signed(token, doc)
        tampered = body.replace(b'"viewers": 1', b'"viewers": 9')
        r = await c.post("/api/endpoints/mux1/snapshots", content=tampered, headers=headers)
        assert r.status_code == 401 and SIGNATURE_HEADER in r.json()["error"]["message"]
        assert "WWW-Authenticate" in r.headers

        body, headers = signed(other, doc)  # mux2's token does not sign for mux1
        r = await c.post("/api/endpoints/mux1/snapshots", content=body, headers=headers)
        assert r.status_code == 401

        body, headers = signed(token, doc, ts=int(time.time()) - 3600)  # an old capture, re-sent
        r = await c.post("/api/endpoints/mux1/snapshots", content=body, headers=headers)
        assert r.status_code == 401 and "clock" in r.json()["error"]["message"]

        body, headers = signed(token, doc)  # a signature header that is not even ASCII
        r = await c.post("/api/endpoints/mux1/snapshots", content=body, headers={**headers, SIGNATURE_HEADER: b"sha256=\xff"})
        assert r.status_code == 401 and SIGNATURE_HEADER in r.json()["error"]["message"]

        r = await c.post("/api/endpoints/mux1/snapshots", json=doc, headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 401
        r = await c.post("/api/endpoints/mux1/snapshots", json=doc)
        assert r.status_code == 401 and "authentication required" in r.json()["error"]["message"]

        # A new token replaces the old one.
        new = mint(inst, "mux1")
        r = await c.post("/api/endpoints/mux1/snapshots", json=doc, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        r = await c.post("/api/endpoints/mux1/snapshots", json=doc, headers={"Authorization": f"Bearer {new}"})
        assert r.status_code == 202
    assert len(stored(inst, "mux1")[1]) == 1


async def test_unknown_endpoint_sender_endpoint_and_endpoint_without_token(nursery, inst):
    http = await start_http(nursery, inst)
    token = mint(inst, "mux1")
    async with http.client() as c:
        body, headers = signed(token, {"status": "healthy"})
        r = await c.post("/api/endpoints/nope/snapshots", content=body, headers=headers)
        assert r.status_code == 404 and r.json()["error"] == {"code": "not_found", "message": "no endpoint 'nope'", "field": "endpoint_id"}
        r = await c.post("/api/endpoints/origin/snapshots", content=body, headers=headers)
        assert r.status_code == 403 and "sender-snapshot" in r.json()["error"]["message"]
        r = await c.post("/api/endpoints/mux2/snapshots", content=body, headers=headers)
        assert r.status_code == 401 and "sender endpoint token mux2" in r.json()["error"]["message"]
    with inst.open_store() as store:
        assert store.query("SELECT count(*) AS n FROM endpoint_history")[0]["n"] == 0
        with pytest.raises(domain.endpoints.InvalidInput, match="only external endpoints"):
            domain.endpoints.mint_report_token(store, inst.secret(), "origin")


@pytest.mark.parametrize("doc, field", [
    ({"status": "great"}, "status"),
    ({"status": "healthy", "viewers": -1}, "viewers"),
    ({"status": "healthy", "viewers": 10**12}, "viewers"),
    ({"status": "healthy", "viewers": "12"}, "viewers"),
    ({"status": "healthy", "egress_bps": 10**15}, "egress_bps"),
    ({"status": "healthy", "playlist_age_s": 1e9}, "playlist_age_s"),
    ({"status": "healthy", "observed_at": "yesterday"}, "observed_at"),
    ({"status": "healthy", "observed_at": "2026-01-01T00:00:00"}, "observed_at"),  # no zone
    ({"status": "healthy", "observed_at": "2001-01-01T00:00:00Z"}, "observed_at"),  # absurdly old
    ({"status": "healthy", "observed_at": "2999-01-01T00:00:00Z"}, "observed_at"),  # the future
    ({"status": "healthy", "endpoint_id": "mux2"}, "endpoint_id"),
    ({"status": "healthy", "reporter": "someone-else"}, "reporter"),
    ({"status": "healthy", "bananas": 1}, "bananas"),
    ({"snapshots": []}, "snapshots"),
    ({"snapshots": [{"status": "healthy"}, {"status": "healthy"}]}, "generation_id"),  # the same row twice
    ({"snapshots": [{"status": "healthy"}, {"generation_id": "g", "status": "bad"}]}, "snapshots[1].status"),  # none written
    ({"snapshots": [{"status": "healthy", "viewers": True}]}, "snapshots[0].viewers"),
    ({"snapshots": {"status": "healthy"}}, "snapshots"),
    ({"snapshots": [{"status": "healthy"}], "extra": 1}, "extra"),
])
async def test_malformed_payloads_are_refused_with_the_field_and_nothing_written(nursery, inst, doc, field):
    http = await start_http(nursery, inst)
    token = mint(inst, "mux1")
    body, headers = signed(token, doc)
    async with http.client() as c:
        r = await c.post("/api/endpoints/mux1/snapshots", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_input" and r.json()["error"]["field"] == field
    assert stored(inst, "mux1") == ([], [])


async def test_not_json_too_large_and_rate_limited(nursery, inst):
    http = await start_http(nursery, inst)
    token = mint(inst, "mux1")
    auth = {"Authorization": f"Bearer {token}"}
    async with http.client() as c:
        for bad in (b"", b"not json", b"[1, 2]", b'"healthy"'):
            r = await c.post("/api/endpoints/mux1/snapshots", content=bad, headers=auth)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", bad
        r = await c.post("/api/endpoints/mux1/snapshots", content=b" " * (16 * 1024 + 1), headers=auth)
        assert r.status_code == 413
        codes = []
        for _ in range(130):
            r = await c.post("/api/endpoints/mux1/snapshots", json={"status": "healthy"}, headers=auth)
            codes.append(r.status_code)
        # 120 authenticated reports a minute, the 4 malformed ones above included
        assert codes[:116] == [202] * 116 and set(codes[116:]) == {429}
    assert len(stored(inst, "mux1")[1]) == 116


def test_cli_mints_a_token_that_the_api_accepts(inst, tmp_path):
    sender = SenderProcess(inst.config.path, tmp_path)
    result = sender("endpoint", "token", "mux1", "--json")
    assert result.returncode == 0, result.stderr
    doc = result.json()
    with inst.open_store() as store:
        _, salt = domain.endpoints.report_credentials(store, "mux1")
        assert doc["token"] == domain.endpoints.report_token(inst.secret(), "mux1", salt)
        assert "report_token_salt" not in domain.endpoints.get(store, "mux1")
        assert salt not in json.dumps(domain.endpoints.list_(store))
    result = sender("endpoint", "token", "origin")
    assert result.returncode == 1 and "only external endpoints" in result.stderr + result.stdout


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")), reason="needs curl and openssl")
async def test_the_runbooks_openssl_and_curl_report_is_accepted(nursery, inst):
    """docs/runbooks/external-mux.md's signed report, as a shell runs it."""
    http = await start_http(nursery, inst)
    token = mint(inst, "mux1")
    script = f"""
TOKEN={token}
BODY='{{"status": "healthy", "viewers": 12, "playlist_age_s": 1.2}}'
TS=$(date +%s)
SIG=$(printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$TOKEN" -r | cut -d' ' -f1)
curl -fsS {http.base_url}/api/endpoints/mux1/snapshots \\
  -H 'Content-Type: application/json' -H "X-Sender-Timestamp: $TS" -H "X-Sender-Signature: sha256=$SIG" \\
  --data-binary "$BODY"
"""
    done = await trio.run_process(["sh", "-c", script], capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["accepted"] == 1
    assert stored(inst, "mux1")[0][0]["viewers"] == 12


def test_a_re_created_endpoint_does_not_take_the_old_token(inst):
    token = mint(inst, "mux1")
    with inst.open_store() as store:
        domain.endpoints.delete(store, "mux1")
        domain.endpoints.upsert(store, "mux1", type="external_origin")
        _, salt = domain.endpoints.report_credentials(store, "mux1")
    assert salt == "" and token != domain.endpoints.report_token(inst.secret(), "mux1", salt)
