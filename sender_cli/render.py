"""Output for the `sender` CLI: rich tables for people, `--json` for scripts, one-line errors."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Iterable

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def error(message: str) -> None:
    """One line on stderr, no markup interpretation of user-supplied text."""
    err_console.print(f"error: {message}", markup=False)


def table(title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")  # ids and prefixes must stay whole, to be copied
    for r in rows:
        t.add_row(*[_cell(v) for v in r])
    console.print(t)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v) or "-"
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items()) or "-"
    return str(v)


def fields(title: str, data: dict, keys: Iterable[str] | None = None) -> None:
    """A two-column key/value table for one thing."""
    table(title, ("field", "value"), ((k, data.get(k)) for k in (keys or data.keys())))


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        print_json(data)
    else:
        human()
