"""Renditions (idempotent upserts), endpoint snapshots (validation, bounded history) and stream
generations (lifecycle, one active per stream)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest

from daemons.core import domain
from daemons.core.errors import Conflict, InvalidInput, NotFound


def _rows(store, table):
    return store.query(f"SELECT * FROM {table} ORDER BY rowid")


# --- renditions ---------------------------------------------------------------------------------


R480 = {"name": "480p", "kind": "transcode", "width": 854, "height": 480, "video_bitrate": 1_200_000,
        "audio_bitrate": 96_000, "frame_rate": 30, "video_codec": "h264", "audio_codec": "aac"}


def test_rendition_upsert_is_idempotent(store):
    stream = domain.streams.create(store, "demo")
    first = domain.renditions.upsert(store, stream["id"], R480)
    before = _rows(store, "renditions")
    second = domain.renditions.upsert(store, stream["id"], dict(R480))
    assert second == first  # including updated_at
    assert _rows(store, "renditions") == before
    assert first["frame_rate"] == 30.0 and first["height"] == 480
    assert sorted(r["name"] for r in domain.renditions.list_(store, stream["id"])) == ["480p", "source"]


def test_rendition_upsert_replaces_fields(store):
    stream = domain.streams.create(store, "demo")
    first = domain.renditions.upsert(store, stream["id"], R480)
    changed = domain.renditions.upsert(store, stream["id"], {"name": "480p", "kind": "transcode", "height": 480,
                                                            "video_bitrate": 900_000})
    assert changed["id"] == first["id"] and changed["created_at"] == first["created_at"]
    assert changed["video_bitrate"] == 900_000
    assert changed["width"] is None and changed["audio_codec"] is None  # replaced, not merged
    assert changed["updated_at"] >= first["updated_at"]
    assert len(_rows(store, "renditions")) == 2


@pytest.mark.parametrize(
    "rendition, match",
    [
        ({"name": "480p", "kind": "transcode"}, "needs height and video_bitrate"),
        ({"name": "x", "kind": "remux"}, "kind"),
        ({"name": "Bad Name", "kind": "source"}, "rendition name"),
        ({"name": "x", "kind": "source", "fps": 30}, "unknown rendition field 'fps'"),
        ({"name": "x", "kind": "source", "height": 100_000}, "height"),
        ({"kind": "source"}, "'name'"),
        ("source", "table"),
    ],
)
def test_bad_renditions_write_nothing(store, rendition, match):
    stream = domain.streams.create(store, "demo")
    before = _rows(store, "renditions")
    with pytest.raises(InvalidInput, match=match):
        domain.renditions.upsert(store, stream["id"], rendition)
    assert _rows(store, "renditions") == before


def test_rendition_for_a_missing_stream_is_not_found(store):
    with pytest.raises(NotFound, match="st_nope"):
        domain.renditions.upsert(store, "st_nope", {"name": "source", "kind": "source"})
    assert _rows(store, "renditions") == []


def test_rendition_delete(store):
    stream = domain.streams.create(store, "demo")
    domain.renditions.delete(store, stream["id"], "source")
    assert domain.renditions.list_(store, stream["id"]) == []
    with pytest.raises(NotFound, match="'source'"):
        domain.renditions.delete(store, stream["id"], "source")


# --- snapshots ----------------------------------------------------------------------------------


def _snap(**over):
    return {"endpoint_id": "edge1", "reporter": "node-1", "status": "healthy", "viewers": 3,
            "ingress_bps": 0, "egress_bps": 4_000_000, "playlist_age_s": 0.5, "segment_lag": 0, **over}


@pytest.fixture
def edge(store):
    return domain.endpoints.upsert(store, "edge1", type="tribes_edge")


def test_record_keeps_latest_per_endpoint_and_generation(store, edge):
    domain.snapshots.record(store, _snap(viewers=1), history_limit=100)
    domain.snapshots.record(store, _snap(viewers=2), history_limit=100)
    domain.snapshots.record(store, _snap(generation_id="gen_a", viewers=7), history_limit=100)
    latest = domain.snapshots.list_(store, "edge1")
    assert [(s["generation_id"], s["viewers"]) for s in latest] == [("", 2), ("gen_a", 7)]
    assert latest[0]["observed_at"].endswith("Z")
    assert [h["viewers"] for h in domain.snapshots.history(store, "edge1")] == [7, 2, 1]
    assert domain.snapshots.list_(store) == latest


def test_history_is_bounded_per_endpoint(store, edge):
    domain.endpoints.upsert(store, "edge2", type="tribes_edge")
    for i in range(12):
        domain.snapshots.record(store, _snap(viewers=i), history_limit=5)
        domain.snapshots.record(store, _snap(endpoint_id="edge2", viewers=100 + i), history_limit=50)
    assert [h["viewers"] for h in domain.snapshots.history(store, "edge1")] == [11, 10, 9, 8, 7]
    assert len(domain.snapshots.history(store, "edge2")) == 12  # its own limit, untouched by edge1's
    assert store.one("SELECT count(*) AS n FROM endpoint_history WHERE endpoint_id = 'edge1'")["n"] == 5
    domain.snapshots.record(store, _snap(viewers=99), history_limit=1)
    assert [h["viewers"] for h in domain.snapshots.history(store, "edge1")] == [99]


def test_record_for_unknown_endpoint_is_not_found_and_writes_nothing(store, edge):
    with pytest.raises(NotFound, match="'nowhere'"):
        domain.snapshots.record(store, _snap(endpoint_id="nowhere"), history_limit=10)
    domain.endpoints.delete(store, "edge1")
    with pytest.raises(NotFound):
        domain.snapshots.record(store, _snap(), history_limit=10)
    assert _rows(store, "endpoint_snapshots") == [] and _rows(store, "endpoint_history") == []


@pytest.mark.parametrize(
    "over, match",
    [
        ({"status": "great"}, "status 'great'"),
        ({"status": None}, "status"),
        ({"viewers": -1}, "viewers -1"),
        ({"viewers": 10**12}, "viewers"),
        ({"viewers": 1.5}, "viewers"),
        ({"viewers": True}, "viewers"),
        ({"viewers": "3"}, "viewers"),
        ({"egress_bps": 10**15}, "egress_bps"),
        ({"segment_lag": -3}, "segment_lag"),
        ({"playlist_age_s": float("nan")}, "playlist_age_s"),
        ({"playlist_age_s": float("inf")}, "playlist_age_s"),
        ({"playlist_age_s": -0.1}, "playlist_age_s"),
        ({"playlist_age_s": 10**9}, "playlist_age_s"),
        ({"reporter": "x" * 101}, "reporter"),
        ({"observed_at": 12}, "observed_at"),
        ({"bananas": 1}, "unknown snapshot field 'bananas'"),
        ({"endpoint_id": ["edge1"]}, "endpoint"),
        ({"endpoint_id": None}, "endpoint"),
    ],
)
def test_bad_snapshots_are_invalid_input_and_write_nothing(store, edge, over, match):
    with pytest.raises(InvalidInput, match=match):
        domain.snapshots.record(store, _snap(**over), history_limit=10)
    assert _rows(store, "endpoint_snapshots") == [] and _rows(store, "endpoint_history") == []


def test_snapshot_must_be_an_object_of_known_fields(store, edge):
    with pytest.raises(InvalidInput):
        domain.snapshots.record(store, ["healthy"], history_limit=10)
    with pytest.raises(InvalidInput, match="unknown snapshot field 1"):
        domain.snapshots.record(store, {**_snap(), 1: "x"}, history_limit=10)
    assert _rows(store, "endpoint_history") == []


def test_optional_snapshot_fields_default(store, edge):
    snap = domain.snapshots.record(store, {"endpoint_id": "edge1", "status": "offline"}, history_limit=10)
    assert (snap["viewers"], snap["ingress_bps"], snap["egress_bps"]) == (0, 0, 0)
    assert snap["segment_lag"] is None and snap["playlist_age_s"] is None
    assert snap["generation_id"] == "" and snap["observed_at"].endswith("Z")


# --- generations --------------------------------------------------------------------------------


def test_generation_lifecycle(store):
    stream = domain.streams.create(store, "demo")
    gen, created = domain.streams.start(store, "demo")
    assert created and gen["status"] == "starting" and gen["mode"] == "origin_ingest"
    again, created_again = domain.streams.start(store, "demo")
    assert (again["id"], created_again) == (gen["id"], False)

    live = domain.generations.mark_live(store, gen["id"])
    assert live["status"] == "live" and live["live_at"]
    assert domain.generations.mark_live(store, gen["id"])["live_at"] == live["live_at"]  # idempotent
    assert domain.generations.record_discontinuities(store, gen["id"], 2)["discontinuity_count"] == 2
    assert domain.generations.record_discontinuities(store, gen["id"], 1)["discontinuity_count"] == 2  # only grows
    assert domain.generations.active(store, stream["id"])["id"] == gen["id"]

    ended = domain.streams.stop(store, "demo")
    assert ended["status"] == "ended" and ended["ended_at"]
    assert domain.streams.stop(store, "demo") is None
    with pytest.raises(Conflict, match="ended"):
        domain.generations.mark_live(store, gen["id"])
    # A failure report after the end changes nothing.
    assert domain.generations.mark_failed(store, gen["id"], "late")["status"] == "ended"

    nxt, created = domain.streams.start(store, "demo")
    assert created and nxt["id"] != gen["id"]
    failed = domain.generations.mark_failed(store, nxt["id"], "ffmpeg exited 1")
    assert failed["status"] == "failed" and failed["failure_reason"] == "ffmpeg exited 1" and failed["ended_at"]
    assert [g["id"] for g in domain.generations.list_(store, stream["id"])] == [nxt["id"], gen["id"]]
    assert domain.generations.list_(store, stream["id"], active_only=True) == []
    assert ended["end_reason"] == "stopped" and failed["end_reason"] is None


def test_transition_table_allows_exactly_the_documented_moves():
    G = domain.generations
    allowed = {(a, e): b for (a, e), b in G.TRANSITIONS.items()}
    for status in G.Status:
        for event in G.Event:
            if (status, event) in allowed:
                assert G.next_status(status, event) is allowed[(status, event)]
            else:
                with pytest.raises(G.IllegalTransition):
                    G.next_status(status, event)
    assert set(G.ACTIVE) == {"starting", "live"}
    assert G.ACTIVE_SQL == "status IN ('starting', 'live')"
    with pytest.raises(G.IllegalTransition):
        G.next_status("bogus", G.Event.END)


def test_deleting_a_stream_ends_its_generation_with_the_reason(store):
    domain.streams.create(store, "demo")
    gen, _ = domain.streams.start(store, "demo")
    domain.streams.delete(store, "demo")
    ended = domain.generations.get(store, gen["id"])
    assert (ended["status"], ended["end_reason"]) == ("ended", "stream_deleted")


def _at(seconds: float):
    from datetime import datetime, timedelta, timezone

    return datetime(2026, 12, 7, 12, 0, 0, tzinfo=timezone.utc) + timedelta(seconds=seconds)


def _left(store, gid: str, seconds: float) -> None:
    domain.generations.publisher_joined(store, gid)
    domain.generations.publisher_left(store, gid, at=_at(seconds).isoformat().replace("+00:00", "Z"))


def test_reconnect_grace_ends_a_generation_whose_publisher_stays_away(store):
    G = domain.generations
    stream = domain.streams.create(store, "demo")
    gen, _ = domain.streams.start(store, "demo")
    assert G.end_abandoned(store, "5s", now=_at(100)) == []  # never had a publisher: it waits
    G.publisher_joined(store, gen["id"])
    assert G.publisher_connected(G.get(store, gen["id"]))
    assert G.end_abandoned(store, "5s", now=_at(100)) == []  # connected
    _left(store, gen["id"], 0)
    away = G.get(store, gen["id"])
    assert not G.publisher_connected(away) and away["publisher_left_at"].startswith("2026-12-07T12:00:00")
    assert G.reconnect_deadline(away, None, "5s") == _at(5)
    assert G.end_abandoned(store, "5s", now=_at(4.9)) == []
    ended = G.end_abandoned(store, "5s", now=_at(5))
    assert [(g["id"], g["status"], g["end_reason"], g["stream"]) for g in ended] == [(gen["id"], "ended", "publisher_gone", "demo")]
    assert G.active(store, stream["id"]) is None
    assert G.end_abandoned(store, "5s", now=_at(50)) == []


def test_a_publisher_back_within_the_grace_keeps_the_generation(store):
    G = domain.generations
    domain.streams.create(store, "demo")
    gen, _ = domain.streams.start(store, "demo")
    _left(store, gen["id"], 0)
    G.publisher_joined(store, gen["id"])  # back after 3 s, say
    assert G.end_abandoned(store, "5s", now=_at(60)) == []
    assert G.get(store, gen["id"])["status"] == "starting"
    _left(store, gen["id"], 30)  # and away again: the grace counts from the new departure
    assert G.end_abandoned(store, "5s", now=_at(34)) == []
    assert len(G.end_abandoned(store, "5s", now=_at(35))) == 1


def test_grace_never_and_zero_and_the_streams_own_grace_beats_the_config(store):
    G = domain.generations
    for slug in ("never", "zero", "own", "default"):
        domain.streams.create(store, slug)
    domain.streams.update(store, "never", reconnect_grace="never")
    domain.streams.update(store, "zero", reconnect_grace="0s")
    gens = {slug: domain.streams.start(store, slug)[0] for slug in ("never", "zero", "default")}
    gens["own"] = domain.streams.start(store, "own", reconnect_grace="2m")[0]  # stream.start's override, kept
    assert domain.streams.get(store, "own")["reconnect_grace"] == "2m"
    for g in gens.values():
        _left(store, g["id"], 0)
    assert {g["stream"] for g in G.end_abandoned(store, "60s", now=_at(0))} == {"zero"}
    assert {g["stream"] for g in G.end_abandoned(store, "60s", now=_at(60))} == {"default"}
    assert {g["stream"] for g in G.end_abandoned(store, "60s", now=_at(120))} == {"own"}
    assert G.end_abandoned(store, "60s", now=_at(10**7)) == []
    assert G.get(store, gens["never"]["id"])["status"] == "starting"
    # The config's "never" holds every stream without its own grace.
    domain.streams.update(store, "default", reconnect_grace=None)
    g, _ = domain.streams.start(store, "default")
    _left(store, g["id"], 0)
    assert G.end_abandoned(store, "never", now=_at(10**7)) == []


def test_an_edge_copy_is_never_ended_by_the_grace(store):
    G = domain.generations
    stream = domain.streams.create(store, "demo")
    gen, _ = G.begin(store, stream["id"], mode="edge_mirror")
    _left(store, gen["id"], 0)
    assert G.end_abandoned(store, "0s", now=_at(100)) == []


@pytest.mark.parametrize("value, stored", [("30s", "30s"), ("5m", "5m"), (" never ", "never"), ("NEVER", "never"),
                                           (0, "0s"), (90, "90s"), (None, None)])
def test_stream_reconnect_grace_values(store, value, stored):
    domain.streams.create(store, "demo")
    assert domain.streams.update(store, "demo", reconnect_grace=value)["reconnect_grace"] == stored


@pytest.mark.parametrize("value", ["soon", "-5s", "5x", True, [], "31d"])
def test_stream_reconnect_grace_refuses_garbage_naming_the_field(store, value):
    domain.streams.create(store, "demo")
    with pytest.raises(InvalidInput) as e:
        domain.streams.update(store, "demo", reconnect_grace=value)
    assert e.value.field == "reconnect_grace"


def test_one_active_generation_per_stream_is_enforced_by_the_store(store):
    stream = domain.streams.create(store, "demo")
    other = domain.streams.create(store, "other")
    domain.streams.start(store, "demo")
    domain.streams.start(store, "other")  # another stream is independent
    with pytest.raises(sqlite3.IntegrityError):
        with store.write() as db:
            db["stream_generations"].insert({"id": "gen_dup", "stream_id": stream["id"], "status": "live",
                                             "started_at": "t", "updated_at": "t"})
    assert len(domain.generations.list_(store, active_only=True)) == 2
    assert domain.generations.active(store, other["id"])["status"] == "starting"


def test_generation_errors(store):
    with pytest.raises(NotFound):
        domain.streams.start(store, "nope")
    with pytest.raises(NotFound):
        domain.generations.get(store, "gen_nope")
    with pytest.raises(NotFound):
        domain.generations.mark_live(store, "gen_nope")
    domain.streams.create(store, "gone")
    domain.streams.delete(store, "gone")
    with pytest.raises(NotFound):
        domain.streams.start(store, "gone")
    assert _rows(store, "stream_generations") == []


def test_stream_series_buckets_a_streams_broadcasts_across_endpoints(store, edge):
    """The admin page's charts: per stream and minute, viewers summed over endpoints (each
    endpoint's samples averaged first), bitrate in the highest endpoint's; endpoint rows, other
    streams and rows before `since` stay out."""
    domain.endpoints.upsert(store, "origin", type="tribes_origin")
    studio = domain.streams.create(store, "studio")
    other = domain.streams.create(store, "other")
    g1, _ = domain.generations.begin(store, studio["id"])
    g2, _ = domain.generations.begin(store, other["id"])

    def at(minute: int, second: int, endpoint: str, generation: str, viewers: int, ingress: int) -> None:
        domain.snapshots.record(store, _snap(endpoint_id=endpoint, generation_id=generation, viewers=viewers,
                                             ingress_bps=ingress, observed_at=f"2026-12-07T10:{minute:02d}:{second:02d}Z"),
                                history_limit=1000)

    at(0, 5, "origin", g1["id"], 99, 1)        # before `since`
    at(1, 0, "origin", g1["id"], 2, 2_000_000)
    at(1, 30, "origin", g1["id"], 4, 2_200_000)  # same minute: averaged to 3
    at(1, 10, "edge1", g1["id"], 5, 2_100_000)   # another endpoint: added
    at(3, 0, "origin", g1["id"], 1, 1_900_000)
    at(1, 0, "origin", "", 50, 9)               # the endpoint's own row
    at(1, 0, "origin", g2["id"], 7, 500_000)    # another stream
    series = domain.snapshots.stream_series(store, "2026-12-07T10:01:00Z", bucket_s=60)
    minute = lambda m: int(datetime(2026, 12, 7, 10, m, tzinfo=timezone.utc).timestamp())  # noqa: E731
    assert series[studio["id"]] == [
        {"t": minute(1), "viewers": 8, "ingress_bps": 2_100_000},
        {"t": minute(3), "viewers": 1, "ingress_bps": 1_900_000},
    ]
    assert series[other["id"]] == [{"t": minute(1), "viewers": 7, "ingress_bps": 500_000}]
