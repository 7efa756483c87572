"""Distribution between nodes, against a real temporary store: node tokens, a source's listing,
checking a listing, mirroring it into an edge's store, and the edge's plan."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.core.core_hypothesis import core

from daemons.core import domain
from daemons.core.domain import distribution as dist
from daemons.core.domain.common import new_id
from daemons.core.errors import InvalidInput
from daemons.core.store import Store

KEY = b"k" * 32


# --- node tokens -------------------------------------------------------------------------------


def test_node_token_is_stable_and_prefixed():
    t = dist.node_token(KEY)
    assert t == dist.node_token(KEY) and t.startswith("snd_") and len(t) == 4 + 64
    assert dist.node_token(b"other") != t
    assert KEY.decode() not in t


@pytest.mark.parametrize(
    "key, header, ok",
    [
        (KEY, f"Bearer {dist.node_token(KEY)}", True),
        (KEY, f"bearer {dist.node_token(KEY)}", True),  # the scheme is case-insensitive
        (KEY, f"Bearer  {dist.node_token(KEY)} ", True),
        (KEY, f"Bearer {dist.node_token(b'other key')}", False),
        (KEY, f"Bearer {dist.node_token(KEY)[:-1]}", False),
        (KEY, f"Bearer {dist.node_token(KEY)}x", False),
        (KEY, "Bearer snd_", False),
        (KEY, "Bearer ", False),
        (KEY, f"Basic {dist.node_token(KEY)}", False),
        (KEY, f"Token {dist.node_token(KEY)}", False),
        (KEY, dist.node_token(KEY), False),  # no scheme
        (KEY, "", False),
        (KEY, None, False),
        (None, f"Bearer {dist.node_token(KEY)}", False),
        (None, None, False),
        (KEY, "Bearer ünïcode", False),
    ],
)
def test_node_authorized(key, header, ok):
    assert dist.node_authorized(key, header) is ok


# --- the source side: listing ------------------------------------------------------------------


def _origin_stream(store, slug="show", **kw):
    return domain.streams.create(store, slug, title=slug.title(), **kw)


def _generation_json(spool, stream_id: str, generation_id: str, renditions) -> None:
    """What a generation's producer writes in the spool (the ingest pipeline, or sender-edge-fill)."""
    d = spool / "streams" / stream_id / generation_id
    d.mkdir(parents=True, exist_ok=True)
    (d / "generation.json").write_text(json.dumps({"stream_id": stream_id, "generation_id": generation_id,
                                                   "renditions": renditions, "ended": False}))


def _generation(store, stream_id: str, status: str = "live", started_at: str = "2026-11-27T00:00:00.000Z") -> dict:
    """A generation row of this node's own (as the ingest daemon makes them)."""
    row = {"id": new_id("gen"), "stream_id": stream_id, "status": status, "mode": "origin_ingest",
           "started_at": started_at, "live_at": None, "ended_at": None, "failure_reason": None,
           "discontinuity_count": 0, "updated_at": started_at}
    with store.write() as db:
        db["stream_generations"].insert(row)
    return row


def test_listing_of_an_empty_node(store, tmp_path):
    assert dist.listing(store, node_id="origin", spool_root=tmp_path) == {"version": 1, "node_id": "origin", "load": None, "streams": []}


def test_listing_shape(store, tmp_path):
    a = _origin_stream(store, "alpha", ladder=[{"name": "source", "kind": "source"},
                                               {"name": "360p", "kind": "transcode", "height": 360, "video_bitrate": 800_000}])
    b = _origin_stream(store, "beta", visibility="unlisted")
    gone = _origin_stream(store, "gone")
    domain.streams.delete(store, gone["id"])
    g1, _ = domain.streams.start(store, a["id"])
    domain.streams.stop(store, a["id"])
    g2, _ = domain.streams.start(store, a["id"])
    domain.generations.mark_live(store, g2["id"])
    domain.endpoints.upsert(store, "origin", type="tribes_origin")
    domain.snapshots.record(store, {"endpoint_id": "origin", "status": "healthy", "viewers": 7, "egress_bps": 5000,
                                    "reporter": "origin"}, history_limit=10)
    _generation_json(tmp_path, a["id"], g2["id"], ["source", "360p"])
    positions = {f"{g2['id']}/source": {"last": [12, 3], "playlist_age_s": 0.4}}
    doc = dist.listing(store, node_id="origin", spool_root=tmp_path, rendition_positions=positions)
    assert doc["version"] == dist.LISTING_VERSION and doc["node_id"] == "origin"
    assert doc["load"] == {"status": "healthy", "viewers": 7, "egress_bps": 5000}
    by_id = {s["id"]: s for s in doc["streams"]}
    assert set(by_id) == {a["id"], b["id"]}  # not the deleted one
    assert [s["id"] for s in doc["streams"]] == sorted(by_id)
    sa = by_id[a["id"]]
    assert {k: sa[k] for k in ("slug", "title", "visibility")} == {"slug": "alpha", "title": "Alpha", "visibility": "public"}
    ga = sa["generation"]
    assert ga["id"] == g2["id"] != g1["id"] and ga["status"] == "live" and ga["live_at"] and ga["ended_at"] is None
    assert set(ga) == {"id", "status", "started_at", "live_at", "ended_at", "discontinuity_count", "renditions",
                       "publisher_connected_at", "publisher_left_at"}
    assert [r["name"] for r in ga["renditions"]] == ["360p", "source"]
    r360, rsrc = ga["renditions"]
    assert r360["kind"] == "transcode" and r360["height"] == 360 and r360["video_bitrate"] == 800_000
    assert "last" not in r360
    assert rsrc["last"] == [12, 3] and rsrc["playlist_age_s"] == 0.4
    assert by_id[b["id"]]["generation"] is None and by_id[b["id"]]["visibility"] == "unlisted"
    assert json.loads(json.dumps(doc)) == doc  # plain JSON
    assert dist.check_listing(doc) is doc
    # Another node's snapshot is not this node's load.
    assert dist.listing(store, node_id="edge1", spool_root=tmp_path)["load"] is None


def test_listing_takes_the_latest_generation(store, tmp_path):
    s = _origin_stream(store)
    ids = []
    for _ in range(3):
        g, _ = domain.streams.start(store, s["id"])
        domain.streams.stop(store, s["id"])
        ids.append(g["id"])
    assert dist.listing(store, node_id="o", spool_root=tmp_path)["streams"][0]["generation"]["id"] == ids[-1]
    assert dist.listing(store, node_id="o", spool_root=tmp_path)["streams"][0]["generation"]["status"] == "ended"


def test_listing_takes_the_renditions_the_generation_runs_not_the_streams_rows(store, tmp_path):
    # The stream's renditions rows change while a generation is live; its packager keeps running
    # what it started with, and that is what generation.json in the spool lists.
    s = _origin_stream(store, ladder=[{"name": "source", "kind": "source"},
                                      {"name": "720p", "kind": "transcode", "height": 720, "video_bitrate": 2_500_000}])
    g = _generation(store, s["id"])
    _generation_json(tmp_path, s["id"], g["id"], ["source", "720p"])
    domain.renditions.upsert(store, s["id"], {"name": "360p", "kind": "transcode", "height": 360, "video_bitrate": 800_000})
    domain.renditions.delete(store, s["id"], "720p")

    def listed() -> list[dict]:
        return dist.listing(store, node_id="o", spool_root=tmp_path)["streams"][0]["generation"]["renditions"]

    # 360p (added during the generation) is not produced by it: an edge must not wait for it.
    # 720p (deleted during it) still is: listed as what it is, without the row's details.
    assert [(r["name"], r["kind"]) for r in listed()] == [("720p", "transcode"), ("source", "source")]
    assert listed()[0]["height"] is None
    # The next generation runs the rows of its time.
    with store.write() as db:
        db["stream_generations"].update(g["id"], {"status": "ended"})
    g2 = _generation(store, s["id"], started_at="2026-11-27T01:00:00.000Z")
    _generation_json(tmp_path, s["id"], g2["id"], ["source", "360p"])
    assert [(r["name"], r["height"]) for r in listed()] == [("360p", 360), ("source", None)]
    dist.check_listing(dist.listing(store, node_id="o", spool_root=tmp_path))


@pytest.mark.parametrize("content", [None, b"", b"{", b"[]", b'{"renditions": "source"}', b'{"renditions": [1]}',
                                     b'{"renditions": ["../../etc"]}', b"\xff\xfe", b"[" * 100_000])
def test_a_generation_without_a_usable_generation_json_lists_no_renditions(store, tmp_path, content):
    # Nothing runs it yet (its publisher has not connected): an edge has nothing to follow.
    s = _origin_stream(store)
    g = _generation(store, s["id"], status="starting")
    if content is not None:
        _generation_json(tmp_path, s["id"], g["id"], [])
        (tmp_path / "streams" / s["id"] / g["id"] / "generation.json").write_bytes(content)
    assert dist.listing(store, node_id="o", spool_root=tmp_path)["streams"][0]["generation"]["renditions"] == []


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
       | st.lists(st.text(max_size=40), max_size=5).map(lambda names: json.dumps({"renditions": names}).encode()))
def test_generation_renditions_takes_any_file(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("spool")
    d = root / "streams" / "st_ba7816bf8f01cfea" / "gen_ba7816bf8f01cfea"
    d.mkdir(parents=True)
    (d / "generation.json").write_bytes(data)
    names = dist.generation_renditions(root, "st_ba7816bf8f01cfea", "gen_ba7816bf8f01cfea")
    assert names is None or all(dist.RENDITION_NAME.fullmatch(n) for n in names)


# --- check_listing -----------------------------------------------------------------------------


def _listed(sid="st_ba7816bf8f01cfea", slug="show", gid="gen_ba7816bf8f01cfea", status="live", renditions=None, **stream):
    g = None if gid is None else {
        "id": gid, "status": status, "started_at": "2026-11-27T00:00:00.000Z", "live_at": None, "ended_at": None,
        "discontinuity_count": 0,
        "renditions": renditions if renditions is not None else [{"name": "source", "kind": "source"}],
    }
    return {"id": sid, "slug": slug, "title": slug.title(), "visibility": "public", "generation": g, **stream}


def _doc(*streams, version=1):
    return {"version": version, "node_id": "origin", "load": None, "streams": list(streams)}


@pytest.mark.parametrize(
    "doc, field, match",
    [
        ([], None, "streams array"),
        ({"version": 1}, None, "streams array"),
        ({"version": 1, "streams": {}}, None, "streams array"),
        (_doc(version=2), None, "version 2 is not 1"),
        ({"streams": []}, None, "version None"),
        (_doc("st_2d711642b726b044"), None, "must be an object"),
        (_doc({**_listed(), "slug": ""}), "slug", "'slug' must be a non-empty string"),
        (_doc({**_listed(), "title": 5}), "title", "'title'"),
        (_doc({**_listed(), "visibility": None}), "visibility", "'visibility'"),
        (_doc({**_listed(), "id": "x" * 501}), "id", "'id'"),
        (_doc(_listed(sid="abc")), "id", "'abc' is malformed"),
        (_doc({**_listed(), "visibility": "secret"}), "id", "malformed"),
        (_doc({**_listed(), "generation": "gen_2d711642b726b044"}), "generation", "gen_"),
        (_doc({**_listed(), "generation": {"id": "g1"}}), "generation", "gen_"),
        (_doc(_listed(status="paused")), "status", "'paused' is unknown"),
        (_doc(_listed(renditions={"name": "source"})), "renditions", "name and a kind"),
        (_doc(_listed(renditions=[{"name": "source", "kind": "copy"}])), "renditions", "name and a kind"),
        (_doc(_listed(renditions=[{"kind": "source"}])), "renditions", "name and a kind"),
    ],
)
def test_check_listing_names_what_is_wrong(doc, field, match):
    with pytest.raises(InvalidInput, match=match) as e:
        dist.check_listing(doc)
    assert e.value.field == field


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "../../etc", "kind": "source"},  # the edge writes <spool>/<…>/<rendition>/
        {"name": "", "kind": "source"},
        {"name": "a/b", "kind": "source"},
        {"name": "x" * 33, "kind": "source"},
        {"name": "source", "kind": "source", "width": "wide"},
        {"name": "source", "kind": "source", "frame_rate": [30]},
        {"name": "source", "kind": "source", "video_codec": {"x": 1}},
        {"name": "source", "kind": "source", "width": True},
        # What an edge compares sources by (health.best_positions, segment_lag): numbers only.
        {"name": "source", "kind": "source", "last": ["12", 0]},
        {"name": "source", "kind": "source", "last": [12]},
        {"name": "source", "kind": "source", "last": 12},
        {"name": "source", "kind": "source", "last": [12, "a"]},
        {"name": "source", "kind": "source", "playlist_age_s": "old"},
        {"name": "source", "kind": "source", "playlist_age_s": float("nan")},
        {"name": "source", "kind": "source", "playlist_age_s": -1},
    ],
)
def test_check_listing_refuses_renditions_the_edge_cannot_carry(bad):
    with pytest.raises(InvalidInput) as e:
        dist.check_listing(_doc(_listed(renditions=[bad])))
    assert e.value.field == "renditions"


def test_check_listing_accepts_what_a_sender_source_lists():
    r = {"name": "720p", "kind": "transcode", "width": 1280, "height": 720, "video_bitrate": 2_500_000,
         "audio_bitrate": 128_000, "video_codec": "avc1.64001f", "audio_codec": "mp4a.40.2", "frame_rate": 29.97,
         "measured_bandwidth": None, "measured_average_bandwidth": 3_000_000,
         "last": [12, None], "target_duration": 2, "playlist_age_s": 0.25}
    doc = _doc(_listed(renditions=[r, {"name": "source", "kind": "source", "last": [12, 3], "playlist_age_s": 0}]))
    assert dist.check_listing(doc) is doc


@pytest.mark.parametrize(
    "field, value",
    [("started_at", 5), ("started_at", ["2026"]), ("live_at", {"a": 1}), ("ended_at", "x" * 100),
     ("discontinuity_count", "many"), ("discontinuity_count", -1), ("discontinuity_count", 1.5),
     ("discontinuity_count", [1])],
)
def test_check_listing_refuses_malformed_generation_fields(field, value):
    doc = _doc(_listed())
    doc["streams"][0]["generation"][field] = value
    with pytest.raises(InvalidInput) as e:
        dist.check_listing(doc)
    assert e.value.field == field


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2**40) | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.sampled_from(["st_ca978112ca1bbdca", "gen_ca978112ca1bbdca", "live", "ended", "public", "source", "transcode", "a", 1]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["version", "streams", "id", "slug", "title", "visibility", "generation", "status",
                         "renditions", "name", "kind", "started_at", "discontinuity_count", "width", "x"]),
        children, max_size=7),
    max_leaves=30,
)


@st.composite
def listing_like(draw):
    """Mostly-right listings with random values swapped in: the checker's corners."""
    streams = []
    for i in range(draw(st.integers(0, 3))):
        s = _listed(sid=f"st_{i}", slug=f"s{i}", gid=f"gen_{i}")
        for k in draw(st.lists(st.sampled_from(["id", "slug", "title", "visibility", "generation"]), max_size=2)):
            s[k] = draw(json_values)
        if s["generation"] is not None and isinstance(s["generation"], dict) and draw(st.booleans()):
            g = dict(s["generation"])
            for k in draw(st.lists(st.sampled_from(list(g) + ["x"]), max_size=3)):
                g[k] = draw(json_values)
            if draw(st.booleans()):
                g["renditions"] = [{"name": draw(st.sampled_from(["source", "720p"]) | st.text(max_size=5)),
                                    "kind": draw(st.sampled_from(["source", "transcode"])),
                                    draw(st.sampled_from(["width", "frame_rate", "video_codec", "height"])): draw(json_values)}]
            s["generation"] = g
        streams.append(s)
    doc = {"version": draw(st.sampled_from([1, 1, 1, 2, "1", None])), "streams": streams}
    return draw(st.sampled_from([doc, doc, doc, draw(json_values)]))


@core
@given(doc=listing_like())
def test_check_listing_never_raises_anything_else_and_what_it_accepts_mirrors(store, doc):
    try:
        out = dist.check_listing(doc)
    except InvalidInput as e:
        assert e.message
        return
    assert isinstance(out, dict)
    # What the checker accepts, the store takes: mirror never fails on an accepted listing.
    with store.write() as db:  # each example starts from an empty edge
        for t in ("renditions", "stream_generations", "streams"):
            db.execute(f"DELETE FROM {t}")
    dist.mirror(store, "origin", out)
    assert dist.mirror(store, "origin", out) is not None


# --- the edge side: mirror ---------------------------------------------------------------------


def _rows(store, table, **where):
    cond = " AND ".join(f"{k} = ?" for k in where) or "1"
    return store.query(f"SELECT * FROM {table} WHERE {cond} ORDER BY rowid", tuple(where.values()))


def test_mirror_creates_streams_generations_and_renditions_with_the_same_ids(store, tmp_path):
    listed = _listed(renditions=[{"name": "source", "kind": "source", "width": 1280, "height": 720,
                                  "video_codec": "avc1.64001f", "audio_codec": "mp4a.40.2", "frame_rate": 30.0,
                                  "measured_bandwidth": 2_500_000},
                                 {"name": "360p", "kind": "transcode", "height": 360, "video_bitrate": 800_000}])
    out = dist.mirror(store, "origin", _doc(listed, _listed(sid="st_8a0e414f1bb24346", slug="idle", gid=None)))
    assert [s["id"] for s in out] == ["st_ba7816bf8f01cfea"]  # only the streams with a generation come back
    s = domain.streams.get(store, "st_ba7816bf8f01cfea")
    assert (s["slug"], s["title"], s["visibility"], s["source_endpoint_id"]) == ("show", "Show", "public", "origin")
    assert domain.streams.get(store, "idle")["id"] == "st_8a0e414f1bb24346"
    g = domain.generations.get(store, "gen_ba7816bf8f01cfea")
    assert g["stream_id"] == "st_ba7816bf8f01cfea" and g["mode"] == dist.MIRROR_MODE == "edge_mirror" and g["status"] == "live"
    assert g["started_at"] == "2026-11-27T00:00:00.000Z" and g["discontinuity_count"] == 0
    rends = {r["name"]: r for r in domain.renditions.list_(store, "st_ba7816bf8f01cfea")}
    assert set(rends) == {"source", "360p"}
    assert rends["source"]["width"] == 1280 and rends["source"]["measured_bandwidth"] == 2_500_000
    assert rends["360p"]["video_bitrate"] == 800_000
    # What the edge lists of the mirrored stream is what the source listed.
    again = {x["id"]: x for x in dist.listing(store, node_id="edge", spool_root=tmp_path)["streams"]}["st_ba7816bf8f01cfea"]
    assert again["generation"]["id"] == "gen_ba7816bf8f01cfea" and again["slug"] == "show"


def test_mirror_is_idempotent_and_updates_changed_fields(store):
    doc = _doc(_listed())
    dist.mirror(store, "origin", doc)
    tables = ("streams", "stream_generations", "renditions")
    before = {t: _rows(store, t) for t in tables}
    dist.mirror(store, "origin", doc)
    assert {t: _rows(store, t) for t in tables} == before  # the same listing twice: the same rows
    changed = _listed(slug="renamed", renditions=[{"name": "source", "kind": "source", "width": 640}],
                      status="live")
    changed["title"], changed["visibility"] = "New title", "private"
    changed["generation"]["discontinuity_count"] = 2
    dist.mirror(store, "origin", _doc(changed))
    s = domain.streams.get(store, "st_ba7816bf8f01cfea")
    assert (s["slug"], s["title"], s["visibility"]) == ("renamed", "New title", "private")
    assert s["created_at"] == before["streams"][0]["created_at"]
    assert domain.generations.get(store, "gen_ba7816bf8f01cfea")["discontinuity_count"] == 2
    assert domain.renditions.list_(store, "st_ba7816bf8f01cfea")[0]["width"] == 640
    assert len(_rows(store, "renditions")) == 1
    ended = _listed(slug="renamed", status="ended", renditions=[{"name": "source", "kind": "source", "width": 640}])
    ended["generation"]["ended_at"] = "2026-11-27T01:00:00.000Z"
    dist.mirror(store, "origin", _doc({**ended, "title": "New title", "visibility": "private"}))
    g = domain.generations.get(store, "gen_ba7816bf8f01cfea")
    assert g["status"] == "ended" and g["ended_at"] == "2026-11-27T01:00:00.000Z"
    assert g["started_at"] == "2026-11-27T00:00:00.000Z"  # kept from the first mirror
    snapshot = {t: _rows(store, t) for t in tables}
    dist.mirror(store, "origin", _doc({**ended, "title": "New title", "visibility": "private"}))
    assert {t: _rows(store, t) for t in tables} == snapshot


def test_mirror_never_touches_a_local_stream_with_the_same_id(store):
    local = _origin_stream(store, "mine")
    g, _ = domain.streams.start(store, local["id"])
    before = {t: _rows(store, t) for t in ("streams", "stream_generations", "renditions")}
    listed = _listed(sid=local["id"], slug="theirs", gid="gen_4c55a8552a2c7261", renditions=[{"name": "720p", "kind": "source"}])
    assert dist.mirror(store, "origin", _doc(listed)) == []
    assert {t: _rows(store, t) for t in ("streams", "stream_generations", "renditions")} == before
    # Nor is it deleted when the source stops listing it.
    dist.mirror(store, "origin", _doc())
    assert domain.streams.get(store, local["id"])["deleted_at"] is None
    assert domain.generations.get(store, g["id"])["status"] == "starting"


def test_mirror_skips_a_stream_whose_slug_clashes_with_a_local_one(store):
    local = _origin_stream(store, "show")
    out = dist.mirror(store, "origin", _doc(_listed(sid="st_d9298a10d1b07358", slug="show"), _listed(sid="st_2689367b205c16ce", slug="ok", gid="gen_2689367b205c16ce")))
    assert [s["id"] for s in out] == ["st_2689367b205c16ce"]
    assert domain.streams.get(store, "show")["id"] == local["id"]
    assert _rows(store, "streams", id="st_d9298a10d1b07358") == [] and _rows(store, "stream_generations", id="gen_ba7816bf8f01cfea") == []
    # Once the local stream is deleted, the slug is free for the mirrored one.
    domain.streams.delete(store, local["id"])
    assert [s["id"] for s in dist.mirror(store, "origin", _doc(_listed(sid="st_d9298a10d1b07358", slug="show")))] == ["st_d9298a10d1b07358"]
    assert domain.streams.get(store, "show")["id"] == "st_d9298a10d1b07358"


def test_mirror_ends_an_older_active_generation_when_a_newer_one_is_listed(store):
    dist.mirror(store, "origin", _doc(_listed(gid="gen_cba06b5736faf67e", status="live")))
    newer = _listed(gid="gen_11507a0e2f5e69d5", status="starting")
    newer["generation"]["started_at"] = "2026-11-27T01:00:00.000Z"  # (newer: started later)
    dist.mirror(store, "origin", _doc(newer))
    old, new = domain.generations.get(store, "gen_cba06b5736faf67e"), domain.generations.get(store, "gen_11507a0e2f5e69d5")
    assert old["status"] == "ended" and old["ended_at"] and new["status"] == "starting"
    active = store.query("SELECT id FROM stream_generations WHERE stream_id = 'st_ba7816bf8f01cfea' AND status IN ('starting', 'live')")
    assert active == [{"id": "gen_11507a0e2f5e69d5"}]
    assert domain.generations.active(store, "st_ba7816bf8f01cfea")["id"] == "gen_11507a0e2f5e69d5"
    # The same again, and the newer one going live: still one active generation.
    newer["generation"]["status"] = "live"
    dist.mirror(store, "origin", _doc(newer))
    assert [g["id"] for g in store.query("SELECT id FROM stream_generations WHERE status IN ('starting', 'live')")] == ["gen_11507a0e2f5e69d5"]


# --- one stream listed with different generations by different sources ---------------------------

OLD, NEW = "gen_cba06b5736faf67e", "gen_11507a0e2f5e69d5"
EARLY, LATE = "2026-11-27T00:00:00.000Z", "2026-11-27T01:00:00.000Z"


def _gen(gid: str, started_at: str | None, status: str = "live", **kw) -> dict:
    s = _listed(gid=gid, status=status, **kw)
    s["generation"]["started_at"] = started_at
    return s


def _statuses(store) -> dict[str, str]:
    return {g["id"]: g["status"] for g in _rows(store, "stream_generations")}


def test_merge_takes_the_newest_generation_whatever_the_sources_order():
    stale, fresh = _doc(_gen(OLD, EARLY)), _doc(_gen(NEW, LATE))
    for docs in ([stale, fresh], [fresh, stale]):
        [entry] = dist.merge(docs)
        assert entry["generation"]["id"] == NEW
    # The same started_at: the id decides, the same way every time.
    a, b = _doc(_gen(OLD, LATE)), _doc(_gen(NEW, LATE))
    assert dist.merge([a, b])[0]["generation"]["id"] == dist.merge([b, a])[0]["generation"]["id"] == max(OLD, NEW)


def test_merge_of_one_generation_an_end_wins_else_the_first_source():
    live, ended = _doc(_gen(NEW, LATE, "live")), _doc(_gen(NEW, LATE, "ended"))
    assert dist.merge([live, ended])[0]["generation"]["status"] == "ended"
    assert dist.merge([ended, live])[0]["generation"]["status"] == "ended"
    first, second = _doc(_gen(NEW, LATE, title="First")), _doc(_gen(NEW, LATE, title="Second"))
    assert dist.merge([first, second])[0]["title"] == "First"
    # Streams without a generation, and streams only one source lists, come through.
    idle = _listed(sid="st_8a0e414f1bb24346", slug="idle", gid=None)
    merged = dist.merge([_doc(idle), _doc(_gen(NEW, LATE))])
    assert sorted(s["id"] for s in merged) == sorted(["st_8a0e414f1bb24346", "st_ba7816bf8f01cfea"])


def test_an_older_generation_is_never_activated_once_a_newer_one_was_seen(store):
    assert [s["generation"]["status"] for s in dist.mirror(store, "origin", _doc(_gen(NEW, LATE)))] == ["live"]
    # A stale source still lists the previous generation as live: it is not brought back, and
    # what mirror answers says so (the daemon follows only what it answers as active).
    out = dist.mirror(store, "stale", _doc(_gen(OLD, EARLY)))
    assert [(s["generation"]["id"], s["generation"]["status"]) for s in out] == [(OLD, "ended")]
    assert _statuses(store) == {NEW: "live", OLD: "ended"}
    # Seen first while live, then a newer one: the older one ended and stays ended.
    dist.mirror(store, "origin", _doc(_gen(NEW, LATE)))
    dist.mirror(store, "stale", _doc(_gen(OLD, EARLY)))
    assert _statuses(store) == {NEW: "live", OLD: "ended"}
    assert domain.generations.active(store, "st_ba7816bf8f01cfea")["id"] == NEW
    assert domain.generations.get(store, OLD)["end_reason"] == "source_ended"
    assert domain.generations.get(store, NEW)["end_reason"] is None


def test_an_ended_generation_stays_ended(store):
    dist.mirror(store, "origin", _doc(_gen(NEW, LATE)))
    dist.mirror(store, "origin", _doc(_gen(NEW, LATE, "ended")))
    ended_at = domain.generations.get(store, NEW)["ended_at"]
    for status in ("live", "starting"):
        out = dist.mirror(store, "stale", _doc(_gen(NEW, LATE, status)))
        assert [s["generation"]["status"] for s in out] == ["ended"]
    assert domain.generations.get(store, NEW)["status"] == "ended" and domain.generations.get(store, NEW)["ended_at"] == ended_at
    assert domain.generations.active(store, "st_ba7816bf8f01cfea") is None


@core
@given(rounds=st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(["live", "ended", "starting"])), min_size=1, max_size=12))
def test_listings_in_any_order_never_flip_the_active_generation_back(bare_store, rounds):
    """Sources answer in any order with any of three generations: once a generation was seen, no
    older one is active again, and an ended one never comes back."""
    store = bare_store
    with store.write() as db:  # each example starts from an empty edge
        for t in ("renditions", "stream_generations", "streams"):
            db.execute(f"DELETE FROM {t}")
    started = {"a": EARLY, "b": "2026-11-27T00:30:00.000Z", "c": LATE}
    gid = {k: f"gen_000000000000000{i}" for i, k in enumerate("abc")}
    newest_seen, ended = "", set()
    for which, status in rounds:
        dist.mirror(store, "origin", _doc(_gen(gid[which], started[which], status)))
        newest_seen = max(newest_seen, started[which])
        if status == "ended":
            ended.add(which)
        now = _statuses(store)
        active = [k for k in "abc" if now.get(gid[k]) in ("starting", "live")]
        assert len(active) <= 1
        assert all(k not in ended and started[k] == newest_seen for k in active)
        assert all(now[gid[k]] == "ended" for k in ended)


# --- the mirror follows the transition table -------------------------------------------------------

G = domain.generations


def test_the_paths_the_mirror_may_take():
    assert G.path("starting", "starting") == ()
    assert G.path("starting", "live") == (G.Event.GO_LIVE,)
    assert G.path("live", "ended") == (G.Event.END,)
    assert G.path("starting", "failed") == (G.Event.FAIL,)
    for back in (("live", "starting"), ("ended", "live"), ("ended", "starting"), ("failed", "live"), ("ended", "failed")):
        assert G.path(*back) is None, back  # a generation never goes back
    # Only an end the edge inferred itself is undone, and through the table: revive, then go live.
    assert G.path("ended", "live", revive=True) == (G.Event.REVIVE, G.Event.GO_LIVE)
    assert G.path("failed", "live", revive=True) is None
    assert G.follow("live", "starting") is G.Status.LIVE and G.follow("ended", "live") is G.Status.ENDED
    assert G.follow("ended", "live", revive=True) is G.Status.LIVE
    # A revived generation is active again; what can still end is what is active.
    assert G.next_status("ended", G.Event.REVIVE) is G.Status.STARTING and set(G.ACTIVE) == {"starting", "live"}


def test_a_live_generation_never_goes_back_to_starting(store):
    live = _gen(NEW, LATE, "live")
    live["generation"]["live_at"] = "2026-11-27T01:00:02.000Z"
    dist.mirror(store, "origin", _doc(live))
    # A source behind (it still lists the generation as starting) moves nothing.
    out = dist.mirror(store, "stale", _doc(_gen(NEW, LATE, "starting")))
    assert [s["generation"]["status"] for s in out] == ["live"]
    g = domain.generations.get(store, NEW)
    assert g["status"] == "live" and g["live_at"] == "2026-11-27T01:00:02.000Z"


def test_an_end_a_source_reported_is_never_revived_by_a_dropped_and_relisted_stream(store):
    dist.mirror(store, "origin", _doc(_gen(NEW, LATE, "ended")))
    dist.mirror(store, "origin", _doc())  # dropped: deleted, its generation was not active
    out = dist.mirror(store, "stale", _doc(_gen(NEW, LATE, "live")))
    assert [s["generation"]["status"] for s in out] == ["ended"]
    assert domain.generations.get(store, NEW)["end_reason"] == "source_ended"


@core
@given(rounds=st.lists(st.one_of(st.just(("drop", None)),
                                 st.tuples(st.sampled_from("abc"), st.sampled_from(["starting", "live", "ended", "failed"]))),
                       min_size=1, max_size=14))
def test_every_status_change_on_an_edge_is_a_move_of_the_table(bare_store, rounds):
    """Whatever sources list (and drop), each mirrored generation moves only as TRANSITIONS allows,
    a generation comes back from an end only right after its stream was dropped and listed again
    (the edge's own inference, never an end a source reported), and a failed one stays failed."""
    store = bare_store
    with store.write() as db:  # each example starts from an empty edge
        for t in ("renditions", "stream_generations", "streams"):
            db.execute(f"DELETE FROM {t}")
    started = {"a": EARLY, "b": "2026-11-27T00:30:00.000Z", "c": LATE}
    gid = {k: f"gen_000000000000000{i}" for i, k in enumerate("abc")}
    reported_end: set[str] = set()
    dropped = False
    for which, status in rounds:
        before = _statuses(store)
        if which == "drop":
            dist.mirror(store, "origin", _doc())
        else:
            dist.mirror(store, "origin", _doc(_gen(gid[which], started[which], status)))
            if not G.is_active(status):
                reported_end.add(gid[which])
        after = _statuses(store)
        for g, now in after.items():
            was = before.get(g)
            if was is None:
                continue  # first seen: created in what its source (or a newer generation) says
            assert G.path(was, now, revive=True) is not None, (g, was, now)
            if not G.is_active(was) and G.is_active(now):
                assert was == "ended" and dropped and g not in reported_end, (g, was, now)
        dropped = which == "drop"
        assert len([g for g, now in after.items() if G.is_active(now)]) <= 1


def test_expired_mirrors_are_the_mirrored_generations_over_for_longer_than_the_retention(store):
    from datetime import datetime, timezone

    dist.mirror(store, "origin", _doc(_listed(sid="st_ca978112ca1bbdca", slug="a", gid="gen_ca978112ca1bbdca", status="ended"),
                                      _listed(sid="st_3e23e8160039594a", slug="b", gid="gen_3e23e8160039594a", status="live")))
    with store.write() as db:
        db.execute("UPDATE stream_generations SET ended_at = '2026-11-27T01:00:00.000Z' WHERE id = 'gen_ca978112ca1bbdca'")
    mine = _origin_stream(store, "mine")
    own, _ = domain.streams.start(store, mine["id"])
    domain.streams.stop(store, mine["id"])  # this node's own ended generation: the ingest daemon's to clean up
    at = datetime(2026, 11, 27, 1, 10, tzinfo=timezone.utc)
    assert dist.expired_mirrors(store, 600, now=at) == [("st_ca978112ca1bbdca", "gen_ca978112ca1bbdca")]
    assert dist.expired_mirrors(store, 601, now=at) == []
    assert own["id"] not in {g for _, g in dist.expired_mirrors(store, 0)}


def test_mirror_soft_deletes_streams_no_longer_listed_but_not_carried_ones(store):
    dist.mirror(store, "origin", _doc(_listed(sid="st_ca978112ca1bbdca", slug="a", gid="gen_ca978112ca1bbdca"), _listed(sid="st_3e23e8160039594a", slug="b", gid="gen_3e23e8160039594a"),
                                      _listed(sid="st_2e7d2c03a9507ae2", slug="c", gid="gen_2e7d2c03a9507ae2")))
    dist.mirror(store, "other-origin", _doc(_listed(sid="st_2d711642b726b044", slug="x", gid="gen_2d711642b726b044")))
    dist.mirror(store, "origin", _doc(_listed(sid="st_ca978112ca1bbdca", slug="a", gid="gen_ca978112ca1bbdca")), carried={"st_2e7d2c03a9507ae2"})
    live = {s["id"] for s in domain.streams.list_(store)}
    assert live == {"st_ca978112ca1bbdca", "st_2e7d2c03a9507ae2", "st_2d711642b726b044"}  # another source's streams are its own business
    b = domain.streams.get(store, "st_3e23e8160039594a", include_deleted=True)
    assert b["deleted_at"] and b["updated_at"] == b["deleted_at"]
    # Soft-deleted like streams.delete: its active generation ends with it.
    assert domain.generations.get(store, "gen_3e23e8160039594a")["status"] == "ended"
    assert domain.generations.active(store, "st_3e23e8160039594a") is None
    assert domain.generations.get(store, "gen_ca978112ca1bbdca")["status"] == "live"


def test_a_deleted_mirrored_stream_listed_again_comes_back(store):
    dist.mirror(store, "origin", _doc(_listed()))
    dist.mirror(store, "origin", _doc())
    assert domain.streams.get(store, "st_ba7816bf8f01cfea", include_deleted=True)["deleted_at"]
    out = dist.mirror(store, "origin", _doc(_listed()))
    assert [s["id"] for s in out] == ["st_ba7816bf8f01cfea"]
    s = domain.streams.get(store, "show")
    assert s["id"] == "st_ba7816bf8f01cfea" and s["deleted_at"] is None
    assert domain.generations.get(store, "gen_ba7816bf8f01cfea")["status"] == "live"
    assert domain.generations.active(store, "st_ba7816bf8f01cfea")["id"] == "gen_ba7816bf8f01cfea"
    assert len(_rows(store, "streams")) == 1 and len(_rows(store, "stream_generations")) == 1


def test_a_stream_moves_between_sources(store):
    dist.mirror(store, "origin-a", _doc(_listed()))
    dist.mirror(store, "origin-b", _doc(_listed()))
    assert domain.streams.get(store, "st_ba7816bf8f01cfea")["source_endpoint_id"] == "origin-b"
    dist.mirror(store, "origin-a", _doc())  # the old source drops it: not its stream any more
    assert domain.streams.get(store, "st_ba7816bf8f01cfea")["deleted_at"] is None


def test_mirror_refuses_a_bad_listing_and_writes_nothing(store):
    with pytest.raises(InvalidInput):
        dist.mirror(store, "origin", _doc(_listed(), {"id": "bad"}))
    assert _rows(store, "streams") == []


def test_mirror_leaves_a_local_generation_with_a_listed_id_alone(store):
    local = _origin_stream(store, "mine")
    g, _ = domain.streams.start(store, local["id"])
    dist.mirror(store, "origin", _doc(_listed(gid=g["id"], status="ended")))
    mine = domain.generations.get(store, g["id"])
    assert mine["stream_id"] == local["id"] and mine["status"] == "starting" and mine["mode"] == "origin_ingest"


# --- the edge side: plan -----------------------------------------------------------------------


def test_plan(store):
    up = domain.endpoints.upsert
    up(store, "origin-a", type="tribes_origin", public_base_url="https://a.example/", health_thresholds={"max_viewers": 500})
    up(store, "origin-b", type="tribes_origin", public_base_url="https://b.example")
    up(store, "no-url", type="tribes_origin")
    up(store, "disabled", type="tribes_origin", public_base_url="https://d.example", enabled=False)
    up(store, "ext", type="external_origin", public_base_url="https://cdn.example/live/master.m3u8")
    up(store, "node-1", type="tribes_edge", sources=["origin-b", "no-url", "disabled", "origin-a", "ext"],
       health_thresholds={"max_segment_lag": 2, "max_playlist_age_s": 4})
    up(store, "edge-x", type="tribes_edge", node_id="node-1", sources=["origin-a"])
    up(store, "edge-y", type="tribes_edge", node_id="node-2", sources=["origin-a"])
    up(store, "edge-off", type="tribes_edge", node_id="node-1", enabled=False)
    up(store, "origin-node-1", type="tribes_origin", node_id="node-1")  # not an edge
    plans = dist.plan(store, "node-1")
    assert [p.endpoint_id for p in plans] == ["edge-x", "node-1"]
    node = plans[1]
    assert node.thresholds == {"max_playlist_age_s": 4.0, "max_segment_lag": 2}
    assert node.sources == (
        dist.Source("origin-b", "tribes_origin", "https://b.example", {}),
        dist.Source("origin-a", "tribes_origin", "https://a.example", {"max_viewers": 500}),
        dist.Source("ext", "external_origin", "https://cdn.example/live/master.m3u8", {}),
    )
    assert plans[0].sources == (dist.Source("origin-a", "tribes_origin", "https://a.example", {"max_viewers": 500}),)
    assert plans[0].thresholds == {}
    assert [p.endpoint_id for p in dist.plan(store, "node-2")] == ["edge-y"]
    assert dist.plan(store, "node-3") == []
    domain.endpoints.delete(store, "edge-x")
    assert [p.endpoint_id for p in dist.plan(store, "node-1")] == ["node-1"]


def test_the_publishers_presence_reaches_the_edge(store, tmp_path):
    """An edge's playback API says "reconnecting" when its origin's does: the listing carries the
    publisher's presence and the mirror keeps it."""
    s = _origin_stream(store)
    g, _ = domain.streams.start(store, s["id"])
    domain.generations.publisher_joined(store, g["id"])
    domain.generations.publisher_left(store, g["id"], at="2026-12-07T12:00:00.000Z")
    doc = dist.listing(store, node_id="origin", spool_root=tmp_path)
    listed = doc["streams"][0]["generation"]
    assert listed["publisher_left_at"] == "2026-12-07T12:00:00.000Z" and listed["publisher_connected_at"]
    edge = Store.open(tmp_path / "edge.db")
    try:
        domain.endpoints.upsert(edge, "origin", type="tribes_origin", public_base_url="http://origin.test")
        dist.mirror(edge, "origin", doc)
        mirrored = domain.generations.get(edge, g["id"])
        assert (mirrored["publisher_connected_at"], mirrored["publisher_left_at"]) == (listed["publisher_connected_at"], listed["publisher_left_at"])
        assert not domain.generations.publisher_connected(mirrored)
    finally:
        edge.close()
    with pytest.raises(InvalidInput):
        dist.check_listing({**doc, "streams": [{**doc["streams"][0], "generation": {**listed, "publisher_left_at": 5}}]})
