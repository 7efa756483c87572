"""The installed `sender` console script as a real subprocess: the issue's acceptance flow,
one-line errors with exit codes, init/--force, --config over SENDER_CONFIG, `config …`, and
shell completion."""

from __future__ import annotations

import json
import tomllib

import pytest

from tests.cli.cli_helpers import assert_one_line_error
from daemons.core import config as cfg
from daemons.core import domain
from daemons.core.install import Install, init


def _ok(result) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def test_acceptance_flow(sender_noinstall, tmp_path):
    d = tmp_path / "D"
    out = _ok(sender_noinstall("init", "--dir", str(d)))
    assert f"SENDER_CONFIG={d / 'sender.toml'}" in out
    sender = sender_noinstall
    sender.config = d / "sender.toml"

    created = json.loads(_ok(sender("stream", "create", "demo", "--json")))
    assert created["slug"] == "demo"
    data = json.loads(_ok(sender("key", "create", "demo", "--json")))
    assert {"key", "id", "stream"} <= set(data) and data["stream"] == "demo"
    key = data["key"]
    prefix, secret_part = key.split("_", 1)
    assert len(secret_part) * 6 >= 128

    listed = json.loads(_ok(sender("stream", "list", "--json")))
    assert [s["slug"] for s in listed] == ["demo"]
    # Never shown again: not by any later command …
    for args in (("key", "list", "--json"), ("stream", "show", "demo", "--json"), ("status", "--json"), ("key", "list")):
        later = _ok(sender(*args))
        assert secret_part not in later
        if "--json" in args and args[0] != "status":
            assert prefix in later
    # … and `grep -r KEY D` finds it nowhere (store, WAL, config, secret, spool).
    files = [p for p in d.rglob("*") if p.is_file()]
    assert d / "state" / "sender.db" in files
    for p in files:
        data = p.read_bytes()
        assert key.encode() not in data, p
        assert secret_part.encode() not in data, p
    with Install.load(d / "sender.toml").open_store() as store:  # while the key still works
        assert domain.keys.verify(store, Install.load(d / "sender.toml").secret(), key, touch=False).ok


@pytest.mark.parametrize(
    "args, code, says",
    [
        (["stream", "create", "Not A Slug"], 1, "slug 'Not A Slug' is not allowed"),
        (["stream", "show", "ghost"], 1, "no stream 'ghost'"),
        (["config", "set", "rtmp.listen", "localhost"], 1, "rtmp.listen: 'localhost' is not allowed"),
        (["frobnicate"], 2, "No such command 'frobnicate'"),
        (["key", "create"], 2, "Missing argument"),
    ],
)
def test_bad_input_one_line_no_traceback(sender, args, code, says):
    result = sender(*args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert says in assert_one_line_error(result.stderr, result.stdout)


def test_no_config_is_one_line(sender_noinstall, tmp_path):
    result = sender_noinstall("stream", "list", SENDER_CONFIG=str(tmp_path / "missing.toml"))
    assert result.returncode == 1
    assert "sender init" in assert_one_line_error(result.stderr, result.stdout)


def test_init_refuses_existing_install_without_force(sender, install_dir):
    before = (install_dir / "sender.toml").read_bytes()
    secret = (install_dir / "state" / "secret").read_bytes()
    result = sender("init", "--dir", str(install_dir))
    assert result.returncode == 1
    assert "--force" in assert_one_line_error(result.stderr, result.stdout)
    assert (install_dir / "sender.toml").read_bytes() == before
    assert (install_dir / "state" / "secret").read_bytes() == secret
    forced = json.loads(_ok(sender("init", "--dir", str(install_dir), "--force", "--json")))
    assert forced["config"] == str(install_dir / "sender.toml")
    assert (install_dir / "state" / "secret").read_bytes() != secret


def test_config_option_overrides_env(sender, tmp_path, config_path):
    other = init(directory=tmp_path / "other").config_path
    assert _ok(sender("--config", str(other), "config", "path")).strip() == str(other)
    _ok(sender("--config", str(other), "stream", "create", "there"))
    with Install.load(other).open_store() as store:
        assert [s["slug"] for s in domain.streams.list_(store)] == ["there"]
    with Install.load(config_path).open_store() as store:
        assert domain.streams.list_(store) == []


def test_config_set_get_validate_keep_comments(sender, config_path):
    assert _ok(sender("config", "path")).strip() == str(config_path)
    _ok(sender("config", "set", "rtmp.listen", "127.0.0.1:19351"))
    assert _ok(sender("config", "get", "rtmp.listen")) == "127.0.0.1:19351\n"
    assert _ok(sender("config", "validate")).strip() == f"{config_path}: valid"
    text = config_path.read_text()
    assert tomllib.loads(text)["rtmp"]["listen"] == "127.0.0.1:19351"
    for spec in cfg.SCHEMA.values():
        assert f"# {spec.doc}" in text
    assert cfg.load(config_path)["rtmp.listen"] == "127.0.0.1:19351"


def test_shell_completion_script(sender):
    out = _ok(sender("--show-completion", "bash", SHELL="/bin/bash"))
    assert "_SENDER_COMPLETE=complete_bash" in out
    assert "complete " in out and "sender" in out


def test_completion_of_commands_slugs_and_config_keys(sender, install):
    with install.open_store() as store:
        domain.streams.create(store, "demo")
        domain.streams.create(store, "dev-night")
        domain.streams.create(store, "other")
        domain.endpoints.upsert(store, "edge1", type="tribes_edge")

    def complete(line: str) -> set[str]:
        words = line.split(" ")
        result = sender(_SENDER_COMPLETE="complete_bash", COMP_WORDS=line, COMP_CWORD=str(len(words) - 1))
        assert result.returncode == 0 and result.stderr == ""
        return set(result.stdout.split())

    assert complete("sender stream cr") == {"create"}
    assert complete("sender stream show de") == {"demo", "dev-night"}
    assert complete("sender config get rtmp.limits.max_chunk_si") == {"rtmp.limits.max_chunk_size"}
    assert "edge1" in complete("sender endpoint show ed")
