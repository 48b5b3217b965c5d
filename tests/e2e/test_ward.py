"""The ward station (issue 18) in Debian's chromium, driven by Playwright:

- end to end, with the real app and model: two beds stream from two browsers with fake cameras
  (one face turning to pain and staying, one at rest) to their live pages while a third browser
  shows ``/ward``. The pain bed's alarm reaches the banner, and sounds (after "Enable sound"),
  within ``alarm_pain_s`` + 2 s of the pain state starting, and sounds again while it stands
  unacknowledged; Acknowledge clears it from the banner, writes an ``alarm_ack`` audit row and
  stops the repeats; closing the rest bed's browser without Stop turns its tile stale and
  raises its link alarm within ``alarm_stale_s`` + 2 s. Latencies are printed;
- 16 simulated beds (statuses written every second as a stream does; alarms raised,
  acknowledged, escalated, paused) fit 1920×1080 without scrolling, each state told in its own
  words, the banner most urgent first; 1280×800 scrolls with the banner in view; a researcher
  sees no Acknowledge or Pause; Pause and Resume from a tile; contrast and axe;
- a bed whose alarms are paused neither sounds, nor flashes the title, nor sits in the banner
  for an alarm raised before the pause (it stays on its tile, marked paused); Resume sounds it;
- a station whose server goes away greys every tile ("no current data") within ~6 s, says it
  is disconnected, and plays the medium tone then and every 60 s while it stays grey.

Screenshots go to ``$NEOPAIN_E2E_SCREENSHOTS`` or a temporary folder.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from e2e.test_accessibility import CONTRAST, axe_violations
from e2e.test_bedside import (ADMIN, CHROMIUM, label_of, on_canvas, shots,  # noqa: F401
                              write_y4m)
from e2e.ward_beds import (READER, WARD16, WARD_SETTINGS, banner_alarms, browser_page, enable_sound,
                           expected_state, log_in_as, make_app, open_station, poll, seed_ward,
                           serving, start_bed, streaming, technical_tones, tile_texts, tones)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                       "/usr/bin/chromium (apt-get install -y chromium); CI installs it"),
    pytest.mark.slow,
]
CLIP_FPS = 2  # the live page sends at most 2 frames a second
GREY_S = 6.0  # a station with no view for 5 s (2 heartbeats and a half) is grey by then


# --- two real beds ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bed_clips(tmp_path_factory) -> dict[str, Path]:
    """Fake-camera clips (``test_bedside``'s face and its pain warp, moving a few pixels):
    ``pain`` at rest 3 s, then in pain for 90 s; ``rest`` at rest (10 s, looped)."""
    from face_warps import pain_face
    from skimage import data

    from neopain.faces.landmarks import FaceMesh

    folder = tmp_path_factory.mktemp("bed-clips")
    neutral = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    with FaceMesh() as mesh:
        pain = pain_face(neutral, mesh.landmarks(neutral))

    def clip(faces: list[np.ndarray]) -> list[np.ndarray]:
        return [on_canvas(face, dx=int(3 * np.sin(i / 2)), dy=int(2 * np.cos(i / 3)))
                for i, face in enumerate(faces)]

    return {"pain": write_y4m(folder / "pain.y4m", clip([neutral] * 3 * CLIP_FPS
                                                       + [pain] * 90 * CLIP_FPS), fps=CLIP_FPS),
            "rest": write_y4m(folder / "rest.y4m", clip([neutral] * 10 * CLIP_FPS),
                              fps=CLIP_FPS)}


def test_station_alarms_end_to_end(tmp_path_factory, bed_clips, shots,  # noqa: F811
                                   database_url):
    from playwright.sync_api import sync_playwright

    from neopain.store import crud

    pain_s, stale_s = 5.0, 5.0
    app, admin = make_app(tmp_path_factory.mktemp("ward-e2e"), alarm_pain_s=pain_s,
                          alarm_stale_s=stale_s, database_url=database_url)
    with app.state.neopain.store() as db:
        in_pain = crud.create_patient(db, actor=admin, name="Baby Pain", record_number="E-1").id
        at_rest = crud.create_patient(db, actor=admin, name="Baby Rest", record_number="E-2").id

    def open_session(patient_id: int) -> int:
        with app.state.neopain.store() as db:
            return crud.list_sessions(db, patient_id=patient_id)[0].id

    def alarm_of(session_id: int, rule: str):
        with app.state.neopain.store() as db:
            found = [a for a in crud.list_alarms(db, active_only=False)
                     if a.session_id == session_id and a.rule == rule]
        assert len(found) == 1, found
        return found[0]

    with serving(app) as (base, _stop), sync_playwright() as playwright:
        station_browser, station = browser_page(playwright, width=1920, height=1080)
        log_in_as(station, base, ADMIN)
        open_station(station, base)
        enable_sound(station)
        assert station.is_hidden("#sound") and tones(station) == 0

        rest_browser, rest = start_bed(playwright, bed_clips["rest"], base, at_rest)
        poll(lambda: label_of(rest) == "no pain", timeout_s=90, what="the rest bed assessed")
        pain_browser, pain = start_bed(playwright, bed_clips["pain"], base, in_pain)
        pain_session, rest_session = open_session(in_pain), open_session(at_rest)
        station.wait_for_function("() => document.querySelectorAll('#beds .bed').length === 2")

        # the pain alarm: banner and tone within alarm_pain_s + 2 s of the pain state
        shown_pain = alarmed = None
        deadline = time.monotonic() + 90
        while alarmed is None:
            assert time.monotonic() < deadline, "no pain alarm on the station in 90 s"
            if shown_pain is None and label_of(pain) == "PAIN":
                shown_pain = time.time()
            if shown_pain is not None and tones(station) >= 1 and station.locator(
                    "#banner li[data-priority=high]").count():
                alarmed = time.time()
            time.sleep(0.05)
        station.screenshot(path=shots / "ward-e2e-pain-alarm.png")
        alarm = alarm_of(pain_session, "pain")
        from_shown = alarmed - shown_pain
        from_condition = alarmed - alarm.condition_since.timestamp()
        print(f"\npain alarm on the station {from_shown:.1f} s after the live page showed "
              f"PAIN, {from_condition:.1f} s after its condition began (raised "
              f"{(alarm.raised_at - alarm.condition_since).total_seconds():.1f} s after it; "
              f"limit {pain_s:g} s)")
        assert from_shown <= pain_s + 2 and from_condition <= pain_s + 2
        assert banner_alarms(station) == [alarm.id]
        assert station.get_attribute("#banner", "data-priority") == "high"
        assert "Baby Pain" in station.inner_text("#announce")

        # an unacknowledged high alarm sounds again (every 10 s)
        first_tones = tones(station)
        repeat = poll(lambda: tones(station) > first_tones, timeout_s=12,
                      what="the tone repeated")
        print(f"high tone repeated {repeat:.1f} s after the alarm reached the station")

        # Acknowledge: gone from the banner, audited, no more tones for it
        station.click(f"#bed-{pain_session} .ack")
        station.wait_for_function(f"() => !document.querySelector("
                                  f"'#banner li[data-alarm=\"{alarm.id}\"]')")
        acknowledged_at = time.monotonic()
        tones_at_ack = tones(station)
        assert "No unacknowledged alarms" in station.inner_text("#banner")
        assert "acknowledged by charge-nurse" in station.inner_text(f"#bed-{pain_session}")
        with app.state.neopain.store() as db:
            audited = [(row.username, row.object_id) for row in crud.list_audit(db, limit=100)
                       if row.action == "alarm_ack"]
        assert audited == [(ADMIN, alarm.id)], audited
        assert alarm_of(pain_session, "pain").acknowledged_at is not None
        station.screenshot(path=shots / "ward-e2e-acknowledged.png")

        # the rest bed's browser goes away without Stop: stale, and its link alarm
        rest_browser.close()
        closed = time.time()
        stale = linked = None
        while linked is None or stale is None:
            assert time.time() - closed < 30, "the closed bed never alarmed on the station"
            state = station.get_attribute(f"#bed-{rest_session}", "data-state")
            if stale is None and state == "stale":
                stale = time.time()
            if linked is None and station.locator("#banner li[data-priority=medium]").count():
                linked = time.time()
            time.sleep(0.05)
        station.screenshot(path=shots / "ward-e2e-link-lost.png")
        link = alarm_of(rest_session, "link")
        from_frame = linked - link.condition_since.timestamp()
        print(f"rest bed stale on the station {stale - closed:.1f} s and its link alarm "
              f"{linked - closed:.1f} s after its browser closed ({from_frame:.1f} s after "
              f"its last frame; limit {stale_s:g} s)")
        assert linked - closed <= stale_s + 2 and stale - closed <= stale_s + 2
        assert banner_alarms(station) == [link.id]
        texts = tile_texts(station)["Baby Rest (E-2)"]
        assert texts["label"] == "no current assessment", texts
        assert re.fullmatch(r"last: \d\d:\d\d:\d\d", texts["age"]), texts
        assert label_of(pain) == "PAIN"  # the other bed streams on

        # after the acknowledgement only the link alarm sounded (once: medium)
        time.sleep(max(0.0, acknowledged_at + 11 - time.monotonic()))
        assert tones(station) == tones_at_ack + 1, (tones_at_ack, tones(station))
        pain.click("#stop")
        pain.wait_for_selector("#history-link")
        pain_browser.close()
        station_browser.close()



# --- 16 beds ---------------------------------------------------------------------------------


LABELS = {"pain": "PAIN", "nopain": "no pain", "uncertain": "uncertain – look at the baby",
          "no_face": "no face",
          "cannot_assess": "cannot assess", "stale": "no current assessment"}
INSIDE = """([w, h]) => [...document.querySelectorAll('#beds .bed')].filter((t) => {
    const r = t.getBoundingClientRect();
    return r.top < 0 || r.left < 0 || r.bottom > h + 0.5 || r.right > w + 0.5; })
    .map((t) => t.querySelector('.bed-name').textContent)"""


def test_sixteen_beds_fit_a_1920x1080_station(tmp_path_factory, shots):  # noqa: F811
    from playwright.sync_api import sync_playwright

    from neopain.store import crud

    app, admin = make_app(tmp_path_factory.mktemp("ward16"), **WARD_SETTINGS)
    seeded = seed_ward(app, admin, WARD16)
    alarm_ids = {name: entry["alarm"] for name, entry in seeded.items()}
    with serving(app) as (base, _stop), streaming(app, seeded), \
            sync_playwright() as playwright:
        browser, page = browser_page(playwright, width=1920, height=1080)
        errors = []  # a refused inline script or style, or any script error, shows here
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        log_in_as(page, base, ADMIN)
        open_station(page, base)
        page.wait_for_function("() => document.querySelectorAll('#beds .bed').length === 16")
        page.wait_for_timeout(1500)  # a few ticks: ages, title

        # one screen, no scrolling, every tile whole
        page.screenshot(path=shots / "ward-16-1920x1080.png")
        size = page.evaluate("() => [document.documentElement.scrollWidth, "
                             "document.documentElement.scrollHeight, innerWidth, innerHeight]")
        assert size[0] <= size[2] and size[1] <= size[3], size
        assert page.evaluate(INSIDE, [1920, 1080]) == []

        # each bed in its own words
        shown = tile_texts(page)
        assert set(shown) == {f"{bed.name} (W-{n:02d})" for n, bed in enumerate(WARD16, 1)}
        by_name = {name.rsplit(" (", 1)[0]: texts for name, texts in shown.items()}
        for bed in WARD16:
            texts = by_name[bed.name]
            state = expected_state(bed)
            assert (texts["state"], texts["label"]) == (state, LABELS[state]), (bed, texts)
            if state in ("pain", "nopain", "uncertain"):  # a face judged just now
                assert re.fullmatch(r"updated [0-3] s ago", texts["age"]), texts
            if state in ("pain", "nopain"):
                wanted = "borderline" if bed.confidence is None \
                    else f"confidence {round(bed.confidence * 100)}%"
                assert texts["confidence"] == wanted, texts
            else:
                assert texts["confidence"] == "confidence –", texts
            if state == "stale":
                assert re.fullmatch(r"last: \d\d:\d\d:\d\d", texts["age"]), texts
            if bed.pause:
                assert re.fullmatch(rf"Alarms paused until \d\d:\d\d — {bed.pause}",
                                    texts["pause"]), texts
        # the age ticks on the server's clock
        before = by_name["Baby Rossi"]["age"]
        assert re.fullmatch(r"last assessed \d+ s ago", before), before
        page.wait_for_timeout(2100)
        after = tile_texts(page)["Baby Rossi (W-15)"]["age"]
        assert int(after.split()[2]) - int(before.split()[2]) in (2, 3), (before, after)

        # the banner: unacknowledged alarms, most urgent first (escalated high first)
        assert banner_alarms(page) == [alarm_ids[name] for name in (
            "Baby Nakamura", "Baby Haddad", "Baby Petrov", "Baby Mensah")]
        assert page.get_attribute("#banner", "role") == "alert"
        assert page.get_attribute("#banner", "data-priority") == "high"
        escalated = page.locator(f"#banner li[data-alarm='{alarm_ids['Baby Nakamura']}']")
        assert "ESCALATED" in escalated.inner_text()
        tile = page.locator(f"#bed-{seeded['Baby Nakamura']['session']}")
        assert "ESCALATED" in tile.locator(".alarm").inner_text()
        acknowledged = page.locator(f"#bed-{seeded['Baby Fernández']['session']} .alarm")
        assert "acknowledged by charge-nurse" in acknowledged.inner_text()
        assert not acknowledged.locator(".ack").is_visible()
        # the title and icon flash while unacknowledged alarms stand
        titles, icons = set(), set()
        for _ in range(12):
            titles.add(page.title())
            icons.add(page.get_attribute("link[rel=icon]", "href")[:22])
            page.wait_for_timeout(200)
        assert any(title.startswith("(4) ALARM") for title in titles), titles
        assert "Ward · neopain" in titles, titles
        assert icons == {"/static/favicon.svg?v=", "data:image/svg+xml,%3C"}, icons

        # contrast of every state, alarm and button; and axe
        low = []
        for selector in (".bed-state", ".alarm", "main button:not([hidden])", ".bed-age",
                         ".bed-confidence", "#banner li", ".bed-pause-text", "#link",
                         "#sound-state"):
            for node in page.query_selector_all(selector):
                if not node.is_visible():
                    continue
                seen = node.evaluate(CONTRAST)
                if seen["ratio"] < 4.5 or seen["opacity"] < 1:
                    low.append((node.evaluate("el => el.outerHTML.slice(0, 80)"), seen))
        assert not low, low
        assert axe_violations(page) == [], json.dumps(axe_violations(page), indent=1)

        # Pause and Resume from a tile (a clinician's or an admin's)
        johansson = seeded["Baby Johansson"]["session"]
        page.click(f"#bed-{johansson} .pause-open")
        assert page.is_visible("#pause-dialog")
        assert axe_violations(page) == []
        page.fill("#pause-minutes", "5")
        page.fill("#pause-reason", "Feeding")
        page.click("#pause-form button[type=submit]")
        page.wait_for_function(f"() => /paused until \\d\\d:\\d\\d — Feeding/.test("
                               f"document.querySelector('#bed-{johansson} .bed-pause-text')"
                               ".textContent)")
        assert not page.is_visible("#pause-dialog")
        page.click(f"#bed-{johansson} .pause-end")
        page.wait_for_function(f"() => document.querySelector('#bed-{johansson} .bed-pause')"
                               ".hidden")
        with app.state.neopain.store() as db:
            pauses = [(row.username, row.detail) for row in crud.list_audit(db, limit=50)
                      if row.action == "alarm_pause" and row.object_id == johansson]
        assert [detail.rsplit(" ", 1)[1] for _, detail in pauses] == ["minutes=0",
                                                                      "minutes=5"], pauses
        assert {user for user, _ in pauses} == {ADMIN}

        # 1280×800: three columns, the page scrolls, the banner stays in view
        page.set_viewport_size({"width": 1280, "height": 800})
        page.wait_for_timeout(500)
        page.screenshot(path=shots / "ward-16-1280x800.png")
        width = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1], width
        columns = page.evaluate("() => getComputedStyle(document.getElementById('beds'))"
                                ".gridTemplateColumns.split(' ').length")
        assert columns == 3, columns
        page.screenshot(path=shots / "ward-16-1280x800-full.png", full_page=True)
        page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
        page.wait_for_timeout(300)
        box = page.locator("#banner").bounding_box()
        assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= 800, box
        page.screenshot(path=shots / "ward-16-1280x800-scrolled.png")

        # a researcher reads the ward, and cannot acknowledge or pause
        reader = browser.new_page(viewport={"width": 1920, "height": 1080})
        log_in_as(reader, base, READER)
        open_station(reader, base)
        reader.wait_for_function("() => document.querySelectorAll('#beds .bed').length === 16")
        assert reader.locator(".ack, .pause-open, .pause-end, #pause-dialog").count() == 0
        assert "Read only" in reader.inner_text(".ward-head")
        assert banner_alarms(reader) == banner_alarms(page)
        browser.close()
    assert errors == [], errors


# --- a paused bed ----------------------------------------------------------------------------


def test_a_paused_bed_neither_sounds_nor_flashes_nor_sits_in_the_banner(tmp_path_factory):
    """Guards (review of issue 18): an alarm raised before its bed's alarms were paused kept
    sounding (the high tone every 10 s), flashing the title and sitting in the banner."""
    from playwright.sync_api import sync_playwright

    app, admin = make_app(tmp_path_factory.mktemp("paused"), **WARD_SETTINGS)
    paused = WARD16[11]
    assert paused.pause and paused.alarm == "pain"
    seeded = seed_ward(app, admin, [WARD16[0], paused])
    alarm_id, session = seeded[paused.name]["alarm"], seeded[paused.name]["session"]
    alarm = f"#bed-{session} .alarm[data-alarm='{alarm_id}']"
    with serving(app) as (base, _stop), streaming(app, seeded), \
            sync_playwright() as playwright:
        browser, page = browser_page(playwright, width=1280, height=800)
        log_in_as(page, base, ADMIN)
        open_station(page, base)
        page.wait_for_function("() => document.querySelectorAll('#beds .bed').length === 2")
        enable_sound(page)  # plays the most urgent standing alarm, if any
        titles = set()
        for _ in range(12):  # a flashing title is lit one second in two
            titles.add(page.title())
            page.wait_for_timeout(200)
        assert tones(page) == 0
        assert banner_alarms(page) == [] and page.get_attribute("#banner", "data-alarms") == "0"
        assert titles == {"Ward · neopain"}, titles
        assert page.evaluate("() => document.body.dataset.flashing") == "false"
        assert paused.name not in page.inner_text("#announce")
        # on its tile, marked paused, with its bed's pause
        assert page.get_attribute(alarm, "data-paused") == "true"
        assert re.search(r"In pain since \d\d:\d\d · paused$", page.inner_text(
            f"{alarm} .alarm-text")), page.inner_text(alarm)
        assert page.get_attribute(f"#bed-{session}", "data-paused") == "true"

        # Resume: the alarm sounds, is told and sits in the banner
        page.click(f"#bed-{session} .pause-end")
        poll(lambda: tones(page) >= 1, timeout_s=5, what="the resumed alarm sounded")
        page.wait_for_timeout(1500)  # the next view and a few ticks: it sounded once, not twice
        assert tones(page) == 1, tones(page)
        assert banner_alarms(page) == [alarm_id]
        page.wait_for_function("() => /Resumed high-priority alarm: In pain, Baby Dubois/"
                               ".test(document.getElementById('announce').textContent)")
        assert page.get_attribute(alarm, "data-paused") == "false"
        assert "paused" not in page.inner_text(f"{alarm} .alarm-text")
        browser.close()


# --- the server goes away -------------------------------------------------------------------


def test_the_station_greys_when_the_server_goes_away(tmp_path_factory, shots):  # noqa: F811
    from playwright.sync_api import sync_playwright

    app, admin = make_app(tmp_path_factory.mktemp("gone"), **WARD_SETTINGS)
    beds = [WARD16[0], WARD16[2], WARD16[6], WARD16[8]]  # no pain, pain, no face, stale
    seeded = seed_ward(app, admin, beds)
    with serving(app) as (base, stop), streaming(app, seeded), \
            sync_playwright() as playwright:
        browser, page = browser_page(playwright, width=1280, height=800)
        page.clock.install()  # time flows; fast_forward below skips the minute between tones
        log_in_as(page, base, ADMIN)
        open_station(page, base)
        page.wait_for_function("() => document.querySelectorAll('#beds .bed').length === 4")
        enable_sound(page)
        page.wait_for_timeout(2500)  # a heartbeat or more: the page keeps being current
        assert technical_tones(page) == 0
        assert {t["state"] for t in tile_texts(page).values()} == {"nopain", "pain", "no_face",
                                                                   "stale"}
        assert page.get_attribute("#link", "data-link") == "live"
        assert page.locator(".ack:visible:enabled").count() == 3
        stopped_at = time.monotonic()
        stop()
        took = poll(lambda: all(t["state"] == "offline" for t in tile_texts(page).values()),
                    timeout_s=GREY_S + 2, what="every tile grey")
        print(f"\nstation grey {took:.1f} s after the server stopped")
        assert took <= GREY_S, took
        for texts in tile_texts(page).values():
            assert texts["label"] == "no current data", texts
            assert re.fullmatch(r"last: \d\d:\d\d:\d\d", texts["age"]), texts
            assert texts["confidence"] == "confidence –", texts
        assert page.locator(".bed-state[data-state=pain], .bed-state[data-state=nopain]"
                            ).count() == 0
        link = page.inner_text("#link")
        assert link.startswith("Disconnected"), link
        assert page.get_attribute("#banner", "data-current") == "false"
        assert "Not current" in page.inner_text("#banner")
        assert page.locator(".ack:visible:enabled").count() == 0
        backgrounds = page.eval_on_selector_all(
            ".bed .alarm", "els => els.map((e) => getComputedStyle(e).backgroundColor)")
        assert set(backgrounds) == {"rgb(238, 241, 243)"}, backgrounds  # grey, not red
        assert page.title().startswith("Disconnected")
        page.screenshot(path=shots / "ward-disconnected.png")

        # a technical alarm: the medium tone when it turned grey, told, and again each minute
        assert technical_tones(page) == 1
        assert "Station disconnected" in page.inner_text("#announce")
        page.clock.fast_forward(50_000)
        page.wait_for_timeout(600)
        assert technical_tones(page) == 1
        page.clock.fast_forward(11_000)
        poll(lambda: technical_tones(page) == 2, timeout_s=2, what="the tone repeated")
        page.wait_for_function("() => /Station still disconnected: nothing current since "
                               "\\d\\d:\\d\\d:\\d\\d/.test("
                               "document.getElementById('announce').textContent)")
        assert time.monotonic() - stopped_at < 30
        browser.close()
