"""Fixtures for real daemons on 127.0.0.1 and real publishers (ffmpeg, GStreamer)."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from daemons.core import config as config_mod
from daemons.core import domain, install
from daemons.core.install import Install
from daemons.ingest.server import IngestDaemon
from daemons.runtime.store import StoreWorker

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
GST = shutil.which("gst-launch-1.0")

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (run .ci/bootstrap --test)")
needs_gst = pytest.mark.skipif(GST is None, reason="GStreamer not installed (run .ci/bootstrap --test)")


def make_install(root: Path, **overrides) -> Install:
    result = install.init(directory=root)
    cfg = config_mod.load(result.config_path)
    overrides = {"rtmp.listen": "127.0.0.1:0", "rtmp.record": True, **overrides}
    for k, v in overrides.items():
        cfg = cfg.with_value(k, v)
    config_mod.write(cfg, result.config_path)
    return Install.load(result.config_path)


@dataclass
class StreamFixture:
    stream: dict
    key: str
    key_id: str


def add_stream(inst: Install, slug: str = "demo", **kw) -> StreamFixture:
    with inst.open_store() as store:
        stream = domain.streams.create(store, slug, **kw)
        row, key = domain.keys.create(store, inst.secret(), slug)
    return StreamFixture(stream, key, row["id"])


@dataclass
class RunningIngest:
    daemon: IngestDaemon
    install: Install
    host: str
    port: int
    cancel: trio.CancelScope

    def url(self, key: str, scheme: str = "rtmp") -> str:
        port = self.port if scheme == "rtmp" else next(p for s, _, p in self.daemon.addresses if s == scheme)
        return f"{scheme}://{self.host}:{port}/live/{key}"

    async def publisher_left(self, stream_id: str) -> None:
        """Wait until the daemon has ended the stream's publish and closed its sinks (files complete)."""
        await wait_for(lambda: stream_id not in self.daemon.publishers)

    def generation_dirs(self, stream_id: str) -> list[Path]:
        root = self.install.spool_root / "streams" / stream_id
        return sorted(root.iterdir()) if root.exists() else []


async def start_ingest(nursery: trio.Nursery, inst: Install) -> RunningIngest:
    store = StoreWorker(inst.open_store())
    daemon = IngestDaemon(inst, store)
    scope = trio.CancelScope()

    async def run(task_status=trio.TASK_STATUS_IGNORED):
        with scope:
            await daemon.serve(task_status=task_status)

    addresses = await nursery.start(run)
    _, host, port = next(a for a in addresses if a[0] == "rtmp")
    return RunningIngest(daemon, inst, host, port, scope)


@pytest.fixture
def sender_install(tmp_path) -> Install:
    return make_install(tmp_path / "var")


@pytest.fixture
async def ingest(nursery, sender_install) -> RunningIngest:
    return await start_ingest(nursery, sender_install)


def ffmpeg_publish_cmd(url: str, seconds: float, *, size: str = "320x240", rate: int = 25, extra: list[str] | None = None) -> list[str]:
    return [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(rate), "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
        *(extra or []), "-f", "flv", url,
    ]


def gst_publish_cmd(url: str, frames: int, *, width: int = 320, height: int = 240, rate: int = 25) -> list[str]:
    return [
        GST, "-q", "-e",
        "videotestsrc", "is-live=true", f"num-buffers={frames}", "!",
        f"video/x-raw,width={width},height={height},framerate={rate}/1", "!",
        "x264enc", "tune=zerolatency", "speed-preset=ultrafast", f"key-int-max={rate}", "!", "h264parse", "!",
        "flvmux", "name=m", "streamable=true", "!", "rtmp2sink", f"location={url}",
        "audiotestsrc", "is-live=true", f"num-buffers={int(frames / rate * 44100 / 1024)}", "!",
        "avenc_aac", "!", "aacparse", "!", "m.",
    ]


async def run_publisher(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    with trio.fail_after(timeout):
        return await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_streams", "-show_format", "-count_frames", "-of", "json", str(path)],
        capture_output=True, check=True, text=True,
    ).stdout
    return json.loads(out)


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll a cheap condition until it holds (a condition, not a fixed sleep)."""
    with trio.fail_after(timeout):
        while True:
            value = predicate()
            if value:
                return value
            await trio.sleep(interval)
