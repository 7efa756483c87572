"""Valid, non-default values for every config key, by the kind of the key (shared by the config
tests in tests/core and the `sender config set` tests in tests/cli)."""

from __future__ import annotations

import re

from daemons.core.config import SCHEMA


def bounds(kind_name: str) -> tuple[float, float] | None:
    m = re.fullmatch(r"an? (?:integer|number) from (\S+) to (\S+)", kind_name)
    return (float(m.group(1)), float(m.group(2))) if m else None


def non_default_text(key: str) -> str:
    """A valid value for `key`, as `sender config set` would get it, different from the default."""
    spec = SCHEMA[key]
    name, default = spec.kind.name, spec.default
    if name.startswith("an integer from"):
        lo, hi = (int(b) for b in bounds(name))
        return str(lo if default != lo else min(lo + 1, hi))
    if name.startswith("a number from"):
        lo, hi = bounds(name)
        v = (lo + hi) / 2
        return repr(v if v != default else (lo + v) / 2)
    if name.startswith("one of "):
        return next(c for c in name[len("one of "):].split(" | ") if c != default)
    texts = {
        "a string": "sender-test value ✓",
        "true or false": "false" if default else "true",
        "HOST:PORT": "127.0.0.1:19351",
        'HOST:PORT, or "" for off': "[::1]:19352",
        'an http(s) URL, or ""': "https://edge.example.test:8443/base",
        "a filesystem path": "/srv/sender test/x",
        "a list of strings": "alpha, beta",
        "a list of IP addresses or CIDR networks": '["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]',
        "a duration (seconds, or 90s / 15m / 24h / 7d)": "15m",
        "a size (bytes, or with k, m, g, t: 512m, 2g)": "512m",
        'a duration (seconds, or 90s / 15m / 24h), or "never"': "never",
        "an array of rendition tables": (
            '[{name = "source", kind = "source"}, '
            '{name = "480p", kind = "transcode", height = 480, video_bitrate = 1200000, audio_bitrate = 96000}]'
        ),
    }
    assert name in texts, f"no test value for kind {name!r} of {key}: add one here"
    return texts[name]
