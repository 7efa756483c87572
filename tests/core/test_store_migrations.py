"""The SQLite store: pragmas on open, numbered migrations, upgrading an old store in place, and
several processes opening (and upgrading) the same store at once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemons.core import domain
from daemons.core.errors import StoreError
from daemons.core.store import Store

ALL = ["0001_streams_keys_generations", "0002_media_endpoints", "0003_renditions_snapshots", "0004_measured_bandwidth_player_events",
       "0005_endpoint_report_tokens", "0006_mirrored_streams",
       "0007_publisher_presence_reconnect_grace", "0008_recordings_restream", "0009_history_by_time"]
REPO = Path(__file__).resolve().parents[2]


def _tables(store: Store) -> set[str]:
    return set(store.db.table_names())


def _old_store(path: Path, stop_before: str = "0002_media_endpoints") -> None:
    """A store as an older Sender left it: only the migrations before `stop_before`, plus data."""
    with Store.open(path, migrate=False) as old:
        assert old.schema_version() == []
        old.migrate(stop_before=stop_before)
        with old.write() as db:
            db.execute(
                "INSERT INTO streams (id, slug, title, visibility, auto_start, created_at, updated_at) "
                "VALUES ('st_old', 'legacy', 'From an old Sender', 'unlisted', 0, "
                "'2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z')"
            )


def test_migration_names_are_numbered_in_order(tmp_path):
    with Store.open(tmp_path / "empty.db", migrate=False) as store:
        names = store.pending_migrations()
    assert names == ALL
    assert [n.split("_", 1)[0] for n in names] == [f"{i:04d}" for i in range(1, len(names) + 1)]


def test_fresh_store_has_every_migration_and_safe_pragmas(tmp_path):
    with Store.open(tmp_path / "s.db", busy_timeout_ms=4321) as store:
        assert store.schema_version() == ALL
        assert store.pending_migrations() == []
        assert {"streams", "stream_keys", "stream_generations", "media_endpoints", "endpoint_sources",
                "renditions", "endpoint_snapshots", "endpoint_history", "_sqlite_migrations"} <= _tables(store)
        conn = store.db.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 4321
        # Each migration is recorded exactly once.
        rows = store.query("SELECT name FROM _sqlite_migrations WHERE migration_set = 'sender' ORDER BY id")
        assert [r["name"] for r in rows] == ALL


def test_reopening_a_current_store_applies_nothing(tmp_path):
    path = tmp_path / "s.db"
    Store.open(path).close()
    with Store.open(path, migrate=False) as store:
        assert store.migrate() == []
        assert store.query("SELECT count(*) AS n FROM _sqlite_migrations")[0]["n"] == len(ALL)


def test_foreign_keys_are_enforced(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        with pytest.raises(Exception, match="FOREIGN KEY"):
            with store.write() as db:
                db.execute(
                    "INSERT INTO stream_keys (id, stream_id, prefix, verifier, created_at) "
                    "VALUES ('k', 'no-such-stream', 'skx', 'v', 'now')"
                )
        assert store.query("SELECT * FROM stream_keys") == []  # the failed write rolled back


def test_old_store_upgrades_in_place_with_data_preserved(tmp_path, secret):
    path = tmp_path / "old.db"
    _old_store(path)
    with Store.open(path, migrate=False) as old:
        assert old.schema_version() == ALL[:1]
        assert old.pending_migrations() == ALL[1:]
        assert "media_endpoints" not in _tables(old)

    with Store.open(path) as store:  # the next open upgrades it
        assert store.schema_version() == ALL
        assert {"media_endpoints", "renditions", "endpoint_history"} <= _tables(store)
        legacy = domain.streams.get(store, "legacy")
        assert legacy["id"] == "st_old"
        assert legacy["title"] == "From an old Sender"
        assert legacy["visibility"] == "unlisted"
        assert legacy["auto_start"] is False
        # The upgraded store works for the new tables with the old rows.
        row, key = domain.keys.create(store, secret, "legacy")
        assert domain.keys.verify(store, secret, key).ok
        rendition = domain.renditions.upsert(store, "st_old", {"name": "source", "kind": "source"})
        assert rendition["stream_id"] == "st_old"
        domain.endpoints.upsert(store, "origin", type="tribes_origin")


def test_upgrade_from_second_version(tmp_path):
    path = tmp_path / "old2.db"
    _old_store(path, stop_before="0003_renditions_snapshots")
    with Store.open(path, migrate=False) as old:
        assert old.schema_version() == ALL[:2]
        domain.endpoints.upsert(old, "origin", type="tribes_origin")
    with Store.open(path, migrate=False) as store:
        assert store.migrate() == ALL[2:]
        assert domain.endpoints.get(store, "origin")["type"] == "tribes_origin"
        assert domain.streams.get(store, "legacy")["id"] == "st_old"


def test_migrate_stop_before_an_applied_migration_is_refused(tmp_path):
    with Store.open(tmp_path / "s.db", migrate=False) as store:
        store.migrate(stop_before="0003_renditions_snapshots")
        with pytest.raises(ValueError):
            store.migrate(stop_before="0002_media_endpoints")
        assert store.schema_version() == ALL[:2]
        assert not store.db.conn.in_transaction  # the write lock was released


_OPENER = textwrap.dedent(
    """
    import json, sys
    from daemons.core.store import Store
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    store = Store.open(sys.argv[1], busy_timeout_ms=10000, migrate=False)
    applied = store.migrate()
    print(json.dumps({"applied": applied, "version": store.schema_version()}), flush=True)
    store.close()
    """
)


def test_processes_opening_an_old_store_at_once_upgrade_it_once(tmp_path):
    path = tmp_path / "old.db"
    _old_store(path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, str(path)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for p in procs:  # every process has imported everything and waits at the start line
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, err
            assert "locked" not in err
            results.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()

    applied = [name for r in results for name in r["applied"]]
    assert sorted(applied) == ALL[1:]  # each pending migration applied by exactly one process
    assert all(r["version"] == ALL for r in results)
    with Store.open(path) as store:
        rows = store.query("SELECT name FROM _sqlite_migrations ORDER BY id")
        assert [r["name"] for r in rows] == ALL
        assert domain.streams.get(store, "legacy")["id"] == "st_old"


def test_open_in_missing_directory_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "nope" / "s.db")


def test_open_of_a_file_that_is_not_a_database_is_a_store_error(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not SQLite at all, " * 200)
    with pytest.raises(StoreError, match=str(path)):
        Store.open(path)


def test_write_rolls_back_on_error(bare_store):
    with pytest.raises(RuntimeError):
        with bare_store.write() as db:
            db["streams"].insert(
                {"id": "st_x", "slug": "x", "created_at": "t", "updated_at": "t"}
            )
            raise RuntimeError("boom")
    assert bare_store.query("SELECT * FROM streams") == []
    assert not bare_store.db.conn.in_transaction
