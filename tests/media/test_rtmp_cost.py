"""The RTMP layer's CPU cost on a synthetic 3 Mbps stream (25 fps video, AAC audio).

The budget is 3 % of one core per 3 Mbps stream; the test fails only at 3x the
budget, to catch a regression (say, quadratic buffering) without flaking on a
busy machine.
"""

import time

import pytest

from daemons.media.rtmp import NEED_DATA, PublishRequest, ServerConnection
from tests.media.rtmp_client_bytes import message, publish_preamble, set_chunk_size

SECONDS = 4
VIDEO_FRAME = b"\x27\x01\x00\x00\x00" + bytes(14_400)  # 25 fps: 2.88 Mbps
AUDIO_FRAME = b"\xaf\x01" + bytes(370)  # 1024 samples at 44.1 kHz: ~128 kbps


def stream(chunk_size: int) -> bytes:
    out = bytearray(publish_preamble() + set_chunk_size(chunk_size))
    audio_ms = 0.0
    for frame in range(25 * SECONDS):
        ts = frame * 40
        out += message(9, VIDEO_FRAME, csid=6, stream_id=1, ts=ts, chunk_size=chunk_size)
        while audio_ms < ts + 40:
            out += message(
                8, AUDIO_FRAME, csid=4, stream_id=1, ts=int(audio_ms), chunk_size=chunk_size
            )
            audio_ms += 1024 / 44.1
    return bytes(out)


def consume(data: bytes, read_size: int) -> int:
    conn = ServerConnection()
    media = 0
    for i in range(0, len(data), read_size):
        conn.receive_data(data[i : i + read_size])
        while (event := conn.next_event()) is not NEED_DATA:
            if isinstance(event, PublishRequest):
                conn.accept_publish()
            else:
                media += 1
        conn.data_to_send()
    return media


@pytest.mark.parametrize("chunk_size", [128, 4096])
def test_cost_of_a_3_mbps_stream(chunk_size):
    data = stream(chunk_size)
    assert 2.9e6 < len(data) * 8 / SECONDS < 3.3e6
    start = time.process_time()
    media = consume(data, 16384)
    share_of_core = (time.process_time() - start) / SECONDS
    assert media > 25 * SECONDS
    assert share_of_core < 0.09, f"{share_of_core:.1%} of a core per 3 Mbps stream"
