"""Child processes that never outlive their daemon.

`die_with_parent()` is a `preexec_fn` that sets PR_SET_PDEATHSIG: the kernel signals the child
when the thread that forked it exits. That is why daemons fork on their main (trio) thread,
never in a worker thread that may exit while the child runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Callable

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    parent = os.getpid()

    def child_setup() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the daemon died before prctl took effect
            os._exit(1)

    return child_setup
