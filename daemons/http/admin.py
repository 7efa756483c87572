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
from html import escape

from quart import Response, redirect, request

from daemons.core import advice, domain
from daemons.core.domain import mgmt_tokens, playback, restream
from daemons.core.errors import SenderError
from daemons.core.stats import read_fresh_stats
import trio

from daemons.http import management, pages, thumbnails
from daemons.http.metrics import all_worker_stats
from daemons.http.responses import NO_STORE
from daemons.http.state import viewers_per_stream

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


async def dashboard(ctx, session: str) -> str:
    csrf = csrf_of(ctx.secret, session)
    streams, keys, snapshots = await ctx.store.run(_admin_rows)
    ingest = read_fresh_stats(ctx.install.state_dir, "ingest") or {}
    publishers = {p["stream_id"]: p for p in ingest.get("publishers", [])}
    viewers = viewers_per_stream([r for w in all_worker_stats(ctx) for r in w.get("viewers", ())])
    pictures = await trio.to_thread.run_sync(_pictures, ctx, streams)
    listed = await ctx.store.run(restream.list_)
    targets, target_streams = restream.states(listed, ingest), {t["id"]: t["stream"] for t in listed}
    rows = []
    for s in streams:
        g, p = s["generation"], publishers.get(s["id"])
        state = "idle" if g is None else "reconnecting" if g["publisher_left_at"] else g["status"]
        toggle = (_form(f"/admin/streams/{s['slug']}/stop", csrf, "Stop") if g
                  else _form(f"/admin/streams/{s['slug']}/start", csrf, "Start"))
        rows.append(
            f'<tr data-stream="{escape(s["slug"])}"><td>{pictures.get(s["id"], "")}</td>'
            f'<td><a href="/watch/{escape(s["slug"])}">{escape(s["slug"])}</a></td>'
            f'<td>{escape(s["title"])}</td><td>{escape(s["visibility"])}</td>'
            f'<td><span class="badge" data-status="{escape(state)}">{escape(state)}</span></td>'
            f'<td>{viewers.get(s["id"], 0)}</td>'
            f'<td>{"%.2f Mb/s" % ((p.get("bitrate_bps") or 0) / 1e6) if p else "-"}</td>'
            f'<td>{escape(p["remote"]) if p else "-"}</td><td>{toggle}</td></tr>'
        )
    key_rows = [_key_row(k, csrf) for k in keys]
    snap_rows = [
        f'<tr><td>{escape(r["endpoint_id"])}</td><td>{escape(r["generation_id"] or "(endpoint)")}</td>'
        f'<td><span class="badge">{escape(r["status"])}</span></td><td>{r["viewers"]}</td>'
        f'<td>{r["ingress_bps"] / 1e6:.2f} / {r["egress_bps"] / 1e6:.2f} Mb/s</td><td>{escape(r["observed_at"])}</td></tr>'
        for r in snapshots
    ]
    options = "".join(f'<option value="{escape(s["slug"])}">{escape(s["slug"])}</option>' for s in streams)
    return (
        '<header class="page"><h1>Sender admin</h1>' + _form("/admin/logout", csrf, "Sign out") + "</header>"
        '<section aria-labelledby="streams-h"><h2 id="streams-h">Streams</h2>'
        '<table><thead><tr><th>picture</th><th>stream</th><th>title</th><th>visibility</th><th>state</th><th>viewers</th>'
        '<th>bitrate</th><th>publisher</th><th></th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
        + _form("/admin/streams", csrf, "Create stream",
                '<label>slug <input name="slug" required pattern="[a-z0-9-]{1,64}"></label> '
                '<label>title <input name="title"></label> '
                '<label>visibility <select name="visibility"><option>public</option><option>unlisted</option>'
                '<option>private</option></select></label> ')
        + "</section>"
        '<section aria-labelledby="keys-h"><h2 id="keys-h">Stream keys</h2>'
        f'<p class="note">OBS: Server and Stream Key come with a new key; set Settings → Output → Streaming → '
        f'Keyframe Interval to <b>{advice.recommended_keyframe_interval_s(ctx.config["hls.segment_target_s"])} s</b> '
        f'(the segment length; 0/auto makes 8 s segments).</p>'
        '<table><thead><tr><th>stream</th><th>prefix</th><th>label</th><th>last used</th><th></th></tr></thead><tbody>'
        + "".join(key_rows) + "</tbody></table>"
        + (_form("/admin/keys", csrf, "Create key",
                 f'<label>stream <select name="stream">{options}</select></label> <label>label <input name="label"></label> ')
           if streams else "")
        + "</section>"
        '<section aria-labelledby="restream-h"><h2 id="restream-h">Restream targets</h2>'
        '<table><thead><tr><th>stream</th><th>label</th><th>target</th><th>state</th><th>last error</th><th>sent</th>'
        '<th>bitrate</th></tr></thead><tbody>'
        + ("".join(_restream_row(t, target_streams[t["id"]]) for t in targets)
           or '<tr><td colspan="7">none: add one with <code>sender restream add SLUG URL</code></td></tr>')
        + "</tbody></table></section>"
        '<section aria-labelledby="health-h"><h2 id="health-h">Endpoint health</h2>'
        '<table><thead><tr><th>endpoint</th><th>generation</th><th>status</th><th>viewers</th><th>in / out</th>'
        '<th>observed</th></tr></thead><tbody>' + ("".join(snap_rows) or '<tr><td colspan="6">no snapshots yet</td></tr>')
        + "</tbody></table></section>"
    )


def _pictures(ctx, streams: list[dict]) -> dict[str, str]:
    """Stream id → the <img> of its live broadcast's thumbnail (a private stream's with a short
    playback token of its own). Blocking: a stat per active stream."""
    out = {}
    for s in streams:
        g = s["generation"]
        if g is not None and thumbnails.exists(ctx.install.spool_root, s["id"], g["id"]):
            token = playback.mint_token(ctx.playback_secret, s["id"], 600)["token"] if s["visibility"] == "private" else None
            out[s["id"]] = f'<img src="{escape(thumbnails.url_of(s["slug"], token))}" alt="" width="96">'
    return out


def _restream_row(t: dict, stream: str) -> str:
    live = t["state"] == "live"
    return (f'<tr data-target="{escape(t["id"])}"><td>{escape(stream)}</td><td>{escape(t["label"])}</td>'
            f'<td><code>{escape(t["url"])}</code></td>'
            f'<td><span class="badge" data-status="{escape(t["state"])}">{escape(t["state"])}</span></td>'
            f'<td>{escape(t["last_error"] or "")}</td><td>{t["bytes"] / 1e6:.1f} MB</td>'
            f'<td>{"%.2f Mb/s" % (t["bitrate_bps"] / 1e6) if live else "-"}</td></tr>')


def _key_row(k: dict, csrf: str) -> str:
    revoke = "revoked" if k["revoked_at"] else _form(f"/admin/keys/{k['id']}/revoke", csrf, "Revoke")
    return (f'<tr><td>{escape(k["stream"])}</td><td><code>{escape(k["prefix"])}</code></td><td>{escape(k["label"])}</td>'
            f'<td>{escape(k["last_used_at"] or "never")}</td><td>{revoke}</td></tr>')


def _admin_rows(store):
    streams = domain.stream_views.list_with_generations(store)
    keys = domain.keys.list_(store)
    snapshots = store.query("SELECT * FROM endpoint_snapshots ORDER BY endpoint_id, generation_id")
    return streams, keys, snapshots
