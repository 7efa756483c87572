"""`sender token create|list|revoke` (management API tokens) and `sender stream token` (playback
tokens), through typer's runner and once as a real subprocess; and the token functions beneath."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from daemons.core import config as config_mod
from daemons.core.domain import mgmt_tokens, playback
from daemons.core.errors import InvalidInput, NotFound
from sender_cli.app import app
from tests.cli.cli_helpers import assert_one_line_error

KEY = "management.token_verifiers"


@pytest.fixture
def cli(config_path):
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args), env={"SENDER_CONFIG": str(config_path)})

    return run


def ok_json(result):
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.stderr == ""
    return json.loads(result.stdout)


def verifiers(config_path) -> list[str]:
    return config_mod.load(config_path)[KEY]


# --- sender token ----------------------------------------------------------------------------


def test_token_create_prints_the_token_once_and_keeps_only_its_verifier(cli, config_path, secret):
    before = config_path.read_text()
    data = ok_json(cli("token", "create", "--label", "legion prod", "--json"))
    token = data["token"]
    assert mgmt_tokens.TOKEN.fullmatch(token) and data["prefix"] == token.split("_", 1)[0]
    assert data["label"] == "legion prod" and data["config"] == str(config_path)
    text = config_path.read_text()
    assert token not in text and token.split("_", 1)[1] not in text  # never the token, nor its secret part
    assert mgmt_tokens.verify(secret, token, verifiers(config_path)).ok
    # The rewrite keeps every comment and value the file had.
    assert "# Verifiers of management API tokens" in text
    comments = lambda t: [line for line in t.splitlines() if line.startswith("#")]  # noqa: E731
    assert comments(text) == comments(before)
    old_values, new_values = config_mod.from_text(before).values, config_mod.from_text(text).values
    assert {k: v for k, v in new_values.items() if k != KEY} == {k: v for k, v in old_values.items() if k != KEY}
    listed = ok_json(cli("token", "list", "--json"))
    assert listed == [{"prefix": data["prefix"], "label": "legion prod", "created_at": data["created_at"]}]
    assert token not in json.dumps(listed)


def test_two_tokens_verify_separately_and_revoke_removes_one(cli, config_path, secret):
    a = ok_json(cli("token", "create", "--json"))
    b = ok_json(cli("token", "create", "--label", "b", "--json"))
    assert a["prefix"] != b["prefix"]
    assert [t["prefix"] for t in ok_json(cli("token", "list", "--json"))] == [a["prefix"], b["prefix"]]
    assert ok_json(cli("token", "revoke", a["prefix"], "--json")) == {"revoked": a["prefix"], "label": ""}
    assert not mgmt_tokens.verify(secret, a["token"], verifiers(config_path)).ok
    assert mgmt_tokens.verify(secret, b["token"], verifiers(config_path)).ok
    assert [t["prefix"] for t in ok_json(cli("token", "list", "--json"))] == [b["prefix"]]

    again = cli("token", "revoke", a["prefix"])
    assert again.exit_code == 1 and f"no management token {a['prefix']!r}" in assert_one_line_error(again.stderr, again.stdout)
    bad = cli("token", "revoke", "nope")
    assert bad.exit_code == 1 and "mt + 10 hex" in assert_one_line_error(bad.stderr, bad.stdout)


def test_token_human_output(cli):
    created = cli("token", "create")
    assert created.exit_code == 0 and "shown once" in created.stdout and "Authorization: Bearer" in created.stdout
    listed = cli("token", "list")
    assert listed.exit_code == 0 and "Management tokens" in listed.stdout and "mt" in listed.stdout
    bad = cli("token", "create", "--label", "x" * 101)
    assert bad.exit_code == 1 and "label" in assert_one_line_error(bad.stderr, bad.stdout)


def test_token_create_as_a_real_process(sender, config_path, secret):
    done = sender("token", "create", "--json")
    assert done.returncode == 0, done.stderr
    assert mgmt_tokens.verify(secret, done.json()["token"], verifiers(config_path)).ok
    assert done.stderr == ""


# --- sender stream token ---------------------------------------------------------------------


def test_stream_token_mints_a_playback_token(cli, install, secret):
    stream = ok_json(cli("stream", "create", "hidden", "--visibility", "private", "--json"))
    data = ok_json(cli("stream", "token", "hidden", "--json"))
    assert data["ttl_s"] == 6 * 3600  # http.playback_token_ttl's default
    assert abs(data["expires_at"] - (time.time() + 6 * 3600)) < 60
    assert playback.token_valid(secret, stream["id"], data["token"])
    assert not playback.token_valid(secret, "st_other", data["token"])
    assert data["playback_url"].endswith(f"/api/streams/hidden/playback?token={data['token']}")
    assert ok_json(cli("stream", "token", "hidden", "--ttl", "15m", "--json"))["ttl_s"] == 900
    assert ok_json(cli("stream", "token", stream["id"], "--ttl", "90", "--json"))["ttl_s"] == 90
    ok_json(cli("config", "set", "http.playback_token_ttl", "2h", "--json"))
    assert ok_json(cli("stream", "token", "hidden", "--json"))["ttl_s"] == 7200
    human = cli("stream", "token", "hidden")
    assert human.exit_code == 0 and "Playback token for hidden" in human.stdout


@pytest.mark.parametrize("args, says", [
    (["stream", "token", "ghost"], "no stream 'ghost'"),
    (["stream", "token", "hidden", "--ttl", "soon"], "--ttl 'soon' is not allowed"),
    (["stream", "token", "hidden", "--ttl", "0"], "ttl_s must be a whole number"),
    (["stream", "token", "hidden", "--ttl", "90d"], "ttl_s must be a whole number"),
])
def test_stream_token_errors_are_one_line(cli, args, says):
    ok_json(cli("stream", "create", "hidden", "--visibility", "private", "--json"))
    result = cli(*args)
    assert result.exit_code == 1
    assert says in assert_one_line_error(result.stderr, result.stdout)


# --- the token functions ---------------------------------------------------------------------


def test_verifiers_check_in_constant_form(secret):
    token, entry, info = mgmt_tokens.create(secret, label="a:b")
    assert entry.startswith(f"{info.prefix}:{mgmt_tokens.digest(secret, token)}:")
    assert mgmt_tokens.parse_verifier(entry).label == "a:b"  # labels may hold the separator
    assert mgmt_tokens.verify(secret, token, [entry]) == mgmt_tokens.TokenCheck(True, "ok", info.prefix)
    # The bare form `<prefix>:<digest>` is a verifier too.
    assert mgmt_tokens.verify(secret, token, [f"{info.prefix}:{info.digest}"]).ok
    assert mgmt_tokens.verify(secret, token, []).reason == "unknown"
    assert mgmt_tokens.verify(b"another secret, another install!", token, [entry]).reason == "unknown"
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert mgmt_tokens.verify(secret, tampered, [entry]) == mgmt_tokens.TokenCheck(False, "unknown", info.prefix)
    for garbled in (None, "", "mt12_x", token + "x", token.replace("mt", "sk", 1)):
        assert mgmt_tokens.verify(secret, garbled, [entry]).reason == "malformed"
    # Entries that are not verifiers are ignored, never matched.
    assert mgmt_tokens.list_(["junk", entry, ""]) == [info.public()]


def test_revoke_by_prefix_or_whole_token(secret):
    t1, e1, i1 = mgmt_tokens.create(secret)
    t2, e2, _ = mgmt_tokens.create(secret)
    assert mgmt_tokens.revoke([e1, e2], i1.prefix) == ([e2], i1)
    assert mgmt_tokens.revoke([e1, e2], t1)[0] == [e2]
    with pytest.raises(NotFound) as e:
        mgmt_tokens.revoke([e2], i1.prefix)
    assert e.value.field == "prefix"
    with pytest.raises(InvalidInput):
        mgmt_tokens.revoke([e1], "mt1")
