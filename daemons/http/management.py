"""The management API (JSON-RPC 2.0 style) that Legion calls. Placeholder until built."""

from __future__ import annotations


async def handle(ctx, body: bytes, authorization: str | None) -> tuple[int, dict]:
    return 501, {"jsonrpc": "2.0", "id": None, "error": {"code": -32601, "message": "not built yet"}}
