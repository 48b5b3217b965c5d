"""``neopain agent`` as a bed device runs it: a small footprint (no torch, FastAPI or server
modules; a first assessment within 2 s), records of a real face sent, and clear errors."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time

import cv2
import numpy as np
import pytest
from cli_invoke import invoke
from skimage import data as skdata

FORBIDDEN = ("torch", "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "captum",
             "pandas", "sklearn", "scipy")
"""Packages a bed device does not need (the server's and the research stack's): importing any of
them fails in the agent's process. (matplotlib stays: mediapipe imports it.)"""


def write_clip(path, *, seconds: float, fps: int):
    """The astronaut's face drifting across a grey 320×240 frame."""
    face = cv2.resize(cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR), (200, 200))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (320, 240))
    for i in range(round(seconds * fps)):
        frame = np.full((240, 320, 3), 128, np.uint8)
        x = 20 + (i * 60 // round(seconds * fps))
        frame[20:220, x:x + 200] = face
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "face.mp4", seconds=2, fps=15)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    from exported_models import top_left_model
    return top_left_model(tmp_path_factory.mktemp("model"))


RUN = textwrap.dedent("""
    import importlib.abc, json, sys, time

    class NotInstalled(importlib.abc.MetaPathFinder):  # as on a device without them
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in FORBIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r} (not on the device)")

    sys.meta_path.insert(0, NotInstalled())
    from neopain.agent import runner
    first = {}
    assess = runner.Agent._assess

    def timed(self, time_s, frame):  # notes when the first frame's assessment was ready
        assess(self, time_s, frame)
        first.setdefault("wall", time.time())
        first.setdefault("cpu", time.process_time())

    runner.Agent._assess = timed
    from neopain.cli.device_app import app  # what the console script runs for "agent"
    code = app(sys.argv[1:], prog_name="neopain", standalone_mode=False)
    loaded = [name for name in FORBIDDEN + ("neopain.server", "neopain.store")
              if name in sys.modules]
    print("RESULT " + json.dumps({"code": code, "loaded": loaded, **first}))
""")


@pytest.mark.slow
def test_the_agent_needs_no_torch_or_server_starts_fast_and_sends_a_real_face(
        ward, token_file, clip, onnx_model, tmp_path):
    """Guards: an import of torch, FastAPI or the server creeping into the device's path (the
    device has none installed), and a start slower than 2 s."""
    launched = time.time()
    done = subprocess.run(
        [sys.executable, "-c", f"FORBIDDEN = {FORBIDDEN!r}\n" + RUN, "agent", "--source",
         str(clip), "--server", ward.url, "--token-file", str(token_file), "--model",
         str(onnx_model),
         "--outbox", str(tmp_path / "outbox.sqlite3"), "--threads", "1"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "NEOPAIN_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout + done.stderr
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["loaded"] == [], f"the agent imported {result['loaded']}"
    assert result["code"] in (0, None), done.stdout + done.stderr
    records = [ward.stored[i] for i in ward.arrivals]
    assert records and records[0]["snapshot"] and records[0]["model"]
    # from the launch to the first assessed frame: under 2 s of the process's CPU time
    # (wall time on this shared test machine depends on what else runs; printed)
    assert result["cpu"] < 2.0, f"{result['cpu']:.2f} s of CPU before the first assessment"
    snapshot = cv2.imdecode(np.frombuffer(base64.b64decode(records[0]["snapshot"]), np.uint8),
                            cv2.IMREAD_COLOR)
    assert snapshot is not None and max(snapshot.shape[:2]) <= ward.snapshot_side
    held = ["uncertain" if r["uncertain"] else r["state"] for r in records if r["snapshot"]]
    assert all(a != b for a, b in zip(held, held[1:]))  # a snapshot only at a change of state
    assert "0 records stay queued" in " ".join(done.stdout.split())
    print(f"first assessment after {result['wall'] - launched:.2f} s ({result['cpu']:.2f} s "
          f"CPU); {len(records)} records")


def test_a_token_file_others_can_read_is_refused(ward, token_file, clip):
    token_file.chmod(0o640)
    code, out = invoke("agent", "--source", str(clip), "--server", ward.url, "--token-file",
                       str(token_file))
    assert code == 1 and "error:" in out and f"chmod 600 {token_file}" in out


@pytest.mark.parametrize("source, says", [
    ("missing.mp4", "--source missing.mp4: "),
    ("97", "no camera opens at index 97"),
])
def test_a_source_that_cannot_be_opened_is_named(ward, token_file, source, says):
    code, out = invoke("agent", "--source", source, "--server", ward.url, "--token-file",
                       str(token_file))
    assert code == 1 and "error:" in out and says in out


@pytest.mark.slow
def test_a_revoked_device_exits_1_with_the_servers_message(ward, token_file, clip, onnx_model,
                                                           tmp_path):
    ward.revoked = True
    code, out = invoke("agent", "--source", str(clip), "--server", ward.url, "--token-file",
                       str(token_file), "--model", str(onnx_model), "--outbox",
                       str(tmp_path / "o.sqlite3"), seconds=30)
    assert code == 1 and "error: device 'bed 3' was revoked at 12:00" in out


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_within_a_second_and_says_what_stays_queued(ward, token_file, onnx_model,
                                                                 tmp_path, stop):
    """Guards: Ctrl-C leaving the agent running (or hanging) for more than a second.

    It failed in CI (pytest -n 2 on a loaded 2-core machine) with the process still alive 10 s
    after the SIGINT: the Ctrl-C interrupted the CLI's ``Thread.join`` of the run thread, which
    CPython 3.11 then takes for stopped (bpo-45274), so the CLI freed the model and the outbox
    under the frame being assessed, more likely the slower the frames (test_runner.py's
    ``test_the_terminal_returns_only_once_the_run_has_ended_after_ctrl_c`` and
    ``test_close_waits_for_the_frame_being_assessed_before_freeing_the_model``). The promise
    is unchanged: stopped within a second of the SIGINT; a slow start under load is waited for
    (the SIGINT is sent once records arrive, long after the agent's start), and a hang shows
    the agent's output. The suite may run with SIGINT ignored (a background job of a script,
    as CI's was): the agent takes Ctrl-C back, and SIGTERM stops it the same way."""
    clip = write_clip(tmp_path / "long.mp4", seconds=40, fps=5)
    agent = subprocess.Popen(
        [sys.executable, "-m", "neopain", "agent", "--source", str(clip), "--server", ward.url,
         "--token-file", str(token_file), "--model", str(onnx_model), "--outbox",
         str(tmp_path / "outbox.sqlite3")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": "/usr/bin:/bin", "NEOPAIN_DATA_DIR": str(tmp_path), "HOME": str(tmp_path),
             "COLUMNS": "300"})
    lines: list[tuple[float, str]] = []  # (when read, line): the agent's words as they come
    reader = threading.Thread(target=lambda: lines.extend(
        (time.monotonic(), line) for line in agent.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30  # a start on a loaded machine
        while not ward.arrivals:
            assert time.monotonic() < deadline and agent.poll() is None, "no record arrived"
            time.sleep(0.05)
        ward.down = True  # what is made from now on stays queued
        time.sleep(1.5)
        assert agent.poll() is None, "the agent ended before Ctrl-C"
        agent.send_signal(stop)  # systemctl stop sends SIGTERM
        interrupted = time.monotonic()
        try:
            agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            agent.kill()
            reader.join(5)
            pytest.fail("still running 10 s after Ctrl-C; its output:\n"
                        + "".join(line for _, line in lines)[-3000:])
        reader.join(5)
    finally:
        agent.kill()
    out = "".join(line for _, line in lines)
    # stopped: the camera, model and outbox closed and the last line said (the interpreter's
    # own exit afterwards, up to a second on a loaded machine, is not the agent running)
    said = [when for when, line in lines if "stay queued" in line]
    stopped_in = (said[0] if said else float("inf")) - interrupted
    from neopain.agent.outbox import Outbox
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        queued = outbox.count_
    assert agent.returncode == 0, out
    assert stopped_in < 1.0, f"{stopped_in:.2f} s"
    assert queued > 0 and f"{queued} records stay queued" in " ".join(out.split())


def test_plain_http_to_another_machine_is_warned_of_at_the_start(token_file):
    """Guards: the bearer token sent unencrypted over the network without a word (the agent
    still starts: a ward may have reasons)."""
    code, out = invoke("agent", "--source", "missing.mp4", "--server",
                       "http://ward.example:8000", "--token-file", str(token_file))
    assert "warning: --server http://ward.example:8000 is plain http: the token travels " \
           "unencrypted" in out
    assert code == 1 and "--source missing.mp4: " in out  # it went on (to the source)
    code, out = invoke("agent", "--source", "missing.mp4", "--server", "http://127.0.0.1:9",
                       "--token-file", str(token_file))
    assert "unencrypted" not in out


STUCK = textwrap.dedent("""
    import threading, time
    from neopain.agent.runner import AgentFigures
    from neopain.cli.agent import _watch

    class Stuck:  # a camera read that never returns, whatever the stop says
        stop_ = threading.Event()

        def run(self):
            time.sleep(60)

        def snapshot(self):
            return AgentFigures()

    print("READY", flush=True)
    _watch(Stuck())
""")


def test_a_second_ctrl_c_leaves_at_once_when_the_run_cannot_end(tmp_path):
    """Guards: the first Ctrl-C waits for the frame being assessed (never freeing the model
    under it); a run that cannot end (a camera read stuck) must not make the agent unkillable
    by Ctrl-C."""
    agent = subprocess.Popen([sys.executable, "-c", STUCK], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        assert agent.stdout.readline().strip() == "READY"
        time.sleep(0.3)
        agent.send_signal(signal.SIGINT)
        time.sleep(2.5)
        assert agent.poll() is None  # still waiting for the run, as it should
        agent.send_signal(signal.SIGINT)
        second = time.monotonic()
        out, _ = agent.communicate(timeout=10)
        left_in = time.monotonic() - second
    finally:
        agent.kill()
    assert agent.returncode == 130 and left_in < 1.0, out
    said = " ".join(out.split())
    assert "Ctrl-C again leaves at once" in said and "leaving at once" in said
