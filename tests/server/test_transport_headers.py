"""gzip where it is safe and cache headers on static assets (issue 18): static files, the API
schema and chart SVGs are compressed; HTML pages and replies with a CSRF token never are
(BREACH); static assets are kept ten minutes and revalidated with 304; charts are never
stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from neopain.server.chart_worker import close_chart_worker
from neopain.server.middleware import COMPRESSED_PATHS, STATIC_CACHE

GZIP = {"Accept-Encoding": "gzip"}
STATIC = Path(__file__).parents[2] / "src" / "neopain" / "server" / "static"


@pytest.fixture()
def wired(server, records):
    """The app as ``create_app`` makes it (its own transport middleware, nothing added here:
    a test that added it again passed with the call gone from ``create_app``) and its
    ``records``; the chart worker is closed afterwards."""
    yield server, records
    close_chart_worker(server.app)


def test_static_assets_charts_and_the_schema_come_gzipped(wired):
    server, ids = wired
    client = server.client("researcher")
    css = client.get("/static/app.css", headers=GZIP)
    assert css.headers.get("content-encoding") == "gzip"
    assert "accept-encoding" in css.headers["vary"].lower()
    assert css.content == (STATIC / "app.css").read_bytes()
    for path in (f"/patients/{ids['patient_id']}/charts/day.svg",
                 f"/sessions/{ids['session_id']}/timeline.svg", "/api/openapi.json"):
        response = client.get(path, headers=GZIP)
        assert response.status_code == 200 and response.headers.get(
            "content-encoding") == "gzip", path
    plain = client.get("/static/app.css", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers


def test_html_pages_and_replies_with_a_csrf_token_are_never_gzipped(wired):
    """Guards BREACH: a compressed page holding the CSRF token next to text from the request
    leaks the token through its size."""
    server, ids = wired
    client = server.client("researcher")
    pages = [f"/patients/{ids['patient_id']}/profile", "/patients?q=" + "a" * 600,
             "/instructions"]
    for path in pages:
        response = client.get(path, headers=GZIP)
        assert response.status_code == 200 and len(response.content) >= 500, path
        assert "content-encoding" not in response.headers, path
    # the API's replies with a token are under the 500 bytes gzip skips: not by size alone
    assert not any(COMPRESSED_PATHS.fullmatch(path) for path in ("/api/me", "/api/login"))
    me = client.get("/api/me", headers=GZIP)
    assert me.status_code == 200 and "content-encoding" not in me.headers
    # a chart's address answered with the login page (HTML with a token): not compressed
    login = server.client().get(f"/patients/{ids['patient_id']}/charts/day.svg",
                                headers=GZIP)
    assert login.status_code == 401 and login.headers["content-type"].startswith("text/html")
    assert "content-encoding" not in login.headers


@pytest.mark.parametrize("headers", [{}, GZIP])
def test_static_assets_are_cached_and_revalidated_and_charts_are_not_stored(wired, headers):
    server, ids = wired
    client = server.client("researcher")
    first = client.get("/static/app.css", headers=headers)
    assert first.headers["cache-control"] == STATIC_CACHE and "max-age=" in STATIC_CACHE
    # what a browser is told: kept ten minutes, then asked again
    assert "max-age=600" in first.headers["cache-control"]
    assert "must-revalidate" in first.headers["cache-control"]
    etag = first.headers["etag"]
    again = client.get("/static/app.css", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["cache-control"] == STATIC_CACHE and again.headers["etag"] == etag
    chart = client.get(f"/patients/{ids['patient_id']}/charts/hour.svg", headers=headers)
    assert chart.headers["cache-control"] == "no-store"
    page = client.get(f"/patients/{ids['patient_id']}/profile", headers=headers)
    assert page.headers["cache-control"] == "no-store"
