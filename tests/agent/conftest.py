"""A fake ward server speaking the device protocol (docs/agent.md), in a thread of the test.

``FakeWard`` stores records by id (a record sent twice is stored once and acknowledged both
times), answers heartbeats with its binding, and can be taken ``down`` (connections dropped
without an answer, as a lost network looks), made to ``lose_answers`` to records it stored,
``revoked`` (403) or ``busy`` (503, with ``retry_after`` its Retry-After header); it can be
made slow to answer records (``slow_records_s``), refuse records for their time
(``refuse_time``) or refuse the next ``invalid_requests`` records requests whole with a 422
whose ``detail`` is ``invalid_detail`` (FastAPI's list of problems). ``requests`` logs each
request as ``(monotonic time, route)``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TOKEN = "npd_" + "t" * 43


class FakeWard:
    def __init__(self, *, session_id: int | None = 7, interval_s: float = 0.2,
                 heartbeat_s: float = 0.5, snapshot_side: int = 96,
                 clock_offset_s: float = 0.0) -> None:
        self.token = TOKEN
        self.session_id = session_id
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self.snapshot_side = snapshot_side
        self.clock_offset_s = clock_offset_s
        self.down = self.revoked = self.busy = self.lose_answers = False
        self.retry_after: str | None = None
        self.slow_records_s = 0.0
        self.refuse_time = False
        self.invalid_requests = 0
        self.foreign_records: list[int] = []  # with invalid_requests: a 403 naming these
        self.invalid_detail: list = [{"loc": ["body"], "msg": "Field required",
                                      "type": "missing"}]
        self.requests: list[tuple[float, str]] = []
        self.stored: dict[str, dict] = {}
        self.arrivals: list[str] = []  # ids in the order first stored
        self.received: list[str] = []  # every id received, repeats included
        self.heartbeats: list[tuple[float, dict]] = []  # (monotonic time, body)
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, route: str, auth: str, body: dict | None) -> tuple[int, dict]:
        if auth != f"Bearer {self.token}":
            return 401, {"detail": "no device has this token", "reason": "unknown_token"}
        if self.revoked:
            return 403, {"detail": "device 'bed 3' was revoked at 12:00 by admin; ask an "
                                   "administrator for a new token", "reason": "revoked"}
        if self.busy:
            return 503, {"detail": "busy", "reason": "busy"}
        if route == "records" and self.invalid_requests > 0:
            self.invalid_requests -= 1
            if self.foreign_records:  # as the server answers records for another bed
                return 403, {"detail": "this device was never bound to session 9",
                             "reason": "foreign_session", "records": self.foreign_records}
            return 422, {"detail": self.invalid_detail}
        now = time.time() + self.clock_offset_s
        if route == "clock":
            return 200, {"server_time": now}
        if route == "heartbeat":
            with self.lock:
                self.heartbeats.append((time.monotonic(), body))
            return 200, {"server_time": now, "name": "bed 3", "session_id": self.session_id,
                         "interval_s": self.interval_s, "heartbeat_s": self.heartbeat_s,
                         "snapshot_side": self.snapshot_side}
        acked, refused = [], []
        with self.lock:
            for record in body["records"]:
                self.received.append(record["id"])
                if self.refuse_time:
                    refused.append({"id": record["id"], "reason": "invalid",
                                    "detail": "time lies in the future of the server's clock"})
                    continue
                if record["session_id"] != self.session_id:
                    refused.append({"id": record["id"], "reason": "not_bound",
                                    "detail": f"not bound to session {record['session_id']}"})
                    continue
                if record["id"] not in self.stored:
                    self.stored[record["id"]] = record
                    self.arrivals.append(record["id"])
                acked.append(record["id"])
        if self.lose_answers:
            return 0, {}  # stored, but the answer is lost on the way back
        return 200, {"acked": acked, "refused": refused}

    def _handler(self):
        ward = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if ward.down:  # as a lost network: no answer, the connection dropped
                    self.close_connection = True
                    return
                route = self.path.removeprefix("/api/device/")
                with ward.lock:
                    ward.requests.append((time.monotonic(), route))
                if route == "records" and ward.slow_records_s:
                    time.sleep(ward.slow_records_s)  # nothing stored: as a server too busy
                    self.close_connection = True
                    return
                status, reply = ward._answer(route, self.headers.get("Authorization", ""),
                                             json.loads(raw) if raw else None)
                if status == 0:
                    self.close_connection = True
                    return
                data = json.dumps(reply).encode()
                self.send_response(status)
                if status == 503 and ward.retry_after is not None:
                    self.send_header("Retry-After", ward.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

        return Handler


@pytest.fixture
def ward():
    server = FakeWard()
    yield server
    server.close()


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path
