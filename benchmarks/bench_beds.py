"""Simulated beds streaming to one bedside-monitor server on this machine.

Starts ``neopain serve``'s app (real model, SQLite in a temporary folder, uvicorn) in its own
process, then N beds each open a live session and send a 640×480 JPEG of a face (scikit-image's
astronaut, moving a few pixels) at F frames per second over a WebSocket, as the live page does:
it waits for the server's ``ready`` (the stream's face detector built, the model warm), then
keeps one frame in flight; when a tick comes while the previous reply is still outstanding,
that frame is dropped (the page would skip it). Prints the time from connecting to ``ready``,
the round trip (send → reply) of every frame from the first, the server's own processing time,
the frames dropped, and the rows saved.
Target for 8 beds at 2 frames/s: p95 round trip <= 150 ms, no frame dropped.

    python benchmarks/bench_beds.py [--beds 8] [--fps 2] [--seconds 60] [--model nfcs]

Its parts (the server, logging in, a bed, the bed figures) are reused by ``bench_ward.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
from rich.console import Console
from rich.table import Table
from skimage import data
from websockets.asyncio.client import connect

from neopain.server import security
from neopain.store import crud
from neopain.store.session import open_store

PASSWORD = "benchmark password"
SERVER = textwrap.dedent("""
    import json
    import sys
    import uvicorn
    from neopain.config import Settings
    from neopain.server.model import load_live_predictor
    from neopain.server.app import create_app

    settings = Settings(database_url=sys.argv[1], model=sys.argv[2], data_dir=sys.argv[3],
                        **json.loads(sys.argv[5]))
    with load_live_predictor(settings) as predictor:  # as neopain serve does
        uvicorn.run(create_app(settings, predictor=predictor), host="127.0.0.1",
                    port=int(sys.argv[4]), log_level="warning", access_log=False,
                    ws="websockets-sansio")
""")
TARGET_P95_MS = 150.0
"""Round trip p95 the beds must stay within (with no frame dropped)."""

FrameSource = Callable[[int, float], bytes | None]
"""The frame a bed sends at its ``tick``-th tick, ``elapsed`` seconds after ``ready``; None:
the bed falls silent for good."""


def face_frames(count: int, *, image: np.ndarray | None = None) -> list[bytes]:
    """JPEGs (quality 80, as the page sends) of ``image`` (BGR; the astronaut by default),
    472×472 on a 640×480 canvas, moving a few pixels."""
    if image is None:
        image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    image = cv2.resize(image, (472, 472))
    frames = []
    for index in range(count):
        canvas = np.full((480, 640, 3), 60, np.uint8)
        dx, dy = int(3 * np.sin(index / 3)), int(2 * np.cos(index / 4))
        canvas[4 + dy:476 + dy, 84 + dx:556 + dx] = image
        frames.append(cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    return frames


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def bench_server(*, model: str, settings: dict[str, Any] | None = None) -> Iterator[str]:
    """``neopain serve``'s app on uvicorn in its own process on a free port, its records in a
    temporary folder holding one clinician, ``bench``; yields its base URL.

    Args:
        model: the live model's registry name.
        settings: more ``Settings`` fields (JSON values), e.g. ``{"alarm_pain_s": 5}``.
    """
    with tempfile.TemporaryDirectory(prefix="neopain-bench-") as folder:
        url = f"sqlite:///{Path(folder) / 'records.sqlite3'}"
        with open_store(url)() as db:
            crud.create_user(db, username="bench", role="clinician",
                             password_hash=security.hash_password(PASSWORD))
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, url, model, folder, str(port),
                                   json.dumps(settings or {})])
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=30)


async def log_in(client: httpx.AsyncClient) -> str:
    """Wait until the server answers, then log ``client`` in as ``bench`` (its CSRF header
    set); the login cookie, as a ``Cookie`` header's value."""
    for _ in range(600):
        try:
            await client.get("/login")
            break
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    login = await client.post("/api/login", json={"username": "bench", "password": PASSWORD})
    login.raise_for_status()
    client.headers["X-CSRF-Token"] = login.json()["csrf_token"]
    return f"neopain_session={client.cookies['neopain_session']}"


async def open_sessions(client: httpx.AsyncClient, count: int) -> list[tuple[int, int]]:
    """``count`` patients (``BED-0`` …), each with a live session: (patient id, session id)."""
    opened = []
    for number in range(count):
        patient = await client.post("/api/patients", json={"record_number": f"BED-{number}"})
        patient.raise_for_status()
        session = await client.post(f"/api/patients/{patient.json()['id']}/sessions")
        session.raise_for_status()
        opened.append((patient.json()["id"], session.json()["id"]))
    return opened


class Bed:
    """One bed's stream and what it measured (``last_sent_at``: the wall-clock time,
    ``time.time()``, its newest frame was sent)."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.ready_ms = float("nan")
        self.round_trips_ms: list[float] = []
        self.server_ms: list[float] = []
        self.sent = 0
        self.dropped = 0
        self.saved = 0
        self.last_sent_at = float("nan")


async def run_bed(bed: Bed, *, url: str, cookie: str, frames: list[bytes] | FrameSource,
                  fps: float, seconds: float, offset_s: float, hang_up: bool = False) -> None:
    """Stream to the live socket ``url`` for ``seconds`` after its ``ready``, one frame in
    flight (module docstring), then stop the session.

    Args:
        frames: the JPEGs, sent in turn; or a ``FrameSource``: once it gives None the bed
            sends nothing more and, when ``hang_up``, closes its socket without stopping the
            session (a tablet dropping off), else keeps it open and stops at the end.
        offset_s: wait this long before connecting (beds spread over a frame interval).
    """
    if callable(frames):
        source = frames
    else:
        def source(tick: int, elapsed: float) -> bytes:
            return frames[tick % len(frames)]
    await asyncio.sleep(offset_s)
    loop = asyncio.get_running_loop()
    connecting = loop.time()
    async with connect(url, additional_headers={"Cookie": cookie}, max_size=2**20) as stream:
        ready = json.loads(await stream.recv())
        if ready != {"type": "ready"}:
            raise SystemExit(f"bed {bed.number}: expected ready, got {ready}")
        started = loop.time()
        bed.ready_ms = (started - connecting) * 1000
        pending: asyncio.Task | None = None
        tick = 0
        silent = False
        while loop.time() - started < seconds:
            due = started + tick / fps
            await asyncio.sleep(max(0.0, due - loop.time()))
            tick += 1
            frame = source(tick, due - started)
            if frame is None:
                silent = True
                break
            if pending is not None and not pending.done():
                bed.dropped += 1
                continue
            sent_at = loop.time()
            bed.last_sent_at = time.time()
            await stream.send(frame)
            bed.sent += 1
            pending = asyncio.create_task(receive(stream, bed, sent_at=sent_at))
        if pending is not None:
            await pending
        if silent and hang_up:
            return
        await asyncio.sleep(max(0.0, started + seconds - loop.time()))
        await stream.send(json.dumps({"type": "stop"}))


async def receive(stream, bed: Bed, *, sent_at: float) -> None:  # noqa: ANN001
    reply = json.loads(await stream.recv())
    bed.round_trips_ms.append((asyncio.get_running_loop().time() - sent_at) * 1000)
    bed.server_ms.append(reply.get("server_ms", float("nan")))
    bed.saved += bool(reply.get("saved"))


async def run_beds(args: argparse.Namespace, base: str) -> list[Bed]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        cookie = await log_in(client)
        sessions = [session for _, session in await open_sessions(client, args.beds)]
    frames = face_frames(24)
    beds = [Bed(number) for number in range(args.beds)]
    ws_base = base.replace("http", "ws")
    await asyncio.gather(*(
        run_bed(bed, url=f"{ws_base}/ws/sessions/{session}", cookie=cookie, frames=frames,
                fps=args.fps, seconds=args.seconds,
                offset_s=bed.number / (args.fps * args.beds))
        for bed, session in zip(beds, sessions)))
    return beds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--beds", type=int, default=8)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--model", default="nfcs")
    args = parser.parse_args()
    console = Console()
    with bench_server(model=args.model) as base:
        beds = asyncio.run(run_beds(args, base))
    report(console, beds, args)


def round_trips_ms(beds: list[Bed]) -> np.ndarray:
    """Every frame's round trip, all beds together."""
    return np.array([ms for bed in beds for ms in bed.round_trips_ms])


def beds_met(beds: list[Bed]) -> bool:
    """Round trip p95 within ``TARGET_P95_MS`` and no frame dropped."""
    return bool(np.percentile(round_trips_ms(beds), 95) <= TARGET_P95_MS
                and sum(b.dropped for b in beds) == 0)


def bed_rows(beds: list[Bed]) -> list[tuple[str, str]]:
    """The beds' figures as (name, value) rows."""
    trips = round_trips_ms(beds)
    server_ms = np.array([ms for bed in beds for ms in bed.server_ms])
    ready = np.array([bed.ready_ms for bed in beds])
    return [
        ("connect → ready, median / max (ms)", f"{np.median(ready):.0f} / {ready.max():.0f}"),
        ("frames sent", f"{sum(b.sent for b in beds)}"),
        ("frames dropped", f"{sum(b.dropped for b in beds)}"),
        ("assessments saved", f"{sum(b.saved for b in beds)}"),
        ("round trip p50 (ms)", f"{np.percentile(trips, 50):.0f}"),
        ("round trip p95 (ms)", f"{np.percentile(trips, 95):.0f}"),
        ("round trip max (ms)", f"{trips.max():.0f}"),
        ("server processing p95 (ms)", f"{np.nanpercentile(server_ms, 95):.0f}"),
        ("first frame of a bed, max (ms)", f"{max(b.round_trips_ms[0] for b in beds):.0f}"),
    ]


def report(console: Console, beds: list[Bed], args: argparse.Namespace) -> None:
    table = Table(title=f"{args.beds} beds × {args.fps:g} frames/s for {args.seconds:g} s, "
                        f"model {args.model}, {os.cpu_count()} CPUs, every frame counted")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in bed_rows(beds):
        table.add_row(name, value)
    console.print(table)
    verdict = "met" if beds_met(beds) else "NOT met"
    console.print(f"target p95 <= {TARGET_P95_MS:.0f} ms and no frame dropped: {verdict}")


if __name__ == "__main__":
    main()
