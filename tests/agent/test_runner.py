"""The agent against a fake ward: nothing lost and nothing twice across an outage, records in
the order made, none while unbound, and a revoked or unknown device stopped within a second.

The frames, face detector and model are test doubles (a bright patch is the face, its
brightness is P(pain)), so these tests run the agent's own loops without mediapipe.
"""

from __future__ import annotations

import functools
import threading
import time

import numpy as np
import pytest

from neopain.agent.client import DeviceClient, Revoked, UnknownToken
from neopain.agent.outbox import Outbox
from neopain.agent.runner import Agent
from neopain.faces.base import Face, FaceDetector
from neopain.faces.crop import CropRule
from neopain.prediction import Prediction, Predictor


class BrightBox(FaceDetector):
    default_threshold = 0.0

    def _detect(self, image, *, prior):
        ys, xs = np.nonzero(image.max(axis=2))
        if xs.size == 0:
            return []
        return [Face((float(xs.min()), float(ys.min()), float(xs.max() + 1),
                      float(ys.max() + 1)), 0.9)]


class Brightness(Predictor):
    name = "brightness"
    crop = CropRule.exact_box()

    def __init__(self) -> None:
        self.closed = 0

    def predict_crops(self, crops):
        probs = [float(crop.mean()) / 255 for crop in crops]
        return [Prediction(p, "pain" if p >= 0.5 else "nopain", 0.5, self.name) for p in probs]

    def close(self) -> None:
        self.closed += 1


class Frames:
    """A camera at ``fps`` showing a face whose P(pain) alternates every ``period_s``."""

    def __init__(self, *, fps: float = 40.0, period_s: float = 0.5, seconds: float = 60.0):
        self.fps, self.period_s, self.seconds = fps, period_s, seconds
        self.lost_since_ = None
        self.closed = 0

    def frames(self, stop: threading.Event):
        start = time.monotonic()
        while not stop.wait(1 / self.fps) and time.monotonic() - start < self.seconds:
            now = time.monotonic()
            image = np.zeros((90, 120, 3), np.uint8)
            pain = int((now - start) / self.period_s) % 2
            image[20:60, 30:80] = 230 if pain else 25
            yield now, image

    def close(self) -> None:
        self.closed += 1


def make_agent(ward, tmp_path, **source):
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    factory = functools.partial(DeviceClient, ward.url, token=ward.token)
    return Agent(Frames(**source), predictor=Brightness(), outbox=outbox, client_factory=factory,
                 detector=BrightBox(), window=1)


def start(agent) -> threading.Thread:
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    return thread


def wait_until(condition, *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_an_outage_loses_nothing_sends_nothing_twice_and_replays_in_order(ward, tmp_path):
    """Guards: records dropped while the server is away, replayed out of order, or stored twice
    when the server stored a batch but its answer was lost."""
    with make_agent(ward, tmp_path) as agent:
        thread = start(agent)
        wait_until(lambda: len(ward.arrivals) >= 3, seconds=5)
        ward.lose_answers = True  # stored, but the agent never hears so: it must send again
        wait_until(lambda: len(ward.received) >= len(ward.arrivals) + 2, seconds=5)
        ward.lose_answers, ward.down = False, True
        wait_until(lambda: agent.snapshot().reachable is False, seconds=3)
        queued = agent.snapshot().queued
        wait_until(lambda: agent.snapshot().queued >= queued + 5, seconds=5)
        ward.down = False
        wait_until(lambda: agent.outbox.count_ <= 1 and agent.snapshot().reachable, seconds=10)
        agent.stop_.set()
        thread.join(2)
        figures = agent.snapshot()
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        left = [r["id"] for r in outbox.peek(limit=10_000, max_bytes=10**9)]
    stored = [ward.stored[i] for i in ward.arrivals]
    times = [r["time"] for r in stored]
    assert times == sorted(times) and len(set(times)) == len(times)  # in the order made
    assert len(ward.received) > len(ward.arrivals)  # some were sent twice …
    assert figures.dropped == 0 and not set(left) & set(ward.arrivals)  # … stored once, all kept
    assert figures.queued == len(left)
    assert [r for r in stored if r["snapshot"]] and {r["session_id"] for r in stored} == {7}
    assert all(r["state"] in ("pain", "nopain") for r in stored)


def test_records_made_while_the_server_is_away_at_the_start_arrive_when_it_is_back(
        ward, tmp_path):
    """Guards: an agent started while the server is away knowing no binding, so making no
    records for the session it was bound to before."""
    with make_agent(ward, tmp_path, seconds=0.5) as agent:  # learns and keeps its binding
        agent.run()
    ward.down = True
    before = len(ward.arrivals)
    with make_agent(ward, tmp_path, seconds=60) as agent:
        thread = start(agent)
        wait_until(lambda: agent.snapshot().queued >= 4, seconds=5)
        assert agent.snapshot().reachable is False
        ward.down = False
        wait_until(lambda: len(ward.arrivals) >= before + 4, seconds=5)
        agent.stop_.set()
        thread.join(2)


def test_an_unbound_device_assesses_and_reports_but_makes_no_records(ward, tmp_path):
    ward.session_id = None
    with make_agent(ward, tmp_path, seconds=1.0) as agent:
        agent.run()
        figures = agent.snapshot()
    assert figures.frames > 10 and figures.queued == 0 and ward.received == []
    statuses = [body["status"] for _, body in ward.heartbeats if body["status"]]
    assert statuses and {s["kind"] for s in statuses} <= {"pain", "nopain"}


def test_a_revoked_device_stops_within_a_second_with_the_servers_message(ward, tmp_path):
    with make_agent(ward, tmp_path) as agent:
        thread = start(agent)
        wait_until(lambda: ward.heartbeats, seconds=3)
        time.sleep(0.3)
        ward.revoked = True
        revoked_at = time.monotonic()
        thread.join(3)
        stopped_in = time.monotonic() - revoked_at
        assert not thread.is_alive()
    assert stopped_in < 1.0
    assert isinstance(agent.error_, Revoked) and "revoked at 12:00" in str(agent.error_)
    assert agent.predictor.closed == 1 and agent.source.closed == 1


def test_an_unknown_token_stops_at_once(ward, tmp_path):
    started = time.monotonic()
    with make_agent(ward, tmp_path) as agent:
        agent.client_factory = functools.partial(DeviceClient, ward.url, token="npd_" + "u" * 43)
        agent.run()
    assert time.monotonic() - started < 2.0
    assert isinstance(agent.error_, UnknownToken)


@pytest.mark.parametrize("offset", [3600.0, -42.0])
def test_records_carry_server_time(ward, tmp_path, offset):
    ward.clock_offset_s = offset
    with make_agent(ward, tmp_path, seconds=1.0) as agent:
        agent.run()
    made = [ward.stored[i]["time"] for i in ward.arrivals]
    assert made and all(abs(t - (time.time() + offset)) < 3.0 for t in made)


def test_an_agent_releases_its_source_model_and_outbox_however_often_it_runs(ward, tmp_path):
    """Guards: a file handle (the outbox's SQLite and WAL files) or a thread left behind by
    each start; a device restarted for hours would run out of them."""
    import os

    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    def run_once() -> None:
        with make_agent(ward, tmp_path, seconds=0.1) as agent:
            agent.run()
        assert agent.predictor.closed == 1 and agent.source.closed == 1

    run_once()
    files, threads = open_files(), threading.active_count()
    for _ in range(10):
        run_once()
    assert open_files() <= files and threading.active_count() <= threads
