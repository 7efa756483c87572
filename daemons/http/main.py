"""Entry point of sender-http (`sender daemon http`): one worker, or a small supervised pool.

With `http.workers` = N > 1 this process is worker 0: it binds the listen address with
SO_REUSEPORT and starts workers 1..N-1 as child processes on the same port (the kernel spreads
connections over them), each started by `daemons.runtime.children.spawn` (its own process group,
dying with this one: PR_SET_PDEATHSIG, forked on this main thread) and restarted with backoff
if it exits. Each worker has its own spool view, caches and counters; `/metrics` adds them up.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys

import trio

from daemons.core.install import Install
from daemons.http.server import HTTPDaemon
from daemons.runtime import children, daemon
from daemons.runtime import logging as slog
from daemons.runtime.store import StoreWorker

log = slog.get("http")

WORKER_ENV = "SENDER_HTTP_WORKER"  # "<index>:<port>" for a child worker
RESTART_BACKOFF_S = (0.5, 30.0)
WORKER_STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL
GC_THRESHOLDS = (10_000, 50, 1_000_000)  # gen0 allocations, gen0 runs per gen1, gen1 runs per gen2
FULL_COLLECTION_INTERVAL_S = 120.0


async def serve(install: Install, store: StoreWorker, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    worker, port = _worker_from_env()
    http = HTTPDaemon(install, store, worker=worker, port=port)
    workers = install.config["http.workers"]
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(http.serve)
        if worker == 0:
            for index in range(1, workers):
                nursery.start_soon(_supervise_worker, install, index, addresses[0][2])
        nursery.start_soon(_collect_garbage)
        task_status.started(addresses)


async def _collect_garbage() -> None:
    """CPython's automatic full collections walk every object of every held connection: with
    10,000 blocking requests that is ~0.5 s each, several times during one release of them
    (bench/held_requests.py). So: startup objects are frozen out of the collector, the young
    generation collects less often, the automatic full collection is (nearly) off, and a full
    collection runs here on a timer instead — cycles still get freed, at a known rhythm."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    while True:
        await trio.sleep(FULL_COLLECTION_INTERVAL_S)
        gc.collect()


def _worker_from_env() -> tuple[int, int | None]:
    raw = os.environ.get(WORKER_ENV)
    if not raw:
        return 0, None
    index, port = raw.split(":")
    return int(index), int(port)


async def _supervise_worker(install: Install, index: int, port: int) -> None:
    backoff = RESTART_BACKOFF_S[0]
    # Only the first worker talks to systemd (NotifyAccess=main): the others get no notify socket.
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env[WORKER_ENV] = f"{index}:{port}"
    cmd = [sys.executable, "-m", "daemons.http.main", str(install.config.path)]
    while True:
        # On this (main) thread, so the worker's death signal holds for as long as we run.
        worker = children.spawn(cmd, env=env, death_signal=signal.SIGKILL)
        started = trio.current_time()
        try:
            code = await worker.wait()
        finally:
            await worker.stop(WORKER_STOP_GRACE_S)  # when we are stopping: cleanly, then surely
            await worker.aclose()
        slog.log(log, logging.WARNING, "http worker exited; restarting", worker=index, pid=worker.pid, code=code, backoff_s=backoff)
        await trio.sleep(backoff)
        backoff = RESTART_BACKOFF_S[0] if trio.current_time() - started > 60 else min(backoff * 2, RESTART_BACKOFF_S[1])


def main(config_path: str | None = None) -> None:
    worker, _ = _worker_from_env()
    daemon.run("http", serve, config_path, listens=worker == 0)  # the others share worker 0's port


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
