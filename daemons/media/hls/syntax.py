"""The lexical layer of playlists (RFC 8216bis 4.1 "Definition of a Playlist", 4.2
"Attribute Lists"): how values are written and read back.

Writing and reading live side by side so that the two stay exact inverses:

* seconds are kept to 10 µs (five decimals), the precision Sender writes; a value is
  quantized once, when a model is built, so ``render`` → ``parse`` gives back equal values;
* dates are UTC with milliseconds and a ``Z`` (4.4.4.6 asks for millisecond accuracy);
* quoted-strings must not contain ``"``, CR or LF (4.2), and no playlist line may carry a
  control character (4.1), so every string that lands in a playlist is checked here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from .errors import PlaylistError

# decimal-integer: 0 .. 2^64-1 (4.2).
MAX_DECIMAL_INTEGER = 2**64 - 1
# Seconds beyond this are nonsense for a live stream and would lose the 10 µs grid in a double.
MAX_SECONDS = 1e9
SECONDS_DECIMALS = 5
FRAME_RATE_DECIMALS = 3  # 4.4.6.2: FRAME-RATE "rounded to three decimal places"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WHITESPACE = re.compile(r"\s")
_DECIMAL_INTEGER = re.compile(r"[0-9]{1,20}")
_DECIMAL_FLOAT = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_ATTRIBUTE_NAME = re.compile(r"[A-Z0-9-]+")
_UNQUOTED_VALUE = re.compile(r"[^\",\s]+")


# -- validating values that go into a playlist -------------------------------------------

def check_int(name: str, value: object, minimum: int = 0) -> int:
    """An integer field: a real ``int`` (not ``bool``) within decimal-integer range."""
    if type(value) is not int:
        raise ValueError(f"{name} must be an int, not {type(value).__name__}")
    if not minimum <= value <= MAX_DECIMAL_INTEGER:
        raise ValueError(f"{name} must be between {minimum} and 2^64-1, got {value}")
    return value


def check_seconds(name: str, value: object) -> float:
    """A duration or offset in seconds: finite, non-negative, quantized to 10 µs."""
    if type(value) not in (int, float):
        raise ValueError(f"{name} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)  # type: ignore[arg-type]
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{name} must be finite, got {seconds}")
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, got {seconds}")
    if seconds >= MAX_SECONDS:
        raise ValueError(f"{name} is absurdly large: {seconds}")
    return round(seconds, SECONDS_DECIMALS)


def check_text(name: str, value: object) -> str:
    """Any string written into a playlist: non-empty, no control characters (4.1)."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    if _CONTROL.search(value):
        raise ValueError(f"{name} contains a control character or line break: {value!r}")
    return value


def check_quoted(name: str, value: object) -> str:
    """The content of a quoted-string attribute value: no ``"``, CR or LF (4.2).

    Commas are fine inside a quoted-string; the attribute-list syntax quotes them away.
    """
    text = check_text(name, value)
    if '"' in text:
        raise ValueError(f"{name} must not contain a double quote: {text!r}")
    return text


def check_uri(name: str, value: object) -> str:
    """A URI, in a URI line or a quoted-string: as ``check_quoted``, plus no whitespace
    (a URI carries it percent-encoded) and no leading ``#`` (that line would be a tag)."""
    text = check_quoted(name, value)
    if _WHITESPACE.search(text):
        raise ValueError(f"{name} must not contain whitespace: {text!r}")
    if text.startswith("#"):
        raise ValueError(f"{name} must not start with '#': {text!r}")
    return text


def check_datetime(name: str, value: object) -> datetime:
    """A program date-time: timezone-aware, normalized to UTC, rounded to the millisecond."""
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    try:
        utc = value.astimezone(UTC)
        whole = utc.replace(microsecond=0)
        return whole + timedelta(milliseconds=round(utc.microsecond / 1000))
    except OverflowError as e:
        raise ValueError(f"{name} is out of range: {value!r}") from e


# -- writing --------------------------------------------------------------------------------

def format_duration(seconds: float) -> str:
    """EXTINF and EXT-X-PART DURATION: always five decimals, e.g. ``2.00000``."""
    return f"{seconds:.{SECONDS_DECIMALS}f}"


def format_seconds(seconds: float) -> str:
    """Other decimal-floating-point seconds (PART-TARGET, hold-backs, skip boundary):
    the shortest form on the 10 µs grid that still has a decimal point, e.g. ``0.2``, ``6.0``."""
    text = f"{seconds:.{SECONDS_DECIMALS}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def format_frame_rate(rate: float) -> str:
    return f"{rate:.{FRAME_RATE_DECIMALS}f}"


def format_datetime(value: datetime) -> str:
    """``YYYY-MM-DDThh:mm:ss.SSSZ``; ``value`` is already UTC on the millisecond."""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}."
        f"{value.microsecond // 1000:03d}Z"
    )


def quoted(value: str) -> str:
    return f'"{value}"'


# -- reading --------------------------------------------------------------------------------

def playlist_lines(text: str, *, max_bytes: int) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` for every non-blank line, after the checks of 4.1.

    Lines end in LF or CRLF. The first line must be ``#EXTM3U`` (4.4.1.1).
    """
    if not isinstance(text, str):
        raise TypeError(f"a playlist is text (str), not {type(text).__name__}")
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise PlaylistError(f"playlist larger than {max_bytes} bytes")
    if text.startswith("\ufeff"):
        raise PlaylistError("playlist starts with a byte order mark (4.1 forbids it)", 1)
    first = True
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        match = _CONTROL.search(line)
        if match:
            raise PlaylistError(
                f"control character U+{ord(match.group()):04X} in the playlist (4.1)", number
            )
        if first:
            if line != "#EXTM3U":
                raise PlaylistError("the first line must be #EXTM3U (4.4.1.1)", number)
            first = False
        if line:
            yield number, line
    if first:
        raise PlaylistError("empty playlist: the first line must be #EXTM3U (4.4.1.1)", 1)


def split_tag(line: str) -> tuple[str, str | None]:
    """``#EXT-X-FOO:value`` → ``("EXT-X-FOO", "value")``; ``#EXT-X-BAR`` → ``("EXT-X-BAR", None)``."""
    name, colon, value = line[1:].partition(":")
    return name, (value if colon else None)


class Attributes:
    """A parsed attribute-list (4.2): names to raw values, quoted ones remembered as such."""

    def __init__(self, tag: str, values: dict[str, tuple[str, bool]], line: int | None) -> None:
        self.tag = tag
        self._values = values
        self.line = line

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def _get(self, name: str, *, quoted_: bool) -> str | None:
        if name not in self._values:
            return None
        value, is_quoted = self._values[name]
        if is_quoted != quoted_:
            kind = "a quoted-string" if quoted_ else "an unquoted value"
            raise PlaylistError(f"{self.tag}: {name} must be {kind}", self.line)
        return value

    def _required(self, name: str, value: object) -> None:
        if value is None:
            raise PlaylistError(f"{self.tag}: the {name} attribute is required", self.line)

    def quoted_string(self, name: str, *, required: bool = False) -> str | None:
        value = self._get(name, quoted_=True)
        if required:
            self._required(name, value)
        return value

    def enumerated(self, name: str) -> str | None:
        return self._get(name, quoted_=False)

    def yes(self, name: str) -> bool:
        """An enumerated-string flag whose only defined value is YES; anything else is no."""
        return self.enumerated(name) == "YES"

    def decimal_integer(self, name: str, *, required: bool = False) -> int | None:
        raw = self._get(name, quoted_=False)
        if required:
            self._required(name, raw)
        return None if raw is None else parse_decimal_integer(raw, f"{self.tag} {name}", self.line)

    def decimal_float(self, name: str, *, required: bool = False) -> float | None:
        raw = self._get(name, quoted_=False)
        if required:
            self._required(name, raw)
        return None if raw is None else parse_decimal_float(raw, f"{self.tag} {name}", self.line)


def parse_attributes(tag: str, value: str | None, line: int | None) -> Attributes:
    """Parse ``NAME=VALUE,NAME="quoted",...`` strictly: no whitespace, no duplicates (4.2)."""
    if not value:
        raise PlaylistError(f"{tag} needs an attribute list", line)
    values: dict[str, tuple[str, bool]] = {}
    position = 0
    while True:
        name_match = _ATTRIBUTE_NAME.match(value, position)
        if not name_match or value[name_match.end():name_match.end() + 1] != "=":
            raise PlaylistError(f"{tag}: malformed attribute list at {value[position:]!r}", line)
        name = name_match.group()
        position = name_match.end() + 1
        if value[position:position + 1] == '"':
            end = value.find('"', position + 1)
            if end < 0:
                raise PlaylistError(f"{tag}: unterminated quoted-string for {name}", line)
            item = (value[position + 1:end], True)
            position = end + 1
        else:
            value_match = _UNQUOTED_VALUE.match(value, position)
            if not value_match:
                raise PlaylistError(f"{tag}: {name} has no value", line)
            item = (value_match.group(), False)
            position = value_match.end()
        if name in values:
            raise PlaylistError(f"{tag}: attribute {name} appears twice (4.2)", line)
        values[name] = item
        if position == len(value):
            return Attributes(tag, values, line)
        if value[position] != ",":
            raise PlaylistError(f"{tag}: expected ',' after {name}", line)
        position += 1


def parse_decimal_integer(raw: str, what: str, line: int | None) -> int:
    if not _DECIMAL_INTEGER.fullmatch(raw) or int(raw) > MAX_DECIMAL_INTEGER:
        raise PlaylistError(f"{what}: not a decimal-integer: {raw!r}", line)
    return int(raw)


def parse_decimal_float(raw: str, what: str, line: int | None) -> float:
    if not _DECIMAL_FLOAT.fullmatch(raw) or len(raw) > 40:
        raise PlaylistError(f"{what}: not a decimal-floating-point number: {raw!r}", line)
    return float(raw)


def parse_datetime(raw: str, what: str, line: int | None) -> datetime:
    """An ISO 8601 date-time; without a zone it is UTC (4.4.4.6)."""
    try:
        value = datetime.fromisoformat(raw)
    except (ValueError, OverflowError):
        raise PlaylistError(f"{what}: not an ISO 8601 date-time: {raw!r}", line) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
