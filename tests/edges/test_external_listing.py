"""An external origin as a listing (daemons/edge_fill/external.py), sans-IO: what its master
playlist (or lone media playlist) becomes, the edge's own master playlist made from it, the
same-origin rule, and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.core.domain import distribution
from daemons.edge_fill import external
from daemons.media.hls.parse import parse_master_playlist

URL = "http://127.0.0.1:8088/live/master.m3u8"
MASTER = """#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=2200000,AVERAGE-BANDWIDTH=2000000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=25.000
hi/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=600000,CODECS="avc1.42c00d,mp4a.40.2",RESOLUTION=320x180
lo/index.m3u8
"""


def test_a_master_playlist_lists_a_rendition_per_variant_named_after_its_directory():
    origin = external.read(URL, MASTER)
    assert origin.variants == {"hi": "http://127.0.0.1:8088/live/hi/index.m3u8",
                               "lo": "http://127.0.0.1:8088/live/lo/index.m3u8"}
    assert origin.master == MASTER and origin.skipped == ()
    doc = distribution.check_listing(external.listing("mux", origin, "gen_00000000000000aa"))
    [stream] = doc["streams"]
    assert stream["id"] == external.stream_id("mux", URL) and stream["slug"] == "mux" and stream["title"] == "mux"
    g = stream["generation"]
    assert g["id"] == "gen_00000000000000aa" and g["status"] == "live"
    assert [(r["name"], r["kind"]) for r in g["renditions"]] == [("hi", "source"), ("lo", "source")]
    assert stream["external"] == {"master_url": URL, "variants": origin.variants, "master": MASTER}


def test_a_lone_media_playlist_is_one_rendition_called_source():
    url = "http://127.0.0.1:8088/index.m3u8"
    origin = external.read(url, "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nseg0.ts\n")
    assert origin.variants == {"source": url} and origin.master is None
    entry = external.listing("mux", origin, "gen_00000000000000aa")["streams"][0]
    assert entry["external"]["master"] is None
    # The edge's master playlist: one variant per rendition.
    master = parse_master_playlist(external.local_master(entry["external"], ["source"]).decode())
    assert [v.uri for v in master.variants] == ["source/index.m3u8"]


def test_variants_without_a_rendition_name_or_on_another_host():
    text = """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=1000
stream_0.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2000
Not_A_Name!/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3000
other/hi/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=4000
hi/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=5000
http://10.0.0.1/internal/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=6000
//127.0.0.1:9999/x/index.m3u8
"""
    origin = external.read(URL, text)
    # A directory that is no rendition name, and a name taken already, become v<index>.
    assert list(origin.variants) == ["v0", "v1", "hi", "v3"]
    assert origin.variants["v3"] == "http://127.0.0.1:8088/live/hi/index.m3u8"
    assert len(origin.skipped) == 2 and "10.0.0.1" in origin.skipped[0] and "9999" in origin.skipped[1]


def test_the_edges_master_keeps_the_origins_variant_attributes_for_the_renditions_it_carries():
    origin = external.read(URL, MASTER)
    ext = external.listing("mux", origin, "gen_00000000000000aa")["streams"][0]["external"]
    theirs = parse_master_playlist(MASTER).variants
    ours = parse_master_playlist(external.local_master(ext, ["hi", "lo"]).decode()).variants
    assert [v.uri for v in ours] == ["hi/index.m3u8", "lo/index.m3u8"]
    for a, b in zip(ours, theirs, strict=True):
        assert (a.bandwidth, a.average_bandwidth, a.codecs, a.resolution, a.frame_rate) == \
            (b.bandwidth, b.average_bandwidth, b.codecs, b.resolution, b.frame_rate)
    # A variant the edge does not carry (skipped at listing) is not offered.
    partial = {**ext, "variants": {"hi": ext["variants"]["hi"]}}
    assert [v.uri for v in parse_master_playlist(external.local_master(partial, ["hi"]).decode()).variants] == ["hi/index.m3u8"]
    assert external.local_master({**ext, "master": "#EXTM3U\n#EXT-X-STREAM-INF:\n"}, ["hi"]) is None


def test_an_unusable_master_playlist_is_an_external_error():
    with pytest.raises(external.ExternalError, match="unusable master playlist"):
        external.read(URL, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=oops\n")


@pytest.mark.parametrize("endpoint_id, slug", [("mux", "mux"), ("Studio-B", "studio-b"), ("a" * 64, "a" * 64)])
def test_the_slug_is_the_endpoint_id_when_it_is_one(endpoint_id, slug):
    assert external.slug(endpoint_id, URL) == slug


@pytest.mark.parametrize("endpoint_id", ["ends-", "-starts", "a" * 65, "ünï", "a b"])
def test_else_a_slug_made_from_the_endpoint_and_its_url(endpoint_id):
    s = external.slug(endpoint_id, URL)
    assert s.startswith("ext-") and s == external.slug(endpoint_id, URL) != external.slug(endpoint_id, URL + "?x")


def test_ids_the_same_across_restarts_and_new_generations_never():
    assert external.stream_id("mux", URL) == external.stream_id("mux", URL) != external.stream_id("mux2", URL)
    assert distribution.STREAM_ID.fullmatch(external.stream_id("mux", URL))
    a, b = external.new_generation_id("mux", ns=1), external.new_generation_id("mux", ns=2)
    assert a != b and distribution.GENERATION_ID.fullmatch(a) and external.new_generation_id("mux", ns=1) == a
    assert external.new_generation_id("mux") != external.new_generation_id("mux")


@pytest.mark.parametrize(
    "uri, ok",
    [
        ("hi/index.m3u8", True),
        ("/other/path.m3u8", True),
        ("http://127.0.0.1:8088/x.m3u8", True),
        ("//127.0.0.1:8088/x.m3u8", True),
        ("https://127.0.0.1:8088/x.m3u8", False),  # another scheme
        ("http://127.0.0.1:8089/x.m3u8", False),  # another port
        ("http://127.0.0.1/x.m3u8", False),  # the default port is another port
        ("http://localhost:8088/x.m3u8", False),
        ("http://127.0.0.1:8088@10.0.0.1/x.m3u8", False),  # userinfo trick: the host is 10.0.0.1
        ("http://[::1]:8088/x.m3u8", False),
        ("http://127.0.0.1:99999/x.m3u8", False),  # an invalid port
        ("file:///etc/passwd", False),
    ],
)
def test_same_origin(uri, ok):
    if ok:
        assert external.same_origin(URL, uri).startswith("http://127.0.0.1:8088/")
    else:
        with pytest.raises(external.ForeignURL):
            external.same_origin(URL, uri)


variant_lines = st.sampled_from(["#EXT-X-STREAM-INF:BANDWIDTH=1000", "#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2",
                                 "hi/index.m3u8", "lo/x.m3u8", "http://10.0.0.1/a.m3u8", "#EXTM3U", ""])


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=300),
                      st.lists(st.one_of(variant_lines, st.text(max_size=40)), max_size=12).map("\n".join)))
def test_garbage_is_an_external_error_or_a_listing_the_edge_accepts(text):
    try:
        origin = external.read(URL, text)
    except external.ExternalError as e:
        assert str(e)
        return
    entry = distribution.check_listing(external.listing("mux", origin, "gen_00000000000000aa"))["streams"][0]
    assert all(url.startswith("http://127.0.0.1:8088/") for url in origin.variants.values())
    master = external.local_master(entry["external"], list(origin.variants))
    assert master is None or isinstance(master, bytes)
