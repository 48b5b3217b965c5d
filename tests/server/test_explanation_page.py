"""The live page carries the explanation panel: its script and style are served by the server
itself, and every text colour of the panel reads at least 4.5:1 on its white background (WCAG
AA). Guards: the page showed only heatmap blobs, no explanation (issue 19)."""

from __future__ import annotations

import re
from importlib.resources import files

from neopain.server.render import asset_version


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_live_page_loads_the_panel_script_and_style(server):
    client = server.client("clinician")
    patient = client.post("/api/patients", json={"record_number": "EXP-1"}).json()
    page = client.get(f"/patients/{patient['id']}/live").text
    assert '<section id="explanation"' in page
    version = asset_version()
    assert f'<script src="/static/explanation.js?v={version}"></script>' in page
    assert f'<link rel="stylesheet" href="/static/explanation.css?v={version}">' in page
    for name in ("explanation.js", "explanation.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_every_text_colour_of_the_panel_reads_at_least_4_5_to_1():
    css = (files("neopain.server") / "static" / "explanation.css").read_text()
    colours = re.findall(r"(?<![-\w])color:\s*(#[0-9a-fA-F]{6})", css)
    assert colours
    for colour in colours:
        assert _contrast(colour, "#ffffff") >= 4.5, colour


def test_the_script_renders_text_only_and_clears_on_stale():
    script = (files("neopain.server") / "static" / "explanation.js").read_text()
    assert "innerHTML" not in script  # server text is set as text, never parsed as HTML
    assert 'addEventListener("neopain:stale", clear)' in script
    for field in ("status", "lines", "note", "reason", "dan"):
        assert f"explanation.{field}" in script
