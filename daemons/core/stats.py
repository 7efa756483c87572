"""Local stats files: how a daemon tells the others what it measures.

Each daemon writes one JSON file under `<state_dir>/stats/` (atomically, temp + rename) every
second or so; the HTTP and snapshot daemons read them. A file carries `updated_at` (UTC) and
readers judge staleness by that stamp. No trio here: the CLI reads these too.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from daemons.core.domain.common import now_iso
from daemons.core.files import atomic_write


def stats_path(state_dir: Path, daemon: str) -> Path:
    return Path(state_dir) / "stats" / f"{daemon}.json"


def write_stats(state_dir: Path, daemon: str, payload: dict) -> None:
    """Atomically (temp + rename; the directory made when missing): a daemon writes this every
    second, idle or not."""
    data = json.dumps({"daemon": daemon, "pid": os.getpid(), "updated_at": now_iso(), **payload}).encode()
    atomic_write(stats_path(state_dir, daemon), data, make_dirs=True)


def read_stats(state_dir: Path, daemon: str) -> dict | None:
    try:
        return json.loads(stats_path(state_dir, daemon).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def stats_age_s(stats: dict) -> float:
    """Seconds since the stats were written (by their UTC stamp)."""
    written = datetime.fromisoformat(stats["updated_at"].replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - written).total_seconds()


def read_fresh_stats(state_dir: Path, daemon: str, max_age_s: float = 5.0) -> dict | None:
    """The daemon's stats if it wrote them recently, else None (it is down or stuck)."""
    stats = read_stats(state_dir, daemon)
    if stats is None or stats_age_s(stats) > max_age_s:
        return None
    return stats


def viewers_per_stream(renditions: list[dict]) -> dict[str, int]:
    """Viewers of each stream: distinct playback sessions across its renditions and across the
    HTTP workers' stats files (their "viewers" lists). One definition for /metrics, the playback
    API, the admin page and `sender status`."""
    sessions: dict[str, set[str]] = {}
    for r in renditions:
        sessions.setdefault(r["stream_id"], set()).update(r.get("sessions", ()))
    return {sid: len(s) for sid, s in sessions.items()}
