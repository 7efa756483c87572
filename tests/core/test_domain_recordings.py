"""Recordings in the domain (issue 17): whether a generation records (decided when it begins),
what a recording holds, deleting one, and which recordings retention removes (oldest first, never
an active one) — against a real store and spool directories laid out as the packager writes them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemons.core import domain
from daemons.core.domain.publish import APP, Admitted, Publishers
from daemons.core.domain.recordings import AGE, SIZE, to_remove
from daemons.core.errors import Conflict, InvalidInput, NotFound
from daemons.media import hls
from daemons.media.recording import Recording

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- whether a generation records ------------------------------------------------------------------


@pytest.mark.parametrize(("own", "default", "recorded"), [
    (None, False, False), (None, True, True), (True, False, True), (False, True, False), (True, True, True),
])
def test_a_publish_begins_a_generation_recorded_by_the_streams_setting_else_the_configs(store, secret, own, default, recorded):
    domain.streams.create(store, "demo", recording=own)
    _, key = domain.keys.create(store, secret, "demo")
    decision = domain.publish.decide(store, secret, app=APP, key=key, locked_out=False, publishers=Publishers(),
                                     allow_takeover=False, record_default=default)
    assert isinstance(decision, Admitted) and decision.generation["recorded"] is recorded
    assert domain.generations.get(store, decision.generation["id"])["recorded"] is recorded
    # Decided when it began: changing the setting later leaves the running generation as it is.
    domain.streams.update(store, "demo", recording=not recorded)
    again = domain.publish.decide(store, secret, app=APP, key=key, locked_out=False, publishers=Publishers(),
                                  allow_takeover=False, record_default=default)
    assert again.generation["id"] == decision.generation["id"] and again.generation["recorded"] is recorded


def test_stream_start_records_by_the_same_rule_and_the_setting_goes_back_to_the_config(store):
    domain.streams.create(store, "demo")
    assert domain.streams.get(store, "demo")["recording"] is None
    gen, _ = domain.streams.start(store, "demo", record_default=True)
    assert gen["recorded"] is True
    domain.streams.stop(store, "demo")
    assert domain.streams.update(store, "demo", recording=False)["recording"] is False
    gen, _ = domain.streams.start(store, "demo", record_default=True)
    assert gen["recorded"] is False
    assert domain.streams.update(store, "demo", recording=None)["recording"] is None
    for bad in ("yes", 1, 0):
        with pytest.raises(InvalidInput) as e:
            domain.streams.update(store, "demo", recording=bad)
        assert e.value.field == "recording"


# --- what a recording holds ------------------------------------------------------------------------


def write_recording(spool_root, stream_id: str, generation_id: str, segments: int, *, ended: bool = True,
                    segment_bytes: int = 1000, renditions=("source", "360p")):
    """A recorded generation's directory as the packager leaves it: init, segments, the DVR
    playlist (and the VOD one once ended), generation.json."""
    path = domain.recordings.directory(spool_root, stream_id, generation_id)
    for name in renditions:
        d = path / name
        d.mkdir(parents=True)
        (d / "init.mp4").write_bytes(b"i" * 100)
        recording = Recording()
        for msn in range(segments):
            (d / f"{msn}.m4s").write_bytes(b"s" * segment_bytes)
            recording.add(hls.Segment(msn, f"{msn}.m4s", 2.0, map_uri="init.mp4", discontinuity=msn == 3))
        (d / "dvr.m3u8").write_text(recording.event_text(2, ended=ended))
        if ended:
            (d / "vod.m3u8").write_text(recording.vod_text(2))
    (path / "generation.json").write_text(json.dumps({"renditions": list(renditions), "ended": ended}))
    return path


def test_list_get_and_delete_a_recording(store, install):
    root = install.spool_root
    stream = domain.streams.create(store, "demo", visibility="private")
    old, _ = domain.streams.start(store, "demo", record_default=True)
    old_dir = write_recording(root, stream["id"], old["id"], 5)
    domain.streams.stop(store, "demo")
    live, _ = domain.streams.start(store, "demo", record_default=True)
    write_recording(root, stream["id"], live["id"], 2, ended=False)

    listed = domain.recordings.list_(store, root, stream="demo")
    assert [r["generation_id"] for r in listed] == [live["id"], old["id"]]  # newest first
    ended, running = listed[1], listed[0]
    assert (ended["complete"], ended["segments"], ended["duration_s"], ended["discontinuities"]) == (True, 5, 10.0, 1)
    assert ended["bytes"] == 2 * (100 + 5 * 1000) + sum(f.stat().st_size for f in old_dir.rglob("*.m3u8")) + \
        (old_dir / "generation.json").stat().st_size
    assert ended["renditions"] == ["source", "360p"] and ended["visibility"] == "private"
    assert ended["replay_path"] == f"/watch/demo/{old['id']}"
    assert ended["master_path"] == f"/hls/{stream['id']}/{old['id']}/master-vod.m3u8"
    assert (running["active"], running["complete"], running["segments"]) == (True, False, 2)
    assert running["master_path"].endswith("/master-dvr.m3u8")
    assert domain.recordings.get(store, root, old["id"]) == ended
    assert domain.recordings.usage(store, root) == {"count": 2, "bytes": ended["bytes"] + running["bytes"]}

    with pytest.raises(Conflict):
        domain.recordings.delete(store, root, live["id"])  # live: never
    deleted = domain.recordings.delete(store, root, old["id"])
    assert deleted["deleted"] and not old_dir.exists()
    assert domain.generations.get(store, old["id"])["status"] == "ended"  # the row stays, as history
    with pytest.raises(NotFound, match="gone from the spool"):
        domain.recordings.get(store, root, old["id"])
    assert [r["generation_id"] for r in domain.recordings.list_(store, root)] == [live["id"]]


def test_not_a_recording_and_not_closed_yet(store, install):
    root = install.spool_root
    stream = domain.streams.create(store, "demo")
    plain, _ = domain.streams.start(store, "demo")
    domain.streams.stop(store, "demo")
    with pytest.raises(NotFound, match="was not recorded"):
        domain.recordings.get(store, root, plain["id"])
    with pytest.raises(NotFound, match="no generation"):
        domain.recordings.get(store, root, "gen_0000000000000000")
    gen, _ = domain.streams.start(store, "demo", record_default=True)
    path = write_recording(root, stream["id"], gen["id"], 3, ended=False)
    domain.streams.stop(store, "demo")
    # Ended in the store, but sender-ingest has not closed its playlists: the last writes must not race a delete.
    with pytest.raises(Conflict, match="not closed"):
        domain.recordings.delete(store, root, gen["id"])
    assert path.exists()


# --- retention ----------------------------------------------------------------------------------------


def rec(gid: str, minutes_ago: float, size: int, status: str = "ended", ended_minutes_ago: float | None = None) -> dict:
    started = NOW - timedelta(minutes=minutes_ago)
    ended = None if status in ("starting", "live") else NOW - timedelta(minutes=ended_minutes_ago if ended_minutes_ago is not None else minutes_ago - 1)
    return {"id": gid, "status": status, "started_at": _iso(started), "ended_at": ended and _iso(ended), "bytes": size}


def test_retention_by_size_removes_the_oldest_ended_first_never_a_live_one():
    recordings = [rec("b", 50, 300), rec("a", 90, 300), rec("live", 200, 500, "live"), rec("c", 10, 300)]
    # 1400 bytes, 1100 allowed: the oldest ended one (a) goes; the live one, older still, stays.
    assert to_remove(recordings, keep_s=86400, max_bytes=1100, now=NOW) == [("a", SIZE)]
    assert to_remove(recordings, keep_s=86400, max_bytes=1000, now=NOW) == [("a", SIZE), ("b", SIZE)]
    assert to_remove(recordings, keep_s=86400, max_bytes=600, now=NOW) == [("a", SIZE), ("b", SIZE), ("c", SIZE)]
    assert to_remove(recordings, keep_s=86400, max_bytes=1400, now=NOW) == []
    assert to_remove(recordings, keep_s=86400, max_bytes=0, now=NOW) == []  # 0: no limit


def test_retention_by_age_counts_from_the_end_and_age_removals_count_toward_size():
    recordings = [rec("old", 600, 300, ended_minutes_ago=120), rec("recent", 600, 300, ended_minutes_ago=30),
                  rec("failed", 700, 300, "failed", ended_minutes_ago=61), rec("live", 900, 300, "live")]
    assert to_remove(recordings, keep_s=3600, max_bytes=0, now=NOW) == [("failed", AGE), ("old", AGE)]
    # After the age removals 600 bytes remain (recent + live): under 700, nothing more goes.
    assert to_remove(recordings, keep_s=3600, max_bytes=700, now=NOW) == [("failed", AGE), ("old", AGE)]
    assert to_remove(recordings, keep_s=3600, max_bytes=500, now=NOW) == [("failed", AGE), ("old", AGE), ("recent", SIZE)]


statuses = st.sampled_from(["starting", "live", "ended", "failed"])


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 5000), statuses, st.integers(0, 600)), max_size=30),
       st.integers(0, 20_000), st.integers(0, 100_000))
def test_retention_rules_hold_for_any_recordings(specs, max_bytes, keep_s):
    recordings = [rec(f"g{i}", minutes, size, status, ended_minutes_ago=min(ended, minutes))
                  for i, (minutes, size, status, ended) in enumerate(specs)]
    removed = to_remove(recordings, keep_s=keep_s, max_bytes=max_bytes, now=NOW)
    by_id = {r["id"]: r for r in recordings}
    ids = [gid for gid, _ in removed]
    assert len(set(ids)) == len(ids)
    assert all(by_id[gid]["status"] in ("ended", "failed") for gid in ids)  # never an active one
    for gid, reason in removed:
        r = by_id[gid]
        if reason == AGE:
            assert NOW - datetime.fromisoformat(r["ended_at"].replace("Z", "+00:00")) >= timedelta(seconds=keep_s)
    # Size removals go oldest first: no kept ended recording is older than one removed for size.
    by_size = [by_id[gid] for gid, reason in removed if reason == SIZE]
    kept = [r for r in recordings if r["id"] not in ids and r["status"] in ("ended", "failed")]
    if by_size:
        newest_removed = max((r["started_at"], r["id"]) for r in by_size)
        assert all((r["started_at"], r["id"]) > newest_removed for r in kept)
    left = sum(r["bytes"] for r in recordings if r["id"] not in ids)
    if max_bytes and kept:
        assert left <= max_bytes  # it stops only under the limit, or with no ended recording left
    if max_bytes and by_size:
        last = by_id[by_size[-1]["id"]]
        assert left + last["bytes"] > max_bytes  # and removes no more than needed


def test_the_store_side_of_retention(store, install):
    domain.streams.create(store, "demo")
    plain, _ = domain.streams.start(store, "demo")
    domain.streams.stop(store, "demo")
    recorded, _ = domain.streams.start(store, "demo", record_default=True)
    unknown = "gen_00000000000000aa"
    expired, recordings = domain.recordings.retention(store, [plain["id"], recorded["id"], unknown], ended_retention_s=0,
                                                      now=datetime.now(timezone.utc) + timedelta(seconds=1))
    assert expired == {plain["id"], unknown}  # a recording never goes by spool.ended_retention
    assert [(r["id"], r["status"]) for r in recordings] == [(recorded["id"], "starting")]
    assert domain.recordings.retention(store, [], ended_retention_s=0) == (set(), [])


def test_sender_doctor_weighs_the_recordings_against_recording_max_bytes(store, install):
    from daemons.runtime.checks import OK, WARN, check_recordings

    stream = domain.streams.create(store, "demo")
    gen, _ = domain.streams.start(store, "demo", record_default=True)
    write_recording(install.spool_root, stream["id"], gen["id"], 4)
    used = domain.recordings.usage(store, install.spool_root)["bytes"]
    cfg = install.config.with_value("recording.max_bytes", used + 1)
    assert check_recordings(cfg).status == OK and check_recordings(cfg).detail.startswith("1 recording(s), ")
    over = check_recordings(cfg.with_value("recording.max_bytes", used - 1))
    assert over.status == WARN and "over recording.max_bytes" in over.detail and "sender-ingest" in over.fix
    unbounded = check_recordings(cfg.with_value("recording.max_bytes", 0).with_value("recording.enabled", True))
    assert unbounded.status == WARN and "recording.max_bytes" in unbounded.fix
    assert check_recordings(cfg.with_value("recording.max_bytes", 0)).status == OK  # recording off: nothing grows
