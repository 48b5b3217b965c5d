"""A monitor for the e2e checks of issue 19 (accessibility, layout): the real app with an admin
and one patient, on uvicorn in a thread, the face clip of ``test_bedside`` in its camera."""

from __future__ import annotations

import pytest

from e2e.test_bedside import ADMIN, PASSWORD, clips, start_uvicorn  # noqa: F401 (fixture)

PATIENT = "Baby Readable"


@pytest.fixture(scope="module")
def ward(tmp_path_factory):
    """(app, base URL, patient id) of a fresh monitor with ``ADMIN`` and ``PATIENT``."""
    from neopain.config import Settings
    from neopain.server import security
    from neopain.server.app import create_app
    from neopain.store import crud

    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("ward")))
    with app.state.neopain.store() as db:
        admin = crud.create_user(db, username=ADMIN, role="admin",
                                 password_hash=security.hash_password(PASSWORD))
        patient_id = crud.create_patient(db, actor=admin, name=PATIENT,
                                         record_number="R-19").id
    runner, thread, base = start_uvicorn(app)
    yield app, base, patient_id
    runner.should_exit = True
    thread.join(timeout=10)
    app.state.live.close()
