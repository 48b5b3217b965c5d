"""``neopain devices``: bed devices of the ward server (each runs ``neopain agent``).

``neopain devices create --name "NICU bed 7"`` registers one and prints its token, this once
(the server keeps only its SHA-256); ``list`` shows every device with the patient it watches;
``revoke NAME`` stops one for good. Binding a device to a patient is done on the patient's page.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from neopain.cli.console import console, fail
from neopain.cli.users import DbOption, _store

if TYPE_CHECKING:
    from neopain.store.crud import DeviceView

# the records modules are imported inside the commands: SQLAlchemy takes a moment to load

app = typer.Typer(help="Manage bed devices (neopain agent) of the ward server.",
                  no_args_is_help=True)

TOKEN_FILE = "/etc/neopain/device-token"


@app.command()
def create(
    name: Annotated[str, typer.Option("--name", "-n", help='How the ward reads the device, '
                                                         'e.g. "NICU bed 7".')],
    db: DbOption = None,
) -> None:
    """Register a device and print its token, this once."""
    from neopain.store import crud
    from neopain.store.session import StoreError

    with _store(db)() as session:
        try:
            device, token = crud.create_device(session, actor=None, name=name)
        except StoreError as error:
            fail(escape(f"--name: {error}"))
    console.print(f"Registered device [bold]{escape(device.name)}[/] (id {device.id}). "
                  "Its token, shown this once (the server keeps only its SHA-256):")
    console.print(Text(token, style="bold"), soft_wrap=True, highlight=False)
    console.print("On the device, as the user that runs the agent:")
    for step in (f"1. save the token in a file, e.g. {TOKEN_FILE}, owned by that user;",
                 f"2. let only that user read it: chmod 600 {TOKEN_FILE};",
                 f"3. start the agent: neopain agent --server URL --token-file {TOKEN_FILE} "
                 "--source 0;",
                 "4. bind the device to a patient on the patient's page (Bed device, Watch)."):
        console.print(Text("  " + step), soft_wrap=True, highlight=False)


@app.command("list")
def list_devices(db: DbOption = None) -> None:
    """Show every device: the patient it watches (or free), revoked, last seen."""
    from neopain.store import crud
    from neopain.store.tables import utc_now

    with _store(db)() as session:
        views = crud.list_devices(session)
        if not views:
            console.print('No devices yet. Register one with neopain devices create --name '
                          '"NICU bed 7".', highlight=False)
            return
        _print_devices(views, now=utc_now())


@app.command()
def revoke(
    name: Annotated[str, typer.Argument(help="The device's name (see neopain devices list).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    db: DbOption = None,
) -> None:
    """Revoke a device for good: its agent is refused within a second and says so."""
    from neopain.store import crud

    with _store(db)() as session:
        device = crud.find_device(session, name=name)
        if device is None:
            fail(escape(f"no device named {name!r}; see neopain devices list"))
        if device.revoked_at is not None:
            fail(escape(f"device {device.name!r} is revoked already (since "
                        f"{_when(device.revoked_at)})"))
        bound = crud.current_session(session, device_id=device.id)
        if not yes:
            typer.confirm(f"Revoke device {device.name!r} for good? Its agent stops within a "
                          "second" + (f"; the bed it watches (session {bound.id}) shows camera "
                                      "link lost" if bound is not None else ""),
                          abort=True)
        crud.revoke_device(session, device, actor=None)
        console.print(f"Device [bold]{escape(device.name)}[/] revoked: its agent is refused "
                      "from now on and says so.")
        if bound is not None:
            console.print(f"Its bed (live session {bound.id}) shows camera link lost on the "
                          "ward and raises that alarm; once it is acknowledged, the session, "
                          "getting no frames, ends by itself.", highlight=False)


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _ago(value: datetime | None, *, now: datetime) -> str:
    """As the Devices page says it (``server.render.duration_text``)."""
    from neopain.server.render import duration_text

    return "never" if value is None else f"{duration_text((now - value).total_seconds())} ago"


def _print_devices(views: list[DeviceView], *, now: datetime) -> None:
    from neopain.server.render import patient_label

    table = Table(title=f"{len(views)} device{'s' if len(views) != 1 else ''}")
    for column in ("id", "name", "watching", "revoked", "last seen"):
        table.add_column(column)
    for view in views:
        device = view.device
        if view.state == "watching":
            watching = (f"{patient_label(view.patient)} (session {view.session.id}, since "
                        f"{_when(view.session.started_at)})")
        else:
            watching = "free" if view.state == "free" else "–"
        table.add_row(str(device.id), Text(device.name), Text(watching),
                      "no" if device.revoked_at is None else _when(device.revoked_at),
                      _ago(device.last_seen_at, now=now) + (
                          f"; {device.queued} not sent" if device.queued else ""))
    console.print(table)
