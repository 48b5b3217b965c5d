"""Server fixtures: an app on a fresh SQLite file with a fast, deterministic fake model, users of
every role, and logged-in clients."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from skimage import data as skdata

from neopain.config import Settings
from neopain.prediction import Prediction, Predictor
from neopain.server import security
from neopain.server.app import create_app
from neopain.store import crud
from neopain.faces.crop import CropRule

PASSWORD = "correct horse battery"
MARK = 24  # side of the white square in the top-left corner that makes the fake model say pain


class MarkPredictor(Predictor):
    """Pain when the frame's top-left corner is white: tests choose the label per frame.

    ``CropRule.whole_image()`` makes the assessor pass the whole frame.
    """

    name = "fake-mark"
    crop = CropRule.whole_image()

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        self.calls += len(crops)
        out = []
        for crop in crops:
            prob = 0.9 if crop[:MARK, :MARK].mean() > 200 else 0.1
            out.append(Prediction(prob, "pain" if prob >= 0.5 else "nopain", 0.5, self.name))
        return out

    def close(self) -> None:
        self.closed = True


def astronaut_frame(*, pain: bool = False, shift: int = 0) -> np.ndarray:
    """A 640×480 BGR frame with the astronaut's face (found by mediapipe), marked for pain."""
    image = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    frame = cv2.resize(image, (480, 480))
    canvas = np.full((480, 640, 3), 40, np.uint8)
    canvas[:, 80 + shift:560 + shift] = frame  # shift: a few pixels of motion, 0 to 80
    canvas[:MARK, :MARK] = 255 if pain else 0
    return canvas


def no_face_frame() -> np.ndarray:
    """A 640×480 BGR frame with a cup of coffee and no face."""
    return cv2.resize(cv2.cvtColor(skdata.coffee(), cv2.COLOR_RGB2BGR), (640, 480))


def jpeg(frame: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


@dataclass
class Server:
    app: object
    settings: Settings
    predictor: Predictor

    def db(self):
        return self.app.state.neopain.store()

    def client(self, role: str | None = None) -> TestClient:
        """A client logged in as the user of ``role`` (created on demand); None: anonymous."""
        client = TestClient(self.app, base_url="http://testserver")
        client.csrf = ""
        if role is not None:
            with self.db() as db:
                if crud.find_user(db, role) is None:
                    crud.create_user(db, username=role, role=role,
                                     password_hash=security.hash_password(PASSWORD))
            response = client.post("/api/login", json={"username": role, "password": PASSWORD})
            assert response.status_code == 200, response.text
            client.csrf = response.json()["csrf_token"]
            client.headers["X-CSRF-Token"] = client.csrf
        return client


def make_server(tmp_path, predictor: Predictor | None = None, **overrides) -> Server:
    """An app on ``tmp_path`` with ``predictor`` (default: a new ``MarkPredictor``); its
    records in ``database_url`` when given, else SQLite in ``tmp_path``."""
    settings = Settings(data_dir=tmp_path, **overrides)
    predictor = MarkPredictor() if predictor is None else predictor
    return Server(create_app(settings, predictor=predictor), settings, predictor)


@pytest.fixture()
def detectors(monkeypatch):
    """The face detectors the live service builds (``.built``) and closes (``.closed``)."""
    from neopain.server import live as live_module

    record = SimpleNamespace(built=[], closed=[])
    real_create = live_module.create_detector

    def create_detector(name):
        detector = real_create(name)
        real_close = detector.close

        def close():
            record.closed.append(detector)
            real_close()

        detector.close = close
        record.built.append(detector)
        return detector

    monkeypatch.setattr(live_module, "create_detector", create_detector)
    return record


@pytest.fixture()
def make(database_url):
    """``make_server(tmp_path, **settings)`` for tests that need other settings, on the test's
    records database (each backend in turn) unless ``database_url=`` is given."""
    return functools.partial(make_server, database_url=database_url)


@pytest.fixture()
def server(tmp_path, database_url) -> Server:
    """An app on each records backend in turn (``database_url``)."""
    return make_server(tmp_path, timeline_interval_s=0.0, database_url=database_url)


@pytest.fixture()
def app_routes(server) -> list[tuple[str, str]]:
    """Every (method, path) the server's app answers (see ``list_routes``)."""
    return list_routes(server.app)


def list_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) the app answers, ``WS`` for WebSockets, ``MOUNT`` for mounts;
    routers included lazily (FastAPI's ``_IncludedRouter``) are walked too."""
    found = []
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        entries = list(contexts()) if contexts else [route]
        for entry in entries:
            original = getattr(entry, "original_route", entry)
            path = getattr(entry, "path", "") or original.path
            methods = getattr(entry, "methods", None) or getattr(original, "methods", None)
            if "WebSocket" in type(original).__name__:
                found.append(("WS", path))
            elif methods is None:
                found.append(("MOUNT", path))
            else:
                found.extend((method, path) for method in sorted(methods) if method != "HEAD")
    return found


@pytest.fixture()
def records(server) -> dict[str, int]:
    """A patient with a live session holding one snapshot, and a second open live session."""
    return seed(server)


@pytest.fixture(scope="module")
def module_server(tmp_path_factory, module_database_url) -> Server:
    """One server for a whole test module (tests that only read, or only check access), on
    each records backend in turn."""
    return make_server(tmp_path_factory.mktemp("server"), timeline_interval_s=0.0,
                       database_url=module_database_url)


@pytest.fixture(scope="module")
def module_records(module_server) -> dict[str, int]:
    """``records`` on the module's server."""
    return seed(module_server)


def seed(server: Server) -> dict[str, int]:
    from neopain.store.crud import NewAssessment

    with server.db() as db:
        nurse = crud.create_user(db, username="seed", role="clinician",
                                 password_hash=security.hash_password(PASSWORD))
        patient = crud.create_patient(db, actor=nurse, name="Baby Seed", record_number="S-1")
        session = crud.start_session(db, actor=nurse, patient=patient, source="live",
                                     model="fake-mark")
        row = crud.add_assessment(db, session=session, assessment=NewAssessment(
            face_found=True, model="fake-mark", latency_ms=5.0, label="pain", prob_pain=0.9,
            state="pain", changed=True, face_box=(1, 2, 3, 4), snapshot=jpeg(no_face_frame())))
        other = crud.start_session(db, actor=nurse, patient=patient, source="live",
                                   model="fake-mark")
        alarm = crud.raise_alarm(db, session=other, rule="link", priority="medium",
                                 condition_since=other.started_at, limit_s=10.0,
                                 now=other.started_at)
    return {"patient_id": patient.id, "session_id": session.id, "assessment_id": row.id,
            "user_id": nurse.id, "by": "day", "open_session_id": other.id,
            "alarm_id": alarm.id}


@pytest.fixture(scope="session")
def frames():
    """Frame makers: ``face(pain=, shift=)`` (the astronaut, marked for the fake model) and
    ``no_face()`` (a cup of coffee), 640×480 BGR; ``jpeg(frame)``."""

    class Frames:
        face = staticmethod(astronaut_frame)
        no_face = staticmethod(no_face_frame)
        jpeg = staticmethod(jpeg)

    return Frames()
