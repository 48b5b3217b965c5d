"""Readable at the bedside (issue 19, build 4), in Debian's chromium with the fake camera:

- while monitoring, at 1280×800, 768×1024 (tablet) and 390×844 (phone) and in bedside mode,
  the patient's name, the video, the state and Stop lie inside the viewport without scrolling
  (element bounding boxes; screenshots to ``$NEOPAIN_E2E_SCREENSHOTS`` to look at);
- bedside mode goes full screen and holds a Screen Wake Lock, or says why not;
- the guide oval judges the face's position: green only with the face inside it (the geometry
  in chromium, and a clip whose face sits beside the oval);
- on plain http from another host the page says, before Start, why the camera cannot be used.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from e2e.conftest import PATIENT
from e2e.test_bedside import (CHROMIUM, FPS, browser_with_camera, log_in,  # noqa: F401
                              clips, on_canvas, shots, write_y4m)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                       "/usr/bin/chromium (apt-get install -y chromium); CI installs it"),
    pytest.mark.slow,
]
SCREENS = {"desktop": (1280, 800), "tablet": (768, 1024), "phone": (390, 844)}
NEEDED = {"patient name": "main h1", "video": "#camera", "state": "#label", "Stop": "#stop"}
CURRENT = "() => ['PAIN', 'no pain'].includes(document.getElementById('label').textContent)"


def off_screen(page, width: int, height: int) -> dict[str, dict]:
    """What of ``NEEDED`` is not wholly inside the viewport (with the page not scrolled)."""
    outside = {}
    scrolled = page.evaluate("() => [window.scrollX, window.scrollY]")
    if scrolled != [0, 0]:
        outside["scrolled"] = scrolled
    for name, selector in NEEDED.items():
        box = page.locator(selector).bounding_box()
        if box is None or box["x"] < 0 or box["y"] < 0 or box["x"] + box["width"] > width + 0.5 \
                or box["y"] + box["height"] > height + 0.5:
            outside[name] = box
    return outside


def test_live_page_fits_each_screen_while_monitoring(ward, clips, shots):  # noqa: F811
    from playwright.sync_api import sync_playwright

    _app, base, patient_id = ward
    problems = {}
    with sync_playwright() as playwright:
        browser = browser_with_camera(playwright, clips["face"])
        for screen, (width, height) in SCREENS.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            log_in(page, base)
            page.goto(f"{base}/patients/{patient_id}/live")
            problems[f"{screen} before Start"] = off_screen(page, width, height)
            page.click("#start")
            page.wait_for_function(CURRENT, timeout=90_000)
            assert PATIENT in page.inner_text("main h1")
            page.screenshot(path=shots / f"20-live-{screen}-{width}x{height}.png")
            problems[screen] = off_screen(page, width, height)
            if screen != "desktop":
                # bedside mode: full screen (or said why not), screen kept on (or said why not)
                page.click("#bedside")
                page.wait_for_function("() => document.body.classList.contains('bedside')")
                page.wait_for_function("() => /Screen kept on|cannot keep|cannot be kept|"
                                       "Full screen/.test(document.getElementById('wake-note')"
                                       ".textContent) && document.getElementById('wake-note')"
                                       ".textContent !== 'Full screen, screen kept on.'")
                page.wait_for_function(f"() => innerWidth === {width} && innerHeight === "
                                       f"{height} && (document.fullscreenElement !== null || "
                                       "/Full screen/.test(document.getElementById("
                                       "'wake-note').textContent))")
                page.wait_for_timeout(800)  # the browser's full-screen transition settles
                page.screenshot(path=shots / f"21-bedside-{screen}-{width}x{height}.png")
                problems[f"bedside {screen}"] = off_screen(page, width, height)
                assert page.get_attribute("#bedside", "aria-pressed") == "true"
                assert not page.locator("header.bar").is_visible()
                page.click("#bedside")
                page.wait_for_function("() => !document.body.classList.contains('bedside')")
            page.click("#stop")
            page.wait_for_selector("#history-link")
            page.close()
        browser.close()
    assert not any(problems.values()), {name: seen for name, seen in problems.items() if seen}


def test_bedside_mode_holds_a_wake_lock(ward, clips):  # noqa: F811
    """Full screen, a wake lock held (http://127.0.0.1 is a secure context), taken again when
    the page becomes visible after the browser dropped it."""
    from playwright.sync_api import sync_playwright

    _app, base, patient_id = ward
    with sync_playwright() as playwright:
        browser = browser_with_camera(playwright, clips["face"])
        page = browser.new_page(viewport={"width": 768, "height": 1024})
        log_in(page, base)
        page.goto(f"{base}/patients/{patient_id}/live")
        page.evaluate("""() => { window.wakeRequests = 0;
            const request = navigator.wakeLock.request.bind(navigator.wakeLock);
            navigator.wakeLock.request = (type) => { window.wakeRequests += 1;
                return request(type); }; }""")
        page.click("#bedside")
        page.wait_for_function("() => window.wakeRequests === 1 && document.getElementById("
                               "'wake-note').textContent !== 'Full screen, screen kept on.'")
        note = page.inner_text("#wake-note")
        assert note.startswith(("Screen kept on", "The screen cannot be kept on")), note
        assert page.evaluate("() => document.fullscreenElement !== null") or \
            "Full screen refused" in note, note
        if note.startswith("Screen kept on"):  # the browser drops it while hidden
            page.evaluate("""() => { Object.defineProperty(document, 'visibilityState',
                {value: 'visible', configurable: true});
                return navigator.wakeLock.request('screen').then((l) => l.release()); }""")
        page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
        page.wait_for_timeout(300)
        assert page.evaluate("() => window.wakeRequests") >= 1
        page.keyboard.press("Escape")
        browser.close()


GEOMETRY = """() => {
    const inOval = window.neopainLive.faceInOval;
    const oval = {cx: 50, cy: 50, rx: 24, ry: 36};
    const frame = {width: 640, height: 480}, stage = {width: 800, height: 600};
    const wide = {width: 1280, height: 480};  // letterboxed: bands above and below
    return {
        centred: inOval([270, 180, 370, 300], frame, stage, oval),
        left: inOval([20, 180, 120, 300], frame, stage, oval),
        top: inOval([270, 10, 370, 130], frame, stage, oval),
        straddling: inOval([400, 180, 520, 300], frame, stage, oval),
        too_big: inOval([100, 20, 540, 460], frame, stage, oval),
        letterboxed_centred: inOval([590, 180, 690, 300], wide, stage, oval),
        letterboxed_left: inOval([100, 180, 200, 300], wide, stage, oval),
    };
}"""


def face_clip(folder, *, dx: int, dy: int):
    """The neutral astronaut moved by (dx, dy) pixels, 2 s at ``FPS``."""
    from skimage import data

    face = on_canvas(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), dx=0, dy=0)
    moved = cv2.warpAffine(face, np.float32([[1, 0, dx], [0, 1, dy]]), (640, 480),
                           borderValue=(60, 60, 60))
    return write_y4m(folder / f"face-{dx}-{dy}.y4m", [moved] * (2 * FPS), fps=FPS)


def test_guide_turns_green_only_with_the_face_inside_it(ward, tmp_path, shots):  # noqa: F811
    from playwright.sync_api import sync_playwright

    _app, base, patient_id = ward
    seen = {}
    with sync_playwright() as playwright:
        # the face beside the oval (left edge of the picture), then in its middle
        for place, (dx, dy) in {"beside": (-230, 0), "inside": (40, 130)}.items():
            browser = browser_with_camera(playwright, face_clip(tmp_path, dx=dx, dy=dy))
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(30_000)
            log_in(page, base)
            page.goto(f"{base}/patients/{patient_id}/live")
            if place == "beside":
                geometry = page.evaluate(GEOMETRY)
            page.click("#start")
            page.wait_for_selector("#guide[data-state=found]", timeout=90_000)
            page.wait_for_timeout(1500)
            seen[place] = (page.get_attribute("#guide", "data-fit"),
                           page.inner_text("#guide-note"),
                           page.eval_on_selector("#guide ellipse",
                                                 "el => getComputedStyle(el).stroke"))
            page.screenshot(path=shots / f"22-guide-face-{place}.png")
            page.click("#stop")
            page.wait_for_selector("#history-link")
            browser.close()
    assert geometry == {"centred": True, "left": False, "top": False, "straddling": False,
                        "too_big": False, "letterboxed_centred": True,
                        "letterboxed_left": False}, geometry
    assert seen["beside"][:2] == ("outside", "Face outside the oval: move the camera"), seen
    assert seen["inside"][:2] == ("inside", "Face inside the oval"), seen
    assert seen["inside"][2] == "rgb(46, 204, 113)" != seen["beside"][2], seen  # green only in


def test_plain_http_from_another_host_explains_the_camera_before_start(ward):
    """http://neopain.test (mapped to 127.0.0.1) is not a secure context: no
    navigator.mediaDevices; the page says why and what to do, and Start is off."""
    from playwright.sync_api import sync_playwright

    _app, base, patient_id = ward
    port = base.rsplit(":", 1)[1]
    remote = f"http://neopain.test:{port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--host-resolver-rules=MAP neopain.test 127.0.0.1"])
        page = browser.new_page(viewport={"width": 768, "height": 1024})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        log_in(page, remote)
        page.goto(f"{remote}/patients/{patient_id}/live")
        assert page.evaluate("() => [window.isSecureContext, typeof navigator.mediaDevices]") \
            == [False, "undefined"]
        note = page.locator("#camera-note")
        assert note.is_visible()
        text = note.inner_text()
        assert "https" in text and "--ssl-certfile" in text and "localhost" in text, text
        assert re.search(r"neopain\.test:\d+", text), text
        assert page.is_disabled("#start")
        browser.close()
    assert not errors, errors
