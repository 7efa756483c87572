"""The RTMP servers a benchmark runs side by side: Sender's ingest daemon and nginx-rtmp.

Each one lives in a directory of its own, listens on free ports on 127.0.0.1 only, is started
as a child process of the benchmark (so its PID tree is what gets measured) and reports what
it has received: which publishers it accepted and how many bytes came in.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

from harness import SetupError, free_port, port_open, run_checked, stop_process, tail, wait_until

HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0


class SenderIngest:
    """`sender daemon ingest` on a fresh `sender init --dir` install with one stream + key per publisher."""

    name = "sender"
    label = "Sender ingest"

    def __init__(self, root: Path, sender: Path, source: Path | None = None):
        """`source`: a tree exported by `harness.export_revision` to run instead of the checkout."""
        self.root = root
        self.sender = sender
        self.env = {**os.environ, "PYTHONPATH": str(source)} if source is not None else None
        self.config = root / "sender.toml"
        self.port = 0
        self.keys: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.log = root / "ingest.log"

    def _cli(self, *args: str) -> str:
        return run_checked([str(self.sender), "--config", str(self.config), *args], f"sender {' '.join(args[:2])}",
                           env=self.env, cwd=self.root).stdout

    def setup(self, publishers: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        run_checked([str(self.sender), "init", "--dir", str(self.root)], "sender init", env=self.env, cwd=self.root)
        self.port = free_port(HOST)
        self._cli("config", "set", "rtmp.listen", f"{HOST}:{self.port}")
        for i in range(1, publishers + 1):
            self._cli("stream", "create", f"bench-{i}", "--json")
            try:
                self.keys.append(json.loads(self._cli("key", "create", f"bench-{i}", "--json"))["key"])
            except (ValueError, KeyError) as e:
                raise SetupError(f"sender key create --json printed no key: {e}") from None

    def start(self) -> None:
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(
                [str(self.sender), "--config", str(self.config), "daemon", "ingest"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
            )
        wait_until(lambda: port_open(HOST, self.port), START_TIMEOUT_S, f"the ingest daemon to listen on {HOST}:{self.port}",
                   alive=self.problem)

    def problem(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"the ingest daemon exited with {self.proc.returncode}: {tail(self.log)}"
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def urls(self) -> list[str]:
        return [f"rtmp://{HOST}:{self.port}/live/{key}" for key in self.keys]

    def _stats(self) -> dict | None:
        try:
            return json.loads((self.root / "state" / "stats" / "ingest.json").read_text())
        except (OSError, ValueError):
            return None

    def accepted(self) -> bool:
        """Every publisher is listed in the daemon's stats with bytes in, and its generation has output in the spool
        (the FLV hand-off's `ingest/NNNN.flv`, or the media pipeline's files: any non-empty file counts)."""
        stats = self._stats()
        pubs = (stats or {}).get("publishers", [])
        if len(pubs) != len(self.keys) or not all(p.get("bytes_in", 0) > 0 for p in pubs):
            return False
        return all(any(f.is_file() and f.stat().st_size > 0 for f in self._generation_dir(p).rglob("*")) for p in pubs)

    @property
    def spool_streams(self) -> Path:
        """`<spool.root>/streams`: one directory per stream, then per generation (docs/arch.md)."""
        return self.root / "spool" / "streams"

    def _generation_dir(self, publisher: dict) -> Path:
        return self.root / "spool" / "streams" / publisher.get("stream_id", "?") / publisher.get("generation_id", "?")

    def bytes_in(self) -> tuple[float, int]:
        """(when, total bytes received from all publishers) from the daemon's own stats file (written every second)."""
        stats = self._stats()
        if not stats:
            raise SetupError(f"no stats file under {self.root / 'state' / 'stats'}")
        when = datetime.fromisoformat(stats["updated_at"].replace("Z", "+00:00")).timestamp()
        return when, sum(p["bytes_in"] for p in stats["publishers"])

    def output_bytes(self) -> int:
        """Bytes in the spool (grows by what the daemon writes, less what retention deletes)."""
        total = 0
        for f in (self.root / "spool").rglob("*"):
            try:
                total += f.stat().st_size if f.is_file() else 0
            except FileNotFoundError:  # renamed or deleted meanwhile
                pass
        return total

    def stop(self) -> int | None:
        return stop_process(self.proc) if self.proc is not None else None


# nginx-rtmp as a typical HLS setup runs it (the peer: `hls on`, 2 s fragments, a 12 s playlist,
# `on_publish` auth over HTTP), with paths and ports filled in, `on_publish` allowing every name that
# starts with "goodkey", and one HTTP location, /stat (rtmp_stat), which the benchmark reads for
# bytes received.
NGINX_CONF = """\
load_module {module};

{user}worker_processes 1;
daemon off;
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log warn;

events {{
    worker_connections 1024;
}}

rtmp {{
    server {{
        listen {host}:{rtmp_port};
        chunk_size 4096;

        application live {{
            live on;
            record off;

            notify_method get;
            on_publish http://{host}:{http_port}/auth;

            hls on;
            hls_path {hls};
            hls_fragment 2s;
            hls_playlist_length 12s;
        }}
    }}
}}

http {{
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path       {prefix}/tmp/proxy;
    fastcgi_temp_path     {prefix}/tmp/fastcgi;
    uwsgi_temp_path       {prefix}/tmp/uwsgi;
    scgi_temp_path        {prefix}/tmp/scgi;

    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;

    server {{
        listen {host}:{http_port};

        location = /auth {{
            if ($arg_name ~ "^goodkey") {{
                return 200;
            }}
            return 403;
        }}

        location = /stat {{
            rtmp_stat all;
        }}

        location /hls/ {{
            alias {hls}/;
            types {{
                application/vnd.apple.mpegurl m3u8;
                video/mp2t ts;
            }}
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }}
    }}
}}
"""


class NginxRtmp:
    """nginx + libnginx-mod-rtmp with the peer config (RTMP → HLS, 2 s fragments) in its own prefix."""

    name = "nginx"
    label = "nginx-rtmp"

    def __init__(self, root: Path, nginx: str, module: Path):
        self.root = root
        self.nginx = nginx
        self.module = module
        self.hls = root / "hls"
        self.rtmp_port = self.http_port = 0
        self.names: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.log = root / "logs" / "error.log"

    def setup(self, publishers: int) -> None:
        for d in ("conf", "logs", "tmp", "hls"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.rtmp_port, self.http_port = free_port(HOST), free_port(HOST)
        while self.http_port == self.rtmp_port:
            self.http_port = free_port(HOST)
        (self.root / "conf" / "nginx.conf").write_text(NGINX_CONF.format(
            module=self.module, prefix=self.root, hls=self.hls, host=HOST,
            rtmp_port=self.rtmp_port, http_port=self.http_port,
            # As root without `user`, workers would run as nobody and could not write the HLS dir.
            user="user root;\n" if os.geteuid() == 0 else "",
        ))
        run_checked([self.nginx, "-t", "-q", "-p", str(self.root), "-c", "conf/nginx.conf", "-e", str(self.log)],
                    "nginx -t (config check)")
        self.names = [f"goodkey-{i}" for i in range(1, publishers + 1)]

    def start(self) -> None:
        with open(self.root / "logs" / "stdout.log", "wb") as f:
            self.proc = subprocess.Popen(
                [self.nginx, "-p", str(self.root), "-c", "conf/nginx.conf", "-e", str(self.log)],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
            )
        wait_until(lambda: port_open(HOST, self.rtmp_port) and port_open(HOST, self.http_port), START_TIMEOUT_S,
                   f"nginx to listen on {HOST}:{self.rtmp_port} (RTMP) and :{self.http_port} (HTTP)", alive=self.problem)

    def problem(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"nginx exited with {self.proc.returncode}: {tail(self.log)}"
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def urls(self) -> list[str]:
        return [f"rtmp://{HOST}:{self.rtmp_port}/live/{name}" for name in self.names]

    def _streams(self) -> dict[str, int]:
        """Publishing streams of application `live` → bytes received, from rtmp_stat."""
        with urllib.request.urlopen(f"http://{HOST}:{self.http_port}/stat", timeout=5) as r:
            tree = ET.fromstring(r.read())
        out = {}
        for app in tree.iter("application"):
            if app.findtext("name") != "live":
                continue
            for stream in app.iter("stream"):
                if stream.find("publishing") is not None:
                    out[stream.findtext("name") or ""] = int(stream.findtext("bytes_in") or 0)
        return out

    def accepted(self) -> bool:
        """Every publisher publishing (rtmp_stat) with bytes in, and its HLS playlist written."""
        streams = self._streams()
        return (all(streams.get(n, 0) > 0 for n in self.names)
                and all((self.hls / f"{n}.m3u8").exists() for n in self.names))

    def bytes_in(self) -> tuple[float, int]:
        return time.time(), sum(self._streams().get(n, 0) for n in self.names)

    def playlist(self, name: str) -> Path:
        """The HLS playlist nginx-rtmp writes for stream `name` (`hls_path/<name>.m3u8`)."""
        return self.hls / f"{name}.m3u8"

    def output_bytes(self) -> None:
        return None  # HLS fragments are deleted as the playlist slides: no running total on disk

    def stop(self) -> int | None:
        return stop_process(self.proc) if self.proc is not None else None
