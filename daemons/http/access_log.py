"""Viewers and egress from the Varnish front's own log (sans-IO); the nginx front sends sums
instead (front_stats.py).

Behind a front (front.kind), most viewer requests are answered from its cache and never reach
sender-http, so what sender-http counts itself is not who watches. The front logs every request
it answers (varnishncsa, in `FORMAT`: tab-separated, values JSON-escaped with -j so a tab is only
ever a separator) to a pipe that one HTTP worker reads (daemons/http/server.py). `Parser` turns
those bytes into `Record`s; `apply` feeds each to the same viewer definition as a direct request
(`state.session_key` on the media playlist's stream, generation and rendition: the session id,
else a hash of address + user agent), so a request answered from the cache and one forwarded to
sender-http count the same viewer once, and adds the bytes the front sent to the egress counters.

Not counted as viewers: requests the front passed without looking in its cache (other Sender
nodes carrying the distribution key, non-GET), and anything but a 200/304 media playlist — the
same rule as hls_route.py's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import unquote

from daemons.http.hls_route import ROUTE
from daemons.http.state import Counters, ViewerTracker, session_key
from daemons.media import names

# varnishncsa -F: status, body bytes, cache handling, time taken (µs), client address, path,
# query, the player's session header, its user agent (free text last).
FORMAT = "\t".join((
    "%s", "%b", "%{Varnish:handling}x", "%D", "%h", "%U", "%q", "%{X-Playback-Session-Id}i", "%{User-agent}i",
))
FIELDS = 9
MAX_LINE = 16 * 1024  # longer lines (a huge URL or header) are dropped whole, counted as bad
PASSED = "pass"  # Varnish:handling of a request passed without a cache lookup
VIEWER_STATUSES = (200, 304)


@dataclass(frozen=True, slots=True)
class Record:
    status: int
    bytes: int
    handling: str  # hit, miss, hitmiss, hitpass, pass, pipe, synth
    duration_us: int
    client: str
    path: str
    query: str
    session: str  # the X-Playback-Session-Id header, "" when absent
    user_agent: str


def _text(value: str) -> str:
    """A -j escaped value back to text; "-" (absent) to ""."""
    if value == "-":
        return ""
    if "\\" not in value:
        return value
    try:
        text = json.loads(f'"{value}"')
        text.encode("utf-8")  # a lone surrogate (\ud800) stays escaped
    except (ValueError, UnicodeEncodeError):
        return value
    return text


def parse_line(line: bytes) -> Record | None:
    """One log line → a Record, or None when it is not one of ours (wrong field count, bad numbers)."""
    fields = line.split(b"\t")
    if len(fields) != FIELDS:
        return None
    status, size, handling, duration, client, path, query, session, agent = fields
    try:
        status_n, size_n, duration_n = int(status), (0 if size == b"-" else int(size)), int(duration)
    except ValueError:
        return None
    if not (100 <= status_n <= 999 and 0 <= size_n < 1 << 50 and 0 <= duration_n < 1 << 50):
        return None
    query = query.decode("latin-1")
    return Record(status_n, size_n, handling.decode("latin-1"), duration_n, client.decode("latin-1"),
                  path.decode("latin-1"), query[1:] if query.startswith("?") else query,
                  _text(session.decode("latin-1")), _text(agent.decode("latin-1")))


class Parser:
    """Bytes from the log pipe → Records. Keeps a partial last line for the next feed."""

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self.buffer = b""
        self.bad_lines = 0
        self._skipping = False  # inside an overlong line: drop until its end

    def feed(self, data: bytes) -> list[Record]:
        self.buffer += data
        lines = self.buffer.split(b"\n")
        self.buffer = lines.pop()
        out = []
        for line in lines:
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > self.max_line:
                self.bad_lines += 1
                continue
            record = parse_line(line.rstrip(b"\r"))
            if record is None:
                if line.rstrip(b"\r"):
                    self.bad_lines += 1
            else:
                out.append(record)
        if len(self.buffer) > self.max_line:
            self.buffer = b""
            self.bad_lines += 1
            self._skipping = True
        return out


_ROUTE = re.compile(ROUTE.pattern.decode())  # the HLS route on text: one decode less per line
_SESSION = re.compile(r"(?:^|&)session=([^&]*)")


def kind_of(path: str) -> str:
    """What hls_route.py calls a request, from the path's end (cheap: run for every line)."""
    if not path.startswith("/hls/"):
        return "other"
    name = path[path.rfind("/") + 1:]
    if name.endswith(".m4s"):
        return "part" if name.count(".") == 2 else "segment"
    if name == names.PLAYLIST:
        return "playlist"
    if name == names.MASTER:
        return "master"
    if name.endswith(".mp4"):
        return "init"
    return "segment" if name.endswith(".ts") else "hls"


def apply(record: Record, viewers: ViewerTracker, counters: Counters) -> None:
    """One request the front answered: its bytes and counts; a viewer when it is a media playlist."""
    kind = kind_of(record.path)
    counters.count_front(kind, record.status, record.handling, record.bytes)
    if kind != "playlist" or record.status not in VIEWER_STATUSES or record.handling == PASSED:
        return
    m = _ROUTE.fullmatch(record.path)
    if m is None:
        return
    session = _SESSION.findall(record.query)  # sender-http takes the last one, decoded
    sid = unquote(session[-1]) if session else record.session
    viewers.seen(m.group(1), m.group(2), m.group(4), session_key(sid, record.client, record.user_agent))
