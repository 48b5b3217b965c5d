"""Frames for the agent: a camera by index, a stream by URL, or a video file played in real time.

``FrameSource.frames(stop)`` yields ``(time_s, frame)``: ``time_s`` on the device's monotonic
clock, a BGR uint8 frame. A video file is paced by its container timestamps, like a camera: a
frame whose time has already passed when it is reached (the assessment is slower than the
file) is skipped undecoded, as a camera would have moved on. ``fps`` caps the frames yielded
(the others are skipped undecoded). A camera or stream that stops giving frames is reopened
every second until ``stop`` is set (``lost_since_`` says since when); a file ends at its end.
"""

from __future__ import annotations

import glob
import logging
import math
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np

from neopain.data.files import regular_file_problem
from neopain.errors import NeopainError

log = logging.getLogger(__name__)

REOPEN_S = 1.0


class CaptureError(NeopainError):
    """A source that cannot be opened (naming it and what is valid)."""


def source_kind(spec: str) -> str:
    """``camera`` (a whole number: the camera's index), ``stream`` (a URL such as
    ``rtsp://…``) or ``file`` (anything else: a video file's path)."""
    spec = spec.strip()
    if spec.isdigit():
        return "camera"
    return "stream" if "://" in spec else "file"


class FrameSource:
    """One source of frames; a context manager that releases the capture.

    Args:
        spec: a camera index (``0``), a stream URL or a video file (``source_kind``).
        fps: the most frames per second yielded; None: every frame the source gives.
        max_pixels: refuse frames larger than this (width × height); None: no limit.

    Raises:
        CaptureError: ``fps`` not > 0 (``open`` raises for a source that cannot be opened).
    """

    def __init__(self, spec: str, *, fps: float | None = None,
                 max_pixels: int | None = None) -> None:
        self.spec = spec
        self.fps = fps
        self.max_pixels = max_pixels
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise CaptureError(f"--fps {fps!r} must be a number of frames per second > 0")
        self.kind_ = source_kind(spec)
        self.capture_: cv2.VideoCapture | None = None
        self.lost_since_: float | None = None

    def open(self) -> FrameSource:
        """Open the source now.

        Raises:
            CaptureError: no such camera, a stream that does not answer, a file that is
                missing or no video, frames larger than ``max_pixels``.
        """
        if self.kind_ == "file" and (problem := regular_file_problem(
                self.spec, what="a video file")) is not None:
            raise CaptureError(f"--source {self.spec}: {problem}; valid: a camera index (0), a "
                               "stream URL (rtsp://…, http://…) or a video file")
        self.capture_ = self._open_capture()
        if self.capture_ is None:
            raise CaptureError(f"--source {self.spec}: {self._cannot_open()}")
        return self

    def _open_capture(self) -> cv2.VideoCapture | None:
        target = int(self.spec) if self.kind_ == "camera" else self.spec
        capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            capture.release()
            return None
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self.max_pixels is not None and width * height > self.max_pixels:
            capture.release()
            raise CaptureError(f"--source {self.spec}: its frames are {width}×{height} pixels, "
                               f"more than the {self.max_pixels:,} allowed "
                               "(NEOPAIN_MAX_IMAGE_PIXELS)")
        return capture

    def _cannot_open(self) -> str:
        if self.kind_ == "camera":
            found = sorted(glob.glob("/dev/video*"))
            return (f"no camera opens at index {self.spec}; cameras here: "
                    f"{', '.join(found) if found else 'none found'} (index N is /dev/videoN)")
        if self.kind_ == "stream":
            return "the stream cannot be opened (wrong URL, camera off or unreachable)"
        return "cannot be opened as a video (corrupt, truncated, or a codec OpenCV lacks)"

    def frames(self, stop: threading.Event) -> Iterator[tuple[float, np.ndarray]]:
        """``(monotonic seconds, BGR frame)`` until ``stop`` is set (or a file ends)."""
        if self.capture_ is None:
            self.open()
        if self.kind_ == "file":
            yield from self._file_frames(stop)
        else:
            yield from self._live_frames(stop)

    def _keep(self, time_s: float, last: float | None) -> bool:
        if self.fps is None or last is None:
            return True
        return time_s - last >= 1.0 / self.fps - 1e-3

    def _file_frames(self, stop: threading.Event) -> Iterator[tuple[float, np.ndarray]]:
        capture, start, last_kept, last_pts = self.capture_, None, None, -math.inf
        step = 1.0 / (capture.get(cv2.CAP_PROP_FPS) or 25.0)
        while not stop.is_set():
            if not capture.grab():
                return
            pts = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
            pts = pts if pts > last_pts else last_pts + step  # a container without timestamps
            last_pts = pts
            if start is None:
                start = time.monotonic() - pts
            due = start + pts
            if time.monotonic() > due + step or not self._keep(due, last_kept):
                continue  # passed already, or over the --fps cap: skipped undecoded
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            ok, frame = capture.retrieve()
            if ok:
                last_kept = due
                yield due, frame

    def _live_frames(self, stop: threading.Event) -> Iterator[tuple[float, np.ndarray]]:
        last_kept = None
        while not stop.is_set():
            if self.capture_ is None or not self.capture_.grab():
                self._reopen(stop)
                continue
            now = time.monotonic()
            if not self._keep(now, last_kept):
                continue
            ok, frame = self.capture_.retrieve()
            if ok:
                last_kept = now
                yield now, frame

    def _reopen(self, stop: threading.Event) -> None:
        if self.lost_since_ is None:
            self.lost_since_ = time.time()
            log.warning("source %s gives no frames; reopening every %g s", self.spec, REOPEN_S)
        if self.capture_ is not None:
            self.capture_.release()
            self.capture_ = None
        if stop.wait(REOPEN_S):
            return
        try:
            self.capture_ = self._open_capture()
        except CaptureError as error:
            log.warning("%s", error)
        if self.capture_ is not None:
            self.lost_since_ = None

    def close(self) -> None:
        """Release the capture; safe to call twice."""
        if self.capture_ is not None:
            self.capture_.release()
            self.capture_ = None

    def __enter__(self) -> FrameSource:
        return self.open() if self.capture_ is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
