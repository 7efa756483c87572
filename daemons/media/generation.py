"""What one generation's renditions publish together, sans-IO: batches of files for the spool.

`GenerationPackager` owns a `RenditionPackager` per rendition and turns what they produce into
`Batch`es: media actions (writes and deletes of `<rendition>/<file>`, in order) followed by the
states and playlists that changed. The caller writes a batch's media files, then its published
files (each under a temporary name, then renamed), and answers `written(batch)` or
`refused(batch)`.

The rules it keeps:

* no playlist before every rendition has something to play: each lists all its siblings in
  rendition reports from its first version on, so a change in one re-renders them all;
* a rendition's state is written only when its closed segments changed (once per segment);
* **a name once proposed never names other bytes.** When the spool refuses a batch, its actions
  are kept and retried with the same bytes; every rendition's open segment is closed as it
  stands (its parts, listed or hinted, keep their names); media is dropped — never half-kept —
  until the backlog is written (`retry()`: one batch, every rendition's files before any
  playlist); then each rendition goes on with a new segment after a discontinuity, at the next
  media sequence number.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from daemons.media import hls
from daemons.media.fmp4 import Fragment, InitSegment
from daemons.media.names import PLAYLIST
from daemons.media.packager import Action, PackagerConfig, RenditionPackager
from daemons.media.recording import DVR_PLAYLIST, VOD_PLAYLIST

STATE = "state.json"


@dataclass(frozen=True)
class Batch:
    actions: tuple[tuple[str, Action], ...]  # (rendition, action), in order
    published: dict[str, bytes] = field(default_factory=dict)  # "<rendition>/state.json", "<rendition>/index.m3u8"

    def playlist_of(self, rendition: str) -> bytes | None:
        return self.published.get(f"{rendition}/{PLAYLIST}")


class GenerationPackager:
    def __init__(self, config: PackagerConfig, packagers: dict[str, RenditionPackager]):
        self.config = config
        self.packagers = packagers
        self._states: dict[str, tuple] = {}  # fingerprint of each rendition's last written state
        self._recorded: dict[str, tuple] = {}  # (segments, ended) of each rendition's last written DVR playlist
        self._backlog: list[tuple[str, Action]] = []  # what the spool refused, in order

    @classmethod
    def new(cls, config: PackagerConfig, renditions: list[str]) -> "GenerationPackager":
        return cls(config, {name: RenditionPackager(name, config) for name in renditions})

    @property
    def outage(self) -> bool:
        """The spool refused a batch: media is dropped until the backlog is written."""
        return bool(self._backlog)

    @property
    def playable(self) -> bool:
        return all(p.playable for p in self.packagers.values())

    @property
    def discontinuities(self) -> int:
        return max((p.discontinuities for p in self.packagers.values()), default=0)

    # --- input ---------------------------------------------------------------------------------------

    def on_init(self, name: str, init: InitSegment) -> Batch | None:
        return self._batch(name, self.packagers[name].on_init(init))

    def on_fragment(self, name: str, fragment: Fragment, now: datetime) -> Batch | None:
        if self.outage:
            return None  # dropped: it cannot be written now, and it is never half-kept
        return self._batch(name, self.packagers[name].on_fragment(fragment, now))

    def start_timeline(self, names: Collection[str] | None = None) -> None:
        """A new backend timeline (or the spool back after an outage): what comes next follows a
        discontinuity. `names`: the renditions that backend feeds (default: all)."""
        for name, p in self.packagers.items():
            if names is None or name in names:
                p.start_timeline()

    def end_timeline(self, names: Collection[str] | None = None) -> Batch | None:
        """The backend's timeline ended (publisher gone, backend restarting, a packet the native
        backend dropped): close the open segments of `names` (default: all)."""
        return self._batch_all(lambda p: p.end_timeline() if names is None or p.name in names else [])

    def end(self) -> Batch | None:
        """The generation ended: close what is open; every playlist gets ENDLIST."""
        return self._batch_all(lambda p: p.end(), force=True)

    def seal_listed(self, listed: dict[str, tuple[hls.MediaPlaylist, list[bytes]]]) -> Batch | None:
        """After a daemon restart: close each segment whose parts the last playlists listed
        (`listed`: rendition → (its playlist, the bytes of those parts))."""
        return self._batch_all(lambda p: p.seal_listed(*listed[p.name]) if p.name in listed else [])

    # --- the spool's answers ---------------------------------------------------------------------

    def written(self, batch: Batch) -> None:
        for name, p in self.packagers.items():
            if f"{name}/{STATE}" in batch.published:
                self._states[name] = _fingerprint(p)
            if f"{name}/{DVR_PLAYLIST}" in batch.published and p.recording is not None:
                self._recorded[name] = (p.recording.segments, p.ended)

    def refused(self, batch: Batch) -> None:
        """Keep what was refused (retried with the same bytes), close every open segment as it
        stands, and drop media until the backlog is written."""
        if self._backlog:
            return  # a retry refused: the backlog stays as it is
        self._backlog = list(batch.actions)
        for name, p in self.packagers.items():
            self._backlog += [(name, a) for a in p.end_timeline()]
        self._states.clear()  # states and playlists are written again with the backlog
        self._recorded.clear()

    def retry(self) -> Batch:
        """The backlog as one batch: every rendition's files, then every state and playlist.
        When it is `written`, the outage is over and each rendition starts a new segment."""
        return Batch(tuple(self._backlog), self._published(force=True))

    def recovered(self, batch: Batch) -> None:
        """`retry()`'s batch was written."""
        self._backlog = []
        self.written(batch)
        self.start_timeline()  # what comes next follows a discontinuity

    # --- batches ---------------------------------------------------------------------------------------

    def _batch(self, name: str, actions: list[Action], *, force: bool = False) -> Batch | None:
        return self._make([(name, a) for a in actions], force=force)

    def _batch_all(self, produce, *, force: bool = False) -> Batch | None:
        actions = [(name, a) for name, p in self.packagers.items() for a in produce(p)]
        return self._make(actions, force=force)

    def _make(self, actions: list[tuple[str, Action]], *, force: bool) -> Batch | None:
        if self.outage:
            self._backlog += actions  # behind what was refused, in order
            return None
        if not actions and not force:
            return None  # a frame into the open part: no file, state or playlist changes (most calls)
        published = self._published(force=force or bool(actions))
        if not actions and not published:
            return None
        return Batch(tuple(actions), published)

    def _published(self, *, force: bool) -> dict[str, bytes]:
        published = {}
        for name, p in self.packagers.items():
            if _fingerprint(p) != self._states.get(name):
                published[f"{name}/{STATE}"] = json.dumps(p.to_state()).encode()
        live_dvr = set()
        if self.playable and (force or published):
            for name, p in self.packagers.items():
                live = p.playlist(self._reports(name))
                if p.recording is not None and self.config.low_latency and not p.ended:
                    # The DVR playlist ends as the live one does, parts and all: written with
                    # it, and before it, so that a reload the live playlist answers finds it.
                    published[f"{name}/{DVR_PLAYLIST}"] = p.recording.live_text(live).encode()
                    live_dvr.add(name)
                published[f"{name}/{PLAYLIST}"] = live.render().encode()
        for name, p in self.packagers.items():
            # A recording's other playlists: the DVR one as each segment closes (without LL-HLS),
            # with ENDLIST at the end, and the VOD one at the end.
            r = p.recording
            if r is None or not r.segments or name in live_dvr or self._recorded.get(name) == (r.segments, p.ended):
                continue
            published[f"{name}/{DVR_PLAYLIST}"] = r.event_text(p.target_duration, ended=p.ended).encode()
            if p.ended:
                published[f"{name}/{VOD_PLAYLIST}"] = r.vod_text(p.target_duration).encode()
        return published

    def _reports(self, name: str) -> tuple[hls.RenditionReport, ...]:
        if not self.config.low_latency:
            return ()
        reports = []
        for other, q in self.packagers.items():
            if other == name:
                continue
            last = q.last_part()
            if last is not None:
                reports.append(hls.RenditionReport(f"../{other}/{PLAYLIST}", last[0], last[1]))
        return tuple(reports)


def _fingerprint(p: RenditionPackager) -> tuple:
    """What a state holds changes once per segment, not once per part."""
    return (p.next_msn, p.media_sequence, p.discontinuity_sequence, p.ended, p.init_uri, p.target_duration, len(p.segments))
