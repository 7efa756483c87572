"""The publish decision (domain.publish): application, lockout, key, the stream's one publisher
slot, takeover, the generation continued or begun; why a connected publisher must go; and which
ended generations the spool may delete (generations.expired)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from daemons.core import domain
from daemons.core.domain.publish import (
    APP,
    BAD_NAME,
    DENIED,
    Admitted,
    Publishers,
    Refused,
)

NOBODY = Publishers()


@pytest.fixture
def demo(store, secret):
    stream = domain.streams.create(store, "demo")
    row, key = domain.keys.create(store, secret, "demo")
    return stream, row, key


def decide(store, secret, key, *, app=APP, locked_out=False, publishers=NOBODY, allow_takeover=False):
    return domain.publish.decide(store, secret, app=app, key=key, locked_out=locked_out,
                                 publishers=publishers, allow_takeover=allow_takeover)


def test_a_good_key_begins_a_generation_then_continues_it(store, secret, demo):
    stream, row, key = demo
    first = decide(store, secret, key)
    assert isinstance(first, Admitted)
    assert (first.stream["id"], first.key_id, first.generation_started, first.takes_over) == (stream["id"], row["id"], True, False)
    assert first.generation["status"] == "starting"
    again = decide(store, secret, key)
    assert (again.generation["id"], again.generation_started) == (first.generation["id"], False)
    assert domain.keys.list_(store, "demo")[0]["last_used_at"]  # the key's use is stamped


@pytest.mark.parametrize(
    ("kwargs", "code", "description", "failed_attempt", "logged"),
    [
        (dict(locked_out=True), BAD_NAME, "too many failed attempts", False, "too many failed attempts"),
        (dict(app="other"), BAD_NAME, "unknown application 'other'", True, "unknown application"),
        (dict(app=None), BAD_NAME, "unknown application None", True, "unknown application"),
        (dict(key="sk0123456789_" + "A" * 32), BAD_NAME, "invalid stream key", True, "bad stream key"),
        (dict(key="not-a-key"), BAD_NAME, "invalid stream key", True, "bad stream key"),
    ],
)
def test_refusals_before_the_key_is_known(store, secret, demo, kwargs, code, description, failed_attempt, logged):
    key = kwargs.pop("key", demo[2])
    refused = decide(store, secret, key, **kwargs)
    assert isinstance(refused, Refused)
    assert refused.code == code and description in refused.description
    assert refused.failed_attempt is failed_attempt and logged in refused.log
    assert key not in repr(refused.fields)  # the key is never logged
    assert domain.generations.active(store, demo[0]["id"]) is None  # nothing begun


def test_revoked_key_and_deleted_stream_are_bad_keys(store, secret, demo):
    _, row, key = demo
    domain.keys.revoke(store, row["id"])
    refused = decide(store, secret, key)
    assert (refused.code, refused.failed_attempt, refused.fields["reason"]) == (BAD_NAME, True, "revoked")
    other = domain.streams.create(store, "other")
    _, other_key = domain.keys.create(store, secret, "other")
    domain.streams.delete(store, other["id"])
    assert decide(store, secret, other_key).fields["reason"] == "stream_deleted"


def test_the_streams_one_publisher_slot_and_takeover(store, secret, demo):
    stream, _, key = demo
    sid = stream["id"]
    admitting = decide(store, secret, key, publishers=Publishers(admitting=frozenset({sid})), allow_takeover=True)
    assert isinstance(admitting, Refused) and admitting.description == "stream already has a publisher"
    assert admitting.log is None and not admitting.failed_attempt  # a race, not worth a line
    connected = Publishers(connected=frozenset({sid}))
    busy = decide(store, secret, key, publishers=connected)
    assert isinstance(busy, Refused) and busy.code == BAD_NAME and busy.fields == {"stream": "demo"}
    taken = decide(store, secret, key, publishers=connected, allow_takeover=True)
    assert isinstance(taken, Admitted) and taken.takes_over
    # Another stream's publishers do not matter.
    assert isinstance(decide(store, secret, key, publishers=Publishers(frozenset({"str_x"}), frozenset({"str_y"}))), Admitted)


def test_a_stream_without_auto_start_waits_for_stream_start(store, secret):
    domain.streams.create(store, "manual", auto_start=False)
    _, key = domain.keys.create(store, secret, "manual")
    refused = decide(store, secret, key)
    assert (refused.code, refused.failed_attempt) == (DENIED, False)
    assert "not started" in refused.description and refused.fields == {"stream": "manual"}
    started, _ = domain.streams.start(store, "manual")
    admitted = decide(store, secret, key)
    assert (admitted.generation["id"], admitted.generation_started) == (started["id"], False)


def test_disconnect_reasons(store, secret, demo):
    _, row, key = demo
    generation = decide(store, secret, key).generation["id"]
    second = domain.keys.create(store, secret, "demo")[0]["id"]
    pairs = [(generation, row["id"]), (generation, second), ("gen_unknown", row["id"]), (generation, "key_unknown")]
    assert domain.publish.disconnect_reasons(store, pairs) == [None, None, "generation gone", "stream key revoked"]
    domain.keys.revoke(store, second)
    assert domain.publish.disconnect_reasons(store, pairs)[:2] == [None, "stream key revoked"]
    domain.streams.stop(store, "demo")
    assert domain.publish.disconnect_reasons(store, pairs)[:2] == ["generation ended", "generation ended"]
    assert domain.publish.disconnect_reasons(store, []) == []


def test_keys_unrevoked(store, secret, demo):
    _, row, _ = demo
    other, _ = domain.keys.create(store, secret, "demo")
    domain.keys.revoke(store, other["id"])
    assert domain.keys.unrevoked(store, [row["id"], other["id"], "key_nope"]) == {row["id"]}
    assert domain.keys.unrevoked(store, []) == set()


def test_expired_generations(store):
    domain.streams.create(store, "demo")
    old, _ = domain.streams.start(store, "demo")
    domain.streams.stop(store, "demo")
    failed, _ = domain.streams.start(store, "demo")
    domain.generations.mark_failed(store, failed["id"], "ffmpeg exited 1")
    active, _ = domain.streams.start(store, "demo")
    ids = [old["id"], failed["id"], active["id"], "gen_unknown"]
    now = datetime.now(timezone.utc)
    # Within the retention nothing ended is expired; a directory the store does not know is.
    assert domain.generations.expired(store, ids, 3600, now=now) == {"gen_unknown"}
    later = now + timedelta(hours=2)
    assert domain.generations.expired(store, ids, 3600, now=later) == {old["id"], failed["id"], "gen_unknown"}
    assert domain.generations.expired(store, [], 0) == set()
