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
from pathlib import Path

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
    import sys
    import uvicorn
    from neopain.config import Settings
    from neopain.server.model import load_live_predictor
    from neopain.server.app import create_app

    settings = Settings(database_url=sys.argv[1], model=sys.argv[2], data_dir=sys.argv[3])
    with load_live_predictor(settings) as predictor:  # as neopain serve does
        uvicorn.run(create_app(settings, predictor=predictor), host="127.0.0.1",
                    port=int(sys.argv[4]), log_level="warning", access_log=False,
                    ws="websockets-sansio")
""")


def face_frames(count: int) -> list[bytes]:
    """JPEGs (quality 80, as the page sends) of the astronaut moving a few pixels."""
    image = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (472, 472))
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


class Bed:
    """One bed's stream and what it measured."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.ready_ms = float("nan")
        self.round_trips_ms: list[float] = []
        self.server_ms: list[float] = []
        self.sent = 0
        self.dropped = 0
        self.saved = 0


async def run_bed(bed: Bed, *, url: str, cookie: str, frames: list[bytes], fps: float,
                  seconds: float, offset_s: float) -> None:
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
        while loop.time() - started < seconds:
            due = started + tick / fps
            await asyncio.sleep(max(0.0, due - loop.time()))
            tick += 1
            if pending is not None and not pending.done():
                bed.dropped += 1
                continue
            sent_at = loop.time()
            await stream.send(frames[tick % len(frames)])
            bed.sent += 1
            pending = asyncio.create_task(receive(stream, bed, sent_at=sent_at))
        if pending is not None:
            await pending
        await stream.send(json.dumps({"type": "stop"}))


async def receive(stream, bed: Bed, *, sent_at: float) -> None:  # noqa: ANN001
    reply = json.loads(await stream.recv())
    bed.round_trips_ms.append((asyncio.get_running_loop().time() - sent_at) * 1000)
    bed.server_ms.append(reply.get("server_ms", float("nan")))
    bed.saved += bool(reply.get("saved"))


async def run_beds(args: argparse.Namespace, base: str) -> list[Bed]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for _ in range(600):
            try:
                await client.get("/login")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        login = await client.post("/api/login", json={"username": "bench", "password": PASSWORD})
        login.raise_for_status()
        client.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        cookie = f"neopain_session={client.cookies['neopain_session']}"
        sessions = []
        for number in range(args.beds):
            patient = await client.post("/api/patients", json={"record_number": f"BED-{number}"})
            session = await client.post(f"/api/patients/{patient.json()['id']}/sessions")
            sessions.append(session.json()["id"])
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
    with tempfile.TemporaryDirectory(prefix="neopain-bench-") as folder:
        url = f"sqlite:///{Path(folder) / 'records.sqlite3'}"
        with open_store(url)() as db:
            crud.create_user(db, username="bench", role="clinician",
                             password_hash=security.hash_password(PASSWORD))
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, url, args.model, folder,
                                   str(port)])
        try:
            beds = asyncio.run(run_beds(args, f"http://127.0.0.1:{port}"))
        finally:
            server.terminate()
            server.wait(timeout=30)
    report(console, beds, args)


def report(console: Console, beds: list[Bed], args: argparse.Namespace) -> None:
    trips = np.array([ms for bed in beds for ms in bed.round_trips_ms])
    server_ms = np.array([ms for bed in beds for ms in bed.server_ms])
    ready = np.array([bed.ready_ms for bed in beds])
    table = Table(title=f"{args.beds} beds × {args.fps:g} frames/s for {args.seconds:g} s, "
                        f"model {args.model}, {os.cpu_count()} CPUs, every frame counted")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
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
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    p95 = np.percentile(trips, 95)
    dropped = sum(b.dropped for b in beds)
    verdict = "met" if p95 <= 150 and dropped == 0 else "NOT met"
    console.print(f"target p95 <= 150 ms and no frame dropped: {verdict}")


if __name__ == "__main__":
    main()
