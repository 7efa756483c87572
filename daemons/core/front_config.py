"""Cache and front configuration: the Varnish VCL Sender prints for an admin's own Varnish
(`sender cache-config varnish`), the public base URL through the front tier, and the programs
the front needs (its nginx.conf: daemons/core/front_nginx.py).

What makes LL-HLS cacheable (docs/arch.md, "HTTP serving"): generation-scoped URLs, immutable
media, blocking-reload answers that never change for one (_HLS_msn, _HLS_part, _HLS_skip), and
`no-store` on anything that may change (404s for future objects, 503s). The printed VCL keys on
the path plus the LL-HLS arguments and the playback token — never the player's session id — and
Varnish's request coalescing parks concurrent misses on the object's waiting list, woken the
moment the one fetch lands (nginx's proxy_cache_lock re-polls every 500 ms instead: fatal to
200 ms parts; docs/performance.md, "Front tier").

Pure functions of the config: no I/O.
"""

from __future__ import annotations

import os
import shutil

from daemons.core import config as config_mod
from daemons.core.config import Config

# The query arguments that name an HLS object: what the cache key holds besides the path.
KEY_ARGS = ("_HLS_msn", "_HLS_part", "_HLS_skip", "token")
# The only other argument sender-http reads under /hls/: the player's session id (viewer counts).
SESSION_ARG = "session"


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
        set beresp.grace = {media_grace};
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
"""

PRINTED_HEADER = """\
# sender cache-config varnish — a Varnish (7.x) cache in front of sender-http at {upstream}.
# Install as {vcl_path}, check with `varnishd -C -f {vcl_path}`, and run
#   {command}
# (Debian: `systemctl edit varnish` and put that in ExecStart, after -F).
# Generated by Sender; regenerate instead of editing when Sender's URLs change."""

# Varnish speaks plain HTTP: behind a TLS terminator the printed config is told "https" by hand.
PRINTED_SCHEME = """\
    # Every request goes to sender-http saying who asked (Varnish appends the client's address
    # to X-Forwarded-For itself). Varnish speaks plain HTTP: behind a TLS terminator, say "https".
    set req.http.X-Forwarded-Proto = "http";
"""

def _vcl_take_arg(arg: str) -> str:
    """VCL appending `&arg=value` (the last occurrence, as sender-http reads it) to X-Sender-Args."""
    return (f'    if (req.url ~ "[?&]{arg}=") {{\n'
            f'        set req.http.X-Sender-Args = req.http.X-Sender-Args + "&{arg}=" + '
            f'regsub(req.url, "^.*[?&]{arg}=([^&]*).*$", "\\1");\n'
            f'    }}\n')


def _vcl(*, header: str, upstream: str, target_duration_s: int, scheme: str, hit_for_miss_s: int = 1,
         media_grace: str = "1h") -> str:
    host, port = split_upstream(upstream)
    return VCL_TEMPLATE.format(
        header=header, host=host, port=port, timeout_s=upstream_timeout_seconds(target_duration_s),
        hit_for_miss_s=hit_for_miss_s, media_grace=media_grace, scheme=scheme,
        key_args="".join(_vcl_take_arg(arg) for arg in KEY_ARGS), session_arg=_vcl_take_arg(SESSION_ARG),
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


SBIN_DIRS = ("/usr/sbin", "/sbin")  # Debian puts nginx there, often not on a user's PATH


# nginx's Lua module (Debian: libnginx-mod-http-lua, which brings the NDK module) and the
# lua-resty-core library its ngx.semaphore comes from: checked as files, named like programs.
NGINX_LUA = {"ngx_http_lua_module": "/usr/lib/nginx/modules/ngx_http_lua_module.so",
             "lua-resty-core": "/usr/share/lua/5.1/ngx/semaphore.lua"}
PACKAGES = {"nginx": "nginx",
            "ngx_http_lua_module": "libnginx-mod-http-lua", "lua-resty-core": "lua-resty-core"}


def binaries(cfg: Config) -> dict[str, str | None]:
    """What the front runs: name → path (None when not installed); {} without a front."""
    if cfg["front.kind"] != "nginx":
        return {}
    # Debian puts nginx in /usr/sbin, which a user's PATH often lacks.
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    found = {"nginx": shutil.which("nginx", path=search)}
    return found | {name: (path if os.path.exists(path) else None) for name, path in NGINX_LUA.items()}


def install_hint(missing: list[str]) -> str:
    packages = sorted({PACKAGES.get(m, m) for m in missing})
    return f"apt-get install {' '.join(packages)}"
