"""HTML pages of sender-http: `/` (public live streams), `/watch/<slug>` (the player),
`/watch/<slug>/<generation>` (a recording's replay: the same player with a seek bar), and the
built player assets under `/static/`.

The pages are small server-rendered HTML with no inline script or style: the player
(`web/src/watch.ts`, Video.js v10 on hls.js, built by esbuild into `static/`) reads the stream's
slug from data- attributes and asks the playback API for the rest, so a strict
Content-Security-Policy holds and nothing comes from another origin. The built files ship inside
the Python package; `static/manifest.json` maps each entry to its content-hashed file name, and
only the files it names are served (with a year-long immutable cache).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import trio
from quart import Response, request

from daemons.core.domain import generations, playback
from daemons.core.domain import recordings as domain_recordings
from daemons.core.domain import stream_views
from daemons.http import thumbnails
from daemons.media.names import GENERATION_ID_RE

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
IMMUTABLE = "public, max-age=31536000, immutable"

HLS_VIDEO_STYLE_HASH = "sha256-CiCIGK+iiyifBeh+GO5/AbfFpYy96d3ewcHczAfyQ3s="
# The replay page's seek bar: <media-slider-thumbnail> puts a fixed <style> (its SHADOW_CSS) in its shadow root.
SLIDER_THUMBNAIL_STYLE_HASH = "sha256-uvVKilsI7vU78t7JP2zAYfRbql0CeUoAO9EWf76oFTc="
CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    # The one inline <style> Video.js v10 puts in <hls-video>'s shadow root (a fixed text), by hash.
    f"style-src 'self' '{HLS_VIDEO_STYLE_HASH}' '{SLIDER_THUMBNAIL_STYLE_HASH}'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "font-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a private stream's ?token= never leaves in a Referer
    "X-Frame-Options": "DENY",
}


def load_assets(directory: Path = STATIC_DIR) -> tuple[dict[str, str], dict[str, tuple[bytes, str]]]:
    """(entry → file name, file name → (bytes, content type)) of the built assets, read once."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except FileNotFoundError:
        return {}, {}
    files = {}
    for name in manifest.values():
        files[name] = ((directory / name).read_bytes(), STATIC_TYPES[Path(name).suffix])
    return manifest, files


def _page(title: str, body: str, manifest: dict[str, str], *, script: bool = False, status: int = 200,
          extra_headers: dict | None = None, extra_head: tuple[str, ...] = ()) -> Response:
    css = manifest.get("watch.css")
    js = manifest.get("watch.js")
    head = [
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        '<link rel="icon" href="data:,">',
        # id="__media-styles": Video.js's skin then finds its base styles and injects no <style>.
        f'<link rel="stylesheet" id="__media-styles" href="/static/{escape(css)}">' if css else "",
    ]
    head += extra_head
    if script and js:
        head.append(f'<script src="/static/{escape(js)}" defer></script>')
    html = (
        '<!doctype html>\n<html lang="en">\n<head>\n' + "\n".join(h for h in head if h) + "\n</head>\n<body>\n"
        '<a class="skip" href="#content">Skip to content</a>\n' + body + "\n</body>\n</html>\n"
    )
    return Response(html, status=status, content_type="text/html; charset=utf-8",
                    headers={**PAGE_HEADERS, **(extra_headers or {})})


def _with_thumbnails(ctx, rows: list[dict]) -> set[str]:
    """The slugs of those listed streams whose generation has a thumbnail (blocking: a stat each)."""
    out = set()
    for s in rows:
        entry = ctx.directory.by_slug.get(s["slug"])
        if entry is not None and thumbnails.exists(ctx.install.spool_root, entry.id, s["generation_id"]):
            out.add(s["slug"])
    return out


def _when(iso: str) -> str:
    """A time for people (UTC, to the minute), machine-readable in <time datetime>."""
    return f'<time datetime="{escape(iso)}">{escape(iso[:10])} {escape(iso[11:16])} UTC</time>'


def register(app, ctx) -> None:
    manifest, files = load_assets()

    @app.get("/")
    async def index_page():
        streams = await ctx.store.run(stream_views.public_listing)
        live = [s for s in streams if s["status"] in ("live", "starting")]
        pictured = await trio.to_thread.run_sync(_with_thumbnails, ctx, live)
        items = "\n".join(
            f'<li><a href="/watch/{escape(s["slug"])}">'
            + (f'<img class="thumbnail" src="{escape(thumbnails.url_of(s["slug"]))}" alt="" width="160" loading="lazy"> '
               if s["slug"] in pictured else "")
            + f'<strong>{escape(s["title"] or s["slug"])}</strong> '
            f'<span class="badge" data-status="{escape(s["status"])}">{escape(s["status"])}</span></a></li>'
            for s in live
        )
        listing = f'<ul class="streams">\n{items}\n</ul>' if live else '<p>No public stream is live right now.</p>'
        body = (
            '<main id="content">\n<header class="page"><h1>Live now</h1></header>\n'
            f"{listing}\n"
            '<p class="note">Reload to refresh the list.</p>\n</main>'
        )
        return _page("Sender: live streams", body, manifest, extra_headers={"Cache-Control": "max-age=5"})

    @app.get("/watch/<slug>")
    async def watch_page(slug: str):
        entry = await ctx.directory.find(slug)
        if entry is None:
            body = ('<main id="content"><header class="page"><h1>No such stream</h1></header>'
                    '<p>There is no stream here. <a href="/">See the live streams</a>.</p></main>')
            return _page("Sender: no such stream", body, manifest, status=404, extra_headers={"Cache-Control": "no-store"})
        # The title comes from the playback API (a private stream's only with its token).
        poster, head = await _thumbnail_tags(ctx, entry)
        body = f"""<main id="content">
<div id="watch" data-slug="{escape(slug)}" data-status="loading">
<header class="page">
<h1 id="title">{escape(slug)}</h1>
<span id="badge" class="badge" role="status" aria-live="polite">…</span>
<span id="viewers" class="viewers" aria-live="off"></span>
</header>
<section class="stage" aria-label="Video player">
<video-player>
<live-video-skin>
{poster}<hls-video slot="media" muted autoplay playsinline preload="auto" prefer-playback="mse" aria-label="Live video"></hls-video>
</live-video-skin>
</video-player>
<div id="overlay" class="overlay" role="status" aria-live="polite">Loading…</div>
</section>
<p class="note">Keys: Space or K play/pause, M mute, F full screen. <a href="/">All live streams</a></p>
{await _replay_list(entry)}
</div>
</main>"""
        return _page(f"Sender: {slug}", body, manifest, script=True, extra_head=head,
                     extra_headers={"Cache-Control": "no-store" if entry.visibility == "private" else "max-age=60"})

    async def _thumbnail_tags(ctx, entry) -> tuple[str, tuple[str, ...]]:
        """The watch page's picture of the stream, when it has one: the player's poster (with a private
        stream's token, when the page has a valid one) and, unless private, og:image for link previews."""
        latest = await ctx.store.run(generations.latest, entry.id)
        gid = latest["id"] if latest else None
        if not await trio.to_thread.run_sync(thumbnails.exists, ctx.install.spool_root, entry.id, gid):
            return "", ()
        if entry.visibility == "private":
            token = request.args.get("token")
            if not playback.token_valid(ctx.playback_secret, entry.id, token):
                return "", ()
            return f'<img slot="poster" src="{escape(thumbnails.url_of(entry.slug, token))}" alt="">\n', ()
        url = thumbnails.url_of(entry.slug)
        og = f'<meta property="og:image" content="{escape(ctx.base_url_of(request.scope) + url)}">'
        return f'<img slot="poster" src="{escape(url)}" alt="">\n', (og,)

    async def _replay_list(entry) -> str:
        """The stream's recordings a viewer may watch (links carry a private stream's valid token)."""
        token = request.args.get("token")
        if entry.visibility == "private" and not playback.token_valid(ctx.playback_secret, entry.id, token):
            return ""
        found = await ctx.store.run(domain_recordings.replays, ctx.install.spool_root, entry.id)
        if not found:
            return ""
        query = f"?token={token}" if entry.visibility == "private" else ""
        items = "\n".join(
            f'<li><a href="/watch/{escape(entry.slug)}/{escape(r["id"])}{escape(query)}" data-generation="{escape(r["id"])}">'
            f'{"Live now, from the start" if r["active"] else "Broadcast"} of {_when(r["started_at"])}</a></li>'
            for r in found
        )
        return f'<section class="replays" aria-label="Replays">\n<h2>Replays</h2>\n<ul id="replays">\n{items}\n</ul>\n</section>'

    @app.get("/watch/<slug>/<generation_id>")
    async def replay_page(slug: str, generation_id: str):
        """A recording: while live its DVR playlist (seek back to the start), once ended its VOD
        one; the stream's visibility rules, a private stream's token checked here too."""
        entry = await ctx.directory.find(slug)
        found, token = None, request.args.get("token")
        if entry is not None and GENERATION_ID_RE.fullmatch(generation_id):
            if entry.visibility == "private" and not playback.token_valid(ctx.playback_secret, entry.id, token):
                body = ('<main id="content"><header class="page"><h1>Private recording</h1></header>'
                        '<p>This recording is private: open it with the link (including its token) you were given.</p></main>')
                return _page("Sender: private recording", body, manifest, status=403, extra_headers={"Cache-Control": "no-store"})
            found = await ctx.store.run(domain_recordings.replay, ctx.install.spool_root, entry.id, generation_id)
        if found is None:
            back = f'<a href="/watch/{escape(slug)}">See the stream</a>' if entry is not None else '<a href="/">See the live streams</a>'
            body = ('<main id="content"><header class="page"><h1>No such recording</h1></header>'
                    f'<p>There is no recording here (or no longer). {back}.</p></main>')
            return _page("Sender: no such recording", body, manifest, status=404, extra_headers={"Cache-Control": "no-store"})
        private = entry.visibility == "private"
        picture = thumbnails.path_of(ctx.install.spool_root, entry.id, generation_id)
        poster, head = "", ()
        if await trio.to_thread.run_sync(picture.is_file):
            url = f"/api/streams/{entry.slug}/thumbnail.jpg?generation={generation_id}"
            poster = f'<img slot="poster" src="{escape(url + (f"&token={token}" if private else ""))}" alt="">\n'
            if not private:
                head = (f'<meta property="og:image" content="{escape(ctx.base_url_of(request.scope) + url)}">',)
        live = found["active"]
        master = f"/hls/{entry.id}/{generation_id}/{found['master']}"
        title = entry.title or entry.slug
        body = f"""<main id="content">
<div id="watch" data-slug="{escape(entry.slug)}" data-mode="replay" data-generation="{escape(generation_id)}" data-master="{escape(master)}" data-live="{str(live).lower()}" data-status="loading">
<header class="page">
<h1 id="title">{escape(title)}</h1>
<span id="badge" class="badge" role="status" aria-live="polite">{"Live replay" if live else "Replay"}</span>
<span class="when">{"Live now, from the start of" if live else "Broadcast of"} {_when(found["started_at"])}</span>
<span id="viewers" class="viewers" aria-live="off"></span>
</header>
<section class="stage" aria-label="Video player">
<video-player>
<video-skin>
{poster}<hls-video slot="media" muted autoplay playsinline preload="auto" prefer-playback="mse" aria-label="Recorded video"></hls-video>
</video-skin>
</video-player>
<div id="overlay" class="overlay" role="status" aria-live="polite">Loading…</div>
</section>
<p class="note">Keys: Space or K play/pause, ← → 5 s, J L 10 s, M mute, F full screen. <a href="/watch/{escape(entry.slug)}{escape(f"?token={token}" if private else "")}">Back to the stream</a></p>
</div>
</main>"""
        return _page(f"Sender: {title} (replay)", body, manifest, script=True, extra_head=head,
                     extra_headers={"Cache-Control": "no-store" if private else "max-age=60"})

    @app.get("/static/<name>")
    async def static_file(name: str):
        found = files.get(name)
        if found is None:
            return Response("not found\n", status=404, content_type="text/plain; charset=utf-8",
                            headers={"Cache-Control": "no-store"})
        data, content_type = found
        return Response(data, content_type=content_type,
                        headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"})
