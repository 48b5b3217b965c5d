"""Synthetic "human perception" heatmaps: where four kinds of observers looked to judge pain.

Each persona's heatmap is a blur of the present actions' ground-truth regions, plus a habit of
looking at the eyes and mouth anyway, plus persona-specific noise and mislocalization. Personas
differ in fidelity, so a method comparing heatmaps with the masks must rank them in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from neopain.data.synthetic.face import ACTIONS
from neopain.facial_actions import ACTION_REGIONS


@dataclass(frozen=True)
class Persona:
    """An observer group.

    Attributes:
        name: value of the perception table's ``persona`` column.
        title: how published perception studies name the group.
        noise: amplitude of smooth random attention, relative to the action signal.
        shift: typical mislocalization, in face half-widths.
        gaze: weight of the habitual look at eyes and mouth.
        eyes: extra weight of eye-region actions (some observers watch the eyes).
        mouth: extra weight of mouth actions.
    """

    name: str
    title: str
    noise: float
    shift: float
    gaze: float
    eyes: float = 1.0
    mouth: float = 1.0


PERSONAS: tuple[Persona, ...] = (
    Persona("physician", "physicians", noise=0.08, shift=0.03, gaze=0.12),
    Persona("health_professional", "other health professionals", noise=0.2, shift=0.07, gaze=0.25),
    Persona("parent", "parents", noise=0.35, shift=0.12, gaze=0.4, eyes=1.4),
    Persona("lay", "lay people", noise=0.5, shift=0.18, gaze=0.55, mouth=1.4),
)
"""Ordered from the closest match to the ground-truth masks to the loosest."""

# the actions a persona's eye or mouth bias weighs, by the regions each moves
_EYE_ACTIONS = {name for name, regions in ACTION_REGIONS.items()
                if {"brows", "eyes"} & set(regions)}
_MOUTH_ACTIONS = {name for name, regions in ACTION_REGIONS.items() if "mouth" in regions}


def perception_heatmap(persona: Persona, mask: np.ndarray, keypoints: np.ndarray,
                       face_px: float, rng: np.random.Generator) -> np.ndarray:
    """One persona's heatmap for one image, uint8 of the mask's size (255 = most attention).

    Args:
        persona: the observer group.
        mask: the image's action bit mask (bit i = ``ACTIONS[i]``).
        keypoints: (5, 2) eyes, nose, mouth corners in pixels.
        face_px: face half-width in pixels (sets blur and shift sizes).
        rng: the random stream for this image and persona.
    """
    height, width = mask.shape
    sigma = max(0.12 * face_px, 1.0)
    heat = np.zeros((height, width), dtype=np.float32)
    for bit, action in enumerate(ACTIONS):
        region = ((mask >> bit) & 1).astype(np.float32)
        if not region.any():
            continue
        weight = persona.eyes if action in _EYE_ACTIONS else 1.0
        weight *= persona.mouth if action in _MOUTH_ACTIONS else 1.0
        heat += weight * region
    gaze = np.zeros_like(heat)
    for x, y in (keypoints[0], keypoints[1], keypoints[3:].mean(axis=0)):
        cv2.circle(gaze, (int(round(x)), int(round(y))), max(int(0.25 * face_px), 1), 1.0, -1)
    heat += persona.gaze * gaze
    heat = cv2.GaussianBlur(heat, (0, 0), sigma)
    smooth = cv2.resize(rng.normal(0.0, 1.0, (6, 8)).astype(np.float32), (width, height),
                        interpolation=cv2.INTER_CUBIC)
    centre = keypoints.mean(axis=0)
    ys, xs = np.ogrid[0:height, 0:width]
    distance2 = (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2
    near_face = np.exp(-distance2 / (2 * (1.5 * face_px) ** 2))
    heat += persona.noise * np.clip(smooth, 0.0, None) * near_face * max(float(heat.max()), 0.3)
    dx, dy = rng.normal(0.0, persona.shift * face_px, 2)
    heat = cv2.warpAffine(heat, np.float32([[1, 0, dx], [0, 1, dy]]), (width, height),
                          borderMode=cv2.BORDER_CONSTANT)
    peak = float(heat.max())
    return np.zeros((height, width), np.uint8) if peak <= 0 else \
        np.clip(heat / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
