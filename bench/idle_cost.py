#!/usr/bin/env python3
"""What an idle `sender daemon ingest` costs: CPU per thread over a window, no publisher.

A daemon pays for its loops whether or not anyone publishes (the control loop's look at the
store, the stats file, the media thread's clock), and with one publisher that fixed cost is
part of the "CPU per stream" ingest_load.py reports. Here: a fresh `sender init --dir` install
with one stream, the daemon started, `--settle` seconds, then its threads' utime + stime from
/proc over `--seconds`. With `--sender-rev REV` (repeatable) each tree is measured in turn, and
the rounds alternate between them.

Run from the checkout:  .venv/bin/python bench/idle_cost.py [--seconds 60] [--sender-rev REV ...] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import export_revision, sender_cli  # noqa: E402
from servers import SenderIngest  # noqa: E402


def threads(pid: int) -> dict[str, tuple[str, float]]:
    """Thread id → (name, CPU seconds)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def measure(root: Path, source: Path | None, settle: float, seconds: float) -> tuple[float, list[tuple[str, float]]]:
    server = SenderIngest(root, sender_cli(), source)
    server.setup(1)
    server._cli("config", "set", "thumbnails.enabled", "false")
    server.start()
    try:
        time.sleep(settle)  # past the start-up work: what is measured is the steady idle
        before, started = threads(server.pid), time.monotonic()
        time.sleep(seconds)
        after, elapsed = threads(server.pid), time.monotonic() - started
    finally:
        server.stop()
    per_thread = [(name, 100 * (cpu - before.get(tid, (name, 0.0))[1]) / elapsed) for tid, (name, cpu) in sorted(after.items())]
    return sum(pct for _, pct in per_thread), per_thread


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="measurement window (default 60)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds after the daemon listens (default 5)")
    p.add_argument("--sender-rev", action="append", metavar="REV", help="measure this commit (repeatable); default: the working tree")
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sender-bench-idle-") as tmp:
        root = Path(tmp)
        trees: list[tuple[str, Path | None]] = [("working tree", None)]
        if args.sender_rev:
            trees = [(f"{rev} ({export_revision(rev, root / f'src-{i}')})", root / f"src-{i}") for i, rev in enumerate(args.sender_rev)]
        print(f"Machine: {os.cpu_count()} CPUs, load {' '.join(Path('/proc/loadavg').read_text().split()[:3])} at start; "
              f"{args.seconds:g} s windows, {args.settle:g} s after start")
        for r in range(args.rounds):
            for i, (name, source) in enumerate(trees):
                total, per_thread = measure(root / f"r{r}-{i}", source, args.settle, args.seconds)
                detail = ", ".join(f"{n} {pct:.2f}" for n, pct in per_thread)
                print(f"{name}: idle sender-ingest {total:.2f} % of a core ({detail})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
