"""Running one daemon: logging, the store worker, signals, systemd notify, clean shutdown.

`run(name, serve, config_path)` is what `sender daemon NAME` calls. `serve(install, store,
task_status)` is the daemon's own entry; it calls `task_status.started()` once listening, which
is when systemd hears READY=1. SIGTERM or SIGINT cancels it; the daemon's cancellation handlers
disconnect clients and close files.
"""

from __future__ import annotations

import errno
import logging
import signal
from typing import Awaitable, Callable

import trio

from daemons.core.install import Install
from daemons.runtime import checks, children
from daemons.runtime import logging as slog
from daemons.runtime import systemd
from daemons.runtime.store import StoreWorker

Serve = Callable[..., Awaitable[None]]


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def _run(name: str, serve: Serve, install: Install) -> None:
    log = slog.get(name)
    # Outside the receiver below a stop signal is only noted. One just before it opens still
    # stops the daemon; repeats that trio re-delivers as it closes can no longer end the process
    # halfway through its clean stop (a parent's death signal comes again each time one of its
    # threads exits: several SIGTERMs when `sender up` is killed).
    noted: list[int] = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda signum, frame: noted.append(signum))
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        store = StoreWorker(await trio.to_thread.run_sync(install.open_store))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_on_signal, log, signals, noted, nursery.cancel_scope)
                await nursery.start(serve, install, store)
                systemd.notify("READY=1\nSTATUS=running")
                nursery.start_soon(systemd.watchdog_loop)
        finally:
            with trio.CancelScope(shield=True):
                await store.aclose()
    slog.log(log, logging.INFO, "stopped")


async def _stop_on_signal(log, signals, noted: list[int], scope: trio.CancelScope) -> None:
    signum = noted[0] if noted else await signals.__anext__()
    children.clear_death_signal()  # stopping anyway: no more of them (if that one was one)
    slog.log(log, logging.INFO, "stopping", signal=signal.Signals(signum).name)
    systemd.notify("STOPPING=1")
    scope.cancel()


def run(name: str, serve: Serve, config_path: str | None, *, listens: bool = True) -> None:
    """`listens=False` for a process that shares an already bound socket (an extra HTTP worker)."""
    install = Install.load(config_path)
    slog.setup(install.config["log.level"])
    # The same checks as `sender doctor`, fatal ones only; a taken port is refused here, before
    # the daemon touches anything (the spool, the store's generations).
    failed = checks.startup(name, install, listens=listens)
    if failed:
        _refuse(name, "; ".join(c.line() for c in failed))
    try:
        trio.run(_run, name, serve, install)
    except BaseException as e:
        in_use = _address_in_use(e)
        if in_use is None:
            raise
        # Taken between the check and the bind: still one line, not a traceback.
        _refuse(name, "; ".join(c.line() for c in checks.check_listen_free(name, install.config)) or str(in_use))


def _refuse(name: str, why: str) -> None:
    slog.log(slog.get(name), logging.CRITICAL, "refusing to start: " + why)
    raise SystemExit(1)


def _address_in_use(e: BaseException) -> OSError | None:
    """The EADDRINUSE error inside `e` (trio wraps it in exception groups), if that is all it is."""
    if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
        return e
    if isinstance(e, BaseExceptionGroup):
        found = [_address_in_use(sub) for sub in e.exceptions]
        if found and all(found):
            return found[0]
    return None
