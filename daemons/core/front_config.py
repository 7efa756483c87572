"""The front tier's configuration: one Varnish VCL renderer for the cache Sender runs itself
(`sender install --front varnish`, `sender up --front varnish`) and for the one it prints for an
admin's own Varnish (`sender cache-config varnish`), plus hitch's config and both command lines.

What makes LL-HLS cacheable (docs/arch.md, "HTTP serving"): generation-scoped URLs, immutable
media, blocking-reload answers that never change for one (_HLS_msn, _HLS_part, _HLS_skip), and
`no-store` on anything that may change (404s for future objects, 503s). The cache honours that,
keys on the path plus the LL-HLS arguments and the playback token — never the player's session
id — and Varnish's request coalescing parks concurrent misses on the object's waiting list, woken
the moment the one fetch lands (nginx's proxy_cache_lock re-polls every 500 ms instead: fatal to
200 ms parts; docs/performance.md, "Front tier"). So sender-http sees one request per object and
per playlist version however many viewers wait.

Pure functions of the config: no I/O (daemons/front/main.py writes and runs what they return).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from daemons.core import config as config_mod
from daemons.core.config import Config

# The query arguments that name an HLS object: what the cache key holds besides the path.
KEY_ARGS = ("_HLS_msn", "_HLS_part", "_HLS_skip", "token")
# The only other argument sender-http reads under /hls/: the player's session id (viewer counts).
SESSION_ARG = "session"
# The owned front keeps immutable media this long at most (the origin says a year): a stream made
# private stops being served from the shared cache within it, and memory holds the live edge only.
OWNED_MEDIA_TTL_S = 30
# Named Varnish listeners of the owned front (VCL's local.socket): hitch's decrypted connections,
# and plain HTTP from viewers.
TLS_SOCKET = "tls"
HTTP_SOCKET = "http"


def hold_seconds(target_duration_s: int) -> int:
    """How long a blocking reload may wait upstream: sender-http answers 503 after 3 x TARGETDURATION."""
    return 3 * target_duration_s + 2


def upstream_timeout_seconds(target_duration_s: int) -> int:
    """The cache's read timeout towards sender-http: above any blocking reload's hold."""
    return hold_seconds(target_duration_s) + 10


def split_upstream(upstream: str) -> tuple[str, str]:
    """host:port (or [v6]:port, or a bare host on port 80) → (host, port)."""
    if upstream.startswith("["):
        host, _, rest = upstream[1:].partition("]")
        return host, rest.lstrip(":") or "80"
    host, sep, port = upstream.rpartition(":")
    return (host, port) if sep and port.isdigit() and ":" not in host else (upstream, "80")


# --- the VCL -------------------------------------------------------------------------------

VCL_TEMPLATE = """\
{header}
vcl 4.1;

backend sender_http {{
    .host = "{host}";
    .port = "{port}";
    # A blocking playlist reload is held upstream for up to 3 x TARGETDURATION: wait longer.
    .first_byte_timeout = {timeout_s}s;
    .between_bytes_timeout = {timeout_s}s;
}}
{extra_backends}
sub vcl_recv {{
    unset req.http.X-Sender-Key;
{scheme}    set req.http.X-Forwarded-Host = req.http.host;

    # Everything but HLS (watch page, APIs, metrics): passed through, never cached here.
    if (req.url !~ "^/hls/") {{
        return (pass);
    }}
    # Anything but GET/HEAD, and other Sender nodes (edges) with the distribution key: passed.
    if ((req.method != "GET" && req.method != "HEAD") || req.http.Authorization) {{
        return (pass);
    }}
    # sender-http's HLS reads no cookies; they must not stop caching.
    unset req.http.Cookie;

    # The cache key: the path, the LL-HLS delivery directives and the playback token; not the
    # player's session id (it only counts viewers), nor any other argument. sender-http is then
    # asked exactly what the key names (plus the session id), so no argument outside the key
    # can change an answer kept under it.
    set req.http.X-Sender-Key = regsub(req.url, "\\?.*$", "");
    set req.http.X-Sender-Args = "";
{key_args}    set req.http.X-Sender-Key = req.http.X-Sender-Key + regsub(req.http.X-Sender-Args, "^&", "?");
{session_arg}    set req.url = regsub(req.url, "\\?.*$", "") + regsub(req.http.X-Sender-Args, "^&", "?");
    unset req.http.X-Sender-Args;
    # On to the built-in vcl_recv (Host checks), then a lookup. Concurrent misses for one key
    # wait for the first one's answer (Varnish's request coalescing): nothing here passes a
    # cacheable request, so 50 viewers blocked on one part are 1 request to sender-http.
}}

sub vcl_hash {{
    if (req.http.X-Sender-Key) {{
        hash_data(req.http.X-Sender-Key);
        return (lookup);
    }}
}}

sub vcl_backend_fetch {{
    unset bereq.http.X-Sender-Key;
}}

sub vcl_backend_response {{
    if (bereq.uncacheable) {{
        return (deliver);
    }}
    unset beresp.http.Set-Cookie;
    # sender-http marks what must not be kept: private on token-protected streams, no-store on
    # 404s for parts that do not exist yet, 503s and refusals. Not kept, but remembered for
    # {hit_for_miss_s}s as hit-for-miss: requests then go straight to sender-http instead of
    # queueing behind each other (a zero TTL would serialise them), and the next cacheable
    # answer (the part, once it exists) is kept.
    if (beresp.ttl <= 0s || beresp.http.Cache-Control ~ "(?i)(private|no-store|no-cache)") {{
        set beresp.ttl = {hit_for_miss_s}s;
        set beresp.grace = 0s;
        set beresp.uncacheable = true;
        return (deliver);
    }}
    # Otherwise kept for the origin's max-age (beresp.ttl): a year for immutable media,
    # 3 x TARGETDURATION for blocking-reload answers, 1 s for live playlists. Only media (which
    # never changes) may be served stale while it is refreshed; a live playlist never is.
    if (beresp.http.Cache-Control ~ "(?i)immutable") {{
{media_ttl}        set beresp.grace = {media_grace};
    }} else {{
        set beresp.grace = 0s;
    }}
    return (deliver);
}}

sub vcl_deliver {{
    if (req.http.X-Sender-Key) {{
        if (obj.hits > 0) {{
            if (obj.ttl <= 0s) {{
                set resp.http.X-Cache-Status = "STALE";
            }} else {{
                set resp.http.X-Cache-Status = "HIT";
            }}
        }} else {{
            set resp.http.X-Cache-Status = "MISS";
        }}
    }}
}}
{extra_subs}"""

PRINTED_HEADER = """\
# sender cache-config varnish — a Varnish (7.x) cache in front of sender-http at {upstream}.
# Install as {vcl_path}, check with `varnishd -C -f {vcl_path}`, and run
#   {command}
# (Debian: `systemctl edit varnish` and put that in ExecStart, after -F).
# Generated by Sender; regenerate instead of editing when Sender's URLs change."""

OWNED_HEADER = """\
# Sender's front tier (front.kind = "varnish"): written by sender-front from {config}
# at every start and reload. Do not edit: `sender config set front.*` changes it (and reloads it)."""

# Varnish speaks plain HTTP: behind a TLS terminator the printed config is told "https" by hand.
PRINTED_SCHEME = """\
    # Every request goes to sender-http saying who asked (Varnish appends the client's address
    # to X-Forwarded-For itself). Varnish speaks plain HTTP: behind a TLS terminator, say "https".
    set req.http.X-Forwarded-Proto = "http";
"""

OWNED_SCHEME = """\
    # Every request goes to sender-http saying who asked: Varnish appends the viewer's address
    # to X-Forwarded-For (hitch's PROXY header carries it), and the scheme is the listener's.
    if (local.socket == "{tls}") {{
        set req.http.X-Forwarded-Proto = "https";
    }} else {{
        set req.http.X-Forwarded-Proto = "http";
    }}
{redirect}"""

OWNED_REDIRECT = """\
    # Plain HTTP: ACME http-01 challenges go to the ACME client on 127.0.0.1:{acme_port} (certbot
    # --standalone), everything else is sent to HTTPS.
    if (local.socket == "{http}") {{
        if (req.url ~ "^/\\.well-known/acme-challenge/") {{
            set req.backend_hint = acme;
            return (pass);
        }}
{to_https}    }}
"""

OWNED_TO_HTTPS = """\
        if (!req.http.host) {{
            return (synth(400, "Host header required"));
        }}
        return (synth(750, "to https"));
"""

OWNED_ACME_BACKEND = """
backend acme {{
    .host = "127.0.0.1";
    .port = "{acme_port}";
}}
"""

OWNED_SYNTH = """
sub vcl_synth {{
    if (resp.status == 750) {{
        set resp.status = 301;
        set resp.http.Location = "https://" + {host} + "{port_suffix}" + req.url;
        set resp.http.Cache-Control = "no-store";
        return (deliver);
    }}
}}
"""


def _vcl_take_arg(arg: str) -> str:
    """VCL appending `&arg=value` (the last occurrence, as sender-http reads it) to X-Sender-Args."""
    return (f'    if (req.url ~ "[?&]{arg}=") {{\n'
            f'        set req.http.X-Sender-Args = req.http.X-Sender-Args + "&{arg}=" + '
            f'regsub(req.url, "^.*[?&]{arg}=([^&]*).*$", "\\1");\n'
            f'    }}\n')


def _vcl(*, header: str, upstream: str, target_duration_s: int, scheme: str, hit_for_miss_s: int = 1,
         media_grace: str = "1h", media_ttl_s: int | None = None, extra_backends: str = "", extra_subs: str = "") -> str:
    host, port = split_upstream(upstream)
    media_ttl = ("" if media_ttl_s is None else
                 f"        if (beresp.ttl > {media_ttl_s}s) {{\n            set beresp.ttl = {media_ttl_s}s;\n        }}\n")
    return VCL_TEMPLATE.format(
        header=header, host=host, port=port, timeout_s=upstream_timeout_seconds(target_duration_s),
        hit_for_miss_s=hit_for_miss_s, media_grace=media_grace, media_ttl=media_ttl, scheme=scheme,
        key_args="".join(_vcl_take_arg(arg) for arg in KEY_ARGS), session_arg=_vcl_take_arg(SESSION_ARG),
        extra_backends=extra_backends, extra_subs=extra_subs,
    )


VARNISH_VCL = "/etc/varnish/default.vcl"  # what Debian's varnish.service loads


def varnish_listen(listen: str) -> str:
    """`--listen 80` means every address, as for nginx; varnishd -a wants `:80`."""
    return f":{listen}" if listen.isdigit() else listen


def varnishd_command(*, listen: str, vcl_path: str = VARNISH_VCL, max_size: str = "1g") -> str:
    return f"varnishd -a {varnish_listen(listen)} -f {vcl_path} -s malloc,{max_size}"


def render_printed_vcl(*, upstream: str, listen: str = "80", vcl_path: str = VARNISH_VCL, max_size: str = "1g",
                       target_duration_s: int = 2, hit_for_miss_s: int = 1, media_grace: str = "1h") -> str:
    """`sender cache-config varnish`: a VCL for a Varnish the admin runs."""
    header = PRINTED_HEADER.format(upstream=upstream, vcl_path=vcl_path,
                                   command=varnishd_command(listen=listen, vcl_path=vcl_path, max_size=max_size))
    return _vcl(header=header, upstream=upstream, target_duration_s=target_duration_s, scheme=PRINTED_SCHEME,
                hit_for_miss_s=hit_for_miss_s, media_grace=media_grace)


# --- the owned front: files, command lines ---------------------------------------------------


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class FrontFiles:
    """Where the owned front's generated files and Varnish's working directory live: the files
    beside sender.toml (`/etc/sender/front/` on a system install), the working directory (shared
    memory log, the management secret) under the state directory."""

    config_dir: Path
    workdir: Path

    @property
    def vcl(self) -> Path:
        return self.config_dir / "sender.vcl"

    @property
    def hitch_conf(self) -> Path:
        return self.config_dir / "hitch.conf"

    @classmethod
    def of(cls, cfg: Config) -> "FrontFiles":
        base = Path(cfg.path).parent if cfg.path is not None else config_mod.DEFAULT_CONFIG_PATH.parent
        return cls(base / "front", Path(cfg["node.state_dir"]) / "front" / "varnish")


def https_on(cfg: Config) -> bool:
    return bool(cfg["front.listen"])


def https_port(cfg: Config) -> int | None:
    return config_mod.parse_listen(cfg["front.listen"])[1] if https_on(cfg) else None


def public_base_url(cfg: Config) -> str | None:
    """The viewers' base URL through the front, when front.server_name names it (else None: the
    Host of each request decides)."""
    name = cfg["front.server_name"]
    if not cfg["front.kind"] or not name:
        return None
    if https_on(cfg):
        port = https_port(cfg)
        return f"https://{name}" + ("" if port == 443 else f":{port}")
    port = config_mod.parse_listen(cfg["front.http_listen"])[1]
    return f"http://{name}" + ("" if port == 80 else f":{port}")


def render_owned_vcl(cfg: Config, *, target_duration_s: int | None = None) -> str:
    """The VCL of the front Sender runs (front.kind = "varnish"), from sender.toml."""
    http_host, http_port = cfg.listen("http.listen")
    upstream = f"{'127.0.0.1' if http_host in ('0.0.0.0', '') else ('::1' if http_host == '::' else http_host)}:{http_port}"
    upstream = f"[{upstream.rsplit(':', 1)[0]}]:{http_port}" if upstream.count(":") > 1 else upstream
    tls = https_on(cfg)
    extra_backends = extra_subs = redirect = ""
    if cfg["front.http_listen"]:
        to_https = OWNED_TO_HTTPS.format() if tls and cfg["front.redirect_http"] else ""
        redirect = OWNED_REDIRECT.format(acme_port=cfg["front.acme_port"], http=HTTP_SOCKET, to_https=to_https)
        extra_backends = OWNED_ACME_BACKEND.format(acme_port=cfg["front.acme_port"])
        if to_https:
            host = f'"{cfg["front.server_name"]}"' if cfg["front.server_name"] else 'regsub(req.http.host, ":[0-9]+$", "")'
            port = https_port(cfg)
            extra_subs = OWNED_SYNTH.format(host=host, port_suffix="" if port == 443 else f":{port}")
    td = target_duration_s or max(1, round(cfg["hls.segment_target_s"]))
    return _vcl(header=OWNED_HEADER.format(config=cfg.path), upstream=upstream, target_duration_s=td,
                scheme=OWNED_SCHEME.format(tls=TLS_SOCKET, redirect=redirect), media_ttl_s=OWNED_MEDIA_TTL_S,
                # No grace: past its 30 s an object is fetched again, never served stale meanwhile
                # (a stream made private is refused by then).
                media_grace="0s",
                extra_backends=extra_backends, extra_subs=extra_subs)


def varnish_storage(cfg: Config) -> str:
    path = cfg["front.cache_path"]
    return f"file,{path},{cfg['front.cache_size']}" if path else f"malloc,{cfg['front.cache_size']}"


def varnishd_argv(cfg: Config, files: FrontFiles, varnishd: str = "varnishd") -> list[str]:
    """varnishd in the foreground: the loopback listener hitch feeds (PROXY), the plain HTTP one,
    a management port on loopback (the kernel picks it; varnishadm -n finds it) for reloads."""
    argv = [varnishd, "-F", "-n", str(files.workdir), "-f", str(files.vcl), "-s", varnish_storage(cfg),
            "-T", "127.0.0.1:0", "-p", "feature=+http2",
            # No jail: under the unit it already runs as the sender user, without privileges to drop.
            "-j", "none"]
    proxy_host, proxy_port = cfg.listen("front.proxy_listen")
    argv += ["-a", f"{TLS_SOCKET}={_bracket(proxy_host)}:{proxy_port},PROXY"]
    if cfg["front.http_listen"]:
        host, port = cfg.listen("front.http_listen")
        argv += ["-a", f"{HTTP_SOCKET}={_bracket(host) if host not in ('0.0.0.0', '') else ''}:{port},HTTP"]
    return argv


HITCH_TEMPLATE = """\
# Sender's front tier: hitch terminates TLS for Varnish. Written by sender-front from
# {config} at every start and reload (SIGHUP: certificates and listeners). Do not edit.
frontend = "[{host}]:{port}"
backend = "[{proxy_host}]:{proxy_port}"
pem-file = {{
    cert = "{cert}"
    private-key = "{key}"
}}
# HTTP/2 first (Varnish speaks it: the negotiated protocol travels in the PROXY v2 header).
alpn-protos = "h2, http/1.1"
write-proxy-v2 = on
tls-protos = TLSv1.2 TLSv1.3
workers = {workers}
backlog = 4096
daemon = off
syslog = off
log-level = 1
"""


def render_hitch(cfg: Config, *, workers: int | None = None) -> str:
    host, port = cfg.listen("front.listen")
    proxy_host, proxy_port = cfg.listen("front.proxy_listen")
    return HITCH_TEMPLATE.format(
        config=cfg.path, host="*" if host in ("0.0.0.0", "") else host, port=port,
        proxy_host=proxy_host, proxy_port=proxy_port, cert=cfg["front.tls_cert"], key=cfg["front.tls_key"],
        workers=workers or os.cpu_count() or 1,
    )


def hitch_argv(files: FrontFiles, hitch: str = "hitch") -> list[str]:
    return [hitch, f"--config={files.hitch_conf}"] + (["--user=root"] if os.geteuid() == 0 else [])


SBIN_DIRS = ("/usr/sbin", "/sbin")  # Debian puts varnishd and hitch there, often not on a user's PATH


# nginx's Lua module (Debian: libnginx-mod-http-lua, which brings the NDK module) and the
# lua-resty-core library its ngx.semaphore comes from: checked as files, named like programs.
NGINX_LUA = {"ngx_http_lua_module": "/usr/lib/nginx/modules/ngx_http_lua_module.so",
             "lua-resty-core": "/usr/share/lua/5.1/ngx/semaphore.lua"}
PACKAGES = {"varnishd": "varnish", "varnishadm": "varnish", "hitch": "hitch", "nginx": "nginx",
            "ngx_http_lua_module": "libnginx-mod-http-lua", "lua-resty-core": "lua-resty-core"}


def binaries(cfg: Config) -> dict[str, str | None]:
    """What this front runs: name → path (None when not installed)."""
    # Debian puts varnishd, hitch and nginx in /usr/sbin, which a user's PATH often lacks.
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    if cfg["front.kind"] == "nginx":
        found = {"nginx": shutil.which("nginx", path=search)}
        return found | {name: (path if os.path.exists(path) else None) for name, path in NGINX_LUA.items()}
    if cfg["front.kind"] != "varnish":
        return {}
    need = ["varnishd", "varnishadm"] + (["hitch"] if https_on(cfg) else [])
    return {name: shutil.which(name, path=search) for name in need}


def install_hint(missing: list[str]) -> str:
    packages = sorted({PACKAGES.get(m, m) for m in missing})
    return f"apt-get install {' '.join(packages)}"
