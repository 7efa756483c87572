"""The owned front tier with nginx (front.kind = "nginx"): its config, from sender.toml.

One event-driven nginx answers every viewer request without Python:

* **media** (init, parts, segments) of public and unlisted streams straight from the spool with
  `sendfile` — the packager renames each file into place once, complete, and never changes it;
  nginx reaches a stream's files through a link sender-front keeps only while it is public;
* **media playlists**, blocking reloads included, from the copy sender-front pushes at every
  playlist version (daemons/front/pusher.py) and held in nginx by Lua (`sender_front.lua`,
  Debian's libnginx-mod-http-lua): a reload for the next part waits on a semaphore the next
  push posts, so waiters wake the moment the part is listed — no cache lock, no upstream request
  per viewer;
* **everything else** (private streams with their token, master playlists, the watch page, the
  APIs, anything the Lua code is unsure of) is proxied to sender-http, which answers it as it would
  without a front.

TLS and HTTP/2 are nginx's own (no separate terminator). Viewers and egress are counted in nginx
(the Lua log phase: requests and bytes by kind, status and handling; the viewers its playlist
answers saw) and pulled by sender-http once a second (daemons/http/front_stats.py) — no log line
per request. One worker process: the Lua state lives in it (docs/performance.md has what one
worker carries).

Pure functions of the config: daemons/front/nginx.py writes and runs what they return.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from daemons.core import config as config_mod
from daemons.core.config import Config
from daemons.core.front_config import https_on, https_port, upstream_timeout_seconds
from daemons.media import names

LUA_MODULE = Path(__file__).resolve().parent.parent / "front" / "sender_front.lua"
MODULES_DIR = "/usr/lib/nginx/modules"  # Debian: libnginx-mod-http-ndk and libnginx-mod-http-lua
RESTY_LUA_PATH = "/usr/share/lua/5.1/?.lua"  # Debian's lua-resty-core (ngx.semaphore)
WORKER_CONNECTIONS = 16384
PUSH_BODY_MAX = "4m"

# What viewers ask for, as the HLS route names it (daemons/http/hls_route.py).
_RENDITION_PATH = f"{names.STREAM_ID}/{names.GENERATION_ID}/{names.RENDITION}"
PLAYLIST_LOCATION = rf"^/hls/({_RENDITION_PATH})/index\.m3u8$"
PART_LOCATION = rf"^/hls/({_RENDITION_PATH}/{names.MSN}\.{names.PART_INDEX}\.m4s)$"
MEDIA_LOCATION = rf"^/hls/({_RENDITION_PATH}/(?:{names.INIT_FILE}|{names.MSN}\.(?:m4s|ts)|{names.MSN}\.{names.PART_INDEX}\.ts))$"


@dataclass(frozen=True)
class NginxFiles:
    """nginx.conf and the Lua module beside sender.toml (`/etc/sender/front/`); nginx's pid file
    and temporary files under the state directory."""

    config_dir: Path
    workdir: Path

    @property
    def conf(self) -> Path:
        return self.config_dir / "nginx.conf"

    @property
    def lua(self) -> Path:
        return self.config_dir / "sender_front.lua"

    @property
    def public(self) -> Path:
        """`<stream id>` → the stream's spool directory, for public and unlisted streams only."""
        return self.workdir / "public"

    @classmethod
    def of(cls, cfg: Config) -> "NginxFiles":
        base = Path(cfg.path).parent if cfg.path is not None else config_mod.DEFAULT_CONFIG_PATH.parent
        return cls(base / "front", Path(cfg["node.state_dir"]) / "front" / "nginx")


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)


def _listen(value: str) -> str:
    host, port = config_mod.parse_listen(value)
    if host in ("0.0.0.0", ""):
        return str(port)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def upstream_address(cfg: Config) -> str:
    host, port = cfg.listen("http.listen")
    host = _loopback(host)
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def push_address(cfg: Config) -> tuple[str, int]:
    """Where sender-front pushes playlists: front.proxy_listen, a loopback address."""
    host, port = cfg.listen("front.proxy_listen")
    return _loopback(host).strip("[]"), port


def push_key(install_secret: bytes) -> str:
    """What sender-front and sender-http show nginx's loopback listener (X-Sender-Key): derived
    from the install secret, so another local user cannot push playlists to viewers or read and
    clear the counts."""
    return hmac.new(install_secret, b"sender front control listener", hashlib.sha256).hexdigest()[:32]


def _user_line() -> str:
    # nginx started as root drops its workers to "nobody", who may not read the spool: keep root's
    # identity then (sender up as root, CI). Under the unit it runs as the sender user already.
    return "user root;\n" if os.geteuid() == 0 else ""


CONF_TEMPLATE = """\
# Sender's front tier (front.kind = "nginx"): written by sender-front from {config}
# at every start and reload. Do not edit: `sender config set front.*` changes it (and reloads it).
daemon off;
master_process on;
worker_processes 1;
{user}pid {workdir}/nginx.pid;
error_log stderr warn;
load_module {modules}/ndk_http_module.so;
load_module {modules}/ngx_http_lua_module.so;
worker_rlimit_nofile {nofile};

events {{
    worker_connections {connections};
}}

http {{
    lua_package_path "{config_dir}/?.lua;{resty};;";
    init_by_lua_block {{
        sender = require "sender_front"
    }}
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;

    # No sendfile stall: Debian's stock tcp_nopush on delays every part by ~44 ms.
    sendfile on;
    tcp_nopush off;
    tcp_nodelay on;
    open_file_cache max=20000 inactive=30s;
    # A stream made private is unlinked from {workdir}/public: served from the spool 1 s more at most.
    open_file_cache_valid 1s;
    keepalive_timeout {keep_alive_s}s;
    keepalive_requests 100000;
    client_max_body_size {max_body};
    server_tokens off;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp4 mp4;
        video/iso.segment m4s;
        video/mp2t ts;
    }}
    default_type application/octet-stream;
    # front.access_log: one JSON line per viewer request, for the admin's own tools.
    log_format sender_json escape=json '{{"time":"$time_iso8601","address":"$remote_addr","request":"$request",'
        '"status":$status,"bytes":$body_bytes_sent,"handling":"$sender_handling","request_time":$request_time,'
        '"session":"$http_x_playback_session_id","user_agent":"$http_user_agent"}}';

    upstream sender_http {{
        server {upstream};
        keepalive 64;
    }}
    # The Host the viewer named, port included (sender-http builds its public URLs from it);
    # $host alone drops the port.
    map $http_host $sender_host {{
        "" $host;
        default $http_host;
    }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $sender_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Host $sender_host;
    # A blocking playlist reload is held by sender-http for up to 3 x TARGETDURATION.
    proxy_read_timeout {upstream_timeout}s;
    proxy_send_timeout {upstream_timeout}s;
{tls_settings}
    server {{
{viewer_listens}        set $sender_handling pass;
        set $sender_kind "";
        # Viewers and egress are counted in nginx (sender_front.lua) and pulled by sender-http
        # once a second (/stats below): no log line per request to write, send and parse.
        {access_log}
        log_by_lua_block {{
            sender.log()
        }}
{acme_location}
        # Media playlists: answered by sender_front.lua from the pushed copy (or sent on to sender-http).
        location ~ "{playlist_location}" {{
            set $sender_rendition $1;
            set $sender_kind playlist;
            content_by_lua_block {{
                sender.playlist()
            }}
        }}
        # Media: straight from the spool for public streams — sender-front links each public stream's
        # spool directory under {workdir}/public (and unlinks it when it turns private) — else
        # (no link: 404; OPTIONS: 405) sender-http, which checks the token.
        location ~ "{part_location}" {{
            set $sender_kind part;
            set $sender_handling hit;
            alias {workdir}/public/$1;
{media_tail}        }}
        location ~ "{media_location}" {{
            set $sender_handling hit;
            alias {workdir}/public/$1;
{media_tail}        }}
        location @sender {{
            set $sender_handling pass;
            proxy_pass http://sender_http;
        }}
        location / {{
            proxy_pass http://sender_http;
        }}
    }}
{redirect_server}
    # sender-front's playlist pushes, sender-http's pull of the counts: loopback only, and only
    # with the install's key (sender_front.lua checks X-Sender-Key against it).
    server {{
        listen {push_listen};
        access_log off;
        set $sender_push_key "{push_key}";
        client_max_body_size {push_max};
        client_body_buffer_size {push_max};
        location = /push {{
            content_by_lua_block {{
                sender.push()
            }}
        }}
        location = /wanted {{
            content_by_lua_block {{
                sender.wanted()
            }}
        }}
        location = /stats {{
            content_by_lua_block {{
                sender.stats()
            }}
        }}
        location = /drop {{
            content_by_lua_block {{
                sender.drop()
            }}
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""

TLS_SETTINGS = """\
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:sender_tls:10m;
    ssl_session_timeout 1h;
"""

ACME_LOCATION = """\
        # ACME http-01 challenges go to the ACME client on 127.0.0.1:{acme_port} (certbot --standalone).
        location ^~ /.well-known/acme-challenge/ {{
            proxy_pass http://127.0.0.1:{acme_port};
        }}
"""

MEDIA_TAIL = """\
            error_page 404 405 = @sender;
            add_header Cache-Control "public, max-age=31536000, immutable";
            add_header Access-Control-Allow-Origin "*";
            add_header Access-Control-Expose-Headers "content-length, content-range, etag, age";
"""

REDIRECT_SERVER = """\
    # Plain HTTP: everything but ACME challenges is sent to HTTPS.
    server {{
        listen {http_listen};
        access_log off;
{acme_location}        location / {{
            return 301 https://{host}{port_suffix}$request_uri;
        }}
    }}
"""


def render_owned_nginx(cfg: Config, *, key: str, target_duration_s: int | None = None, files: NginxFiles | None = None) -> str:
    """nginx.conf of the front Sender runs (front.kind = "nginx"); `key` its control listener's
    (`push_key`); `files` where it and the Lua module will be (default: beside sender.toml)."""
    files = files or NginxFiles.of(cfg)
    tls = https_on(cfg)
    redirect = tls and bool(cfg["front.http_listen"]) and cfg["front.redirect_http"]
    listens = ""
    if tls:
        listens += f"        listen {_listen(cfg['front.listen'])} ssl http2 backlog=4096;\n"
    if cfg["front.http_listen"] and not redirect:
        listens += f"        listen {_listen(cfg['front.http_listen'])} backlog=4096;\n"
    acme = ACME_LOCATION.format(acme_port=cfg["front.acme_port"])
    redirect_server = ""
    if redirect:
        host = cfg["front.server_name"] or "$host"
        port = https_port(cfg)
        redirect_server = REDIRECT_SERVER.format(http_listen=_listen(cfg["front.http_listen"]), acme_location=acme,
                                                 host=host, port_suffix="" if port == 443 else f":{port}")
    push_host, push_port = push_address(cfg)
    td = target_duration_s or max(1, round(cfg["hls.segment_target_s"]))
    return CONF_TEMPLATE.format(
        config=cfg.path, user=_user_line(), workdir=files.workdir, modules=MODULES_DIR,
        nofile=2 * WORKER_CONNECTIONS + 1024, connections=WORKER_CONNECTIONS, config_dir=files.config_dir,
        resty=RESTY_LUA_PATH, keep_alive_s=round(cfg["http.keep_alive_s"]), max_body=cfg["http.max_request_body"],
        upstream=upstream_address(cfg), upstream_timeout=upstream_timeout_seconds(td),
        tls_settings=TLS_SETTINGS.format(cert=cfg["front.tls_cert"], key=cfg["front.tls_key"]) if tls else "",
        viewer_listens=listens,
        access_log=(f"access_log {cfg['front.access_log']} sender_json buffer=64k flush=1s;" if cfg["front.access_log"]
                    else "access_log off;"),
        acme_location="" if redirect or not cfg["front.http_listen"] else acme,
        playlist_location=PLAYLIST_LOCATION, part_location=PART_LOCATION, media_location=MEDIA_LOCATION,
        media_tail=MEDIA_TAIL,
        redirect_server=redirect_server,
        push_listen=f"[{push_host}]:{push_port}" if ":" in push_host else f"{push_host}:{push_port}",
        push_max=PUSH_BODY_MAX, push_key=key,
    )


def nginx_argv(files: NginxFiles, nginx: str = "nginx") -> list[str]:
    # -e: nginx's own early messages (before it reads error_log) to stderr too, not /var/log/nginx.
    return [nginx, "-c", str(files.conf), "-e", "stderr"]


def nginx_test_argv(files: NginxFiles, nginx: str = "nginx") -> list[str]:
    return [nginx, "-t", "-q", "-c", str(files.conf), "-e", "stderr"]
