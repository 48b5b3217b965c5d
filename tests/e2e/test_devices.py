"""Bed devices (issue 21) in Debian's chromium, driven by Playwright: an admin registers a device
on /devices and sees its token once, binds it on the patient's page (Bed device, Watch), and the
station's tile of that bed names the device while a simulated agent sends heartbeats; revoking it
on /devices refuses the agent's next heartbeat. Each page at desktop (1280) and tablet (768)
width: no serious axe violation, nothing wider than the screen.

Screenshots go to ``$NEOPAIN_E2E_SCREENSHOTS`` or a temporary folder.
"""

from __future__ import annotations

import threading
import time

import pytest

from e2e.test_accessibility import axe_violations
from e2e.test_bedside import ADMIN, CHROMIUM, shots  # noqa: F401 (fixture)
from e2e.ward_beds import (WARD16, WARD_SETTINGS, browser_page, log_in_as, make_app, open_station,
                           poll, seed_ward, serving, streaming)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                       "/usr/bin/chromium (apt-get install -y chromium); CI installs it"),
    pytest.mark.slow,
]
DEVICE = "NICU bed 7"
NURSE = "night-nurse"
WIDTHS = {"desktop": (1280, 800), "tablet": (768, 1024)}


class Agent:
    """A stand-in for ``neopain agent``: heartbeats every 0.5 s with its bed at rest; the
    status of the last one (403 once revoked)."""

    def __init__(self, base: str, token: str) -> None:
        import httpx

        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
        self.last_status = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.is_set():
            reply = self.client.post("/api/device/heartbeat", json={"status": {
                "kind": "nopain", "smoothed": 0.12, "confidence": 0.88, "held_state": "nopain",
                "frame_at": time.time()}})
            self.last_status = reply.status_code
            self._stop.wait(0.5)

    def __enter__(self) -> Agent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.client.close()


def look(page, name: str, shots, found: list) -> None:  # noqa: F811
    """Screenshot the page at each width, check axe and that nothing is wider than it."""
    for kind, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        page.screenshot(path=shots / f"{name}-{kind}-{width}.png", full_page=True)
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        assert wide <= width, f"{name} is {wide} px wide on a {width} px screen"
        found += axe_violations(page)
    page.set_viewport_size({"width": 1280, "height": 800})


def test_register_bind_and_see_the_device_on_the_ward(tmp_path, shots,  # noqa: F811
                                                      database_url):
    from playwright.sync_api import sync_playwright

    from neopain.store import crud

    from neopain.server import security
    from e2e.test_bedside import PASSWORD

    app, admin = make_app(tmp_path / "data", database_url=database_url)
    with app.state.neopain.store() as db:
        patient_id = crud.create_patient(db, actor=admin, name="Baby Device",
                                         record_number="D-7").id
        crud.create_user(db, username=NURSE, role="clinician",  # binds, as on the ward
                         password_hash=security.hash_password(PASSWORD))
    found: list[dict] = []
    with serving(app) as (base, _stop), sync_playwright() as playwright:
        browser, page = browser_page(playwright, width=1280, height=800)
        log_in_as(page, base, ADMIN)
        page.goto(f"{base}/devices")
        page.fill("input[name=name]", DEVICE)
        page.click("button:has-text('Register')")
        token = page.input_value("#device-token")
        assert token.startswith("npd_")
        look(page, "devices-registered", shots, found)
        page.goto(f"{base}/devices")
        assert token not in page.content()

        nurse = browser.new_page(viewport={"width": 1280, "height": 800})
        log_in_as(nurse, base, NURSE)
        nurse.goto(f"{base}/patients/{patient_id}")
        look(nurse, "patient-free-device", shots, found)
        nurse.select_option("select[name=device_id]", label=DEVICE)
        nurse.click("button:has-text('Watch with this device')")
        nurse.wait_for_selector(f"#bed-device >> text={DEVICE} watches this patient")
        page.goto(f"{base}/patients/{patient_id}")
        with Agent(base, token) as agent:
            poll(lambda: agent.last_status == 200, timeout_s=10, what="the agent's heartbeat")
            look(page, "patient-bed-device", shots, found)

            station = browser.new_page(viewport={"width": 1280, "height": 800})
            log_in_as(station, base, ADMIN)
            open_station(station, base)
            station.wait_for_selector(f".bed-device >> text=bed device {DEVICE}")
            station.wait_for_selector('.bed[data-state="nopain"]')
            look(station, "ward-device", shots, found)
            station.close()

            page.goto(f"{base}/devices")
            page.click("summary:has-text('Revoke')")
            look(page, "devices-revoke-confirm", shots, found)
            started = time.monotonic()
            page.click(f"button:has-text('Revoke {DEVICE}')")
            page.wait_for_selector("text=revoked")
            poll(lambda: agent.last_status == 403, timeout_s=2, what="the agent refused")
            print(f"revoked device refused after {time.monotonic() - started:.2f} s")
            look(page, "devices-revoked", shots, found)
            nurse.goto(f"{base}/ward")  # the silent device's bed: still named, no current data
            nurse.wait_for_selector(f".bed-device >> text=bed device {DEVICE}")
            nurse.wait_for_selector('.bed[data-state="stale"]', timeout=20_000)
            look(nurse, "ward-device-revoked", shots, found)
        browser.close()
    assert not found, found


def test_sixteen_device_beds_still_fit_a_1920x1080_station(tmp_path, shots):  # noqa: F811
    """The device's line under each patient's name costs the tile little enough that the
    station's 16 beds (``test_ward``'s) still fit one screen when every bed is a device."""
    from playwright.sync_api import sync_playwright

    from neopain.store import crud
    from neopain.store.tables import DeviceBinding, utc_now

    app, admin = make_app(tmp_path / "data", **WARD_SETTINGS)
    seeded = seed_ward(app, admin, WARD16)
    with app.state.neopain.store() as db:  # bound as bind_device would, to the seeded sessions
        for number, entry in enumerate(seeded.values(), 1):
            device, _ = crud.create_device(db, actor=None, name=f"NICU bed {number}")
            db.add(DeviceBinding(device_id=device.id, session_id=entry["session"],
                                 bound_at=utc_now()))
        db.commit()
    with serving(app) as (base, _stop), streaming(app, seeded), sync_playwright() as playwright:
        browser, page = browser_page(playwright, width=1920, height=1080)
        log_in_as(page, base, ADMIN)
        open_station(page, base)
        page.wait_for_function("() => document.querySelectorAll("
                               "'#beds .bed-device:not([hidden])').length === 16")
        page.wait_for_timeout(1000)
        page.screenshot(path=shots / "ward-16-devices-1920x1080.png")
        height = page.evaluate("() => document.documentElement.scrollHeight")
        assert height <= 1080, f"the station is {height} px high on a 1080 px screen"
        texts = page.eval_on_selector_all("#beds .bed-device", "els => els.map(e => e.textContent)")
        assert sorted(texts) == sorted(f"bed device NICU bed {n}" for n in range(1, 17))
        browser.close()
