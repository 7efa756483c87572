"""`POST /api/endpoints/<id>/snapshots`: an external endpoint's own process reports its stats.

An external origin or edge (a packager, a CDN, a web server Sender does not run) has no
sender-snapshot; whatever runs it reports here with the endpoint's report token
(`sender endpoint token ID`), either of:

    Authorization: Bearer <token>
    X-Sender-Timestamp: <unix seconds>
    X-Sender-Signature: sha256=<hex HMAC-SHA256(token, timestamp + "." + body)>

The signature is the control-plane report's (`daemons.core.signing`): refused beyond ±300 s
of this server's clock, and each signature is accepted once within that window (a replay → 409).
The body (at most 16 KiB) is one snapshot object, or `{"snapshots": [...]}` (one row per
generation, "" for the endpoint as a whole): the models `schemas.ExternalSnapshot(s)`; every row
is checked, by the model and then by `daemons.core.domain.snapshots.record_external`, before any
is written. Reports are rate-limited per endpoint, and
failed authentications per address (the management API's limiter).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections import OrderedDict
from pathlib import Path

from quart import request

from daemons.http.responses import error_response, json_response

from daemons.core import domain, signing
from daemons.core.errors import InvalidInput, NotFound
from daemons.core.signing import MAX_SKEW_S, SIGNATURE_HEADER, TIMESTAMP_HEADER
from daemons.http import schemas
from daemons.runtime.ratelimit import WindowLimiter

MAX_BODY = 16 * 1024
REPORTS_PER_MINUTE = 120
MAX_REMEMBERED = 100_000  # signatures remembered for replay protection (bounded)
_BEARER_PREFIX = "bearer "


class ReplayGuard:
    """Signatures seen within the skew window: a signature is accepted once — by any HTTP worker
    of this node. Each worker remembers what it accepted (bounded: past `max_entries` the oldest
    are forgotten, the closest to expiring anyway), and claims each new signature by creating a
    marker file with O_EXCL in `directory`, shared by the workers: a replay sent to another
    worker finds the marker. Markers older than twice the window are removed as it goes."""

    def __init__(self, directory: Path | None = None, window_s: float = MAX_SKEW_S, max_entries: int = MAX_REMEMBERED):
        self.window_s, self.max_entries = window_s, max_entries
        self.directory = directory
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._pruned_at = 0.0

    def first_time(self, key: str, now: float) -> bool:
        while self._seen and next(iter(self._seen.values())) < now - 2 * self.window_s:
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        if self.directory is not None and not self._claim(key, now):
            return False
        self._seen[key] = now
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return True

    def _claim(self, key: str, now: float) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        if now - self._pruned_at > self.window_s / 10:
            self._pruned_at = now
            for marker in self.directory.iterdir():
                try:
                    if marker.stat().st_mtime < now - 2 * self.window_s:
                        marker.unlink()
                except FileNotFoundError:
                    pass  # another worker pruned it first
        name = hashlib.sha256(key.encode()).hexdigest()[:40]
        try:
            os.close(os.open(self.directory / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
        return True


def register(app, ctx, *, wall_clock=time.time) -> None:

    limiter = WindowLimiter(REPORTS_PER_MINUTE)
    replays = ReplayGuard(ctx.install.state_dir / "run" / "report-signatures")

    @app.post("/api/endpoints/<endpoint_id>/snapshots")
    async def endpoint_report(endpoint_id: str):
        client = ctx.client_of(request.scope)
        if ctx.auth_failures.blocked(client):
            return error_response(429, "rate_limited", "too many failed authentications from this address; try again in a minute")
        if limiter.blocked(endpoint_id):
            return error_response(429, "rate_limited", f"more than {REPORTS_PER_MINUTE} reports a minute for endpoint {endpoint_id!r}; slow down")
        if (request.content_length or 0) > MAX_BODY:
            return error_response(413, "body_too_large", f"a report is limited to {MAX_BODY} bytes")
        body = await request.get_data(cache=False)
        if len(body) > MAX_BODY:
            return error_response(413, "body_too_large", f"a report is limited to {MAX_BODY} bytes")
        try:
            endpoint, salt = await ctx.store.run(domain.endpoints.report_credentials, endpoint_id)
        except NotFound:
            return error_response(404, "not_found", f"no endpoint {endpoint_id!r}", "endpoint_id")
        if endpoint["type"] not in domain.endpoints.EXTERNAL_TYPES:
            return error_response(403, "forbidden", f"endpoint {endpoint_id!r} is {endpoint['type']}: its own node's "
                                                    "sender-snapshot reports it, not an external process", "endpoint_id")
        refused = _authenticate(ctx, endpoint_id, salt, body, replays, wall_clock())
        if refused is not None:
            status, code, message = refused
            if status == 401:
                ctx.auth_failures.record(client)
            headers = {"WWW-Authenticate": 'Bearer realm="sender endpoint report"'} if status == 401 else None
            return json_response({"error": {"code": code, "message": message}}, status, headers=headers)
        limiter.record(endpoint_id)
        rows = _rows_of(body)
        recorded = await ctx.store.run(lambda s: domain.snapshots.record_external(
            s, endpoint_id, rows, history_limit=ctx.config["snapshot.history_limit"]))
        return json_response({"accepted": len(recorded), "snapshots": recorded}, 202)


def _authenticate(ctx, endpoint_id: str, salt: str, body: bytes, replays: ReplayGuard, now: float):
    """None when the request carries the endpoint's token or its signature; else (status, code, message)."""
    if not salt:
        return 401, "unauthorized", f"endpoint {endpoint_id!r} has no report token: mint one with `sender endpoint token {endpoint_id}`"
    token = domain.endpoints.report_token(ctx.secret, endpoint_id, salt)
    signature = request.headers.get(SIGNATURE_HEADER)
    if signature is not None:
        stamp = request.headers.get(TIMESTAMP_HEADER) or ""
        refused = signing.check(token.encode(), stamp, body, signature, now)
        if refused is signing.Refusal.NO_TIMESTAMP:
            return 401, "unauthorized", f"{TIMESTAMP_HEADER} must be the unix time in seconds"
        if refused is signing.Refusal.BAD_SIGNATURE:
            return 401, "unauthorized", f"bad {SIGNATURE_HEADER}: expected sha256=HMAC-SHA256(token, timestamp + \".\" + body)"
        if refused is signing.Refusal.SKEWED:
            return 401, "unauthorized", (f"{TIMESTAMP_HEADER} {int(stamp)} is {now - int(stamp):+.0f} s from this server's clock "
                                         f"(at most ±{MAX_SKEW_S:g} s): sign each request when sending it")
        if not replays.first_time(f"{endpoint_id}\0{signature}", now):
            return 409, "replayed", "this signed report was already received: sign each report afresh"
        return None
    authorization = request.headers.get("Authorization") or ""
    if authorization[:len(_BEARER_PREFIX)].lower() == _BEARER_PREFIX:
        if hmac.compare_digest(authorization[len(_BEARER_PREFIX):].strip().encode(), token.encode()):
            return None
        return 401, "unauthorized", "wrong report token for this endpoint"
    return 401, "unauthorized", (f"authentication required: 'Authorization: Bearer <report token>' or "
                                 f"{TIMESTAMP_HEADER} + {SIGNATURE_HEADER}")


def _rows_of(body: bytes) -> list[dict]:
    """The report's rows: one snapshot (`schemas.ExternalSnapshot`) or `schemas.ExternalSnapshots`."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body must be a JSON object: a snapshot, or {\"snapshots\": [...]}") from None
    model = schemas.ExternalSnapshots if isinstance(doc, dict) and "snapshots" in doc else schemas.ExternalSnapshot
    try:
        report = schemas.check(model, doc)
    except schemas.Invalid as e:
        raise InvalidInput(e.message, field=e.field) from None
    return report["snapshots"] if model is schemas.ExternalSnapshots else [report]
