"""Issue 21's acceptance, end to end with the real server and the real agent, each in its own
process: the agent's camera is a video of a real face with two pain episodes (``pain_clip``),
assessed on the device by ``nfcs``. The server is SIGKILLed in the middle of the first episode
and started again five seconds later, while the agent goes on assessing and queueing.

Afterwards the server holds exactly what the agent made: as many records as the agent says
the server acknowledged, none refused, dropped or left queued, none twice, one per interval
across the whole clip (the outage included), and snapshots exactly at the first face and at each
change of state, which follow the clip's episodes. Then revoking the device stops a running
agent within a second, with the server's message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from ports import free_port
from neopain.store import crud
from neopain.store.session import open_store
from neopain.store.tables import Assessment
from pain_clip import write_pain_clip

FPS = 10
SECONDS = 20.0
EPISODES = ((3.0, 8.0), (12.0, 16.0))
INTERVAL_S = 1.0
KILL_AT_S, RESTART_AT_S = 6.0, 11.0
SERVER = """
import sys, uvicorn
from neopain.config import Settings
from neopain.server.app import create_app
settings = Settings(database_url=sys.argv[1], data_dir=sys.argv[2], timeline_interval_s=%s)
uvicorn.run(create_app(settings), host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
""" % INTERVAL_S


class Ward:
    """The server in its own process, on a fixed port, that can be killed and started again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = f"sqlite:///{folder / 'records.sqlite3'}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, self.url,
                                         str(self.folder), str(self.port)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/api/device/clock", timeout=1).status_code == 401:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start within 60 s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture()
def ward(tmp_path):
    ward = Ward(tmp_path)
    with open_store(ward.url)() as db:
        patient = crud.create_patient(db, actor=None, name="Baby Agent")
        device, token = crud.create_device(db, actor=None, name="NICU bed 7")
        session = crud.bind_device(db, device, patient=patient, actor=None)
        ward.session_id, ward.device_id = session.id, device.id
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    ward.token_file = token_file
    ward.start()
    yield ward
    ward.stop()


def agent(ward: Ward, source: Path, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "neopain", "agent", "--source", str(source), "--server",
         ward.base, "--token-file", str(ward.token_file), "--model", "nfcs",
         "--outbox", str(folder / "outbox.sqlite3")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=os.environ | {"NEOPAIN_DATA_DIR": str(folder), "COLUMNS": "200"})


def wait_for_first_record(ward: Ward, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open_store(ward.url)() as db:
            if db.scalar(select(func.count()).select_from(Assessment)):
                return
        time.sleep(0.05)
    raise AssertionError("no record reached the server")


def test_a_server_killed_mid_run_ends_with_exactly_what_the_agent_made(ward, tmp_path):
    clip = write_pain_clip(tmp_path / "clip.mp4", seconds=SECONDS, fps=FPS, episodes=EPISODES)
    running = agent(ward, clip, tmp_path)
    wait_for_first_record(ward)
    started = time.monotonic()  # about the clip's first frame
    time.sleep(KILL_AT_S - (time.monotonic() - started))
    ward.kill()
    time.sleep(RESTART_AT_S - (time.monotonic() - started))
    ward.start()
    output, _ = running.communicate(timeout=90)
    assert running.returncode == 0, output
    said = output.split("stopped: the video ended;")[-1]
    sent = int(said.split("sent ")[1].split(",")[0])
    assert "refused 0, dropped 0; 0 records stay queued" in said, said

    with open_store(ward.url)() as db:
        rows = list(db.scalars(select(Assessment).where(Assessment.device_id == ward.device_id)
                               .order_by(Assessment.time)))
    assert len(rows) == sent > 0  # nothing lost
    assert len({row.record_id for row in rows}) == len(rows)  # nothing twice
    times = [row.time.timestamp() for row in rows]
    t0 = times[0]
    # one record per interval all along the clip, the five seconds without a server included
    assert times[-1] - t0 >= SECONDS - 1.5
    assert max(b - a for a, b in zip(times, times[1:])) <= INTERVAL_S + 0.5
    assert sum(KILL_AT_S < t - t0 < RESTART_AT_S for t in times) >= 4
    # snapshots: the first face and each change of state, as the clip's episodes planned them
    snapshots = [(round(row.time.timestamp() - t0, 1), row.state) for row in rows
                 if row.has_snapshot]
    planned = [(0.0, "nopain")] + [(t, s) for start, end in EPISODES
                                   for t, s in ((start, "pain"), (end, "nopain"))]
    assert [state for _, state in snapshots] == [state for _, state in planned], snapshots
    for (when, _), (planned_at, _) in zip(snapshots, planned):
        assert planned_at <= when <= planned_at + 0.8, (snapshots, planned)
    print(f"{len(rows)} records stored = {sent} acknowledged, "
          f"{sum(KILL_AT_S < t - t0 < RESTART_AT_S for t in times)} made while the server was "
          f"down; snapshots {snapshots}")


def test_revoking_the_device_stops_a_running_agent_within_a_second(ward, tmp_path):
    clip = write_pain_clip(tmp_path / "clip.mp4", seconds=60, fps=FPS, episodes=())
    running = agent(ward, clip, tmp_path)
    wait_for_first_record(ward)
    with open_store(ward.url)() as db:
        crud.revoke_device(db, crud.get_device(db, ward.device_id), actor=None)
    revoked = time.monotonic()
    output, _ = running.communicate(timeout=30)
    stopped_s = time.monotonic() - revoked
    assert running.returncode == 1
    assert "NICU bed 7" in output and "revoked" in output
    assert stopped_s <= 1.0, f"the agent stopped {stopped_s:.2f} s after its revocation"
    print(f"stopped {stopped_s:.2f} s after the revocation")
