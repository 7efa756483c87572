"""The TOML config: parsing, validation errors that name key/value/allowed, rendering that
round-trips, and every schema key settable (parse_value → with_value → write → load)."""

from __future__ import annotations

import re
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.core.core_hypothesis import core

from tests.config_values import bounds, non_default_text
from daemons.core import config as cfg
from daemons.core.config import SCHEMA, Config, ConfigError

DEFAULTS = cfg.defaults()


# --- every key settable -------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(SCHEMA))
def test_every_key_is_settable_and_round_trips(key, tmp_path):
    path = tmp_path / "sender.toml"
    base = Config(cfg.defaults(), path)
    cfg.write(base, path)
    value = cfg.parse_value(key, non_default_text(key))
    assert value != SCHEMA[key].default, f"test value for {key} equals the default"
    changed = base.with_value(key, value)
    cfg.write(changed, path)
    loaded = cfg.load(path)
    assert loaded[key] == value
    assert key in loaded.explicit
    # Nothing else moved.
    assert {k: v for k, v in loaded.values.items() if k != key} == {k: v for k, v in DEFAULTS.items() if k != key}


def test_render_of_defaults_round_trips_and_documents_every_key():
    text = cfg.render(Config(cfg.defaults()))
    assert cfg.from_text(text).values == DEFAULTS
    for key, spec in SCHEMA.items():
        assert f"# {spec.doc}" in text, key
    tomllib.loads(text)  # plain TOML for any other tool


def test_rewrite_keeps_comments_and_file_mode(tmp_path):
    path = tmp_path / "sender.toml"
    cfg.write(Config(cfg.defaults(), path), path)
    path.chmod(0o600)
    loaded = cfg.load(path)
    cfg.write(loaded.with_value("rtmp.listen", "127.0.0.1:19351"), path)
    text = path.read_text()
    assert 'listen = "127.0.0.1:19351"' in text
    assert all(f"# {spec.doc}" in text for spec in SCHEMA.values())
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


def test_load_names_missing_file_and_env_override(tmp_path, monkeypatch):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        cfg.load(missing)
    monkeypatch.setenv("SENDER_CONFIG", str(missing))
    assert cfg.resolve_path() == missing
    assert cfg.resolve_path(tmp_path / "cli.toml") == tmp_path / "cli.toml"  # --config wins
    monkeypatch.delenv("SENDER_CONFIG")
    assert cfg.resolve_path() == cfg.DEFAULT_CONFIG_PATH


def test_partial_file_fills_in_defaults():
    c = cfg.from_text('[rtmp]\nlisten = "127.0.0.1:1"\n[rtmp.limits]\nmax_chunk_streams = 8\n')
    assert c["rtmp.listen"] == "127.0.0.1:1"
    assert c.listen("rtmp.listen") == ("127.0.0.1", 1)
    assert c["rtmp.limits.max_chunk_streams"] == 8
    assert c["http.listen"] == DEFAULTS["http.listen"]
    assert c.explicit == {"rtmp.listen", "rtmp.limits.max_chunk_streams"}
    assert c.seconds("spool.ended_retention") == 24 * 3600


# --- errors name the key, the value and what is allowed ------------------------------------------


@pytest.mark.parametrize(
    "text, key",
    [
        ("[rtmp]\nlisten_port = 1935\n", "rtmp.listen_port"),
        ("[rtmpx]\nlisten = \"0.0.0.0:1\"\n", "rtmpx"),
        ("[rtmp.limits]\nmax_chunks = 1\n", "rtmp.limits.max_chunks"),
        ("bogus = 1\n", "bogus"),
        ("[node.extra]\nx = 1\n", "node.extra"),
    ],
)
def test_unknown_keys_and_sections_are_errors_naming_them(text, key):
    with pytest.raises(ConfigError) as e:
        cfg.from_text(text)
    assert key in e.value.message
    assert "unknown" in e.value.message


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'rtmp.listen'"):
        cfg.require_key("rtmp.lisen")


@pytest.mark.parametrize(
    "key, toml_value, allowed",
    [
        ("rtmp.listen", "1935", "HOST:PORT"),
        ("rtmp.listen", '"localhost"', "HOST:PORT"),
        ("rtmp.max_publishers", '"64"', "integer from 1 to 10000"),
        ("rtmp.max_publishers", "0", "integer from 1 to 10000"),
        ("rtmp.max_publishers", "true", "integer from 1 to 10000"),
        ("hls.low_latency", '"yes"', "true or false"),
        ("hls.segment_target_s", "100.0", "number from 0.5 to 30"),
        ("node.public_base_url", '"ftp://x"', "http"),
        ("http.trusted_proxies", '["10.0.0.300"]', "CIDR"),
        ("http.trusted_proxies", '"10.0.0.0/8"', "list of strings"),
        ("spool.ended_retention", '"3 weeks"', "duration"),
        ("log.level", '"verbose"', "debug | info | warning | error"),
        ("renditions.ladder", "[]", "non-empty array"),
        ("renditions.ladder", '[{name = "x", kind = "transcode"}]', "needs height and video_bitrate"),
        ("renditions.ladder", '[{name = "a", kind = "source"}, {name = "a", kind = "source"}]', "unique"),
        ("renditions.ladder", '[{name = "a", kind = "source", fps = 30}]', "unknown rendition field 'fps'"),
    ],
)
def test_wrong_types_name_key_value_and_what_is_allowed(key, toml_value, allowed):
    table, leaf = key.rsplit(".", 1)
    with pytest.raises(ConfigError) as e:
        cfg.from_text(f"[{table}]\n{leaf} = {toml_value}\n")
    msg = e.value.message
    assert key in msg
    assert allowed in msg
    bad = tomllib.loads(f"v = {toml_value}")["v"]
    assert repr(bad)[:40] in msg  # the bad value itself


def test_table_where_a_value_belongs_is_an_error():
    with pytest.raises(ConfigError, match="rtmp.listen"):
        cfg.from_text('[rtmp.listen]\nhost = "x"\n')


@core
@given(st.text(max_size=300))
def test_garbage_toml_raises_only_config_error(text):
    try:
        c = cfg.from_text(text)
    except ConfigError as e:
        assert e.message and "\n" not in e.message.strip()
    else:
        assert set(c.values) == set(SCHEMA)


_toml_fragments = st.lists(
    st.sampled_from(
        ["[", "]", "[rtmp]", "[rtmp.limits]", "[http]", "listen", "=", '"', "'", "0.0.0.0:1935", "1", "-1",
         "true", "1e9", "[[x]]", "{", "}", ",", ".", "\n", " ", "#", "max_chunk_size", "nan", "inf", '"""']
    ),
    max_size=30,
).map("".join)


@core
@given(_toml_fragments)
def test_toml_shaped_garbage_raises_only_config_error(text):
    try:
        c = cfg.from_text(text)
    except ConfigError as e:
        assert e.message.startswith("config: ")
    else:
        assert set(c.values) == set(SCHEMA)


# --- parse_value / parse_listen / durations / ranges ----------------------------------------------


@core
@given(
    host=st.one_of(
        st.ip_addresses(v=4).map(str),
        st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    ),
    port=st.integers(0, 65535),
)
def test_parse_listen_accepts_host_port(host, port):
    assert cfg.parse_listen(f"{host}:{port}") == (host, port)
    assert cfg.parse_value("rtmp.listen", f"{host}:{port}") == f"{host}:{port}"


@core
@given(host=st.ip_addresses(v=6).map(str), port=st.integers(0, 65535))
def test_parse_listen_accepts_bracketed_ipv6(host, port):
    assert cfg.parse_listen(f"[{host}]:{port}") == (host, port)


@core
@given(st.text(max_size=60))
def test_parse_listen_rejects_with_value_error_only(text):
    try:
        host, port = cfg.parse_listen(text)
    except ValueError:
        return
    assert 0 <= port <= 65535
    written_host, written_port = text.rsplit(":", 1)
    assert written_host in (host, f"[{host}]")
    assert int(written_port) == port


@core
@given(port=st.integers(65536, 10**5 - 1))
def test_parse_listen_rejects_port_out_of_range(port):
    with pytest.raises(ValueError, match="port"):
        cfg.parse_listen(f"0.0.0.0:{port}")
    with pytest.raises(ConfigError, match="rtmp.listen"):
        cfg.parse_value("rtmp.listen", f"0.0.0.0:{port}")


@core
@given(st.text(max_size=40))
def test_parse_value_raises_only_config_error(text):
    for key in ("rtmp.listen", "rtmp.rtmps_listen", "rtmp.max_publishers", "hls.part_target_s", "hls.low_latency",
                "spool.ended_retention", "http.trusted_proxies", "renditions.ladder", "node.public_base_url",
                "log.level", "backend.extra_args", "node.name"):
        try:
            value = cfg.parse_value(key, text)
        except ConfigError as e:
            assert e.message.startswith(f"{key}: ")
        else:
            assert cfg.check_value(key, value) == value  # what parse_value returns is valid


@core
@given(n=st.integers(0, 10**6), unit=st.sampled_from(["", "s", "m", "h", "d"]))
def test_durations(n, unit):
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert cfg.parse_duration(f"{n}{unit}") == n * factor
    assert cfg.parse_duration(n) == n
    assert cfg.parse_duration(cfg.parse_value("spool.ended_retention", f"{n}{unit}")) == n * factor


@core
@given(st.one_of(st.integers(max_value=-1), st.floats(max_value=-1e-9, allow_nan=False), st.booleans(),
                 st.text(alphabet="abcxyz -+!", min_size=1, max_size=10)))
def test_bad_durations_are_rejected(v):
    with pytest.raises(ValueError):
        cfg.parse_duration(v)
    with pytest.raises(ConfigError, match="spool.ended_retention"):
        cfg.check_value("spool.ended_retention", v)


int_keys = [k for k, s in SCHEMA.items() if s.kind.name.startswith("an integer from")]


@core
@given(key=st.sampled_from(int_keys), data=st.data())
def test_ints_in_range_accepted_out_of_range_rejected(key, data):
    lo, hi = (int(b) for b in bounds(SCHEMA[key].kind.name))
    good = data.draw(st.integers(lo, hi))
    assert cfg.parse_value(key, str(good)) == good
    bad = data.draw(st.one_of(st.integers(lo - 10**6, lo - 1), st.integers(hi + 1, hi + 10**6)))
    with pytest.raises(ConfigError) as e:
        cfg.parse_value(key, str(bad))
    assert key in e.value.message and str(bad) in e.value.message and f"from {lo} to {hi}" in e.value.message
    with pytest.raises(ConfigError):
        cfg.check_value(key, float(good) + 0.5)


float_keys = [k for k, s in SCHEMA.items() if s.kind.name.startswith("a number from")]


@core
@given(key=st.sampled_from(float_keys), data=st.data())
def test_floats_in_range_accepted_out_of_range_rejected(key, data):
    lo, hi = bounds(SCHEMA[key].kind.name)
    good = data.draw(st.floats(lo, hi))
    assert cfg.parse_value(key, repr(good)) == good
    bad = data.draw(st.one_of(st.floats(max_value=lo, exclude_max=True), st.floats(min_value=hi, exclude_min=True),
                              st.just(float("nan"))))
    with pytest.raises(ConfigError, match=re.escape(key)):
        cfg.parse_value(key, repr(bad))


def test_bool_texts():
    for text in ("true", "yes", "on", "1", "TRUE"):
        assert cfg.parse_value("hls.low_latency", text) is True
    for text in ("false", "no", "off", "0"):
        assert cfg.parse_value("hls.low_latency", text) is False
    with pytest.raises(ConfigError, match="true or false"):
        cfg.parse_value("hls.low_latency", "maybe")


def test_nul_in_strings_is_rejected():
    with pytest.raises(ConfigError, match="node.name"):
        cfg.parse_value("node.name", "a\x00b")


def test_url_trailing_slash_is_normalised():
    assert cfg.parse_value("node.public_base_url", "https://x.example/") == "https://x.example"
    assert cfg.parse_value("control_plane.report_url", "") == ""


_rendition = st.fixed_dictionaries(
    {
        "name": st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True),
        "kind": st.just("transcode"),
        "height": st.integers(16, 4320),
        "video_bitrate": st.integers(50_000, 100_000_000),
    },
    optional={
        "width": st.integers(16, 7680),
        "audio_bitrate": st.integers(8_000, 1_000_000),
        "frame_rate": st.floats(1, 240),
        "video_codec": st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=30),
        "audio_codec": st.text(max_size=10).filter(lambda s: "\x00" not in s),
    },
)


@core
@given(st.lists(_rendition, min_size=1, max_size=4, unique_by=lambda r: r["name"]))
def test_any_valid_ladder_survives_render_and_load(ladder):
    c = Config(cfg.defaults()).with_value("renditions.ladder", ladder)
    loaded = cfg.from_text(cfg.render(c))
    assert loaded["renditions.ladder"] == ladder
    assert loaded.values == c.values


@core
@given(st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=200))
def test_any_string_value_survives_render_and_load(text):
    c = Config(cfg.defaults()).with_value("node.name", text).with_value("backend.extra_args", [text, "-y"])
    loaded = cfg.from_text(cfg.render(c))
    assert loaded["node.name"] == text and loaded["backend.extra_args"] == [text, "-y"]


def test_shipped_config_file_lists_every_default():
    from pathlib import Path

    shipped = Path(__file__).parents[2] / "config" / "sender.toml"
    assert shipped.read_text() == cfg.render(cfg.from_text("")), "regenerate config/sender.toml from the schema"
