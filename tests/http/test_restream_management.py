"""Restream targets through the management API over real HTTP, and the domain's rules under them:
the URL answered masked by every method and never logged, rtmp/rtmps only, at most
restream.max_targets, a URL once per stream, errors that name the field without repeating the
URL; stream.status lists the targets with their state. `mask`/`redact` against garbage."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from daemons.core import domain
from daemons.core.domain import restream
from daemons.core.errors import InvalidInput
from sender_cli.app import app as sender_app
from tests.http.test_management import API, add_token  # noqa: F401 - API for the fixture below

KEY = "abcd-efgh-ijkl-mnop-qrst"
YOUTUBE = f"rtmp://a.rtmp.youtube.com/live2/{KEY}"


@pytest.fixture
async def api(http):
    async with http.client() as c:
        yield API(c, add_token(http.install))


async def test_targets_are_added_listed_switched_and_removed_masked(api, http, caplog):
    caplog.set_level(logging.DEBUG)
    with http.install.open_store() as store:
        domain.streams.create(store, "show")
        domain.streams.create(store, "other")
    added = await api.ok("restream.add", stream="show", url=YOUTUBE, label="YouTube")
    assert added["url"] == "rtmp://a.rtmp.youtube.com/live2/ab…st" and added["enabled"] is True
    assert added["stream"] == "show" and added["label"] == "YouTube" and added["deleted_at"] is None
    second = await api.ok("restream.add", stream="show", url="rtmps://live.example.net:443/app/secret123456?k=v")
    assert second["url"] == "rtmps://live.example.net:443/app/se…56?…"
    await api.ok("restream.add", stream="other", url="rtmp://127.0.0.1/live/other-key-123")

    listed = await api.ok("restream.list", stream="show")
    assert [t["id"] for t in listed["targets"]] == [added["id"], second["id"]]
    assert len((await api.ok("restream.list"))["targets"]) == 3
    assert (await api.ok("restream.disable", target=added["id"]))["enabled"] is False
    status = await api.ok("stream.status", stream="show")
    assert [(t["id"], t["state"]) for t in status["restream"]] == [(added["id"], "disabled"), (second["id"], "idle")]
    assert (await api.ok("restream.enable", target=added["id"]))["enabled"] is True
    removed = await api.ok("restream.remove", target=second["id"])
    assert removed["deleted_at"] and [t["id"] for t in (await api.ok("restream.list", stream="show"))["targets"]] == [added["id"]]
    await api.fails("restream.remove", {"target": second["id"]}, 404, -32004, "target")
    await api.fails("restream.enable", {"target": "rt_nope"}, 404, -32004, "target")

    # The whole conversation, answers included, never showed or logged a key.
    logged = caplog.text + str([r.__dict__ for r in caplog.records])
    for secret in (KEY, "secret123456", "other-key-123", "k=v"):
        assert secret not in logged
    assert "'method': 'restream.add'" in logged  # the calls were logged, by method


async def test_bad_urls_and_too_many_targets_are_refused_without_repeating_the_url(api, http):
    with http.install.open_store() as store:
        domain.streams.create(store, "show")
    for url in ("http://example.com/live/k3y-secret", "rtmp:///live/k3y-secret", "rtmp://host/k3y-secret",
                "rtmp://host:99999/live/k3y-secret", "rtmp://host/live/k3y secret", "srt://host/live/k3y-secret", ""):
        error = await api.fails("restream.add", {"stream": "show", "url": url}, 400, -32602, "url")
        assert "k3y" not in error["message"], error
    error = await api.fails("restream.add", {"stream": "show", "url": "rtmp://h/" + "k" * 1000}, 400, -32602, "url")
    assert "kkkk" not in error["message"]
    await api.fails("restream.add", {"stream": "show", "url": 5}, 400, -32602, "url")
    await api.fails("restream.add", {"stream": "nope", "url": YOUTUBE}, 404, -32004, "stream")
    await api.ok("restream.add", stream="show", url=YOUTUBE)
    error = await api.fails("restream.add", {"stream": "show", "url": YOUTUBE}, 409, -32009, "url")
    assert KEY not in error["message"]
    limit = http.install.config["restream.max_targets"]
    for i in range(limit - 1):
        await api.ok("restream.add", stream="show", url=f"rtmp://127.0.0.1/live/key-{i:04d}-xyz")
    error = await api.fails("restream.add", {"stream": "show", "url": "rtmp://127.0.0.1/live/one-more-key"}, 409, -32009,
                            "stream")
    assert "restream.max_targets" in error["message"]


def test_cli_adds_lists_and_switches_targets_masked(install_dir, config_path):
    run = lambda *a, **kw: CliRunner().invoke(sender_app, ["--config", str(config_path), *a], **kw)  # noqa: E731
    assert run("stream", "create", "show").exit_code == 0
    added = run("restream", "add", "show", YOUTUBE, "--label", "YouTube", "--json")
    assert added.exit_code == 0, added.output
    target = json.loads(added.output)
    assert target["url"] == "rtmp://a.rtmp.youtube.com/live2/ab…st" and KEY not in added.output
    # "-" reads the URL from stdin: it stays out of the shell's history and the process list.
    piped = run("restream", "add", "show", "-", input="rtmps://live.example.net/app/piped-secret-key\n")
    assert piped.exit_code == 0 and "pi…ey" in piped.output and "piped-secret-key" not in piped.output, piped.output
    listed = json.loads(run("restream", "list", "--json").output)
    assert [(t["id"], t["url"], t["state"]) for t in listed][0] == (target["id"], target["url"], "idle")
    table = run("restream", "list")
    assert table.exit_code == 0 and "Restream targets" in table.output
    for output in (table.output, json.dumps(listed)):
        assert KEY not in output and "piped-secret-key" not in output
    assert "disabled" in run("restream", "disable", target["id"]).output
    assert "enabled" in run("restream", "enable", target["id"]).output
    assert run("restream", "remove", target["id"]).exit_code == 0
    assert target["id"] not in run("restream", "list", "show").output
    bad = run("restream", "add", "show", "http://example.com/live/k3y-secret")
    assert bad.exit_code == 1 and "rtmp://" in bad.output and "k3y" not in bad.output


# --- masking -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, masked", [
    (YOUTUBE, "rtmp://a.rtmp.youtube.com/live2/ab…st"),
    ("rtmp://live.twitch.tv/app/live_123_short", "rtmp://live.twitch.tv/app/li…rt"),
    ("rtmps://live-api-s.facebook.com:443/rtmp/FB-1-2-3", "rtmps://live-api-s.facebook.com:443/rtmp/FB…-3"),
    ("rtmp://user:pass@host/live/abc", "rtmp://…@host/live/…"),
    ("rtmp://host/live/key12345?token=zzz", "rtmp://host/live/ke…45?…"),
    ("rtmp://[::1]:1935/live/0123456789", "rtmp://[::1]:1935/live/01…89"),
])
def test_mask(url, masked):
    assert restream.mask(url) == masked
    assert restream.redact(f"[tcp] {url}: Connection refused", url) == f"[tcp] {masked}: Connection refused"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_check_url_and_mask_take_garbage(text):
    try:
        restream.check_url(text)
    except InvalidInput as e:  # the message never repeats the URL's secrets
        assert e.field == "url" and not any(len(s) >= 8 and s in e.message for s in restream._secrets(text))  # noqa: SLF001
    assert isinstance(restream.mask(text), str)
    redacted = restream.redact(f"error: {text} failed", text)
    for secret in restream._secrets(text):  # noqa: SLF001 - the parts a redaction must take out
        if len(secret) >= 8 and restream.MASK not in secret:
            assert secret not in redacted
