"""`sender endpoint …`: media endpoints and their source links (the distribution graph)."""

from __future__ import annotations

import typer

from daemons.core import domain
from daemons.core.errors import InvalidInput
from sender_cli import context, render
from sender_cli.commands.completion import endpoint_ids
from sender_cli.context import JSON_OPTION

app = typer.Typer(help="Media endpoints: origins and edges, and which sources each fills from.", no_args_is_help=True)

ID_ARG = typer.Argument(..., help="Endpoint id.", autocompletion=endpoint_ids)
COLUMNS = ("id", "name", "type", "node_id", "public_base_url", "enabled", "sources", "health_thresholds", "updated_at")


def _thresholds(pairs: list[str]) -> dict:
    out: dict = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep:
            raise InvalidInput(f"threshold {p!r} must look like KEY=VALUE, e.g. max_playlist_age_s=6")
        try:
            out[k.strip()] = int(v) if v.strip().lstrip("-").isdigit() else float(v)
        except ValueError:
            raise InvalidInput(f"threshold {k.strip()!r}: {v!r} is not a number") from None
    return out


@app.command("upsert")
def upsert(
    ctx: typer.Context,
    endpoint_id: str = ID_ARG,
    type: str = typer.Option(None, "--type", help="tribes_origin | tribes_edge | external_origin | external_edge (needed when new)."),
    name: str = typer.Option(None, "--name"),
    node: str = typer.Option(None, "--node", help="Node id that runs this endpoint (its node.id)."),
    url: str = typer.Option(None, "--url", help="Public base URL, e.g. https://edge1.example.com."),
    enabled: bool = typer.Option(None, "--enabled/--disabled"),
    source: list[str] = typer.Option(None, "--source", help="Source endpoint, in order of preference (repeat). Replaces the list."),
    threshold: list[str] = typer.Option(None, "--threshold", help="Health threshold KEY=VALUE (repeat), e.g. max_playlist_age_s=6."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create or change an endpoint. The same command twice leaves the same state."""
    row = domain.endpoints.upsert(
        context.get(ctx).store(), endpoint_id, type=type, name=name, node_id=node, public_base_url=url,
        enabled=enabled, health_thresholds=_thresholds(threshold) if threshold else None, sources=source or None,
    )
    render.emit(row, as_json, lambda: render.fields(f"Endpoint {row['id']}", row, COLUMNS))


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """All endpoints with their sources."""
    rows = domain.endpoints.list_(context.get(ctx).store())
    render.emit(rows, as_json, lambda: render.table(
        "Media endpoints", ("id", "type", "node", "URL", "enabled", "sources"),
        ((r["id"], r["type"], r["node_id"], r["public_base_url"], r["enabled"], r["sources"]) for r in rows)))


@app.command("show")
def show(ctx: typer.Context, endpoint_id: str = ID_ARG, as_json: bool = JSON_OPTION) -> None:
    """One endpoint and its latest snapshots."""
    store = context.get(ctx).store()
    row = domain.endpoints.get(store, endpoint_id)
    row["snapshots"] = domain.snapshots.list_(store, endpoint_id)

    def human() -> None:
        render.fields(f"Endpoint {row['id']}", row, COLUMNS)
        if row["snapshots"]:
            render.table("Latest snapshots", ("generation", "status", "viewers", "observed"),
                         ((s["generation_id"] or "-", s["status"], s["viewers"], s["observed_at"]) for s in row["snapshots"]))

    render.emit(row, as_json, human)


@app.command("link")
def link(
    ctx: typer.Context,
    endpoint_id: str = ID_ARG,
    sources: list[str] = typer.Argument(None, help="Source endpoint ids in order of preference; none clears the list.", autocompletion=endpoint_ids),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set the endpoint's ordered sources. A link that would make a cycle is refused."""
    row = domain.endpoints.link(context.get(ctx).store(), endpoint_id, sources or [])
    render.emit(row, as_json, lambda: render.console.print(f"{row['id']} ← {', '.join(row['sources']) or 'no sources'}", markup=False))


@app.command("token")
def token(ctx: typer.Context, endpoint_id: str = ID_ARG, as_json: bool = JSON_OPTION) -> None:
    """Mint the report token of an external endpoint (its previous token stops working).

    Its own process reports with it to POST /api/endpoints/ENDPOINT/snapshots, as
    'Authorization: Bearer TOKEN' or by signing each body (X-Sender-Signature). Shown once:
    the store keeps only a salt."""
    c = context.get(ctx)
    value = domain.endpoints.mint_report_token(c.store(), c.install().secret(), endpoint_id)
    doc = {"endpoint_id": endpoint_id, "token": value, "report_url": f"/api/endpoints/{endpoint_id}/snapshots"}
    render.emit(doc, as_json, lambda: render.console.print(value, markup=False, soft_wrap=True))


@app.command("delete")
def delete(ctx: typer.Context, endpoint_id: str = ID_ARG, as_json: bool = JSON_OPTION) -> None:
    """Soft-delete an endpoint (refused while another endpoint uses it as a source)."""
    row = domain.endpoints.delete(context.get(ctx).store(), endpoint_id)
    render.emit(row, as_json, lambda: render.console.print(f"Endpoint {row['id']} deleted.", markup=False))
