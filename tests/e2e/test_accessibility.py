"""Automated accessibility check (issue 19): axe-core, vendored for tests only
(``tests/vendor/axe-core``, never served), runs in Debian's chromium on the login, patients,
live (while monitoring the fake camera), history and profile pages, the ward station (with the
monitored bed on it, and empty), and on the setup, instructions, users, audit and patient form
pages: no serious or critical violation. ``e2e/test_ward.py`` runs it on a station of 16 beds
with alarms too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from e2e.test_bedside import (CHROMIUM, browser_with_camera, log_in,  # noqa: F401 (fixture)
                              clips)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                       "/usr/bin/chromium (apt-get install -y chromium); CI installs it"),
    pytest.mark.slow,
]
AXE = Path(__file__).parents[1] / "vendor" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical violations of the page as it is now (WCAG 2 A/AA)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # evaluated through the DevTools protocol: the app's Content-Security-Policy stays on
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    result = page.evaluate("""() => axe.run(document, {runOnly: {type: 'tag',
        values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})""")
    return [{"page": page.url, "rule": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [(n["target"], n.get("failureSummary", "")) for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in SERIOUS]


def test_no_serious_accessibility_violations(ward, clips, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    _app, base, patient_id = ward
    found: list[dict] = []
    with sync_playwright() as playwright:
        browser = browser_with_camera(playwright, clips["face"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(30_000)
        page.goto(f"{base}/login")
        found += axe_violations(page)
        log_in(page, base)
        found += axe_violations(page)  # patients

        page.goto(f"{base}/patients/{patient_id}/live")
        found += axe_violations(page)  # before Start
        page.click("#start")
        page.wait_for_function("() => ['PAIN', 'no pain'].includes("
                               "document.getElementById('label').textContent)", timeout=90_000)
        found += axe_violations(page)  # while monitoring
        station = browser.new_page(viewport={"width": 1280, "height": 800})
        log_in(station, base)
        station.goto(f"{base}/ward")
        station.wait_for_function("() => document.querySelectorAll('#beds .bed').length === 1")
        found += axe_violations(station)  # the ward station with the monitored bed
        station.close()
        page.click("#stop")
        page.wait_for_selector("#history-link")
        found += axe_violations(page)  # stopped: no current assessment

        for path in (f"/patients/{patient_id}", f"/patients/{patient_id}/profile",
                     f"/patients/{patient_id}/edit", "/patients/new", "/instructions",
                     "/users", "/audit", "/ward"):
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            found += axe_violations(page)
        page.click("text=Log out")
        page.wait_for_url(re.compile(r".*/login$"))
        browser.close()
    assert not found, json.dumps(found, indent=1)


CONTRAST = """(el) => {
    const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
    const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
        .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
    let back = el;
    while (back && rgb(getComputedStyle(back).backgroundColor)[3] === 0) back = back.parentElement;
    const bg = back ? rgb(getComputedStyle(back).backgroundColor) : [255, 255, 255];
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(bg)].sort((x, y) => x - y);
    let opacity = 1;
    for (let e = el; e; e = e.parentElement) opacity *= parseFloat(getComputedStyle(e).opacity);
    return {ratio: (b + 0.05) / (a + 0.05), opacity};
}"""
KINDS = ("pain", "nopain", "uncertain", "noface", "unassessable", "stale", "")


def test_every_state_and_button_reads_at_aa_contrast(ward):
    """Stricter than axe, which lets large text pass at 3:1 and skips disabled controls: every
    state of the label and every button of the live page, enabled or not, at least 4.5:1, not
    faded by opacity; each state carries its own icon (not colour alone)."""
    from playwright.sync_api import sync_playwright

    _app, base, patient_id = ward
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        log_in(page, base)
        page.goto(f"{base}/patients/{patient_id}/live")
        low, icons = [], {}
        for kind in KINDS:
            page.eval_on_selector("#label", "(el, kind) => { el.dataset.label = kind; }", kind)
            seen = page.eval_on_selector("#label", CONTRAST)
            if seen["ratio"] < 4.5 or seen["opacity"] < 1:
                low.append((f"label[{kind}]", seen))
            icons[kind] = page.eval_on_selector(
                "#label", "el => getComputedStyle(el, '::before').content")
        for button in page.query_selector_all("main button, main .button"):
            seen = button.evaluate(CONTRAST)
            if seen["ratio"] < 4.5 or seen["opacity"] < 1:
                low.append((button.evaluate("el => el.outerHTML.slice(0, 60)"), seen))
        browser.close()
    assert not low, low
    assert len(set(icons.values())) == len(KINDS) and "none" not in icons.values(), icons
