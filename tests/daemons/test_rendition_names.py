"""A rendition name the config accepts is served: `hd_720` (an underscore, which the HLS route once
refused) from a real publish through ingest and sender-http."""

from __future__ import annotations

import httpx
import trio

from tests.daemons.conftest import add_stream, ffmpeg_publish_cmd, make_install, needs_ffmpeg, run_publisher, start_ingest
from tests.http.conftest import start_http

pytestmark = needs_ffmpeg


async def test_a_rendition_called_hd_720_is_served(nursery, tmp_path):
    ladder = [{"name": "hd_720", "kind": "source"}]
    inst = make_install(tmp_path / "var", **{"http.listen": "127.0.0.1:0", "renditions.ladder": ladder})
    ingest = await start_ingest(nursery, inst)
    http = await start_http(nursery, inst)
    s = add_stream(inst, ladder=ladder)
    await http.daemon.ctx.directory.refresh()
    nursery.start_soon(run_publisher, ffmpeg_publish_cmd(ingest.url(s.key), 20))
    async with httpx.AsyncClient(base_url=f"http://{http.host}:{http.port}", timeout=10) as client:
        with trio.fail_after(20):
            while not (master_url := (await client.get("/api/streams/demo/playback")).json().get("master_url")):
                await trio.sleep(0.1)
        master = await client.get(master_url)
        assert master.status_code == 200 and "hd_720/index.m3u8" in master.text
        media = await client.get(master_url.replace("master.m3u8", "hd_720/index.m3u8"))
        assert media.status_code == 200
        part = next(line.split('URI="')[1].split('"')[0] for line in media.text.splitlines() if line.startswith("#EXT-X-PART:"))
        init = await client.get(master_url.replace("master.m3u8", "hd_720/init.mp4"))
        got = await client.get(master_url.replace("master.m3u8", f"hd_720/{part}"))
        assert init.status_code == 200 and got.status_code == 200 and got.content
