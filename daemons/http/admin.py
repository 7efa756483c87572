"""`/admin`: a small admin page for people who would rather click than type.

Server-rendered HTML forms, no script (the pages' strict CSP holds). Sign-in takes a management
token (`sender token create`) and gives a session cookie — HttpOnly, SameSite=Strict, `Secure`
behind https — whose value is `<token prefix>.<expiry>.<HMAC(install secret)>`: stateless, and
void as soon as that token is revoked. Every form carries a CSRF token derived from the session
(HMAC), checked on every POST; the sign-in form uses a double-submit cookie. Every change goes
through the domain layer, as the CLI and the management API do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import escape

import trio
from quart import Response, redirect, request

from daemons.core import advice, domain
from daemons.core.domain import generations, mgmt_tokens, playback, recordings, restream, snapshots
from daemons.core.errors import SenderError
from daemons.core.stats import read_fresh_stats, viewers_per_stream
from daemons.http import management, pages, thumbnails, visuals
from daemons.http.metrics import all_worker_stats
from daemons.http.responses import NO_STORE

SESSION_COOKIE = "sender_admin"
LOGIN_CSRF_COOKIE = "sender_login_csrf"
SESSION_TTL_S = 12 * 3600


def _sign(secret: bytes, purpose: str, text: str) -> str:
    digest = hmac.new(secret, f"sender-admin-{purpose}:{text}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def session_value(secret: bytes, prefix: str, expiry: int) -> str:
    return f"{prefix}.{expiry}.{_sign(secret, 'session', f'{prefix}:{expiry}')}"


def csrf_of(secret: bytes, session: str) -> str:
    return _sign(secret, "csrf", session)


def register(app, ctx) -> None:
    manifest, _ = pages.load_assets()

    async def current_session() -> str | None:
        """The session cookie's value when it is genuine, unexpired and its token not revoked."""
        value = request.cookies.get(SESSION_COOKIE, "")
        prefix, _, rest = value.partition(".")
        expiry, _, _sig = rest.partition(".")
        if not prefix or not expiry.isdigit() or int(expiry) < time.time():
            return None
        if not hmac.compare_digest(value, session_value(ctx.secret, prefix, int(expiry))):
            return None
        known = {e.split(":", 1)[0] for e in await management._verifiers_of(ctx).current()}
        return value if prefix in known else None

    def page(title: str, body: str, *, status: int = 200, cookies: list[tuple] = ()) -> Response:
        response = pages._page(title, f'<main id="content">{body}</main>', manifest, status=status, extra_headers=NO_STORE)
        for args in cookies:
            response.set_cookie(*args[:2], **args[2])
        return response

    def cookie_flags(max_age: int) -> dict:
        return {"max_age": max_age, "httponly": True, "samesite": "Strict", "path": "/admin",
                "secure": ctx.base_url_of(request.scope).startswith("https:")}

    def login_page(message: str = "", status: int = 200) -> Response:
        nonce = secrets.token_urlsafe(18)
        note = f'<p class="note" role="alert">{escape(message)}</p>' if message else ""
        body = (
            '<header class="page"><h1>Sender admin</h1></header>' + note +
            '<form method="post" action="/admin/login">'
            f'<input type="hidden" name="csrf" value="{nonce}">'
            '<p><label for="token">Management token</label><br>'
            '<input id="token" name="token" type="password" autocomplete="off" required size="50"></p>'
            '<p><button type="submit">Sign in</button></p>'
            '<p class="note">Create one on the server with <code>sender token create</code>.</p></form>'
        )
        return page("Sender admin: sign in", body, status=status, cookies=[(LOGIN_CSRF_COOKIE, nonce, cookie_flags(600))])

    async def checked_form(session: str) -> dict | None:
        form = await request.form
        if not hmac.compare_digest(form.get("csrf", ""), csrf_of(ctx.secret, session)):
            return None
        return form

    def refused(status: int, message: str) -> Response:
        return page("Sender admin", f'<p role="alert">{escape(message)}</p><p><a href="/admin">Back</a></p>', status=status)

    @app.get("/admin")
    async def admin_home():
        session = await current_session()
        if session is None:
            return login_page()
        return page("Sender admin", await dashboard(ctx, session))

    @app.post("/admin/login")
    async def admin_login():
        client = ctx.client_of(request.scope)
        if ctx.auth_failures.blocked(client):
            return login_page("Too many failed sign-ins from this address; try again in a minute.", 429)
        form = await request.form
        nonce = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not nonce or not hmac.compare_digest(form.get("csrf", ""), nonce):
            return refused(403, "The sign-in form expired or came from elsewhere: open /admin and sign in again.")
        check = mgmt_tokens.verify(ctx.secret, form.get("token", "").strip(), await management._verifiers_of(ctx).current())
        if not check.ok:
            ctx.auth_failures.record(client)
            return login_page("That management token is not valid.", 403)
        expiry = int(time.time()) + SESSION_TTL_S
        response = redirect("/admin", 303)
        response.set_cookie(SESSION_COOKIE, session_value(ctx.secret, check.prefix, expiry), **cookie_flags(SESSION_TTL_S))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin")
        response.headers["Cache-Control"] = "no-store"
        return response

    def action(path: str, fn):
        """A POST form: session and CSRF checked, then fn(form) → a Response or None (back to /admin)."""
        async def handler(**kw):
            session = await current_session()
            if session is None:
                return refused(401, "Your session ended: sign in again.")
            form = await checked_form(session)
            if form is None:
                return refused(403, "This form is missing its CSRF token (or it is wrong): reload /admin and try again.")
            try:
                result = await fn(form, session, **kw)
            except SenderError as e:
                return refused(e.http_status, e.message)
            return result or redirect("/admin", 303)

        handler.__name__ = "admin_" + path.strip("/").replace("/", "_").replace("<", "").replace(">", "")
        app.post(path)(handler)

    async def logout(form, session):
        response = redirect("/admin", 303)
        response.delete_cookie(SESSION_COOKIE, path="/admin")
        return response

    async def create_stream(form, session):
        await ctx.store.run(domain.streams.create, form.get("slug", "").strip(), title=form.get("title", "").strip(),
                            visibility=form.get("visibility", "public"))
        await ctx.directory.refresh()

    async def create_key(form, session):
        slug = form.get("stream", "")
        row, key = await ctx.store.run(domain.keys.create, ctx.secret, slug, label=form.get("label", "").strip())
        host = ctx.base_url_of(request.scope).split("://", 1)[1].rsplit(":", 1)[0]
        _, rtmp_port = ctx.config.listen("rtmp.listen")
        ingest = read_fresh_stats(ctx.install.state_dir, "ingest") or {}
        rtmp_port = next((port for scheme, _, port in ingest.get("listening", []) if scheme == "rtmp"), rtmp_port)
        server = f"rtmp://{host}:{rtmp_port}/live"
        body = (
            f'<header class="page"><h1>Stream key for {escape(slug)}</h1></header>'
            '<p role="status">Shown once: copy it now. Sender keeps only a verifier.</p>'
            f'<p>OBS → Settings → Stream → Service <b>Custom</b>:</p>'
            f'<p>Server: <code id="obs-server">{escape(server)}</code></p>'
            f'<p>Stream key: <code id="stream-key">{escape(key)}</code></p>'
            f'<p>OBS → Settings → Output → Streaming → Keyframe Interval: '
            f'<code id="obs-keyframe-interval">{advice.recommended_keyframe_interval_s(ctx.config["hls.segment_target_s"])} s</code> '
            f'(the segment length; not 0/auto, which makes 8 s segments and puts viewers further behind).</p>'
            '<p><a href="/admin">Back to the admin page</a></p>'
        )
        return page(f"Stream key for {slug}", body)

    async def revoke_key(form, session, key_id: str):
        await ctx.store.run(domain.keys.revoke, key_id)

    async def start_stream(form, session, slug: str):
        await ctx.store.run(domain.streams.start, slug)

    async def stop_stream(form, session, slug: str):
        await ctx.store.run(domain.streams.stop, slug)

    action("/admin/logout", logout)
    action("/admin/streams", create_stream)
    action("/admin/keys", create_key)
    action("/admin/keys/<key_id>/revoke", revoke_key)
    action("/admin/streams/<slug>/start", start_stream)
    action("/admin/streams/<slug>/stop", stop_stream)


def _form(action: str, csrf: str, label: str, fields: str = "") -> str:
    return (f'<form method="post" action="{escape(action)}" class="inline">{fields}'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}"><button type="submit">{escape(label)}</button></form>')


CHART_WINDOW_S = 3600
CHART_BUCKET_S = 60


async def dashboard(ctx, session: str) -> str:
    csrf = csrf_of(ctx.secret, session)
    now = datetime.now(timezone.utc)
    since = (now - timedelta(seconds=CHART_WINDOW_S)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    rows = await ctx.store.run(_admin_rows, ctx.install.spool_root, since)
    ingest = read_fresh_stats(ctx.install.state_dir, "ingest") or {}
    publishers = {p["stream_id"]: p for p in ingest.get("publishers", [])}
    viewers = viewers_per_stream([r for w in all_worker_stats(ctx) for r in w.get("viewers", ())])
    pictures = await trio.to_thread.run_sync(_pictures, ctx, rows.streams)
    targets = {t["id"]: t for t in restream.states(rows.targets, ingest)}
    cards = []
    for s in rows.streams:
        stream_targets = [targets[t["id"]] for t in rows.targets if t["stream"] == s["slug"]]
        cards.append(_stream_card(ctx, s, publishers.get(s["id"]), viewers.get(s["id"], 0), pictures.get(s["id"]),
                                  rows.series.get(s["id"], []), rows.replays.get(s["id"], []), stream_targets,
                                  csrf, now))
    live = sum(1 for s in rows.streams if s["generation"] is not None)
    summary = (f'<p class="summary" id="summary">{live} of {len(rows.streams)} stream{"s" if len(rows.streams) != 1 else ""} '
               f'live · {sum(viewers.values())} watching · ingest {"up" if ingest else "not reporting"}</p>')
    snap_rows = [
        f'<tr><td>{escape(r["endpoint_id"])}</td><td>{escape(r["generation_id"] or "(endpoint)")}</td>'
        f'<td><span class="badge" data-status="{escape(r["status"])}">{escape(r["status"])}</span></td><td>{r["viewers"]}</td>'
        f'<td>{visuals.mbps(r["ingress_bps"])} / {visuals.mbps(r["egress_bps"])}</td>'
        f'<td>{visuals.when(r["observed_at"], now)}</td></tr>'
        for r in rows.snapshots
    ]
    options = "".join(f'<option value="{escape(s["slug"])}">{escape(s["slug"])}</option>' for s in rows.streams)
    keyframe_s = advice.recommended_keyframe_interval_s(ctx.config["hls.segment_target_s"])
    return (
        '<header class="page"><h1>Sender admin</h1>' + _form("/admin/logout", csrf, "Sign out") + "</header>"
        + summary +
        '<section aria-labelledby="streams-h"><h2 id="streams-h">Streams</h2>'
        '<div class="cards">' + ("".join(cards) or '<p class="note">No streams yet: create one below.</p>') + "</div>"
        + _form("/admin/streams", csrf, "Create stream",
                '<label>slug <input name="slug" required pattern="[a-z0-9-]{1,64}"></label> '
                '<label>title <input name="title"></label> '
                '<label>visibility <select name="visibility"><option>public</option><option>unlisted</option>'
                '<option>private</option></select></label> ')
        + "</section>"
        '<section aria-labelledby="keys-h"><h2 id="keys-h">Stream keys</h2>'
        f'<p class="note">OBS: Server and Stream Key come with a new key; set Settings → Output → Streaming → '
        f'Keyframe Interval to <b>{keyframe_s} s</b> (the segment length; 0/auto makes 8 s segments).</p>'
        '<table><thead><tr><th>stream</th><th>prefix</th><th>label</th><th>last used</th><th></th></tr></thead><tbody>'
        + "".join(_key_row(k, csrf, now) for k in rows.keys) + "</tbody></table>"
        + (_form("/admin/keys", csrf, "Create key",
                 f'<label>stream <select name="stream">{options}</select></label> <label>label <input name="label"></label> ')
           if rows.streams else "")
        + "</section>"
        '<section aria-labelledby="health-h"><h2 id="health-h">Endpoint health</h2>'
        '<table><thead><tr><th>endpoint</th><th>generation</th><th>status</th><th>viewers</th><th>in / out</th>'
        '<th>observed</th></tr></thead><tbody>' + ("".join(snap_rows) or '<tr><td colspan="6">no snapshots yet</td></tr>')
        + "</tbody></table></section>"
    )


def _stream_card(ctx, s: dict, publisher: dict | None, watching: int, picture: str | None, series: list[dict],
                 replays: list[dict], targets: list[dict], csrf: str, now: datetime) -> str:
    """One stream at a glance: picture, state, numbers now, the last hour as charts, its
    recordings and restream targets, and its start/stop button."""
    g, slug = s["generation"], s["slug"]
    state = "idle" if g is None else "reconnecting" if g["publisher_left_at"] else g["status"]
    if g is not None:
        since = f'{"live" if state == "live" else state} since {visuals.when(g["started_at"], now)}'
    elif s.get("last_ended_at"):
        since = f"last broadcast ended {visuals.when(s['last_ended_at'], now)}"
    else:
        since = "never broadcast"
    facts = [since, f'<b class="viewers-now">{watching}</b> watching']
    if publisher:
        facts += [f'<b class="bitrate-now">{visuals.mbps(publisher.get("bitrate_bps") or 0)}</b> from '
                  f'<span class="publisher">{escape(publisher["remote"])}</span>']
    start, end = now.timestamp() - CHART_WINDOW_S, now.timestamp()

    def chart(kind: str, column: str, caption: str, fmt) -> str:
        points = [(p["t"], p[column]) for p in series if p["t"] >= start]
        peak = f" · peak {fmt(max(v for _, v in points))}" if points else ""
        return (f'<figure><figcaption>{caption}, last hour{peak}</figcaption>'
                + visuals.sparkline(points, start=start, end=end, bucket_s=CHART_BUCKET_S, what=caption.capitalize(),
                                    fmt=fmt, kind=kind) + "</figure>")

    charts = ('<div class="charts">' + chart("viewers", "viewers", "viewers", lambda v: f"{v:g} watching")
              + chart("bitrate", "ingress_bps", "bitrate in", visuals.mbps) + "</div>")
    token = _token_for(ctx, s)
    query = f"?token={token}" if token else ""
    recordings = "".join(
        f'<li data-generation="{escape(r["id"])}"><a href="/watch/{escape(slug)}/{escape(r["id"])}{escape(query)}">'
        f'{"recording now" if r["active"] else "replay"}</a> · started {visuals.when(r["started_at"], now)}'
        + (f' · {visuals.duration((visuals.parse_time(r["ended_at"]) - visuals.parse_time(r["started_at"])).total_seconds())}'
           if r["ended_at"] else "")
        + "</li>"
        for r in replays
    )
    pushes = "".join(_restream_item(t, now) for t in targets)
    toggle = (_form(f"/admin/streams/{slug}/stop", csrf, "Stop") if g else _form(f"/admin/streams/{slug}/start", csrf, "Start"))
    return (
        f'<article class="card" data-stream="{escape(slug)}">'
        + (picture or '<div class="pic empty">no picture yet</div>') +
        '<div class="card-body"><header class="card-head">'
        f'<h3><a href="/watch/{escape(slug)}">{escape(s["title"] or slug)}</a></h3>'
        f'<span class="badge" data-status="{escape(state)}">{escape(state)}</span></header>'
        f'<p class="meta">{escape(slug)} · {escape(s["visibility"])}</p>'
        f'<p class="facts">{" · ".join(facts)}</p>'
        + charts
        + (f'<h4>Recordings</h4><ul class="recordings">{recordings}</ul>' if recordings else "")
        + (f'<h4>Restream</h4><ul class="targets">{pushes}</ul>' if pushes else "")
        + f'<div class="actions">{toggle}</div></div></article>'
    )


def _token_for(ctx, s: dict) -> str | None:
    """A short playback token of its own for a private stream's links and pictures on this page."""
    return playback.mint_token(ctx.playback_secret, s["id"], 600)["token"] if s["visibility"] == "private" else None


def _pictures(ctx, streams: list[dict]) -> dict[str, str]:
    """Stream id → the <img> of its live broadcast's thumbnail, else its last broadcast's (a
    private stream's with a playback token). Blocking: a stat per stream."""
    out = {}
    for s in streams:
        generation_id = s["generation"]["id"] if s["generation"] else s.get("last_generation_id")
        if thumbnails.exists(ctx.install.spool_root, s["id"], generation_id):
            url = thumbnails.url_of(s["slug"], _token_for(ctx, s), generation=None if s["generation"] else generation_id)
            out[s["id"]] = f'<img class="pic" src="{escape(url)}" alt="picture of {escape(s["slug"])}" width="320" height="180">'
    return out


def _restream_item(t: dict, now: datetime) -> str:
    live = t["state"] == "live"
    since = f' since {visuals.when(t["state_since"], now)}' if t.get("state_since") else ""
    error = f'<br><span class="error">{escape(t["last_error"])}</span>' if t["last_error"] else ""
    return (f'<li data-target="{escape(t["id"])}"><span class="badge" data-status="{escape(t["state"])}">'
            f'{escape(t["state"])}</span> {escape(t["label"] or "target")}{since} · <code>{escape(t["url"])}</code>'
            f' · {t["bytes"] / 1e6:.1f} MB sent{" · " + visuals.mbps(t["bitrate_bps"]) if live else ""}{error}</li>')


def _key_row(k: dict, csrf: str, now: datetime) -> str:
    revoke = "revoked" if k["revoked_at"] else _form(f"/admin/keys/{k['id']}/revoke", csrf, "Revoke")
    return (f'<tr><td>{escape(k["stream"])}</td><td><code>{escape(k["prefix"])}</code></td><td>{escape(k["label"])}</td>'
            f'<td>{visuals.when(k["last_used_at"], now)}</td><td>{revoke}</td></tr>')


@dataclass
class _Rows:
    streams: list[dict]
    keys: list[dict]
    snapshots: list[dict]
    targets: list[dict]
    series: dict[str, list[dict]]
    replays: dict[str, list[dict]]


def _admin_rows(store, spool_root, since: str) -> _Rows:
    """Everything the page shows from the store, in one trip to its thread (the replays stat the spool)."""
    streams = domain.stream_views.list_with_generations(store)
    for s in streams:
        if s["generation"] is None and (last := generations.latest(store, s["id"])) is not None:
            s["last_generation_id"], s["last_ended_at"] = last["id"], last["ended_at"]
    return _Rows(
        streams=streams,
        keys=domain.keys.list_(store),
        snapshots=snapshots.list_(store),
        targets=restream.list_(store),
        series=snapshots.stream_series(store, since, bucket_s=CHART_BUCKET_S),
        replays={s["id"]: recordings.replays(store, spool_root, s["id"], limit=3) for s in streams},
    )
