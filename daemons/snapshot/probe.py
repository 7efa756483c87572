"""Health of an external origin that reports nothing, from its playlist.

An `external_origin`/`external_edge` endpoint whose `public_base_url` is a playlist URL (…m3u8)
and which has sent no fresh snapshot of its own is probed instead: the playlist is fetched (the
first variant, for a multivariant playlist) and its age taken from the newest
EXT-X-PROGRAM-DATE-TIME plus the segments after it, else from Last-Modified. Unreachable or not
a playlist → `offline`; older than `health.max_playlist_age_s` → `stale`; else `healthy`.
Tolerant on purpose: any HLS origin, LL-HLS or not, whatever tags it writes.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin

import httpx

PROBE_TIMEOUT_S = 5.0
MAX_PLAYLIST_BYTES = 1 << 20


def _age_from_text(text: str, now: float) -> float | None:
    pdt, after = None, 0.0
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            try:
                pdt, after = datetime.fromisoformat(line.split(":", 1)[1].strip().replace("Z", "+00:00")), 0.0
            except ValueError:
                continue
        elif line.startswith("#EXTINF:") and pdt is not None:
            try:
                after += float(line.split(":", 1)[1].split(",", 1)[0])
            except ValueError:
                continue
    if pdt is None:
        return None
    return max(0.0, now - (pdt.timestamp() + after))


async def probe(client: httpx.AsyncClient, url: str, *, now: float, max_age_s: float) -> dict:
    """{"status", "playlist_age_s", "detail"} for the playlist at `url`."""
    try:
        r = await client.get(url, timeout=PROBE_TIMEOUT_S)
        if r.status_code == 200 and "#EXT-X-STREAM-INF" in r.text[:MAX_PLAYLIST_BYTES]:
            variant = next(line for line in r.text.splitlines() if line and not line.startswith("#"))
            url = urljoin(url, variant)
            r = await client.get(url, timeout=PROBE_TIMEOUT_S)
    except (httpx.HTTPError, StopIteration) as e:
        return {"status": "offline", "playlist_age_s": None, "detail": f"unreachable: {type(e).__name__}"}
    text = r.text[:MAX_PLAYLIST_BYTES]
    if r.status_code != 200 or not text.startswith("#EXTM3U"):
        return {"status": "offline", "playlist_age_s": None, "detail": f"HTTP {r.status_code}, not a playlist"}
    age = _age_from_text(text, now)
    if age is None and "last-modified" in r.headers:
        try:
            age = max(0.0, now - parsedate_to_datetime(r.headers["last-modified"]).timestamp())
        except (TypeError, ValueError):
            age = None
    if "#EXT-X-ENDLIST" in text:
        return {"status": "offline", "playlist_age_s": age, "detail": "the playlist has ended"}
    status = "stale" if age is not None and age > max_age_s else "healthy"
    return {"status": status, "playlist_age_s": None if age is None else round(age, 3), "detail": url}
