"""The JSON answers of sender-http's Quart routes: `{"error": {"code", "message"[, "field"]}}` with
the matching status, and `Cache-Control: no-store` unless a route says otherwise."""

from __future__ import annotations

import json

from quart import Response

NO_STORE = {"Cache-Control": "no-store"}


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json",
                    headers={**NO_STORE, **(headers or {})})


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return json_response({"error": error}, status)
