"""Media endpoints and the distribution graph: idempotent upserts, source links, cycles, deletes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.core.core_hypothesis import core

from daemons.core import domain
from daemons.core.errors import Conflict, InvalidInput, NotFound

up = domain.endpoints.upsert


def _rows(store, table):
    return store.query(f"SELECT * FROM {table} ORDER BY rowid")


def test_upsert_creates_with_defaults(store):
    row = up(store, "origin", type="tribes_origin")
    assert row["id"] == "origin" and row["name"] == "origin" and row["type"] == "tribes_origin"
    assert row["enabled"] is True and row["sources"] == [] and row["health_thresholds"] == {}
    assert row["created_at"] == row["updated_at"] and row["deleted_at"] is None


def test_same_upsert_twice_is_the_same_state(store):
    args = dict(type="tribes_edge", name="Edge 1", node_id="node-7", public_base_url="https://edge1.example.com/",
                enabled=False, health_thresholds={"max_segment_lag": 2, "max_playlist_age_s": 4})
    up(store, "origin", type="tribes_origin")
    first = up(store, "edge1", sources=["origin"], **args)
    endpoints_before, links_before = _rows(store, "media_endpoints"), _rows(store, "endpoint_sources")
    second = up(store, "edge1", sources=["origin"], **args)
    assert second == first  # including updated_at
    assert _rows(store, "media_endpoints") == endpoints_before
    assert _rows(store, "endpoint_sources") == links_before
    assert len(links_before) == 1
    assert first["public_base_url"] == "https://edge1.example.com"
    assert first["health_thresholds"] == {"max_playlist_age_s": 4.0, "max_segment_lag": 2}
    assert first["enabled"] is False


def test_upsert_changes_only_given_fields_and_stamps_updated(store):
    first = up(store, "origin", type="tribes_origin", name="Origin", public_base_url="https://o.example")
    second = up(store, "origin", name="Main origin")
    assert second["name"] == "Main origin"
    assert second["public_base_url"] == "https://o.example" and second["type"] == "tribes_origin"
    assert second["updated_at"] >= first["updated_at"]
    assert second["created_at"] == first["created_at"]
    assert up(store, "origin") == second  # nothing given: nothing changes


def test_type_is_required_when_new(store):
    with pytest.raises(InvalidInput, match="type is required"):
        up(store, "edge1", name="x")
    assert _rows(store, "media_endpoints") == []
    with pytest.raises(InvalidInput, match="endpoint type 'cdn'"):
        up(store, "edge1", type="cdn")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(public_base_url="ftp://x"), "public_base_url"),
        (dict(health_thresholds={"max_bananas": 1}), "max_bananas"),
        (dict(health_thresholds={"max_error_rate": 2}), "health.max_error_rate"),
        (dict(health_thresholds=[1]), "health thresholds"),
        (dict(name="a\x00"), "name"),
        (dict(sources="origin"), "sources"),
        (dict(sources=["origin", "origin"]), "repeat"),
    ],
)
def test_bad_endpoint_input_writes_nothing(store, kwargs, match):
    up(store, "origin", type="tribes_origin")
    before = (_rows(store, "media_endpoints"), _rows(store, "endpoint_sources"))
    with pytest.raises(InvalidInput, match=match):
        up(store, "edge1", type="tribes_edge", **kwargs)
    assert (_rows(store, "media_endpoints"), _rows(store, "endpoint_sources")) == before


def test_bad_endpoint_ids(store):
    for bad in ("", "Edge", "a b", "-x", None):
        with pytest.raises(InvalidInput):
            up(store, bad, type="tribes_edge")


def test_sources_must_exist(store):
    with pytest.raises(NotFound, match="'missing'"):
        up(store, "edge1", type="tribes_edge", sources=["missing"])
    assert _rows(store, "media_endpoints") == []  # the whole upsert rolled back
    up(store, "edge1", type="tribes_edge")
    with pytest.raises(NotFound, match="'missing'"):
        domain.endpoints.link(store, "edge1", ["missing"])
    with pytest.raises(NotFound, match="'nope'"):
        domain.endpoints.link(store, "nope", [])


def test_sources_are_ordered_and_replaced(store):
    for e in ("o1", "o2", "o3"):
        up(store, e, type="tribes_origin")
    up(store, "edge", type="tribes_edge", sources=["o2", "o1"])
    assert domain.endpoints.get(store, "edge")["sources"] == ["o2", "o1"]
    assert domain.endpoints.link(store, "edge", ["o3", "o2", "o1"])["sources"] == ["o3", "o2", "o1"]
    assert domain.endpoints.link(store, "edge", [])["sources"] == []
    assert _rows(store, "endpoint_sources") == []


def test_self_link_is_refused(store):
    up(store, "a", type="tribes_edge")
    with pytest.raises(Conflict, match="own source"):
        domain.endpoints.link(store, "a", ["a"])
    with pytest.raises(Conflict):
        up(store, "a", sources=["a"])
    assert domain.endpoints.get(store, "a")["sources"] == []


def test_direct_cycle_is_refused(store):
    up(store, "a", type="tribes_origin")
    up(store, "b", type="tribes_edge", sources=["a"])
    with pytest.raises(Conflict, match="cycle: a -> b -> a"):
        domain.endpoints.link(store, "a", ["b"])
    assert domain.endpoints.get(store, "a")["sources"] == []


def test_indirect_cycle_is_refused(store):
    up(store, "a", type="tribes_origin")
    up(store, "b", type="tribes_edge", sources=["a"])
    up(store, "c", type="tribes_edge", sources=["b"])
    up(store, "d", type="tribes_edge", sources=["c"])
    before = _rows(store, "endpoint_sources")
    with pytest.raises(Conflict, match="cycle: a -> d -> c -> b -> a"):
        domain.endpoints.link(store, "a", ["d"])
    with pytest.raises(Conflict, match="cycle"):
        up(store, "b", sources=["a", "c"])  # keeping a valid source doesn't hide the bad one
    assert _rows(store, "endpoint_sources") == before
    # A diamond is not a cycle.
    up(store, "e", type="tribes_edge", sources=["b", "c", "d"])
    assert domain.endpoints.get(store, "e")["sources"] == ["b", "c", "d"]


@core
@given(links=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=25))
def test_random_linking_never_leaves_a_cycle(store, links):
    with store.write() as db:  # each example starts from unlinked endpoints
        db.execute("DELETE FROM endpoint_sources")
    names = [f"n{i}" for i in range(6)]
    for n in names:
        up(store, n, type="tribes_edge")
    for child, parent in links:
        current = domain.endpoints.get(store, names[child])["sources"]
        wanted = current if names[parent] in current else [*current, names[parent]]
        try:
            domain.endpoints.link(store, names[child], wanted)
        except Conflict:
            pass
    graph = {n: domain.endpoints.get(store, n)["sources"] for n in names}
    # Kahn's algorithm: every node can be ordered, so the graph is acyclic.
    indegree = {n: len(graph[n]) for n in names}
    children = {n: [c for c in names if n in graph[c]] for n in names}
    ready = [n for n in names if indegree[n] == 0]
    ordered = 0
    while ready:
        n = ready.pop()
        ordered += 1
        for c in children[n]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    assert ordered == len(names), graph


def test_delete_refused_while_used_as_a_source(store):
    up(store, "origin", type="tribes_origin")
    up(store, "edge1", type="tribes_edge", sources=["origin"])
    up(store, "edge2", type="tribes_edge", sources=["origin"])
    with pytest.raises(Conflict, match="source of edge1, edge2"):
        domain.endpoints.delete(store, "origin")
    assert domain.endpoints.get(store, "origin")["deleted_at"] is None

    domain.endpoints.delete(store, "edge1")
    domain.endpoints.link(store, "edge2", [])
    deleted = domain.endpoints.delete(store, "origin")
    assert deleted["deleted_at"]
    with pytest.raises(NotFound):
        domain.endpoints.get(store, "origin")
    assert [e["id"] for e in domain.endpoints.list_(store)] == ["edge2"]
    assert {e["id"] for e in domain.endpoints.list_(store, include_deleted=True)} == {"origin", "edge1", "edge2"}
    with pytest.raises(NotFound):  # a deleted endpoint cannot be a source
        domain.endpoints.link(store, "edge2", ["origin"])
    with pytest.raises(NotFound):
        domain.endpoints.delete(store, "origin")


def test_upsert_of_a_deleted_id_starts_afresh(store):
    up(store, "origin", type="tribes_origin")
    up(store, "edge1", type="tribes_edge", name="Old", sources=["origin"])
    domain.endpoints.delete(store, "edge1")
    with pytest.raises(InvalidInput, match="type is required"):
        up(store, "edge1")
    fresh = up(store, "edge1", type="external_edge")
    assert fresh["name"] == "edge1" and fresh["sources"] == [] and fresh["deleted_at"] is None
    assert fresh["type"] == "external_edge"
    assert len(_rows(store, "media_endpoints")) == 2


def test_lookups_by_prefix_take_the_prefix_literally_and_skip_deleted(store):
    """Shell completion's questions: LIKE wildcards typed by a person match only themselves."""
    for name in ("demo", "dev-night", "other", "gone"):
        domain.streams.create(store, name)
    domain.streams.delete(store, "gone")
    for eid in ("edge1", "edge2", "edge-x", "origin"):
        domain.endpoints.upsert(store, eid, type="tribes_edge")
    domain.endpoints.delete(store, "edge2")
    assert domain.streams.slugs_starting(store, "de") == ["demo", "dev-night"]
    assert domain.streams.slugs_starting(store, "") == ["demo", "dev-night", "other"]
    assert domain.streams.slugs_starting(store, "d%") == [] and domain.streams.slugs_starting(store, "d_") == []
    assert domain.endpoints.ids_starting(store, "edge") == ["edge-x", "edge1"]
    assert domain.endpoints.ids_starting(store, "edge_") == [] and domain.endpoints.ids_starting(store, "%") == []
    assert domain.endpoints.live_ids(store) == {"edge1", "edge-x", "origin"}
    assert {r["slug"] for r in domain.streams.directory(store)} == {"demo", "dev-night", "other"}
    assert set(domain.streams.directory(store)[0]) == {"id", "slug", "title", "visibility"}


def test_own_observed_at_is_the_endpoints_own_node_report(store):
    domain.endpoints.upsert(store, "mux1", type="external_origin")
    assert domain.snapshots.own_observed_at(store, "mux1") is None
    domain.snapshots.record(store, {"endpoint_id": "mux1", "observed_at": "2026-12-07T10:00:00.000Z", "status": "healthy",
                                    "reporter": "mux1"}, history_limit=10)
    assert domain.snapshots.own_observed_at(store, "mux1") == "2026-12-07T10:00:00.000Z"
