"""Live monitoring behind the WebSocket: JPEG frames in, assessments out, the record kept.

One ``LiveStream`` per connection runs ``Assessor.step`` on its own worker thread (the event
loop never waits on a model), and saves to the records:

- the first assessed face of a session and the first frame after each change of the smoothed
  state, with its JPEG as a snapshot (a resumed stream continues from the session's last
  snapshot state, so reconnecting does not add a snapshot unless the state differs);
- one assessment per ``settings.timeline_interval_s`` for the probability timeline.

A reply says ``saved: true`` only after the commit returned. Frames without a face are not
saved. The model is shared by every stream, one call at a time (``SharedPredictor``).

Warm start: building a face detector and the model's first graph takes up to seconds on a busy
CPU, long enough for a camera to skip frames. ``LiveStream.start`` does that work when the
connection opens (the route answers ``{"type": "ready"}`` when it is done and the page sends
frames only then), and a closed stream's detector waits in the service's pool for the next one.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import asdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from neopain.config import Settings
from neopain.data.images import ImageReadError, decode_image
from neopain.faces.base import FaceDetector, create_detector
from neopain.monitor.pipeline import Assessor, FrameAssessment
from neopain.monitor.recording import RecordPolicy
from neopain.prediction import Predictor
from neopain.server.calibration import StreamCalibration
from neopain.monitor.display import Shown, shown_of
from neopain.server.explanation import StreamExplainer
from neopain.server.heatmap import cell_regions, evidence_cells
from neopain.server.model import SharedPredictor, load_live_predictor
from neopain.server.stream_status import StatusWriter
from neopain.server.deps import ENDED, AccessError, Refusal, live_refusal
from neopain.store import crud
from neopain.store.crud import NewAssessment
from neopain.store.session import StoreError
from neopain.store.tables import Assessment, utc_now

MAX_FRAME_SIDE = 1920
UPLOAD_WAIT_S = 2.0
UPLOAD_RETRY_S = 10


IDLE_DETECTORS = 8
"""Detectors kept for the next streams; more are closed (each holds a graph and its threads)."""


class StreamLimitError(Exception):
    """Every live stream slot is taken (``settings.max_streams``)."""


class LiveService:
    """The app's model and its live streams.

    Args:
        settings: model name, detector, smoothing window, timeline interval.
        predictor: a model to use (the caller closes it); None loads ``settings.model`` on
            first use and closes it in ``close``.
    """

    def __init__(self, settings: Settings, *, predictor: Predictor | None = None) -> None:
        self.settings = settings
        self.predictor = predictor
        self._shared: SharedPredictor | None = None if predictor is None \
            else SharedPredictor(predictor)
        self._lock = threading.Lock()
        self._warm = False
        self._idle: list[FaceDetector] = []
        self._streams = 0
        self._uploads = threading.BoundedSemaphore(settings.max_concurrent_uploads)

    def shared_predictor(self) -> SharedPredictor:
        """The shared model, loaded on first call."""
        with self._lock:
            if self._shared is None:
                self._shared = SharedPredictor(load_live_predictor(self.settings))
            return self._shared

    def model_name(self) -> str:
        """The name recorded with each assessment."""
        return self.shared_predictor().name

    def warm_model(self) -> None:
        """Run the shared model once on a grey crop so its graphs exist before the first frame
        (the face mesh of ``nfcs`` is built on first use). Later calls return at once."""
        predictor = self.shared_predictor()
        with self._lock:
            if self._warm:
                return
            self._warm = True
        predictor.predict_crops([np.full((128, 128, 3), 128, np.uint8)])

    def assessor(self) -> Assessor:
        """A new assessor for one stream: a pooled (or new) detector, the shared model."""
        with self._lock:
            detector = self._idle.pop() if self._idle else None
        if detector is None:
            detector = create_detector(self.settings.detector)
        return Assessor(self.shared_predictor(), detector=detector,
                        window=self.settings.smoothing_window,
                        redetect_every=self.settings.redetect_every)

    @contextmanager
    def borrowed_assessor(self) -> Iterator[Assessor]:
        """``assessor()`` for one upload; its detector goes back to the pool afterwards."""
        assessor = self.assessor()
        try:
            yield assessor
        finally:
            self.release(assessor)

    def release(self, assessor: Assessor) -> None:
        """Take back a finished stream's detector for the next stream (or close it), and free
        the stream's face tracker."""
        assessor.close()  # its tracker's mesh; a detector passed in stays open for the pool
        detector = assessor.detector_
        if detector is None:
            return
        with self._lock:
            if len(self._idle) < IDLE_DETECTORS:
                self._idle.append(detector)
                return
        detector.close()

    @contextmanager
    def upload_slot(self) -> Iterator[None]:
        """One of ``settings.max_concurrent_uploads`` slots for assessing an upload, so that the
        memory uploads take at once is bounded; waits up to ``UPLOAD_WAIT_S``.

        Raises:
            AccessError: 503 with Retry-After when every slot stays taken.
        """
        if not self._uploads.acquire(timeout=UPLOAD_WAIT_S):
            raise AccessError(503, "The server is busy assessing other uploads; try again in a "
                                   "few seconds.", headers={"Retry-After": str(UPLOAD_RETRY_S)})
        try:
            yield
        finally:
            self._uploads.release()

    def open_stream(self, store: sessionmaker[Session], *, session_id: int,
                    token_hash: str) -> LiveStream:
        """A stream that adds to monitoring session ``session_id`` for as long as the login
        ``token_hash`` may (``deps.live_refusal``).

        Raises:
            StreamLimitError: ``settings.max_streams`` streams are open already.
        """
        with self._lock:
            if self._streams >= self.settings.max_streams:
                raise StreamLimitError(f"{self._streams} live streams are open, the most this "
                                       "server takes (NEOPAIN_MAX_STREAMS)")
            self._streams += 1
        try:
            return LiveStream(self, store, session_id=session_id, token_hash=token_hash)
        except BaseException:  # e.g. no thread can be started: the slot is free again
            self.stream_closed()
            raise

    def stream_closed(self) -> None:
        """Free the slot of a closed stream."""
        with self._lock:
            self._streams -= 1

    def close(self) -> None:
        """Close the pooled detectors, and the model if this service loaded it."""
        with self._lock:
            idle, self._idle = self._idle, []
            if self.predictor is None and self._shared is not None:
                self._shared.close()
                self._shared = None
                self._warm = False
        for detector in idle:
            detector.close()


def decode_frame(data: bytes) -> np.ndarray:
    """A BGR frame from JPEG (or PNG, ...) bytes, read by ``data.images.decode_image``, at most
    ``MAX_FRAME_SIDE`` pixels a side (checked from the header, before any pixel is decoded).

    Raises:
        ImageReadError: not a readable image, or too large.
    """
    return decode_image(data, source="frame", max_side=MAX_FRAME_SIDE,
                        max_pixels=MAX_FRAME_SIDE * MAX_FRAME_SIDE)


def reply_of(result: FrameAssessment, *, frame_shape: tuple[int, ...],
             shown: Shown) -> dict[str, Any]:
    """The JSON-ready part of a reply that describes the assessment itself; ``shown`` is what
    the page shows (``display.shown_of``: the state and the one number that goes with it)."""
    prediction = result.prediction
    return {
        "type": "assessment",
        "found": result.face is not None,
        "box": None if result.face is None else [round(float(v), 1) for v in result.face.box],
        "width": int(frame_shape[1]),
        "height": int(frame_shape[0]),
        "assessable": prediction is not None and prediction.assessable,
        "label": None if prediction is None else prediction.label,
        "prob_pain": None if prediction is None else round(prediction.prob_pain, 4),
        "confidence": None if prediction is None else round(prediction.confidence, 4),
        "smoothed": None if result.smoothed is None else round(result.smoothed, 4),
        "state": result.state,
        "changed": result.changed,
        "ms": round(result.latency_ms, 1),
        "shown": asdict(shown),
    }


class Recorder:
    """Saving the frames of one stream that enter the record (``monitor.recording``: each
    change of the shown state with its JPEG, and one frame per ``interval_s`` seconds of
    stream time); a stream that resumes a session continues from its last snapshot's state."""

    def __init__(self, store: sessionmaker[Session], *, session_id: int, interval_s: float,
                 access: Callable[[Session], Refusal | None] | None = None) -> None:
        self.store = store
        self.session_id = session_id
        self.interval_s = interval_s
        self.access = access
        self.policy_: RecordPolicy | None = None  # made at the first face (module docstring)
        self.saved_ = 0

    def refusal(self) -> Refusal | None:
        """Why nothing more may be saved now, as ``access`` says (a login that ended, a session
        stopped elsewhere); None while saving may go on, and always without ``access``."""
        if self.access is None:
            return None
        with self.store() as db:
            return self.access(db)

    def record(self, result: FrameAssessment, *, jpeg: Callable[[], bytes],
               when: datetime | None = None, offset_s: float | None = None
               ) -> tuple[Assessment | None, bool]:
        """Save ``result`` if it is due; the saved row (None when not saved) and whether it
        is a snapshot. ``jpeg`` is called only for a snapshot; ``when`` defaults to now and
        ``offset_s`` to the seconds since the session started.

        Raises:
            StoreError: the session ended or access was refused (checked in the saving
                transaction): nothing was saved.
        """
        prediction, face = result.prediction, result.face
        if prediction is None or face is None or not prediction.assessable:
            return None, False
        if self.policy_ is None:  # a resumed stream continues from its last snapshot's state
            with self.store() as db:
                last = crud.last_snapshot_state(db, session_id=self.session_id)
            self.policy_ = RecordPolicy(interval_s=self.interval_s, last_state=last)
        due, snapshot = self.policy_.due(result)
        if not due:
            return None, False
        with self.store() as db:
            session = crud.get_session(db, self.session_id)
            when = when or utc_now()
            row = crud.add_assessment(db, session=session, assessment=NewAssessment(
                face_found=True, model=prediction.model, latency_ms=result.latency_ms,
                offset_s=(when - session.started_at).total_seconds() if offset_s is None
                else offset_s, label=prediction.label, prob_pain=prediction.prob_pain,
                smoothed=result.smoothed, state=result.state, uncertain=result.uncertain,
                changed=result.changed, face_box=face.box,
                snapshot=jpeg() if snapshot else None, time=when),
                allowed=None if self.access is None else lambda: self.access(db) is None)
        self.policy_.recorded(result, snapshot=snapshot)
        self.saved_ += 1
        return row, snapshot


class LiveStream:
    """One connection's frames, in order, on one worker thread; ``close`` when it ends."""

    def __init__(self, service: LiveService, store: sessionmaker[Session], *,
                 session_id: int, token_hash: str) -> None:
        self.service = service
        self.recorder = Recorder(store, session_id=session_id,
                                 interval_s=service.settings.timeline_interval_s,
                                 access=partial(live_refusal, token_hash=token_hash,
                                                session_id=session_id))
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix=f"live-{session_id}")
        self._assessor: Assessor | None = None
        self._opened = time.monotonic()
        self.heatmap = False
        self._cells: np.ndarray | None = None  # the model's last evidence grid
        self._cells_at = -math.inf
        self.explainer = StreamExplainer()
        self.calibration = StreamCalibration(store, session_id=session_id)  # its own reference
        self.status = StatusWriter(store, session_id=session_id,  # for the ward and its alarms
                                   started_at=utc_now())

    async def start(self) -> None:
        """Build this stream's detector and warm the model on the stream's thread; frames sent
        before this returns wait behind it."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._start)

    def _start(self) -> None:
        if self._assessor is None:
            self.status.resume()
            self._assessor = self.service.assessor()
            self._assessor.predictor = self.calibration.restore(self._assessor.predictor)
        self.service.warm_model()

    async def process(self, data: bytes) -> dict[str, Any]:
        """Assess one JPEG frame on the stream's thread; the reply for the client."""
        received = time.monotonic()
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._process, data, received)

    def _process(self, data: bytes, received: float) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            frame = decode_frame(data)
        except ImageReadError as error:
            return {"type": "error", "message": f"The frame cannot be read: {error.reason}. "
                                                "Send JPEG or PNG images of at most "
                                                f"{MAX_FRAME_SIDE} pixels a side."}
        self._start()
        assert self._assessor is not None
        result = self._assessor.step(frame, time_s=received - self._opened)
        calibrated = self.calibration.add(result, predictor=self._assessor.predictor)
        if calibrated is not None:  # this stream's view of the shared model from now on
            self._assessor.predictor = calibrated
        try:
            row, snapshot = self.recorder.record(result, jpeg=lambda: data)
        except StoreError:  # stopped or revoked between the check and the save
            return self.refused(self.recorder.refusal() or ENDED)
        shown = shown_of(result, threshold=self._assessor.threshold)
        reply = reply_of(result, frame_shape=frame.shape, shown=shown)
        self.status.frame(result, shown=shown, now=utc_now())
        reply["explanation"] = self.explainer.explain(
            result, predictor=self._assessor.predictor)
        if self.heatmap and result.crop is not None and result.prediction.assessable:
            reply["heatmap"] = self._heatmap(frame, result, received)
        reply.update(saved=row is not None, snapshot=snapshot,
                     assessment_id=None if row is None else row.id,
                     server_ms=round((time.perf_counter() - started) * 1000, 1))
        return reply

    async def refusal(self) -> Refusal | None:
        """``Recorder.refusal`` on the stream's own thread (between frames; the shared thread
        pool may be busy with uploads)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor,
                                                                self.recorder.refusal)

    def refused(self, refusal: Refusal) -> dict[str, Any]:
        """The reply that ends the stream: ``stopped`` for an ended session, else ``refused``
        with the close code and reason."""
        if refusal.code == ENDED.code:
            return {"type": "stopped", "saved": self.recorder.saved_}
        return {"type": "refused", "code": refusal.code, "reason": refusal.reason}

    def _heatmap(self, frame: np.ndarray, result: FrameAssessment, now: float
                 ) -> list[list[float]] | None:  # called with a face and its crop
        """The model's evidence grid placed on this frame's face crop, or None when the model
        gives none. Recomputed at most every ``evidence_interval_s`` seconds."""
        predictor = self._assessor.predictor  # the stream's (calibrated) view
        if now - self._cells_at >= predictor.evidence_interval_s:
            heat = predictor.evidence([result.crop])[0]
            self._cells = None if heat is None else evidence_cells(heat)
            self._cells_at = now
        if self._cells is None:
            return None
        placement = predictor.crop.placement(result.face.box, image_shape=frame.shape)
        return cell_regions(self._cells, placement=placement)

    def close(self) -> None:
        """Hand the detector back to the service on the stream's thread, stop the thread and
        free the stream's slot (once)."""
        if self._closed:
            return
        self._closed = True
        if self._assessor is not None:  # first: a reconnecting page takes this detector
            self._executor.submit(self.service.release, self._assessor)
        self._executor.submit(self.status.close)
        self._executor.shutdown(wait=False)
        self.service.stream_closed()
