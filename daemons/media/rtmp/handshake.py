"""The RTMP handshake, server side: C0+C1 in, S0+S1+S2 out, then C2 in.

Two forms exist in the wild:

* the simple form of the RTMP 1.0 spec: C1 carries a zero version field and random
  bytes; the server echoes C1 as S2;
* the digest form that Flash Player 9+ introduced and that ffmpeg, OBS (librtmp)
  and others still send: C1 carries a non-zero version and an HMAC-SHA256 digest
  keyed with "Genuine Adobe Flash Player 001", placed at an offset computed from
  four bytes at offset 8 (scheme 0) or 772 (scheme 1). The server answers with
  an S1 digested with "Genuine Adobe Flash Media Server 001" at the same scheme,
  and an S2 whose last 32 bytes are an HMAC over the rest of S2, keyed with
  HMAC(full 68-byte server key, C1's digest). Clients that check it (librtmp,
  ffmpeg when playing) refuse a server that echoes instead.

A C1 with a non-zero version but no valid digest gets the simple answer, as
nginx-rtmp does: some encoders fill the version field without digesting.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from .errors import RTMPProtocolError

RTMP_VERSION = 3
PACKET_SIZE = 1536
DIGEST_SIZE = 32

# The Adobe keys are a 30/36-byte ASCII name followed by the same 32 constant bytes.
_KEY_TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
CLIENT_KEY = b"Genuine Adobe Flash Player 001"
SERVER_KEY = b"Genuine Adobe Flash Media Server 001"
SERVER_KEY_FULL = SERVER_KEY + _KEY_TAIL

# Version field of our digest-form S1 (any non-zero value announces the digest form).
_SERVER_VERSION = bytes((0x0D, 0x0E, 0x0A, 0x0D))
_DIGEST_SCHEME_BASES = (8, 772)
_DIGEST_SPAN = 728


def digest_offset(packet: bytes | bytearray, scheme: int) -> int:
    """Where the 32-byte digest sits in a C1/S1 of the given scheme (0 or 1)."""
    base = _DIGEST_SCHEME_BASES[scheme]
    return base + 4 + sum(packet[base : base + 4]) % _DIGEST_SPAN


def packet_digest(packet: bytes | bytearray, offset: int, key: bytes) -> bytes:
    """HMAC-SHA256 of a C1/S1 with the 32 digest bytes at ``offset`` left out."""
    mac = hmac.new(key, packet[:offset], hashlib.sha256)
    mac.update(packet[offset + DIGEST_SIZE :])
    return mac.digest()


def find_client_digest(c1: bytes) -> tuple[int, bytes] | None:
    """Return (scheme, digest) if C1 carries a valid Flash Player digest."""
    for scheme in (0, 1):
        offset = digest_offset(c1, scheme)
        digest = c1[offset : offset + DIGEST_SIZE]
        if hmac.compare_digest(digest, packet_digest(c1, offset, CLIENT_KEY)):
            return scheme, digest
    return None


def s2_digest_key(client_digest: bytes) -> bytes:
    """The key that signs S2 in the digest form."""
    return hmac.new(SERVER_KEY_FULL, client_digest, hashlib.sha256).digest()


def check_c0(version: int) -> None:
    """C0 is one byte, the protocol version; checked alone so garbage fails at once."""
    if version != RTMP_VERSION:
        raise RTMPProtocolError(
            f"unsupported RTMP version {version} in C0 (only plain RTMP, version 3; "
            "RTMPE and others are refused)"
        )


def server_response(c0c1: bytes) -> tuple[bytes, bool]:
    """Answer C0+C1 (1537 bytes) with S0+S1+S2; also say whether the digest form was used."""
    if len(c0c1) != 1 + PACKET_SIZE:
        raise ValueError(f"C0+C1 must be {1 + PACKET_SIZE} bytes, got {len(c0c1)}")
    check_c0(c0c1[0])
    c1 = c0c1[1:]
    found = find_client_digest(c1) if c1[4:8] != b"\x00\x00\x00\x00" else None
    if found is None:
        s1 = bytes(8) + os.urandom(PACKET_SIZE - 8)
        return bytes((RTMP_VERSION,)) + s1 + c1, False

    scheme, client_digest = found
    s1 = bytearray(bytes(4) + _SERVER_VERSION + os.urandom(PACKET_SIZE - 8))
    offset = digest_offset(s1, scheme)
    s1[offset : offset + DIGEST_SIZE] = packet_digest(s1, offset, SERVER_KEY)

    s2 = bytearray(os.urandom(PACKET_SIZE))
    signed = PACKET_SIZE - DIGEST_SIZE
    s2[signed:] = hmac.new(s2_digest_key(client_digest), s2[:signed], hashlib.sha256).digest()
    return bytes((RTMP_VERSION,)) + bytes(s1) + bytes(s2), True
