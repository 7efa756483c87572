"""The SQLite store: opening it safely for many processes at once, and its migrations.

Every process (the CLI and four daemons) opens its own connection with WAL, a busy timeout and
foreign keys on. Writers take the write lock up front (`BEGIN IMMEDIATE`): in WAL mode a read
transaction that later tries to write fails at once with "database is locked" instead of
waiting, so every write goes through `Store.write()`.

The schema is versioned by sqlite-utils' `Migrations` (see `migrations.py`), applied on open
under the same write lock, so two processes opening an old store at once upgrade it once.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlite_utils

from daemons.core.errors import StoreError
from daemons.core.store.migrations import MIGRATIONS


class Store:
    """One connection to the store. Not shared between threads without the caller's lock."""

    def __init__(self, db: sqlite_utils.Database, path: Path):
        self.db = db
        self.path = path

    @classmethod
    def open(cls, path: str | Path, *, busy_timeout_ms: int = 5000, migrate: bool = True) -> "Store":
        path = Path(path)
        if not path.parent.is_dir():
            raise StoreError(f"store directory {path.parent} does not exist (run `sender init`)")
        try:
            # check_same_thread=False: daemons call the store from worker threads, one at a time.
            conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"store {path}: cannot switch to WAL (journal_mode is {mode})")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            store = cls(sqlite_utils.Database(conn), path)
            if migrate:
                store.migrate()
            return store
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open store {path}: {e}") from None

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def migrate(self, *, stop_before: str | None = None) -> list[str]:
        """Apply pending migrations under the write lock; return the names applied."""
        if not MIGRATIONS.pending(self.db):
            return []
        with self.write():
            pending = [m.name for m in MIGRATIONS.pending(self.db)]
            MIGRATIONS.apply(self.db, stop_before=stop_before)
            applied = {m.name for m in MIGRATIONS.applied(self.db)}
        return [name for name in pending if name in applied]

    def schema_version(self) -> list[str]:
        return [m.name for m in MIGRATIONS.applied(self.db)]

    def pending_migrations(self) -> list[str]:
        return [m.name for m in MIGRATIONS.pending(self.db)]

    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction that holds the write lock from its start (BEGIN IMMEDIATE)."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():  # nested: a savepoint inside the outer write
                yield self.db
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise StoreError(f"store {self.path} is busy: {e}") from None
        try:
            yield self.db
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        return list(self.db.query(sql, params))

    def one(self, sql: str, params: tuple | dict = ()) -> dict | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def ping(self) -> None:
        """Raises if the database does not answer (sender-http's /readyz)."""
        self.db.execute("SELECT 1").fetchall()
