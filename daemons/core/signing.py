"""Signed reports: the HMAC-SHA256 signature of a report body, and its check by a receiver.

A signed request carries two headers:

    X-Sender-Timestamp: <unix seconds, when this attempt was sent>
    X-Sender-Signature: sha256=<hex HMAC-SHA256(key, timestamp + "." + body)>

sender-snapshot signs its reports to the control plane with `control_plane.signing_key_file`
(`daemons.snapshot.report`); an external endpoint signs its own snapshot reports to sender-http
with its report token (`daemons.http.endpoint_reports`). Both use this module, so the two sides
of the one scheme cannot drift. A receiver refuses a timestamp further than `MAX_SKEW_S` from its
own clock, so a captured request cannot be replayed later (remembering the signatures it took
within that window is the receiver's business). Plain functions, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

TIMESTAMP_HEADER = "X-Sender-Timestamp"
SIGNATURE_HEADER = "X-Sender-Signature"
MAX_SKEW_S = 300.0


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """The X-Sender-Signature value of `body` sent at `timestamp` (unix seconds, as sent)."""
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Refusal(Enum):
    """Why a signed request is refused."""

    NO_TIMESTAMP = "no or no integer timestamp"
    BAD_SIGNATURE = "the signature does not match the key, timestamp and body"
    SKEWED = "the timestamp is too far from the receiver's clock"


def check(key: bytes, timestamp: str | None, body: bytes, signature: str | None, now: float,
          max_skew_s: float = MAX_SKEW_S) -> Refusal | None:
    """None when `signature` signs `body` at `timestamp` with `key` and the timestamp is within
    `max_skew_s` of `now` (unix seconds); else why not. The signature is compared in constant time."""
    try:
        int(timestamp or "")
    except ValueError:
        return Refusal.NO_TIMESTAMP
    if not key or not signature or not hmac.compare_digest(sign(key, timestamp, body).encode(),
                                                           signature.encode(errors="surrogateescape")):
        return Refusal.BAD_SIGNATURE
    if abs(now - int(timestamp)) > max_skew_s:
        return Refusal.SKEWED
    return None


def verify_report(key: bytes, timestamp: str | None, body: bytes, signature: str | None, now: float,
                  max_skew_s: float = MAX_SKEW_S) -> bool:
    """The receiver's yes or no: the signature matches and the timestamp is fresh."""
    return check(key, timestamp, body, signature, now, max_skew_s) is None
