"""Local stats files: how a daemon tells the others what it measures.

Each daemon writes one JSON file under `<state_dir>/stats/` (atomically, temp + rename) every
second or so; the HTTP and snapshot daemons read them. A file carries `updated_at` (UTC) and
`written_monotonic` is avoided on purpose: readers judge staleness by the wall clock stamp.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from daemons.core.domain.common import now_iso


def stats_path(state_dir: Path, daemon: str) -> Path:
    return Path(state_dir) / "stats" / f"{daemon}.json"


def write_stats(state_dir: Path, daemon: str, payload: dict) -> None:
    path = stats_path(state_dir, daemon)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"daemon": daemon, "pid": os.getpid(), "updated_at": now_iso(), **payload}))
    os.replace(tmp, path)


def read_stats(state_dir: Path, daemon: str) -> dict | None:
    try:
        return json.loads(stats_path(state_dir, daemon).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
