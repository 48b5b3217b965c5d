"""Generate a synthetic cohort on disk: images, manifest, action masks, perception heatmaps.

Every image is drawn from its own random stream (seed, subject, image), so the cohort is the same
byte for byte for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from neopain.data.manifest import format_box, format_keypoints, save_manifest
from neopain.data.parallel import ordered_map
from neopain.data.synthetic.canvas import Canvas
from neopain.data.synthetic.face import (
    ACTIONS, FACE_BIT, PRESENT, Expression, FaceLayout, Identity, draw_face,
)
from neopain.data.synthetic.perception import PERSONAS, perception_heatmap
from neopain.data.synthetic.scene import (
    NOISY, OCCLUDERS, SHARP, SOURCES, Source, background, clothing, draw_body, face_box_px, finish,
    occlude,
    sample_pose,
)
from neopain.errors import NeopainError

PAIN_THRESHOLD = 3
"""An image is labelled ``pain`` when at least this many actions are present (NFCS >= 3)."""

STIMULI = ("pain", "rest", "partial", "cry")
"""The ``stimulus`` column: ``pain`` (3+ actions), ``rest`` (none, or faint traces), ``partial``
(1–2 actions and faint traces: a hard no-pain case) and ``cry`` (open lips and vertical mouth
stretch without the rest: a crying-like no-pain face)."""

ACTION_PREVALENCE = np.array([0.9, 0.95, 0.7, 0.75, 0.55, 0.6])
"""How often each action (in ``ACTIONS`` order) joins a pain face, relative to the others."""

ProgressHook = Callable[[int, int], None]


@dataclass(frozen=True)
class CohortSpec:
    """What to generate.

    Attributes:
        subjects: number of subjects (at least 2, so that both sources appear).
        seed: the random seed; the same seed gives the same files.
        images_per_subject: inclusive range of images drawn per subject.
        noisy_share: share of subjects in the small noisy low-resolution source.
        pain_share: expected share of ``pain`` images.
        occluder_share: share of images with a pacifier, blanket edge or hand.
        clutter: draw tubes, leads, tape and toys in the background.
        rater_noise: how far the rater who scores each image misjudges an action: each drawn
            intensity is seen with a normal error of this standard deviation before it is
            counted present (at :data:`PRESENT`), so faces near the cut-off get the label a
            real NFCS rater might give (raters disagree there). 0 (default): ``score`` and
            ``label`` are the drawn truth. ``actions``, ``intensity`` and the masks always
            stay the drawn truth.
    """

    subjects: int = 30
    seed: int = 0
    images_per_subject: tuple[int, int] = (10, 16)
    noisy_share: float = 0.4
    pain_share: float = 0.5
    occluder_share: float = 0.2
    clutter: bool = True
    rater_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.subjects < 2:
            raise NeopainError(f"subjects={self.subjects} is too few: at least 2 are needed, "
                               "one per source")
        lo, hi = self.images_per_subject
        if not 1 <= lo <= hi:
            raise NeopainError(f"images_per_subject={self.images_per_subject} must be (lo, hi) "
                               "with 1 <= lo <= hi")
        for name in ("noisy_share", "pain_share", "occluder_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise NeopainError(f"{name}={getattr(self, name)} must lie in [0, 1]")
        if not 0.0 <= self.rater_noise <= 1.0:
            raise NeopainError(f"rater_noise={self.rater_noise} must lie in [0, 1] (a standard "
                               "deviation of action intensity, which spans 0 to 1)")


@dataclass(frozen=True)
class Subject:
    id: str
    source: Source
    identity: Identity


@dataclass(frozen=True)
class _Job:
    subject: Subject
    index: int
    stimulus: str
    seed: tuple[int, ...]


def make_subjects(spec: CohortSpec) -> list[Subject]:
    """Subjects with identities, split between the sharp and the noisy source."""
    rng = np.random.default_rng([spec.seed, 0])
    n_noisy = min(max(int(round(spec.subjects * spec.noisy_share)), 1), spec.subjects - 1)
    noisy = set(rng.permutation(spec.subjects)[:n_noisy].tolist())
    return [
        Subject(f"S{i + 1:03d}", NOISY if i in noisy else SHARP,
                Identity.sample(np.random.default_rng([spec.seed, 1, i])))
        for i in range(spec.subjects)
    ]


def sample_expression(rng: np.random.Generator, stimulus: str) -> Expression:
    """Action intensities for a stimulus; present actions lie in [0.55, 1], traces below 0.4."""
    level = dict.fromkeys(ACTIONS, 0.0)

    def faint(candidates: list[str], count: int) -> None:
        for a in rng.choice(candidates, size=min(count, len(candidates)), replace=False):
            level[str(a)] = float(rng.uniform(0.1, 0.38))

    if stimulus == "pain":
        k = int(rng.choice([3, 4, 5, 6], p=[0.35, 0.3, 0.2, 0.15]))
        chosen = rng.choice(len(ACTIONS), size=k, replace=False,
                            p=ACTION_PREVALENCE / ACTION_PREVALENCE.sum())
        for i in chosen:
            level[ACTIONS[i]] = float(rng.uniform(0.6, 1.0))
        if rng.random() < 0.3:
            faint([a for a in ACTIONS if level[a] == 0.0], 1)
        return Expression(level, eyes_closed=True)
    if stimulus == "cry":
        level["open_lips"] = float(rng.uniform(0.7, 1.0))
        level["vertical_mouth_stretch"] = float(rng.uniform(0.6, 1.0))
        if rng.random() < 0.4:
            faint(["brow_bulge", "eye_squeeze", "nasolabial_furrow", "horizontal_mouth_stretch"], 1)
        return Expression(level, eyes_closed=bool(rng.random() < 0.7))
    if stimulus == "partial":
        for i in rng.choice(len(ACTIONS), size=int(rng.integers(1, 3)), replace=False):
            level[ACTIONS[i]] = float(rng.uniform(0.55, 0.9))
        faint([a for a in ACTIONS if level[a] == 0.0], int(rng.integers(1, 4)))
        return Expression(level, eyes_closed=bool(rng.random() < 0.5))
    if stimulus == "rest":
        if rng.random() < 0.4:
            faint(list(ACTIONS), 1)
        return Expression(level, eyes_closed=bool(rng.random() < 0.4))
    raise ValueError(f"stimulus={stimulus!r} is not one of {STIMULI}")


def rate_expression(expr: Expression, noise: float, rng: np.random.Generator) -> tuple[str, ...]:
    """The actions a rater scores present on a face drawn with ``expr``: each intensity is seen
    with a normal error of standard deviation ``noise`` (the drawn ones when 0)."""
    if noise == 0.0:
        return expr.present()
    seen = np.array([expr.level(a) for a in ACTIONS]) + rng.normal(0.0, noise, len(ACTIONS))
    return tuple(a for a, level in zip(ACTIONS, seen) if level >= PRESENT)


def plan_images(spec: CohortSpec, subjects: list[Subject]) -> list[_Job]:
    """Every image the cohort draws, in order, with its subject, stimulus and seed."""
    jobs = []
    for s, subject in enumerate(subjects):
        rng = np.random.default_rng([spec.seed, 2, s])
        lo, hi = spec.images_per_subject
        for i in range(int(rng.integers(lo, hi + 1))):
            if rng.random() < spec.pain_share:
                stimulus = "pain"
            else:
                stimulus = str(rng.choice(["rest", "partial", "cry"], p=[0.45, 0.35, 0.2]))
            jobs.append(_Job(subject, i, stimulus, (spec.seed, 3, s, i)))
    return jobs


@dataclass
class Scene:
    """An image of the cohort as drawn up to its occluder: the face on its background, the
    occluder it will get ("" for none; not drawn yet) and the image's random stream, which
    then draws the occluder and the camera (``scene.finish``)."""

    rng: np.random.Generator
    canvas: Canvas
    layout: FaceLayout
    expression: Expression
    occluder: str


def draw_scene(job: _Job, spec: CohortSpec) -> Scene:
    """Draw ``job``'s image up to its occluder, exactly as the cohort draws it (a benchmark can
    then draw another occluder over the same face)."""
    rng = np.random.default_rng(list(job.seed))
    subject, source = job.subject, job.subject.source
    width, height = source.render_size
    expr = sample_expression(rng, job.stimulus)
    canvas = Canvas(background(rng, height, width, clutter=spec.clutter),
                    sample_pose(rng, source, subject.identity))
    draw_body(canvas, subject.identity, color=clothing(rng))
    layout = draw_face(canvas, subject.identity, expr)
    occluder = str(rng.choice(OCCLUDERS)) if rng.random() < spec.occluder_share else ""
    return Scene(rng, canvas, layout, expr, occluder)


def _render(job: _Job, spec: CohortSpec, out: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Draw one image with its mask and perception heatmaps and write them.

    Returns its manifest row and its heatmap path per persona.
    """
    scene = draw_scene(job, spec)
    rng, canvas, layout, expr, occluder = (scene.rng, scene.canvas, scene.layout,
                                           scene.expression, scene.occluder)
    subject, source = job.subject, job.subject.source
    width = source.render_size[0]
    if occluder:
        occlude(canvas, rng, subject.identity, occluder)
    image = finish(canvas.image, rng, source)
    mask = cv2.resize(canvas.mask, source.out_size, interpolation=cv2.INTER_NEAREST)
    k = source.out_size[0] / width
    keypoints = canvas.pose.to_px(layout.keypoints) * k

    stem = f"{subject.id}_{job.index:02d}"
    rel = {
        "image": Path("images", source.name, subject.id, f"{stem}.jpg"),
        "mask": Path("masks", source.name, subject.id, f"{stem}.png"),
    }
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, source.jpeg_quality])[1]
    _write(out / rel["image"], jpeg)
    _write(out / rel["mask"], cv2.imencode(".png", mask)[1])
    heatmaps = {}
    for p, persona in enumerate(PERSONAS):
        heat = perception_heatmap(persona, mask, keypoints, canvas.pose.scale * k,
                                  np.random.default_rng([*job.seed, 100 + p]))
        heatmaps[persona.name] = Path("perception", persona.name, source.name, f"{stem}.png")
        _write(out / heatmaps[persona.name], cv2.imencode(".png", heat)[1])

    present = expr.present()
    rated = rate_expression(expr, spec.rater_noise, np.random.default_rng([*job.seed, 200]))
    return {
        "image": rel["image"].as_posix(),
        "subject": subject.id,
        "label": "pain" if len(rated) >= PAIN_THRESHOLD else "nopain",
        "source": source.name,
        "stimulus": job.stimulus,
        "score": str(len(rated)),
        "scale": "NFCS",
        "face_box": format_box(face_box_px(canvas.pose, layout, source)),
        "keypoints": format_keypoints(keypoints),
        "mask": rel["mask"].as_posix(),
        "actions": ";".join(present),
        "intensity": json.dumps({a: round(expr.level(a), 2) for a in ACTIONS}),
        "occluder": occluder,
    }, {name: path.as_posix() for name, path in heatmaps.items()}


def _write(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())


@dataclass(frozen=True)
class CohortResult:
    """Where the cohort was written and what is in it."""

    root: Path
    manifest: Path
    perception: Path
    info: Path
    images: int
    subjects: int


def generate_cohort(out: str | os.PathLike[str], spec: CohortSpec = CohortSpec(), *,
                    workers: int = 1, on_progress: ProgressHook | None = None) -> CohortResult:
    """Write a synthetic cohort into ``out`` (created if needed).

    Writes ``manifest.csv`` (DESIGN.md schema plus ``mask``, ``actions``, ``intensity`` and
    ``occluder`` columns), ``images/``, ``masks/`` (bit i = ``ACTIONS[i]``, bit 7 = visible
    face), ``perception/`` with ``perception.csv`` in the published perception-study layout, and
    ``cohort.json`` describing all of it.

    Args:
        out: the folder to write into.
        spec: what to generate.
        workers: processes drawing images (the output does not depend on it).
        on_progress: called as ``on_progress(done, total)`` after each image.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    jobs = plan_images(spec, make_subjects(spec))
    rows: list[dict[str, str]] = []
    perception: list[dict[str, str]] = []
    render = partial(_render, spec=spec, out=root)
    with closing(ordered_map(render, jobs, workers=workers)) as drawn:
        for row, heatmaps in drawn:
            rows.append(row)
            perception += [{"file_name": Path(row["image"]).name, "heatmap_file_name": Path(h).name,
                            "persona": name, "new_percep_file_name": h,
                            "new_file_name": row["image"]} for name, h in heatmaps.items()]
            if on_progress:
                on_progress(len(rows), len(jobs))

    table = pd.DataFrame(rows)
    result = CohortResult(root, save_manifest(table, root / "manifest.csv"),
                          root / "perception.csv", root / "cohort.json", len(rows), spec.subjects)
    pd.DataFrame(perception).to_csv(result.perception, index=False, lineterminator="\n")
    result.info.write_text(json.dumps(describe(spec), indent=2) + "\n")
    return result


def describe(spec: CohortSpec) -> dict:
    """The cohort's ground-truth conventions, written to ``cohort.json``."""
    return {
        "generator": "neopain synthetic cohort (not real infants)",
        "spec": asdict(spec),
        "actions": {a: {"mask_bit": i} for i, a in enumerate(ACTIONS)},
        "face_mask_bit": FACE_BIT,
        "present_intensity": PRESENT,
        "pain_threshold": PAIN_THRESHOLD,
        "stimuli": list(STIMULI),
        "keypoints": ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"],
        "keypoints_note": "left/right as seen in the image (image-left first)",
        "occluders": list(OCCLUDERS),
        "sources": {s.name: {"out_size": list(s.out_size), "blur": s.blur, "noise": s.noise,
                             "jpeg_quality": s.jpeg_quality} for s in SOURCES},
        "personas": {p.name: {"title": p.title, "noise": p.noise, "shift": p.shift,
                              "gaze": p.gaze, "fidelity_rank": r + 1}
                     for r, p in enumerate(PERSONAS)},
    }
