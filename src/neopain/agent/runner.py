"""``Agent``: capture → face → model → smoothing on the device, and what it sends.

Three loops share one stop ``Event``:

- the caller's thread (``run``) assesses frames with ``monitor.pipeline.Assessor``; while the
  device is bound to a session, the frames ``monitor.recording.RecordPolicy`` picks become
  records in the ``Outbox`` (committed before they count as made);
- a heartbeat thread sends what the bed shows every ``heartbeat_s`` seconds, learns the binding
  (session, intervals, snapshot side) from the answers and measures the clock offset on each
  (re)connection and every ``CLOCK_EVERY_S``;
- a sender thread replays the outbox oldest first, removing what the server acknowledged or
  refused, backing off while the server is away.

The last binding and clock offset are kept in the outbox, so an agent started while the
server is away keeps recording for the session it was bound to (the server refuses records
for a session the device was not bound to at their time). A 401 or 403 ``revoked`` answer
stops everything; ``error_`` holds it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from neopain.agent.capture import FrameSource
from neopain.agent.client import DeviceClient, InvalidRequest, Stop, Unreachable
from neopain.agent.clock import ServerClock, measure_offset
from neopain.agent.messages import MODEL_CHARS, record_of, snapshot_jpeg, status_of
from neopain.agent.outbox import Outbox
from neopain.monitor.display import shown_of
from neopain.monitor.pipeline import Assessor, FrameAssessment
from neopain.monitor.recording import RecordPolicy
from neopain.prediction import Predictor

log = logging.getLogger(__name__)

CLOCK_EVERY_S = 60.0
BATCH_RECORDS = 100
BATCH_BYTES = 4_000_000  # under the server's 8 MiB body limit, with room for JSON around it
MAX_BACKOFF_S = 10.0
MIN_INTERVAL_S = 1e-6  # a server interval of 0 ("every frame") as RecordPolicy takes it
HEARTBEAT_TIMEOUT_S = 2.0
RECORDS_TIMEOUT_S = 15.0
JOIN_S = 1.0  # a thread still waiting on the network after a stop is left (it is a daemon)


@dataclass(frozen=True)
class Binding:
    """What the server last said about this device (a heartbeat's answer)."""

    name: str = ""
    session_id: int | None = None
    interval_s: float = 1.0
    heartbeat_s: float = 0.5
    snapshot_side: int = 640


@dataclass(frozen=True)
class AgentFigures:
    """The agent's state for the terminal (``Agent.snapshot``).

    Attributes:
        shown: what the bed shows now (``monitor.display.Shown``); None before the first frame.
        fps: frames assessed per second over the last few seconds.
        frames: frames assessed since the start.
        queued, sent, refused, dropped: records in the outbox; acknowledged by the server;
            refused by it; not kept because the outbox was full.
        outbox_full: whether the outbox holds as much as it may.
        offset_s: server clock minus device clock; None until measured (or read back).
        reachable: whether the last request got an answer; None before the first.
        unreachable_since: device time since which the server has not answered.
        problem: the last error from the server or network ("" when none).
        binding: what the server last said (None: never heard, and nothing kept).
        source_lost_since: device time since which the camera gives no frames.
        refusals: each refusal reason the server gave, with its first detail.
        ended: why the agent stopped ("" while it runs).
    """

    shown: object | None = None
    fps: float = 0.0
    frames: int = 0
    queued: int = 0
    sent: int = 0
    refused: int = 0
    dropped: int = 0
    outbox_full: bool = False
    offset_s: float | None = None
    reachable: bool | None = None
    unreachable_since: float | None = None
    problem: str = ""
    binding: Binding | None = None
    source_lost_since: float | None = None
    refusals: dict[str, str] = field(default_factory=dict)
    ended: str = ""


def _kept_binding(kept: object) -> Binding | None:
    """The binding an earlier start kept in the outbox; None when none (or unreadable)."""
    try:
        return Binding(**kept) if isinstance(kept, dict) else None
    except TypeError:  # written by another version
        return None


class Agent:
    """The edge agent; a context manager that releases the source, predictor and outbox.

    Args:
        source: the frames (``capture.FrameSource``).
        predictor: the model (``prediction.load_predictor``); the agent closes it.
        outbox: the record store; the agent closes it.
        client_factory: ``client_factory(timeout_s=…)`` makes one ``DeviceClient`` per thread
            (e.g. ``functools.partial(DeviceClient, url, token=token)``).
        detector: the face detector's name.
        window: frames the smoothing runs over.
        redetect_every: follow the face from frame to frame and run the detector every this
            many frames (and whenever the track is lost); 0 detects on every frame.
        drain_s: when a video file ends, seconds to wait for the outbox to empty.
    """

    def __init__(self, source: FrameSource, *, predictor: Predictor, outbox: Outbox,
                 client_factory: Callable[[], DeviceClient], detector: str = "mediapipe-short",
                 window: int = 5, redetect_every: int = 10, drain_s: float = 5.0) -> None:
        self.source = source
        self.predictor = predictor
        self.outbox = outbox
        self.client_factory = client_factory
        self.detector = detector
        self.window = window
        self.drain_s = drain_s
        self.stop_ = threading.Event()
        self.error_: Stop | None = None
        self.binding_ = _kept_binding(outbox.get_meta("binding"))
        offset = outbox.get_meta("offset_s")
        self.clock_ = ServerClock(offset_s=float(offset) if offset is not None else 0.0)
        self._lock = threading.Lock()
        self._figures = AgentFigures(offset_s=offset, binding=self.binding_,
                                     queued=outbox.count_)
        self._latest: FrameAssessment | None = None
        self._times: deque[float] = deque(maxlen=30)
        self._policy: RecordPolicy | None = None
        self._policy_session: int | None = None
        self._queued = threading.Event()
        self._threads: list[threading.Thread] = []
        self._assessor = Assessor(predictor, detector=detector, window=window,
                                  redetect_every=redetect_every)

    # --- the terminal's view -------------------------------------------------------------
    def snapshot(self) -> AgentFigures:
        """The current figures (a copy; safe from any thread)."""
        with self._lock:
            fps = 0.0
            if len(self._times) > 1 and time.monotonic() - self._times[-1] < 2.0:
                fps = (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)
            return replace(self._figures, fps=fps, queued=self.outbox.count_,
                           outbox_full=self.outbox.full, source_lost_since=self.source.lost_since_,
                           refusals=dict(self._figures.refusals))

    def _update(self, **changes: object) -> None:
        with self._lock:
            self._figures = replace(self._figures, **changes)

    def _count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._figures = replace(self._figures, **{name: getattr(self._figures, name) + by})

    # --- the loops -------------------------------------------------------------------------
    def run(self) -> None:
        """Assess until ``stop_`` is set, the server stops the device (``error_``) or a video
        file ends (then wait up to ``drain_s`` for the outbox to empty); the threads are joined
        before it returns.

        Raises:
            NeopainError: the source cannot be opened or the model fails on a frame.
        """
        self._threads = [threading.Thread(target=self._guarded, args=(loop,), name=name,
                                          daemon=True)
                         for loop, name in ((self._heartbeats, "agent-heartbeat"),
                                            (self._sender, "agent-sender"))]
        for thread in self._threads:
            thread.start()
        try:
            for time_s, frame in self.source.frames(self.stop_):
                self._assess(time_s, frame)
            if not self.stop_.is_set():
                self._update(ended="the video ended")
                deadline = time.monotonic() + self.drain_s
                while self.outbox.count_ and time.monotonic() < deadline \
                        and not self.stop_.wait(0.05):
                    pass
        finally:
            self._join()

    def _join(self) -> None:
        self.stop_.set()
        deadline = time.monotonic() + JOIN_S
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _guarded(self, loop: Callable[[], None]) -> None:
        """Run a thread's loop; an error after the stop (the outbox closed under a request
        still in flight) ends it quietly: what was not removed is sent again next start."""
        try:
            loop()
        except Exception:
            if not self.stop_.is_set():
                log.exception("agent thread %s failed", threading.current_thread().name)
                self._update(ended="an internal error stopped the agent (see the log)")
                self.stop_.set()

    def _assess(self, time_s: float, frame) -> None:
        result = self._assessor.step(frame, time_s=time_s)
        with self._lock:
            self._latest = result
            self._times.append(time.monotonic())
            self._figures = replace(self._figures, shown=shown_of(result),
                                    frames=self._figures.frames + 1)
        binding = self.binding_
        if binding is None or binding.session_id is None:
            return
        policy = self._policy_for(binding)
        due, snapshot = policy.due(result)
        if not due:
            return
        record = record_of(result, session_id=binding.session_id,
                           time=self.clock_.at_monotonic(result.time_s),
                           snapshot=snapshot_jpeg(frame, side=binding.snapshot_side)
                           if snapshot else None)
        if self.outbox.add(record):
            self._queued.set()
            if snapshot:
                self.outbox.set_meta("last_snapshot", [binding.session_id, result.held_state])
        else:
            self._count("dropped")
            log.warning("outbox full (%d records, %d bytes): record dropped",
                        self.outbox.count_, self.outbox.bytes_)
        policy.recorded(result, snapshot=snapshot)

    def _policy_for(self, binding: Binding) -> RecordPolicy:
        """The record rule of the bound session: a new one when the session changes (its
        first face a snapshot, unless this outbox made that session's last snapshot)."""
        interval_s = max(binding.interval_s, MIN_INTERVAL_S)
        if self._policy is None or self._policy_session != binding.session_id:
            last = self.outbox.get_meta("last_snapshot")
            state = last[1] if isinstance(last, list) and last[0] == binding.session_id \
                else None
            self._policy = RecordPolicy(interval_s=interval_s, last_state=state)
            self._policy_session = binding.session_id
        self._policy.interval_s = interval_s
        return self._policy

    def _status_body(self) -> dict:
        with self._lock:
            result = self._latest
        frames = self.snapshot()
        return {"status": status_of(result, frame_at=None if result is None
                                    else self.clock_.at_monotonic(result.time_s)),
                "queued": frames.queued, "dropped": frames.dropped,
                "fps": round(frames.fps, 2), "model": self.predictor.name[:MODEL_CHARS]}

    def _heartbeats(self) -> None:
        with self.client_factory(timeout_s=HEARTBEAT_TIMEOUT_S) as client:
            next_clock = 0.0
            while not self.stop_.is_set():
                started = time.monotonic()
                try:
                    if started >= next_clock:
                        reading = measure_offset(client.clock)
                        self.clock_.set(reading)
                        self.outbox.set_meta("offset_s", reading.offset_s)
                        self._update(offset_s=reading.offset_s)
                        next_clock = started + CLOCK_EVERY_S
                    self._bind(client.heartbeat(self._status_body()))
                    self._reached()
                except Stop as error:
                    self._fail(error)
                    return
                except (Unreachable, InvalidRequest, KeyError, TypeError, ValueError) as error:
                    self._unreached(error)
                    next_clock = 0.0  # measure again when the server is back
                period = self.binding_.heartbeat_s if self.binding_ else Binding.heartbeat_s
                self.stop_.wait(max(0.0, period - (time.monotonic() - started)))

    def _bind(self, answer: dict) -> None:
        binding = Binding(name=str(answer["name"]),
                          session_id=None if answer["session_id"] is None
                          else int(answer["session_id"]),
                          interval_s=float(answer["interval_s"]),
                          heartbeat_s=min(max(float(answer["heartbeat_s"]), 0.1), 10.0),
                          snapshot_side=max(16, int(answer["snapshot_side"])))
        if binding != self.binding_:
            log.info("binding: %s", binding)
            self.binding_ = binding
            self.outbox.set_meta("binding", asdict(binding))
            self._update(binding=binding)

    def _sender(self) -> None:
        backoff, limit = 0.5, BATCH_RECORDS
        with self.client_factory(timeout_s=RECORDS_TIMEOUT_S) as client:
            while not self.stop_.is_set():
                batch = self.outbox.peek(limit=limit, max_bytes=BATCH_BYTES)
                if not batch:
                    self._queued.wait(0.25)
                    self._queued.clear()
                    continue
                try:
                    answer = client.send_records(batch)
                except Stop as error:
                    self._fail(error)
                    return
                except InvalidRequest as error:
                    # halve the batch until the record whose shape is refused is alone, then
                    # refuse it for good: one bad record cannot hold back the queue
                    if len(batch) > 1:
                        limit = max(1, len(batch) // 2)
                    else:
                        self._answered({"acked": [], "refused": [
                            {"id": batch[0]["id"], "reason": "invalid", "detail": str(error)}]})
                    continue
                except Unreachable as error:
                    self._unreached(error)
                    self._wait_for_server(backoff, answered=error.status is not None)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                backoff, limit = 0.5, BATCH_RECORDS
                self._reached()
                self._answered(answer)

    def _answered(self, answer: dict) -> None:
        acked = [str(i) for i in answer["acked"]]
        refused = [r for r in answer["refused"] if isinstance(r, dict) and "id" in r]
        self.outbox.remove(acked + [str(r["id"]) for r in refused])
        with self._lock:
            reasons = dict(self._figures.refusals)
            for refusal in refused:
                reason = str(refusal.get("reason", "refused"))
                if reason not in reasons:
                    reasons[reason] = str(refusal.get("detail", ""))
                    log.warning("server refused a record (%s): %s", reason, reasons[reason])
            self._figures = replace(self._figures, sent=self._figures.sent + len(acked),
                                    refused=self._figures.refused + len(refused),
                                    refusals=reasons)

    def _wait_for_server(self, seconds: float, *, answered: bool) -> None:
        """Wait ``seconds``; a server that did not answer at all (network) is tried again as
        soon as the heartbeat reaches it, one that answered busy or failing only after the
        back-off."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop_.wait(0.1):
            if not answered and self._figures.reachable:
                return

    def _reached(self) -> None:
        self._update(reachable=True, unreachable_since=None, problem="")

    def _unreached(self, error: Exception) -> None:
        with self._lock:
            since = self._figures.unreachable_since or time.time()
            self._figures = replace(self._figures, reachable=False, unreachable_since=since,
                                    problem=str(error))
        log.info("server not reached: %s", error)

    def _fail(self, error: Stop) -> None:
        self.error_ = error
        self._update(ended=str(error))
        self.stop_.set()

    def close(self) -> None:
        """Stop, join the threads, release the source, detector, predictor and outbox; safe
        to call twice."""
        self._join()
        self._assessor.close()
        self.source.close()
        self.predictor.close()
        self.outbox.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
