"""The first-admin flow from ``neopain serve``'s printed instructions works in a new shell
(issue 19): with a data folder other than the default, or ``--db``, the printed
``neopain users create …`` names them, and run in a clean environment (no ``NEOPAIN_*``
variable, another home) it creates the admin in the server's database; no password is printed.

Guards the trap where the printed command wrote to ``~/.local/share/neopain``: "Created", yet
the server still showed /setup."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.config import Settings
from neopain.faces.crop import CropRule
from neopain.prediction import Prediction, Predictor
from neopain.store import crud
from neopain.store.session import open_store

PASSWORD = "a long enough password"


class Quiet(Predictor):
    """A stand-in model: serve's output is what is tested here."""

    name = "quiet"
    crop = CropRule.whole_image()

    def predict_crops(self, crops):
        return [Prediction(0.1, "nopain", 0.5, self.name) for _ in crops]


@pytest.fixture()
def serve(monkeypatch):
    """Run ``neopain serve ARGS`` without starting a server or loading a model; its output."""
    from neopain.server import model as model_module

    monkeypatch.setattr(model_module, "load_live_predictor", lambda settings: Quiet())
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)

    def run(*args: str) -> str:
        result = CliRunner().invoke(neopain_app, ["serve", *args], terminal_width=80)
        assert result.exit_code == 0, result.output
        return result.output

    return run


def printed_command(output: str) -> str:
    """The ``neopain users create …`` line serve printed (one line, however long)."""
    [line] = [line.strip() for line in output.splitlines() if "neopain users create" in line]
    return line


def run_in_a_new_shell(command: str, home: Path) -> subprocess.CompletedProcess:
    """``command`` with NAME → ada, reading the password from stdin, in bash with no NEOPAIN_*
    variable and another home (so the default data folder is not the server's)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("NEOPAIN_", "XDG_"))}
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    line = command.replace("NAME", "ada") + " --password-stdin"
    return subprocess.run(["bash", "-c", line], input=PASSWORD + "\n", env=env, cwd=home,
                          capture_output=True, text=True, timeout=120)


def server_admins(url: str) -> list[str]:
    with open_store(url)() as db:
        return [u.username for u in crud.list_users(db) if u.role == "admin"]


@pytest.mark.parametrize("how", ["data_dir", "db"])
def test_the_printed_first_admin_command_works_in_a_new_shell(serve, monkeypatch, tmp_path, how):
    folder = tmp_path / "ward data [1]"  # spaces and brackets: quoted, not read as markup
    url = f"sqlite:///{tmp_path / 'other' / 'records.sqlite3'}"
    if how == "data_dir":
        monkeypatch.setenv("NEOPAIN_DATA_DIR", str(folder))
        output = serve()
        server_url = Settings(data_dir=folder).records_url()
    else:
        output = serve("--db", url)
        server_url = url
    command = printed_command(output)
    home = tmp_path / "home"
    home.mkdir()
    result = run_in_a_new_shell(command, home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert server_admins(server_url) == ["ada"]
    assert not list(home.rglob("*.sqlite3"))  # nothing went to the default data folder


def test_a_relative_data_folder_is_printed_as_an_absolute_path(serve, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEOPAIN_DATA_DIR", "ward")
    command = printed_command(serve())
    assert f"NEOPAIN_DATA_DIR={tmp_path / 'ward'}" in command


def test_the_default_data_folder_needs_nothing_more(serve, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NEOPAIN_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    command = printed_command(serve())
    assert command == "neopain users create --username NAME --role admin"


def test_a_database_password_is_never_printed():
    from neopain.cli.users import first_admin_command

    settings = Settings(database_url="postgresql+psycopg://neopain:s3cret@db.ward/records")
    command = first_admin_command(settings)
    assert "s3cret" not in command
    assert re.search(r"--db 'postgresql\+psycopg://neopain:\*\*\*@db\.ward/records'", command)
