"""`sender snapshot list`: the latest endpoint snapshots."""

from __future__ import annotations

import typer

from daemons.core import domain
from sender_cli import context, render
from sender_cli.commands.completion import endpoint_ids
from sender_cli.context import JSON_OPTION

app = typer.Typer(help="Endpoint snapshots: what each endpoint last reported.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    endpoint: str = typer.Option(None, "--endpoint", help="Only this endpoint.", autocompletion=endpoint_ids),
    as_json: bool = JSON_OPTION,
) -> None:
    """Latest snapshot per endpoint and generation."""
    store = context.get(ctx).store()
    if endpoint is not None:
        domain.endpoints.get(store, endpoint)
    rows = domain.snapshots.list_(store, endpoint)
    render.emit(rows, as_json, lambda: render.table(
        "Endpoint snapshots", ("endpoint", "generation", "status", "viewers", "in bps", "out bps", "playlist age", "lag", "observed", "by"),
        ((r["endpoint_id"], r["generation_id"] or "-", r["status"], r["viewers"], r["ingress_bps"], r["egress_bps"],
          r["playlist_age_s"], r["segment_lag"], r["observed_at"], r["reporter"]) for r in rows)))
