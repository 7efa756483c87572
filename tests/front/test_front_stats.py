"""The nginx front's counts as sender-http pulls them (daemons/http/front_stats.py): parsed into
the same counters and viewer definition as direct requests; garbage is counted, never applied."""

from __future__ import annotations

import trio
from hypothesis import given
from hypothesis import strategies as st

from daemons.http import front_stats
from daemons.http.state import Counters, ViewerTracker, session_key

SHOW = "st_0123456789abcdef/gen_0123456789abcdef/source"


def test_counts_and_viewers_are_applied():
    body = (b"c\tpart\t200\thit\t120\t9600000\n"
            b"c\tplaylist\t200\tpass\t3\t6000\n"
            b"v\t" + SHOW.encode() + b"\tsess-1\t10.0.0.1\tMozilla/5.0\n"
            b"v\t" + SHOW.encode() + b"\t\t10.0.0.2\tcurl/8\n")
    counters, tracker = Counters(), ViewerTracker(30.0)

    async def main():
        return front_stats.apply(body, counters, tracker)

    assert trio.run(main) == 0
    assert counters.front_requests[("part", 200, "hit")] == 120 and counters.bytes_sent["part"] == 9_600_000
    assert counters.front_requests[("playlist", 200, "pass")] == 3
    sessions = tracker._seen[tuple(SHOW.split("/"))]
    assert set(sessions) == {session_key("sess-1", "10.0.0.1", "Mozilla/5.0"), session_key("", "10.0.0.2", "curl/8")}


@given(st.binary(max_size=2000))
def test_garbage_is_counted_not_applied(body):
    counts, viewers, bad = front_stats.parse(body)
    lines = [line for line in body.decode("utf-8", "replace").split("\n") if line]
    assert len(counts) + len(viewers) + bad == len(lines)
    for kind, status, handling, requests, nbytes in counts:
        assert 100 <= status <= 999 and requests >= 0 and nbytes >= 0
    for stream, generation, rendition, *_ in viewers:
        assert "/" not in stream + generation + rendition
