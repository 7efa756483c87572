"""Stream generations: one continuous broadcast of a stream, from its start to its end.

Everything that moves a generation from one status to another lives here (as h11's `_state.py`
holds its state machine): the `Status` values, the `TRANSITIONS` table, the reasons a
generation ends, and the one rule that ends a broadcast by itself — the reconnect grace.

    starting ──go_live──▶ live
       │                   │
       ├──end──▶ ended ◀──end──┤      end: stopped, publisher_gone, stream_deleted, source_ended
       └──fail─▶ failed ◀─fail─┘      fail: the media backend cannot run

    ended ──revive──▶ starting        an edge only: undoes an end it inferred itself (see TRANSITIONS)

A generation stays active (starting or live) across publisher reconnects and backend restarts;
at most one is active per stream (a partial unique index). While active, its publisher is
either connected or away (`publisher_connected_at` / `publisher_left_at`): a generation whose
publisher left more than the reconnect grace ago ends (`end_abandoned`), with
`rtmp.reconnect_grace` as the default and the stream's own `reconnect_grace` beating it;
"never" leaves the end to an explicit stop. A generation that never had a publisher (started by
an admin, waiting for the broadcaster) is not abandoned: it waits.

Every "is it active" question — in SQL or in Python — comes from `ACTIVE` / `ACTIVE_SQL`. An
edge's mirror does not make moves of its own: it follows its source's status by the table
(`path` / `follow`), so a mirrored generation never goes back either.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from enum import StrEnum

from daemons.core.config import parse_grace
from daemons.core.domain.common import new_id, now_iso
from daemons.core.errors import Conflict, NotFound
from daemons.core.store import Store


class Status(StrEnum):
    STARTING = "starting"
    LIVE = "live"
    ENDED = "ended"
    FAILED = "failed"


class Event(StrEnum):
    GO_LIVE = "go_live"  # every rendition has something to play
    END = "end"  # see EndReason
    FAIL = "fail"  # the media backend cannot run
    REVIVE = "revive"  # an edge's own inferred end undone (see TRANSITIONS)


class EndReason(StrEnum):
    STOPPED = "stopped"  # an admin or the control plane (`stream stop`)
    PUBLISHER_GONE = "publisher_gone"  # the reconnect grace ran out
    STREAM_DELETED = "stream_deleted"
    SOURCE_ENDED = "source_ended"  # an edge's copy: its source ended or stopped listing it


TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.STARTING, Event.GO_LIVE): Status.LIVE,
    (Status.STARTING, Event.END): Status.ENDED,
    (Status.LIVE, Event.END): Status.ENDED,
    (Status.STARTING, Event.FAIL): Status.FAILED,
    (Status.LIVE, Event.FAIL): Status.FAILED,
    # sender-edge-fill (`distribution.mirror`) only. When every source of an edge stops listing a
    # stream, the edge deletes its copy and ends the generation itself (stamped with the stream's
    # deletion time): an inference, not its source's word. A source listing the stream again with
    # that generation active undoes it. Any end a source reported, and any other end, is final:
    # `follow` takes this move only when its caller says the end was its own inference.
    (Status.ENDED, Event.REVIVE): Status.STARTING,
}

# Active: a generation that can still end (an ended one revived by an edge is starting again).
ACTIVE: tuple[Status, ...] = tuple(s for s in Status if (s, Event.END) in TRANSITIONS)
ACTIVE_SQL = "status IN (" + ", ".join(f"'{s}'" for s in ACTIVE) + ")"
ORIGIN_MODE = "origin_ingest"  # a generation this node's ingest daemon produces (edges: distribution.MIRROR_MODE)


class IllegalTransition(Conflict):
    """A move the transition table does not allow (e.g. an ended generation going live)."""


def next_status(current: str, event: Event) -> Status:
    """The status `event` moves a generation in `current` to; IllegalTransition if none."""
    try:
        return TRANSITIONS[(Status(current), event)]
    except (KeyError, ValueError):
        raise IllegalTransition(f"a {current} generation cannot {event.value.replace('_', ' ')}") from None


def is_active(status: str) -> bool:
    return status in ACTIVE


def path(current: str, target: str, *, revive: bool = False) -> tuple[Event, ...] | None:
    """The fewest events that take a generation from `current` to `target` by the table: () when it
    is there already, None when the table has no way (a generation never goes back). `revive`:
    whether `Event.REVIVE` may be taken (only for an end the caller inferred itself)."""
    start, goal = Status(current), Status(target)
    reached: dict[Status, tuple[Event, ...]] = {start: ()}
    frontier = [start]
    while frontier and goal not in reached:
        following = []
        for status in frontier:
            for (source, event), to in TRANSITIONS.items():
                if source is status and to not in reached and (revive or event is not Event.REVIVE):
                    reached[to] = reached[status] + (event,)
                    following.append(to)
        frontier = following
    return reached.get(goal)


def follow(current: str, target: str, *, revive: bool = False) -> Status:
    """The status a mirrored generation in `current` takes when its source says `target`: the
    source's moves, each checked by the table, when the table leads there; else it stays in
    `current` (a source behind, or one listing an end as active, moves nothing)."""
    status = Status(current)
    for event in path(current, target, revive=revive) or ():
        status = next_status(status, event)
    return status


# What viewers and the APIs are told: a failed generation plays nothing, so it is "offline".
PUBLIC_STATUSES = ("offline", "starting", "live", "ended")
_PUBLIC = {Status.STARTING: "starting", Status.LIVE: "live", Status.ENDED: "ended", Status.FAILED: "offline"}


def public_status(generation: dict | None) -> str:
    """offline | starting | live | ended, as the playback API and stream status report it."""
    return "offline" if generation is None else _PUBLIC[Status(generation["status"])]


# --- reading ---------------------------------------------------------------------------------------


def _row(row: dict | None) -> dict | None:
    """A generation as the domain answers it: `recorded` a bool (the store keeps 0/1)."""
    if row is not None and "recorded" in row:
        row["recorded"] = bool(row["recorded"])
    return row


def active(store: Store, stream_id: str) -> dict | None:
    return _row(store.one(f"SELECT * FROM stream_generations WHERE stream_id = ? AND {ACTIVE_SQL}", (stream_id,)))


def latest(store: Store, stream_id: str) -> dict | None:
    """The active generation, else the most recent one (to report `ended`)."""
    return active(store, stream_id) or _row(store.one(
        "SELECT * FROM stream_generations WHERE stream_id = ? ORDER BY started_at DESC, rowid DESC LIMIT 1",
        (stream_id,),
    ))


def get(store: Store, generation_id: str) -> dict:
    row = store.one("SELECT * FROM stream_generations WHERE id = ?", (generation_id,))
    if row is None:
        raise NotFound(f"no generation {generation_id!r}")
    return _row(row)


def list_(store: Store, stream_id: str | None = None, *, active_only: bool = False, limit: int = 100) -> list[dict]:
    sql = "SELECT g.*, s.slug AS stream FROM stream_generations g JOIN streams s ON s.id = g.stream_id WHERE 1=1"
    params: list = []
    if stream_id is not None:
        sql += " AND g.stream_id = ?"
        params.append(stream_id)
    if active_only:
        sql += f" AND g.{ACTIVE_SQL}"
    sql += " ORDER BY g.started_at DESC LIMIT ?"
    params.append(int(limit))
    return [_row(r) for r in store.query(sql, tuple(params))]


def statuses(store: Store, generation_ids: list[str]) -> dict[str, str]:
    """Each generation's status; "gone" for one the store does not know."""
    if not generation_ids:
        return {}
    marks = ",".join("?" * len(generation_ids))
    rows = store.query(f"SELECT id, status FROM stream_generations WHERE id IN ({marks})", tuple(generation_ids))
    found = {r["id"]: r["status"] for r in rows}
    return {g: found.get(g, "gone") for g in generation_ids}


def publisher_connected(generation: dict) -> bool:
    """Whether an active generation has its publisher now (as the ingest daemon recorded it)."""
    return (is_active(generation["status"]) and generation.get("publisher_connected_at") is not None
            and generation.get("publisher_left_at") is None)


# --- moves -----------------------------------------------------------------------------------------


def records(stream: dict, default_recording: bool) -> bool:
    """Whether a generation of `stream` beginning now is recorded: the stream's own setting
    (`streams.recording`, NULL = none), else the config's recording.enabled."""
    own = stream.get("recording")
    return bool(default_recording if own is None else own)


def begin(store: Store, stream_id: str, *, mode: str = ORIGIN_MODE, recorded: bool = False) -> tuple[dict, bool]:
    """The stream's active generation, starting one if none is: (generation, created). A new
    one is `recorded` (keeps every segment: a replay) or not, for its whole life."""
    with store.write() as db:
        current = active(store, stream_id)
        if current:
            return current, False
        now = now_iso()
        row = {
            "id": new_id("gen"),
            "stream_id": stream_id,
            "status": Status.STARTING.value,
            "mode": mode,
            "started_at": now,
            "live_at": None,
            "ended_at": None,
            "failure_reason": None,
            "discontinuity_count": 0,
            "updated_at": now,
            "publisher_connected_at": None,
            "publisher_left_at": None,
            "end_reason": None,
            "recorded": int(bool(recorded)),
        }
        db["stream_generations"].insert(row)
    return _row(row), True


def _move(store: Store, generation_id: str, event: Event, changes: dict, *, only_if_active: bool = False) -> dict:
    """Apply `event` (the transition table decides) with the columns that go with it."""
    with store.write() as db:
        gen = get(store, generation_id)
        if only_if_active and not is_active(gen["status"]):
            return gen
        status = next_status(gen["status"], event)
        db["stream_generations"].update(generation_id, {**changes, "status": status.value, "updated_at": now_iso()})
    return get(store, generation_id)


def mark_live(store: Store, generation_id: str) -> dict:
    """Every rendition has something to play. A live generation stays live (idempotent)."""
    gen = get(store, generation_id)
    if gen["status"] == Status.LIVE:
        return gen
    return _move(store, generation_id, Event.GO_LIVE, {"live_at": now_iso()})


def mark_failed(store: Store, generation_id: str, reason: str) -> dict:
    """The media backend cannot run. A generation that already ended stays as it is."""
    return _move(store, generation_id, Event.FAIL, {"failure_reason": reason[:500], "ended_at": now_iso()},
                 only_if_active=True)


def end(store: Store, generation_id: str, reason: EndReason, *, at: str | None = None) -> dict:
    """End an active generation (its playlists get ENDLIST); an ended one stays as it is."""
    return _move(store, generation_id, Event.END, {"end_reason": reason.value, "ended_at": at or now_iso()},
                 only_if_active=True)


def end_active(store: Store, stream_id: str, reason: EndReason, *, at: str | None = None) -> dict | None:
    """End the stream's active generation; None when nothing was active."""
    with store.write():
        current = active(store, stream_id)
        if current is None:
            return None
        return end(store, current["id"], reason, at=at)


def record_discontinuities(store: Store, generation_id: str, count: int) -> dict:
    """How many discontinuities the generation's playlists hold so far (reconnects, backend
    restarts, spool outages): the count only grows."""
    with store.write() as db:
        db.execute(
            "UPDATE stream_generations SET discontinuity_count = MAX(discontinuity_count, ?), updated_at = ? WHERE id = ?",
            (int(count), now_iso(), generation_id),
        )
    return get(store, generation_id)


# --- the publisher and the reconnect grace --------------------------------------------------------


def publisher_joined(store: Store, generation_id: str) -> dict:
    """A publisher is connected to the generation (a first one, or one that came back)."""
    with store.write() as db:
        now = now_iso()
        db.execute(
            f"UPDATE stream_generations SET publisher_connected_at = ?, publisher_left_at = NULL, updated_at = ? "
            f"WHERE id = ? AND {ACTIVE_SQL}",
            (now, now, generation_id),
        )
    return get(store, generation_id)


def publisher_left(store: Store, generation_id: str, *, at: str | None = None) -> dict:
    """The generation's publisher is gone (since `at`, default now): the reconnect grace starts."""
    with store.write() as db:
        db.execute(
            f"UPDATE stream_generations SET publisher_left_at = ?, updated_at = ? "
            f"WHERE id = ? AND {ACTIVE_SQL} AND publisher_connected_at IS NOT NULL AND publisher_left_at IS NULL",
            (at or now_iso(), now_iso(), generation_id),
        )
    return get(store, generation_id)


def grace_seconds(stream_grace: str | None, default_grace) -> float | None:
    """The reconnect grace that applies (seconds; None = never): the stream's own, else the config's."""
    return parse_grace(stream_grace if stream_grace is not None else default_grace)


def reconnect_deadline(generation: dict, stream_grace: str | None, default_grace) -> datetime | None:
    """When an active generation whose publisher is away ends by itself; None while its publisher
    is here (or it never had one), or when the grace is "never"."""
    left = generation.get("publisher_left_at")
    if not is_active(generation["status"]) or left is None:
        return None
    grace = grace_seconds(stream_grace, default_grace)
    if grace is None:
        return None
    return _parse_time(left) + timedelta(seconds=grace)


def _abandon_candidates(store: Store) -> list[dict]:
    """Active generations of this node's ingest whose publisher is away."""
    return store.query(
        f"SELECT g.*, s.slug AS stream, s.reconnect_grace AS stream_grace FROM stream_generations g "
        f"JOIN streams s ON s.id = g.stream_id "
        f"WHERE g.{ACTIVE_SQL} AND g.mode = ? AND g.publisher_left_at IS NOT NULL",
        (ORIGIN_MODE,),
    )


def next_abandon_deadline(store: Store, default_grace) -> datetime | None:
    """The earliest reconnect deadline of a generation whose publisher is away (None: none
    pending): until then, `end_abandoned` has nothing to end unless the store changes."""
    deadlines = [d for g in _abandon_candidates(store) if (d := reconnect_deadline(g, g["stream_grace"], default_grace))]
    return min(deadlines, default=None)


def end_abandoned(store: Store, default_grace, *, now: datetime | None = None) -> list[dict]:
    """End every active generation of this node's ingest whose publisher left longer than its
    reconnect grace ago; the generations ended, with `stream` (the slug) added."""
    now = now or datetime.now(timezone.utc)
    ended = []
    for g in _abandon_candidates(store):
        deadline = reconnect_deadline(g, g["stream_grace"], default_grace)
        if deadline is None or deadline > now:
            continue
        with store.write() as db:
            # Only if the publisher is still away: one that came back meanwhile keeps it live.
            changed = db.execute(
                f"UPDATE stream_generations SET status = ?, end_reason = ?, ended_at = ?, updated_at = ? "
                f"WHERE id = ? AND {ACTIVE_SQL} AND publisher_left_at = ?",
                (next_status(g["status"], Event.END).value, EndReason.PUBLISHER_GONE.value, now_iso(), now_iso(),
                 g["id"], g["publisher_left_at"]),
            ).rowcount
        if changed:
            ended.append({**get(store, g["id"]), "stream": g["stream"]})
    return ended


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- retention ---------------------------------------------------------------------------------------


def expired(store: Store, generation_ids: list[str], retention_s: float, *, now: datetime | None = None) -> set[str]:
    """Of `generation_ids` (spool directories): those no longer active that ended longer than
    `retention_s` ago, and those the store does not know — what the spool may delete."""
    if not generation_ids:
        return set()
    cutoff = ((now or datetime.now(timezone.utc)) - timedelta(seconds=retention_s)).isoformat(timespec="milliseconds")
    marks = ",".join("?" * len(generation_ids))
    kept = store.query(
        f"SELECT id FROM stream_generations WHERE id IN ({marks}) AND ({ACTIVE_SQL} OR COALESCE(ended_at, '') > ?)",
        (*generation_ids, cutoff.replace("+00:00", "Z")),
    )
    return set(generation_ids) - {r["id"] for r in kept}
