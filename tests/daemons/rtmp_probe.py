"""A minimal RTMP publisher for tests that need to see the server's answer codes.

It does the simple handshake, connect, createStream and publish, then reads until the server's
onStatus names a code. The answer is found by looking for the status code string in what the
server sent — the server's own decoder is not used, so this checks the bytes on the wire.
"""

from __future__ import annotations

import os
import struct

import trio

from daemons.media import amf0

STATUS_CODES = (
    b"NetStream.Publish.Start",
    b"NetStream.Publish.BadName",
    b"NetStream.Publish.Denied",
    b"NetStream.Publish.Failed",
)


def message(csid: int, type_id: int, payload: bytes, stream_id: int = 0, timestamp: int = 0) -> bytes:
    """One message as a single fmt-0 chunk (the chunk size is raised first)."""
    assert csid < 64
    header = bytes([csid]) + timestamp.to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes([type_id])
    return header + struct.pack("<I", stream_id) + payload


def command(name: str, txn: float, *args, stream_id: int = 0, csid: int = 3) -> bytes:
    return message(csid, 20, amf0.encode_values(name, txn, *args), stream_id=stream_id)


async def handshake(stream: trio.abc.Stream) -> None:
    await stream.send_all(b"\x03" + bytes(8) + os.urandom(1528))
    got = bytearray()
    while len(got) < 1 + 1536 + 1536:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError("server closed during handshake")
        got += chunk
    await stream.send_all(bytes(got[1 : 1 + 1536]))  # C2 echoes S1


async def publish(host: str, port: int, name: str, *, app: str = "live", timeout: float = 10.0,
                  stream: trio.abc.Stream | None = None, connect: dict | None = None,
                  received: bytearray | None = None) -> tuple[str | None, trio.abc.Stream]:
    """Publish `name`; return (the status code the server answered, the open stream).
    `connect`: more properties for the connect command object; `received` collects what the
    server sent up to the answer."""
    received = bytearray() if received is None else received
    with trio.fail_after(timeout):
        if stream is None:
            stream = await trio.open_tcp_stream(host, port)
        await handshake(stream)
        params = {"app": app, "type": "nonprivate", "flashVer": "FMLE/3.0", "tcUrl": f"rtmp://{host}:{port}/{app}",
                  **(connect or {})}
        await stream.send_all(
            message(2, 1, struct.pack(">I", 65536))
            + command("connect", 1, params)
            + command("releaseStream", 2, None, name)
            + command("FCPublish", 3, None, name)
            + command("createStream", 4, None)
            + command("publish", 5, None, name, "live", stream_id=1, csid=4)
        )
        while True:
            at = received.find(b"onStatus")  # onFCPublish carries a code too; only onStatus answers
            for code in STATUS_CODES:
                if at >= 0 and code in received[at:]:
                    return code.decode(), stream
            chunk = await stream.receive_some(65536)
            if not chunk:
                return None, stream
            received += chunk


async def status_of(host: str, port: int, name: str, **kw) -> str | None:
    code, stream = await publish(host, port, name, **kw)
    await stream.aclose()
    return code


async def until_closed(stream: trio.abc.Stream, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = bytearray()
    with trio.fail_after(timeout):
        while chunk := await stream.receive_some(65536):
            received += chunk
    await stream.aclose()
    return bytes(received)
