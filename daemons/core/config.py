"""Sender's TOML configuration: the schema, its defaults, validation and rendering.

The schema is one table of dotted keys (`rtmp.listen`, `rtmp.limits.max_chunk_size`, …), each
with a type, a default and a one-line description. From it come:

* validation of a parsed file (unknown keys and wrong values are errors naming the key, the bad
  value and what is allowed);
* `render()`, the complete commented file that `sender init` writes and `sender config set`
  rewrites — comments come from the schema, so a rewrite never loses them;
* `parse_value()`, which turns a command-line string into a typed value for `config set`.

No trio, no sockets: the CLI and every daemon read the config through `load()`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import tomli_w

from daemons.core.errors import ConfigError
from daemons.media import names

DEFAULT_CONFIG_PATH = Path("/etc/sender/sender.toml")
CONFIG_ENV = "SENDER_CONFIG"


# --- value kinds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """How one key's values are checked and parsed from a command-line string."""

    name: str  # what is allowed, shown in errors
    check: Callable[[Any], Any]  # returns the normalised value or raises ValueError(reason)
    from_text: Callable[[str], Any]


def _check_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    if "\x00" in v:
        raise ValueError("NUL characters are not allowed")
    return v


def _check_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _bool_from_text(s: str) -> bool:
    low = s.strip().lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false")


def _int_kind(lo: int, hi: int) -> Kind:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer from {lo} to {hi}")
        if not lo <= v <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        return v

    def from_text(s: str) -> int:
        try:
            return int(s.strip().replace("_", ""), 10)
        except ValueError:
            raise ValueError(f"expected an integer from {lo} to {hi}") from None

    return Kind(f"an integer from {lo} to {hi}", check, from_text)


def _float_kind(lo: float, hi: float) -> Kind:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            raise ValueError(f"expected a number from {lo:g} to {hi:g}")
        if not lo <= v <= hi:
            raise ValueError(f"expected a number from {lo:g} to {hi:g}")
        return float(v)

    def from_text(s: str) -> float:
        try:
            return float(s.strip())
        except ValueError:
            raise ValueError(f"expected a number from {lo:g} to {hi:g}") from None

    return Kind(f"a number from {lo:g} to {hi:g}", check, from_text)


def parse_listen(value: str) -> tuple[str, int]:
    """Split "HOST:PORT" (IPv6 as "[::1]:PORT") into host and port; ValueError if malformed."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]\s]+):(\d{1,5})", value or "")
    if not m:
        raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:1935 or [::]:1935")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError("port must be 0-65535")
    if m.group(1):
        ipaddress.IPv6Address(host)  # raises ValueError
    elif not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        raise ValueError("expected HOST:PORT with a hostname or IP address")
    return host, port


def _check_listen(v: Any) -> str:
    parse_listen(_check_str(v))
    return v


def _check_optional_listen(v: Any) -> str:
    if _check_str(v) == "":
        return v
    return _check_listen(v)


def _check_url(v: Any) -> str:
    _check_str(v)
    if v == "":
        return v
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL, or \"\" for none")
    return v.rstrip("/")


def _check_path(v: Any) -> str:
    _check_str(v)
    return v


def _check_str_list(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError("expected a list of strings")
    return list(v)


def _list_from_text(s: str) -> list:
    s = s.strip()
    if s.startswith("["):
        try:
            return tomllib.loads(f"v = {s}")["v"]
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"not a TOML array ({e})") from None
    return [x.strip() for x in s.split(",") if x.strip()]


def _check_cidrs(v: Any) -> list[str]:
    out = _check_str_list(v)
    for item in out:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return out


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?")
_UNIT_S = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(v: Any) -> float:
    """Seconds from a duration: a number of seconds or a string like "90s", "15m", "24h", "7d"."""
    if isinstance(v, bool):
        raise ValueError("expected a duration such as 90s, 15m, 24h or 7d")
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError("a duration cannot be negative")
        return float(v)
    m = _DURATION.fullmatch(str(v).strip())
    if not m:
        raise ValueError("expected a duration such as 90s, 15m, 24h or 7d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def _check_duration(v: Any) -> Any:
    parse_duration(v)
    return v


def _duration_from_text(s: str) -> Any:
    parse_duration(s)
    try:
        return int(s)
    except ValueError:
        return s.strip()


NEVER = "never"


def parse_grace(v: Any) -> float | None:
    """Seconds from a grace period: a duration, or "never" (None: wait without end)."""
    if isinstance(v, str) and v.strip().lower() == NEVER:
        return None
    return parse_duration(v)


def _check_grace(v: Any) -> Any:
    parse_grace(v)
    return v


def _grace_from_text(s: str) -> Any:
    if s.strip().lower() == NEVER:
        return NEVER
    return _duration_from_text(s)


def _enum_kind(*choices: str) -> Kind:
    allowed = " | ".join(choices)

    def check(v: Any) -> str:
        if v not in choices:
            raise ValueError(f"expected one of {allowed}")
        return v

    return Kind(f"one of {allowed}", check, lambda s: s.strip())


RENDITION_KINDS = ("source", "transcode")
_RENDITION_NAME = names.RENDITION_RE  # a directory in the spool and a segment of HLS URLs
_RENDITION_FIELDS: dict[str, Kind]  # filled below, after the simple kinds exist


def check_rendition(r: Any) -> dict:
    """One rendition of a ladder: {name, kind, width, height, video_bitrate, …}."""
    if not isinstance(r, dict):
        raise ValueError("each rendition must be a table such as {name = \"source\", kind = \"source\"}")
    unknown = set(r) - set(_RENDITION_FIELDS)
    if unknown:
        raise ValueError(f"unknown rendition field {sorted(unknown)[0]!r}; allowed: {', '.join(_RENDITION_FIELDS)}")
    for req in ("name", "kind"):
        if req not in r:
            raise ValueError(f"a rendition needs {req!r}")
    out = {}
    for k, v in r.items():
        try:
            out[k] = _RENDITION_FIELDS[k].check(v)
        except ValueError as e:
            raise ValueError(f"rendition field {k!r}: {e}") from None
    if not _RENDITION_NAME.fullmatch(out["name"]):
        raise ValueError("a rendition name is 1-32 of a-z, 0-9, _ and -, starting with a letter or digit")
    if out["kind"] == "transcode" and not ("height" in out and "video_bitrate" in out):
        raise ValueError(f"transcoded rendition {out['name']!r} needs height and video_bitrate")
    return out


def _check_ladder(v: Any) -> list[dict]:
    if not isinstance(v, list) or not v:
        raise ValueError("expected a non-empty array of rendition tables")
    out = [check_rendition(r) for r in v]
    names = [r["name"] for r in out]
    if len(set(names)) != len(names):
        raise ValueError("rendition names must be unique")
    return out


def _check_size(v: Any) -> str:
    if not re.fullmatch(r"[1-9][0-9]*[kKmMgGtT]?", _check_str(v)):
        raise ValueError("expected a size such as 512m or 2g")
    return v


STR = Kind("a string", _check_str, lambda s: s)
SIZE = Kind("a size (bytes, or with k, m, g, t: 512m, 2g)", _check_size, lambda s: s.strip())
BOOL = Kind("true or false", _check_bool, _bool_from_text)
LISTEN = Kind("HOST:PORT", _check_listen, lambda s: s.strip())
OPTIONAL_LISTEN = Kind('HOST:PORT, or "" for off', _check_optional_listen, lambda s: s.strip())
URL = Kind('an http(s) URL, or ""', _check_url, lambda s: s.strip())
PATH = Kind("a filesystem path", _check_path, lambda s: s)
STR_LIST = Kind("a list of strings", _check_str_list, _list_from_text)
CIDRS = Kind("a list of IP addresses or CIDR networks", _check_cidrs, _list_from_text)
DURATION = Kind("a duration (seconds, or 90s / 15m / 24h / 7d)", _check_duration, _duration_from_text)
GRACE = Kind('a duration (seconds, or 90s / 15m / 24h), or "never"', _check_grace, _grace_from_text)
LADDER = Kind(
    "an array of rendition tables",
    _check_ladder,
    lambda s: tomllib.loads(f"v = {s}")["v"],
)
_RENDITION_FIELDS = {
    "name": STR,
    "kind": _enum_kind(*RENDITION_KINDS),
    "width": _int_kind(16, 7680),
    "height": _int_kind(16, 4320),
    "video_bitrate": _int_kind(50_000, 100_000_000),
    "audio_bitrate": _int_kind(8_000, 1_000_000),
    "frame_rate": _float_kind(1, 240),
    "video_codec": STR,
    "audio_codec": STR,
}


# --- the schema --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    kind: Kind
    default: Any
    doc: str


# Defaults that depend on where the install lives are written by `sender init`; these are the
# system-wide ones (a Debian-style install under /etc, /var/lib and /var/cache).
SCHEMA: dict[str, Key] = {
    "node.id": Key(STR, "node-1", "This node's endpoint id in the store (its MediaEndpoint)."),
    "node.name": Key(STR, "Sender", "Human-readable name of this node."),
    "node.public_base_url": Key(URL, "http://127.0.0.1:8080", "Base URL viewers and other nodes use to reach this node's HTTP daemon."),
    "node.state_dir": Key(PATH, "/var/lib/sender", "State directory: the install secret, daemons' local stats."),
    "rtmp.listen": Key(LISTEN, "0.0.0.0:1935", "RTMP listen address (HOST:PORT). OBS: server rtmp://HOST/live, stream key = the key."),
    "rtmp.rtmps_listen": Key(OPTIONAL_LISTEN, "", 'RTMPS listen address, e.g. "0.0.0.0:1936"; "" turns RTMPS off. Needs tls_cert and tls_key.'),
    "rtmp.tls_cert": Key(PATH, "", "PEM certificate chain for RTMPS."),
    "rtmp.tls_key": Key(PATH, "", "PEM private key for RTMPS."),
    "rtmp.max_publishers": Key(_int_kind(1, 10_000), 64, "Most publishing (authenticated) RTMP connections at once; a publish past it is refused."),
    "rtmp.max_pending_connections": Key(_int_kind(1, 100_000), 256, "Most RTMP connections at once that have not published yet (handshaking, connecting); they never take a publisher's slot. When full, a new connection closes the oldest pending one of the address holding the most."),
    "rtmp.max_pending_per_address": Key(_int_kind(1, 100_000), 8, "Most not-yet-publishing RTMP connections from one source address; more are closed at accept."),
    "rtmp.reconnect_grace": Key(GRACE, "60s", 'How long a broadcast whose publisher left stays live for it to come back (the same generation goes on); then it ends like `sender stream stop`. "0s" ends it at once, "never" keeps it live until an explicit stop. Per stream: `sender stream start --reconnect-grace`.'),
    "rtmp.allow_takeover": Key(BOOL, False, "Let a new publisher with a valid key replace the connected one (else it is refused)."),
    "rtmp.media_thread": Key(BOOL, True, "Read, package and write steady native-backend publishes in one media thread of sender-ingest instead of its event loop: about half the CPU per stream. Off: every read goes through the event loop (for comparison)."),
    "rtmp.record": Key(BOOL, False, "Also record each publisher session as FLV in its generation's spool directory (ingest/NNNN.flv)."),
    "rtmp.auth_failures_per_minute": Key(_int_kind(1, 100_000), 10, "Refused publish attempts (bad keys, unknown applications) allowed per source address within rtmp.auth_lockout_s before the address is locked out. Everyone behind one NAT address shares this count."),
    "rtmp.auth_lockout_s": Key(_float_kind(1, 86_400), 60.0, "The window over which refused publish attempts are counted per source address; a locked-out address is let in again once its oldest failures are this old."),
    "rtmp.limits.max_chunk_size": Key(_int_kind(128, 16_777_215), 65536, "Largest chunk size a publisher may set (bytes)."),
    "rtmp.limits.max_message_size": Key(_int_kind(1024, 268_435_456), 8 * 1024 * 1024, "Largest RTMP message accepted (bytes)."),
    "rtmp.limits.max_chunk_streams": Key(_int_kind(4, 65_599), 64, "Most chunk streams one connection may open."),
    "rtmp.limits.handshake_timeout_s": Key(_float_kind(0.1, 600), 5.0, "Seconds from accept a client has to complete the TLS and RTMP handshakes, connect, and have its stream key accepted; else it is closed. ffmpeg and GStreamer need four round trips after the TCP connect (measured), TLS one or two more."),
    "rtmp.limits.idle_timeout_s": Key(_float_kind(0.1, 3600), 30.0, "Seconds without any byte from a publisher before it is dropped."),
    "http.listen": Key(LISTEN, "0.0.0.0:8080", "HTTP listen address (HLS, watch page, APIs, metrics)."),
    "http.trusted_proxies": Key(CIDRS, [], "Proxies whose X-Forwarded-* headers are honoured (addresses or CIDRs)."),
    "http.max_connections": Key(_int_kind(1, 1_000_000), 4096, "Most concurrent HTTP connections per worker. At the limit a new connection closes the one that has waited longest for a request head (slowloris, idle keep-alive); while every connection has a request in progress, new ones wait in the kernel's backlog."),
    "http.max_connections_per_address": Key(_int_kind(1, 1_000_000), 256, "Most concurrent HTTP connections from one client address, per worker (http.trusted_proxies are not limited); more are closed at accept."),
    "http.request_head_timeout_s": Key(_float_kind(0.5, 600), 10.0, "Seconds a client has to send a whole request head: from connecting for its first request, from the first byte of each next one on a keep-alive connection (the wait before that byte is http.keep_alive_s); else the connection is closed."),
    "http.max_request_body": Key(_int_kind(1024, 1 << 30), 1024 * 1024, "Largest request body accepted (bytes)."),
    "http.workers": Key(_int_kind(1, 256), 1, "HTTP worker processes sharing the listen port (SO_REUSEPORT); one per core is a good start."),
    "http.keep_alive_s": Key(_float_kind(1, 3600), 30.0, "Idle keep-alive connections are closed after this long."),
    "http.file_cache_bytes": Key(_int_kind(0, 1 << 40), 256 * 1024 * 1024, "Memory per worker for the live edge's parts and segments."),
    "http.viewer_window_s": Key(_float_kind(1, 3600), 15.0, "A player counts as a viewer while it fetched a playlist this recently."),
    "http.telemetry_events_per_minute": Key(_int_kind(1, 1_000_000), 120, "Player telemetry events accepted per client address per minute."),
    "http.telemetry_keep_events": Key(_int_kind(0, 100_000_000), 10_000, "Recent player events kept in the store (oldest dropped)."),
    "http.playback_token_ttl": Key(DURATION, "6h", "Default lifetime of playback tokens for private streams."),
    "front.kind": Key(_enum_kind("", "nginx"), "", 'The front tier Sender runs before sender-http: "nginx" (nginx answers every public viewer request: media from the spool, playlists and their blocking reloads from what sender-front pushes, TLS and HTTP/2 itself), or "" for none (sender-http answers viewers itself). Set by `sender install --front nginx` / `sender up --front nginx`.'),
    "front.listen": Key(OPTIONAL_LISTEN, "0.0.0.0:443", 'HTTPS listen address of the front (TLS, HTTP/2 and HTTP/1.1); "" for no HTTPS. Needs front.tls_cert and front.tls_key.'),
    "front.http_listen": Key(OPTIONAL_LISTEN, "0.0.0.0:80", 'Plain HTTP listen address of the front; "" for none. With HTTPS on and front.redirect_http, it only redirects to HTTPS (and passes ACME http-01 challenges to 127.0.0.1:front.acme_port).'),
    "front.proxy_listen": Key(LISTEN, "127.0.0.1:6086", "Loopback address of the front's control listener: where sender-front pushes each playlist version and sender-http pulls the front's counts (only with the install's key)."),
    "front.tls_cert": Key(PATH, "", "PEM certificate chain of the HTTPS front (e.g. a copy of certbot's fullchain.pem readable by the sender user)."),
    "front.tls_key": Key(PATH, "", "PEM private key of the HTTPS front."),
    "front.server_name": Key(STR, "", 'Host name viewers use (e.g. live.example.com): the public https base URL of playback URLs, the watch page and the OBS hint. "" = the Host each request names.'),
    "front.redirect_http": Key(BOOL, True, "With HTTPS on, answer plain HTTP requests with a redirect to HTTPS (301) instead of serving them."),
    "front.acme_port": Key(_int_kind(1, 65535), 8402, "Loopback port an ACME client answers http-01 challenges on (certbot --standalone --http-01-address 127.0.0.1 --http-01-port PORT); the front passes /.well-known/acme-challenge/ there."),
    "front.access_log": Key(PATH, "", 'Also write one JSON line per viewer request to this file (time, address, request, status, bytes, handling, request time, session id, user agent), buffered, for the admin\'s own tools; "" = none. Sender counts viewers and egress without it. Reopened on SIGUSR1 to nginx (logrotate: docs/runbooks/front.md).'),
    "spool.root": Key(PATH, "/var/cache/sender/spool", "Where parts, segments and playlists are written."),
    "spool.live_window_segments": Key(_int_kind(3, 10_000), 30, "Segments listed in a live playlist: viewers can seek back this far (30 × 2 s = a minute), and LL-HLS delta updates (_HLS_skip) leave out all but the last 12 s of it."),
    "spool.ended_retention": Key(DURATION, "24h", "How long an ended generation's files are kept (e.g. 90s, 15m, 24h, 7d)."),
    "store.path": Key(PATH, "/var/lib/sender/sender.db", "SQLite store: streams, keys, generations, endpoints, snapshots."),
    "store.busy_timeout_ms": Key(_int_kind(0, 600_000), 5000, "How long a writer waits for another process's transaction (ms)."),
    "backend.kind": Key(_enum_kind("ffmpeg", "native"), "native", 'Media backend of the source rendition: "native" (Sender writes CMAF from the RTMP packets itself: no process, no frame held back, HEVC and AV1 from Enhanced RTMP) or "ffmpeg" (an ffmpeg remuxes each publish; legacy FLV codecs only). Transcoded renditions always use ffmpeg.'),
    "backend.ffmpeg": Key(STR, "ffmpeg", "ffmpeg executable (name on PATH or absolute path)."),
    "backend.extra_args": Key(STR_LIST, [], "Extra ffmpeg arguments, inserted before the outputs."),
    "backend.restart_backoff_max_s": Key(_float_kind(0.1, 600), 10.0, "Longest wait between restarts of a crashed ffmpeg."),
    "hls.segment_target_s": Key(_float_kind(0.5, 30), 2.0, "Target segment duration; segments cut at the first keyframe at or after it."),
    "hls.part_target_s": Key(_float_kind(0.05, 5), 0.2, "Target LL-HLS part duration. Parts hold whole frames and may run 5 % longer (PART-TARGET is this plus 5 %: six frames at 29.97 fps are 200.2 ms)."),
    "hls.low_latency": Key(BOOL, True, "Publish LL-HLS parts, preload hints and blocking reload."),
    "recording.enabled": Key(BOOL, False, "Record every broadcast: keep all its segments (a DVR playlist while live, a VOD playlist once ended). A stream's own setting beats it (`sender stream update --record/--no-record`)."),
    "recording.keep": Key(DURATION, "7d", "How long an ended recording is kept (oldest removed first)."),
    "recording.max_bytes": Key(_int_kind(0, 1 << 50), 0, "Most bytes all recordings may take in the spool; past it the oldest ended ones are removed (0 = no limit). A live generation is never removed."),
    "thumbnails.enabled": Key(BOOL, True, "Keep a JPEG of a recent keyframe for each live stream (the index, admin and watch pages show it)."),
    "thumbnails.interval_s": Key(_float_kind(1, 3600), 10.0, "Seconds between thumbnails of a live stream."),
    "thumbnails.width": Key(_int_kind(32, 3840), 640, "Width of a thumbnail in pixels (the height follows the picture)."),
    "restream.backoff_max_s": Key(_float_kind(1, 3600), 30.0, "Longest wait between attempts to reach a restream target that refuses or drops the stream."),
    "restream.max_targets": Key(_int_kind(0, 100), 8, "Most restream targets one stream may have."),
    "renditions.ladder": Key(LADDER, [{"name": "source", "kind": "source"}], "Default ladder for new streams. Example transcode: {name = \"480p\", kind = \"transcode\", height = 480, video_bitrate = 1200000, audio_bitrate = 96000}."),
    "health.max_playlist_age_s": Key(_float_kind(0.1, 3600), 6.0, "A playlist older than this makes a source stale."),
    "health.max_segment_lag": Key(_int_kind(0, 10_000), 3, "Segments an edge may trail its source before it is degraded."),
    "health.max_error_rate": Key(_float_kind(0, 1), 0.05, "Share of failed fetches that makes a source degraded."),
    "health.max_viewers": Key(_int_kind(0, 100_000_000), 0, "Viewers above which an endpoint is overloaded (0 = no limit)."),
    "health.max_egress_bps": Key(_int_kind(0, 10**12), 0, "Egress above which an endpoint is overloaded (0 = no limit)."),
    "health.stats_stale_after_s": Key(_float_kind(0.5, 3600), 15.0, "Local stats older than this make a snapshot degraded."),
    "distribution.key_file": Key(PATH, "", "File holding the key shared by an origin and its edges (32+ characters): it authenticates node-to-node requests and signs playback tokens that every node accepts. \"\" = this node neither feeds nor follows other Sender nodes."),
    "edge_fill.discovery_interval_s": Key(_float_kind(0.1, 600), 1.0, "How often an edge asks its sources which generations are live (and how healthy they are)."),
    "edge_fill.request_timeout_s": Key(_float_kind(0.1, 600), 5.0, "Timeout of one request to a source for a file or a listing (blocking playlist reloads wait longer)."),
    "edge_fill.max_fetches": Key(_int_kind(1, 1000), 8, "Most files one generation fetches from its source at once (all its renditions together)."),
    "edge_fill.pull_through": Key(BOOL, True, "sender-http fetches a missing part, segment or init file from the edge's source once (concurrent misses wait on one fetch) and keeps it."),
    "snapshot.interval_s": Key(_float_kind(0.1, 3600), 5.0, "Seconds between endpoint snapshots."),
    "snapshot.history_limit": Key(_int_kind(1, 10_000_000), 20_000,
                                  "EndpointHistory rows kept per endpoint (oldest dropped): one row per interval for "
                                  "the endpoint and one per live broadcast, so the default keeps the admin page's "
                                  "hour of charts for up to 26 broadcasts at a 5 s interval (~4 MB)."),
    "control_plane.report_url": Key(URL, "", 'Where snapshots are POSTed (the control plane); "" for none.'),
    "control_plane.signing_key_file": Key(PATH, "", "File holding the shared HMAC key that signs reports."),
    "management.token_verifiers": Key(STR_LIST, [], "Verifiers of management API tokens (create with `sender token create`; never the tokens)."),
    "management.auth_failures_per_minute": Key(_int_kind(1, 100_000), 30, "Failed management API logins per client address per minute before answers turn 429."),
    "log.level": Key(_enum_kind("debug", "info", "warning", "error"), "info", "Daemon log level."),
}

SECTION_DOCS = {
    "node": "This node: who it is and where it is reached.",
    "rtmp": "RTMP/RTMPS ingest (sender-ingest).",
    "rtmp.limits": "Protocol limits; a publisher breaking one is disconnected.",
    "http": "HTTP serving (sender-http).",
    "front": "The front tier: HTTPS, HTTP/2 and the cache that answers viewers before sender-http (docs/runbooks/front.md).",
    "spool": "Media files: parts, segments, playlists.",
    "store": "The SQLite store.",
    "backend": "The media backend: Sender's own (native) or ffmpeg; ffmpeg also transcodes.",
    "hls": "HLS packaging.",
    "renditions": "The rendition ladder.",
    "recording": "Recordings of broadcasts (replays).",
    "thumbnails": "A picture of each live stream.",
    "restream": "Pushing a stream to other platforms (YouTube, Twitch, any RTMP/RTMPS server).",
    "health": "Thresholds that classify an endpoint healthy / degraded / stale / overloaded.",
    "distribution": "Origin and edge nodes: the key they share.",
    "edge_fill": "Edge nodes: following sources into the local spool (sender-edge-fill).",
    "snapshot": "Endpoint snapshots (sender-snapshot).",
    "control_plane": "Reports to the control plane.",
    "management": "The management API.",
    "log": "Logging.",
}


def defaults() -> dict[str, Any]:
    return {k: _copy(v.default) for k, v in SCHEMA.items()}


def _copy(v: Any) -> Any:
    if isinstance(v, list):
        return [dict(x) if isinstance(x, dict) else x for x in v]
    return v


# --- the Config value --------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """A validated configuration: every schema key with a value. Index with dotted keys."""

    values: dict[str, Any]
    path: Path | None = None
    explicit: frozenset[str] = field(default_factory=frozenset)  # keys the file set itself

    def __getitem__(self, key: str) -> Any:
        if key not in self.values:
            raise KeyError(key)
        return self.values[key]

    def listen(self, key: str) -> tuple[str, int]:
        return parse_listen(self[key])

    def seconds(self, key: str) -> float:
        return parse_duration(self[key])

    def with_value(self, key: str, value: Any) -> "Config":
        values = dict(self.values)
        values[key] = check_value(key, value)
        return Config(values, self.path, self.explicit | {key})

    def nested(self) -> dict:
        """The values as nested tables, the shape of the TOML file."""
        out: dict = {}
        for key, value in self.values.items():
            *tables, leaf = key.split(".")
            node = out
            for t in tables:
                node = node.setdefault(t, {})
            node[leaf] = value
        return out


def require_key(key: str) -> Key:
    spec = SCHEMA.get(key)
    if spec is None:
        raise ConfigError(f"unknown config key {key!r}{_suggest(key)}")
    return spec


def check_value(key: str, value: Any) -> Any:
    spec = require_key(key)
    try:
        return spec.kind.check(value)
    except ValueError as e:
        reason = str(e)
        if spec.kind.name not in reason:  # e.g. "expected a string" for a HOST:PORT key
            reason += f" (allowed: {spec.kind.name})"
        raise ConfigError(f"{key}: {_show(value)} is not allowed: {reason}") from None


def parse_value(key: str, text: str) -> Any:
    """A command-line string typed by the schema (for `sender config set KEY VALUE`)."""
    spec = require_key(key)
    try:
        value = spec.kind.from_text(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{key}: {text!r} is not allowed: {e}") from None
    return check_value(key, value)


def _show(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, SCHEMA, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def flatten(tables: dict, prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables → dotted keys. A table that is a schema leaf (none are) stays a value."""
    out: dict[str, Any] = {}
    for k, v in tables.items():
        dotted = f"{prefix}{k}"
        if isinstance(v, dict) and dotted not in SCHEMA:
            if not any(s.startswith(dotted + ".") for s in SCHEMA):
                raise ConfigError(f"unknown config section [{dotted}]{_suggest(dotted)}")
            out.update(flatten(v, dotted + "."))
        else:
            out[dotted] = v
    return out


def from_text(text: str, path: Path | None = None) -> Config:
    where = str(path) if path else "config"
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None
    given = flatten(tables)
    values = defaults()
    for key, value in given.items():
        try:
            values[key] = check_value(key, value)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e.message}") from None
    return Config(values, path, frozenset(given))


def resolve_path(cli_path: str | os.PathLike | None = None) -> Path:
    """Which config file: --config, else $SENDER_CONFIG, else /etc/sender/sender.toml."""
    if cli_path:
        return Path(cli_path)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    return DEFAULT_CONFIG_PATH


def load(path: str | os.PathLike | None = None) -> Config:
    p = resolve_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no config at {p}: run `sender init` (or `sender init --dir DIR` and set {CONFIG_ENV}=DIR/sender.toml)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {p}: {e}") from None
    return from_text(text, p)


# --- rendering ---------------------------------------------------------------------------------


def render(config: Config) -> str:
    """The whole file, every key with its doc as a comment, grouped in schema order."""
    lines = [
        "# Sender configuration. Every key is listed with its default or current value.",
        "# Change values with `sender config set KEY VALUE` or by editing; `sender config validate` checks.",
        "",
    ]
    current_table = None
    for key, spec in SCHEMA.items():
        table, leaf = key.rsplit(".", 1)
        if table != current_table:
            if current_table is not None:
                lines.append("")
            if table in SECTION_DOCS:
                lines.append(f"# {SECTION_DOCS[table]}")
            lines.append(f"[{table}]")
            current_table = table
        lines.append(f"# {spec.doc}")
        lines.append(_toml_line(leaf, config.values[key]))
    return "\n".join(lines) + "\n"


def _toml_line(leaf: str, value: Any) -> str:
    """`leaf = value` under the current table. tomli_w writes a long array of tables as
    `[[leaf]]` blocks, which would land at the top level here, so those stay inline tables."""
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        items = "".join(f"    {_inline_table(v)},\n" for v in value)
        return f"{_toml_key(leaf)} = [\n{items}]"
    return tomli_w.dumps({leaf: value}).rstrip("\n")


def _toml_key(key: str) -> str:
    return tomli_w.dumps({key: 0}).rsplit(" = ", 1)[0]


def _inline_table(table: dict) -> str:
    fields = ", ".join(f"{_toml_key(k)} = {tomli_w.dumps({'v': v}).rstrip(chr(10))[4:]}" for k, v in table.items())
    return f"{{ {fields} }}"


def write(config: Config, path: Path) -> None:
    """Write atomically (temp file + rename), keeping the file's mode."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(config), encoding="utf-8")
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777)
    except FileNotFoundError:
        os.chmod(tmp, 0o640)
    os.replace(tmp, path)
