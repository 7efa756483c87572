"""The publish decision: may an RTMP publish go ahead, on which stream and generation; and when
must a connected publisher go.

sender-ingest asks and applies the answer (its connection handler answers the publisher, counts a
failed attempt, disconnects a publisher that was taken over); the rules are all here:

* the application name is `APP`; a source with too many failed attempts is locked out (the daemon
  counts attempts per address over `rtmp.auth_lockout_s`; an unknown application and a bad key
  each count as one: probing application names is guessing too);
* the stream key (`keys.verify`);
* the stream's one publisher slot: a stream whose publisher is connected, or being admitted,
  refuses another, unless `rtmp.allow_takeover`: then the newer publisher takes the place of the
  connected one (one being admitted still refuses);
* the generation: the stream's active one continues; with none, `auto_start` begins one (recorded
  or not: the stream's own setting, else `record_default`, the config's recording.enabled), else
  the publish waits for `stream start`;
* `disconnect_reasons`: a connected publisher goes when its generation is no longer active or its
  key was revoked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daemons.core.domain import generations, keys
from daemons.core.store import Store

APP = "live"  # rtmp://HOST/live/<stream key>

BAD_NAME = "NetStream.Publish.BadName"
DENIED = "NetStream.Publish.Denied"


@dataclass(frozen=True)
class Publishers:
    """What the daemon holds, by stream id: the decision needs no more of it."""

    connected: frozenset[str] = frozenset()  # a publisher is connected
    admitting: frozenset[str] = frozenset()  # a publish was admitted and is not accepted yet


@dataclass(frozen=True)
class Refused:
    code: str  # the RTMP status code the publisher is answered with
    description: str  # what the publisher is told
    log: str | None = None  # the daemon's log line, if the refusal is worth one
    failed_attempt: bool = False  # counts toward the source's lockout
    fields: dict = field(default_factory=dict)  # for the log line (never the key)


@dataclass(frozen=True)
class Admitted:
    stream: dict
    key_id: str
    generation: dict
    generation_started: bool  # begun by this publish (auto_start), not continued
    takes_over: bool  # the stream's connected publisher must go first (rtmp.allow_takeover)


def decide(store: Store, install_secret: bytes, *, app: str | None, key: str, locked_out: bool,
           publishers: Publishers, allow_takeover: bool, record_default: bool = False) -> Admitted | Refused:
    """Decide a publish of `key` to application `app` from a source that is `locked_out` or not.
    Store work: the key's last use is stamped, and a generation begun when it is admitted."""
    if locked_out:
        return Refused(BAD_NAME, "too many failed attempts; try again later",
                       "publish refused: too many failed attempts")
    if app != APP:
        return Refused(BAD_NAME, f"unknown application {app!r}: publish to rtmp://HOST/{APP}/<stream key>",
                       "publish refused: unknown application", failed_attempt=True, fields={"app": str(app)[:64]})
    check = keys.verify(store, install_secret, key)
    if not check.ok:
        return Refused(BAD_NAME, "invalid stream key", "publish refused: bad stream key", failed_attempt=True,
                       fields={"reason": check.reason, "key_prefix": check.prefix or "-"})
    stream = check.stream
    sid, slug = stream["id"], stream["slug"]
    if sid in publishers.admitting:
        return Refused(BAD_NAME, "stream already has a publisher")
    takes_over = sid in publishers.connected
    if takes_over and not allow_takeover:
        return Refused(BAD_NAME, "stream already has a publisher", "publish refused: stream already has a publisher",
                       fields={"stream": slug})
    with store.write():
        generation = generations.active(store, sid)
        started = False
        if generation is None:
            if not stream["auto_start"]:
                return Refused(DENIED, f"stream {slug} is not started (auto_start is off): start it first",
                               "publish refused: stream not started", fields={"stream": slug})
            generation, started = generations.begin(store, sid, recorded=generations.records(stream, record_default))
    return Admitted(stream, check.key_id, generation, started, takes_over)


def disconnect_reasons(store: Store, publishers: list[tuple[str, str]]) -> list[str | None]:
    """For each connected publisher, as (generation id, key id): why it must go, or None."""
    statuses = generations.statuses(store, [g for g, _ in publishers])
    usable = keys.unrevoked(store, [k for _, k in publishers])
    out: list[str | None] = []
    for generation_id, key_id in publishers:
        status = statuses[generation_id]
        if not generations.is_active(status):
            out.append(f"generation {status}")
        elif key_id not in usable:
            out.append("stream key revoked")
        else:
            out.append(None)
    return out
