"""`sender token …`: management API tokens (what the control plane sends as `Authorization: Bearer`).

A token is printed once, when created; the config keeps only its verifier
(`management.token_verifiers`), which the HTTP daemon re-reads when the file changes.
"""

from __future__ import annotations

import typer

from daemons.core import config as config_mod
from daemons.core.domain import mgmt_tokens
from sender_cli import context, render
from sender_cli.context import JSON_OPTION

app = typer.Typer(help="Management API tokens (for the control plane).", no_args_is_help=True)

KEY = "management.token_verifiers"


def _when(created_at: int | None) -> str | None:
    if created_at is None:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(created_at, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@app.command("create")
def create(
    ctx: typer.Context,
    label: str = typer.Option("", "--label", help="A note to tell tokens apart (e.g. 'legion prod')."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a token. It is printed now and never again; the config keeps only its verifier."""
    install = context.get(ctx).install()
    cfg = install.config
    token, entry, info = mgmt_tokens.create(install.secret(), label=label)
    config_mod.write(cfg.with_value(KEY, [*cfg[KEY], entry]), cfg.path)
    data = {"token": token, "prefix": info.prefix, "label": info.label, "created_at": _when(info.created_at),
            "config": str(cfg.path)}

    def human() -> None:
        render.console.print("Management API token (shown once, store it now):", markup=False)
        render.console.print(f"  {token}", markup=False, style="bold")
        render.console.print(f"Send it as 'Authorization: Bearer <token>' to {cfg['node.public_base_url']}/api/admin/management.",
                             markup=False)
        render.console.print(f"Revoke it with `sender token revoke {info.prefix}`.", markup=False)

    render.emit(data, as_json, human)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Tokens by prefix and label (never the tokens)."""
    rows = [{**r, "created_at": _when(r["created_at"])} for r in mgmt_tokens.list_(context.get(ctx).install().config[KEY])]
    render.emit(rows, as_json, lambda: render.table(
        "Management tokens", ("prefix", "label", "created"), ((r["prefix"], r["label"], r["created_at"]) for r in rows)))


@app.command("revoke")
def revoke(ctx: typer.Context, prefix: str = typer.Argument(..., help="The token's prefix (mt…)."),
           as_json: bool = JSON_OPTION) -> None:
    """Revoke a token: the HTTP daemon refuses it from its next request on."""
    cfg = context.get(ctx).install().config
    kept, gone = mgmt_tokens.revoke(cfg[KEY], prefix)
    config_mod.write(cfg.with_value(KEY, kept), cfg.path)
    data = {"revoked": gone.prefix, "label": gone.label}
    render.emit(data, as_json, lambda: render.console.print(f"Management token {gone.prefix} revoked.", markup=False))
