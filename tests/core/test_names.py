"""One definition of every name (daemons/media/names.py): what the packager can write is what the
HLS route serves, the OpenAPI document publishes, an edge mirrors and the config accepts."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from daemons.core import config as config_mod
from daemons.core.domain import distribution
from daemons.core.domain.common import check_name, new_id
from daemons.edge_fill.mirror import SENDER_NAME
from daemons.http import openapi
from daemons.http.hls_route import ROUTE
from daemons.media import names

msns = st.integers(0, 10**12 - 1)
parts = st.integers(0, 10**6 - 1)
renditions = st.from_regex(names.RENDITION_RE, fullmatch=True)


def served(rendition: str, file: str) -> bool:
    path = f"/hls/{new_id('st')}/{new_id('gen')}/{rendition}/{file}".encode()
    return ROUTE.fullmatch(path) is not None


@given(msns, parts, st.integers(0, 999_999), renditions)
def test_every_file_the_packager_writes_is_served_published_and_mirrored(msn, part, init, rendition):
    for file in (names.segment_name(msn), names.part_name(msn, part), names.init_name(init), names.ts_segment_name(msn),
                 names.ts_part_name(msn, part)):
        assert served(rendition, file), file
        assert re.fullmatch(openapi.MEDIA_FILE_PATTERN, file), file
        assert SENDER_NAME.fullmatch(file), file
    assert served(rendition, names.PLAYLIST)


@given(renditions)
def test_a_rendition_name_the_config_accepts_is_served_and_listed(rendition):
    config_mod.check_rendition({"name": rendition, "kind": "source"})
    assert served(rendition, "index.m3u8")
    assert re.fullmatch(openapi.RENDITION_PATTERN, rendition)
    assert distribution.RENDITION_NAME.fullmatch(rendition)


def test_hd_720_the_defect_that_started_it():
    # The config accepted it, the HLS route and the distribution listing did not (every request a 404).
    config_mod.check_rendition({"name": "hd_720", "kind": "source"})
    assert served("hd_720", "0.m4s") and distribution.RENDITION_NAME.fullmatch("hd_720")


@given(st.text(max_size=40))
def test_the_config_and_the_route_refuse_the_same_rendition_names(text):
    try:
        config_mod.check_rendition({"name": text, "kind": "source"})
        accepted = True
    except ValueError:
        accepted = False
    route_ok = "/" not in text and "\n" not in text and served(text, "index.m3u8")
    assert accepted == route_ok


@given(st.from_regex(names.NAME_RE, fullmatch=True))
def test_slugs_and_ids(slug):
    assert check_name(slug, "slug") == slug
    assert re.fullmatch(openapi.SLUG_PATTERN, slug)
    for prefix, pattern in (("st", openapi.STREAM_ID_PATTERN), ("gen", openapi.GENERATION_ID_PATTERN)):
        assert re.fullmatch(pattern, new_id(prefix))
