"""SourceHealth and choose, sans-IO: every rule of a source's status with explicit `now` values
(no sleeps, no clock), and which source an edge follows a generation from."""

from __future__ import annotations

import pytest

from daemons.edge_fill.health import ERROR_WINDOW_S, FAIL_COOLDOWN_S, MIN_SAMPLES, SourceHealth, best_positions, choose

G, H = "gen_aaa", "gen_bbb"
THRESHOLDS = {"max_playlist_age_s": 6.0, "max_segment_lag": 3, "max_error_rate": 0.05, "max_viewers": 0, "max_egress_bps": 0}


def source(order: int = 0, endpoint_id: str | None = None, **thresholds) -> SourceHealth:
    return SourceHealth(endpoint_id or f"src{order}", order, {**THRESHOLDS, **thresholds})


def doc(*generations: tuple[str, str, dict[str, tuple[int, int, float | None]]], load: dict | None = None) -> dict:
    """A listing: (generation id, status, {rendition: (msn, part, playlist_age_s)}) per stream."""
    streams = []
    for i, (gid, status, renditions) in enumerate(generations):
        rends = []
        for name, pos in renditions.items():
            r = {"name": name, "kind": "source"}
            if pos is not None:
                r["last"] = [pos[0], pos[1]]
                r["playlist_age_s"] = pos[2]
            rends.append(r)
        streams.append({"id": f"st_{i}", "slug": f"s{i}", "title": "t", "visibility": "public",
                        "generation": {"id": gid, "status": status, "renditions": rends}})
    return {"version": 1, "node_id": "origin", "load": load, "streams": streams}


def live(gid: str = G, msn: int = 20, age: float | None = 0.2, **kw) -> dict:
    return doc((gid, "live", {"source": (msn, 1, age), "720p": (msn, 1, age)}), **kw)


# --- status ------------------------------------------------------------------------------------


def test_healthy_after_a_listing():
    s = source()
    s.listed(100.0, live())
    assert s.status(100.0) == "healthy"
    assert s.status(103.0, G) == "healthy"
    assert s.generations == {G}
    assert set(s.positions) == {f"{G}/source", f"{G}/720p"}
    assert s.error_rate() == 0.0


def test_never_listed_is_stale():
    s = source()
    assert s.status(0.0) == "stale"
    s.succeeded(1.0)  # a request answered, but no listing yet: nothing is known of it
    assert s.status(1.0) == "stale"


def test_a_failure_is_stale_until_a_success_after_the_cool_down():
    s = source(max_error_rate=1.0)  # the error rate is another rule
    s.listed(100.0, live())
    s.failed(101.0)
    assert s.status(101.0) == "stale"
    assert s.status(105.0) == "stale"  # no success since: stale however long ago it failed
    s.succeeded(101.5)  # a success inside the cool-down
    assert s.status(101.5) == "stale"
    assert s.status(101.0 + FAIL_COOLDOWN_S - 0.01) == "stale"
    assert s.status(101.0 + FAIL_COOLDOWN_S) == "healthy"
    # A failure at the same instant as the last success counts as failing.
    s.succeeded(104.0)
    s.failed(104.0)
    assert s.status(110.0 - 0.1) == "stale"
    s.listed(110.0, live())
    assert s.status(110.0) == "healthy"  # the cool-down (2 s) is over, a success since


def test_a_listing_older_than_max_playlist_age_is_stale():
    s = source(max_playlist_age_s=6.0)
    s.listed(100.0, live())
    s.succeeded(105.9)  # other requests succeeding do not make up for the listing
    assert s.status(106.0) == "healthy"
    assert s.status(106.01) == "stale"
    s.listed(107.0, live())
    assert s.status(107.0) == "healthy"


def test_a_generation_whose_playlists_are_old_is_stale_for_that_generation_only():
    s = source(max_playlist_age_s=6.0)
    s.listed(100.0, doc((G, "live", {"source": (20, 1, 0.1), "720p": (20, 1, 6.5)}),
                        (H, "live", {"source": (5, 0, 0.3)})))
    assert s.status(100.0, G) == "stale"  # one rendition over the limit is enough
    assert s.status(100.0, H) == "healthy"
    assert s.status(100.0) == "healthy"  # the source itself is fine
    s.listed(101.0, doc((G, "live", {"source": (20, 1, 0.1), "720p": (20, 1, 6.0)})))
    assert s.status(101.0, G) == "healthy"  # at the limit is not over it
    # A rendition without an age (not reported) does not make it stale.
    s.listed(102.0, doc((G, "live", {"source": (20, 1, None)})))
    assert s.status(102.0, G) == "healthy"


def test_no_progress_is_stale_for_that_generation_until_a_listing_shows_movement():
    s = source()
    s.listed(100.0, doc((G, "live", {"source": (20, 1, 0.5), "720p": (20, 1, 0.5)}),
                        (H, "live", {"source": (5, 0, 0.3)})))
    s.no_progress(G, 102.0)  # a blocking reload for G timed out at 102
    assert s.status(102.0, G) == "stale"
    assert s.status(102.0, H) == "healthy" and s.status(102.0) == "healthy"
    # A listing at 104 whose playlists are 3 s old: changed at 101, before the stall. Still stale.
    s.listed(104.0, doc((G, "live", {"source": (20, 1, 3.0), "720p": (20, 1, 3.0)})))
    assert s.status(104.0, G) == "stale"
    # One rendition moved after the stall, the other did not: still stale.
    s.listed(105.0, doc((G, "live", {"source": (21, 0, 0.5), "720p": (20, 1, 4.0)})))
    assert s.status(105.0, G) == "stale"
    # A listing that does not show G at all cannot clear it.
    s.listed(106.0, doc((H, "live", {"source": (6, 0, 0.3)})))
    assert s.status(106.0, G) == "stale"
    # Every rendition of G changed after the stall (ages below 107 - 102 = 5 s): followed again.
    s.listed(107.0, doc((G, "live", {"source": (22, 0, 0.5), "720p": (22, 0, 4.9)})))
    assert s.status(107.0, G) == "healthy" and G not in s.stalled


def test_no_progress_is_cleared_by_progress():
    s = source()
    s.listed(100.0, live())
    s.no_progress(G, 101.0)
    s.no_progress(H, 101.0)
    assert s.status(101.0, G) == "stale"
    s.progressed(G)
    assert s.status(101.0, G) == "healthy" and s.status(101.0, H) == "stale"
    s.progressed("gen_unknown")  # nothing to clear: no error


@pytest.mark.parametrize(
    "thresholds, load, status",
    [
        ({"max_viewers": 100}, {"viewers": 101, "egress_bps": 0}, "overloaded"),
        ({"max_viewers": 100}, {"viewers": 100, "egress_bps": 0}, "healthy"),
        ({"max_viewers": 0}, {"viewers": 10**9, "egress_bps": 10**12}, "healthy"),  # 0 = no limit
        ({"max_egress_bps": 10**6}, {"viewers": 5, "egress_bps": 10**6 + 1}, "overloaded"),
        ({"max_egress_bps": 10**6}, {"viewers": 5, "egress_bps": 10**6}, "healthy"),
        ({"max_viewers": 10, "max_egress_bps": 10**6}, None, "healthy"),  # no snapshot: no load known
        ({"max_viewers": 10}, {"viewers": None, "egress_bps": None}, "healthy"),
    ],
)
def test_overloaded(thresholds, load, status):
    s = source(**thresholds)
    s.listed(100.0, live(load=load))
    assert s.status(100.0) == status
    assert s.status(100.0, G) == status


def test_stale_ranks_over_overloaded():
    s = source(max_viewers=1)
    s.listed(100.0, live(load={"viewers": 50, "egress_bps": 0}))
    s.failed(100.5)
    assert s.status(100.5) == "stale"


def test_degraded_by_error_rate_only_with_enough_samples():
    s = source(max_error_rate=0.05)
    s.listed(100.0, live())  # a sample: ok
    s.failed(100.5)
    s.succeeded(101.0)
    s.succeeded(101.5)
    assert len(s._outcomes) == MIN_SAMPLES - 1
    assert s.error_rate() == 0.0  # too few samples to judge
    assert s.status(103.0) == "healthy"
    s.succeeded(102.0)
    assert s.error_rate() == pytest.approx(1 / 5)
    assert s.status(103.0) == "degraded"
    assert s.status(103.0, G) == "degraded"
    # At the limit is not over it.
    t = source(max_error_rate=0.2)
    t.listed(100.0, live())
    t.failed(100.5)
    for at in (101.0, 101.5, 102.0):
        t.succeeded(at)
    assert t.status(103.0) == "healthy"


def test_error_rate_counts_the_last_minute_only():
    s = source(max_error_rate=0.05)
    s.listed(100.0, live())
    s.failed(100.5)
    for at in (101.0, 101.5, 102.0):
        s.succeeded(at)
    assert s.status(103.0) == "degraded"
    # Over a minute later the failure has left the window.
    s.listed(100.5 + ERROR_WINDOW_S + 1, live())
    for i in range(MIN_SAMPLES):
        s.succeeded(100.5 + ERROR_WINDOW_S + 1.5 + i)
    assert s.error_rate() == 0.0
    assert s.status(100.5 + ERROR_WINDOW_S + 6) == "healthy"


def test_error_rate_is_judged_at_now_even_without_new_requests():
    # A source with a long playlist-age limit that the edge has stopped asking: its old failures
    # are not "in the last minute" any more.
    s = source(max_playlist_age_s=600.0, max_error_rate=0.05)
    s.listed(100.0, live(age=0.1))
    s.failed(100.5)
    for at in (101.0, 101.5, 102.0):
        s.succeeded(at)
    assert s.status(103.0) == "degraded"
    assert s.status(102.0 + ERROR_WINDOW_S + 1) == "healthy"


def test_degraded_by_segment_lag():
    a, b = source(0), source(1, max_segment_lag=3)
    a.listed(100.0, live(msn=20))
    b.listed(100.0, live(msn=17))
    best = best_positions([a, b])
    assert best == {f"{G}/source": 20, f"{G}/720p": 20}
    assert b.segment_lag(G, best) == 3
    assert b.status(100.0, G, best_msn=best) == "healthy"  # at the limit
    b.listed(101.0, live(msn=16))
    best = best_positions([a, b])
    assert b.segment_lag(G, best) == 4
    assert b.status(101.0, G, best_msn=best) == "degraded"
    assert b.status(101.0, H, best_msn=best) == "healthy"  # another generation: no lag
    assert b.status(101.0, best_msn=best) == "healthy"  # without a generation: no lag judged
    assert a.status(101.0, G, best_msn=best) == "healthy"
    # A rendition the best source lists and this one does not: as far behind as can be.
    c = source(2)
    c.listed(101.0, doc((G, "live", {"source": (20, 0, 0.1)})))
    assert c.status(101.0, G, best_msn=best_positions([a, c])) == "degraded"


def test_listing_keeps_only_active_generations_and_reported_positions():
    s = source()
    s.listed(100.0, doc((G, "live", {"source": (20, 1, 0.1), "720p": None}),
                        (H, "ended", {"source": (9, 0, 50.0)}),
                        ("gen_ccc", "starting", {})))
    assert s.generations == {G, "gen_ccc"}
    assert set(s.positions) == {f"{G}/source"}
    assert s.status(100.0, H) == "healthy"  # an ended generation's old playlists do not count
    s.listed(101.0, doc())
    assert s.generations == set() and s.positions == {}


# --- choose ------------------------------------------------------------------------------------


def test_choose_nothing():
    assert choose([], 0.0, G) is None


def test_choose_prefers_sources_that_list_the_generation():
    a, b = source(0), source(1)
    a.listed(100.0, live(H))
    b.listed(100.0, live(G))
    b.failed(100.5)  # stale, but the only one that carries G
    assert choose([a, b], 101.0, G) is b
    assert choose([a, b], 101.0, H) is a


@pytest.mark.parametrize(
    "make_worse",
    [
        lambda s: s.failed(100.5),  # stale
        lambda s: s.listed(100.5, live(load={"viewers": 99, "egress_bps": 0})),  # overloaded
        lambda s: [s.failed(100.1)] + [s.succeeded(100.2 + i / 10) for i in range(4)],  # degraded
    ],
)
def test_choose_ranks_by_status_then_order(make_worse):
    a, b = source(0, max_viewers=10), source(1, max_viewers=10)
    for s in (a, b):
        s.listed(100.0, live())
    assert choose([a, b], 103.0, G) is a  # the same status: the configured order
    assert choose([b, a], 103.0, G) is a  # order is the configured one, not the list's
    make_worse(a)
    assert a.status(103.0, G) != "healthy"
    assert choose([a, b], 103.0, G) is b


def test_choose_full_ranking():
    healthy, degraded, overloaded, stale = (source(i, max_viewers=10) for i in (3, 2, 1, 0))
    for s in (healthy, degraded, overloaded, stale):
        s.listed(100.0, live())
    degraded.failed(100.1)
    for i in range(4):
        degraded.succeeded(100.2 + i / 10)
    overloaded.listed(100.0, live(load={"viewers": 11, "egress_bps": 0}))
    stale.failed(102.9)
    now = 103.0
    assert [s.status(now, G) for s in (healthy, degraded, overloaded, stale)] == ["healthy", "degraded", "overloaded", "stale"]
    pool = [stale, overloaded, degraded, healthy]
    order = []
    while pool:
        pick = choose(pool, now, G)
        order.append(pick)
        pool.remove(pick)
    assert order == [healthy, degraded, overloaded, stale]


def test_choose_leaves_a_failing_source_and_returns_to_the_preferred_one():
    preferred, backup = source(0), source(1)
    for s in (preferred, backup):
        s.listed(100.0, live())
    assert choose([preferred, backup], 100.0, G) is preferred
    preferred.failed(101.0)  # the first failed request is enough
    assert choose([preferred, backup], 101.0, G) is backup
    assert choose([preferred, backup], 105.0, G) is backup  # no success since
    preferred.listed(105.0, live())  # it answers again (after the cool-down)
    assert choose([preferred, backup], 105.0, G) is preferred
    # A stall on the preferred source moves the generation to the backup until it moves again.
    preferred.no_progress(G, 106.0)
    assert choose([preferred, backup], 106.0, G) is backup
    preferred.listed(108.0, live(age=0.5))
    assert choose([preferred, backup], 108.0, G) is preferred
