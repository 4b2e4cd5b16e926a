"""The embedded store: one sqlite file, for a single controller (the default).

Writes run in ``BEGIN IMMEDIATE`` transactions so compare-and-set and the lease check happen
under sqlite's write lock; WAL mode lets readers proceed meanwhile.  Safe for several threads
and for several processes on one machine (a restarted controller beside a dying one).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hastack.clock import Clock
from hastack.errors import LeadershipLost, RevisionConflict, StoreUnavailable
from hastack.ports.store import Entry, Lease

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counter (
    id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO counter (id, revision) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch INTEGER NOT NULL, expires_at REAL NOT NULL
);
"""


class SqliteStore:
    """:class:`hastack.ports.store.Store` on a sqlite file (``":memory:"`` for tests)."""

    def __init__(self, path: str | Path, clock: Clock, *, timeout: float = 5.0) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._instance = os.urandom(8).hex()  # this handle: only it may re-take its own lease
        try:
            self._db = sqlite3.connect(
                str(path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(leases)")}
            if "instance" not in columns:  # a journal from before the column existed
                self._db.execute("ALTER TABLE leases ADD COLUMN instance TEXT NOT NULL DEFAULT ''")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open store {path}: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"store busy or unavailable: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise StoreUnavailable(f"commit failed: {exc}") from exc

    def _read(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return list(self._db.execute(sql, args))
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"store read failed: {exc}") from exc

    # ------------------------------------------------------------------ key-value

    def get(self, key: str) -> Entry | None:
        rows = self._read("SELECT value, revision FROM kv WHERE key = ?", (key,))
        if not rows:
            return None
        value, revision = rows[0]
        return Entry(key, str(value), int(str(revision)))

    def list(self, prefix: str) -> list[Entry]:
        rows = self._read(
            "SELECT key, value, revision FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(prefix), prefix),
        )
        return [Entry(str(k), str(v), int(str(r))) for k, v, r in rows]

    def _check(
        self, db: sqlite3.Connection, key: str, expect: int | None, lease: Lease | None
    ) -> None:
        if lease is not None:
            row = db.execute(
                "SELECT holder, epoch, expires_at FROM leases WHERE name = ?", (lease.name,)
            ).fetchone()
            now = self._clock.now()
            if row is None or row[0] != lease.holder or row[1] != lease.epoch or row[2] < now:
                raise LeadershipLost(f"lease {lease.name} epoch {lease.epoch} is no longer held")
        if expect is not None:
            row = db.execute("SELECT revision FROM kv WHERE key = ?", (key,)).fetchone()
            actual = 0 if row is None else int(row[0])
            if actual != expect:
                raise RevisionConflict(key, expect, actual)

    def _next_revision(self, db: sqlite3.Connection) -> int:
        db.execute("UPDATE counter SET revision = revision + 1 WHERE id = 1")
        return int(db.execute("SELECT revision FROM counter WHERE id = 1").fetchone()[0])

    def put(
        self, key: str, value: str, *, expect: int | None = None, lease: Lease | None = None
    ) -> int:
        with self._tx() as db:
            self._check(db, key, expect, lease)
            revision = self._next_revision(db)
            db.execute(
                "INSERT INTO kv (key, value, revision) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET "
                "value = excluded.value, revision = excluded.revision",
                (key, value, revision),
            )
            return revision

    def delete(self, key: str, *, expect: int | None = None, lease: Lease | None = None) -> None:
        with self._tx() as db:
            self._check(db, key, expect, lease)
            self._next_revision(db)
            db.execute("DELETE FROM kv WHERE key = ?", (key,))

    # ------------------------------------------------------------------ leases

    def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        now = self._clock.now()
        with self._tx() as db:
            row = db.execute(
                "SELECT holder, epoch, expires_at, instance FROM leases WHERE name = ?", (name,)
            ).fetchone()
            mine = row is not None and row[0] == holder and row[3] == self._instance
            if row is not None and not mine and row[2] >= now:
                return None  # held, by another controller or an earlier process of this one
            # the same handle keeps its token; a new holder gets a greater one
            epoch = int(row[1]) if mine and row[2] >= now else self._next_revision(db)
            db.execute(
                "INSERT INTO leases (name, holder, epoch, expires_at, instance) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
                "epoch = excluded.epoch, expires_at = excluded.expires_at, "
                "instance = excluded.instance",
                (name, holder, epoch, now + ttl, self._instance),
            )
            return Lease(name, holder, epoch, now + ttl)

    def renew(self, lease: Lease, ttl: float) -> Lease:
        now = self._clock.now()
        with self._tx() as db:
            row = db.execute(
                "SELECT holder, epoch, expires_at FROM leases WHERE name = ?", (lease.name,)
            ).fetchone()
            if row is None or row[0] != lease.holder or row[1] != lease.epoch or row[2] < now:
                raise LeadershipLost(f"lease {lease.name} epoch {lease.epoch} expired or taken")
            db.execute("UPDATE leases SET expires_at = ? WHERE name = ?", (now + ttl, lease.name))
            return Lease(lease.name, lease.holder, lease.epoch, now + ttl)

    def release(self, lease: Lease) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM leases WHERE name = ? AND holder = ? AND epoch = ?",
                (lease.name, lease.holder, lease.epoch),
            )

    def current(self, name: str) -> Lease | None:
        rows = self._read("SELECT holder, epoch, expires_at FROM leases WHERE name = ?", (name,))
        if not rows:
            return None
        holder, epoch, expires = rows[0]
        if float(str(expires)) < self._clock.now():
            return None
        return Lease(name, str(holder), int(str(epoch)), float(str(expires)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
