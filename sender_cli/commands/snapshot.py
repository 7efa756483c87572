"""`sender snapshot list` and `sender snapshot history`: what endpoints last reported, and lately."""

from __future__ import annotations

import typer

from daemons.core import domain
from sender_cli import context, render
from sender_cli.commands.completion import endpoint_ids
from sender_cli.context import JSON_OPTION

app = typer.Typer(help="Endpoint snapshots: what each endpoint last reported.", no_args_is_help=True)

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """One character per value, scaled to the largest (all zero: the lowest bar)."""
    top = max(values, default=0)
    if top <= 0:
        return BARS[0] * len(values)
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))] for v in values)


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


@app.command("history")
def history(
    ctx: typer.Context,
    endpoint: str = typer.Argument(..., help="Endpoint id.", autocompletion=endpoint_ids),
    limit: int = typer.Option(60, "--limit", min=1, max=100_000, help="Most recent snapshots of the endpoint itself."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The endpoint's recent snapshots (its own rows, oldest first), with sparklines of viewers and bitrate."""
    store = context.get(ctx).store()
    domain.endpoints.get(store, endpoint)
    rows = [r for r in domain.snapshots.history(store, endpoint, limit=limit * 50) if r["generation_id"] == ""][:limit][::-1]

    def human() -> None:
        if not rows:
            render.console.print(f"no snapshots of {endpoint} yet", markup=False)
            return
        render.console.print(f"{endpoint}: {len(rows)} snapshots, {rows[0]['observed_at']} → {rows[-1]['observed_at']}", markup=False)
        for label, key in (("viewers", "viewers"), ("in bps", "ingress_bps"), ("out bps", "egress_bps")):
            values = [r[key] for r in rows]
            render.console.print(f"  {label:<8} {sparkline(values)}  now {values[-1]}, max {max(values)}", markup=False)
        render.console.print(f"  status   {rows[-1]['status']} ({', '.join(sorted({r['status'] for r in rows}))} seen)", markup=False)

    render.emit(rows, as_json, human)
