"""Small server-rendered pictures of numbers for the HTML pages: SVG sparklines and relative times.

Pure functions returning HTML text, no script: the admin page stays a no-JavaScript page and its
strict CSP holds (SVG presentation attributes and CSS classes from the stylesheet, no inline style).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from html import escape

WIDTH, HEIGHT, PAD = 240, 56, 4


def sparkline(points: Sequence[tuple[float, float]], *, start: float, end: float, bucket_s: float, what: str,
              fmt: Callable[[float], str], kind: str) -> str:
    """An inline SVG line of (unix time, value) points over [start, end]: one dot per point with
    its value and time on hover, the line broken where points are more than two buckets apart (no
    broadcast then), the y axis from 0 to the peak. `what` names the series for screen readers."""
    span = max(end - start, 1e-9)
    shown = [(t, v) for t, v in points if start <= t <= end]
    peak = max((v for _, v in shown), default=0) or 1

    def xy(t: float, v: float) -> tuple[float, float]:
        return (round((t - start) / span * WIDTH, 1), round(HEIGHT - PAD - v / peak * (HEIGHT - 2 * PAD), 1))

    path, dots, previous = [], [], None
    for t, v in shown:
        x, y = xy(t, v)
        path.append(f"{'L' if previous is not None and t - previous <= 2 * bucket_s else 'M'}{x} {y}")
        dots.append(f'<circle class="dot" cx="{x}" cy="{y}" r="2"><title>{escape(fmt(v))} at '
                    f'{_clock(t)}</title></circle>')
        previous = t
    if shown:
        latest = shown[-1][1]
        summary = f"{what} over the last hour: now {fmt(latest)}, peak {fmt(max(v for _, v in shown))}"
    else:
        summary = f"{what} over the last hour: no data"
    line = f'<path class="line" d="{" ".join(path)}" fill="none"/>' if path else \
        f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2 + 4}" text-anchor="middle">no data in the last hour</text>'
    return (f'<svg class="chart" data-kind="{escape(kind)}" data-points="{len(shown)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(summary)}">'
            f'<title>{escape(summary)}</title>'
            f'<line class="base" x1="0" y1="{HEIGHT - PAD}" x2="{WIDTH}" y2="{HEIGHT - PAD}"/>'
            f'{line}{"".join(dots)}</svg>')


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M UTC")


def parse_time(iso: str) -> datetime:
    """A store time (ISO 8601, Z or an offset) as an aware datetime."""
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def relative(then: datetime, now: datetime) -> str:
    """'just now', '45 s ago', '2 min ago', '3 h ago', '5 days ago'; 'in 30 s' ahead of now."""
    seconds = (now - then).total_seconds()
    ahead, seconds = seconds < 0, abs(seconds)
    if seconds < 5:
        return "just now"
    for limit, unit, size in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if seconds < limit:
            text = f"{int(seconds // size)} {unit}"
            break
    else:
        days = int(seconds // 86400)
        text = f"{days} day{'s' if days != 1 else ''}"
    return f"in {text}" if ahead else f"{text} ago"


def when(iso: str | None, now: datetime, *, never: str = "never") -> str:
    """A <time> showing `iso` relative to now, with the exact UTC time on hover."""
    if not iso:
        return escape(never)
    try:
        then = parse_time(iso)
    except ValueError:
        return escape(iso)
    exact = then.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'<time datetime="{escape(iso)}" title="{exact}">{escape(relative(then, now))}</time>'


def duration(seconds: float) -> str:
    """'42 s', '12 min', '1 h 05 min'."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def mbps(bps: float) -> str:
    return f"{bps / 1e6:.2f} Mb/s"
