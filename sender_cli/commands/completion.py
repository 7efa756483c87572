"""Shell completion of names from the store (slugs, endpoint ids); silent when there is no install."""

from __future__ import annotations

import os

from daemons.core import config as config_mod
from daemons.core import domain
from daemons.core.install import Install


def _store():
    try:
        return Install.load(os.environ.get(config_mod.CONFIG_ENV)).open_store(migrate=False)
    except Exception:  # completion must never print an error into the shell
        return None


def stream_slugs(incomplete: str) -> list[str]:
    store = _store()
    if store is None:
        return []
    with store:
        return domain.streams.slugs_starting(store, incomplete)


def endpoint_ids(incomplete: str) -> list[str]:
    store = _store()
    if store is None:
        return []
    with store:
        return domain.endpoints.ids_starting(store, incomplete)
