"""The uncertain state from the panel to the records and the ward (issue 20, point 5).

A model whose referral band holds both labels for most of the smoothing window makes the panel
say "uncertain – look at the baby" with no number (a clinical screen never shows a value it
cannot vouch for); one such frame among pain still shows PAIN; the bed's status row stores
``uncertain``; the ward shows it; and uncertain time never counts towards the pain alarm,
while it is no "no face" either.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from server.conftest import MARK, MarkPredictor, make_server
from sqlalchemy import select

from live_client import live_socket
from neopain.faces.base import Face, FaceDetector
from neopain.monitor.alarm_rules import AlarmLimits
from neopain.monitor.pipeline import Assessor, FrameAssessment
from neopain.prediction import Prediction
from neopain.server.alarm_engine import evaluate
from neopain.monitor.display import KIND_TEXT, shown_of
from neopain.server.live import reply_of
from neopain.server.stream_status import StatusWriter
from neopain.server.ward import STATE_TEXT
from neopain.store import crud
from neopain.store.session import open_store
from neopain.store.tables import Alarm, LiveStatus

UNCERTAIN_TEXT = "uncertain – look at the baby"


class BandedMark(MarkPredictor):
    """The fake model with a referral band: both labels when the top-RIGHT corner is white."""

    name = "fake-banded"

    def predict_crops(self, crops):
        out = []
        for crop, prediction in zip(crops, super().predict_crops(crops), strict=True):
            both = crop[:MARK, -MARK:].mean() > 200
            out.append(Prediction(prediction.prob_pain, prediction.label, 0.5, self.name,
                                  prediction_set="pain|nopain" if both else prediction.label))
        return out


class WholeFrame(FaceDetector):
    default_threshold = 0.0

    def _detect(self, image, *, prior):
        return [Face((0.0, 0.0, float(image.shape[1]), float(image.shape[0])), 0.9)]


def marked(*, pain: bool, both: bool) -> np.ndarray:
    image = np.full((64, 96, 3), 40, np.uint8)
    image[:MARK, :MARK] = 255 if pain else 0
    image[:MARK, -MARK:] = 255 if both else 0
    return image


def panel(marks: list[bool], *, pain: bool = True) -> list[dict]:
    """What the panel shows for frames whose band holds both labels where ``marks`` says."""
    replies = []
    with Assessor(BandedMark(), detector=WholeFrame(), window=5) as assessor:
        for i, both in enumerate(marks):
            result = assessor.step(marked(pain=pain, both=both), time_s=i / 5)
            replies.append(reply_of(result, frame_shape=(64, 96, 3),
                                    shown=shown_of(result))["shown"])
    return replies


@pytest.mark.parametrize("pain", [True, False])
def test_a_band_holding_both_for_most_of_the_window_shows_uncertain_and_no_number(pain):
    shown = panel([False] * 5 + [True] * 6, pain=pain)
    plain = "pain" if pain else "nopain"
    assert [s["kind"] for s in shown] == [plain] * 7 + ["uncertain"] * 4
    for s in shown[7:]:
        assert s == {"kind": "uncertain", "text": UNCERTAIN_TEXT, "confidence": None,
                     "number": "–"}
    assert all(s["number"].endswith("%") for s in shown[:7])  # 90 % sure before


def test_one_uncertain_frame_among_pain_still_shows_pain_with_its_number():
    for at in range(5, 12):
        marks = [False] * 15
        marks[at] = True
        shown = panel(marks)
        assert {s["kind"] for s in shown} == {"pain"}
        assert {s["number"] for s in shown} == {"90%"}


def test_uncertain_and_borderline_are_two_words_and_the_ward_says_the_panels():
    assert KIND_TEXT["uncertain"] == UNCERTAIN_TEXT == STATE_TEXT["uncertain"]
    assert "uncertain" not in {KIND_TEXT[k] for k in KIND_TEXT if k != "uncertain"}
    assert len(set(STATE_TEXT.values())) == len(STATE_TEXT)  # one text, one state


def test_a_stream_of_uncertain_frames_reaches_the_status_row_and_the_ward(tmp_path, frames):
    server = make_server(tmp_path, predictor=BandedMark(), timeline_interval_s=0.0)
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"name": "Baby Band"}).json()
    session_id = client.post(f"/api/patients/{patient['id']}/sessions").json()["id"]
    with live_socket(client, session_id) as socket:
        replies = []
        for _ in range(4):
            image = frames.face(pain=True)
            image[:MARK, -MARK:] = 255  # the band holds both
            socket.send_bytes(frames.jpeg(image))
            replies.append(socket.receive_json())
        with server.db() as db:
            status = db.get(LiveStatus, session_id)
        bed = client.get("/api/ward").json()["beds"][0]
        listed = client.get("/patients").text
    assert replies[-1]["shown"] == {"kind": "uncertain", "text": UNCERTAIN_TEXT,
                                    "confidence": None, "number": "–"}
    assert (status.state, status.held_state, status.confidence, status.pain_since) == \
        ("uncertain", "uncertain", None, None)
    # pain or no pain was never said: the "No assessment" clock runs from the first frame
    assert status.last_assessed_at is None
    assert (bed["state"], bed["confidence"]) == ("uncertain", None)
    assert f'data-state="uncertain">{UNCERTAIN_TEXT}<' in listed


# --- the alarms ------------------------------------------------------------------------------

LIMITS = AlarmLimits(pain_s=30, stale_s=10, noface_s=120, escalate_s=600)


def open_live_session(tmp_path):
    """A store with one patient and an open live session: (store, patient id, session)."""
    store = open_store(f"sqlite:///{tmp_path / 'records.sqlite3'}")
    with store() as db:
        nurse = crud.create_user(db, username="nurse", password_hash="h", role="clinician")
        patient = crud.create_patient(db, actor=nurse, record_number="HC-1")
        session = crud.start_session(db, actor=nurse, patient=patient, source="live", model="m")
        return store, patient.id, session


@pytest.fixture()
def bed(tmp_path):
    """A store, an open live session and its status writer (frames at ``bed.at(seconds)``)."""
    store, _, session = open_live_session(tmp_path)

    class Bed:
        pass

    bed = Bed()
    bed.store, bed.session_id, bed.t0 = store, session.id, session.started_at
    bed.writer = StatusWriter(store, session_id=session.id, started_at=session.started_at)
    bed.at = lambda seconds: session.started_at + timedelta(seconds=seconds)
    return bed


def stream(bed, phases: list[tuple[str, float]], *, from_s: float = 0.0) -> float:
    """Feed frames every 0.5 s: each phase is ``pain``, ``nopain``, ``uncertain`` (pain
    underneath, the band holding both) or ``noface`` for its seconds; the alarm engine judges
    after every frame. The time after the last frame."""
    face = Face((0.0, 0.0, 10.0, 10.0), 0.9)
    t = from_s
    for kind, seconds in phases:
        end = t + seconds
        while t < end:
            pain = kind in ("pain", "uncertain")
            prediction = Prediction(0.9 if pain else 0.1, "pain" if pain else "nopain", 0.5,
                                    "m", prediction_set="pain|nopain" if kind == "uncertain"
                                    else None)
            seen = kind != "noface"
            result = FrameAssessment(
                time_s=t, face=face if seen else None, prediction=prediction if seen else None,
                smoothed=0.9 if pain else 0.1, state="pain" if pain else "nopain",
                changed=False, latency_ms=1.0, uncertain=kind == "uncertain")
            bed.writer.frame(result, shown=shown_of(result), now=bed.at(t))
            with bed.store() as db:
                evaluate(db, defaults=LIMITS, now=bed.at(t))
            t += 0.5
    return t


def alarms(bed, rule: str) -> list[Alarm]:
    with bed.store() as db:
        return list(db.scalars(select(Alarm).where(Alarm.rule == rule).order_by(Alarm.id)))


def test_pain_broken_by_uncertain_moments_keeps_its_onset_and_alarms(bed):
    """Guards (review of issue 20): uncertain time ended the onset of pain, so a baby whose
    assessment flickered between pain and uncertain every 20 s never raised a pain alarm."""
    t = stream(bed, [("pain", 20), ("uncertain", 20)])
    assert alarms(bed, "pain") == []  # unknown while uncertain: neither raised nor cleared
    stream(bed, [("pain", 1)], from_s=t)
    [alarm] = alarms(bed, "pain")
    assert alarm.condition_since == bed.at(0)  # its first onset
    assert alarm.raised_at <= bed.at(t + 0.5)  # as soon as pain was seen again


def test_a_bed_uncertain_past_the_noface_limit_raises_no_assessment_once(bed):
    """Guards (review of issue 20): a bed uncertain for hours raised no alarm at all."""
    stream(bed, [("uncertain", 200)])
    with bed.store() as db:
        raised = list(db.scalars(select(Alarm)))
    assert [(a.rule, a.condition_since) for a in raised] == [("noface", bed.at(0))]
    assert raised[0].raised_at >= bed.at(LIMITS.noface_s)


def test_a_standing_pain_alarm_holds_while_uncertain_and_clears_on_no_pain(bed):
    """The model cannot say the pain is over: the alarm stands until a face is judged no pain."""
    t = stream(bed, [("pain", 35)])
    [raised] = alarms(bed, "pain")
    t = stream(bed, [("uncertain", 30)], from_s=t)
    [alarm] = alarms(bed, "pain")
    assert (alarm.id, alarm.resolved_at) == (raised.id, None)
    stream(bed, [("nopain", 3)], from_s=t)
    [alarm] = alarms(bed, "pain")
    assert alarm.resolved_at is not None and alarm.resolution == "cleared"


def test_the_record_keeps_what_the_page_said_uncertain(tmp_path, frames):
    # guards: a referred stretch saved as PAIN or no pain in the record (snapshots, the API,
    # the history page) and counted in the pain share, or splitting one pain episode in two
    server = make_server(tmp_path, predictor=BandedMark(), timeline_interval_s=0.0)
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"name": "Baby Band"}).json()
    session_id = client.post(f"/api/patients/{patient['id']}/sessions").json()["id"]
    shown = []
    with live_socket(client, session_id) as socket:
        for referred in [False] * 5 + [True] * 6 + [False] * 5:
            image = frames.face(pain=True)
            if referred:
                image[:MARK, -MARK:] = 255  # the band holds both
            socket.send_bytes(frames.jpeg(image))
            shown.append(socket.receive_json()["shown"]["kind"])
    saved = client.get(f"/api/sessions/{session_id}/assessments").json()
    kinds = ["uncertain" if row["uncertain"] else row["state"] for row in saved]
    assert kinds == [kind for kind in shown if kind in ("pain", "uncertain")]
    assert {"pain", "uncertain"} <= set(kinds)
    assert ["uncertain" if row["uncertain"] else row["state"] for row in saved
            if row["snapshot_url"]] == ["pain", "uncertain", "pain"]
    with server.db() as db:
        [summary] = crud.session_summaries(db, patient_id=patient["id"])
        rows = crud.list_assessments(db, session_id=session_id, newest_first=False)
    times = [row.offset_s for row in rows]
    unsure = sum(b - a for a, b, row in zip(times, times[1:], rows) if row.uncertain)
    assert summary.uncertain_s == pytest.approx(unsure) and unsure > 0
    assert summary.assessed_s == pytest.approx(times[-1] - times[0] - unsure)
    assert summary.pain_share == 1.0 and summary.episodes == 1
    history = client.get(f"/patients/{patient['id']}").text
    assert history.count(f'<strong class="state">{UNCERTAIN_TEXT}</strong>') == 1


def test_a_session_uncertain_until_its_last_row_has_no_pain_share(tmp_path):
    # guards: uncertain time followed by one assessed row read as "100% pain" (the row-count
    # share is for images, whose rows stand for no time)
    from neopain.store.crud import NewAssessment

    store, patient_id, session = open_live_session(tmp_path)
    with store() as db:
        session = db.merge(session)
        for offset, uncertain in ((0.0, True), (1.0, True), (2.0, True), (3.0, False)):
            crud.add_assessment(db, session=session, assessment=NewAssessment(
                face_found=True, model="m", latency_ms=5.0, offset_s=offset, label="pain",
                prob_pain=0.9, smoothed=0.9, state="pain", uncertain=uncertain))
        [summary] = crud.session_summaries(db, patient_id=patient_id)
    assert (summary.uncertain_s, summary.assessed_s, summary.rated) == (3.0, 0.0, 1)
    assert summary.pain_share is None
