"""The media thread's arrival clock: when a publisher's next awaited frame can first come, from
the kernel's receive times (a real TCP socket on 127.0.0.1) and the least lag seen."""

from __future__ import annotations

import socket
import time

from daemons.ingest.media_thread import ANCILLARY_SIZE, SO_TIMESTAMPNS, ArrivalClock, _receive_time


def test_a_read_long_after_the_bytes_came_still_knows_when_they_came():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        with client, conn:
            conn.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            before = time.time()
            client.sendall(b"x" * 1000)
            after = time.time()
            time.sleep(0.2)  # the read is late on purpose: that lateness is what must not count
            data, ancillary, _, _ = conn.recvmsg(65536, ANCILLARY_SIZE)
            read_at = time.time()
    came = _receive_time(ancillary)
    assert data == b"x" * 1000
    assert came is not None and before - 0.001 <= came <= after + 0.01 < read_at - 0.15


def test_no_receive_time_without_the_option():
    assert _receive_time([]) is None
    assert _receive_time([(socket.SOL_SOCKET, SO_TIMESTAMPNS, b"\0" * 8)]) is None  # too short: ignored


def test_the_least_lag_predicts_and_late_samples_do_not_raise_it():
    clock = ArrivalClock()
    assert clock.arrival(1.0) is None  # nothing known: read as bytes come
    for n in range(ArrivalClock.READY):
        # A frame every 33 ms arriving 5 ms after its media time plus a fixed offset of 100 s,
        # some of them sampled late (read after a quiet spell: the kernel's time, still late
        # when the read's last bytes were not the frame's).
        late = 0.02 if n % 3 else 0.0
        clock.sample(n * 0.033, 100.005 + n * 0.033 + late)
    assert abs(clock.arrival(1.0) - 101.005) < 1e-9


def test_a_publisher_whose_clock_drifts_is_followed_within_two_windows():
    clock = ArrivalClock()
    t = 0.0
    while t < 3 * ArrivalClock.WINDOW_S:  # a publisher running slow: its lag grows 1 ms a second
        clock.sample(t, 50.0 + t + t / 1000)
        t += 0.02
    lag = clock.arrival(0.0) - 50.0
    # Within the last two windows: never above the lag it has now (never late), and not older
    # than two windows (5 s to 10 s ago: 5 to 10 ms less than now).
    assert 0.005 - 1e-6 <= lag <= 0.015 + 1e-6, lag
    assert lag <= 3 * ArrivalClock.WINDOW_S / 1000
