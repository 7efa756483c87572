"""Numbered schema migrations of the store, in the order they were released.

Never edit a released migration: add the next one. Each runs atomically and is recorded in
`_sqlite_migrations` by sqlite-utils, so a store made by an older Sender upgrades in place.
Timestamps are UTC ISO-8601 text; booleans are 0/1 integers.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("sender")


@MIGRATIONS(name="0001_streams_keys_generations")
def _m0001(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE streams (
            id TEXT PRIMARY KEY,
            slug TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            visibility TEXT NOT NULL DEFAULT 'public'
                CHECK (visibility IN ('public', 'unlisted', 'private')),
            auto_start INTEGER NOT NULL DEFAULT 1 CHECK (auto_start IN (0, 1)),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT
        );
        -- Slugs are unique among streams that are not deleted; a deleted slug can be reused.
        CREATE UNIQUE INDEX streams_live_slug ON streams (slug) WHERE deleted_at IS NULL;

        CREATE TABLE stream_keys (
            id TEXT PRIMARY KEY,
            stream_id TEXT NOT NULL REFERENCES streams (id),
            prefix TEXT NOT NULL UNIQUE,
            verifier TEXT NOT NULL,
            label TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at TEXT
        );
        CREATE INDEX stream_keys_stream ON stream_keys (stream_id);

        CREATE TABLE stream_generations (
            id TEXT PRIMARY KEY,
            stream_id TEXT NOT NULL REFERENCES streams (id),
            status TEXT NOT NULL CHECK (status IN ('starting', 'live', 'ended', 'failed')),
            mode TEXT NOT NULL DEFAULT 'origin_ingest',
            started_at TEXT NOT NULL,
            live_at TEXT,
            ended_at TEXT,
            failure_reason TEXT,
            discontinuity_count INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        );
        -- At most one active (starting or live) generation per stream.
        CREATE UNIQUE INDEX stream_generations_active ON stream_generations (stream_id)
            WHERE status IN ('starting', 'live');
        CREATE INDEX stream_generations_stream ON stream_generations (stream_id, started_at);
        """
    )


@MIGRATIONS(name="0002_media_endpoints")
def _m0002(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE media_endpoints (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            type TEXT NOT NULL
                CHECK (type IN ('tribes_origin', 'tribes_edge', 'external_origin', 'external_edge')),
            node_id TEXT NOT NULL DEFAULT '',
            public_base_url TEXT NOT NULL DEFAULT '',
            enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
            health_thresholds TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT
        );
        -- The distribution graph: each endpoint's ordered source endpoints (parent links).
        CREATE TABLE endpoint_sources (
            endpoint_id TEXT NOT NULL REFERENCES media_endpoints (id),
            source_id TEXT NOT NULL REFERENCES media_endpoints (id),
            position INTEGER NOT NULL,
            PRIMARY KEY (endpoint_id, source_id),
            UNIQUE (endpoint_id, position),
            CHECK (endpoint_id != source_id)
        );
        """
    )


@MIGRATIONS(name="0003_renditions_snapshots")
def _m0003(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE renditions (
            id TEXT PRIMARY KEY,
            stream_id TEXT NOT NULL REFERENCES streams (id),
            name TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('source', 'transcode')),
            width INTEGER,
            height INTEGER,
            video_bitrate INTEGER,
            audio_bitrate INTEGER,
            video_codec TEXT,
            audio_codec TEXT,
            frame_rate REAL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (stream_id, name)
        );

        -- The latest snapshot per (endpoint, generation); generation_id '' = the endpoint itself.
        CREATE TABLE endpoint_snapshots (
            endpoint_id TEXT NOT NULL REFERENCES media_endpoints (id),
            generation_id TEXT NOT NULL DEFAULT '',
            observed_at TEXT NOT NULL,
            reporter TEXT NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('healthy', 'degraded', 'stale', 'offline', 'overloaded')),
            viewers INTEGER NOT NULL DEFAULT 0,
            ingress_bps INTEGER NOT NULL DEFAULT 0,
            egress_bps INTEGER NOT NULL DEFAULT 0,
            playlist_age_s REAL,
            last_segment_at TEXT,
            segment_lag INTEGER,
            PRIMARY KEY (endpoint_id, generation_id)
        );

        -- Every snapshot, bounded per endpoint by snapshot.history_limit.
        CREATE TABLE endpoint_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            endpoint_id TEXT NOT NULL REFERENCES media_endpoints (id),
            generation_id TEXT NOT NULL DEFAULT '',
            observed_at TEXT NOT NULL,
            reporter TEXT NOT NULL,
            status TEXT NOT NULL,
            viewers INTEGER NOT NULL DEFAULT 0,
            ingress_bps INTEGER NOT NULL DEFAULT 0,
            egress_bps INTEGER NOT NULL DEFAULT 0,
            playlist_age_s REAL,
            last_segment_at TEXT,
            segment_lag INTEGER
        );
        CREATE INDEX endpoint_history_endpoint ON endpoint_history (endpoint_id, id);
        """
    )


@MIGRATIONS(name="0004_measured_bandwidth_player_events")
def _m0004(db: Database) -> None:
    db.executescript(
        """
        -- What the packager measured (bits/s over the live window): peak segment and average.
        ALTER TABLE renditions ADD COLUMN measured_bandwidth INTEGER;
        ALTER TABLE renditions ADD COLUMN measured_average_bandwidth INTEGER;

        -- Recent player telemetry, bounded by http.telemetry_keep_events.
        CREATE TABLE player_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            received_at TEXT NOT NULL,
            stream_id TEXT NOT NULL,
            generation_id TEXT,
            session_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            value REAL,
            detail TEXT
        );
        CREATE INDEX player_events_stream ON player_events (stream_id, id);
        """
    )


@MIGRATIONS(name="0005_endpoint_report_tokens")
def _m0005(db: Database) -> None:
    db.executescript(
        """
        -- An external endpoint's report token is HMAC(install secret, id + salt): the store keeps
        -- only the salt ('' = no token minted); minting a new token changes it (the old one stops working).
        ALTER TABLE media_endpoints ADD COLUMN report_token_salt TEXT NOT NULL DEFAULT '';
        """
    )


@MIGRATIONS(name="0006_mirrored_streams")
def _m0006(db: Database) -> None:
    db.executescript(
        """
        -- An edge's copy of a source's stream: the source endpoint it was mirrored from
        -- (NULL for this node's own streams). Mirrored generations have mode 'edge_mirror'.
        ALTER TABLE streams ADD COLUMN source_endpoint_id TEXT;
        """
    )


@MIGRATIONS(name="0007_publisher_presence_reconnect_grace")
def _m0007(db: Database) -> None:
    db.executescript(
        """
        -- The publisher of an active generation: when it last connected and when it left (NULL
        -- while one is connected, or before the first). The reconnect grace counts from
        -- publisher_left_at, so it survives an ingest daemon restart.
        ALTER TABLE stream_generations ADD COLUMN publisher_connected_at TEXT;
        ALTER TABLE stream_generations ADD COLUMN publisher_left_at TEXT;
        -- Why an ended generation ended: stopped | publisher_gone | stream_deleted | source_ended.
        ALTER TABLE stream_generations ADD COLUMN end_reason TEXT;
        -- A stream's own reconnect grace ("30s", "never"); NULL = the config's rtmp.reconnect_grace.
        ALTER TABLE streams ADD COLUMN reconnect_grace TEXT;
        """
    )


@MIGRATIONS(name="0008_recordings_restream")
def _m0008(db: Database) -> None:
    db.executescript(
        """
        -- A stream's own recording setting: 1 records, 0 does not, NULL = the config's recording.enabled.
        ALTER TABLE streams ADD COLUMN recording INTEGER CHECK (recording IN (0, 1));
        -- Whether a generation was recorded (decided when it began; its spool directory holds every segment).
        ALTER TABLE stream_generations ADD COLUMN recorded INTEGER NOT NULL DEFAULT 0 CHECK (recorded IN (0, 1));

        -- Where a stream's broadcast is pushed (restream). The URL carries the platform's stream
        -- key: shown masked after creation, never logged.
        CREATE TABLE restream_targets (
            id TEXT PRIMARY KEY,
            stream_id TEXT NOT NULL REFERENCES streams (id),
            label TEXT NOT NULL DEFAULT '',
            url TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT
        );
        CREATE INDEX restream_targets_stream ON restream_targets (stream_id);
        """
    )


@MIGRATIONS(name="0009_history_by_time")
def _m0009(db: Database) -> None:
    db.executescript(
        """
        -- The admin page's charts read the last hour of every endpoint's history by time.
        CREATE INDEX endpoint_history_observed ON endpoint_history (observed_at);
        """
    )
