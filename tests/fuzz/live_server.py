"""A real ``neopain serve`` for fuzzing: loopback only, a temporary data folder, one admin.

``LiveServer`` starts the server in its own process group (killed on exit, Ctrl-C included),
logs in over HTTP, and offers what the fuzzers need: a logged-in ``httpx.Client``, the login
cookie for WebSockets, the server log written since the last look, and ``Memory``, which polls
the server's resident memory so each input's peak can be told.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from ports import free_port

USERNAME = "fuzz"
PASSWORD = "fuzz-password-long-enough"


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's VmRSS or VmHWM in MB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(rf"{field}:\s+(\d+)", status)
    return int(found.group(1)) / 1024 if found else 0.0


class Memory:
    """Polls a process's resident memory every ``interval_s`` on a thread."""

    def __init__(self, pid: int, *, interval_s: float = 0.02) -> None:
        self.pid = pid
        self.baseline_mb = rss_mb(pid)
        self._window_mb = self.baseline_mb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval_s,), daemon=True)
        self._thread.start()

    def _poll(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self._window_mb = max(self._window_mb, rss_mb(self.pid))

    @contextmanager
    def window(self):
        """Yields a dict whose ``peak_mb`` is, afterwards, the growth over the RSS at entry."""
        start = self._window_mb = rss_mb(self.pid)
        result = {"peak_mb": 0.0}
        try:
            yield result
        finally:
            self._window_mb = max(self._window_mb, rss_mb(self.pid))
            result["peak_mb"] = self._window_mb - start

    def peak_growth_mb(self) -> float:
        """The server's high-water mark over its RSS when polling started."""
        return max(rss_mb(self.pid, "VmHWM"), self._window_mb) - self.baseline_mb

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class LiveServer:
    """``neopain serve`` on 127.0.0.1 with ``NEOPAIN_DATA_DIR=folder`` and the admin ``fuzz``.

    Args:
        folder: data folder and log file (``server.log``).
        memory_mb: the server's address-space limit (a runaway bomb fails there instead of
            taking the machine's memory); None for no limit.
        timeout_s: the client's timeout (an answer later than this is a hang).
    """

    def __init__(self, folder: Path, *, memory_mb: int | None = 12_000,
                 timeout_s: float = 10.0) -> None:
        self.folder = Path(folder)
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.folder / "server.log"
        self.process: subprocess.Popen | None = None
        self.client: httpx.Client | None = None
        self.memory: Memory | None = None
        self._log_at = 0

    def __enter__(self) -> LiveServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "NEOPAIN_DATA_DIR": str(self.folder)}
        script = str(Path(sys.executable).parent / "neopain")
        subprocess.run([script, "users", "create", "--username", USERNAME, "--role", "admin",
                        "--password-stdin"], input=PASSWORD + "\n", text=True, env=env,
                       check=True, capture_output=True, timeout=120)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [script, "serve", "--host", "127.0.0.1", "--port", str(self.port)], env=env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        if self.memory_mb is not None:
            limit = self.memory_mb * 2**20
            resource.prlimit(self.process.pid, resource.RLIMIT_AS, (limit, limit))
        try:
            self._wait_until_up()
            self.client = self._login()
        except BaseException:
            self.__exit__()
            raise
        self.memory = Memory(self.process.pid)
        return self

    def _wait_until_up(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"neopain serve exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/api/openapi.json", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"neopain serve did not answer within {timeout_s:g} s")

    def _login(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=self.timeout_s)
        response = client.post("/api/login", json={"username": USERNAME, "password": PASSWORD})
        response.raise_for_status()
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        return client

    def cookie(self) -> str:
        """The login cookie as a ``Cookie`` header value."""
        return "; ".join(f"{name}={value}" for name, value in self.client.cookies.items())

    def new_log(self) -> str:
        """The server log written since the last call."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_at)
            data = log.read()
        self._log_at += len(data)
        return data.decode("utf-8", "replace")

    def new_session(self, patient_id: int) -> int:
        """A new live session of the patient."""
        response = self.client.post(f"/api/patients/{patient_id}/sessions")
        response.raise_for_status()
        return response.json()["id"]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __exit__(self, *_) -> None:
        if self.memory is not None:
            self.memory.close()
        if self.client is not None:
            self.client.close()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
