"""Decoding videos with container timestamps; captures are always released."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import cv2
import numpy as np

from neopain.data.files import regular_file_problem
from neopain.errors import NeopainError


class VideoReadError(NeopainError):
    """A video that cannot be decoded: corrupt, truncated, an unsupported codec, no frames."""


class DecodedFrame(NamedTuple):
    index: int
    time_s: float  # container timestamp
    image: np.ndarray


@contextmanager
def open_video(path: str | os.PathLike[str], *,
               max_pixels: int | None = None) -> Iterator[cv2.VideoCapture]:
    """An opened ``cv2.VideoCapture``, released on exit whatever happens.

    Args:
        path: the video file.
        max_pixels: refuse frames larger than this (width × height, from the container's
            header, before any frame is decoded); None: no limit.

    Raises:
        VideoReadError: not a regular file (a FIFO would block the decoder), OpenCV cannot
            open the file as a video, or its frames are larger than ``max_pixels``.
    """
    if (problem := regular_file_problem(path, what="a video file")) is not None:
        raise VideoReadError(problem)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoReadError("cannot be opened as a video (corrupt, truncated, or a codec "
                                 "OpenCV cannot decode)")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if max_pixels is not None and width * height > max_pixels:
            raise VideoReadError(f"its frames are {width}×{height} pixels, more than the "
                                 f"{max_pixels:,} read (NEOPAIN_MAX_IMAGE_PIXELS)")
        yield capture
    finally:
        capture.release()


def decode_frames(capture: cv2.VideoCapture) -> Iterator[DecodedFrame]:
    """Every frame in order with its container timestamp (``CAP_PROP_POS_MSEC`` after a read).

    Decodes one frame after another rather than seeking: for many codecs a seek lands on a
    nearby keyframe or reports a drifting position, so a seeked frame's time cannot be trusted.

    Raises:
        VideoReadError: a timestamp that does not increase (frames cannot be placed in time).
    """
    index, last = 0, -math.inf
    while True:
        try:
            ok, image = capture.read()
        except cv2.error as error:
            raise VideoReadError(f"decoding failed at frame {index}: {error.err}") from None
        if not ok:
            return
        time_s = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
        if not time_s > last:
            raise VideoReadError(f"container timestamps do not increase at frame {index} "
                                 f"({time_s:.3f} s after {last:.3f} s)")
        yield DecodedFrame(index, time_s, image)
        index, last = index + 1, time_s
