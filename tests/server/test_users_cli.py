"""``neopain users``: the first admin is made from the command line with an argon2 hash; bad
input exits 1 with a message, never a traceback; ``serve`` prints how to make that first user."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.server import security
from neopain.store import crud
from neopain.store.session import open_store


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(neopain_app, list(args), input=stdin, terminal_width=120)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


@pytest.fixture()
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'records.sqlite3'}"


def test_create_admin_from_stdin_stores_an_argon2_hash(db_url):
    code, output = run("users", "create", "--username", "ada", "--role", "admin",
                       "--password-stdin", "--db", db_url, stdin="a long enough password\n")
    assert code == 0, output
    assert "ada" in output and "admin" in output
    with open_store(db_url)() as db:
        user = crud.find_user(db, "ada")
    assert user.role == "admin" and user.password_hash.startswith("$argon2id$")
    assert security.verify_password(user.password_hash, "a long enough password")


def test_create_asks_for_the_password_twice(db_url):
    code, output = run("users", "create", "-u", "bob", "--db", db_url,
                       stdin="first password 1\nsecond password 2\nfirst password 1\n"
                             "first password 1\n")
    assert code == 0, output
    assert "do not match" in output.lower()
    with open_store(db_url)() as db:
        assert security.verify_password(crud.find_user(db, "bob").password_hash,
                                        "first password 1")


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("--username", "ada", "--role", "boss"), "a long enough password\n", "valid: admin"),
    (("--username", "a d a",), "a long enough password\n", "not valid"),
    (("--username", "ada",), "short\n", "at least 10"),
])
def test_bad_input_exits_1_with_a_message(db_url, args, stdin, message):
    code, output = run("users", "create", *args, "--password-stdin", "--db", db_url,
                       stdin=stdin)
    assert code == 1 and message in output


def test_a_taken_username_exits_1(db_url):
    for expected in (0, 1):
        code, output = run("users", "create", "-u", "ada", "--password-stdin", "--db", db_url,
                           stdin="a long enough password\n")
        assert code == expected
    assert "taken" in output


def test_list_passwd_and_deactivate(db_url):
    code, output = run("users", "list", "--db", db_url)
    assert code == 0 and "neopain users create --username NAME --role admin" in output
    run("users", "create", "-u", "ada", "-r", "researcher", "--password-stdin", "--db", db_url,
        stdin="a long enough password\n")
    code, _ = run("users", "passwd", "ada", "--password-stdin", "--db", db_url,
                  stdin="another long password\n")
    assert code == 0
    code, output = run("users", "deactivate", "ada", "--db", db_url)
    assert code == 0 and "no" in output
    with open_store(db_url)() as db:
        user = crud.find_user(db, "ada")
    assert not user.active and security.verify_password(user.password_hash,
                                                        "another long password")
    code, output = run("users", "passwd", "nobody", "--password-stdin", "--db", db_url,
                       stdin="x\n")
    assert code == 1 and "no account 'nobody'" in output


def test_the_cli_knows_the_roles_the_database_allows():
    from neopain.cli import users
    from neopain.store.tables import ROLES

    assert users.ROLES == ROLES
