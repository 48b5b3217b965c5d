"""Static addresses carry the release and a digest of the files (review of issue 18): browsers
keep static files ten minutes under the same address (``STATIC_CACHE``), so after an upgrade
a page could run with an old script (ward.js had just been split in two)."""

from __future__ import annotations

import re
import shutil

from neopain import __version__
from neopain.server.render import STATIC, asset_version

REFERENCE = re.compile(r"/static/[^\"'\s<>)`]*")
PAGES = ("login", "patients", "live", "ward")


def page_paths(ids: dict[str, int]) -> dict[str, str]:
    return {"login": "/login", "patients": "/patients",
            "live": f"/patients/{ids['patient_id']}/live", "ward": "/ward"}


def test_every_static_address_of_the_pages_carries_the_version_and_names_a_file(
        server, records):
    version = asset_version()
    assert version.startswith(f"{__version__}-")
    anonymous, clinician = server.client(), server.client("clinician")
    seen = set()
    for page, path in page_paths(records).items():
        response = (anonymous if page == "login" else clinician).get(path)
        assert response.status_code == 200, page
        references = REFERENCE.findall(response.text)
        assert len(references) >= 2, page  # app.css and the icon at least
        for reference in references:
            name, _, query = reference.removeprefix("/static/").partition("?")
            assert query == f"v={version}", (page, reference)
            assert (STATIC / name).is_file(), (page, reference)
            assert clinician.get(reference).status_code == 200, reference
            seen.add(name)
    assert {"app.css", "favicon.svg", "live.js", "bedside.js", "explanation.js",
            "explanation.css", "ward.css", "ward-alarms.js", "ward.js"} <= seen


def test_scripts_build_static_addresses_with_the_version_of_their_own_address():
    """ward-alarms.js fetches the tones: with the ?v= it was itself loaded with."""
    built = []
    for script in STATIC.glob("*.js"):
        code = "\n".join(line for line in script.read_text().splitlines()
                         if not line.lstrip().startswith("//"))
        for reference in REFERENCE.finditer(code):
            literal = code[reference.start() - 1:reference.end() + 1]
            assert re.fullmatch(r"`/static/.*\$\{VERSION\}`", literal), (script.name, literal)
            assert "const VERSION = new URL(document.currentScript.src).search" in code
            built.append(literal)
    assert "`/static/alarm-${priority}.wav${VERSION}`" in built


def test_the_version_changes_when_a_static_file_changes_and_only_then(tmp_path):
    folder = tmp_path / "static"
    shutil.copytree(STATIC, folder)
    first = asset_version(folder)
    assert asset_version(folder) == first == asset_version(STATIC)
    script = folder / "ward.js"
    script.write_text(script.read_text() + "\n")
    changed = asset_version(folder)
    assert changed != first
    (folder / "ward-extra.js").write_text("")
    assert asset_version(folder) not in (first, changed)
