"""A real full file system under the spool (a small tmpfs), while ffmpeg publishes: the playlists
hold back, nothing listed is ever missing, no name ever carries two different bodies, and after
space returns the broadcast goes on after a discontinuity — and the records agree with the
playlists (generation.json's restarts and discontinuities, the store's discontinuity_count)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
import trio

from daemons.core import domain
from daemons.media.hls import parse_media_playlist
from tests.daemons.conftest import add_stream, ffmpeg_publish_cmd, make_install, needs_ffmpeg, run_publisher, start_ingest, wait_for

pytestmark = needs_ffmpeg


@pytest.fixture
def small_fs(tmp_path):
    """A 6 MiB tmpfs (needs root: CI runs as root; elsewhere the test is skipped)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0750", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of the file system (until ENOSPC)."""
    filler = directory / "filler"
    # Unbuffered: a buffered file's close() flushes again and may raise ENOSPC once more.
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)  # a short write, then ENOSPC
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


class Observer:
    """Every playlist version seen; every listed file's bytes as seen when it was listed."""

    def __init__(self, rendition: Path):
        self.rendition = rendition
        self.bodies: dict[str, bytes] = {}
        self.versions: list[str] = []

    def poll(self) -> None:
        try:
            text = (self.rendition / "index.m3u8").read_text()
        except FileNotFoundError:
            return
        if self.versions and self.versions[-1] == text:
            return
        self.versions.append(text)
        playlist = parse_media_playlist(text)
        names = [s.uri for s in playlist.segments] + [p.uri for s in playlist.segments for p in s.parts]
        names += [p.uri for p in playlist.partial_parts]
        for name in names:
            data = (self.rendition / name).read_bytes()  # listed: on disk
            assert self.bodies.setdefault(name, data) == data, f"{name} was listed with other bytes before"

    async def run(self) -> None:
        while True:
            self.poll()
            await trio.sleep(0.02)


async def test_a_full_spool_never_reuses_a_name_and_the_broadcast_goes_on(nursery, small_fs, tmp_path):
    inst = make_install(tmp_path / "var", **{"spool.root": str(small_fs / "spool"), "rtmp.record": False})
    ingest = await start_ingest(nursery, inst)
    s = add_stream(inst)
    nursery.start_soon(run_publisher, ffmpeg_publish_cmd(ingest.url(s.key), 60))
    pipeline = await wait_for(lambda: next(iter(ingest.daemon.pipelines.values()), None), timeout=15)
    await wait_for(lambda: pipeline.live, timeout=15)
    observer = Observer(pipeline.directory / "source")
    watch = trio.CancelScope()

    async def observe():
        with watch:
            await observer.run()

    nursery.start_soon(observe)
    await wait_for(lambda: len(pipeline.packagers["source"].segments) >= 2, timeout=15)
    filler = await trio.to_thread.run_sync(fill, small_fs)
    await wait_for(lambda: pipeline.media.outage, timeout=10)
    frozen = len(observer.versions)
    await trio.sleep(2)  # the scenario: two seconds of a full disk
    assert pipeline.media.outage
    filler.unlink()
    await wait_for(lambda: not pipeline.media.outage, timeout=5)
    # On it goes: new segments after a discontinuity.
    await wait_for(lambda: any(seg.discontinuity for seg in parse_media_playlist(observer.versions[-1]).segments)
                   and len(observer.versions) > frozen + 10, timeout=15)
    with inst.open_store() as store:
        domain.streams.stop(store, "demo")
    await wait_for(lambda: "#EXT-X-ENDLIST" in observer.versions[-1], timeout=10)
    watch.cancel()
    final = parse_media_playlist(observer.versions[-1])
    generation = json.loads((pipeline.directory / "generation.json").read_text())
    with inst.open_store() as store:
        row = domain.generations.get(store, pipeline.generation_id)
    listed = final.discontinuity_sequence + sum(seg.discontinuity for seg in final.segments)
    assert generation["discontinuities"] == row["discontinuity_count"] == listed >= 1
    assert generation["restarts"] == 0 and generation["ended"]
    assert os.path.exists(pipeline.directory / "source" / final.segments[-1].uri)
