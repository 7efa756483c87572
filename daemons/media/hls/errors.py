"""The one exception family of the HLS layer.

``PlaylistError`` means "this text is not a playlist we can read": garbage, a tag whose
syntax is wrong, a feature Sender does not implement (byte ranges, encryption), or a limit
exceeded. It carries the 1-based line number when one is known.

``PlaylistViolation`` (in ``validate``) subclasses it: the text parses, but breaks a rule of
RFC 8216bis or of Sender's Low-Latency profile.

Building a model value with impossible fields (a negative duration, a URI with a quote)
raises a plain ``ValueError`` from the dataclass itself; the parser turns those into
``PlaylistError`` with the line they came from.
"""

from __future__ import annotations


class PlaylistError(ValueError):
    """A playlist could not be parsed; ``line`` is the 1-based line number, if known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)
