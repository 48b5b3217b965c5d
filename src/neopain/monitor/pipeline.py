"""One camera or video stream, frame by frame: detect → crop → predict → smooth → state changes.

``Assessor.step(frame, time_s=...)`` finds the subject's face (``faces.choose_face``), crops it
the way the predictor was trained (``predictor.crop``), predicts P(pain) and smooths it over
the last ``window`` assessed faces. The smoothed value is the MEDIAN of the window, and the
state only changes when it passes the threshold by ``hysteresis`` or more: one odd frame
cannot move the median of three or more frames past its neighbours, and a value hovering at the
threshold cannot make the state flicker. The bedside saves a snapshot at every ``changed``.

A model with a referral band (``Prediction.prediction_set``) may refer a face
(``Prediction.uncertain``: the band holds both labels or neither, or one its label contradicts:
look at the baby). That is smoothed over the same window, with hysteresis: the assessment
becomes ``uncertain`` when at least half the window's frames were referred and stays so until at
most a quarter are; a frame without a band counts as not referred, so a model without one
never gives uncertain, one odd frame in a window of five cannot make the panel flicker, and
nor can a face referred every other frame.

With ``redetect_every`` N >= 1 the face is followed from frame to frame by the face mesh
(``faces.tracking.FaceTracker``) and the detector runs only when the track is lost and every N
frames; a followed face's crop carries its landmarks, so a landmark model (``nfcs``) does not
mesh it again, and any other model sees the same crop as before. 0 detects in every frame.

Frames without a face leave the window as it is; after more than ``max_gap_s`` seconds without
a face the window is emptied and the next face starts afresh (``changed`` again), so a state
from minutes ago is never carried over to a face that comes back.

Example:
    >>> with load_predictor("model.onnx") as predictor, Assessor(predictor) as assessor:
    ...     for time_s, frame in frames:
    ...         result = assessor.step(frame, time_s=time_s)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from neopain.errors import NeopainError
from neopain.faces.base import Face, FaceDetector, choose_face, create_detector
from neopain.faces.tracking import FaceTracker, cut_face
from neopain.prediction import Prediction, Predictor

@dataclass(frozen=True)
class FrameAssessment:
    """What one frame showed.

    Attributes:
        time_s: the frame's time in seconds (container timestamp or wall clock).
        face: the subject's face in frame pixels; None when no face was found.
        prediction: the model's output for that face; None when no face.
        smoothed: median P(pain) over the recent window; None before any face (and after a gap
            longer than ``max_gap_s``).
        state: ``"pain"``/``"nopain"`` after smoothing; None when ``smoothed`` is None.
        uncertain: True while at least half the window's frames had a referral band holding
            both labels (module docstring); the ``state`` is then not vouched for. Always
            False for a model without a band.
        changed: True on the first assessed face (after a start, ``reset`` or long gap) and on
            the first frame after each change of the smoothed state (not of ``uncertain``).
        latency_ms: detect (or track) + crop + predict for this frame, in milliseconds.
        crop: the face crop the model assessed (for its ``evidence``); None when no face.
    """

    time_s: float
    face: Face | None
    prediction: Prediction | None
    smoothed: float | None
    state: str | None
    changed: bool
    latency_ms: float
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)
    uncertain: bool = False

    @property
    def held_state(self) -> str | None:
        """What the frame shows as the baby's state: ``uncertain`` while the band refers the
        face, else the smoothed ``state`` (None before any face)."""
        return "uncertain" if self.uncertain and self.state is not None else self.state


class Smoother:
    """Median of the last ``window`` probabilities with a hysteresis band around the threshold.

    ``update(prob, threshold=...)`` returns ``(smoothed, state, changed)``. The state becomes
    ``pain`` when the median reaches ``threshold + hysteresis`` and ``nopain`` when it falls
    below ``threshold - hysteresis``; in between it stays. The first value sets the state by
    the threshold alone (``changed`` is True then). ``uncertain`` (a frame the referral band
    referred) is kept over the same window with hysteresis too: ``uncertain_`` turns True when
    at least half of the window's frames were, and False again when at most a quarter are.
    """

    def __init__(self, *, window: int = 5, hysteresis: float = 0.1) -> None:
        self.window = window
        self.hysteresis = hysteresis
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise NeopainError(f"window={window!r} must be a whole number of frames >= 1")
        if not 0.0 <= hysteresis < 0.5:
            raise NeopainError(f"hysteresis={hysteresis!r} must lie in [0, 0.5): the distance "
                               "of P(pain) from the threshold that changes the state")
        self.reset()

    def reset(self) -> None:
        """Forget the window and the state."""
        self.values_: deque[float] = deque(maxlen=self.window)
        self.flags_: deque[bool] = deque(maxlen=self.window)
        self.state_: str | None = None
        self.uncertain_ = False

    @property
    def smoothed_(self) -> float | None:
        """The median of the window, or None when it is empty."""
        return float(np.median(self.values_)) if self.values_ else None

    def update(self, prob: float, *, threshold: float, uncertain: bool = False
               ) -> tuple[float, str, bool]:
        """Add one probability (and whether its frame was uncertain); the smoothed value, the
        state and whether the state changed."""
        self.values_.append(float(prob))
        self.flags_.append(bool(uncertain))
        referred = sum(self.flags_)
        if self.uncertain_:
            self.uncertain_ = 4 * referred > len(self.flags_)
        else:
            self.uncertain_ = 2 * referred >= len(self.flags_)
        smoothed = float(np.median(self.values_))
        previous = self.state_
        if previous is None:
            state = "pain" if smoothed >= threshold else "nopain"
        elif previous == "nopain" and smoothed >= threshold + self.hysteresis:
            state = "pain"
        elif previous == "pain" and smoothed < threshold - self.hysteresis:
            state = "nopain"
        else:
            state = previous
        self.state_ = state
        return smoothed, state, state != previous


class Assessor:
    """Assess one stream's frames in order: one per camera or video; not thread-safe.

    Args:
        predictor: the model (``load_predictor``); the caller owns it: ``close`` leaves it open.
        detector: a detector name (``neopain faces list``), created on the first frame and
            closed by ``close``, or a detector the caller owns.
        window: frames whose median P(pain) is the smoothed value.
        hysteresis: how far past the threshold the median must go to change the state.
        max_gap_s: seconds without a face after which the window is forgotten.
        threshold: the pain threshold; None uses each prediction's own (the model's).
        redetect_every: 0 runs the detector on every frame; N >= 1 follows the face with the
            face mesh and runs the detector every N frames and when the face is lost (module
            docstring). The tracker is this stream's: ``reset`` forgets it, ``close`` frees it.

    Raises:
        NeopainError: an argument out of range (named with what is valid).
    """

    def __init__(self, predictor: Predictor, *, detector: str | FaceDetector = "mediapipe-short",
                 window: int = 5, hysteresis: float = 0.1, max_gap_s: float = 2.0,
                 threshold: float | None = None, redetect_every: int = 0) -> None:
        self.predictor = predictor
        self.detector = detector
        self.window = window
        self.hysteresis = hysteresis
        self.max_gap_s = max_gap_s
        self.threshold = threshold
        self.redetect_every = redetect_every
        if not isinstance(predictor, Predictor):
            raise NeopainError(f"predictor={predictor!r} must be a neopain Predictor "
                               "(neopain.prediction.load_predictor)")
        if not isinstance(detector, (str, FaceDetector)):
            raise NeopainError(f"detector={detector!r} must be a detector name or a FaceDetector")
        if not max_gap_s > 0:
            raise NeopainError(f"max_gap_s={max_gap_s!r} must be a number of seconds > 0")
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise NeopainError(f"threshold={threshold!r} must lie between 0 and 1 (exclusive), "
                               "or be None for the model's own")
        if (isinstance(redetect_every, bool) or not isinstance(redetect_every, int)
                or redetect_every < 0):
            raise NeopainError(f"redetect_every={redetect_every!r} must be a whole number of "
                               "frames >= 0 (0: detect in every frame)")
        self.smoother_ = Smoother(window=window, hysteresis=hysteresis)
        self.detector_: FaceDetector | None = detector if isinstance(detector, FaceDetector) \
            else None
        self.tracker_: FaceTracker | None = None
        self.last_face_s_: float | None = None
        self.last_time_s_: float | None = None

    def _detector(self) -> FaceDetector:
        if self.detector_ is None:
            self.detector_ = create_detector(str(self.detector))
        return self.detector_

    def _find_face(self, frame: np.ndarray, *, prior: Face | None) -> Face | None:
        """The subject's face: detected in this frame, or followed by this stream's tracker."""
        if not self.redetect_every:
            faces = self._detector().detect(frame, prior=prior)
            return choose_face(faces, image_shape=frame.shape)
        if self.tracker_ is None:
            self.tracker_ = FaceTracker(self._detector(), redetect_every=self.redetect_every)
        return self.tracker_.find(frame, prior=prior)

    def step(self, frame: np.ndarray, *, time_s: float, prior: Face | None = None
             ) -> FrameAssessment:
        """Assess one BGR uint8 H×W×3 frame taken at ``time_s`` seconds.

        ``prior`` is a face box already known for the frame (the ``manifest`` detector uses it).

        Raises:
            NeopainError: a frame that is not BGR uint8 H×W×3, a time that is not finite or goes
                back (call ``reset`` when a new stream starts), a detector that cannot be built.
        """
        if not math.isfinite(time_s):
            raise NeopainError(f"time_s={time_s!r} must be a finite number of seconds")
        if self.last_time_s_ is not None and time_s < self.last_time_s_:
            raise NeopainError(f"time_s={time_s} goes back from {self.last_time_s_}; frames must "
                               "come in time order (call reset() for a new stream)")
        self.last_time_s_ = time_s
        started = time.perf_counter()
        face = self._find_face(frame, prior=prior)
        prediction = crop = None
        if face is not None:
            crop = cut_face(frame, face, rule=self.predictor.crop)
            prediction = self.predictor.predict_crops([crop])[0]
        latency_ms = (time.perf_counter() - started) * 1000.0
        if self.last_face_s_ is not None and time_s - self.last_face_s_ > self.max_gap_s:
            self.smoother_.reset()
            self.last_face_s_ = None
        if prediction is None:
            return FrameAssessment(time_s=time_s, face=None, prediction=None,
                                   smoothed=self.smoother_.smoothed_,
                                   state=self.smoother_.state_, changed=False,
                                   latency_ms=latency_ms, uncertain=self.smoother_.uncertain_)
        if not prediction.assessable:  # a face the model cannot judge: shown, never smoothed,
            # and no fresher than no face: the state held lapses after max_gap_s all the same
            return FrameAssessment(time_s=time_s, face=face, prediction=prediction,
                                   smoothed=self.smoother_.smoothed_,
                                   state=self.smoother_.state_, changed=False,
                                   latency_ms=latency_ms, crop=crop,
                                   uncertain=self.smoother_.uncertain_)
        self.last_face_s_ = time_s
        threshold = prediction.threshold if self.threshold is None else self.threshold
        smoothed, state, changed = self.smoother_.update(
            prediction.prob_pain, threshold=threshold, uncertain=prediction.uncertain)
        return FrameAssessment(time_s=time_s, face=face, prediction=prediction,
                               smoothed=smoothed, state=state, changed=changed,
                               latency_ms=latency_ms, crop=crop,
                               uncertain=self.smoother_.uncertain_)

    def reset(self) -> None:
        """Start a new stream: forget the window, the state, the last times and the track."""
        self.smoother_.reset()
        if self.tracker_ is not None:
            self.tracker_.reset()
        self.last_face_s_ = None
        self.last_time_s_ = None

    def close(self) -> None:
        """Free the tracker and close the detector this assessor created (never the predictor
        or a detector it was given). Safe to call twice."""
        if self.tracker_ is not None:
            self.tracker_.close()
            self.tracker_ = None
        if self.detector_ is not None and not isinstance(self.detector, FaceDetector):
            self.detector_.close()
            self.detector_ = None

    def __enter__(self) -> Assessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
