#!/usr/bin/env python3
"""Two trees of Sender's ingest side by side: the CPU per stream of each, measured in the same
windows, and their ratio.

On a busy or noisy machine (a VM whose neighbours come and go) the same tree measured by
ingest_load.py a few minutes apart varies by 15-25 %, more than most changes it is asked to
judge. Here both trees run at once — one `sender daemon ingest` each (native backend, thumbnails
off) with N ffmpeg publishers of the 720p30 3 Mbps clip each — and each window measures both
daemons' CPU (utime + stime from /proc) over the same seconds: whatever the machine does then,
it does to both. Rounds alternate which tree starts first. The ratio B/A is the figure to read;
the absolute values are each daemon's CPU with the other beside it.

Run from the checkout:  .venv/bin/python bench/ingest_pair.py REV_A REV_B [--publishers 1] [--seconds 40] [--rounds 3]
(a REV may be WORKTREE for the checkout as it is). Needs: ffmpeg.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Publishers, SourceClip, export_revision, machine_facts, require_tools, sender_cli, wait_until  # noqa: E402
from servers import SenderIngest  # noqa: E402

WORKTREE = "WORKTREE"
ACCEPT_TIMEOUT_S = 45.0


def log(message: str) -> None:
    print(f"[ingest_pair] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(index: int, revs: list[str], sources: dict, root: Path, tools: dict, clip: Path, n: int,
              seconds: float, warmup: float) -> dict[str, float]:
    order = revs if index % 2 == 0 else revs[::-1]
    servers: dict[str, SenderIngest] = {}
    publishers: list[Publishers] = []
    try:
        for rev in order:
            server = SenderIngest(root / f"r{index}-{rev}", sender_cli(), sources[rev])
            server.setup(n)
            server._cli("config", "set", "backend.kind", "native")
            server._cli("config", "set", "thumbnails.enabled", "false")
            server.start()
            servers[rev] = server
        for rev in order:
            pubs = Publishers(tools["ffmpeg"], clip, root / f"p{index}-{rev}")
            pubs.start(servers[rev].urls())
            publishers.append(pubs)
        for rev, server in servers.items():
            wait_until(server.accepted, ACCEPT_TIMEOUT_S, f"{n} publisher(s) accepted by {rev}",
                       alive=lambda: server.problem() or next((p.problem() for p in publishers if p.problem()), None))
        time.sleep(warmup)  # the publishes steady (live, leased to the media thread)
        before = {rev: cpu_seconds(s.pid) for rev, s in servers.items()}
        started = time.monotonic()
        time.sleep(seconds)
        after = {rev: cpu_seconds(s.pid) for rev, s in servers.items()}
        elapsed = time.monotonic() - started
        return {rev: 100 * (after[rev] - before[rev]) / elapsed / n for rev in revs}
    finally:
        for pubs in publishers:
            pubs.stop()
        for server in servers.values():
            server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rev_a")
    p.add_argument("rev_b")
    p.add_argument("--publishers", type=int, default=1, help="publishers per tree (default 1)")
    p.add_argument("--seconds", type=float, default=40.0, help="measurement window per round (default 40)")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds after all are accepted (default 8)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, alternating which tree starts first (default 3)")
    args = p.parse_args(argv)
    if args.rev_a == args.rev_b:
        p.error("two different trees, please")
    tools = require_tools(nginx=False)
    clip = SourceClip().ensure(tools["ffmpeg"])
    with tempfile.TemporaryDirectory(prefix="sender-bench-pair-") as tmp:
        root = Path(tmp)
        sources, names = {}, {}
        for rev in (args.rev_a, args.rev_b):
            if rev == WORKTREE:
                sources[rev], names[rev] = None, "working tree"
            else:
                sources[rev] = root / f"src-{rev}"
                names[rev] = export_revision(rev, sources[rev])
        facts = machine_facts(tools)
        print(f"Machine: {facts['nproc']} CPUs, {facts['cpu_model']}, Linux {facts['kernel']}, "
              f"load {' '.join(facts['loadavg_at_start'])} at start; {facts['ffmpeg']}")
        print(f"A = {args.rev_a} ({names[args.rev_a]}), B = {args.rev_b} ({names[args.rev_b]}); "
              f"{args.publishers} publisher(s) each, {args.seconds:g} s windows after {args.warmup:g} s")
        results: dict[str, list[float]] = {args.rev_a: [], args.rev_b: []}
        for i in range(args.rounds):
            log(f"round {i + 1} of {args.rounds}")
            got = one_round(i, [args.rev_a, args.rev_b], sources, root, tools, clip, args.publishers, args.seconds, args.warmup)
            for rev, pct in got.items():
                results[rev].append(pct)
            a, b = got[args.rev_a], got[args.rev_b]
            print(f"round {i + 1}: A {a:.2f} %  B {b:.2f} % of a core per stream  B/A {b / a:.3f}", flush=True)
        ratios = [b / a for a, b in zip(results[args.rev_a], results[args.rev_b])]
        print(f"median: A {statistics.median(results[args.rev_a]):.2f} %  B {statistics.median(results[args.rev_b]):.2f} %  "
              f"B/A {statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
