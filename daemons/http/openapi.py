"""The OpenAPI document of every HTTP route. Placeholder until built."""

from __future__ import annotations


def document() -> dict:
    return {"openapi": "3.1.0", "info": {"title": "Sender HTTP API", "version": "1"}, "paths": {}}
