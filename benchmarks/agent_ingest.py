"""The server ingesting many bed devices at once (issue 21): N simulated agents, each sending
one assessment a second (every tenth with a snapshot, as a change of state does), a heartbeat
every half second, as ``neopain agent`` does over the device API.

The server is ``neopain serve``'s app under uvicorn in its own process (``bench_beds.SERVER``),
its records in SQLite in a temporary folder, with N devices registered and bound to N
patients' live sessions. Each simulated agent keeps an in-memory outbox: a record leaves it only
when the server acknowledges it, so a refused or failed request is sent again, as the agent's
SQLite outbox does. At the end the records table is read back: every record made is there
exactly once (0 lost, 0 duplicated), else the run fails.

Ingest latency is one records request's round trip. Target: p95 <= 100 ms, 0 lost.

    python benchmarks/agent_ingest.py [--agents 64] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import httpx
import numpy as np
from skimage import data
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_beds import SERVER, free_port  # noqa: E402

from neopain.agent.messages import snapshot_jpeg  # noqa: E402
from neopain.server.devices import SNAPSHOT_SIDE  # noqa: E402
from neopain.store import crud  # noqa: E402
from neopain.store.session import open_store  # noqa: E402
from neopain.store.tables import Assessment  # noqa: E402

TARGET_P95_MS = 100.0
SNAPSHOT_EVERY = 10


class SimulatedAgent:
    """One device: its token, session, records made, and the latencies it saw."""

    def __init__(self, number: int, *, token: str, session_id: int, snapshot: str) -> None:
        self.number, self.token, self.session_id, self.snapshot = number, token, session_id, \
            snapshot
        self.made: list[str] = []
        self.outbox: list[dict] = []
        self.ingest_ms: list[float] = []
        self.beat_ms: list[float] = []
        self.failures = 0
        self.refused = 0

    def make_record(self) -> None:
        record_id = uuid.uuid4().hex
        state = "pain" if (len(self.made) // SNAPSHOT_EVERY) % 2 else "nopain"
        self.made.append(record_id)
        self.outbox.append({
            "id": record_id, "session_id": self.session_id, "time": time.time(),
            "label": state, "prob_pain": 0.8 if state == "pain" else 0.2, "smoothed": 0.5,
            "state": state, "uncertain": False, "changed": len(self.made) % SNAPSHOT_EVERY == 1,
            "face_box": [10, 20, 200, 220], "latency_ms": 8.0, "model": "simulated",
            "snapshot": self.snapshot if len(self.made) % SNAPSHOT_EVERY == 1 else None})

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict,
                    times_ms: list[float]) -> dict | None:
        """POST as this device, its round trip noted in ``times_ms``; the answer, or None
        (counted as a failure) when there is no 200."""
        started = time.perf_counter()
        try:
            reply = await client.post(path, json=body,
                                      headers={"Authorization": f"Bearer {self.token}"})
        except httpx.HTTPError:
            self.failures += 1
            return None
        times_ms.append((time.perf_counter() - started) * 1000)
        if reply.status_code != 200:
            self.failures += 1
            return None
        return reply.json()

    async def send(self, client: httpx.AsyncClient) -> None:
        body = await self._post(client, "/api/device/records",
                                {"records": self.outbox[:100]}, self.ingest_ms)
        if body is None:
            return
        done = set(body["acked"]) | {r["id"] for r in body["refused"]}
        self.refused += len(body["refused"])
        self.outbox = [r for r in self.outbox if r["id"] not in done]

    async def beat(self, client: httpx.AsyncClient) -> None:
        await self._post(client, "/api/device/heartbeat", {
            "status": {"kind": "nopain", "smoothed": 0.2, "confidence": 0.8,
                       "held_state": "nopain", "frame_at": time.time()},
            "queued": len(self.outbox), "model": "simulated"}, self.beat_ms)


async def run_agent(agent: SimulatedAgent, client: httpx.AsyncClient, *, until: float) -> None:
    await asyncio.sleep(random.uniform(0, 1))  # agents start at different moments
    next_record = next_beat = time.monotonic()
    while time.monotonic() < until:
        now = time.monotonic()
        if now >= next_record:
            agent.make_record()
            await agent.send(client)
            next_record += 1.0
        if now >= next_beat:
            await agent.beat(client)
            next_beat += 0.5
        await asyncio.sleep(max(0.0, min(next_record, next_beat) - time.monotonic()))
    for _ in range(20):  # what is left in the outbox
        if not agent.outbox:
            break
        await agent.send(client)


def register(url: str, agents: int) -> list[tuple[str, int]]:
    """``agents`` devices, each bound to its own patient's live session: (token, session id)."""
    out = []
    with open_store(url)() as db:
        for number in range(agents):
            patient = crud.create_patient(db, actor=None, name=f"Bench bed {number + 1}")
            device, token = crud.create_device(db, actor=None, name=f"bench bed {number + 1}")
            session = crud.bind_device(db, device, patient=patient, actor=None)
            out.append((token, session.id))
    return out


async def wait_ready(base: str, timeout_s: float = 60.0) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if (await client.get("/api/device/clock")).status_code == 401:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the server at {base} did not answer within {timeout_s:.0f} s")


async def drive(base: str, devices: list[tuple[str, int]], seconds: float
                ) -> list[SimulatedAgent]:
    snapshot = snapshot_jpeg(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR),
                             side=SNAPSHOT_SIDE)  # as the agent makes it
    agents = [SimulatedAgent(n, token=token, session_id=session_id, snapshot=snapshot)
              for n, (token, session_id) in enumerate(devices)]
    limits = httpx.Limits(max_connections=2 * len(agents),
                          max_keepalive_connections=2 * len(agents))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as client:
        until = time.monotonic() + seconds
        await asyncio.gather(*(run_agent(agent, client, until=until) for agent in agents))
    return agents


def ingest_figures(*, agents: int = 64, seconds: float = 30.0, model: str = "nfcs") -> dict:
    """Run the benchmark; its figures (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="neopain-ingest-") as folder:
        url = f"sqlite:///{Path(folder) / 'records.sqlite3'}"
        devices = register(url, agents)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, url, model, folder, str(port),
                                   json.dumps({"session_idle_s": 3600})])
        try:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(wait_ready(base))
            simulated = asyncio.run(drive(base, devices, seconds))
        finally:
            server.terminate()
            server.wait(timeout=30)
        with open_store(url)() as db:
            rows = db.execute(select(Assessment.device_id, Assessment.record_id)).all()
            snapshots = db.scalar(select(func.count()).select_from(Assessment)
                                  .where(Assessment.has_snapshot))
    made = {record_id for agent in simulated for record_id in agent.made}
    stored = [record_id for _, record_id in rows]
    ingest = np.array([ms for agent in simulated for ms in agent.ingest_ms])
    beats = np.array([ms for agent in simulated for ms in agent.beat_ms])
    return {
        "agents": agents, "seconds": seconds, "records_made": len(made),
        "records_stored": len(stored), "snapshots_stored": int(snapshots),
        "lost": len(made - set(stored)), "duplicated": len(stored) - len(set(stored)),
        "refused": sum(agent.refused for agent in simulated),
        "failed_requests": sum(agent.failures for agent in simulated),
        "ingest_p50_ms": float(np.percentile(ingest, 50)),
        "ingest_p95_ms": float(np.percentile(ingest, 95)),
        "ingest_max_ms": float(ingest.max()),
        "heartbeat_p95_ms": float(np.percentile(beats, 95)),
        "requests_per_s": (len(ingest) + len(beats)) / seconds,
        "met": bool(np.percentile(ingest, 95) <= TARGET_P95_MS and not made - set(stored)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    print(json.dumps(ingest_figures(agents=args.agents, seconds=args.seconds), indent=2))


if __name__ == "__main__":
    main()
