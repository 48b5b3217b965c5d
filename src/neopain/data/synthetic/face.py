"""A newborn face drawn from an identity (who) and an expression (which NFCS actions, how strong).

The six NFCS actions that a still image shows are drawn so that their evidence grows with
intensity, and each present action also marks its ground-truth region in the mask layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neopain.facial_actions import ACTION_NAMES
from neopain.data.synthetic.canvas import Canvas, curve, ellipse_points

# lip purse is not drawn: the generator's mouth shapes cannot purse
ACTIONS: tuple[str, ...] = tuple(name for name in ACTION_NAMES if name != "lip_purse")
"""NFCS actions drawn by the generator; ``ACTIONS[i]`` is mask bit ``i``."""

FACE_BIT = 7
"""Mask bit of the visible face skin."""

PRESENT = 0.5
"""An action is present (counts towards the NFCS score) when its intensity is at least this."""

_SCLERA = (0.93, 0.92, 0.90)
_IRIS = (0.18, 0.13, 0.11)
_MOUTH_INSIDE = (0.28, 0.06, 0.08)
_TONGUE = (0.80, 0.42, 0.45)
_HAIR = (0.16, 0.11, 0.08)


@dataclass(frozen=True)
class Identity:
    """What makes one subject look like themself: face shape, skin tone, feature geometry."""

    aspect: float
    skin: tuple[float, float, float]
    eye_x: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_y: float
    brow_len: float
    brow_thick: float
    brow_dark: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_thick: float
    blush: float
    hair: float
    hair_seed: int

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        tone = rng.uniform(0.0, 1.0)  # 0 = deep brown, 1 = light pink
        dark, light = np.array([0.36, 0.23, 0.17]), np.array([0.95, 0.78, 0.70])
        skin = dark + tone * (light - dark) + rng.normal(0.0, 0.015, 3)
        skin[0] += rng.uniform(0.0, 0.05)  # newborn redness
        return cls(
            aspect=rng.uniform(1.12, 1.30),
            skin=tuple(float(c) for c in np.clip(skin, 0.05, 1.0)),
            eye_x=rng.uniform(0.33, 0.41),
            eye_y=rng.uniform(-0.05, 0.05),
            eye_w=rng.uniform(0.14, 0.18),
            eye_h=rng.uniform(0.05, 0.075),
            brow_y=rng.uniform(-0.30, -0.23),
            brow_len=rng.uniform(0.20, 0.26),
            brow_thick=rng.uniform(0.025, 0.045),
            brow_dark=rng.uniform(0.12, 0.35),
            nose_y=rng.uniform(0.28, 0.36),
            nose_w=rng.uniform(0.11, 0.15),
            mouth_y=rng.uniform(0.60, 0.70),
            mouth_w=rng.uniform(0.20, 0.27),
            lip_thick=rng.uniform(0.035, 0.05),
            blush=rng.uniform(0.05, 0.20),
            hair=rng.uniform(0.0, 1.0),
            hair_seed=int(rng.integers(2**31)),
        )


@dataclass(frozen=True)
class Expression:
    """Action intensities in [0, 1] and the resting state of the eyes."""

    intensity: dict[str, float] = field(default_factory=dict)
    eyes_closed: bool = False

    def level(self, action: str) -> float:
        return float(self.intensity.get(action, 0.0))

    def present(self) -> tuple[str, ...]:
        """Actions at or above :data:`PRESENT`, in :data:`ACTIONS` order."""
        return tuple(a for a in ACTIONS if self.level(a) >= PRESENT)


@dataclass(frozen=True)
class FaceLayout:
    """Where the drawn face's parts are, in face coordinates."""

    keypoints: np.ndarray  # (5, 2): image-left eye, image-right eye, nose tip, mouth left, right
    box: np.ndarray  # (n, 2): outline points whose bounding box is the face box (brows to chin)
    head: np.ndarray  # polygon of the head outline


def _shade(c, k: float) -> tuple[float, float, float]:
    return tuple(float(x) * k for x in c)


def _mix(a, b, t: float) -> tuple[float, float, float]:
    return tuple(float(x) * (1 - t) + float(y) * t for x, y in zip(a, b))


def draw_face(canvas: Canvas, who: Identity, expr: Expression) -> FaceLayout:
    """Draw the head, features and actions; mark present actions and the face in the mask."""
    skin = who.skin
    head = ellipse_points(0.0, -0.12, 1.0, who.aspect + 0.12, n=96)
    cheeks = [ellipse_points(s * 0.62, 0.48, 0.40, 0.42, n=48) for s in (-1, 1)]
    for s in (-1, 1):  # ears
        canvas.fill(ellipse_points(s * 0.98, 0.05, 0.13, 0.21), _shade(skin, 0.85))
    canvas.fill(head, skin)
    for cheek in cheeks:
        canvas.fill(cheek, skin)
    _skin_shading(canvas, who)
    for outline in (head, *cheeks):
        canvas.mark(FACE_BIT, outline)
    _draw_hair(canvas, who)
    _draw_brows(canvas, who, expr)
    _draw_eyes(canvas, who, expr)
    _draw_nose(canvas, who)
    _draw_nasolabial(canvas, who, expr)
    mouth_corners = _draw_mouth(canvas, who, expr)
    canvas.restrict_to(FACE_BIT)
    keypoints = np.array([
        [-who.eye_x, who.eye_y],
        [who.eye_x, who.eye_y],
        [0.0, who.nose_y - 0.04],
        mouth_corners[0],
        mouth_corners[1],
    ])
    top = who.brow_y - 0.25
    outline = np.vstack([head, *cheeks])
    box = np.vstack([outline[outline[:, 1] >= top], [[-0.9, top], [0.9, top]]])
    return FaceLayout(keypoints=keypoints, box=box, head=head)


def _skin_shading(canvas: Canvas, who: Identity) -> None:
    """Darken towards the head's edge and add cheek blush (a smooth field over the head)."""
    h, w = canvas.image.shape[:2]
    corners = canvas.pose.to_px(ellipse_points(0.0, 0.0, 1.1, who.aspect + 0.3, n=16))
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, 0, [w, h])
    if x0 >= x1 or y0 >= y1:
        return
    u, v = canvas.pose.grid(x0, y0, x1, y1)
    r2 = u**2 + ((v + 0.12) / (who.aspect + 0.12)) ** 2
    inside = np.clip((1.08 - r2) / 0.08, 0.0, 1.0)
    shade = 1.0 - 0.22 * np.clip(r2, 0.0, 1.0) ** 2
    blush = who.blush * np.exp(-((np.abs(u) - 0.55) ** 2 + (v - 0.35) ** 2) / (2 * 0.17**2))
    region = canvas.image[y0:y1, x0:x1]
    factor = 1.0 - inside * (1.0 - shade)
    region *= factor[..., None]
    region += (inside * blush)[..., None] * np.array([0.10, -0.03, -0.03], dtype=np.float32)
    np.clip(region, 0.0, 1.0, out=region)


def _draw_hair(canvas: Canvas, who: Identity) -> None:
    rng = np.random.default_rng(who.hair_seed)
    for _ in range(int(who.hair * 60)):
        a = rng.uniform(-2.4, -0.7)  # along the top of the head
        r = rng.uniform(0.85, 1.0)
        start = np.array([np.cos(a) * r, -0.12 + np.sin(a) * r * (who.aspect + 0.12)])
        bend = rng.normal(0.0, 0.06, 2)
        end = start + np.array([rng.normal(0.0, 0.08), rng.uniform(0.08, 0.2)])
        canvas.stroke(curve([start, (start + end) / 2 + bend, end]), _HAIR,
                      width=0.01, alpha=0.4)


def _draw_brows(canvas: Canvas, who: Identity, expr: Expression) -> None:
    t = expr.level("brow_bulge")
    brow_color = _shade(who.skin, 1.0 - who.brow_dark)
    crease = _shade(who.skin, 0.55)
    inner_u, inner_drop = 0.12 - 0.04 * t, 0.09 * t
    marks = []
    for s in (-1, 1):
        inner = np.array([s * inner_u, who.brow_y + inner_drop])
        outer = np.array([s * (inner_u + 2 * who.brow_len), who.brow_y + 0.02 + 0.02 * t])
        mid = (inner + outer) / 2 + [0.0, -0.07 + 0.05 * t]
        canvas.stroke(curve([inner, mid, outer]), brow_color, width=who.brow_thick, alpha=0.9)
        marks.append(ellipse_points(float(mid[0]), float(mid[1]), who.brow_len + 0.06, 0.10))
    if t > 0:
        # Bulge: a darker, raised mass between and above the inner brows, with vertical furrows.
        canvas.fill(ellipse_points(0.0, who.brow_y, 0.15, 0.13), crease, alpha=0.35 * t)
        canvas.fill(ellipse_points(0.0, who.brow_y - 0.12, 0.22, 0.06), (1.0, 0.95, 0.92),
                    alpha=0.18 * t)
        for du in (-0.07, -0.025, 0.025, 0.07):
            furrow = [[du, who.brow_y - 0.11], [du * 0.7, who.brow_y], [du, who.brow_y + 0.08]]
            canvas.stroke(curve(furrow), crease, width=0.016, alpha=0.75 * t)
    if t >= 0.5:
        for m in marks:
            canvas.mark(ACTIONS.index("brow_bulge"), m)
        canvas.mark(ACTIONS.index("brow_bulge"), ellipse_points(0.0, who.brow_y, 0.16, 0.17))


def _draw_eyes(canvas: Canvas, who: Identity, expr: Expression) -> None:
    t = expr.level("eye_squeeze")
    lid = _shade(who.skin, 0.45)
    crease = _shade(who.skin, 0.6)
    for s in (-1, 1):
        cu, cv = s * who.eye_x, who.eye_y
        w = who.eye_w * (1.0 - 0.15 * t)
        if t == 0 and not expr.eyes_closed:
            upper = ellipse_points(cu, cv + 0.01, w, who.eye_h, start=180, end=360, n=24)
            lower = ellipse_points(cu, cv + 0.01, w, who.eye_h * 0.6, start=0, end=180, n=24)
            canvas.fill(np.vstack([upper, lower]), _SCLERA)
            canvas.fill(ellipse_points(cu, cv + 0.01, who.eye_h * 0.85, who.eye_h * 0.85), _IRIS)
            canvas.stroke(upper, lid, width=0.018)
            continue
        # Closed: a lash line; squeezed: tighter, thicker, shorter, with wrinkles around it.
        sag = 0.03 * (1.0 - t)
        line = curve([[cu - s * w, cv], [cu, cv + sag + 0.015 - 0.03 * t],
                      [cu + s * w, cv - 0.01 * t]])
        canvas.stroke(line, lid, width=0.014 + 0.02 * t, alpha=0.9)
        if t > 0:
            outer = np.array([cu + s * w, cv])
            for k, angle in enumerate((-25.0, 0.0, 25.0)):
                a = np.deg2rad(angle)
                d = np.array([s * np.cos(a), np.sin(a)]) * (0.07 + 0.09 * t)
                canvas.stroke(np.array([outer + d * 0.25, outer + d]), crease,
                              width=0.012, alpha=(0.35 + 0.5 * t) * (1.0 - 0.15 * k))
            bag = ellipse_points(cu, cv + 0.07, w * 0.9, 0.05, start=20, end=160, n=16)
            canvas.stroke(bag, crease, width=0.014, alpha=0.7 * t)
            canvas.stroke(ellipse_points(cu, cv - 0.06, w * 0.9, 0.04, start=200, end=340, n=16),
                          crease, width=0.012, alpha=0.6 * t)
        if t >= PRESENT:
            canvas.mark(ACTIONS.index("eye_squeeze"),
                        ellipse_points(cu + s * 0.04, cv + 0.01, w + 0.12, 0.14))


def _draw_nose(canvas: Canvas, who: Identity) -> None:
    y = who.nose_y
    canvas.fill(ellipse_points(0.0, y - 0.06, who.nose_w * 0.7, 0.08), (1.0, 0.93, 0.9), alpha=0.12)
    for s in (-1, 1):
        canvas.fill(ellipse_points(s * who.nose_w * 0.42, y, 0.035, 0.022), _shade(who.skin, 0.4),
                    alpha=0.7)
        wing = ellipse_points(s * who.nose_w * 0.7, y - 0.02, 0.05, 0.05, start=200, end=340)
        canvas.stroke(wing if s > 0 else wing * [-1, 1], _shade(who.skin, 0.7), width=0.012,
                      alpha=0.5)


def _nasolabial_curve(who: Identity, s: int, t: float) -> np.ndarray:
    start = [s * (who.nose_w + 0.04), who.nose_y - 0.03]
    mid = [s * (who.nose_w + 0.17), who.nose_y + 0.13]
    end = [s * (who.mouth_w + 0.07 + 0.05 * t), who.mouth_y + 0.02 + 0.08 * t]
    return curve([start, mid, end])


def _draw_nasolabial(canvas: Canvas, who: Identity, expr: Expression) -> None:
    t = expr.level("nasolabial_furrow")
    if t <= 0:
        return
    for s in (-1, 1):
        line = _nasolabial_curve(who, s, t)
        canvas.stroke(line, _shade(who.skin, 0.5), width=0.018 + 0.022 * t, alpha=0.2 + 0.65 * t)
        canvas.fill(np.vstack([line, line[::-1] + [s * 0.06, 0.0]]), (1.0, 0.95, 0.92),
                    alpha=0.12 * t)  # the cheek bulges beside the furrow
        if t >= PRESENT:
            canvas.mark(ACTIONS.index("nasolabial_furrow"), line, width=0.11)


def _draw_mouth(canvas: Canvas, who: Identity, expr: Expression) -> np.ndarray:
    """Draw lips (open or closed); returns the two mouth corners (image-left first)."""
    o_l, v_s, h_s = (expr.level(a) for a in ACTIONS[3:])
    w = who.mouth_w * (1.0 + 0.45 * h_s)
    gap = 0.07 * o_l + 0.22 * v_s
    drop = 0.04 * h_s + 0.03 * v_s
    lt = who.lip_thick * (1.0 - 0.35 * h_s)
    my = who.mouth_y
    lips = _mix(who.skin, (0.80, 0.38, 0.40), 0.45)
    corner_l, corner_r = np.array([-w, my + drop]), np.array([w, my + drop])
    top = curve([corner_l, [-w * 0.5, my - lt * 1.3], [w * 0.5, my - lt * 1.3], corner_r])
    if gap < 0.012:
        bottom = curve([corner_r, [w * 0.5, my + lt * 1.4], [-w * 0.5, my + lt * 1.4], corner_l])
        canvas.fill(np.vstack([top, bottom]), lips, alpha=0.8)
        canvas.stroke(curve([corner_l, [0.0, my + 0.01], corner_r]), _shade(lips, 0.55),
                      width=0.014)
    else:
        squar = 0.5 + 0.3 * h_s  # crying mouths turn square
        inner_top = curve([corner_l, [-w * squar, my - gap * 0.3], [w * squar, my - gap * 0.3],
                           corner_r])
        inner_bottom = curve([corner_r, [w * squar, my + gap * 0.7], [-w * squar, my + gap * 0.7],
                              corner_l])
        outer_bottom = inner_bottom + [0.0, lt * 1.1]
        canvas.fill(np.vstack([top, inner_bottom + [0.0, lt * 1.1]]), lips, alpha=0.85)
        canvas.fill(np.vstack([inner_top, inner_bottom]), _MOUTH_INSIDE)
        if gap > 0.1:
            canvas.fill(ellipse_points(0.0, my + gap * 0.5, w * 0.45, gap * 0.22), _TONGUE,
                        alpha=0.8)
        canvas.stroke(outer_bottom, _shade(lips, 0.8), width=0.01, alpha=0.4)
    if v_s > 0:  # a tense chin below a dropped jaw
        chin = ellipse_points(0.0, my + gap + 0.2, w * 0.6, 0.05, start=200, end=340, n=16)
        canvas.stroke(chin, _shade(who.skin, 0.6), width=0.014, alpha=0.7 * v_s)
    if o_l >= PRESENT:
        canvas.mark(ACTIONS.index("open_lips"),
                    ellipse_points(0.0, my + gap * 0.2, w + 0.05, gap / 2 + lt + 0.05))
    if v_s >= PRESENT:
        canvas.mark(ACTIONS.index("vertical_mouth_stretch"),
                    ellipse_points(0.0, my + gap * 0.45 + 0.08, w * 0.85 + 0.05, gap / 2 + 0.2))
    if h_s >= PRESENT:
        canvas.mark(ACTIONS.index("horizontal_mouth_stretch"),
                    ellipse_points(0.0, my + drop / 2 + gap * 0.2, w + 0.09, lt + 0.08 + gap * 0.3))
    return np.array([corner_l, corner_r])
