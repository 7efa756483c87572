"""Handshake: simple (echo) and digest (Flash Player 9+) forms, checked with digests
computed here independently of the server's code."""

import hmac

import pytest

from daemons.media.rtmp import ConnectionState, RTMPProtocolError, ServerConnection
from daemons.media.rtmp.handshake import server_response
from tests.media.rtmp_client_bytes import (
    FMS_KEY,
    KEY_TAIL,
    c2,
    digest_c1,
    digest_pos,
    hmac_sha256,
    simple_c0c1,
)


def _answer(c0c1: bytes) -> tuple[ServerConnection, bytes]:
    conn = ServerConnection()
    conn.receive_data(c0c1)
    conn.next_event()
    out = conn.data_to_send()
    assert len(out) == 1 + 1536 + 1536
    assert out[0] == 3
    return conn, out


def test_simple_handshake_echoes_c1():
    c0c1 = simple_c0c1()
    conn, out = _answer(c0c1)
    s1, s2 = out[1:1537], out[1537:]
    assert s1[4:8] == bytes(4)  # zero version: the simple form
    assert s2 == c0c1[1:]
    assert not conn.used_digest_handshake
    assert conn.state is ConnectionState.HANDSHAKE_ACK
    conn.receive_data(c2())
    conn.next_event()
    assert conn.state is ConnectionState.CONNECTING


@pytest.mark.parametrize("scheme", [0, 1])
def test_digest_handshake(scheme):
    c1, client_digest = digest_c1(scheme)
    conn, out = _answer(b"\x03" + c1)
    s1, s2 = out[1:1537], out[1537:]
    assert conn.used_digest_handshake
    assert s1[4:8] != bytes(4)

    # S1 is digested with the 36-byte server key at the client's scheme.
    pos = digest_pos(s1, scheme)
    assert s1[pos : pos + 32] == hmac_sha256(FMS_KEY, s1[:pos] + s1[pos + 32 :])

    # S2's last 32 bytes sign the rest, keyed from C1's digest with the full 68-byte key.
    key = hmac_sha256(FMS_KEY + KEY_TAIL, client_digest)
    assert hmac.compare_digest(s2[-32:], hmac_sha256(key, s2[:-32]))


def test_version_without_digest_falls_back_to_echo():
    c0c1 = b"\x03" + bytes(4) + b"\x09\x00\x7c\x02" + bytes(1528)
    conn, out = _answer(c0c1)
    assert not conn.used_digest_handshake
    assert out[1537:] == c0c1[1:]


def test_handshake_arriving_byte_by_byte():
    data = simple_c0c1() + c2()
    conn = ServerConnection()
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
        conn.next_event()
    assert conn.state is ConnectionState.CONNECTING
    assert len(conn.data_to_send()) == 3073
    assert conn.bytes_received == 3073


@pytest.mark.parametrize("c0", [b"\x06", b"\x00", b"G"])  # RTMPE, ancient, "GET /"
def test_bad_c0_fails_on_its_first_byte(c0):
    conn = ServerConnection()
    conn.receive_data(c0)
    with pytest.raises(RTMPProtocolError, match="version"):
        conn.next_event()
    assert conn.state is ConnectionState.ERROR


def test_eof_during_handshake():
    conn = ServerConnection()
    conn.receive_data(simple_c0c1()[:100])
    conn.receive_data(b"")
    event = conn.next_event()
    assert "during the handshake" in event.reason


def test_server_response_needs_all_of_c0_c1():
    with pytest.raises(ValueError):
        server_response(simple_c0c1()[:-1])
