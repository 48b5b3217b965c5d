"""A ward on one server: beds streaming, station pages watching, readers browsing, alarms raised.

Issue 18's acceptance. Starts the server as ``bench_beds`` does (real model, SQLite in a
temporary folder, uvicorn in its own process), with ward alarms after 5 s, the least allowed
(``alarm_pain_s`` and ``alarm_stale_s``), and runs all of this at once for ``--seconds``:

- N beds stream at F frames/s as in ``bench_beds`` (one frame in flight, every frame counted
  from the first). Beds 1, 5, 9, … switch to a pain face (``tests/face_warps.pain_face`` on the
  same astronaut) a quarter of the way in, so their ``pain`` alarm is raised once the held
  state has been pain for 5 s; beds 3, 7, 11, … fall silent half-way (at the latest
  ``ALARM_WINDOW_S`` before the end), alternately hanging up (3, 11, …) and keeping the socket
  open (7, 15, …), so their ``link`` alarm is raised. From then on fewer beds stream.
- 2 station pages on ``/ws/ward`` (logged in, as the beds are) read every view and note when
  each alarm first appears on each page.
- 2 readers browse the beds' patients in turn as a browser would: a patient's profile page,
  then the charts it shows (day, hour, each session's timeline, with the page's ``?view=``
  grant) at once, then the history page, then pause ``--reader-pause-s`` (default 2 s: a
  person glancing at a profile before opening the next; 0 turns the readers into a load test
  whose request rate grows with the server's speed, e.g. 200 requests/s with charts cached).

Prints one Rich table, then the verdict: the beds' figures (``bench_beds.bed_rows``), the
readers' latencies per kind and any answer that was not 200, the station pages (connections
refused, views read, the longest wait for one), and the alarms. An alarm's
raise latency runs from when its rule holds to the first view on a page that shows it, for
every alarm and page: ``pain`` holds at ``condition_since + limit_s`` (server clock, this
machine), ``link`` at the bed's last frame sent + ``alarm_stale_s`` (what happened, so the
server's own wait for a status written up to a second late, while a socket stays open, is
counted in). An alarm expected but never shown counts as not met.
Targets (16 beds at 2 frames/s): round trip p95 <= 150 ms, no frame dropped, alarm raise
latency p95 <= 2 s; the readers' p95 is reported.

    python benchmarks/bench_ward.py [--beds 16] [--fps 2] [--seconds 60] [--model nfcs]
                                    [--reader-pause-s 2]
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import cv2
import httpx
import numpy as np
from rich.console import Console
from rich.table import Table
from skimage import data
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import bench_beds  # noqa: E402  (the server, logging in, a bed, its figures)
import face_warps  # noqa: E402  (test helper: the landmark-driven pain face)

from neopain.faces.landmarks import FaceMesh  # noqa: E402

ALARM_S = 5.0
"""``alarm_pain_s`` and ``alarm_stale_s`` of the server: the least the settings allow."""
ALARM_WINDOW_S = 12.0
"""A bed's change (pain face, silence) comes at least this long before the end, so that its
alarm is raised while the run goes on."""
TARGET_ALARM_S = 2.0
"""Alarm raise latency p95 the ward must stay within."""
RECONNECT_S = 0.5
"""A station page whose connection was refused tries again this much later."""
STATIONS = 2
READERS = 2
CHART = re.compile(r'<img[^>]*\ssrc="(/[^"]+\.svg\?view=[^"]*)"')
"""A chart the profile page shows, with its view grant."""


class Station:
    """One station page: the connections refused (per HTTP status) and the seconds until one
    was accepted, how many views it read, the longest wait between two, the states it saw per
    session, and each alarm as first seen (``first_seen``: wall-clock time)."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.refused: Counter[int] = Counter()
        self.accepted_after_s = float("nan")
        self.views = 0
        self.longest_gap_s = 0.0
        self.states: dict[int, set[str]] = defaultdict(set)
        self.alarms: dict[int, dict] = {}
        self.first_seen: dict[int, float] = {}


async def watch_ward(station: Station, *, url: str, cookie: str) -> None:
    """Read every view ``/ws/ward`` pushes until cancelled; a refused connection (an HTTP
    status instead of the upgrade) is counted and tried again every ``RECONNECT_S``."""
    trying = time.time()
    while True:
        try:
            ward = await connect(url, additional_headers={"Cookie": cookie}, max_size=2**22)
        except InvalidStatus as refusal:
            station.refused[refusal.response.status_code] += 1
            await asyncio.sleep(RECONNECT_S)
            continue
        station.accepted_after_s = time.time() - trying
        async with ward:
            await read_views(station, ward)
        return


async def read_views(station: Station, ward: ClientConnection) -> None:
    """Note every view ``ward`` sends until it closes."""
    previous = time.time()
    async for message in ward:
        now = time.time()
        view = json.loads(message)
        station.views += 1
        station.longest_gap_s = max(station.longest_gap_s, now - previous)
        previous = now
        for bed in view["beds"]:
            station.states[bed["session_id"]].add(bed["state"])
            for alarm in bed["alarms"]:
                if alarm["id"] not in station.first_seen:
                    station.first_seen[alarm["id"]] = now
                    station.alarms[alarm["id"]] = alarm


class Reader:
    """One reader: latencies (ms) per kind of request and the answers that were not 200."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.latencies_ms: dict[str, list[float]] = defaultdict(list)
        self.failures: Counter[str] = Counter()


async def fetch(client: httpx.AsyncClient, reader: Reader, kind: str, path: str) -> str | None:
    """GET ``path``, noting its latency under ``kind``; its text when 200, else None."""
    started = time.perf_counter()
    try:
        answer = await client.get(path)
    except httpx.HTTPError as error:
        reader.failures[f"{kind}: {type(error).__name__}"] += 1
        return None
    reader.latencies_ms[kind].append((time.perf_counter() - started) * 1000)
    if answer.status_code != 200:
        reader.failures[f"{kind}: HTTP {answer.status_code}"] += 1
        return None
    return answer.text


async def browse(reader: Reader, *, base: str, patients: list[int], pause_s: float,
                 done: asyncio.Event) -> None:
    """Read the patients' profiles with their charts, and their histories, in turn, pausing
    ``pause_s`` after each patient, until ``done``."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await bench_beds.log_in(client)
        turn = reader.number
        while not done.is_set():
            patient = patients[turn % len(patients)]
            turn += 1
            started = time.perf_counter()
            profile = await fetch(client, reader, "profile page", f"/patients/{patient}/profile")
            if profile is not None:
                charts = [html.unescape(src) for src in CHART.findall(profile)]
                if not charts:
                    reader.failures["profile page: no chart with a view grant"] += 1
                await asyncio.gather(*(
                    fetch(client, reader, src.split("?")[0].rsplit("/", 1)[1], src)
                    for src in charts))
                reader.latencies_ms["profile with its charts"].append(
                    (time.perf_counter() - started) * 1000)
            await fetch(client, reader, "history page", f"/patients/{patient}")
            await asyncio.sleep(pause_s)


def pain_face_frames(count: int) -> list[bytes]:
    """``bench_beds.face_frames`` of the astronaut warped into a pain face."""
    neutral = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    with FaceMesh() as mesh:
        landmarks = mesh.landmarks(neutral)
    if landmarks is None:
        raise SystemExit("the face mesh found no face in the astronaut; no pain face to send")
    return bench_beds.face_frames(count, image=face_warps.pain_face(neutral, landmarks))


class Plan:
    """What each bed does: ``pain_at_s`` / ``silent_at_s`` (seconds after its ``ready``) for
    the beds that change, and whether a silent bed hangs up."""

    def __init__(self, *, beds: int, seconds: float) -> None:
        self.pain_at_s = min(seconds / 4, seconds - ALARM_WINDOW_S)
        self.silent_at_s = min(seconds / 2, seconds - ALARM_WINDOW_S)
        self.pain_beds = [n for n in range(beds) if n % 4 == 1]
        self.silent_beds = [n for n in range(beds) if n % 4 == 3]
        self.hanging_up = [n for n in self.silent_beds if n // 4 % 2 == 0]


async def run_ward(args: argparse.Namespace, base: str, plan: Plan
                   ) -> tuple[list[bench_beds.Bed], list[Station], list[Reader], list[int]]:
    """The beds, station pages and readers of one run, and each bed's session id."""
    neutral, pain = bench_beds.face_frames(24), pain_face_frames(24)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        cookie = await bench_beds.log_in(client)
        opened = await bench_beds.open_sessions(client, args.beds)

    def frames_of(number: int) -> bench_beds.FrameSource:
        def frame(tick: int, elapsed: float) -> bytes | None:
            if number in plan.silent_beds and elapsed >= plan.silent_at_s:
                return None
            painful = number in plan.pain_beds and elapsed >= plan.pain_at_s
            return (pain if painful else neutral)[tick % len(neutral)]
        return frame

    ws_base = base.replace("http", "ws")
    stations = [Station(n) for n in range(STATIONS)]
    watching = [asyncio.create_task(watch_ward(s, url=f"{ws_base}/ws/ward", cookie=cookie))
                for s in stations]
    readers, done = [Reader(n) for n in range(READERS)], asyncio.Event()
    browsing = [asyncio.create_task(browse(r, base=base, patients=[p for p, _ in opened],
                                           pause_s=args.reader_pause_s, done=done))
                for r in readers]
    beds = [bench_beds.Bed(n) for n in range(args.beds)]
    try:
        await asyncio.gather(*(
            bench_beds.run_bed(bed, url=f"{ws_base}/ws/sessions/{session}", cookie=cookie,
                               frames=frames_of(bed.number), fps=args.fps, seconds=args.seconds,
                               offset_s=bed.number / (args.fps * args.beds),
                               hang_up=bed.number in plan.hanging_up)
            for bed, (_, session) in zip(beds, opened)))
    finally:
        done.set()
        for task in watching:
            task.cancel()
        await asyncio.gather(*watching, return_exceptions=True)
        await asyncio.gather(*browsing)
    for task in watching:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()
    return beds, stations, readers, [session for _, session in opened]


def _wall(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class AlarmFigures:
    """Raise latencies (s) of the alarms the pages saw, per alarm and page, and what was
    expected but not shown (on any page, or on one) or shown but not expected."""

    def __init__(self, *, beds: list[bench_beds.Bed], stations: list[Station],
                 sessions: list[int], plan: Plan) -> None:
        bed_of = {session: number for number, session in enumerate(sessions)}
        expected = {(number, rule) for rule, numbers in
                    (("pain", plan.pain_beds), ("link", plan.silent_beds))
                    for number in numbers}
        self.after_rule_s: dict[str, list[float]] = defaultdict(list)
        self.engine_s: list[float] = []
        self.push_s: list[float] = []
        self.alarms: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.missing: list[str] = []
        seen: set[tuple[int, str]] = set()
        for alarm_id in sorted({a for s in stations for a in s.alarms}):
            alarm = next(s.alarms[alarm_id] for s in stations if alarm_id in s.alarms)
            number, rule = bed_of[alarm["session_id"]], alarm["rule"]
            self.alarms[rule] += 1
            if (number, rule) not in expected:
                self.unexpected.append(f"{rule} on bed {number}")
                continue
            seen.add((number, rule))
            holds = (beds[number].last_sent_at + ALARM_S if rule == "link"
                     else _wall(alarm["condition_since"]) + alarm["limit_s"])
            raised = _wall(alarm["raised_at"])
            self.engine_s.append(raised - holds)
            for station in stations:
                if alarm_id not in station.first_seen:
                    self.missing.append(f"{rule} on bed {number} (page {station.number})")
                    continue
                shown = station.first_seen[alarm_id]
                self.after_rule_s[rule].append(shown - holds)
                self.push_s.append(shown - raised)
        self.missing += [f"{rule} on bed {number}" for number, rule in sorted(expected - seen)]
        pain_sessions = [sessions[n] for n in plan.pain_beds]
        self.pain_reached = sum(any("pain" in s.states[session] for s in stations)
                                for session in pain_sessions)
        self.all_after_rule_s = np.array([v for values in self.after_rule_s.values()
                                          for v in values])

    def met(self) -> bool:
        """Every expected alarm shown, p95 within ``TARGET_ALARM_S``."""
        return bool(not self.missing and len(self.all_after_rule_s)
                    and np.percentile(self.all_after_rule_s, 95) <= TARGET_ALARM_S)


def spread(values: list[float] | np.ndarray, *, unit: str = "s") -> str:
    """p50 / p95 / max of ``values`` (seconds shown as such, else milliseconds)."""
    if len(values) == 0:
        return "none"
    p50, p95, most = np.percentile(values, 50), np.percentile(values, 95), np.max(values)
    if unit == "s":
        return f"{p50:.2f} / {p95:.2f} / {most:.2f}"
    return f"{p50:.0f} / {p95:.0f} / {most:.0f}"


def reader_rows(readers: list[Reader]) -> tuple[list[tuple[str, str]], np.ndarray, int]:
    """The readers' rows, the latencies (ms) of a profile with its charts, the answers not
    200."""
    latencies: dict[str, list[float]] = defaultdict(list)
    failures: Counter[str] = Counter()
    for reader in readers:
        failures.update(reader.failures)
        for kind, values in reader.latencies_ms.items():
            latencies[kind].extend(values)
    rows = [(kind, f"{spread(values, unit='ms')} ({len(values)})")
            for kind, values in sorted(latencies.items())]
    rows.append(("answers not 200", ", ".join(f"{what} ×{count}" for what, count
                                              in sorted(failures.items())) or "none"))
    return rows, np.array(latencies["profile with its charts"]), sum(failures.values())


def station_rows(stations: list[Station]) -> list[tuple[str, str]]:
    refused = sum((s.refused for s in stations), Counter())
    return [
        ("connections refused", ", ".join(f"HTTP {status} ×{count}"
                                          for status, count in sorted(refused.items())) or "none"),
        ("accepted after (s), each page", " / ".join(f"{s.accepted_after_s:.1f}"
                                                     for s in stations)),
        ("views read, each page", " / ".join(str(s.views) for s in stations)),
        ("longest wait for a view (s)", f"{max(s.longest_gap_s for s in stations):.2f}"),
    ]


def alarm_rows(alarms: AlarmFigures, plan: Plan) -> list[tuple[str, str]]:
    everything = alarms.all_after_rule_s
    return [
        ("pain beds, at pain on a page", f"{len(plan.pain_beds)}, {alarms.pain_reached} "
                                         f"(face from {plan.pain_at_s:g} s)"),
        ("silent beds (hanging up)", f"{len(plan.silent_beds)} ({len(plan.hanging_up)}), "
                                     f"from {plan.silent_at_s:g} s"),
        ("shown, by rule", ", ".join(f"{rule} {count}" for rule, count
                                     in sorted(alarms.alarms.items())) or "none"),
        ("expected, never shown", ", ".join(alarms.missing) or "none"),
        ("not expected", ", ".join(alarms.unexpected) or "none"),
        *((f"{rule}: rule holds → shown", f"{spread(values)} ({len(values)})")
          for rule, values in ((r, alarms.after_rule_s[r]) for r in ("pain", "link"))),
        ("rule holds → raised (engine)", spread(alarms.engine_s)),
        ("raised → shown (push)", spread(alarms.push_s)),
        ("all: rule holds → shown", f"{spread(everything)} ({len(everything)})"),
    ]


def report(console: Console, args: argparse.Namespace, plan: Plan, beds: list[bench_beds.Bed],
           stations: list[Station], readers: list[Reader], alarms: AlarmFigures) -> None:
    table = Table(title=f"Ward: {args.beds} beds × {args.fps:g} frames/s for {args.seconds:g} s, "
                        f"{STATIONS} station pages, {READERS} profile readers (pause "
                        f"{args.reader_pause_s:g} s), model {args.model}, {os.cpu_count()} CPUs")
    table.add_column("figure")
    table.add_column("value", justify="right")
    readers_rows, page_ms, failures = reader_rows(readers)
    for part, rows in (
            ("beds (every frame counted)", bench_beds.bed_rows(beds)),
            ("profile readers, p50 / p95 / max (ms) (count)", readers_rows),
            ("station pages", station_rows(stations)),
            ("alarms, p50 / p95 / max (s) (alarm × page)", alarm_rows(alarms, plan))):
        table.add_row(f"[bold]{part}[/bold]", "")
        for name, value in rows:
            table.add_row(f"  {name}", value)
        table.add_section()
    console.print(table)
    trips = bench_beds.round_trips_ms(beds)
    verdict = "met" if bench_beds.beds_met(beds) and alarms.met() else "NOT met"
    alarm_p95 = (f"{np.percentile(alarms.all_after_rule_s, 95):.2f} s"
                 if len(alarms.all_after_rule_s) else "none")
    page_p95 = f"{np.percentile(page_ms, 95):.0f} ms" if len(page_ms) else "none"
    console.print(
        f"Targets (round trip p95 <= {bench_beds.TARGET_P95_MS:.0f} ms, no frame dropped, "
        f"alarm raise latency p95 <= {TARGET_ALARM_S:g} s): {verdict}; round trip p95 "
        f"{np.percentile(trips, 95):.0f} ms, {sum(b.dropped for b in beds)} dropped, alarm p95 "
        f"{alarm_p95} ({len(alarms.missing)} expected alarms never shown). Profile readers: "
        f"p95 {page_p95} for a profile with its charts, {failures} answers not 200.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--beds", type=int, default=16)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--model", default="nfcs")
    parser.add_argument("--reader-pause-s", type=float, default=2.0,
                        help="a reader's pause after each patient (a person reading)")
    args = parser.parse_args()
    if args.seconds < ALARM_WINDOW_S + 3:
        parser.error(f"--seconds={args.seconds:g} is too short for an alarm to be raised and "
                     f"shown: at least {ALARM_WINDOW_S + 3:g}")
    if args.beds < 1:
        parser.error(f"--beds={args.beds} must be at least 1")
    plan = Plan(beds=args.beds, seconds=args.seconds)
    settings = {"alarm_pain_s": ALARM_S, "alarm_stale_s": ALARM_S}
    with bench_beds.bench_server(model=args.model, settings=settings) as base:
        beds, stations, readers, sessions = asyncio.run(run_ward(args, base, plan))
    alarms = AlarmFigures(beds=beds, stations=stations, sessions=sessions, plan=plan)
    report(Console(), args, plan, beds, stations, readers, alarms)


if __name__ == "__main__":
    main()
