"""Files written whole or not at all: what the spool, the stats files and the thumbnails share.

No trio here (the CLI and the stats files use it too); daemons/runtime/spool.py decides where
the writes run.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

_tmp_names = itertools.count()


def atomic_write(path: Path | str, data: bytes, *, make_dirs: bool = False) -> None:
    """Write under a temporary name of this writer's own, then rename into place. The name is
    unique (this process's id and a counter), so two writers of the same file (sender-edge-fill
    and a pull-through in sender-http; a stats file written from two threads) never write into
    one temporary file; a failed write leaves nothing behind. Plain os calls: a buffered file
    object costs three more system calls a file. `make_dirs`: the directory is made if missing
    (looked for only when the file cannot be created)."""
    directory, name = os.path.split(os.fspath(path))
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{next(_tmp_names)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o666)
    except FileNotFoundError:
        if not make_dirs:
            raise
        os.makedirs(directory, exist_ok=True)
        fd = os.open(tmp, flags, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
