"""``neopain serve``: the bedside monitor on this machine (FastAPI under uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.text import Text

from neopain.cli.console import console
from neopain.cli.users import first_admin_command, shown_url
from neopain.config import Settings, get_settings, settings_from

if TYPE_CHECKING:
    from fastapi import FastAPI


def serve(
    host: Annotated[Optional[str], typer.Option(
        "--host", help="Address to listen on (default 127.0.0.1; 0.0.0.0 for every network).")
    ] = None,
    port: Annotated[Optional[int], typer.Option("--port", help="Port (default 8000).")] = None,
    db: Annotated[Optional[str], typer.Option(
        "--db", help="Records database URL (default: SQLite records.sqlite3 in the data "
                     "folder; postgresql+psycopg://user@host/name in production).")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="A rule-based model's name (default: the NFCS scorer; neopain "
                        "models list) or an exported model.onnx.")] = None,
    ssl_certfile: Annotated[Optional[Path], typer.Option(
        "--ssl-certfile", help="TLS certificate (PEM): serve https, which tablets need for "
                               "the camera.")] = None,
    ssl_keyfile: Annotated[Optional[Path], typer.Option(
        "--ssl-keyfile", help="TLS private key (PEM) of --ssl-certfile.")] = None,
    forwarded_allow_ips: Annotated[Optional[str], typer.Option(
        "--forwarded-allow-ips",
        help="Addresses of the reverse proxies (comma-separated) whose X-Forwarded-For and "
             "X-Forwarded-Proto are believed; default: none (the client's own address is "
             "used, e.g. for the login limit).")] = None,
) -> None:
    """Run the bedside monitor: live camera assessment, patient records, history and charts."""
    # imported here: the web stack takes a moment to load and other commands never need it
    import uvicorn

    from neopain.server.app import create_app
    from neopain.server.model import load_live_predictor

    overrides = {key: value for key, value in
                 {"host": host, "port": port, "database_url": db, "model": model,
                  "forwarded_allow_ips": forwarded_allow_ips}.items()
                 if value is not None}
    settings = settings_from(**{**get_settings().model_dump(), **overrides})
    with load_live_predictor(settings) as predictor:
        console.print(f"Model: [bold]{Text(predictor.name)}[/]")
        app = create_app(settings, predictor=predictor)
        _print_start(app, settings, https=ssl_certfile is not None)
        # no proxy is trusted unless named: uvicorn's own default trusts 127.0.0.1, so a
        # process on this machine could claim any client address
        proxies = settings.forwarded_allow_ips
        uvicorn.run(app, host=settings.host, port=settings.port, access_log=False,
                    log_level=settings.log_level.lower(), proxy_headers=proxies is not None,
                    forwarded_allow_ips=proxies or "", ssl_certfile=ssl_certfile,
                    ssl_keyfile=ssl_keyfile, ws="websockets-sansio")


def _print_start(app: FastAPI, settings: Settings, *, https: bool) -> None:
    scheme = "https" if https else "http"
    shown = "localhost" if settings.host in ("127.0.0.1", "localhost", "0.0.0.0") \
        else settings.host
    url = f"{scheme}://{shown}:{settings.port}/"
    from neopain.store import crud

    with app.state.neopain.store() as db:
        users = crud.count_users(db)
    console.print(Text.assemble("Records: ", (shown_url(settings.records_url()), "bold")),
                  soft_wrap=True)
    console.print(f"Open [bold cyan]{url}[/] in a browser on this machine", highlight=False)
    if settings.host == "0.0.0.0":
        console.print(f"  or {scheme}://<this machine's address>:{settings.port}/ from the ward "
                      "(the camera needs https there: --ssl-certfile/--ssl-keyfile or a "
                      "TLS proxy)", highlight=False)
    if users == 0:
        _print_first_admin(settings, setup_url=f"{url}setup")
    console.print("Stop with Ctrl+C.")


def _print_first_admin(settings: Settings, *, setup_url: str) -> None:
    """How to make the first admin: a command that works in a new shell (it names this
    server's data folder or database), or the one-time /setup page."""
    command = first_admin_command(settings)
    console.print("\n[bold yellow]No account exists yet.[/] Create the first administrator "
                  "with (in any shell on this machine)", highlight=False)
    # one line however long, never read as markup: it is meant to be copied
    console.print(Text("  " + command, style="bold"), soft_wrap=True, highlight=False)
    if "***" in command:
        console.print("  (with the database password in place of ***)", highlight=False)
    console.print(f"or once, in the browser, at {setup_url}", highlight=False)
