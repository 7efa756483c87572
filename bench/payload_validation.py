"""Per-call cost of checking a payload: the models of daemons/http/schemas.py (pydantic) against
the hand-written validators they replaced, read from a git revision, on typical calls.

    .venv/bin/python bench/payload_validation.py                 # against 052aba3 (the last hand-written one)
    .venv/bin/python bench/payload_validation.py --before REV

A micro-benchmark of pure functions (no daemon, no peer): best of 5 runs of 20,000 calls each.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemons.http import api, management, schemas  # noqa: E402

CREATE = {"slug": "show", "title": "The Show", "visibility": "unlisted", "auto_start": False, "reconnect_grace": "90s",
          "ladder": [{"name": "source", "kind": "source"},
                     {"name": "720p", "kind": "transcode", "height": 720, "video_bitrate": 2_500_000}]}
STATUS = {"stream": "show"}
CALL = json.dumps({"jsonrpc": "2.0", "method": "stream.create", "params": CREATE, "id": 7}).encode()
EVENTS = json.dumps({"session_id": "abcdefgh12", "stream": "tv", "events": [
    {"kind": "startup", "value": 0.84}, {"kind": "live_edge", "value": 1.9}, {"kind": "error", "detail": "networkError"}]}).encode()


def _load(rev: str, path: str, name: str, into: Path):
    """A module of another revision, imported under its own name (its imports are this tree's)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True).stdout
    file = into / f"{name}.py"
    file.write_bytes(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _us(fn, n: int = 20_000) -> float:
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="052aba3", help="the revision with the hand-written validators")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old_m = _load(args.before, "daemons/http/management.py", "before_management", Path(tmp))
        old_api = _load(args.before, "daemons/http/api.py", "before_api", Path(tmp))
    rows = [
        ("stream.create params (a ladder of 2)", lambda: old_m.validate(old_m.METHODS["stream.create"].params, CREATE),
         lambda: schemas.check(schemas.StreamCreateParams, CREATE)),
        ("stream.status params", lambda: old_m.validate(old_m.METHODS["stream.status"].params, STATUS),
         lambda: schemas.check(schemas.StreamParams, STATUS)),
        ("a stream.create call: JSON, envelope, params",
         lambda: old_m.validate(old_m.METHODS["stream.create"].params, old_m.parse_call(CALL)[2]),
         lambda: schemas.check(schemas.StreamCreateParams, management.parse_call(CALL)[2])),
        ("player telemetry, 3 events: JSON and check", lambda: old_api._parse_events(EVENTS),
         lambda: api._parse_events(EVENTS)),
    ]
    import pydantic

    print(f"{'per call':45s} {args.before + ' (µs)':>14s} {'pydantic ' + pydantic.VERSION + ' (µs)':>22s}")
    for what, before, now in rows:
        print(f"{what:45s} {_us(before):14.1f} {_us(now):22.1f}")


if __name__ == "__main__":
    main()
