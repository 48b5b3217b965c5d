"""``neopain devices`` (issue 21): ``create`` prints the token once with the steps to install it
and stores only its SHA-256; ``list`` shows who each device watches, revoked, last seen;
``revoke`` asks first unless ``--yes``; bad input exits 1 with ``error: …``, never a traceback."""

from __future__ import annotations

import hashlib
import re

import pytest
from typer.testing import CliRunner

from neopain.cli import devices
from neopain.store import crud
from neopain.store.session import open_store

TOKEN = re.compile(r"npd_[A-Za-z0-9_-]{20,}")


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(devices.app, list(args), input=stdin, terminal_width=200)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result.exit_code, result.output


@pytest.fixture()
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'records.sqlite3'}"


def test_create_prints_the_token_once_with_the_steps_and_stores_its_hash(db_url):
    code, output = run("create", "--name", "NICU bed 7", "--db", db_url)
    assert code == 0, output
    [token] = TOKEN.findall(output)
    assert "chmod 600" in output and "--token-file" in output and "shown this once" in output
    with open_store(db_url)() as db:
        device = crud.find_device(db, name="NICU bed 7")
        assert device.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert [entry.action for entry in crud.list_audit(db)] == ["device_create"]
    code, listed = run("list", "--db", db_url)
    assert code == 0 and "NICU bed 7" in listed and "free" in listed and "never" in listed
    assert not TOKEN.search(listed)


def test_list_shows_the_watched_patient_and_revoked(db_url):
    run("create", "--name", "NICU bed 7", "--db", db_url)
    run("create", "--name", "NICU bed 8", "--db", db_url)
    with open_store(db_url)() as db:
        patient = crud.create_patient(db, actor=None, name="Baby Seven")
        session = crud.bind_device(db, crud.find_device(db, name="NICU bed 7"),
                                   patient=patient, actor=None)
        crud.revoke_device(db, crud.find_device(db, name="NICU bed 8"), actor=None)
    code, output = run("list", "--db", db_url)
    assert code == 0, output
    [seven] = [line for line in output.splitlines() if "NICU bed 7" in line]
    [eight] = [line for line in output.splitlines() if "NICU bed 8" in line]
    assert "Baby Seven" in seven and f"session {session.id}" in seven
    assert "free" not in eight and "UTC" in eight  # revoked at
    assert "No devices" in run("list", "--db", db_url.replace("records", "other"))[1]


def test_revoke_asks_first_unless_yes(db_url):
    run("create", "--name", "NICU bed 7", "--db", db_url)
    code, output = run("revoke", "NICU bed 7", "--db", db_url, stdin="n\n")
    assert code == 1 and "Revoke device 'NICU bed 7' for good?" in output
    with open_store(db_url)() as db:
        assert crud.find_device(db, name="NICU bed 7").revoked_at is None
    code, output = run("revoke", "NICU bed 7", "--db", db_url, stdin="y\n")
    assert code == 0 and "revoked" in output
    with open_store(db_url)() as db:
        assert crud.find_device(db, name="NICU bed 7").revoked_at is not None
        assert [e.action for e in crud.list_audit(db)][0] == "device_revoke"
    run("create", "--name", "NICU bed 8", "--db", db_url)
    assert run("revoke", "NICU bed 8", "--yes", "--db", db_url)[0] == 0


@pytest.mark.parametrize(("args", "message"), [
    (("create", "--name", "  "), "1–100 characters"),
    (("create", "--name", "NICU bed 7"), "exists already"),
    (("revoke", "NICU bed 9", "--yes"), "no device named 'NICU bed 9'"),
    (("revoke", "bed [/x]", "--yes"), "no device named 'bed [/x]'"),  # Rich markup, printed
    (("revoke", "NICU bed 7", "--yes"), "revoked already"),
])
def test_bad_input_exits_1_with_a_message(db_url, args, message):
    run("create", "--name", "NICU bed 7", "--db", db_url)
    if args[-2:] == ("NICU bed 7", "--yes"):
        run("revoke", "NICU bed 7", "--yes", "--db", db_url)
    code, output = run(*args, "--db", db_url)
    assert code == 1 and "error:" in output and message in " ".join(output.split()), output
