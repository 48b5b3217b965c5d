"""A server killed outright (SIGKILL, the out-of-memory killer) cannot stop its chart worker:
the worker holds both ends of its own pipes, never reads an end of file, and idled forever
with 110 MB (CI found one left behind by every server-kill test). It now ends by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SERVER = """
import asyncio, sys, time
from neopain.server.chart_worker import ChartWorker, chart_job
worker = ChartWorker()
asyncio.run(worker.render(chart_job(bytes, 3)))
print(*(p.pid for p in worker._pool._processes.values()), flush=True)
time.sleep(120)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie no one reaps has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_the_chart_worker_ends_when_its_server_is_killed():
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE,
                              text=True)
    try:
        worker = int(server.stdout.readline())
        assert _running(worker)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        deadline = time.monotonic() + 10
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(worker), "the chart worker outlived its server"
    finally:
        server.kill()
        server.wait(10)
