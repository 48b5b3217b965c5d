"""The patients list's "Now" column says when it was made (review of issue 18): its states
are of the moment the page was rendered and do not update, so "as of hh:mm:ss" in the
server's display zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

ZONE = "Asia/Kolkata"  # UTC+05:30: a time shown in UTC, or in whole hours off, differs


def test_the_now_column_says_as_of_the_render_time_in_the_display_zone(make, tmp_path):
    server = make(tmp_path, timezone=ZONE)
    client = server.client("clinician")
    assert client.post("/api/patients", json={"record_number": "AS-OF"}).status_code == 201
    before = datetime.now(UTC)
    page = client.get("/patients").text
    after = datetime.now(UTC)

    found = re.search(r'<th>Now <span class="hint as-of">as of <time\s+datetime="([^"]+)">'
                      r"(\d\d:\d\d:\d\d)</time></span></th>", page)
    assert found, page[page.find("<thead>"):page.find("</thead>")]
    stamp = datetime.fromisoformat(found[1])
    assert before.replace(microsecond=0) <= stamp <= after
    assert found[2] == stamp.astimezone(ZoneInfo(ZONE)).strftime("%H:%M:%S")
    assert "not monitored" in page
