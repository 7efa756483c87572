"""`sender status --watch` ends on Ctrl-C / SIGTERM however it was started.

Issue 14's intermittent `test_sender_up_demo_is_live_within_ten_seconds` ("`sender status
--watch` not exiting within 10 s of SIGINT", in a full run only): a full run started as a
background job of a non-interactive shell (`sh -c 'pytest … &'`, as CI runners and `nohup`
scripts do) starts with SIGINT ignored, every process it starts inherits that, and Python then
installs no KeyboardInterrupt handler: the dashboard ignored SIGINT and ran on. Here the
dashboard is started with SIGINT ignored, in any run.
"""

from __future__ import annotations

import signal
import subprocess

import pytest
import trio

from tests.conftest import SENDER


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_the_dashboard_ends_cleanly_on_a_signal_even_if_started_with_sigint_ignored(sender, sig):
    watch = await trio.lowlevel.open_process([str(SENDER), "status", "--watch"], env=sender.env(COLUMNS="200"),
                                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             preexec_fn=ignore_sigint)
    try:
        seen = b""
        with trio.fail_after(20):
            while seen.count(b"Endpoints") < 2:  # two frames: it is in its loop
                seen += await watch.stdout.receive_some(65536)
        assert b"daemons: none" in seen
        watch.send_signal(sig)
        with trio.fail_after(5):
            code = await watch.wait()
        err = b""
        while chunk := await watch.stderr.receive_some(65536):
            err += chunk
        assert code == 0, err
        assert b"Traceback" not in err and b"Aborted" not in err
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
        await watch.stdout.aclose()
        await watch.stderr.aclose()
