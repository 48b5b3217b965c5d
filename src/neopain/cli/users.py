"""``neopain users``: accounts of the bedside monitor (there is no default account).

``neopain users create --username ada --role admin`` makes the first administrator; the password
is asked twice (or read from stdin with ``--password-stdin``) and stored as an argon2 hash.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from neopain.cli.console import console, fail
from neopain.config import Settings, get_settings, settings_from

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from neopain.store.tables import User

# the records and password modules are imported inside the commands: SQLAlchemy and argon2
# take a moment to load and the other commands never need them
ROLES = ("admin", "clinician", "researcher")  # as neopain.store.tables.ROLES

app = typer.Typer(help="Manage bedside-monitor users.", no_args_is_help=True)

DbOption = Annotated[
    Optional[str],
    typer.Option("--db", help="Records database URL (default: NEOPAIN_DATABASE_URL or SQLite "
                              "in the data folder)."),
]
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of stdin "
                                          "instead of asking twice."),
]


def first_admin_command(settings: Settings) -> str:
    """The ``neopain users create`` command that makes the first admin in the database of
    ``settings``, from any shell and folder: with ``--db URL`` (password hidden) when
    ``database_url`` is set, else with ``NEOPAIN_DATA_DIR=/absolute/path`` when the data
    folder is not the default one.

    Example: ``NEOPAIN_DATA_DIR=/srv/neopain neopain users create --username NAME --role admin``
    """
    command = "neopain users create --username NAME --role admin"
    if settings.database_url:
        return f"{command} --db {shlex.quote(shown_url(settings.database_url))}"
    folder = settings.data_dir.expanduser().absolute()
    default = Settings.model_fields["data_dir"].get_default(call_default_factory=True)
    if folder == default.expanduser().absolute():
        return command
    return f"NEOPAIN_DATA_DIR={shlex.quote(str(folder))} {command}"


def shown_url(url: str) -> str:
    """A database URL fit to print: its password hidden (``***``), a relative SQLite path
    made absolute (so it names the same file from any folder)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:" \
            and not database.startswith("file:") and not Path(database).is_absolute():
        parsed = parsed.set(database=str(Path(database).absolute()))
    return parsed.render_as_string(hide_password=True)


def _store(db: str | None) -> sessionmaker[Session]:
    from neopain.store.session import StoreError, open_store

    try:
        return open_store(db or get_settings().records_url())
    except StoreError as error:
        fail(str(error))


def _existing_user(session: Session, username: str) -> User:
    from neopain.store import crud

    user = crud.find_user(session, username)
    if user is None:
        fail(f"no account {username!r}; see neopain users list")
    return user


def _password(username: str, *, from_stdin: bool) -> str:
    from neopain.server import security

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(f"Password for {username}", hide_input=True,
                                confirmation_prompt=True)
    try:
        return security.check_password(password, username=username)
    except security.CredentialsError as error:
        fail(str(error))


@app.command()
def create(
    username: Annotated[str, typer.Option("--username", "-u", help="Login name.")],
    role: Annotated[str, typer.Option("--role", "-r",
                                      help=f"One of: {', '.join(ROLES)}.")] = "clinician",
    password_stdin: PasswordStdin = False,
    db: DbOption = None,
) -> None:
    """Create an account (the first one should be an admin)."""
    from neopain.server import security
    from neopain.store import crud
    from neopain.store.session import StoreError

    if role not in ROLES:
        fail(f"--role {role!r} is not a role; valid: {', '.join(ROLES)}")
    try:
        security.check_username(username)
    except security.CredentialsError as error:
        fail(f"--username: {error}")
    password = _password(username, from_stdin=password_stdin)
    with _store(db)() as session:
        try:
            user = crud.create_user(session, username=username, role=role,
                                    password_hash=security.hash_password(password))
        except StoreError as error:
            fail(str(error))
        _print_users([user], title="Created")


@app.command("list")
def list_users(db: DbOption = None) -> None:
    """Show every account with its role and whether it is active."""
    from neopain.store import crud

    with _store(db)() as session:
        users = crud.list_users(session)
    if not users:
        settings = get_settings() if db is None else settings_from(database_url=db)
        console.print("No accounts yet. Create the first administrator with")
        console.print(Text("  " + first_admin_command(settings)), soft_wrap=True,
                      highlight=False)
        return
    _print_users(users, title=f"{len(users)} account{'s' if len(users) != 1 else ''}")


@app.command()
def passwd(
    username: Annotated[str, typer.Argument(help="The account.")],
    password_stdin: PasswordStdin = False,
    db: DbOption = None,
) -> None:
    """Set a new password for an account (its open logins end)."""
    from neopain.server import security
    from neopain.store import crud

    with _store(db)() as session:
        user = _existing_user(session, username)
        password = _password(username, from_stdin=password_stdin)
        crud.update_user(session, user, actor=None,
                         password_hash=security.hash_password(password))
    console.print(f"Password of [bold]{Text(username)}[/] changed.")


@app.command()
def deactivate(
    username: Annotated[str, typer.Argument(help="The account.")],
    db: DbOption = None,
) -> None:
    """Stop an account from logging in and end its open logins (records stay)."""
    from neopain.store import crud

    with _store(db)() as session:
        user = _existing_user(session, username)
        crud.update_user(session, user, actor=None, active=False)
        _print_users([user], title="Deactivated")


def _print_users(users: list[User], *, title: str) -> None:
    table = Table(title=title)
    for column in ("id", "username", "role", "active", "created"):
        table.add_column(column)
    for user in users:
        table.add_row(str(user.id), Text(user.username), user.role,
                      "yes" if user.active else "no",
                      user.created_at.strftime("%Y-%m-%d %H:%M UTC"))
    console.print(table)
