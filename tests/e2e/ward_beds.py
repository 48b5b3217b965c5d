"""Beds for the ward station's e2e checks (``test_ward``): the monitor with an admin and a
researcher, served on uvicorn in a thread; logging in and opening ``/ward``; reading its tiles,
banner and tone count; a real bed (a browser with a fake camera on a live page); and simulated
beds, seeded as a stream would have left them (status, 10-minute trend, alarm, pause) and kept
streaming (a status written every second)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from e2e.test_bedside import ADMIN, CHROMIUM, PASSWORD, browser_with_camera, start_uvicorn

READER = "reader"
STATION_READY = "() => document.getElementById('link').dataset.link === 'live'"


def make_app(data_dir: Path, *, predictor=None, **settings):
    """The monitor with ``settings`` (and ``predictor``; None: the configured model), an admin
    and a researcher: (app, admin)."""
    from neopain.config import Settings
    from neopain.server import security
    from neopain.server.app import create_app
    from neopain.store import crud

    app = create_app(Settings(data_dir=data_dir, **settings), predictor=predictor)
    with app.state.neopain.store() as db:
        admin = crud.create_user(db, username=ADMIN, role="admin",
                                 password_hash=security.hash_password(PASSWORD))
        crud.create_user(db, username=READER, role="researcher",
                         password_hash=security.hash_password(PASSWORD))
    return app, admin


@contextmanager
def serving(app):
    """``app`` on uvicorn in a thread: (base URL, stop())."""
    runner, thread, base = start_uvicorn(app)

    def stop() -> None:  # uvicorn closes its connections and exits on its own thread
        runner.should_exit = True

    try:
        yield base, stop
    finally:
        stop()
        thread.join(timeout=15)
        app.state.live.close()


def browser_page(playwright, *, width: int, height: int):
    """A headless chromium and one page of ``width``×``height`` that waits up to 30 s."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                         args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(30_000)
    return browser, page


def log_in_as(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/patients")


def open_station(page, base: str) -> None:
    page.goto(f"{base}/ward")
    page.wait_for_function(STATION_READY, timeout=15_000)


def tile_texts(page) -> dict[str, dict[str, str]]:
    """Each tile's name → its state (data-state), label, confidence and age line."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#beds .bed')]
        .map((t) => [t.querySelector('.bed-name').textContent, {
            state: t.dataset.state, label: t.querySelector('.bed-state').textContent,
            confidence: t.querySelector('.bed-confidence').textContent,
            age: t.querySelector('.bed-age').textContent,
            pause: t.querySelector('.bed-pause').hidden ? ''
                : t.querySelector('.bed-pause-text').textContent}]))""")


def banner_alarms(page) -> list[int]:
    return page.eval_on_selector_all("#banner li[data-alarm]",
                                     "els => els.map((e) => Number(e.dataset.alarm))")


def tones(page) -> int:
    return int(page.evaluate("() => document.body.dataset.tones"))


def technical_tones(page) -> int:
    """The tones played for a lost server (``data-technical-tones``)."""
    return int(page.evaluate("() => document.body.dataset.technicalTones"))


def enable_sound(page) -> None:
    page.click("#sound")
    page.wait_for_function("() => document.getElementById('sound-state').dataset.sound"
                           " === 'on'")


def poll(condition, *, timeout_s: float, what: str, step_s: float = 0.1) -> float:
    """Wait for ``condition()``; the seconds it took (AssertionError after ``timeout_s``)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(step_s)
    return time.monotonic() - started


def start_bed(playwright, clip: Path, base: str, patient_id: int):
    """A browser whose camera plays ``clip``, monitoring ``patient_id``: (browser, page)."""
    browser = browser_with_camera(playwright, clip)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(30_000)
    log_in_as(page, base, ADMIN)
    page.goto(f"{base}/patients/{patient_id}/live")
    page.click("#start")
    page.wait_for_function("() => !document.getElementById('stop').disabled")  # session open
    return browser, page


# --- simulated beds -----------------------------------------------------------------------


@dataclass(frozen=True)
class SimBed:
    """A bed as a stream would have reported it: ``state`` with its smoothed P(pain) and
    confidence; ``quiet_s``: its stream stopped that long ago (else it streams: its status is
    written every second); ``unassessed_s``: no assessable face for that long; ``pain_s``: in
    pain for that long; ``alarm``: the rule of its alarm, ``alarm_is`` acknowledged or
    escalated; ``pause``: why its alarms are paused (20 min)."""

    name: str
    state: str
    smoothed: float | None = None
    confidence: float | None = None
    quiet_s: float = 0.0
    unassessed_s: float = 0.0
    pain_s: float = 0.0
    alarm: str = ""
    alarm_is: str = ""
    pause: str = ""


WARD16 = [
    SimBed("Baby Okafor", "nopain", 0.12, 0.88),
    SimBed("Baby Lindqvist", "nopain", 0.25, 0.75),
    SimBed("Baby Haddad", "pain", 0.86, 0.86, pain_s=95, alarm="pain"),
    SimBed("Baby Nakamura", "pain", 0.91, 0.91, pain_s=300, alarm="pain", alarm_is="escalated"),
    SimBed("Baby Fernández", "pain", 0.79, 0.79, pain_s=200, alarm="pain",
           alarm_is="acknowledged"),
    SimBed("Baby Kowalski", "nopain", 0.58, None),  # held no pain, crossed: borderline
    SimBed("Baby Mensah", "no_face", unassessed_s=900, alarm="noface"),
    SimBed("Baby O'Connor", "cannot_assess", 0.4, unassessed_s=20),
    SimBed("Baby Petrov", "nopain", 0.2, 0.8, quiet_s=900, alarm="link"),
    SimBed("Baby Abernathy-Featherstonehaugh", "nopain", 0.3, 0.7, quiet_s=400, alarm="link",
           alarm_is="acknowledged"),
    SimBed("Baby Silva", "nopain", 0.2, 0.8, pause="Kangaroo care"),
    SimBed("Baby Dubois", "pain", 0.72, 0.72, pain_s=95, alarm="pain",  # raised, then paused
           pause="Procedure"),
    SimBed("Baby Nguyen", "nopain", 0.08, 0.92),
    SimBed("Baby Schmidt", "uncertain", 0.62),  # the referral band holds both: no number
    SimBed("Baby Rossi", "no_face", unassessed_s=40),
    SimBed("Baby Johansson", "nopain", 0.15, 0.85),
]
WARD_SETTINGS = {"alarm_noface_s": 600.0, "alarm_escalate_s": 3600.0}
"""Nothing the seed did not make is raised or escalated while a test looks."""
TREND_STEP_S = 10


def trend_value(bed: SimBed, *, ago_s: float) -> float:
    """The seeded smoothed P(pain) ``ago_s`` seconds ago: a slow wobble about the bed's value,
    rising to it from 0.2 before the pain began."""
    value = bed.smoothed if bed.smoothed is not None else 0.3
    if bed.state == "pain" and ago_s > bed.pain_s:
        onset = np.exp(-(ago_s - bed.pain_s) / 90)
        value = 0.2 + (value - 0.2) * onset
    return float(np.clip(value + 0.04 * np.sin(ago_s / 45), 0, 1))


def status_of(bed: SimBed, *, seeded_at: datetime, now: datetime):
    """What the bed's stream writes at ``now`` (its status as of its last frame)."""
    from neopain.store.crud import StreamStatus

    last_frame = now - timedelta(seconds=bed.quiet_s) if bed.quiet_s else now
    assessed = bed.state in ("pain", "nopain", "uncertain")
    return StreamStatus(
        state=bed.state, smoothed=bed.smoothed, confidence=bed.confidence,
        first_frame_at=seeded_at - timedelta(minutes=30), last_frame_at=last_frame,
        last_assessed_at=last_frame if assessed
        else seeded_at - timedelta(seconds=bed.unassessed_s),
        held_state=bed.state if bed.state in ("pain", "nopain", "uncertain") else None,
        pain_since=seeded_at - timedelta(seconds=bed.pain_s) if bed.state == "pain" else None,
        stream_started_at=seeded_at - timedelta(minutes=30))


def seed_ward(app, admin, beds: list[SimBed]) -> dict[str, dict]:
    """Open a live session per bed with its status, trend, alarm and pause: name →
    {session, patient, alarm, bed, at} (``at``: when it was seeded)."""
    from neopain.monitor.alarm_rules import RULES
    from neopain.store import crud
    from neopain.store.crud import NewAssessment
    from neopain.store.tables import utc_now

    now = utc_now()
    seeded = {}
    with app.state.neopain.store() as db:
        for number, bed in enumerate(beds, 1):
            patient = crud.create_patient(db, actor=admin, name=bed.name,
                                          record_number=f"W-{number:02d}")
            session = crud.start_session(db, actor=admin, patient=patient, source="live",
                                         model="nfcs")
            status = status_of(bed, seeded_at=now, now=now)
            newest = status.last_assessed_at
            for ago_s in range(600, -1, -TREND_STEP_S):
                at = now - timedelta(seconds=ago_s)
                if at > newest:
                    break
                p = trend_value(bed, ago_s=ago_s)
                label = "pain" if p >= 0.5 else "nopain"
                crud.add_assessment(db, session=session, assessment=NewAssessment(
                    face_found=True, model="nfcs", latency_ms=40.0, label=label, prob_pain=p,
                    smoothed=p, state=label, time=at))
            crud.write_status(db, session_id=session.id, status=status)
            alarm = None
            if bed.alarm:
                since = {"pain": status.pain_since, "link": status.last_frame_at,
                         "noface": status.last_assessed_at}[bed.alarm]
                raised = since + timedelta(seconds=30)
                alarm = crud.raise_alarm(db, session=session, rule=bed.alarm,
                                         priority=RULES[bed.alarm].priority,
                                         condition_since=since, limit_s=30.0, now=raised)
                if bed.alarm_is == "acknowledged":
                    crud.acknowledge_alarm(db, alarm, actor=admin,
                                           now=raised + timedelta(seconds=20))
                elif bed.alarm_is == "escalated":
                    crud.escalate_alarm(db, alarm_id=alarm.id,
                                        now=raised + timedelta(seconds=120))
            if bed.pause:
                crud.pause_alarms(db, session, actor=admin, minutes=20, reason=bed.pause)
            seeded[bed.name] = {"session": session.id, "patient": patient.id,
                                "alarm": None if alarm is None else alarm.id, "bed": bed,
                                "at": now}
    return seeded


@contextmanager
def streaming(app, seeded: dict[str, dict]):
    """Write each streaming bed's status every second, as its live stream would."""
    from neopain.store import crud
    from neopain.store.tables import utc_now

    done = threading.Event()

    def run() -> None:
        while not done.wait(1.0):
            with app.state.neopain.store() as db:
                for entry in seeded.values():
                    bed = entry["bed"]
                    if not bed.quiet_s:
                        crud.write_status(db, session_id=entry["session"], status=status_of(
                            bed, seeded_at=entry["at"], now=utc_now()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)


def expected_state(bed: SimBed) -> str:
    """The state the station shows for ``bed``: stale where its stream stopped."""
    return "stale" if bed.quiet_s else bed.state
