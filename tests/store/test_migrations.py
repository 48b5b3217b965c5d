"""The shipped Alembic migrations, on SQLite and on PostgreSQL: they build exactly the tables
the code declares, every one of them downgrades and upgrades again on a database holding
records, foreign keys hold, the key the server processes share is made once, and a process
waiting for another's migration says so."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url, text

from neopain.store import crud
from neopain.store.session import MIGRATION_LOCK, MIGRATIONS, create_store_engine, open_store
from neopain.store.tables import Base


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine, target: str, *, up: bool) -> None:
    """Up or down to ``target`` (a revision, ``head`` or ``base``), as ``open_store`` does."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.upgrade if up else command.downgrade)(config, target)


def differences(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_migrations_build_exactly_the_declared_tables(database_url):
    """A table or column added to tables.py without a migration fails here, on either
    database."""
    engine = open_store(database_url).kw["bind"]
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert differences(engine) == []
    assert version == head


def test_every_migration_downgrades_and_upgrades_again_keeping_the_records(database_url):
    """Down one revision at a time to the first, then up to the newest: each step runs on a
    database that holds records, and the users (table of the first revision) survive."""
    factory = open_store(database_url)
    with factory() as db:
        crud.create_user(db, username="ada", password_hash="x", role="admin")
        crud.shared_key(db, name="csrf")
    engine = factory.kw["bind"]
    revisions = [r.revision for r in
                 ScriptDirectory.from_config(alembic_config()).walk_revisions()]  # newest first
    for target in revisions[1:]:
        migrate(engine, target, up=False)
    assert "server_keys" not in inspect(engine).get_table_names()
    migrate(engine, "head", up=True)
    assert differences(engine) == []
    with open_store(database_url)() as db:
        assert [user.username for user in crud.list_users(db)] == ["ada"]
    migrate(engine, "base", up=False)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_foreign_keys_are_enforced(database_url):
    factory = open_store(database_url)
    with factory() as db, pytest.raises(Exception, match="(?i)foreign key"):
        db.execute(text("INSERT INTO assessments (session_id, patient_id, time, offset_s, "
                        "face_found, changed, model, latency_ms, has_snapshot) VALUES "
                        "(99, 99, '2026-01-01', 0, true, false, 'm', 1, false)"))


def test_server_processes_on_one_database_share_one_key(database_url):
    """Eight openers of one database asking at once for the CSRF key get the same 32 bytes
    (the first insert wins; the others' are no-ops), and it stays the same on reopening."""
    keys: list[bytes] = []
    start = threading.Barrier(8)

    def ask() -> None:
        factory = open_store(database_url)
        with factory() as db:
            start.wait(timeout=30)
            keys.append(crud.shared_key(db, name="csrf"))
        factory.kw["bind"].dispose()

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(keys) == 8 and len(set(keys)) == 1 and len(keys[0]) == 32
    with open_store(database_url)() as db:
        assert crud.shared_key(db, name="csrf") == keys[0]
        assert crud.shared_key(db, name="other") != keys[0]


@contextmanager
def migrating_elsewhere(database_url: str):
    """Hold the lock a migrating process holds, as another process would."""
    if database_url.startswith("sqlite"):
        lock = os.open(f"{make_url(database_url).database}.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            os.close(lock)
        return
    engine = create_store_engine(database_url)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
    engine.dispose()


def test_a_process_waiting_for_another_migrator_says_so_and_goes_on_after_it(database_url,
                                                                            caplog):
    open_store(database_url)().close()
    caplog.set_level(logging.WARNING, logger="neopain.store.session")
    with ThreadPoolExecutor(1) as pool:  # an error in the opener is raised by result()
        with migrating_elsewhere(database_url):
            opened = pool.submit(lambda: open_store(database_url)().close())
            deadline = time.monotonic() + 20
            while "another process is migrating it" not in caplog.text \
                    and time.monotonic() < deadline and not opened.done():
                time.sleep(0.02)
            assert "another process is migrating it; waiting for it to finish" in caplog.text
            with pytest.raises(TimeoutError):  # it waits
                opened.result(0.5)
        opened.result(20)  # and opens once the other is done
    password = make_url(database_url).password
    assert not password or password not in caplog.text
