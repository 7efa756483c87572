"""`sender config show|get|set|path|validate`: the TOML config by dotted keys."""

from __future__ import annotations

import typer

from daemons.core import config as config_mod
from sender_cli import context, render
from sender_cli.context import JSON_OPTION

app = typer.Typer(help="Read and change the TOML config (dotted keys, e.g. rtmp.listen).", no_args_is_help=True)


def _complete_key(incomplete: str) -> list[str]:
    return [k for k in config_mod.SCHEMA if k.startswith(incomplete)]


KEY_ARG = typer.Argument(..., help="Dotted key, e.g. rtmp.listen.", autocompletion=_complete_key)


@app.command("path")
def path(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Print which config file is used (--config, $SENDER_CONFIG or the default)."""
    p = str(config_mod.resolve_path(context.get(ctx).config_path))
    render.emit({"path": p}, as_json, lambda: typer.echo(p))


@app.command("show")
def show(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Every key with its value."""
    cfg = context.get(ctx).install().config

    def human() -> None:
        render.table(str(cfg.path), ("key", "value", "set in file"), ((k, v, k in cfg.explicit) for k, v in cfg.values.items()))

    render.emit(cfg.nested(), as_json, human)


@app.command("get")
def get(ctx: typer.Context, key: str = KEY_ARG, as_json: bool = JSON_OPTION) -> None:
    """One key's value."""
    cfg = context.get(ctx).install().config
    config_mod.require_key(key)
    value = cfg[key]
    if as_json or isinstance(value, (list, dict)):
        render.print_json(value)
    else:
        typer.echo(str(value).lower() if isinstance(value, bool) else str(value))


@app.command("set")
def set_(
    ctx: typer.Context,
    key: str = KEY_ARG,
    value: str = typer.Argument(..., help="New value, typed by the schema."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Change one key; the value is checked against the schema before the file is rewritten."""
    cfg = context.get(ctx).install().config
    new = cfg.with_value(key, config_mod.parse_value(key, value))
    config_mod.write(new, cfg.path)
    render.emit({"key": key, "value": new[key], "config": str(cfg.path)}, as_json,
                lambda: render.console.print(f"{key} = {new[key]!r}", markup=False, soft_wrap=True))


@app.command("validate")
def validate(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Check the file against the schema (exit 1 and the first problem if it is invalid)."""
    cfg = context.get(ctx).install().config
    render.emit({"config": str(cfg.path), "valid": True}, as_json,
                lambda: render.console.print(f"{cfg.path}: valid", markup=False, soft_wrap=True))
