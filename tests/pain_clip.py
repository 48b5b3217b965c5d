"""A video file of a real face with planned pain episodes, for what watches a camera (the edge
agent's end-to-end test): the astronaut (scikit-image) on a 640×480 canvas, moving a few pixels,
warped into a pain face (``face_warps.pain_face``: brows lowered, eyes narrowed, lips parted,
mouth stretched) during each episode. The synthetic cohort's drawn faces defeat the face mesh,
so a clip scored by ``nfcs`` needs a real face."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from skimage import data

import face_warps
from neopain.faces.landmarks import FaceMesh

SIZE = (640, 480)


def write_pain_clip(path: Path, *, seconds: float, fps: int,
                    episodes: tuple[tuple[float, float], ...]) -> Path:
    """Write the clip to ``path`` (mp4v); ``episodes`` are (start_s, end_s) of pain."""
    face = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (400, 400))
    with FaceMesh(refine=True) as mesh:
        pained = face_warps.pain_face(face, mesh.landmarks(face))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    try:
        for index in range(round(seconds * fps)):
            t = index / fps
            pain = any(start <= t < end for start, end in episodes)
            canvas = np.full((SIZE[1], SIZE[0], 3), 70, np.uint8)
            dx, dy = round(4 * math.sin(index / 5)), round(3 * math.cos(index / 7))
            canvas[40 + dy:440 + dy, 120 + dx:520 + dx] = pained if pain else face
            writer.write(canvas)
    finally:
        writer.release()
    return path
