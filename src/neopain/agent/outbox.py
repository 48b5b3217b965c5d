"""The agent's outbox: every record made and not yet answered for by the server, in SQLite.

A record counts as made once its insert is committed (WAL journal, ``synchronous=FULL``), so a
crash or a power cut loses none that was made; it leaves the outbox only when the server has
acknowledged or refused it (``remove``). Records are replayed oldest first (``peek``). The
outbox is bounded in records and in bytes: a record that does not fit is refused by ``add``
(counted by the caller as dropped) while the older ones wait, so what is sent stays in order.

The file holds snapshots of a patient's face: it is created readable by its owner only.

Example:
    >>> with Outbox(path, max_records=10_000, max_bytes=100_000_000) as outbox:
    ...     outbox.add({"id": "…", ...})
    ...     batch = outbox.peek(limit=100, max_bytes=4_000_000)
    ...     outbox.remove([record["id"] for record in batch])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

from neopain.data.outputs import create_private_file
from neopain.errors import NeopainError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,  -- before body: read without walking a snapshot's overflow pages
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class OutboxError(NeopainError):
    """An outbox file that cannot be opened or written (naming the file and why)."""


class OutboxWriteError(OutboxError):
    """A write SQLite refused (``database or disk is full``, an I/O error); ``reason`` is
    SQLite's words."""

    def __init__(self, path: Path, error: BaseException) -> None:
        self.reason = str(error) or type(error).__name__
        super().__init__(f"outbox {path} cannot be written: {self.reason}")


class Outbox:
    """Records waiting for the server, oldest first; safe to share between threads.

    Args:
        path: the SQLite file (created 0600, its folder 0700, when missing).
        max_records: the most records kept.
        max_bytes: the most bytes of record JSON kept (snapshots make most of it).

    Raises:
        OutboxError: a bound that is not a positive whole number, or a file SQLite cannot
            open as an outbox.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_records: int = 100_000,
                 max_bytes: int = 200_000_000) -> None:
        self.path = Path(path)
        self.max_records = max_records
        self.max_bytes = max_bytes
        for name, value in (("max_records", max_records), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OutboxError(f"{name}={value!r} must be a whole number >= 1")
        self._lock = threading.Lock()
        self.refusing_ = False
        self._db = self._connect()
        self.count_, self.bytes_ = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM records").fetchone()

    def _connect(self) -> sqlite3.Connection:
        try:
            create_private_file(self.path)  # snapshots of a patient's face
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except OSError as error:
            raise OutboxError(f"outbox {self.path}: cannot be created "
                              f"({error.strerror or error})") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            db.close()
            raise OutboxError(f"outbox {self.path}: not an outbox SQLite can open ({error}); "
                              "move it away to start an empty one") from None
        return db

    @property
    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is closed")
        return self._db

    @property
    def full(self) -> bool:
        """Whether the outbox holds as many records as it may, or refused a record for its
        bytes since the last ``remove``."""
        return self.refusing_ or self.count_ >= self.max_records

    def add(self, record: dict) -> bool:
        """Keep ``record`` (a JSON-ready dict with a unique ``id``); committed before it returns.

        Returns:
            True when kept (or already kept under that id: never twice); False when it does not
            fit within ``max_records`` / ``max_bytes`` (the caller counts it as dropped).

        Raises:
            OutboxWriteError: SQLite cannot write it (the disk is full …); nothing was kept.
        """
        body = json.dumps(record, separators=(",", ":"), allow_nan=False)
        size = len(body.encode())
        with self._lock:
            if self.count_ + 1 > self.max_records or self.bytes_ + size > self.max_bytes:
                self.refusing_ = True
                return False
            try:
                cursor = self._open_db.execute(
                    "INSERT OR IGNORE INTO records (id, body, size) VALUES (?, ?, ?)",
                    (str(record["id"]), body, size))
            except sqlite3.Error as error:
                raise OutboxWriteError(self.path, error) from None
            if cursor.rowcount:
                self.count_ += 1
                self.bytes_ += size
        return True

    def peek(self, *, limit: int = 100, max_bytes: int = 4_000_000) -> list[dict]:
        """The oldest records, at most ``limit`` of them and ``max_bytes`` together (always at
        least one when any is kept), oldest first; they stay until ``remove``."""
        with self._lock:
            rows = self._open_db.execute("SELECT body, size FROM records ORDER BY seq LIMIT ?",
                                    (limit,)).fetchall()
        batch, total = [], 0
        for body, size in rows:
            if batch and total + size > max_bytes:
                break
            batch.append(json.loads(body))
            total += size
        return batch

    def remove(self, ids: list[str]) -> None:
        """Forget the records of ``ids`` (acknowledged or refused by the server); unknown ids
        are ignored."""
        if not ids:
            return
        with self._lock:
            db = self._open_db
            marks = ",".join("?" * len(ids))
            try:
                db.execute("BEGIN IMMEDIATE")
                try:  # what leaves is subtracted: no count over the whole file per batch
                    count, size = db.execute(f"SELECT count(*), coalesce(sum(size), 0) FROM "
                                             f"records WHERE id IN ({marks})", ids).fetchone()
                    db.execute(f"DELETE FROM records WHERE id IN ({marks})", ids)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise OutboxWriteError(self.path, error) from None
            self.count_, self.bytes_ = self.count_ - count, self.bytes_ - size
            self.refusing_ = False

    def get_meta(self, key: str) -> object | None:
        """A JSON value kept with ``set_meta`` (None when never set)."""
        with self._lock:
            row = self._open_db.execute("SELECT value FROM meta WHERE key = ?",
                                        (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: object) -> None:
        """Keep a JSON value across starts (the last binding, the clock offset).

        Raises:
            OutboxWriteError: SQLite cannot write it.
        """
        with self._lock:
            try:
                self._open_db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON "
                                      "CONFLICT(key) DO UPDATE SET value = excluded.value",
                                      (key, json.dumps(value)))
            except sqlite3.Error as error:
                raise OutboxWriteError(self.path, error) from None

    def close(self) -> None:
        """Close the file; safe to call twice."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
