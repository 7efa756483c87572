"""The `sender` command through typer's test runner (in process): every command group, --json
output, one-line errors with the right exit codes, and `config set` for every key."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from tests.cli.cli_helpers import assert_one_line_error
from tests.config_values import non_default_text
from daemons.core import config as cfg
from daemons.core import domain
from daemons.core.install import Install
from sender_cli.app import app

# Commands that run daemons rather than print results (owned by the daemon work).
NOT_PRINTING = {("up",), ("daemon",)}


@pytest.fixture
def cli(config_path):
    runner = CliRunner()

    def run(*args: str, env: dict | None = None):
        return runner.invoke(app, list(args), env={"SENDER_CONFIG": str(config_path), **(env or {})})

    return run


def ok(result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.stderr == ""
    return result.stdout


def ok_json(result):
    return json.loads(ok(result))


def _commands(group, path=()):
    for name, command in group.commands.items():
        if (*path, name)[:1] in NOT_PRINTING:
            continue
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_printing_command_has_json():
    root = typer.main.get_command(app)
    commands = dict(_commands(root))
    assert {("stream", "create"), ("key", "create"), ("config", "get"), ("status",), ("init",)} <= set(commands)
    missing = [" ".join(path) for path, c in commands.items() if not any("--json" in p.opts for p in c.params)]
    assert missing == []


def test_every_command_group_is_mounted():
    root = typer.main.get_command(app)
    assert {"init", "status", "stream", "key", "endpoint", "rendition", "snapshot", "config"} <= set(root.commands)
    expect = {
        "stream": {"create", "list", "show", "update", "delete"},
        "key": {"create", "list", "revoke"},
        "endpoint": {"upsert", "list", "show", "link", "delete"},
        "rendition": {"upsert", "list", "delete"},
        "snapshot": {"list"},
        "config": {"show", "get", "set", "path", "validate"},
    }
    for group, names in expect.items():
        assert names <= set(root.commands[group].commands), group


def test_json_everywhere(cli, install, config_path):
    """Every printing command, run with --json on an install with data, prints valid JSON."""
    created = ok_json(cli("stream", "create", "demo", "--title", "Demo", "--json"))
    assert created["slug"] == "demo" and created["title"] == "Demo" and created["deleted_at"] is None
    key = ok_json(cli("key", "create", "demo", "--label", "obs", "--json"))
    assert {"key", "id", "stream"} <= set(key) and key["stream"] == "demo"
    ok_json(cli("endpoint", "upsert", "origin", "--type", "tribes_origin", "--json"))
    edge = ok_json(cli("endpoint", "upsert", "edge1", "--type", "tribes_edge", "--source", "origin",
                       "--threshold", "max_segment_lag=2", "--json"))
    assert edge["sources"] == ["origin"] and edge["health_thresholds"] == {"max_segment_lag": 2}
    with install.open_store() as store:
        domain.snapshots.record(store, {"endpoint_id": "edge1", "status": "healthy", "viewers": 4}, history_limit=10)

    outputs = {
        "stream list": ok_json(cli("stream", "list", "--json")),
        "stream show": ok_json(cli("stream", "show", "demo", "--json")),
        "stream update": ok_json(cli("stream", "update", "demo", "--visibility", "private", "--json")),
        "stream start": ok_json(cli("stream", "start", "demo", "--json")),
        "key list": ok_json(cli("key", "list", "--json")),
        "endpoint list": ok_json(cli("endpoint", "list", "--json")),
        "endpoint show": ok_json(cli("endpoint", "show", "edge1", "--json")),
        "endpoint link": ok_json(cli("endpoint", "link", "edge1", "--json")),
        "rendition upsert": ok_json(cli("rendition", "upsert", "demo", "720p", "--height", "720",
                                        "--video-bitrate", "2500000", "--json")),
        "rendition list": ok_json(cli("rendition", "list", "demo", "--json")),
        "snapshot list": ok_json(cli("snapshot", "list", "--json")),
        "config show": ok_json(cli("config", "show", "--json")),
        "config get": ok_json(cli("config", "get", "rtmp.listen", "--json")),
        "config path": ok_json(cli("config", "path", "--json")),
        "config validate": ok_json(cli("config", "validate", "--json")),
        "config set": ok_json(cli("config", "set", "node.name", "Studio", "--json")),
        "status": ok_json(cli("status", "--json")),
        "stream stop": ok_json(cli("stream", "stop", "demo", "--json")),
        "rendition delete": ok_json(cli("rendition", "delete", "demo", "720p", "--json")),
        "endpoint delete": ok_json(cli("endpoint", "delete", "edge1", "--json")),
        "key revoke": ok_json(cli("key", "revoke", key["id"], "--json")),
        "stream delete": ok_json(cli("stream", "delete", "demo", "--json")),
    }
    assert [s["slug"] for s in outputs["stream list"]] == ["demo"]
    assert outputs["stream show"]["keys"][0]["id"] == key["id"]
    assert [r["name"] for r in outputs["stream show"]["renditions"]] == ["source"]
    assert outputs["stream update"]["visibility"] == "private"
    assert outputs["stream start"]["status"] == "starting"
    assert outputs["endpoint show"]["snapshots"][0]["viewers"] == 4
    assert outputs["endpoint link"]["sources"] == []
    assert outputs["rendition upsert"]["height"] == 720
    assert {r["name"] for r in outputs["rendition list"]} == {"source", "720p"}
    assert outputs["snapshot list"][0]["endpoint_id"] == "edge1"
    assert outputs["config show"]["rtmp"]["limits"]["max_chunk_size"] == 65536
    assert outputs["config get"] == "0.0.0.0:1935"
    assert outputs["config path"] == {"path": str(config_path)}
    assert outputs["config validate"]["valid"] is True
    assert outputs["config set"]["value"] == "Studio"
    assert outputs["status"]["streams"] == 1 and outputs["status"]["keys"] == 1 and outputs["status"]["endpoints"] == 2
    assert outputs["status"]["active_generations"][0]["stream"] == "demo"
    assert outputs["stream stop"]["status"] == "ended"
    assert outputs["rendition delete"] == {"deleted": "720p"}
    assert outputs["endpoint delete"]["deleted_at"]
    assert outputs["key revoke"]["revoked_at"]
    assert outputs["stream delete"]["deleted_at"]
    # The key itself appears only in `key create`'s output.
    secret_part = key["key"].split("_", 1)[1]
    assert all(secret_part not in json.dumps(v) for v in outputs.values())
    assert ok_json(cli("stream", "list", "--json")) == []
    assert [s["slug"] for s in ok_json(cli("stream", "list", "--all", "--json"))] == ["demo"]


def test_human_output_is_tables_not_json(cli):
    ok(cli("stream", "create", "demo"))
    out = ok(cli("stream", "list"))
    assert "demo" in out and "Streams" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    shown = ok(cli("key", "create", "demo"))
    assert "shown once" in shown and "rtmp://" in shown


def test_key_create_json_key_verifies(cli, install):
    ok(cli("stream", "create", "demo"))
    data = ok_json(cli("key", "create", "demo", "--json"))
    assert data["url"] == f"{data['server']}/{data['key']}"
    assert data["server"] == "rtmp://127.0.0.1/live"
    with install.open_store() as store:
        check = domain.keys.verify(store, install.secret(), data["key"])
    assert check.ok and check.key_id == data["id"]
    ok(cli("config", "set", "rtmp.listen", "127.0.0.1:19351"))
    assert ok_json(cli("key", "create", "demo", "--json"))["server"] == "rtmp://127.0.0.1:19351/live"


def test_endpoint_upsert_twice_is_the_same_and_cycles_are_refused(cli):
    ok(cli("endpoint", "upsert", "a", "--type", "tribes_origin"))
    args = ("endpoint", "upsert", "b", "--type", "tribes_edge", "--source", "a", "--url", "https://b.example", "--json")
    assert ok_json(cli(*args)) == ok_json(cli(*args))
    assert len(ok_json(cli("endpoint", "list", "--json"))) == 2
    result = cli("endpoint", "link", "a", "b")
    assert result.exit_code == 1
    assert "cycle" in assert_one_line_error(result.stderr, result.stdout)
    result = cli("endpoint", "delete", "a")
    assert result.exit_code == 1 and "source of b" in assert_one_line_error(result.stderr)


@pytest.mark.parametrize(
    "args, code, says",
    [
        (["stream", "create", "Bad Slug"], 1, "slug 'Bad Slug'"),
        (["stream", "create", "x", "--visibility", "secret"], 1, "visibility"),
        (["stream", "show", "nope"], 1, "no stream 'nope'"),
        (["stream", "delete", "nope"], 1, "no stream 'nope'"),
        (["key", "create", "nope"], 1, "no stream 'nope'"),
        (["key", "revoke", "key_nope"], 1, "key_nope"),
        (["endpoint", "upsert", "e1"], 1, "type is required"),
        (["endpoint", "upsert", "e1", "--type", "tribes_edge", "--threshold", "bogus"], 1, "KEY=VALUE"),
        (["endpoint", "upsert", "e1", "--type", "tribes_edge", "--threshold", "max_segment_lag=x"], 1, "not a number"),
        (["endpoint", "upsert", "e1", "--type", "tribes_edge", "--source", "ghost"], 1, "'ghost'"),
        (["endpoint", "show", "ghost"], 1, "'ghost'"),
        (["rendition", "upsert", "demo", "720p"], 1, "needs height and video_bitrate"),
        (["rendition", "delete", "demo", "nope"], 1, "'nope'"),
        (["snapshot", "list", "--endpoint", "ghost"], 1, "'ghost'"),
        (["config", "set", "rtmp.listen", "nope"], 1, "rtmp.listen: 'nope' is not allowed: expected HOST:PORT"),
        (["config", "set", "rtmp.max_publishers", "0"], 1, "an integer from 1 to 10000"),
        (["config", "set", "rtmp.lisen", "x"], 1, "did you mean 'rtmp.listen'"),
        (["config", "get", "no.such.key"], 1, "no.such.key"),
        (["bogus"], 2, "No such command 'bogus'"),
        (["stream", "create"], 2, "Missing argument"),
        (["stream", "create", "x", "--bogus"], 2, "--bogus"),
        (["rendition", "upsert", "demo", "x", "--height", "abc"], 2, "'--height'"),
        (["stream", "list", "--config"], 2, "--config"),
    ],
)
def test_bad_input_is_one_line_and_exit_code(cli, config_path, args, code, says):
    ok(cli("stream", "create", "demo"))
    before = config_path.read_text()
    result = cli(*args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    line = assert_one_line_error(result.stderr, result.stdout)
    assert says in line
    assert config_path.read_text() == before  # a refused change leaves the file alone


def test_broken_config_file_is_one_line(cli, config_path):
    config_path.write_text(config_path.read_text() + "\n[rtmp\n")
    result = cli("stream", "list")
    assert result.exit_code == 1
    line = assert_one_line_error(result.stderr, result.stdout)
    assert str(config_path) in line and "TOML" in line
    config_path.write_text(config_path.read_text().replace("\n[rtmp\n", "\n").replace("[rtmp]\n", "[rtmp]\nport = 1\n"))
    result = cli("config", "validate")
    assert result.exit_code == 1 and "rtmp.port" in assert_one_line_error(result.stderr)


def test_missing_config_is_one_line(cli, tmp_path):
    result = cli("stream", "list", env={"SENDER_CONFIG": str(tmp_path / "none.toml")})
    assert result.exit_code == 1
    assert "sender init" in assert_one_line_error(result.stderr, result.stdout)


def test_every_key_is_settable_with_config_set(cli, config_path):
    for key in cfg.SCHEMA:
        text = non_default_text(key)
        expected = cfg.parse_value(key, text)
        out = ok_json(cli("config", "set", key, text, "--json"))
        assert out["value"] == expected, key
        assert ok_json(cli("config", "get", key, "--json")) == expected, key
    loaded = cfg.load(config_path)
    assert all(loaded[k] == cfg.parse_value(k, non_default_text(k)) for k in cfg.SCHEMA)
    assert all(f"# {spec.doc}" in config_path.read_text() for spec in cfg.SCHEMA.values())
    ok(cli("config", "validate"))


def test_config_get_plain_values(cli):
    assert ok(cli("config", "get", "hls.low_latency")) == "true\n"
    assert ok(cli("config", "get", "hls.segment_target_s")) == "2.0\n"
    assert json.loads(ok(cli("config", "get", "renditions.ladder"))) == [{"name": "source", "kind": "source"}]


def test_config_option_overrides_env(cli, tmp_path, config_path):
    from daemons.core.install import init

    other = init(directory=tmp_path / "other").config_path
    ok(cli("--config", str(other), "stream", "create", "elsewhere"))
    assert ok(cli("--config", str(other), "config", "path")).strip() == str(other)
    assert ok(cli("config", "path")).strip() == str(config_path)
    assert [s["slug"] for s in ok_json(cli("-c", str(other), "stream", "list", "--json"))] == ["elsewhere"]
    assert ok_json(cli("stream", "list", "--json")) == []
    with Install.load(other).open_store() as store:
        assert domain.streams.get(store, "elsewhere")


def test_init_through_the_runner(tmp_path):
    runner = CliRunner()
    d = tmp_path / "box"
    result = runner.invoke(app, ["init", "--dir", str(d), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config"] == str(d / "sender.toml")
    assert str(d / "state" / "secret") in data["created"]
    again = runner.invoke(app, ["init", "--dir", str(d)])
    assert again.exit_code == 1
    assert "--force" in assert_one_line_error(again.stderr, again.stdout)
    forced = runner.invoke(app, ["init", "--dir", str(d), "--force"])
    assert forced.exit_code == 0 and "Sender install ready" in forced.stdout


def test_no_arguments_shows_help(cli):
    result = cli()
    assert result.exit_code in (0, 2)
    assert "Usage" in result.stdout and "stream" in result.stdout
    result = cli("stream", "--help")
    assert result.exit_code == 0 and "create" in result.stdout
