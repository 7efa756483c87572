"""What every command needs: the config path chosen by --config / SENDER_CONFIG, opened lazily."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer

from daemons.core.install import Install
from daemons.core.store import Store


@dataclass
class CLIContext:
    config_path: str | None = None
    _install: Install | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)

    def install(self) -> Install:
        if self._install is None:
            self._install = Install.load(self.config_path)
        return self._install

    def store(self) -> Store:
        if self._store is None:
            self._store = self.install().open_store()
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def get(ctx: typer.Context) -> CLIContext:
    root = ctx.find_root()
    if not isinstance(root.obj, CLIContext):
        root.obj = CLIContext()
    return root.obj


JSON_OPTION = typer.Option(False, "--json", help="Print JSON for scripts instead of tables.")
