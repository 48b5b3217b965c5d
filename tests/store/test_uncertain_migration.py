"""Migrations 0006 and 0007 (issue 20, point 5): live_status accepts the state ``uncertain``
(and the held state), upgraded from 0005 with rows in place and downgraded back; a state
outside the one vocabulary is still refused by the database itself; assessments keep whether
the page said uncertain, earlier rows not."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from neopain.store import crud
from neopain.store.crud import StreamStatus
from neopain.store.session import MIGRATIONS, open_store
from neopain.store.tables import utc_now

STATES = ("pain", "nopain", "uncertain", "cannot_assess", "no_face")


def migrate(factory, target: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with factory.kw["bind"].begin() as connection:
        config.attributes["connection"] = connection
        (command.upgrade if target == "head" else command.downgrade)(config, target)


@pytest.fixture()
def ward(tmp_path):
    """A store at head with two open live sessions, each with a status row."""
    factory = open_store(f"sqlite:///{tmp_path / 'records.sqlite3'}")
    with factory() as db:
        nurse = crud.create_user(db, username="nurse", password_hash="h", role="clinician")
        sessions = []
        for number in ("HC-1", "HC-2"):
            patient = crud.create_patient(db, actor=nurse, record_number=number)
            sessions.append(crud.start_session(db, actor=nurse, patient=patient,
                                               source="live", model="m").id)
    return factory, sessions


def write(factory, session_id: int, *, state: str, held: str | None) -> None:
    now = utc_now()
    status = StreamStatus(state=state, smoothed=0.9, confidence=None, first_frame_at=now,
                          last_frame_at=now, last_assessed_at=now, held_state=held,
                          pain_since=now if held == "pain" else None, stream_started_at=now)
    with factory() as db:
        assert crud.write_status(db, session_id=session_id, status=status)


def rows(factory) -> list[tuple]:
    with factory.kw["bind"].connect() as connection:
        return [tuple(r) for r in connection.execute(text(
            "SELECT session_id, state, held_state, smoothed, pain_since IS NOT NULL "
            "FROM live_status ORDER BY session_id"))]


def set_state(factory, session_id: int, column: str, value: str) -> None:
    with factory.kw["bind"].begin() as connection:
        connection.execute(text(f"UPDATE live_status SET {column} = :value WHERE session_id = :id"),
                           {"value": value, "id": session_id})


def test_0006_upgrades_0005_with_rows_in_place_and_accepts_uncertain(ward):
    factory, (first, second) = ward
    migrate(factory, "0005")
    write(factory, first, state="pain", held="pain")
    write(factory, second, state="no_face", held=None)
    with pytest.raises(IntegrityError):  # 0005 knew no uncertain state
        set_state(factory, first, "state", "uncertain")
    before = rows(factory)
    migrate(factory, "head")
    assert rows(factory) == before
    for state in STATES:
        set_state(factory, second, "state", state)
    set_state(factory, second, "held_state", "uncertain")
    assert rows(factory)[1][1:3] == ("no_face", "uncertain")


@pytest.mark.parametrize("column, value", [("state", "maybe"), ("state", "stale"),
                                           ("state", "Uncertain"), ("held_state", "no_face"),
                                           ("held_state", "unsure")])
def test_a_state_outside_the_vocabulary_is_still_refused(ward, column, value):
    factory, (first, _) = ward
    write(factory, first, state="uncertain", held="uncertain")
    with pytest.raises(IntegrityError):
        set_state(factory, first, column, value)


def test_0006_downgrades_an_uncertain_bed_to_what_0005_can_say(ward):
    """No number was vouched for and nothing was pain: cannot assess, held state unknown."""
    factory, (first, second) = ward
    write(factory, first, state="uncertain", held="uncertain")
    write(factory, second, state="pain", held="pain")
    migrate(factory, "0005")
    assert rows(factory) == [(first, "cannot_assess", None, 0.9, 0),
                             (second, "pain", "pain", 0.9, 1)]
    migrate(factory, "head")
    write(factory, first, state="uncertain", held="uncertain")
    assert rows(factory)[0][1:3] == ("uncertain", "uncertain")


def test_0007_keeps_the_record_and_marks_earlier_rows_not_referred(ward):
    factory, (first, _) = ward
    migrate(factory, "0006")
    with factory.kw["bind"].begin() as connection:
        connection.execute(text(
            "INSERT INTO assessments (session_id, patient_id, time, offset_s, face_found, "
            "label, prob_pain, state, changed, model, latency_ms, has_snapshot) SELECT id, "
            "patient_id, started_at, 1.5, 1, 'pain', 0.9, 'pain', 1, 'm', 20, 0 "
            "FROM monitoring_sessions WHERE id = :id"), {"id": first})
    migrate(factory, "head")
    with factory() as db:
        [row] = crud.list_assessments(db, session_id=first)
        assert (row.label, row.state, row.uncertain) == ("pain", "pain", False)
        row.uncertain = True
        db.commit()
    migrate(factory, "0006")
    with factory.kw["bind"].connect() as connection:
        columns = [c[1] for c in connection.execute(text("PRAGMA table_info(assessments)"))]
        assert "uncertain" not in columns
        assert connection.execute(text("SELECT label, state FROM assessments")).all() == [
            ("pain", "pain")]
