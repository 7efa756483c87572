"""`sender init` and `sender status`: laying down an install and seeing what it holds."""

from __future__ import annotations

from pathlib import Path

import typer

from daemons.core import config as config_mod
from daemons.core import domain
from daemons.core import install
from daemons.core.stats import read_fresh_stats
from sender_cli import context, render
from sender_cli.commands.daemon import STATS_NAME as UP_STATS
from sender_cli.context import JSON_OPTION


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("status")(status)


def init(
    ctx: typer.Context,
    dir: Path = typer.Option(None, "--dir", help="Put everything (config, store, spool, state) under DIR."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing install's config and secret."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a complete config with every default, create the store, spool, state and secret."""
    cli = context.get(ctx)
    target = None if dir else config_mod.resolve_path(cli.config_path)
    result = install.init(target, directory=dir, force=force)
    data = {"config": str(result.config_path), "created": [str(p) for p in result.created]}

    def human() -> None:
        render.console.print(f"Sender install ready: config {result.config_path}", markup=False)
        for p in result.created:
            render.console.print(f"  created {p}", markup=False)
        if dir:
            render.console.print(f"Use it with: export SENDER_CONFIG={result.config_path}", markup=False)

    render.emit(data, as_json, human)


def status(
    ctx: typer.Context,
    as_json: bool = JSON_OPTION,
    watch: bool = typer.Option(False, "--watch", help="A live dashboard of streams, publishers and viewers, refreshed every second (Ctrl-C ends it)."),
) -> None:
    """What this install holds: node, paths, streams, keys, endpoints, live generations."""
    cli = context.get(ctx)
    if watch:
        _watch(cli)
        return
    inst = cli.install()
    store = cli.store()
    cfg = inst.config
    streams = domain.streams.list_(store)
    active = domain.generations.list_(store, active_only=True)
    data = {
        "config": str(cfg.path),
        "node": {"id": cfg["node.id"], "name": cfg["node.name"], "public_base_url": cfg["node.public_base_url"]},
        "rtmp_listen": cfg["rtmp.listen"],
        "http_listen": cfg["http.listen"],
        "store": {"path": cfg["store.path"], "migrations": store.schema_version()},
        "spool_root": cfg["spool.root"],
        "streams": len(streams),
        "keys": len([k for k in domain.keys.list_(store) if not k["revoked_at"]]),
        "endpoints": len(domain.endpoints.list_(store)),
        "active_generations": [{"stream": g["stream"], "id": g["id"], "status": g["status"]} for g in active],
        "recordings": domain.recordings.usage(store, inst.spool_root),  # {count, bytes}: the disk they take
        "daemons": _running_daemons(inst.state_dir),
    }
    up = read_fresh_stats(inst.state_dir, UP_STATS)  # a running `sender up` supervising them
    data["sender_up"] = {"pid": up.get("pid"), "restarts": up.get("restarts", 0), "daemons": up.get("daemons", {})} if up else None

    def running(name: str, d: dict) -> str:
        restarts = f", restarted {d['restarts']}× (last: {d['last_exit']['description']} at {d['last_exit']['at']})" if d.get("restarts") else ""
        return f"{name} (pid {d['pid']}{restarts})"

    def human() -> None:
        render.fields(
            "Sender status",
            {
                "config": data["config"],
                "node": f"{cfg['node.id']} ({cfg['node.name']})",
                "public URL": cfg["node.public_base_url"],
                "RTMP": cfg["rtmp.listen"],
                "HTTP": cfg["http.listen"],
                "store": f"{cfg['store.path']} (schema {len(data['store']['migrations'])})",
                "spool": cfg["spool.root"],
                "streams": data["streams"],
                "active keys": data["keys"],
                "endpoints": data["endpoints"],
                "live now": [f"{g['stream']} ({g['status']})" for g in active] or "nothing",
                "recordings": f"{data['recordings']['count']}, {data['recordings']['bytes'] / 2**20:.1f} MiB"
                              + (f" of {cfg['recording.max_bytes'] / 2**20:.0f} MiB (recording.max_bytes)" if cfg["recording.max_bytes"] else ""),
                "daemons running": [running(name, d) for name, d in data["daemons"].items()] or "none",
                "sender up": f"pid {up['pid']}, {data['sender_up']['restarts']} restart(s)" if up else "not running",
            },
        )

    render.emit(data, as_json, human)


def _running_daemons(state_dir) -> dict[str, dict]:
    """Daemons whose stats file is fresh (each writes its own every second while it runs); under
    a running `sender up` (its own file, up.json), with their restarts and last exit."""
    supervised = (read_fresh_stats(state_dir, UP_STATS) or {}).get("daemons", {})
    out = {}
    for path in sorted((state_dir / "stats").glob("*.json")):
        if path.stem == UP_STATS:
            continue
        doc = read_fresh_stats(state_dir, path.stem)
        if doc is not None:
            out[path.stem] = {"pid": doc.get("pid"), "updated_at": doc.get("updated_at")}
            up = supervised.get("http" if path.stem == "http-0" else path.stem)  # http-0 is sender-http's first worker
            if up:
                out[path.stem] |= {"restarts": up.get("restarts", 0), "last_exit": up.get("last_exit")}
    return out


def _dashboard(cli):
    """One frame of `sender status --watch`: every stream with its generation, publisher and viewers;
    every endpoint with its health."""
    from rich.console import Group
    from rich.table import Table

    from daemons.core.stats import viewers_per_stream

    inst = cli.install()
    store = cli.store()
    ingest = read_fresh_stats(inst.state_dir, "ingest") or {}
    publishers = {p["stream_id"]: p for p in ingest.get("publishers", [])}
    renditions = []
    for path in sorted((inst.state_dir / "stats").glob("http-*.json")):
        renditions += (read_fresh_stats(inst.state_dir, path.stem) or {}).get("viewers", [])
    viewers = viewers_per_stream(renditions)
    active = {g["stream_id"]: g for g in domain.generations.list_(store, active_only=True)}
    t = Table(title=f"Sender — {inst.config['node.name']} — daemons: {', '.join(_running_daemons(inst.state_dir)) or 'none'}")
    for column in ("stream", "visibility", "generation", "publisher", "bitrate", "resolution", "keyframes", "viewers"):
        t.add_column(column)
    for s in domain.streams.list_(store):
        g, p = active.get(s["id"]), publishers.get(s["id"])
        t.add_row(
            s["slug"], s["visibility"],
            "idle" if not g else f"{g['status']}{' (reconnecting)' if g['publisher_left_at'] else ''} {g['id']}",
            p["remote"] if p else "-",
            f"{(p.get('bitrate_bps') or 0) / 1e6:.2f} Mb/s" if p else "-",
            f"{p['width']}x{p['height']}@{p.get('frame_rate') or '?'}" if p and p.get("width") else "-",
            f"every {p['keyframe_interval_s']:.1f} s" if p and p.get("keyframe_interval_s") else "-",
            str(viewers.get(s["id"], 0)),
        )
    return Group(t, _endpoint_table(inst, store))


def _endpoint_table(inst, store):
    """Endpoint health: each endpoint's latest own snapshot, and what this node's edges follow."""
    from rich.table import Table

    latest = {r["endpoint_id"]: r for r in domain.snapshots.list_(store) if r["generation_id"] == ""}
    following: dict[str, set[str]] = {}
    for g in (read_fresh_stats(inst.state_dir, "edge-fill") or {}).get("generations", []):
        if g.get("source"):
            following.setdefault(inst.config["node.id"], set()).add(g["source"])
    t = Table(title="Endpoints")
    for column in ("endpoint", "type", "status", "viewers", "egress", "segment lag", "playlist age", "follows"):
        t.add_column(column)
    for e in domain.endpoints.list_(store):
        r = latest.get(e["id"])
        t.add_row(
            e["id"], e["type"], r["status"] if r else "no snapshot",
            str(r["viewers"]) if r else "-",
            f"{r['egress_bps'] / 1e6:.2f} Mb/s" if r else "-",
            "-" if not r or r["segment_lag"] is None else str(r["segment_lag"]),
            "-" if not r or r["playlist_age_s"] is None else f"{r['playlist_age_s']:.1f} s",
            ", ".join(sorted(following.get(e["id"], ()))) or ", ".join(e["sources"]) or "-",
        )
    return t


def _watch(cli) -> None:
    import signal
    import time

    from rich.live import Live

    # Ctrl-C (and SIGTERM) end it even when SIGINT was ignored at our start: a background job of
    # a non-interactive shell (a CI runner, `sh -c '… &'`) inherits SIG_IGN, and Python then
    # installs no KeyboardInterrupt handler, so the dashboard would run on after SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if not render.console.is_terminal:  # piped or logged: one frame per second, appended
            while True:
                render.console.print(_dashboard(cli))
                render.console.file.flush()
                time.sleep(1)
        with Live(_dashboard(cli), console=render.console, refresh_per_second=2) as live:
            while True:
                time.sleep(1)
                live.update(_dashboard(cli))
    except KeyboardInterrupt:
        pass
