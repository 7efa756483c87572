"""The one exception this package raises for bad input."""


class FMP4Error(Exception):
    """Malformed or unsupported fragmented MP4; the message names the box and field."""
