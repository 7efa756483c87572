"""The names of things in the spool and in HLS URLs, defined once.

A generation's files live at `<spool>/streams/<stream id>/<generation id>/<rendition>/<file>` and
are served at `/hls/<stream id>/<generation id>/<rendition>/<file>`: the packager writes these
names, sender-edge-fill mirrors them, sender-http's HLS route accepts exactly them, the OpenAPI
document publishes the same patterns, and the config and the domain check rendition names and ids
against them. Everything here is a plain function or regular expression (no I/O), so every layer
can import it.
"""

from __future__ import annotations

import re

# --- ids and names ---------------------------------------------------------------------------------

STREAM_ID = r"st_[0-9a-f]{16}"
GENERATION_ID = r"gen_[0-9a-f]{16}"
# A slug or an endpoint id: 1-64 of a-z, 0-9 and '-', starting and ending with a letter or digit.
# URL-safe, one path segment, never "." or "..".
NAME = r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?"
# A rendition name ("source", "720p", "hd_720"): 1-32 of a-z, 0-9, '_' and '-', starting with a
# letter or digit. It is a directory in the spool and a path segment of every HLS URL.
RENDITION = r"[a-z0-9][a-z0-9_-]{0,31}"

# --- media files of a rendition --------------------------------------------------------------------

PLAYLIST = "index.m3u8"
MASTER = "master.m3u8"
THUMBNAIL = "thumbnail.jpg"  # a generation's picture: <generation>/thumbnail.jpg (daemons/ingest/thumbnails.py)
# A recorded generation's replays (daemons/media/recording.py): per rendition every segment since
# the start — the DVR playlist (EVENT) while live, the VOD one once ended — and a master for each.
DVR_PLAYLIST = "dvr.m3u8"
VOD_PLAYLIST = "vod.m3u8"
MASTER_DVR = "master-dvr.m3u8"
MASTER_VOD = "master-vod.m3u8"
MSN = r"[0-9]{1,12}"  # a media sequence number
PART_INDEX = r"[0-9]{1,6}"  # a part within its segment
INIT_FILE = r"init(?:-[0-9]{1,6})?\.mp4"
# fMP4 (.m4s) from Sender's packager; MPEG-TS (.ts) segments and parts an edge keeps from an
# external origin that serves TS.
MEDIA_FILE = rf"{INIT_FILE}|{MSN}(?:\.{PART_INDEX})?\.(?:m4s|ts)"


def init_name(index: int) -> str:
    """The Nth init segment of a rendition (a new one after a backend restart changed it)."""
    return "init.mp4" if index == 0 else f"init-{index}.mp4"


def segment_name(msn: int) -> str:
    return f"{msn}.m4s"


def part_name(msn: int, index: int) -> str:
    return f"{msn}.{index}.m4s"


def ts_segment_name(msn: int) -> str:
    """An MPEG-TS segment of an external origin, kept under Sender's numbering by an edge."""
    return f"{msn}.ts"


def ts_part_name(msn: int, index: int) -> str:
    """An MPEG-TS part of an external LL-HLS origin, kept under Sender's numbering by an edge."""
    return f"{msn}.{index}.ts"


# --- compiled, for the code that checks -------------------------------------------------------------

NAME_RE = re.compile(NAME)
RENDITION_RE = re.compile(RENDITION)
STREAM_ID_RE = re.compile(STREAM_ID)
GENERATION_ID_RE = re.compile(GENERATION_ID)
MEDIA_FILE_RE = re.compile(MEDIA_FILE)


def anchored(pattern: str) -> str:
    """The pattern as a whole-string JSON Schema / OpenAPI `pattern`."""
    return f"^(?:{pattern})$"
