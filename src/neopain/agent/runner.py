"""``Agent``: capture → face → model → smoothing on the device, and what it sends.

Three loops share one stop ``Event``:

- the caller's thread (``run``) assesses frames with ``monitor.pipeline.Assessor``; while the
  device is bound to a session, the frames ``monitor.recording.RecordPolicy`` picks become
  records in the ``Outbox`` (committed before they count as made);
- a heartbeat thread sends what the bed shows every ``heartbeat_s`` seconds, learns the binding
  (session, intervals, snapshot side) from the answers and measures the clock offset on each
  (re)connection and every ``CLOCK_EVERY_S``;
- a sender thread replays the outbox oldest first, removing what the server acknowledged or
  refused, backing off while the server is away or busy (a 503, honouring its Retry-After, or
  a request that timed out while the heartbeat gets answers).

Records carry server time: the frame's monotonic time plus the offset measured in this boot
(``clock.ServerClock``). A record made before the first measurement of the boot is kept
unstamped with its monotonic time and stamped by the sender once the clock is measured.

The last binding and clock offset are kept in the outbox (the offset with the boot's id: used
again only in the same boot), so an agent started while the server is away keeps recording for
the session it was bound to (the server refuses records for a session the device was not bound
to at their time). A 401 or 403 ``revoked`` answer stops everything; ``error_`` holds it. An
outbox that cannot be written (the disk is full) drops the records, counted, and says why.
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
from neopain.agent.outbox import Outbox, OutboxError
from neopain.monitor.display import shown_of
from neopain.monitor.pipeline import Assessor, FrameAssessment
from neopain.monitor.recording import RecordPolicy
from neopain.prediction import Predictor

log = logging.getLogger(__name__)

CLOCK_EVERY_S = 60.0
BATCH_RECORDS = 100
BATCH_BYTES = 4_000_000  # under the server's 8 MiB body limit, with room for JSON around it
MAX_BACKOFF_S = 10.0
HEARTBEAT_TIMEOUT_S = 2.0
RECORDS_TIMEOUT_S = 20.0
"""A records request unanswered this long means a server too busy to answer (its database
waiting on a lock): backed off from like a 503, and sent again later (the server stores a
record once, so one it stored meanwhile is only acknowledged)."""
MARK = "_at"
"""The key of an unstamped record's monotonic time and boot (``ServerClock.mark``), never sent."""
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
            refused by it; not kept because the outbox was full or could not be written.
        refused_time: of ``refused``, those refused for their time (the device's clock was
            wrong when they were stamped).
        unstamped: records held until the clock is measured in this boot (of the next batch,
            so at most 100).
        outbox_full: whether the outbox holds as much as it may.
        outbox_error: why the outbox cannot be written now ("" while it can).
        request_refused: the server's words when it refused a records request that names no
            record (the records stay queued); "" since the next accepted one.
        offset_s: server clock minus the device's wall clock at the last measurement of this
            boot (records are stamped from the monotonic clock); None until measured.
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
    refused_time: int = 0
    unstamped: int = 0
    outbox_full: bool = False
    outbox_error: str = ""
    request_refused: str = ""
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
        self.clock_ = ServerClock()
        self.clock_.restore(outbox.get_meta("clock"))
        self._lock = threading.Lock()
        self._figures = AgentFigures(binding=self.binding_)
        self._running = threading.Lock()  # held while run() is in progress
        self._latest: FrameAssessment | None = None
        self._times: deque[float] = deque(maxlen=30)
        self._policy: RecordPolicy | None = None
        self._policy_session: int | None = None
        self._queued = threading.Event()
        self._measured = threading.Event()  # the clock has a reading of this boot
        if self.clock_.reading_ is not None:
            self._measured.set()
        self._threads: list[threading.Thread] = []
        self._join_by: float | None = None
        self._assessor = Assessor(predictor, detector=detector, window=window,
                                  redetect_every=redetect_every)

    # --- the terminal's view -------------------------------------------------------------
    def snapshot(self) -> AgentFigures:
        """The current figures (a copy; safe from any thread)."""
        with self._lock:
            fps = 0.0
            if len(self._times) > 1 and time.monotonic() - self._times[-1] < 2.0:
                fps = (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)
            latest = self._latest
            return replace(self._figures, fps=fps, queued=self.outbox.count_,
                           outbox_full=self.outbox.full, source_lost_since=self.source.lost_since_,
                           refusals=dict(self._figures.refusals),
                           shown=None if latest is None else shown_of(latest),
                           offset_s=None if self.clock_.reading_ is None
                           else self.clock_.wall_offset_s)

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
        with self._running:
            self._run()

    def _run(self) -> None:
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
        """Stop and join the threads for at most ``JOIN_S`` in all (``run``'s end and
        ``close`` share that time: a thread still waiting on the network is left, a daemon)."""
        self.stop_.set()
        if self._join_by is None:
            self._join_by = time.monotonic() + JOIN_S
        for thread in self._threads:
            thread.join(max(0.0, self._join_by - time.monotonic()))

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
            self._figures = replace(self._figures, frames=self._figures.frames + 1)
        binding = self.binding_
        if binding is None or binding.session_id is None:
            return
        policy = self._policy_for(binding)
        due, snapshot = policy.due(result)
        if not due:
            return
        stamp = self.clock_.at_monotonic(result.time_s)
        record = record_of(result, session_id=binding.session_id, time=stamp,
                           snapshot=snapshot_jpeg(frame, side=binding.snapshot_side)
                           if snapshot else None)
        if stamp is None:  # the clock is not measured in this boot yet: stamped when it is
            record[MARK] = self.clock_.mark(result.time_s)
        try:
            kept = self.outbox.add(record)
        except OutboxError as error:
            self._count("dropped")
            self._outbox_failed(error)
            return  # not saved: the policy still owes this record (a snapshot next frame)
        if not kept:
            self._count("dropped")
            log.warning("outbox full (%d records, %d bytes): record dropped",
                        self.outbox.count_, self.outbox.bytes_)
            return
        if self._figures.outbox_error:
            self._update(outbox_error="")
        self._queued.set()
        policy.recorded(result, snapshot=snapshot)  # only once saved (RecordPolicy's contract)
        if snapshot:
            try:
                self.outbox.set_meta("last_snapshot", [binding.session_id, result.held_state])
            except OutboxError as error:
                self._outbox_failed(error)

    def _outbox_failed(self, error: OutboxError) -> None:
        reason = getattr(error, "reason", str(error))
        if self._figures.outbox_error != reason:
            log.warning("%s", error)
        self._update(outbox_error=reason)

    def _policy_for(self, binding: Binding) -> RecordPolicy:
        """The record rule of the bound session: a new one when the session changes (its
        first face a snapshot, unless this outbox made that session's last snapshot)."""
        interval_s = max(binding.interval_s, 0.0)  # 0: every frame
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
                        self._measured.set()
                        self._queued.set()  # unstamped records can be stamped now
                        next_clock = started + CLOCK_EVERY_S
                        self._keep("clock", self.clock_.kept())
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
            self._update(binding=binding)
            self._keep("binding", asdict(binding))

    def _keep(self, key: str, value: object) -> None:
        """Keep a value in the outbox for the next start; one that cannot be written is said
        (the agent goes on without it)."""
        try:
            self.outbox.set_meta(key, value)
        except OutboxError as error:
            self._outbox_failed(error)

    def _sender(self) -> None:
        backoff = 0.5
        with self.client_factory(timeout_s=RECORDS_TIMEOUT_S) as client:
            while not self.stop_.is_set():
                try:
                    peeked = self.outbox.peek(limit=BATCH_RECORDS, max_bytes=BATCH_BYTES)
                except OutboxError as error:
                    self._outbox_failed(error)
                    self.stop_.wait(backoff)
                    continue
                batch = self._stamped(peeked)
                if not batch:
                    # the oldest record waits for the clock's first reading: nothing can go
                    # before it, so wait for that, not for every new record (a full peek each)
                    waited = self._measured if peeked else self._queued
                    waited.wait(0.25 if waited is self._queued else 1.0)
                    self._queued.clear()
                    continue
                try:
                    answer = client.send_records(batch)
                except Stop as error:
                    self._fail(error)
                    return
                except InvalidRequest as error:
                    if error.record_indices:  # the server named the records it refuses
                        self._answer_or_wait({"acked": [], "refused": [
                            {"id": batch[i]["id"], "reason": error.reason, "detail": str(error)}
                            for i in error.record_indices if i < len(batch)]}, backoff)
                        continue
                    # not about a record (another server version, a proxy changing the body):
                    # keep them all, say so, and try again after the back-off
                    if self._figures.request_refused != str(error):
                        log.warning("records request refused, records kept: %s", error)
                    self._update(request_refused=str(error))
                    self._wait_for_server(backoff, answered=True)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                except Unreachable as error:
                    # busy: the server answered (503, 500 …), or timed out while its heartbeat
                    # answers; away: no answer from it at all (retried once it answers again)
                    busy = error.status is not None or (error.timed_out
                                                        and bool(self._figures.reachable))
                    self._unreached(error)
                    self._wait_for_server(max(backoff, error.retry_after_s or 0.0),
                                          answered=busy)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                backoff = 0.5
                self._reached()
                if self._figures.request_refused:
                    self._update(request_refused="")
                self._answer_or_wait(answer, backoff)

    def _answer_or_wait(self, answer: dict, backoff: float) -> None:
        try:
            self._answered(answer)
        except OutboxError as error:  # sent again later: the server stores a record once
            self._outbox_failed(error)
            self.stop_.wait(backoff)

    def _stamped(self, batch: list[dict]) -> list[dict]:
        """The records of ``batch`` before the first that cannot be stamped yet (its clock not
        measured: they stay in order), each with its server time and without ``MARK``."""
        ready = []
        for record in batch:
            mark = record.pop(MARK, None)
            if mark is not None:
                stamp, guess = self.clock_.stamp(mark)
                if stamp is None:
                    break
                record["time"] = stamp
                if guess:
                    log.info("record %s of an earlier boot stamped from its wall-clock time",
                             record["id"])
            elif record.get("time") is None:
                break
            ready.append(record)
        held = len(batch) - len(ready)
        if held != self._figures.unstamped:
            self._update(unstamped=held)
        return ready

    def _answered(self, answer: dict) -> None:
        acked = [str(i) for i in answer["acked"]]
        refused = [r for r in answer["refused"] if isinstance(r, dict) and "id" in r]
        self.outbox.remove(acked + [str(r["id"]) for r in refused])
        with self._lock:
            reasons = dict(self._figures.refusals)
            for_time = 0
            for refusal in refused:
                reason = str(refusal.get("reason", "refused"))
                detail = str(refusal.get("detail", ""))
                if reason == "invalid" and "time" in detail.lower().split(":")[0]:
                    for_time += 1  # stamped by a clock the server disagrees with
                    reason = "invalid (time)"
                if reason not in reasons:
                    reasons[reason] = detail
                    log.warning("server refused a record (%s): %s", reason, detail)
            self._figures = replace(self._figures, sent=self._figures.sent + len(acked),
                                    refused=self._figures.refused + len(refused),
                                    refused_time=self._figures.refused_time + for_time,
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
        """Stop, wait for ``run`` to end (it checks the stop between frames: at most the frame
        being assessed), join the threads, release the source, detector, predictor and outbox;
        safe to call twice. Nothing a running step uses is freed under it."""
        self.stop_.set()
        with self._running:
            pass
        self._join()
        self._assessor.close()
        self.source.close()
        self.predictor.close()
        self.outbox.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
