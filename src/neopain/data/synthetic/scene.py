"""What surrounds the face: bed sheets and clutter, the body, occluders, light and the camera."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from neopain.data.synthetic.canvas import Canvas, Pose, curve, ellipse_points
from neopain.data.synthetic.face import FaceLayout, Identity

OCCLUDERS: tuple[str, ...] = ("pacifier", "blanket", "hand")

_SHEETS = np.array([
    [0.84, 0.90, 0.96], [0.95, 0.95, 0.92], [0.96, 0.86, 0.89], [0.93, 0.90, 0.74],
    [0.76, 0.86, 0.78], [0.88, 0.88, 0.88],
])
_CLOTHES = np.array([
    [0.95, 0.95, 0.97], [0.70, 0.82, 0.95], [0.95, 0.78, 0.84], [0.98, 0.93, 0.70],
    [0.72, 0.90, 0.80], [0.82, 0.76, 0.92],
])


@dataclass(frozen=True)
class Source:
    """A camera set-up: how large images are and how they are degraded.

    Attributes:
        name: value of the manifest's ``source`` column.
        render_size: (width, height) drawn at.
        out_size: (width, height) written.
        face_scale: range of the face half-width as a share of the render width.
        blur: Gaussian blur sigma in output pixels.
        noise: sensor noise standard deviation (0–1 scale).
        jpeg_quality: JPEG quality of the written image.
        cast: maximum per-channel colour cast.
    """

    name: str
    render_size: tuple[int, int]
    out_size: tuple[int, int]
    face_scale: tuple[float, float]
    blur: float
    noise: float
    jpeg_quality: int
    cast: float


SHARP = Source("synth-sharp", (512, 384), (512, 384), (0.15, 0.19), 0.0, 0.006, 92, 0.02)
NOISY = Source("synth-noisy", (384, 288), (160, 120), (0.14, 0.19), 0.7, 0.025, 55, 0.06)
SOURCES: tuple[Source, ...] = (SHARP, NOISY)


def background(rng: np.random.Generator, height: int, width: int, *, clutter: bool) -> np.ndarray:
    """A bed sheet with a print, soft folds and (optionally) tubes, leads, tape and toys."""
    base = _SHEETS[rng.integers(len(_SHEETS))] + rng.normal(0.0, 0.02, 3)
    img = np.empty((height, width, 3), dtype=np.float32)
    img[:] = base
    folds = cv2.resize(rng.normal(0.0, 1.0, (6, 8)).astype(np.float32), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    img *= (1.0 + 0.05 * folds)[..., None]
    plain = Canvas(img, Pose(0.0, 0.0, 1.0))
    pattern = rng.integers(3)
    ink = np.clip(base * rng.uniform(0.7, 0.9), 0, 1)
    if pattern == 1:  # stripes
        step = rng.uniform(18, 40)
        for x in np.arange(-height, width, step):
            plain.stroke(np.array([[x, 0.0], [x + height, height]]), ink, width=step / 3, alpha=0.5)
    elif pattern == 2:  # dots
        for _ in range(int(width * height / 900)):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            plain.fill(ellipse_points(x, y, 3.0, 3.0, n=12), ink, alpha=0.6)
    if clutter:
        _clutter(plain, rng, height, width)
    return img


def _clutter(plain: Canvas, rng: np.random.Generator, height: int, width: int) -> None:
    for _ in range(rng.integers(2, 7)):
        kind = rng.integers(4)
        pts = rng.uniform([0, 0], [width, height], (4, 2))
        color = rng.uniform(0.1, 1.0, 3)
        if kind == 0:  # a feeding tube
            plain.stroke(curve(pts), (0.92, 0.94, 0.96), width=rng.uniform(5, 10), alpha=0.7)
        elif kind == 1:  # a monitor lead with its electrode
            plain.stroke(curve(pts), color, width=2.0, alpha=0.9)
            plain.fill(ellipse_points(*pts[-1], 9.0, 9.0), (0.95, 0.95, 0.9))
        elif kind == 2:  # tape
            x, y = pts[0]
            w, h = rng.uniform(20, 60), rng.uniform(10, 25)
            plain.fill(np.array([[x, y], [x + w, y + 5], [x + w - 4, y + h], [x - 3, y + h - 4]]),
                       (0.90, 0.84, 0.72), alpha=0.9)
        else:  # a toy
            plain.fill(ellipse_points(*pts[0], rng.uniform(12, 35), rng.uniform(12, 35)), color)


def sample_pose(rng: np.random.Generator, source: Source, who: Identity) -> Pose:
    """Place the face inside the render, rolled and turned a little."""
    width, height = source.render_size
    scale = rng.uniform(*source.face_scale) * width
    half_h = (who.aspect + 0.3) * scale
    cx = np.clip(width / 2 + rng.normal(0.0, 0.06 * width), 1.2 * scale, width - 1.2 * scale)
    cy = np.clip(height * 0.47 + rng.normal(0.0, 0.04 * height), half_h * 0.8, height - half_h)
    return Pose(float(cx), float(cy), float(scale), float(rng.uniform(-18, 18)),
                float(rng.uniform(0.86, 1.0)))


def clothing(rng: np.random.Generator) -> np.ndarray:
    """An RGB colour for the baby's onesie."""
    return _CLOTHES[rng.integers(len(_CLOTHES))]


def draw_body(canvas: Canvas, who: Identity, *, color: np.ndarray) -> None:
    """The baby's shoulders in a onesie of ``color`` below the head."""
    canvas.fill(ellipse_points(0.0, who.aspect + 1.0, 1.7, 1.05), color)
    canvas.stroke(ellipse_points(0.0, who.aspect + 0.15, 0.55, 0.18, start=0, end=180),
                  color * 0.85, width=0.08)


def occlude(canvas: Canvas, rng: np.random.Generator, who: Identity, kind: str) -> None:
    """Draw an occluder over the face and clear the mask bits it hides."""
    if kind == "pacifier":
        cu, cv = rng.normal(0.0, 0.04), who.mouth_y + rng.normal(0.02, 0.03)
        plastic = rng.uniform(0.3, 1.0, 3)
        shield = ellipse_points(cu, cv, 0.36, 0.24)
        canvas.fill(shield, plastic, alpha=0.95)
        canvas.stroke(ellipse_points(cu, cv + 0.02, 0.16, 0.16), plastic * 0.7, width=0.05)
        canvas.fill(ellipse_points(cu, cv, 0.06, 0.06), (0.95, 0.95, 0.95))
        canvas.clear(shield)
    elif kind == "blanket":
        top = rng.uniform(who.mouth_y - 0.05, who.aspect - 0.15)
        tilt = rng.uniform(-0.25, 0.25)
        cloth = _CLOTHES[rng.integers(len(_CLOTHES))] * rng.uniform(0.85, 1.0)
        edge = curve([[-2.5, top - tilt * 2.5], [0.0, top - 0.08], [2.5, top + tilt * 2.5]])
        blanket = np.vstack([edge, [[2.5, 6.0], [-2.5, 6.0]]])
        canvas.fill(blanket, cloth)
        for k in range(3):
            canvas.stroke(edge + [0.0, 0.15 + 0.2 * k], cloth * 0.85, width=0.03, alpha=0.6)
        canvas.clear(blanket)
    elif kind == "hand":
        side = rng.choice([-1.0, 1.0])
        cu, cv = side * rng.uniform(0.45, 0.8), rng.uniform(0.0, 0.6)
        skin = np.clip(np.asarray(who.skin) * rng.uniform(0.92, 1.05), 0, 1)
        palm = ellipse_points(cu, cv + 0.15, 0.26, 0.2)
        canvas.fill(palm, skin)
        canvas.clear(palm)
        for k in range(4):
            base = np.array([cu + side * (0.12 - 0.09 * k), cv + 0.02])
            tip = base + [-side * 0.1 + 0.03 * k, -0.32 + 0.03 * abs(k - 1.5)]
            finger = np.array([base, tip])
            canvas.stroke(finger, skin * 0.97, width=0.09)
            canvas.clear(np.vstack([finger + [0.045, 0], finger[::-1] - [0.045, 0]]))
    else:
        raise ValueError(f"occluder kind={kind!r} is not one of {OCCLUDERS}")


def finish(image: np.ndarray, rng: np.random.Generator, source: Source) -> np.ndarray:
    """Light the scene and take the picture: resize, blur, noise, colour cast → uint8 BGR."""
    height, width = image.shape[:2]
    gx, gy = rng.normal(0.0, 0.15, 2)
    ramp = 1.0 + gx * (np.arange(width) / width - 0.5)[None, :] + \
        gy * (np.arange(height) / height - 0.5)[:, None]
    lit = image * (rng.uniform(0.8, 1.1) * ramp)[..., None].astype(np.float32)
    lit += rng.uniform(-source.cast, source.cast, 3).astype(np.float32)
    out = cv2.resize(lit, source.out_size, interpolation=cv2.INTER_AREA)
    if source.blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), source.blur)
    out += rng.normal(0.0, source.noise, out.shape).astype(np.float32)
    rgb = np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def face_box_px(pose: Pose, layout: FaceLayout, source: Source) -> np.ndarray:
    """The face box in output pixels, clipped to the image: ``[x1, y1, x2, y2]``."""
    k = source.out_size[0] / source.render_size[0]
    corners = pose.to_px(layout.box) * k
    w, h = source.out_size
    return np.array([
        max(corners[:, 0].min(), 0.0), max(corners[:, 1].min(), 0.0),
        min(corners[:, 0].max(), w - 1.0), min(corners[:, 1].max(), h - 1.0),
    ])
