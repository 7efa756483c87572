"""An external origin (any HLS origin, not a Sender node) as a distribution listing, sans-IO.

A Sender source answers `GET /api/distribution`; an external origin has no listing, so an edge
makes one from what the origin serves at its endpoint's URL: a master playlist (one rendition per
variant, named after the variant's directory when that is a rendition name, else `v<i>`) or a
single media playlist (one rendition, `source`). The listing has one stream, whose id and slug
come from the endpoint (the same across restarts of the edge), and one live generation, whose id
is the edge's: a new one when the origin's numbering restarts (`mirror.OriginRestarted`).

Every URL a listed playlist points at must be on the origin's scheme, host and port
(`same_origin`): an external origin must not point the edge at other hosts (its own network, say).

The stream's `external` entry carries what the edge's follower needs and no Sender source has:
`master_url`, `variants` (rendition → media playlist URL) and the origin's `master` text, from
which `local_master` writes the edge's own master playlist.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from daemons.core.domain.distribution import LISTING_VERSION
from daemons.core.domain.generations import Status
from daemons.media import hls, names
from daemons.media.hls.parse import parse_master_playlist


class ExternalError(ValueError):
    """What the origin serves cannot be listed (an unusable master playlist)."""


class ForeignURL(ValueError):
    """A URL the origin lists is not on the origin's scheme, host and port."""


@dataclass(frozen=True, slots=True)
class Origin:
    """What an external origin serves at its URL, read."""

    url: str
    text: str
    variants: dict[str, str]  # rendition name → its media playlist URL
    skipped: tuple[str, ...] = ()  # why a variant was left out (one line each)

    @property
    def master(self) -> str | None:
        """The origin's master playlist, when its URL is one (not a lone media playlist)."""
        return self.text if len(self.variants) > 1 or self.url not in self.variants.values() else None


def read(url: str, text: str) -> Origin:
    """The renditions an origin offers at `url`, from the playlist it serves there (`text`)."""
    if "#EXT-X-STREAM-INF" not in text:
        return Origin(url, text, {"source": url})
    try:
        master = parse_master_playlist(text)
    except ValueError as e:
        raise ExternalError(f"{url[:200]}: unusable master playlist: {e}") from None
    variants: dict[str, str] = {}
    skipped = []
    for i, v in enumerate(master.variants):
        parent = urlsplit(v.uri).path.rsplit("/", 2)
        name = parent[-2].lower() if len(parent) >= 2 and names.RENDITION_RE.fullmatch(parent[-2].lower()) else f"v{i}"
        if name in variants:
            name = f"v{i}"
        try:
            variants[name] = same_origin(url, v.uri)
        except ForeignURL as e:
            skipped.append(str(e))
    return Origin(url, text, variants, tuple(skipped))


def stream_id(endpoint_id: str, url: str) -> str:
    """The stream an external origin's endpoint feeds (the same on every edge, across restarts)."""
    return f"st_{_ident(endpoint_id, url)[:16]}"


def slug(endpoint_id: str, url: str) -> str:
    """The endpoint id when it is a slug already, else one made from it."""
    lowered = endpoint_id.lower()
    return lowered if names.NAME_RE.fullmatch(lowered) else f"ext-{_ident(endpoint_id, url)[:12]}"


def new_generation_id(endpoint_id: str, *, ns: int | None = None) -> str:
    """A generation id for a new broadcast of an external origin (`ns`: now, in nanoseconds)."""
    ns = time.time_ns() if ns is None else ns
    return "gen_" + hashlib.sha256(f"external:{endpoint_id}\n{ns}".encode()).hexdigest()[:16]


def listing(endpoint_id: str, origin: Origin, generation_id: str) -> dict:
    """The origin as a distribution listing (the shape `distribution.check_listing` accepts): one
    stream, one live generation, one rendition per variant."""
    return {
        "version": LISTING_VERSION, "node_id": endpoint_id, "load": None,
        "streams": [{
            "id": stream_id(endpoint_id, origin.url), "slug": slug(endpoint_id, origin.url), "title": endpoint_id,
            "visibility": "public",
            "external": {"master_url": origin.url, "variants": origin.variants, "master": origin.master},
            "generation": {"id": generation_id, "status": Status.LIVE.value, "started_at": None, "live_at": None,
                           "ended_at": None, "discontinuity_count": 0,
                           "renditions": [{"name": n, "kind": "source"} for n in origin.variants]},
        }],
    }


def local_master(external: dict, rendition_names: list[str]) -> bytes | None:
    """The edge's master playlist for an external origin's generation: the origin's variants (their
    bandwidth, codecs, resolution) pointing at the edge's renditions, or — for a lone media
    playlist — one variant per rendition. None when the origin's master cannot be read."""
    text = external.get("master")
    variants = []
    if text:
        try:
            master = parse_master_playlist(text)
        except ValueError:
            return None
        by_url = {url: n for n, url in external["variants"].items()}
        for v in master.variants:
            name = by_url.get(urljoin(external["master_url"], v.uri))
            if name is not None:
                variants.append(hls.Variant(f"{name}/{names.PLAYLIST}", v.bandwidth, v.average_bandwidth, v.codecs,
                                            v.resolution, v.frame_rate))
    else:
        variants = [hls.Variant(f"{n}/{names.PLAYLIST}", 1) for n in rendition_names]
    return hls.MasterPlaylist(tuple(variants)).render().encode()


def same_origin(base: str, uri: str) -> str:
    """`uri` resolved against `base`; ForeignURL unless it is on the same scheme, host and port."""
    try:
        url = urljoin(base, uri)
        a, b = urlsplit(base), urlsplit(url)
        same = (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
    except ValueError:
        same = False
    if not same:
        raise ForeignURL(f"{uri[:200]!r} is not on {base[:200]}")
    return url


def _ident(endpoint_id: str, url: str) -> str:
    return hashlib.sha256(f"external:{endpoint_id}\n{url}".encode()).hexdigest()
