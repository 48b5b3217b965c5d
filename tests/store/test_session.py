"""The engine factory on SQLite: WAL with foreign keys and full sync, writers that wait for
each other, and a committed assessment that survives its writer being SIGKILLed; databases
neopain cannot store in refused with a message (the migrations, on SQLite and PostgreSQL:
``test_migrations``)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import secrets

import pytest
from sqlalchemy import make_url, text

from neopain.store import crud
from neopain.store.crud import NewAssessment
from neopain.store.session import StoreError, create_store_engine, open_store


def test_sqlite_file_runs_in_wal_with_foreign_keys_full_sync_and_busy_timeout(tmp_path):
    factory = open_store(f"sqlite:///{tmp_path / 'deep' / 'records.sqlite3'}")
    with factory() as db:
        pragma = {name: db.execute(text(f"PRAGMA {name}")).scalar()
                  for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")}
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 2,
                      "busy_timeout": 30000}


def test_opening_twice_keeps_the_records(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    with open_store(url)() as db:
        crud.create_user(db, username="ada", password_hash="x", role="admin")
    with open_store(url)() as db:
        assert [u.username for u in crud.list_users(db)] == ["ada"]


def test_a_bad_url_is_a_clear_error():
    with pytest.raises(StoreError, match="not a database URL"):
        create_store_engine("records.sqlite3")
    with pytest.raises(StoreError, match="--db postgresql"):
        create_store_engine("postgresql+nosuchdriver://u:secret@h/db")


def test_a_database_other_than_sqlite_or_postgresql_is_refused_naming_the_valid_ones():
    # the bug guarded: the docs said "any SQLAlchemy URL", and the server failed at its first
    # upsert (the shared key, a login) on anything else
    for url in ("mysql+pymysql://u:secret@h/db", "oracle://u:secret@h/db"):
        with pytest.raises(StoreError,
                           match=r"valid: sqlite:///.* or postgresql\+psycopg://") as error:
            create_store_engine(url)
        assert "secret" not in str(error.value)


def test_a_postgres_role_that_cannot_create_tables_is_told_so_not_shown_a_traceback(
        postgres_url):
    # the bug guarded: only OperationalError was caught; PostgreSQL refuses a role without
    # CREATE on the schema (the default for a non-owner since PostgreSQL 15) with a
    # ProgrammingError, which `neopain serve` printed as a traceback
    admin = create_store_engine(postgres_url)
    role, password = f"reader_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    with admin.begin() as connection:
        # PostgreSQL 15's default, said for older servers (NEOPAIN_TEST_DATABASE_URL)
        connection.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
    try:
        url = make_url(postgres_url).set(username=role, password=password)
        with pytest.raises(StoreError, match="cannot open or migrate it: .*permission denied"
                           ) as error:
            open_store(url.render_as_string(hide_password=False))
        assert password not in str(error.value) and "\n" not in str(error.value)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def test_concurrent_writers_wait_for_each_other_instead_of_failing(tmp_path):
    factory = open_store(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    with factory() as db:
        patient = crud.create_patient(db, actor=None, record_number="R1")
        session = crud.start_session(db, actor=None, patient=patient, source="live", model="m")
    errors: list[Exception] = []

    def write() -> None:
        try:
            with factory() as db:
                mine = crud.get_session(db, session.id)
                for _ in range(40):
                    crud.add_assessment(db, session=mine, assessment=NewAssessment(
                        face_found=True, model="m", latency_ms=1.0, label="pain", prob_pain=0.9))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with factory() as db:
        assert crud.count_assessments(db, session_id=session.id) == 160


WRITER = textwrap.dedent("""
    import sys
    from neopain.store import crud
    from neopain.store.crud import NewAssessment
    from neopain.store.session import open_store

    factory = open_store(sys.argv[1])
    with factory() as db:
        patient = crud.create_patient(db, actor=None, record_number="R1")
        session = crud.start_session(db, actor=None, patient=patient, source="live", model="m")
        print("ready", flush=True)
        while True:
            row = crud.add_assessment(db, session=session, assessment=NewAssessment(
                face_found=True, model="m", latency_ms=1.0, label="nopain", prob_pain=0.2,
                snapshot=b"\\xff\\xd8" + bytes(20000)))
            print(row.id, flush=True)
""")


def test_every_assessment_reported_committed_survives_sigkill(tmp_path):
    path = tmp_path / "r.sqlite3"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, f"sqlite:///{path}"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        saved = [int(writer.stdout.readline()) for _ in range(150)]
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        saved += [int(line) for line in writer.stdout.read().split()]
    finally:
        writer.kill()
        writer.wait()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in connection.execute("SELECT id FROM assessments")}
    assert len(saved) >= 150 and set(saved) <= stored


def test_database_errors_never_show_the_values_written(tmp_path):
    factory = open_store(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    with factory() as db, pytest.raises(Exception) as caught:
        db.execute(text("INSERT INTO patients (name, record_number, notes, created_at, "
                        "gestational_age_weeks) VALUES (:name, '', '', '2026-01-01', 99)"),
                   {"name": "Baby Silva"})
    assert "gestational_age" in str(caught.value) and "Silva" not in str(caught.value)
