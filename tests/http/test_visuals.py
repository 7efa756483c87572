"""The admin page's pictures of numbers: SVG sparklines and relative times."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from daemons.http import visuals

SVG = "{http://www.w3.org/2000/svg}"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def chart(points, **kw) -> ET.Element:
    end = NOW.timestamp()
    text = visuals.sparkline(points, start=end - 3600, end=end, bucket_s=60, what="Viewers",
                             fmt=lambda v: f"{v:g} watching", kind="viewers", **kw)
    return ET.fromstring(text.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))


def test_a_point_per_sample_inside_the_box_and_the_line_breaks_where_nobody_reported():
    end = NOW.timestamp()
    svg = chart([(end - 3000, 1), (end - 2940, 3), (end - 60, 2), (end - 7200, 50)])  # the last: outside the hour
    dots = svg.findall(f"{SVG}circle")
    assert svg.get("data-points") == "3" and len(dots) == 3
    assert [d.find(f"{SVG}title").text for d in dots] == ["1 watching at 11:10 UTC", "3 watching at 11:11 UTC",
                                                          "2 watching at 11:59 UTC"]
    assert float(dots[1].get("cy")) == 4.0  # the peak at the top
    path = svg.find(f"{SVG}path").get("d")
    assert path.count("M") == 2 and path.count("L") == 1  # 48 minutes without a sample: no line across them
    assert svg.get("aria-label") == "Viewers over the last hour: now 2 watching, peak 3 watching"


def test_no_data_says_so():
    svg = chart([])
    assert svg.find(f"{SVG}circle") is None and "no data" in svg.find(f"{SVG}text").text


@given(st.lists(st.tuples(st.floats(NOW.timestamp() - 4000, NOW.timestamp() + 100, allow_nan=False),
                          st.floats(0, 1e12, allow_nan=False)), max_size=80))
def test_any_series_is_well_formed_svg_with_every_point_in_the_box(points):
    svg = chart(sorted(points))
    inside = [p for p in points if NOW.timestamp() - 3600 <= p[0] <= NOW.timestamp()]
    dots = svg.findall(f"{SVG}circle")
    assert len(dots) == len(inside)
    for d in dots:
        assert 0 <= float(d.get("cx")) <= visuals.WIDTH and 0 <= float(d.get("cy")) <= visuals.HEIGHT


def test_relative_times_with_the_exact_time_on_hover():
    assert visuals.relative(NOW, NOW) == "just now"
    assert visuals.relative(NOW - timedelta(seconds=45), NOW) == "45 s ago"
    assert visuals.relative(NOW - timedelta(minutes=2, seconds=5), NOW) == "2 min ago"
    assert visuals.relative(NOW - timedelta(hours=3), NOW) == "3 h ago"
    assert visuals.relative(NOW - timedelta(days=1), NOW) == "1 day ago"
    assert visuals.relative(NOW + timedelta(seconds=30), NOW) == "in 30 s"
    shown = visuals.when("2026-12-07T11:58:00.000Z", NOW)
    assert shown == '<time datetime="2026-12-07T11:58:00.000Z" title="2026-12-07 11:58:00 UTC">2 min ago</time>'
    assert visuals.when(None, NOW) == "never" and visuals.when("<b>", NOW) == "&lt;b&gt;"
    assert [visuals.duration(s) for s in (42, 720, 3900)] == ["42 s", "12 min", "1 h 05 min"]
