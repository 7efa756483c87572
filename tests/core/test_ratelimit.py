"""Refused-publish rate limiting, driven by trio's MockClock (no real waiting)."""

import trio

from daemons.runtime.ratelimit import WINDOW_S, WindowLimiter


async def test_source_is_blocked_after_the_limit_and_freed_after_the_window(autojump_clock):
    limiter = WindowLimiter(3)
    for _ in range(3):
        assert not limiter.blocked("10.0.0.1")
        limiter.record("10.0.0.1")
    assert limiter.blocked("10.0.0.1")
    assert not limiter.blocked("10.0.0.2")  # per source
    await trio.sleep(WINDOW_S - 1)
    assert limiter.blocked("10.0.0.1")
    await trio.sleep(1.001)
    assert not limiter.blocked("10.0.0.1")


async def test_window_slides(autojump_clock):
    limiter = WindowLimiter(2)
    limiter.record("a")
    await trio.sleep(40)
    limiter.record("a")
    assert limiter.blocked("a")
    await trio.sleep(21)  # the first failure left the window
    assert not limiter.blocked("a")


async def test_memory_is_bounded_under_a_flood_of_sources(autojump_clock):
    limiter = WindowLimiter(5, max_sources=100)
    for i in range(1000):
        limiter.record(f"192.0.2.{i}")
    assert len(limiter._events) <= 100
    await trio.sleep(WINDOW_S + 1)
    limiter.record("new")
    assert len(limiter._events) <= 100
