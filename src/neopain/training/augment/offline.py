"""Offline augmentation: N copies of each training image of one fold, with their manifest."""

from __future__ import annotations

import logging
import os
from contextlib import closing
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd

from neopain.training.augment.transform import (
    JPEG_QUALITY,
    AugmentedSample,
    Augmenter,
    AugmentSpec,
    ProgressHook,
    check_count,
    copy_rng,
)
from neopain.data.files import os_error_reason
from neopain.data.images import ImageReadError, read_image
from neopain.data.manifest import Manifest, format_box, format_keypoints, save_manifest
from neopain.data.outputs import output_stems
from neopain.data.parallel import LOCAL, Backend, ordered_map
from neopain.errors import NeopainError

if TYPE_CHECKING:
    from neopain.data.folds import FoldPlan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentResult:
    """What ``augment_fold`` wrote.

    ``skipped``: rows of validation, test or other subjects (never augmented); ``redraws``:
    draws rejected because a keypoint left the image; ``fallbacks``: copies for which no draw of
    ``max_attempts`` kept the keypoints inside; ``unreadable``: why each training image that
    could not be read has no copies (manifest line, path, reason).
    """

    root: Path
    manifest: Path
    fold: int
    subjects: int
    source_images: int
    images: int
    skipped: int
    redraws: int
    fallbacks: int
    unreadable: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Job:
    line: int
    source: str
    image: str
    outputs: tuple[str, ...]
    keypoints: np.ndarray | None
    box: tuple[float, float, float, float] | None


def _train_subjects(plan: FoldPlan, fold: int) -> set[str]:
    """The training subjects of fold ``fold``, after checking that none is also held out."""
    folds = {f.index: f for f in plan.folds}
    if fold not in folds:
        indices = sorted(folds)
        valid = ("none (the plan has no folds)" if not indices
                 else f"{indices[0]} to {indices[-1]}"
                 if indices == list(range(indices[0], indices[-1] + 1))
                 else ", ".join(map(str, indices)))
        raise NeopainError(f"fold={fold} is out of range; valid: {valid}")
    train = set(folds[fold].train)
    leaked = sorted(train & (set(folds[fold].val) | set(folds[fold].test)))
    if leaked:
        raise NeopainError(f"fold {fold} lists subjects both in train and in validation or test "
                           f"({', '.join(leaked[:5])}); remake the folds (`neopain folds make`)")
    return train


def _augment_job(job: _Job, *, spec: AugmentSpec, seed: int,
                 out: Path) -> list[AugmentedSample] | ImageReadError:
    """Write one image's copies; returns their samples without pixels (cheap to send back), or
    why the image cannot be read (the other images go on)."""
    where = f"manifest line {job.line}, image {job.image!r}"
    try:
        image = read_image(job.source)
    except ImageReadError as error:
        return ImageReadError(where, error.reason)
    augmenter = Augmenter(spec)
    samples = []
    for copy, output in enumerate(job.outputs, start=1):
        try:
            sample = augmenter(image, job.keypoints, job.box, rng=copy_rng(seed, job.image, copy))
        except NeopainError as error:
            raise NeopainError(f"{where}, column 'keypoints': {error}") from None
        _, data = cv2.imencode(".jpg", sample.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        (out / output).parent.mkdir(parents=True, exist_ok=True)
        (out / output).write_bytes(data.tobytes())
        samples.append(replace(sample, image=np.empty(0, np.uint8)))
    return samples


def _check_out(out: str | os.PathLike[str], *, manifest: Manifest, overwrite: bool) -> Path:
    """``out`` as a Path, refused when it is a file, the manifest's folder, or (without
    ``overwrite``) a folder that is not empty."""
    root = Path(out)
    if os.path.lexists(root) and not os.path.isdir(root):  # never raise, unlike Path.exists
        raise NeopainError(f"out={str(root)!r} is a file; valid: a new or empty folder")
    if os.path.abspath(root) == os.path.abspath(manifest.root):
        raise NeopainError(f"out={str(root)!r} is the manifest's own folder, whose manifest.csv "
                           "would be replaced; choose another folder")
    if os.path.isdir(root) and any(root.iterdir()) and not overwrite:
        raise NeopainError(f"out={str(root)!r} is not empty; choose a new folder, or allow "
                           "replacing its files (--overwrite)")
    return root


def _training_rows(manifest: Manifest, plan: FoldPlan, *, fold: int) -> list[int]:
    """The manifest rows of the fold's training subjects (at least one)."""
    train = _train_subjects(plan, fold)
    picked = [i for i, subject in enumerate(manifest.table["subject"]) if subject in train]
    if not picked:
        raise NeopainError(f"fold {fold} has no training images in this manifest ({len(train)} "
                           "training subjects); were the folds made from another manifest?")
    return picked


def _jobs(manifest: Manifest, picked: list[int], *, n: int) -> list[_Job]:
    """One job per picked row: its ``n`` output names, keypoints and face box."""
    table = manifest.table
    images = [table["image"].iat[i] for i in picked]
    subjects = [table["subject"].iat[i] for i in picked]
    stems = [f"images/{stem}" for stem in output_stems(images, subjects)]
    digits = max(2, len(str(n)))
    boxes, points = manifest.boxes(), manifest.keypoints()
    return [_Job(line=i + 2, source=os.path.abspath(manifest.image_path(i)), image=image,
                 outputs=tuple(f"{stem}_aug{copy:0{digits}d}.jpg" for copy in range(1, n + 1)),
                 keypoints=None if np.isnan(points[i]).any() else points[i],
                 box=None if np.isnan(boxes[i]).any() else tuple(boxes[i].tolist()))
            for i, image, stem in zip(picked, images, stems)]


_KEPT_COLUMNS = ("subject", "label", "source", "stimulus", "score", "scale", "video", "time_s")
"""Columns copied from an image's row to its copies' rows."""


@dataclass
class _Copies:
    """The augmented copies' manifest rows and counts, gathered image by image."""

    root: Path
    fold: int
    rows: list[dict[str, str]] = field(default_factory=list)
    redraws: int = 0
    fallbacks: int = 0
    unreadable: list[str] = field(default_factory=list)

    def add(self, row: pd.Series, job: _Job,
            samples: list[AugmentedSample] | ImageReadError) -> None:
        """The rows of one image's copies (``row``: the image's manifest row)."""
        if isinstance(samples, ImageReadError):
            self.unreadable.append(str(samples))
            return
        original = Path(os.path.relpath(job.source, os.path.abspath(self.root))).as_posix()
        for copy, (output, sample) in enumerate(zip(job.outputs, samples), start=1):
            self.rows.append({"image": output, **{c: row[c] for c in _KEPT_COLUMNS},
                              "face_box": format_box(sample.box),
                              "keypoints": format_keypoints(sample.keypoints),
                              "augmented_from": original, "fold": str(self.fold),
                              "copy": str(copy)})
            self.redraws += sample.attempts - (not sample.fallback)
            self.fallbacks += sample.fallback


def augment_fold(manifest: Manifest, plan: FoldPlan, *, fold: int, out: str | os.PathLike[str],
                 n: int = 20, spec: AugmentSpec = AugmentSpec(), seed: int = 0, workers: int = 1,
                 overwrite: bool = False, on_progress: ProgressHook | None = None,
                 backend: Backend = LOCAL) -> AugmentResult:
    """Write ``n`` augmented copies of every training image of one fold, and their manifest.

    Only rows of the fold's training subjects are augmented, never validation or test ones.
    Writes ``out/images/<subject>/<stem>_augNN.jpg`` (NN = 01..n) and ``out/manifest.csv``, a
    valid manifest of the copies: image, subject, label, source, stimulus, score, scale, video,
    time_s, the moved face_box and keypoints, plus ``augmented_from`` (the original image,
    relative to ``out``), ``fold`` and ``copy``. Landmarks and other per-image files are not
    transformed, so they are left out. The same seed gives the same bytes for any ``workers``.

    Args:
        manifest: the manifest the folds were made from.
        plan: its folds (``neopain.data.folds.load_folds(path, manifest=manifest)``).
        fold: the index of the fold.
        out: a new or empty folder; not the manifest's own folder.
        n: augmented copies per training image.
        spec: the random transform.
        seed: the seed; each copy's randomness comes from (seed, image path, copy number).
        workers: processes augmenting images (the output does not depend on it).
        overwrite: allow a non-empty ``out``; files of the same name are replaced.
        on_progress: called as ``on_progress(done, total)`` in augmented images.
        backend: where the images are augmented: this machine's ``workers`` processes, or a Ray
            cluster's actors (``parallel.Backend``); the bytes written are the same.

    Raises:
        NeopainError: bad ``fold``, ``n``, ``workers`` or ``out``; a fold without training
            images, or none of them readable; keypoints outside an image (naming the manifest
            line). An unreadable image is skipped and listed in ``unreadable``.
    """
    check_count("n", n)
    check_count("workers", workers)
    root = _check_out(out, manifest=manifest, overwrite=overwrite)
    picked = _training_rows(manifest, plan, fold=fold)
    jobs = _jobs(manifest, picked, n=n)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NeopainError(f"out={str(root)!r}: {os_error_reason(error)}; valid: a new or "
                           "empty folder") from None
    if on_progress:
        on_progress(0, n * len(jobs))
    copies = _Copies(root, fold)
    augment = partial(_augment_job, spec=spec, seed=seed, out=root.absolute())
    with closing(ordered_map(augment, jobs, workers=workers, backend=backend)) as results:
        for i, job, samples in zip(picked, jobs, results):
            copies.add(manifest.table.iloc[i], job, samples)
            if on_progress:
                on_progress(len(copies.rows), n * len(jobs))
    if not copies.rows:
        raise NeopainError(f"none of the {len(jobs)} training images of fold {fold} can be "
                           f"read; the first: {copies.unreadable[0]}")
    path = save_manifest(pd.DataFrame(copies.rows), root / "manifest.csv")
    logger.info("fold %d: %d augmented images of %d training images, %d fallbacks, %d "
                "unreadable", fold, len(copies.rows), len(jobs), copies.fallbacks,
                len(copies.unreadable))
    table = manifest.table
    return AugmentResult(root=root, manifest=path, fold=fold,
                         subjects=len({table["subject"].iat[i] for i in picked}),
                         source_images=len(jobs), images=len(copies.rows),
                         skipped=len(table) - len(picked), redraws=copies.redraws,
                         fallbacks=copies.fallbacks, unreadable=tuple(copies.unreadable))
