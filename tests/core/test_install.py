"""`init(directory=…)` lays down a complete install; `Install.load` opens it again."""

from __future__ import annotations

import stat

import pytest

from daemons.core import config as cfg
from daemons.core.errors import ConfigError
from daemons.core.install import Install, init

ALL = ["0001_streams_keys_generations", "0002_media_endpoints", "0003_renditions_snapshots", "0004_measured_bandwidth_player_events",
       "0005_endpoint_report_tokens", "0006_mirrored_streams",
       "0007_publisher_presence_reconnect_grace", "0008_recordings_restream", "0009_history_by_time"]


def test_init_lays_down_everything_under_the_directory(tmp_path):
    d = tmp_path / "var"
    result = init(directory=d)
    assert result.config_path == d / "sender.toml"
    assert {d, d / "state", d / "spool", d / "sender.toml", d / "state" / "secret", d / "state" / "sender.db"} <= set(result.created)

    text = (d / "sender.toml").read_text()
    for key, spec in cfg.SCHEMA.items():  # complete and commented: every key with its doc
        assert f"# {spec.doc}" in text, key
    loaded = cfg.load(d / "sender.toml")
    assert set(loaded.explicit) == set(cfg.SCHEMA)
    assert loaded["node.state_dir"] == str(d / "state")
    assert loaded["spool.root"] == str(d / "spool")
    assert loaded["store.path"] == str(d / "state" / "sender.db")
    assert loaded["rtmp.listen"] == "0.0.0.0:1935" and loaded["http.listen"] == "0.0.0.0:8080"
    assert loaded["hls.segment_target_s"] == 2.0 and loaded["hls.part_target_s"] == 0.2 and loaded["hls.low_latency"] is True

    secret = d / "state" / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text().strip()) >= 64

    inst = Install.load(d / "sender.toml")
    assert inst.state_dir == d / "state" and inst.spool_root == d / "spool"
    assert inst.secret() == secret.read_text().strip().encode()
    with inst.open_store() as store:
        assert store.schema_version() == ALL


def test_init_refuses_an_existing_install_unless_forced(tmp_path):
    d = tmp_path / "var"
    init(directory=d)
    (d / "sender.toml").write_text((d / "sender.toml").read_text().replace('name = "Sender"', 'name = "Mine"'))
    old_secret = (d / "state" / "secret").read_bytes()
    with pytest.raises(ConfigError, match="already exists.*--force"):
        init(directory=d)
    assert cfg.load(d / "sender.toml")["node.name"] == "Mine"  # untouched
    assert (d / "state" / "secret").read_bytes() == old_secret

    init(directory=d, force=True)
    assert cfg.load(d / "sender.toml")["node.name"] == "Sender"
    assert (d / "state" / "secret").read_bytes() != old_secret


def test_init_keeps_an_existing_store(tmp_path):
    from daemons.core import domain

    d = tmp_path / "var"
    init(directory=d)
    with Install.load(d / "sender.toml").open_store() as store:
        domain.streams.create(store, "demo")
    init(directory=d, force=True)
    with Install.load(d / "sender.toml").open_store() as store:
        assert domain.streams.get(store, "demo")["slug"] == "demo"


def test_missing_or_short_secret_is_a_config_error(install, install_dir):
    secret = install_dir / "state" / "secret"
    secret.write_text("short\n")
    with pytest.raises(ConfigError, match="too short"):
        install.secret()
    secret.unlink()
    with pytest.raises(ConfigError, match="missing"):
        install.secret()
