"""The uncertain state in chromium (issue 20, point 5): a model whose referral band holds both
labels makes the live panel say "uncertain – look at the baby" with its own icon, frame and
colour and no number, and the ward station's tile the same, both at AA contrast; the longer
label keeps the name, video, state and Stop on a tablet's and a phone's screen, in bedside mode
too. Screenshots go to ``$NEOPAIN_E2E_SCREENSHOTS`` or a temporary folder
(``uncertain-*.png``)."""

from __future__ import annotations

import re

from collections.abc import Sequence

import numpy as np

from e2e.test_accessibility import CONTRAST
from e2e.test_bedside_layout import SCREENS, off_screen
from e2e.test_bedside import CHROMIUM, clips, shots  # noqa: F401 (fixtures)
from e2e.test_bedside import pytestmark  # noqa: F401 (chromium needed; slow)
from e2e.ward_beds import ADMIN, log_in_as, make_app, open_station, serving, start_bed, tile_texts
from neopain.faces.crop import CropRule
from neopain.prediction import Prediction, Predictor

TEXT = "uncertain – look at the baby"


class Undecided(Predictor):
    """Says P(pain) 0.62 of every face, with a referral band that holds both labels."""

    name = "undecided"
    crop = CropRule.whole_image()

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        return [Prediction(0.62, "pain", 0.5, self.name, prediction_set="pain|nopain")
                for _ in crops]


def test_the_panel_and_the_tile_show_uncertain_without_a_number(tmp_path_factory, clips,  # noqa: F811
                                                                shots):  # noqa: F811
    from playwright.sync_api import sync_playwright

    from neopain.store import crud

    app, admin = make_app(tmp_path_factory.mktemp("uncertain"), predictor=Undecided())
    with app.state.neopain.store() as db:
        patient_id = crud.create_patient(db, actor=admin, name="Baby Unsure",
                                         record_number="U-1").id
    with serving(app) as (base, _stop), sync_playwright() as playwright:
        browser, page = start_bed(playwright, clips["face"], base, patient_id)
        page.wait_for_function(f"() => document.getElementById('label').textContent === "
                               f"'{TEXT}'", timeout=90_000)
        assert page.get_attribute("#label", "data-label") == "uncertain"
        assert page.inner_text("#confidence") == "–"
        seen = page.eval_on_selector("#label", CONTRAST)
        assert seen["ratio"] >= 4.5 and seen["opacity"] == 1, seen
        page.screenshot(path=shots / "uncertain-live-1280x800.png")

        station = browser.new_page(viewport={"width": 1280, "height": 800})
        log_in_as(station, base, ADMIN)  # a context of its own
        open_station(station, base)
        station.wait_for_function("() => [...document.querySelectorAll('#beds .bed')]"
                                  ".some((t) => t.dataset.state === 'uncertain')",
                                  timeout=15_000)
        [texts] = tile_texts(station).values()
        assert (texts["label"], texts["confidence"]) == (TEXT, "confidence –"), texts
        # never sure since it started, yet current: its age is the last frame's
        assert re.fullmatch(r"updated [0-5] s ago", texts["age"]), texts
        seen = station.eval_on_selector(".bed-state", CONTRAST)
        assert seen["ratio"] >= 4.5 and seen["opacity"] == 1, seen
        station.screenshot(path=shots / "uncertain-ward-1280x800.png")
        page.click("#stop")
        page.wait_for_selector("#history-link")
        # the record says what the page said
        page.goto(f"{base}/patients/{patient_id}")
        assert page.inner_text("#snapshots .snapshot .state") == TEXT
        assert page.get_attribute("#snapshots .snapshot", "data-state") == "uncertain"
        assert page.query_selector("#snapshots .snapshot .conf") is None
        # its uncertain time depends on how many frames the timeline kept in a few seconds
        # (tests/server/test_live_uncertain.py counts it); no pain share in any case
        assert page.inner_text("#sessions td.pain-share") == "not assessed"
        page.screenshot(path=shots / "uncertain-history-1280x800.png", full_page=True)

        problems = {}
        for screen in ("tablet", "phone"):
            width, height = SCREENS[screen]
            small = browser.new_page(viewport={"width": width, "height": height})
            log_in_as(small, base, ADMIN)
            small.goto(f"{base}/patients/{patient_id}/live")
            small.click("#start")
            small.wait_for_function(f"() => document.getElementById('label').textContent === "
                                    f"'{TEXT}'", timeout=90_000)
            problems[screen] = off_screen(small, width, height)
            small.screenshot(path=shots / f"uncertain-live-{screen}-{width}x{height}.png")
            small.click("#bedside")
            small.wait_for_function("() => document.body.classList.contains('bedside')")
            small.wait_for_timeout(800)  # the full-screen transition settles
            problems[f"bedside {screen}"] = off_screen(small, width, height)
            small.screenshot(path=shots / f"uncertain-bedside-{screen}-{width}x{height}.png")
            small.click("#bedside")
            small.click("#stop")
            small.wait_for_selector("#history-link")
            small.goto(f"{base}/patients/{patient_id}")  # the record, on the same screen
            small.wait_for_selector("#snapshots .snapshot[data-state=uncertain]")
            wide = small.evaluate("document.documentElement.scrollWidth")
            problems[f"history {screen}"] = [f"page {wide} px wide"] if wide > width else []
            small.screenshot(path=shots / f"uncertain-history-{screen}-{width}x{height}.png",
                             full_page=True)
            small.close()
        browser.close()
    assert not any(problems.values()), problems
