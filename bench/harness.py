"""What every benchmark here shares: tool checks, free ports, machine facts, the source clip,
ffmpeg publishers, CPU/RSS accounting of a process tree from /proc, a frozen copy of the working
tree, inotify (for first-seen times of files) and percentiles.

No Sender imports: a benchmark drives Sender the way an admin does (the `sender` CLI and its
daemons as separate processes), so the same harness measures Sender and its peers alike.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

APT_HINT = "apt-get install nginx libnginx-mod-rtmp ffmpeg"
NGINX_RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


class SetupError(Exception):
    """The benchmark cannot run or its setup failed; the message says what to do."""


# --- tools -----------------------------------------------------------------------------------


def require_tools(*, nginx: bool) -> dict[str, str]:
    """Paths of ffmpeg/ffprobe (and nginx + the RTMP module); SetupError naming what is missing."""
    tools = {name: shutil.which(name) for name in ("ffmpeg", "ffprobe")}
    if nginx:
        tools["nginx"] = shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
        )
    missing = [name for name, path in tools.items() if path is None]
    if nginx and not NGINX_RTMP_MODULE.exists():
        missing.append(f"libnginx-mod-rtmp ({NGINX_RTMP_MODULE})")
    if missing:
        raise SetupError(f"missing: {', '.join(missing)}; install them with: {APT_HINT}")
    return tools  # type: ignore[return-value]


def sender_cli() -> Path:
    """The `sender` console script of the checkout's venv (or of the running interpreter)."""
    for candidate in (Path(sys.executable).parent / "sender", REPO / ".venv" / "bin" / "sender"):
        if candidate.exists() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("sender")
    if found:
        return Path(found)
    raise SetupError("the `sender` command is not installed: run `bash .ci/bootstrap` in the checkout (it creates .venv)")


def export_revision(rev: str, dest: Path) -> str:
    """`git archive REV` of the checkout into `dest`; returns the commit's short hash.

    Run the `sender` script with PYTHONPATH=dest (and a cwd outside the checkout) to measure that
    commit instead of the working tree: the venv's editable install comes after PYTHONPATH.
    """
    commit = run_checked(["git", "-C", str(REPO), "rev-parse", "--verify", "--short", f"{rev}^{{commit}}"],
                         f"resolving git revision {rev!r}").stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", "-C", str(REPO), "archive", "--format=tar", commit], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True, text=True)
    archive.stdout.close()
    if archive.wait() != 0 or untar.returncode != 0:
        raise SetupError(f"cannot export revision {rev} ({commit}) into {dest}: {untar.stderr.strip()}")
    return commit


def snapshot_worktree(dest: Path) -> str:
    """Copy the checkout's working tree as it is now (tracked and untracked, not ignored files) into `dest`.

    Like `export_revision`, but of uncommitted work: run the `sender` script with PYTHONPATH=dest so
    that someone editing the checkout while a benchmark runs does not change the code under test
    halfway. Returns a description: the HEAD commit, and which files differ from it.
    """
    listed = run_checked(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         "listing the working tree").stdout
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():  # a tracked file deleted in the working tree is simply absent
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    head = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "unknown"
    changed = run_checked(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=all"],
                          "git status").stdout.splitlines()
    changed = [line[3:] for line in changed if line.strip()]
    if not changed:
        return head
    digest = hashlib.sha256()
    for rel in sorted(changed):
        f = dest / rel
        digest.update(rel.encode() + b"\0" + (f.read_bytes() if f.is_file() else b"(deleted)"))
    return f"{head} + uncommitted changes to {', '.join(sorted(changed))} (sha256 {digest.hexdigest()[:10]})"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], object], timeout_s: float, what: str, *, interval_s: float = 0.1,
               alive: Callable[[], str | None] | None = None) -> object:
    """Poll `condition` until it returns something truthy; SetupError after `timeout_s`.

    `alive` returns None while the things waited on still run, or why they do not (ends the wait early).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and (problem := alive()):
            raise SetupError(f"{what}: {problem}")
        if time.monotonic() > deadline:
            raise SetupError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def run_checked(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SetupError(f"{what} failed (exit {proc.returncode}): {' | '.join(detail)}")
    return proc


def stop_process(proc: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
    """Signal one process we started and wait; SIGKILL after `timeout_s`. Returns its exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass
    return proc.returncode


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


# --- machine facts ---------------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (proc.stdout or proc.stderr).strip()
    return out.splitlines()[0] if out else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def script_python(script: Path) -> str:
    """The Python version a console script runs under (from its shebang)."""
    try:
        shebang = script.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        shebang = ""
    interpreter = shebang[2:].strip().split()[0] if shebang.startswith("#!") else sys.executable
    return _first_line([interpreter, "-c", "import sys, platform; print(platform.python_implementation(), sys.version.split()[0])"]) or "unknown"


def dpkg_version(package: str) -> str | None:
    return _first_line(["dpkg-query", "-W", "-f", "${Version}", package])


def git_revision() -> str:
    rev = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return f"{rev}{' + uncommitted changes' if dirty else ''}"


def machine_facts(tools: dict[str, str]) -> dict:
    facts = {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "sender_revision": git_revision(),
        "sender_python": script_python(sender_cli()),
        "ffmpeg": " ".join((_first_line([tools["ffmpeg"], "-hide_banner", "-version"]) or "ffmpeg ?").split()[:3]),
    }
    if "nginx" in tools:
        facts["nginx"] = _first_line([tools["nginx"], "-v"])
        facts["libnginx-mod-rtmp"] = dpkg_version("libnginx-mod-rtmp")
    return facts


# --- the source clip -------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceClip:
    """A pre-encoded FLV that publishers loop with `-c copy`, so publishing costs almost nothing."""

    width: int = 1280
    height: int = 720
    fps: int = 30
    video_bitrate: str = "3M"
    audio_bitrate: str = "128k"
    gop: int = 60  # 2 s at 30 fps
    seconds: int = 20

    def encode_args(self) -> list[str]:
        return [
            "-f", "lavfi", "-i", f"testsrc2=size={self.width}x{self.height}:rate={self.fps}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", str(self.seconds), "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-b:v", self.video_bitrate, "-maxrate", self.video_bitrate, "-bufsize", self.video_bitrate,
            "-g", str(self.gop), "-keyint_min", str(self.gop), "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", self.audio_bitrate, "-ar", "48000", "-ac", "2",
            "-f", "flv",
        ]

    def path(self) -> Path:
        digest = hashlib.sha256(" ".join(self.encode_args()).encode()).hexdigest()[:10]
        return CACHE_DIR / f"testsrc2-{self.width}x{self.height}p{self.fps}-{self.video_bitrate}-{self.seconds}s-{digest}.flv"

    def ensure(self, ffmpeg: str) -> Path:
        """Encode once; later runs reuse the cached file."""
        path = self.path()
        if path.exists() and path.stat().st_size > 0:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            run_checked([ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *self.encode_args(), str(tmp)],
                        "encoding the source clip", timeout=600)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def probe(self, ffprobe: str) -> dict:
        """Duration and average total bitrate of the cached file."""
        path = self.path()
        out = run_checked([ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                          "probing the source clip").stdout.strip()
        duration = float(out)
        return {
            "file": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
            "description": f"{self.width}x{self.height}p{self.fps} H.264 (x264 veryfast, -b:v/-maxrate/-bufsize "
                           f"{self.video_bitrate}, GOP {self.gop}) + AAC {self.audio_bitrate}, testsrc2 + sine",
            "duration_s": round(duration, 2),
            "total_bitrate_mbps": round(path.stat().st_size * 8 / duration / 1e6, 3),
        }


# --- publishers ------------------------------------------------------------------------------


@dataclass
class Publishers:
    """N ffmpeg processes looping the clip into RTMP URLs (`-re -stream_loop -1 -c copy`)."""

    ffmpeg: str
    clip: Path
    log_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start(self, urls: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for i, url in enumerate(urls):
            log = self.log_dir / f"publisher-{i + 1}.log"
            with open(log, "wb") as f:
                proc = subprocess.Popen(
                    [self.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "warning", "-re", "-stream_loop", "-1",
                     "-i", str(self.clip), "-c", "copy", "-f", "flv", url],
                    stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                )
            self.procs.append(proc)
            self.logs.append(log)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def problem(self) -> str | None:
        """None while every publisher runs; otherwise which one stopped and its last log lines."""
        for i, (proc, log) in enumerate(zip(self.procs, self.logs)):
            if proc.poll() is not None:
                return f"publisher {i + 1} exited with {proc.returncode}: {tail(log) or '(no output)'}"
        return None

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            stop_process(proc, timeout_s=5)
        self.procs.clear()


# --- process accounting ----------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from 3 (state) on; comm may hold spaces


def descendants(root: int) -> list[int]:
    """`root` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime (all threads) of the given processes, in clock ticks."""
    return sum(cpu_split_ticks(pids))


def cpu_split_ticks(pids: list[int]) -> tuple[int, int]:
    """(utime, stime) (all threads) of the given processes, in clock ticks."""
    user = system = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            user += int(fields[11])
            system += int(fields[12])
    return user, system


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def process_cmdline(pid: int) -> list[str]:
    """argv of a running process ([] if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def rss_kb(pids: list[int]) -> tuple[int, int]:
    """(sum of VmRSS, sum of Pss) in kB; Pss splits pages shared between the processes fairly."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                    break
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                    break
        except OSError:
            continue
    return rss, pss


def system_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # exclude guest columns, already counted in user
    return total - idle, total


@dataclass
class Window:
    """CPU and memory of a process tree (and of the publishers, and of the machine) over a time span."""

    root_pid: int
    other_pids: Callable[[], list[int]] = lambda: []
    interval_s: float = 0.5
    _start: dict = field(default_factory=dict)
    rss_samples: list[int] = field(default_factory=list)
    pss_samples: list[int] = field(default_factory=list)
    pids_seen: set[int] = field(default_factory=set)

    def begin(self) -> None:
        pids = descendants(self.root_pid)
        self.pids_seen.update(pids)
        self._start = {
            "t": time.monotonic(), "pids": pids, "split": cpu_split_ticks(pids),
            "per_pid": {pid: cpu_ticks([pid]) for pid in pids},
            "others": (others := self.other_pids()), "other_ticks": cpu_ticks(others),
            "system": system_busy_ticks(),
        }
        self.sample_memory()

    def sample_memory(self) -> None:
        pids = descendants(self.root_pid)
        self.pids_seen.update(pids)
        rss, pss = rss_kb(pids)
        self.rss_samples.append(rss)
        self.pss_samples.append(pss)

    def run_for(self, seconds: float, check: Callable[[], None] | None = None) -> None:
        deadline = self._start["t"] + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(self.interval_s, left))
            self.sample_memory()
            if check is not None:
                check()

    def end(self) -> dict:
        t = time.monotonic()
        elapsed = t - self._start["t"]
        # Processes that were in the tree at the start keep counting even if new ones appeared.
        pids = sorted(set(descendants(self.root_pid)) | set(self._start["pids"]))
        # (A process of the tree that exits during the window takes its ticks with it: they are undercounted.)
        user1, system1 = cpu_split_ticks(pids)
        user, system = user1 - self._start["split"][0], system1 - self._start["split"][1]
        ticks = user + system
        other_ticks = cpu_ticks(self._start["others"]) - self._start["other_ticks"]
        by_name: dict[str, dict] = {}
        for pid in pids:
            entry = by_name.setdefault(process_name(pid), {"processes": 0, "cpu_pct_of_core": 0.0, "rss_mb_at_end": 0.0})
            entry["processes"] += 1
            # A process that exited during the window reads as 0 ticks: count nothing for it rather than less than 0.
            used = max(0, cpu_ticks([pid]) - self._start["per_pid"].get(pid, 0))
            entry["cpu_pct_of_core"] += 100.0 * used / CLK_TCK / elapsed
            entry["rss_mb_at_end"] += rss_kb([pid])[0] / 1024
        busy0, total0 = self._start["system"]
        busy1, total1 = system_busy_ticks()
        ncpu = os.cpu_count() or 1
        return {
            "seconds": round(elapsed, 2),
            "cpu_pct_of_core": 100.0 * ticks / CLK_TCK / elapsed,
            "cpu_user_share": user / ticks if ticks else None,  # the rest is kernel time (stime)
            "publishers_cpu_pct_of_core": 100.0 * other_ticks / CLK_TCK / elapsed,
            "machine_busy_pct_of_core": 100.0 * ncpu * (busy1 - busy0) / max(1, total1 - total0),
            "rss_mb_peak": max(self.rss_samples) / 1024,
            "rss_mb_mean": sum(self.rss_samples) / len(self.rss_samples) / 1024,
            "pss_mb_mean": sum(self.pss_samples) / len(self.pss_samples) / 1024,
            "processes": len(pids),
            "by_process_name": by_name,
            "memory_samples": len(self.rss_samples),
        }


# --- first-seen times of files: inotify ------------------------------------------------------

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("=iIII")  # struct inotify_event: int wd; uint32 mask, cookie, len; then the name
_EVENT_HEADER = _EVENT.size


class Inotify:
    """Linux inotify through libc (no dependency): when a file was renamed into place or closed.

    `read()` returns the events with the monotonic time the reader woke up for them: files that
    appear by rename (temporary name, then `rename`) are seen within microseconds, without the
    cost and the granularity of polling.
    """

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self.paths: dict[int, Path] = {}

    def watch(self, path: Path, mask: int = IN_MOVED_TO | IN_CLOSE_WRITE) -> int:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), ctypes.c_uint32(mask))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
        self.paths[wd] = Path(path)
        return wd

    def read(self, timeout_s: float) -> tuple[float, list[tuple[Path, int, str]]]:
        """Wait up to `timeout_s`; (when woken, [(directory, mask, name), ...])."""
        if not self._poll.poll(max(0, int(timeout_s * 1000))):
            return time.monotonic(), []
        at = time.monotonic()
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return at, []
        events, pos = [], 0
        while pos + _EVENT_HEADER <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
            name = data[pos + _EVENT_HEADER:pos + _EVENT_HEADER + length].rstrip(b"\0").decode(errors="replace")
            pos += _EVENT_HEADER + length
            if wd in self.paths:
                events.append((self.paths[wd], mask, name))
        return at, events

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError as e:
            if e.errno != errno.EBADF:
                raise


# --- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def distribution(values: Sequence[float]) -> dict:
    """n, min, median, p95, max of a list of numbers (None for an empty list)."""
    return {
        "n": len(values),
        "min": min(values) if values else None,
        "median": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
    }


# --- HTTP benchmarks: wrk, nginx as a plain HTTP server, file descriptors --------------------

WRK_APT_HINT = "apt-get install wrk"
_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_BINARY_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
_METRIC_UNITS = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


def find_nginx() -> str | None:
    """The nginx binary (a plain HTTP server is enough: no RTMP module needed)."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def require_wrk(*, install: bool = True) -> str:
    """Path of wrk (Debian's `wrk` package). Missing: installed with apt-get when running as root
    (as .ci/bootstrap does for the tools Sender needs), else SetupError with the apt command."""
    found = shutil.which("wrk")
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"wrk is missing: {WRK_APT_HINT} -y -q --no-install-recommends", file=sys.stderr, flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"],
                              capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:  # perhaps stale package lists: refresh once and retry
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
            proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"],
                                  capture_output=True, text=True, env=env, timeout=600)
        found = shutil.which("wrk")
        if found:
            return found
        raise SetupError(f"installing wrk failed: {' | '.join((proc.stderr or proc.stdout).strip().splitlines()[-3:])}")
    raise SetupError(f"missing: wrk; install it with: {WRK_APT_HINT}")


def raise_nofile(want: int) -> int:
    """Raise this process's RLIMIT_NOFILE (children inherit it) to `want` if allowed (root may also
    raise the hard limit), else to the hard limit. Returns the soft limit now in effect."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _wrk_seconds(text: str) -> float | None:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * _WRK_UNITS[m.group(2)] if m else None


def parse_wrk(text: str) -> dict:
    """Requests/s, bytes/s, latency (mean, stdev, max, and percentiles with --latency), errors
    from wrk's text output. Transfer/sec is in binary units (wrk's 1 KB = 1024 B)."""
    out: dict = {"requests_per_s": None, "bytes_per_s": None, "latency_s": {}, "requests": None,
                 "seconds": None, "bytes": None, "socket_errors": {}, "non_2xx_3xx": 0}
    for raw in text.splitlines():
        line = raw.strip()
        if m := re.match(r"Requests/sec:\s+([\d.]+)", line):
            out["requests_per_s"] = float(m.group(1))
        elif m := re.match(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", line):
            out["bytes_per_s"] = float(m.group(1)) * _BINARY_UNITS[m.group(2)]
        elif m := re.match(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", line):
            out["latency_s"].update(mean=_wrk_seconds(m.group(1)), stdev=_wrk_seconds(m.group(2)),
                                    max=_wrk_seconds(m.group(3)))
        elif m := re.fullmatch(r"(50|75|90|99)%\s+(\S+)", line):
            out["latency_s"][f"p{m.group(1)}"] = _wrk_seconds(m.group(2))
        elif m := re.match(r"(\d+) requests in ([\d.]+\w+), ([\d.]+)([KMGT]?B) read", line):
            out["requests"] = int(m.group(1))
            out["seconds"] = _wrk_seconds(m.group(2))
            out["bytes"] = float(m.group(3)) * _BINARY_UNITS[m.group(4)]
        elif m := re.match(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", line):
            out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
        elif m := re.match(r"Non-2xx or 3xx responses: (\d+)", line):
            out["non_2xx_3xx"] = int(m.group(1))
    if out["requests_per_s"] is None:
        raise SetupError(f"cannot read wrk's output: {' | '.join(text.strip().splitlines()[-4:])}")
    return out


def run_wrk(wrk: str, url: str, *, threads: int = 2, connections: int = 64, seconds: float = 10.0,
            timeout: str = "5s") -> dict:
    """`wrk -tT -cC -dDs --latency URL`, parsed; also the CPU wrk itself used (from the rusage of
    reaped children around the run), so a reader can see how much of the machine the load took."""
    import resource

    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", timeout, "--latency", url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        raise SetupError(f"wrk did not finish within {seconds + 60:.0f} s: {' '.join(cmd)}") from None
    elapsed = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SetupError(f"wrk failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}")
    result = parse_wrk(proc.stdout)
    result["command"] = " ".join(cmd)
    result["wrk_cpu_pct_of_core"] = 100.0 * ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / elapsed
    return result


def wrk_version(wrk: str) -> str | None:
    line = _first_line([wrk, "--version"])
    return " ".join(line.split()[:2]) if line else None


def python_package_version(python: str, package: str) -> str | None:
    """A package's version as installed for the interpreter `python` (e.g. the checkout's venv)."""
    return _first_line([python, "-c", f"import importlib.metadata as m; print(m.version({package!r}))"])


def http_machine_facts(tools: dict[str, str], venv_python: str) -> dict:
    """`machine_facts` plus what the HTTP benchmarks use: wrk, nginx, hypercorn/trio/h11 versions."""
    facts = machine_facts({"ffmpeg": tools.get("ffmpeg", "ffmpeg"), **tools})
    facts.pop("ffmpeg", None)
    facts.pop("libnginx-mod-rtmp", None)
    if "wrk" in tools:
        facts["wrk"] = wrk_version(tools["wrk"])
    if "nginx" in tools:
        facts["nginx"] = _first_line([tools["nginx"], "-v"])
    for package in ("hypercorn", "trio", "h11", "quart-trio"):
        facts[package] = python_package_version(venv_python, package)
    return facts


def finish_report(report: dict, text: str, workdir: Path, *, keep: bool, as_json: bool, log: Callable[[str], None]) -> int:
    """The end every benchmark shares: keep or remove the work directory, then print the table
    (to stderr when --json puts the full report on stdout). Returns the exit status."""
    if keep:
        log(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if as_json:
        print(text, file=sys.stderr)
        print(json.dumps(report, indent=2))
    else:
        print(text)
    return 0
