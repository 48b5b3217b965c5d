"""The engine factory: a SQLite or PostgreSQL URL; SQLite gets WAL, foreign keys and a busy
timeout.

``open_store(url)`` is what the server and the CLI call: it builds the engine, brings the schema
to the newest Alembic migration (shipped in ``store/migrations``) and returns a session factory.

SQLite runs in WAL mode with ``synchronous=FULL``: a commit has reached the disk before it
returns, so an assessment the monitor reported as saved survives a killed server and a power
cut; readers never block the writer.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from neopain.data.outputs import create_private_file
from neopain.errors import NeopainError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000


class StoreError(NeopainError):
    """A records database that cannot be opened or written, or a record that breaks a rule."""


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


DATABASES = ("sqlite", "postgresql")
"""The databases neopain stores in (``crud.accounts._upsert_insert`` uses their upserts)."""
VALID_URLS = "sqlite:///path/records.sqlite3 or postgresql+psycopg://user@host/dbname"


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, foreign keys, ``synchronous=FULL`` and a
    30 s busy timeout, and are created 0600 in folders created 0700.

    Raises:
        StoreError: a URL SQLAlchemy cannot parse, of a database other than SQLite or
            PostgreSQL, or whose driver is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"--db {url!r}: not a database URL; valid: {VALID_URLS}") from None
    if parsed.get_backend_name() not in DATABASES:
        raise StoreError(f"--db {_safe(parsed)}: neopain stores its records in SQLite or "
                         f"PostgreSQL; valid: {VALID_URLS}")
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
        except (ImportError, ArgumentError) as error:
            raise StoreError(f"--db {_safe(parsed)}: {error}") from None
    memory = parsed.database in (None, "", ":memory:")
    if not memory:
        _private_file(Path(parsed.database).expanduser())
    engine = create_engine(
        parsed,
        hide_parameters=True,  # database errors and logs never show the values (patient data)
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        # one shared connection keeps an in-memory database alive (tests)
        poolclass=StaticPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    return engine


def _private_file(path: Path) -> None:
    """The database file, created readable by its owner only (``create_private_file``)."""
    try:
        create_private_file(path)
    except OSError as error:
        raise StoreError(f"records database {path}: cannot create it ({error.strerror})") from None


MIGRATION_LOCK = 0x6E656F70  # "neop": the PostgreSQL advisory lock every migrator takes


@contextmanager
def _one_migrator(engine: Engine) -> Iterator[Connection]:
    """A transaction in which this process alone migrates the database: server processes that
    start together on a new database would otherwise each see it empty and create the same
    tables. PostgreSQL: a transaction-scoped advisory lock. A SQLite file: an exclusive lock on
    ``<file>.lock`` (SQLite's own lock cannot be taken before Alembic reads the revision:
    Python's driver runs its DDL outside transactions); where that file cannot be made (a
    read-only folder: nobody can migrate there) none is taken. An in-memory database has one
    user. A process that has to wait says so in the log (a migration can take a while)."""
    database = engine.url.database
    lock_file = None
    if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
        try:
            lock_file = os.open(f"{Path(database).expanduser()}.lock", os.O_RDWR | os.O_CREAT,
                                0o600)
        except OSError:
            log.debug("no migration lock beside %s (cannot create it)", database)
    waiting = ("records database %s: another process is migrating it; waiting for it to "
               "finish")
    try:
        if lock_file is not None:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning(waiting, _safe(engine.url))
                fcntl.flock(lock_file, fcntl.LOCK_EX)
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql" and not connection.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}):
                log.warning(waiting, _safe(engine.url))
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": MIGRATION_LOCK})
            yield connection
    finally:
        if lock_file is not None:
            os.close(lock_file)  # releases the lock


def upgrade_schema(engine: Engine) -> None:
    """Apply every Alembic migration the database lacks (a new database gets them all), one
    process at a time (``_one_migrator``).

    Raises:
        StoreError: the database cannot be reached or migrated.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with _one_migrator(engine) as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except DBAPIError as error:  # unreachable, refused (no rights to create tables), ...
        # the first line: PostgreSQL's DETAIL lines could echo values
        reason = (str(error.orig).splitlines() or [""])[0]
        raise StoreError(f"records database {_safe(engine.url)}: cannot open or migrate it: "
                         f"{reason}") from None


def open_store(url: str) -> sessionmaker[Session]:
    """Engine for ``url`` with the newest schema, as a session factory (``expire_on_commit``
    off, so rows stay readable after ``crud`` commits)."""
    engine = create_store_engine(url)
    try:
        upgrade_schema(engine)
    except StoreError:
        engine.dispose()
        raise
    log.info("records database ready: %s (%s)", _safe(engine.url),
             ", ".join(sorted(inspect(engine).get_table_names())))
    return sessionmaker(engine, expire_on_commit=False)
