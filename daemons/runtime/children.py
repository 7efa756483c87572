"""Child processes that never outlive their daemon.

Every process a daemon starts (ffmpeg, the extra HTTP workers, the daemons under `sender up`,
the demo publisher, and whatever comes next) is started by `spawn()`, which returns a `Child`:

* **Death signal.** The child sets PR_SET_PDEATHSIG before it execs: the kernel signals it when
  the *thread* that forked it exits, not when the process does. So `spawn()` forks on the
  calling thread and insists on the main thread (a daemon's trio thread, which lives as long as
  the daemon). `trio.lowlevel.open_process` forks in one of trio's cached worker threads; that
  thread exits after 10 s idle, and the kernel then kills the child while its parent lives.
* **Own process group** (the default): a Ctrl-C in a terminal reaches the daemon only, which
  stops its children in order; signals go to the child's whole group.
* **Waiting** through a pidfd: it becomes readable when the child exits; no polling, no SIGCHLD.

The fork blocks the trio loop for the few milliseconds it takes; children start rarely.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
from typing import Callable, Sequence

import trio

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn`: the child gets `sig` when the forking thread exits (see the docstring)."""
    parent = os.getpid()

    def child_setup() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the daemon died before prctl took effect
            os._exit(1)

    return child_setup


def clear_death_signal() -> None:
    """For a child that is stopping anyway: no more death signals. The kernel sends one again at
    each reparenting (each exiting thread of a dying multi-threaded parent), and one arriving
    after Python's exit restored SIG_DFL would end the process with a signal instead of 0."""
    _libc.prctl(PR_SET_PDEATHSIG, 0)


class Child:
    """A started child process: wait for it, signal it (and its group), stop it, close it."""

    def __init__(self, popen: subprocess.Popen, own_group: bool, stdin: trio.lowlevel.FdStream | None,
                 stdout: trio.lowlevel.FdStream | None, stderr: trio.lowlevel.FdStream | None):
        self.popen = popen
        self.own_group = own_group
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._pidfd = os.pidfd_open(popen.pid)
        self._wait_lock = trio.Lock()  # one task on the pidfd at a time; the others queue here

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} returncode={self.returncode}>"

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """None while running; the exit status, or -N when killed by signal N."""
        return self.popen.returncode

    async def wait(self) -> int:
        async with self._wait_lock:
            if self.popen.returncode is None:
                await trio.lowlevel.wait_readable(self._pidfd)
                self.popen.wait()  # exited: reaping does not block
        return self.popen.returncode

    def send_signal(self, sig: int) -> None:
        """To the child's process group when it has its own, else to the child. A child already
        reaped is not signalled (its pid may belong to someone else by now)."""
        if self.popen.returncode is not None:
            return
        try:
            if self.own_group:
                os.killpg(self.popen.pid, sig)
            else:
                signal.pidfd_send_signal(self._pidfd, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def stop(self, grace_s: float, sig: int = signal.SIGTERM) -> int:
        """`sig`, up to `grace_s` seconds to exit, then SIGKILL. Runs to the end even when the
        caller is being cancelled (stopping children is what cancellation does)."""
        with trio.CancelScope(shield=True):
            if self.popen.returncode is None:
                self.send_signal(sig)
                with trio.move_on_after(grace_s):
                    await self.wait()
                if self.popen.returncode is None:
                    self.kill()
            return await self.wait()

    async def aclose(self) -> None:
        """Kill the child if it still runs, reap it, close our ends of its pipes and the pidfd."""
        with trio.CancelScope(shield=True):
            for stream in (self.stdin, self.stdout, self.stderr):
                if stream is not None:
                    await trio.aclose_forcefully(stream)
            if self.popen.returncode is None:
                self.kill()
            await self.wait()
            if self._pidfd >= 0:
                os.close(self._pidfd)
                self._pidfd = -1


def spawn(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    stdin: int | None = DEVNULL,
    stdout: int | None = None,
    stderr: int | None = None,
    pass_fds: Sequence[int] = (),
    own_group: bool = True,
    death_signal: int = signal.SIGKILL,
) -> Child:
    """Start `argv` from the main thread; see the module docstring.

    stdin/stdout/stderr: None inherits ours, DEVNULL, PIPE (the parent's end becomes a trio
    stream on the Child), or a file descriptor (the caller closes its own copy).
    `death_signal` is what the child gets if this process dies without stopping it."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("children.spawn() must run on the main thread: the child's death signal "
                           "fires when the forking thread exits")
    ours: list[int] = []  # parent ends of pipes, ours to keep
    theirs: list[int] = []  # child ends, closed here once the child has them

    def pipe_end(spec: int | None, parent_reads: bool) -> int | None:
        if spec != PIPE:
            return spec
        r, w = os.pipe()
        ours.append(r if parent_reads else w)
        theirs.append(w if parent_reads else r)
        return theirs[-1]

    try:
        child_in, child_out, child_err = pipe_end(stdin, False), pipe_end(stdout, True), pipe_end(stderr, True)
        popen = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdin=child_in, stdout=child_out, stderr=child_err,
            pass_fds=tuple(pass_fds), close_fds=True, start_new_session=own_group,
            preexec_fn=die_with_parent(death_signal),
        )
    except BaseException:
        for fd in (*ours, *theirs):
            os.close(fd)
        raise
    for fd in theirs:
        os.close(fd)
    streams = iter(trio.lowlevel.FdStream(fd) for fd in ours)
    return Child(
        popen,
        own_group,
        stdin=next(streams) if stdin == PIPE else None,
        stdout=next(streams) if stdout == PIPE else None,
        stderr=next(streams) if stderr == PIPE else None,
    )
