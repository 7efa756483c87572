"""The domain layer: every change to Sender's state goes through these modules.

The CLI and the management API call the same functions, so each rule lives in one place:
`streams`, `keys`, `generations`, `publish`, `endpoints`, `renditions`, `snapshots`,
`distribution`, `recordings`, `restream`; `stream_views` are the views of streams the CLI and
the management API both show. Functions take an open `Store` and raise `daemons.core.errors.SenderError`
subclasses for anything the caller got wrong. They are synchronous; daemons call them from a
worker thread.
"""

from daemons.core.domain import (
    distribution, endpoints, generations, keys, publish, recordings, renditions, restream, snapshots, stream_views, streams,
)

__all__ = ["distribution", "endpoints", "generations", "keys", "publish", "recordings", "renditions", "restream",
           "snapshots", "stream_views", "streams"]
