"""``neopain agent``: assess a bed's camera on this device and send the results to the ward.

Imports nothing of torch, FastAPI or the server (``neopain.agent`` only), so that it starts
fast on a small computer that has none of them installed (docs/agent.md).
"""

from __future__ import annotations

import functools
import os
import sys
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from neopain.cli.console import console, err_console, fail

REFRESH_S = 0.25
LOG_EVERY_S = 10.0  # the status line's period when the output is no terminal (a service's log)
STYLES = {"pain": "bold white on red", "nopain": "bold black on green",
          "uncertain": "bold black on yellow", "noface": "bold white on grey30",
          "unassessable": "bold white on grey30"}


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def status_line(figures) -> Text:
    """The live status line: state, fps, records, clock offset, server, binding."""
    shown = figures.shown
    line = Text()
    if shown is None:
        line.append(" starting ", style="bold white on grey30")
    else:
        number = f" {shown.number}" if shown.number not in ("–", "") else ""
        line.append(f" {shown.text}{number} ", style=STYLES.get(shown.kind, "bold"))
    if figures.source_lost_since is not None:
        line.append(f"  camera lost since {_clock(figures.source_lost_since)}", style="bold red")
    line.append(f"  {figures.fps:4.1f} fps  queued {figures.queued} · sent {figures.sent} · "
                f"refused {figures.refused} · dropped {figures.dropped}")
    if figures.outbox_error:
        line.append(" (outbox cannot be written)", style="bold red")
    elif figures.outbox_full:
        line.append(" (outbox full)", style="bold red")
    offset = "not measured" if figures.offset_s is None else f"{figures.offset_s:+.3f} s"
    line.append(f"  clock {offset}")
    if figures.unstamped:
        line.append(f" ({figures.unstamped}{'+' if figures.unstamped >= 100 else ''} records "
                    "wait for it)", style="yellow")
    line.append("  ")
    if figures.reachable:
        line.append("server ok", style="green")
    elif figures.unreachable_since is not None:
        line.append(f"server unreachable since {_clock(figures.unreachable_since)}",
                    style="bold red")
    else:
        line.append("server not reached yet")
    binding = figures.binding
    if binding is None or binding.session_id is None:
        line.append("  not bound", style="yellow")
    else:
        line.append(f"  session {binding.session_id}" + (f" ({binding.name})" if binding.name
                                                          else ""))
    return line


def agent(
    source: Annotated[str, typer.Option(
        "--source", help="A camera index (0), a stream URL (rtsp://…) or a video file "
                         "(played in real time).")],
    server: Annotated[str, typer.Option(
        "--server", help="The ward server's address, e.g. https://ward.example:8000.")],
    token_file: Annotated[Path, typer.Option(
        "--token-file", help="File holding this device's token (npd_…), readable by its owner "
                             "only (chmod 600).")],
    model: Annotated[Optional[str], typer.Option(
        "--model", help="nfcs (the rule-based scorer, needs mediapipe) or an exported "
                        "model.onnx (default: NEOPAIN_MODEL, else nfcs).")] = None,
    fps: Annotated[Optional[float], typer.Option(
        "--fps", help="Assess at most this many frames per second (default: every frame).")
    ] = None,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", help="ONNX Runtime threads (default: one per core).")] = None,
    outbox: Annotated[Optional[Path], typer.Option(
        "--outbox", help="The outbox file of records not yet sent (default: "
                         "agent-outbox.sqlite3 in NEOPAIN_DATA_DIR).")] = None,
    outbox_mb: Annotated[float, typer.Option(
        "--outbox-mb", help="The most megabytes the outbox keeps; past it new records are "
                            "dropped (and counted).")] = 200.0,
    cafile: Annotated[Optional[Path], typer.Option(
        "--cafile", help="PEM certificate authority to trust for an https server with its "
                         "own certificate.")] = None,
) -> None:
    """Assess a bed's camera on this device and send the results to the ward server.

    Frames never leave the device: the server gets one assessment per interval, a downscaled
    snapshot at the first face and at each change of state, and a heartbeat. While the server
    is away the agent keeps assessing and queueing, and replays in order when it is back.
    Ctrl-C stops it; what was not sent stays queued for the next start.

    Example: neopain agent --source 0 --server https://ward:8000 --token-file ~/.neopain-token
    """
    from neopain.agent.capture import FrameSource
    from neopain.agent.client import (
        DeviceClient, check_server_url, plain_http_warning, read_token,
    )
    from neopain.agent.outbox import Outbox
    from neopain.agent.runner import Agent
    from neopain.config import get_settings
    from neopain.prediction import load_predictor

    settings = get_settings()
    token = read_token(token_file)
    server = check_server_url(server)
    if (warning := plain_http_warning(server)) is not None:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if not outbox_mb > 0:
        fail(f"--outbox-mb {outbox_mb:g} must be a number of megabytes > 0")
    if cafile is not None and not cafile.is_file():
        fail(f"--cafile {escape(str(cafile))}: no such file; valid: a PEM certificate file")
    capture = FrameSource(source, fps=fps, max_pixels=settings.max_image_pixels).open()
    try:
        predictor = load_predictor(model or settings.model, threads=threads)
    except BaseException:
        capture.close()
        raise
    path = outbox or settings.data_dir / "agent-outbox.sqlite3"
    try:
        records = Outbox(path, max_bytes=int(outbox_mb * 1e6))
    except BaseException:
        capture.close()
        predictor.close()
        raise
    factory = functools.partial(DeviceClient, server, token=token,
                                cafile=None if cafile is None else str(cafile))
    with Agent(capture, predictor=predictor, outbox=records, client_factory=factory,
               detector=settings.detector, window=settings.smoothing_window,
               redetect_every=settings.redetect_every) as runner:
        console.print(f"neopain agent: {escape(source)} → {escape(server)}, model "
                      f"{escape(predictor.name)}, outbox {escape(str(path))} "
                      f"({records.count_} queued)", highlight=False)
        _watch(runner)
        figures = runner.snapshot()
    if runner.error_ is not None:
        fail(escape(str(runner.error_)))
    if figures.ended and not figures.ended.startswith("the video"):
        fail(escape(figures.ended))
    console.print(f"stopped{': ' + figures.ended if figures.ended else ''}; sent "
                  f"{figures.sent}, refused {figures.refused}, dropped {figures.dropped}; "
                  f"{figures.queued} records stay queued in {escape(str(path))} for the next "
                  "start", highlight=False)


def _watch(runner) -> None:
    """Run the agent in a thread and draw its status line until it stops or Ctrl-C; returns
    once the run has ended (the agent may then free what it used).

    The main thread waits on an ``Event`` the run sets at its end, never in ``Thread.join``:
    a Ctrl-C that interrupts ``join`` makes CPython 3.11 mark the still running thread as
    stopped (bpo-45274's handler releases the lock the live thread holds), so a later
    ``join`` returns at once, and the model would be freed under the frame being assessed.
    """
    failure: list[BaseException] = []
    ended = threading.Event()

    def work() -> None:
        try:
            runner.run()
        except BaseException as error:  # shown by the main thread
            failure.append(error)
            runner.stop_.set()
        finally:
            ended.set()

    worker = threading.Thread(target=work, name="agent-run", daemon=True)
    with _stop_signals():
        worker.start()
        _watch_until_ended(runner, ended=ended)
    if failure:
        raise failure[0]


@contextmanager
def _stop_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM (``systemctl stop``) both stop the agent cleanly, also when it was
    started with SIGINT ignored (a background job of a script, a CI runner): Python then
    leaves Ctrl-C ignored, and SIGTERM would end it without closing the camera and outbox."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _watch_until_ended(runner, *, ended: threading.Event) -> None:  # noqa: ANN001
    """The status line until the run sets ``ended``; Ctrl-C (or SIGTERM) asks it to stop and
    waits for it (a second one leaves at once)."""
    said: set[str] = set()
    try:
        if console.is_terminal:
            with Live(status_line(runner.snapshot()), console=console, transient=False,
                      refresh_per_second=1 / REFRESH_S) as live:
                while not ended.is_set():
                    ended.wait(REFRESH_S)
                    figures = runner.snapshot()
                    _say_once(live.console, figures, said)
                    live.update(status_line(figures))
        else:  # a service's log: the status line every LOG_EVERY_S, not redrawn
            next_line = time.monotonic()
            while not ended.is_set():
                ended.wait(REFRESH_S)
                figures = runner.snapshot()
                _say_once(console, figures, said)
                if time.monotonic() >= next_line or ended.is_set():
                    console.print(status_line(figures), soft_wrap=True)
                    next_line = time.monotonic() + LOG_EVERY_S
    except KeyboardInterrupt:
        runner.stop_.set()
        err_console.print("stopping (Ctrl-C)…")
    try:  # the run checks the stop between frames: it ends after the frame being assessed
        if not ended.wait(2.0):
            err_console.print("still finishing the frame being assessed (or the camera's "
                              "read); Ctrl-C again leaves at once")
            ended.wait()
    except KeyboardInterrupt:  # what was made is committed in the outbox: nothing is lost
        err_console.print("leaving at once (Ctrl-C twice); the frame being assessed is "
                          "abandoned, queued records stay in the outbox")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def _say_once(out, figures, said: set[str]) -> None:
    """Lines printed above the status line, each once: the server away at the start, each
    refusal reason, a records request refused whole, the outbox filling or failing."""
    if figures.reachable is False and "unreachable" not in said and figures.sent == 0:
        said.add("unreachable")
        out.print(f"[yellow]server not reachable[/] ({escape(figures.problem)}): assessing and "
                  "queueing, trying again", highlight=False)
    for reason, detail in figures.refusals.items():
        if f"refused:{reason}" not in said:
            said.add(f"refused:{reason}")
            more = (" — stamped by a clock the server disagrees with; they are counted in "
                    "refused") if reason == "invalid (time)" else ""
            out.print(f"[yellow]the server refused records[/] ({escape(reason)}): "
                      f"{escape(detail)}{more}", highlight=False)
    if figures.request_refused and f"request:{figures.request_refused}" not in said:
        said.add(f"request:{figures.request_refused}")
        out.print(f"[yellow]the server refused the records request[/] (naming no record): "
                  f"{escape(figures.request_refused)}; the records stay queued and are sent "
                  "again (is the server of the same version?)", highlight=False)
    if figures.outbox_error and "write" not in said:
        said.add("write")
        out.print(f"[bold red]outbox cannot be written[/]: {escape(figures.outbox_error)}; "
                  "new records are dropped (and counted) while it cannot", highlight=False)
    elif not figures.outbox_error:
        said.discard("write")
    if figures.outbox_full and "full" not in said:
        said.add("full")
        out.print("[bold red]outbox full[/]: new records are dropped (and counted) until the "
                  "server takes the queued ones (--outbox-mb)", highlight=False)
    elif not figures.outbox_full:
        said.discard("full")
