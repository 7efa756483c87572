"""Record what a real publisher sends to an RTMP server, for replay in tests.

Listens on 127.0.0.1, serves one connection with Sender's own ServerConnection
(accepting the publish), runs the publisher against it and writes the raw
client-to-server bytes to a file. The server's handshake is random, but nothing
the client sends afterwards depends on it, so the capture replays against any
ServerConnection.

    .venv/bin/python tests/media/data/capture.py ffmpeg tests/media/data/ffmpeg_publish.bin
    .venv/bin/python tests/media/data/capture.py gstreamer tests/media/data/gstreamer_publish.bin
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from daemons.media.rtmp import (  # noqa: E402
    NEED_DATA,
    ConnectionClosed,
    PublishRequest,
    ServerConnection,
)

PUBLISHERS = {
    "ffmpeg": lambda url: [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-g",
        "25",
        "-b:v",
        "250k",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-t",
        "2",
        "-f",
        "flv",
        url,
    ],
    "gstreamer": lambda url: [
        "gst-launch-1.0",
        "-q",
        "-e",
        "videotestsrc",
        "is-live=true",
        "num-buffers=50",
        "!",
        "video/x-raw,width=320,height=240,framerate=25/1",
        "!",
        "x264enc",
        "tune=zerolatency",
        "key-int-max=25",
        "bitrate=250",
        "!",
        "h264parse",
        "!",
        "flvmux",
        "name=m",
        "streamable=true",
        "!",
        "rtmp2sink",
        f"location={url}",
        "audiotestsrc",
        "is-live=true",
        "num-buffers=100",
        "!",
        "avenc_aac",
        "!",
        "aacparse",
        "!",
        "m.",
    ],
}


def serve_one(listener: socket.socket, record: bytearray, log: list[str]) -> None:
    sock, _ = listener.accept()
    conn = ServerConnection()
    with sock:
        while True:
            data = sock.recv(65536)
            record += data
            conn.receive_data(data)
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                log.append(repr(event))
                if isinstance(event, PublishRequest):
                    conn.accept_publish()
                if isinstance(event, ConnectionClosed):
                    log.append(f"digest handshake: {conn.used_digest_handshake}")
                    return
            # The publisher may hang up without reading our last answers.
            with contextlib.suppress(OSError):
                sock.sendall(conn.data_to_send())


def main() -> None:
    publisher, out_path = sys.argv[1], Path(sys.argv[2])
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"rtmp://127.0.0.1:{listener.getsockname()[1]}/live/somekey"
    record = bytearray()
    log: list[str] = []
    server = threading.Thread(target=serve_one, args=(listener, record, log))
    server.start()
    subprocess.run(PUBLISHERS[publisher](url), check=True, timeout=60)
    server.join(timeout=10)
    listener.close()
    out_path.write_bytes(record)
    print("\n".join(line for line in log if "Data(" not in line))
    print(f"{len(record)} bytes -> {out_path}")


if __name__ == "__main__":
    main()
