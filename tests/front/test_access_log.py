"""The front's log parser (daemons/http/access_log.py): lines in varnishncsa's format, garbage,
and one viewer definition shared with direct requests."""

from __future__ import annotations

import hypothesis.strategies as st
import httpx
import trio
from hypothesis import given, settings

from daemons.http import access_log
from daemons.core.stats import viewers_per_stream
from daemons.http.state import Counters, ViewerTracker, session_key
from tests.http.conftest import generation, http, http_install  # noqa: F401 - fixtures

SID, GID = "st_0123456789abcdef", "gen_0123456789abcdef"
PLAYLIST = f"/hls/{SID}/{GID}/source/index.m3u8"


def line(status="200", size="2400", handling="hit", duration="120", client="203.0.113.7", path=PLAYLIST,
         query="?_HLS_msn=5&_HLS_part=1", session="", agent="Mozilla/5.0 (X11)") -> bytes:
    return "\t".join((status, size, handling, duration, client, path, query, session, agent)).encode() + b"\n"


def test_a_line_in_the_logged_format():
    [r] = access_log.Parser().feed(line(session="abc", agent='Chrome \\"quoted\\" \\u00e9'))
    assert (r.status, r.bytes, r.handling, r.duration_us, r.client) == (200, 2400, "hit", 120, "203.0.113.7")
    assert (r.path, r.query, r.session, r.user_agent) == (PLAYLIST, "_HLS_msn=5&_HLS_part=1", "abc", 'Chrome "quoted" é')


def test_lines_split_across_reads_and_a_dash_for_no_body():
    p = access_log.Parser()
    data = line(size="-", status="304") + line(path=f"/hls/{SID}/{GID}/source/5.1.m4s", query="", size="75000")
    assert p.feed(data[:7]) == [] and p.feed(data[7:40]) == []
    first, second = p.feed(data[40:])
    assert (first.status, first.bytes) == (304, 0) and (second.bytes, second.path.endswith("5.1.m4s")) == (75000, True)
    assert p.bad_lines == 0


def test_garbage_lines_are_counted_and_skipped():
    p = access_log.Parser(max_line=200)
    records = p.feed(b"not a log line\n" + line(status="2x0") + b"\t" * 8 + b"\n" + b"x" * 500 + b"\n" + line())
    assert len(records) == 1 and p.bad_lines == 4
    assert p.feed(b"y" * 300) == [] and p.buffer == b""  # an overlong partial line is dropped, up to its end
    assert p.feed(b"zz\n" + line()) and p.bad_lines == 5


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_any_bytes_never_raise(chunks):
    p = access_log.Parser(max_line=256)
    for chunk in chunks:
        for record in p.feed(chunk):
            assert 100 <= record.status <= 999 and record.bytes >= 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n"), max_size=40)
                | st.sampled_from(["\\ud800", "\\u00", "-", "\\"]), min_size=9, max_size=9))
def test_any_fields_never_raise_in_apply(fields):
    counters, viewers = Counters(behind_front=True), ViewerTracker(15)

    async def run():
        for record in access_log.Parser().feed("\t".join(fields).encode() + b"\n" + line(query=f"?session={fields[7]}")):
            access_log.apply(record, viewers, counters)

    trio.run(run)


async def test_kinds_bytes_and_which_lines_are_viewers():
    counters, viewers = Counters(behind_front=True), ViewerTracker(15)
    p = access_log.Parser()
    for record in p.feed(b"".join([
        line(session="a"), line(session="a"),  # one session, twice
        line(session="", client="198.51.100.1"),  # no session id: address + user agent
        line(query="?session=b&_HLS_msn=5"),  # the query's session id
        line(path=f"/hls/{SID}/{GID}/source/5.1.m4s", query="", size="75000", session="c"),  # media: not a viewer
        line(session="d", handling="pass"),  # passed (another Sender node with its key): not a viewer
        line(session="e", status="503"),  # not answered: not a viewer
        line(path="/api/streams/x/playback", query="", size="500"),
    ])):
        access_log.apply(record, viewers, counters)
    [rendition] = viewers.snapshot()
    assert (rendition["stream_id"], rendition["generation_id"], rendition["rendition"]) == (SID, GID, "source")
    assert set(rendition["sessions"]) == {"s:a", "s:b", session_key(None, "198.51.100.1", "Mozilla/5.0 (X11)")}
    assert counters.bytes_sent == {"playlist": 2400 * 6, "part": 75000, "other": 500}
    assert counters.front_requests[("playlist", 200, "hit")] == 4 and counters.front_requests[("playlist", 503, "hit")] == 1


async def test_a_direct_request_and_a_cached_one_count_one_viewer_once(http):  # noqa: F811 - the fixture
    """The same session seen by sender-http itself (a request the front forwarded) and in the
    front's log (answered from the cache) is one viewer: one definition, one key."""
    gen = await generation(http)
    async with httpx.AsyncClient(base_url=http.base_url) as c:
        r = await c.get(gen.url(), headers={"X-Playback-Session-Id": "same-player", "User-Agent": "UA"})
        assert r.status_code == 200
        await c.get(gen.url(), headers={"User-Agent": "another"})  # no session id: address + user agent
    ctx = http.daemon.ctx
    path = f"/hls/{gen.stream_id}/{gen.generation_id}/{gen.rendition}/index.m3u8"
    for record in access_log.Parser().feed(line(path=path, session="same-player", client="127.0.0.1", agent="UA")
                                           + line(path=path, client="127.0.0.1", agent="another")):
        access_log.apply(record, ctx.viewers, ctx.counters)
    assert viewers_per_stream(ctx.viewers.snapshot()) == {gen.stream_id: 2}
