"""Faces over a whole manifest: detect, choose the subject's face, crop, optional dense landmarks.

``detect_faces`` writes, under ``out``:

- ``crops/<subject>/<stem>.jpg``: the square crop (with margin, resized) around each image's
  chosen face (``neopain.faces.base.choose_face``);
- ``landmarks/<subject>/<stem>.npy`` (with ``landmarks=True``): the face mesh found on the CROP,
  in crop pixels (the crop is what later stages see; the mesh also works best on a centred face);
- ``manifest.csv``: a manifest of the CROPS. ``face_box`` and ``keypoints`` are in crop pixels;
  ``original_image`` (relative to ``out``), ``original_face_box`` (original pixels) and
  ``face_score`` keep what was found in the original image. Other columns are copied; ``video``
  is rewritten to start at ``out``; paths in unknown columns are copied as they are;
- ``no_face.csv``: ``line, image, status, reason`` for every image left out: ``no_face`` (nothing
  at or above the detector's threshold) or ``unreadable`` (corrupt, truncated, missing, ...);
- ``faces.json`` (the settings) and ``faces.jsonl`` (one record per finished image, appended as
  images finish). A rerun into the same ``out`` skips images whose record matches: same
  settings, same image file (size and modification time), same prior box, crop still on disk.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from neopain.data.manifest import (
    Manifest,
    format_box,
    format_keypoints,
    parse_box,
    parse_keypoints,
    save_manifest,
    sha256_file,
)
from neopain.data.outputs import output_stems
from neopain.data.tables import write_table
from neopain.errors import NeopainError
from neopain.faces.base import Face, FaceDetector, choose_face, create_detector
from neopain.faces.crop import crop_face
from neopain.data.images import ImageReadError, read_image
from neopain.faces.landmarks import FaceMesh, keypoints_from_landmarks, save_landmarks
from neopain.faces.resume import RECORDS, SETTINGS, is_done, load_records, stamp

logger = logging.getLogger(__name__)

ProgressHook = Callable[[int, int], None]
JPEG_QUALITY = 95
REPORT_COLUMNS = ("line", "image", "status", "reason")


@dataclass(frozen=True)
class MissingFace:
    """An image left out of the crops manifest: ``status`` is ``no_face`` or ``unreadable``."""

    line: int
    image: str
    status: str
    reason: str


@dataclass(frozen=True)
class DetectResult:
    """What ``detect_faces`` wrote and found.

    ``images``: manifest rows; ``faces``/``no_face``/``unreadable``: rows by outcome (done
    before or now); ``skipped``: rows already done by an earlier run; ``rows``: rows in the new
    manifest; ``detect_ms``: median detector time per image processed now (None if none);
    ``no_landmarks``: crops on which the face mesh found nothing (``landmarks=True``).
    """

    root: Path
    manifest: Path
    report: Path
    images: int
    faces: int
    no_face: int
    unreadable: int
    skipped: int
    rows: int
    seconds: float
    detect_ms: float | None
    no_landmarks: int
    missing: list[MissingFace] = field(default_factory=list)

    @property
    def processed(self) -> int:
        """Rows processed by this run (not skipped)."""
        return self.images - self.skipped


@dataclass(frozen=True)
class _Settings:
    detector: str
    options: dict[str, Any]
    margin: float
    size: int | None
    landmarks: bool
    align: bool

    def key(self) -> dict[str, Any]:
        """The settings as JSON; a model file counts by its content."""
        options = {name: str(value) if isinstance(value, os.PathLike) else value
                   for name, value in sorted(self.options.items())}
        files = {name: sha256_file(value) for name, value in self.options.items()
                 if isinstance(value, (str, os.PathLike)) and Path(value).is_file()}
        return {"detector": self.detector, "options": options, "option_files": files,
                "margin": self.margin, "size": self.size, "landmarks": self.landmarks,
                "align": self.align}


@dataclass(frozen=True)
class _Job:
    line: int
    image: str
    source: str
    prior: Face | None
    prior_cells: tuple[str, str]
    crop: str
    landmarks: str


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _crop_box(matrix: np.ndarray, box: tuple[float, float, float, float]) -> list[float]:
    """The box's corners through the crop's affine map; their bounding box (crop pixels)."""
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]], dtype=float)
    moved = corners @ np.asarray(matrix, float)[:, :2].T + np.asarray(matrix, float)[:, 2]
    return [*moved.min(axis=0).tolist(), *moved.max(axis=0).tolist()]


class _Worker:
    """Processes jobs with one detector (and face mesh) built once per process."""

    def __init__(self, settings: _Settings, out: Path,
                 detector: FaceDetector | None = None) -> None:
        self.settings = settings
        self.out = out
        self._resources = ExitStack()
        self.detector = self._resources.enter_context(
            detector or create_detector(settings.detector, **settings.options))
        self.mesh = (self._resources.enter_context(FaceMesh(video=False))
                     if settings.landmarks else None)

    def close(self) -> None:
        self._resources.close()

    def __call__(self, job: _Job) -> dict[str, Any]:
        record: dict[str, Any] = {"image": job.source, "stamp": stamp(job.source),
                                  "prior": list(job.prior_cells), "crop": job.crop}
        try:
            image = read_image(job.source)
        except ImageReadError as error:
            return {**record, "status": "unreadable", "reason": str(error.reason)}
        start = time.perf_counter()
        try:
            faces = self.detector.detect(image, prior=job.prior)
        except NeopainError as error:
            raise NeopainError(f"manifest line {job.line}, image {job.image!r}: {error}") from None
        record["detect_ms"] = 1000 * (time.perf_counter() - start)
        face = choose_face(faces, image_shape=image.shape)
        if face is None:
            reason = ("the manifest has no face_box on this row" if self.settings.detector ==
                      "manifest" else f"no face scored at or above the detector's threshold "
                      f"{self.detector.threshold_:g}")
            return {**record, "status": "no_face", "reason": reason}
        size = None if self.settings.size is None else (self.settings.size,) * 2
        crop = crop_face(image, face.box, margin=self.settings.margin, size=size,
                         keypoints=face.keypoints,
                         align=self.settings.align and face.keypoints is not None)
        keypoints = crop.keypoints
        landmarks = ""
        if self.mesh is not None:
            points = self.mesh.landmarks(crop.image)
            if points is not None:
                save_landmarks(points, self.out / job.landmarks)
                landmarks = job.landmarks
                if keypoints is None:
                    keypoints = keypoints_from_landmarks(points)
        ok, data = cv2.imencode(".jpg", crop.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise NeopainError(f"manifest line {job.line}: the crop of {job.image!r} could not "
                               "be encoded as JPEG")
        _write_atomic(self.out / job.crop, data.tobytes())
        return {**record, "status": "face", "reason": "", "score": float(face.score),
                "box": format_box(face.box), "crop_box": format_box(_crop_box(crop.matrix,
                                                                               face.box)),
                "keypoints": format_keypoints(keypoints), "landmarks": landmarks}


_PROCESS_WORKER: _Worker | None = None


def _start_process_worker(settings: _Settings, out: Path) -> None:
    """Pool initializer: one detector per worker process (detectors hold native graphs); it
    lives as long as the process."""
    global _PROCESS_WORKER
    _PROCESS_WORKER = _Worker(settings, out)


def _run_in_process_worker(job: _Job) -> dict[str, Any]:
    if _PROCESS_WORKER is None:
        raise RuntimeError("a worker process started without its initializer")
    return _PROCESS_WORKER(job)


def _jobs(manifest: Manifest) -> list[_Job]:
    table = manifest.table
    stems = output_stems(list(table["image"]), list(table["subject"]))
    jobs = []
    for i, stem in enumerate(stems):
        box_cell, points_cell = table["face_box"].iat[i], table["keypoints"].iat[i]
        box = parse_box(box_cell)
        prior = None if box is None else Face(box, 1.0, parse_keypoints(points_cell))
        jobs.append(_Job(line=i + 2, image=table["image"].iat[i],
                         source=os.path.abspath(manifest.image_path(i)), prior=prior,
                         prior_cells=(box_cell, points_cell), crop=f"crops/{stem}.jpg",
                         landmarks=f"landmarks/{stem}.npy"))
    return jobs


def _relative(path: str | os.PathLike[str], root: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def _manifest_row(row: dict[str, str], record: dict[str, Any], *, manifest: Manifest,
                  root: Path) -> dict[str, str]:
    original = _relative(record["image"], root)
    video = row["video"] and _relative(manifest.root / row["video"], root)
    cells = {**row, "video": video, "original_image": original}
    if record["status"] != "face":  # kept with --keep-missing: the original image, no box
        return {**cells, "image": original, "face_box": "", "keypoints": "", "landmarks": "",
                "original_face_box": "", "face_score": ""}
    return {**cells, "image": record["crop"], "face_box": record["crop_box"],
            "keypoints": record["keypoints"], "landmarks": record["landmarks"],
            "original_face_box": record["box"], "face_score": f"{record['score']:.4f}"}


def _check(margin: float, size: int | None, workers: int) -> None:
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and 0 <= margin <= 2):
        raise NeopainError(f"margin={margin} is not valid; valid: a share of the face box "
                           "from 0 to 2 (0.25 adds a quarter of the box on each side)")
    if size is not None and not (isinstance(size, int) and 16 <= size <= 4096):
        raise NeopainError(f"size={size} is not valid; valid: a crop side from 16 to 4096 "
                           "pixels, or None to keep the crop's own size")
    if not (isinstance(workers, int) and workers >= 1):
        raise NeopainError(f"workers={workers} is not valid; valid: a whole number >= 1")


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C while worker processes start, so that they are born ignoring it (a worker
    interrupted while importing prints a traceback); the parent stops the pool instead."""
    main = threading.current_thread() is threading.main_thread()  # signals: main thread only
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _outcomes(jobs: list[_Job], *, settings: _Settings, root: Path, workers: int,
              detector: FaceDetector) -> Iterator[dict[str, Any]]:
    """Records of ``jobs`` in order."""
    if workers == 1:
        worker = _Worker(settings, root, detector)
        try:
            yield from map(worker, jobs)
        finally:
            worker.close()
        return
    detector.close()
    # spawn, not fork: MediaPipe and ONNX Runtime start native threads that fork does not copy
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(
        "spawn"), initializer=_start_process_worker, initargs=(settings, root))
    try:
        with _sigint_ignored():  # the workers start during map and keep Ctrl-C ignored
            results = pool.map(_run_in_process_worker, jobs)
        yield from results
    except BrokenProcessPool:
        raise NeopainError("a worker process died (out of memory?); run again to resume, with "
                           "fewer workers") from None
    finally:  # stopped early (an error, Ctrl-C): jobs not yet started are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def detect_faces(manifest: Manifest, *, detector: str, out: str | os.PathLike[str],
                 margin: float = 0.25, size: int | None = 224, landmarks: bool = False,
                 keep_missing: bool = False, align: bool = False, workers: int = 1,
                 on_progress: ProgressHook | None = None,
                 detector_options: Mapping[str, Any] | None = None) -> DetectResult:
    """Detect, choose and crop the subject's face in every image of a manifest (see module doc).

    >>> detect_faces(load_manifest("cohort/manifest.csv"), detector="mediapipe-short",
    ...              out="cohort/faces", landmarks=True, workers=2)  # doctest: +SKIP

    Args:
        manifest: the images; a row's ``face_box``/``keypoints`` are the ``prior`` given to
            the detector (the ``manifest`` detector returns it).
        detector: a registered detector name (``neopain.faces.base.list_detectors``).
        out: the folder to write into; a rerun into it resumes. Not the manifest's folder.
        margin: added to each side of the face box as a share of its size, before squaring.
        size: side of the square crops in pixels; None keeps each crop's own size.
        landmarks: also run the face mesh on each crop; where the detector gives no keypoints,
            the 5 keypoints come from the mesh.
        keep_missing: keep images without a face in the manifest, pointing to the original
            image with an empty box (unreadable images are never kept).
        align: rotate each crop so that the eyes lie level (needs a detector with keypoints;
            a ``manifest`` row without keypoints is cropped unrotated).
        workers: processes, each building its own detector; the output does not depend on it.
        on_progress: called as ``on_progress(done, total)`` over the manifest rows.
        detector_options: passed to ``create_detector`` (e.g. ``threshold``, ``model``).

    Raises:
        NeopainError: bad arguments, a detector that cannot be built (``DetectorError``), or
            a detector failing on an image (naming its manifest line).
    """
    _check(margin, size, workers)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise NeopainError(f"out={str(root)!r} is a file; valid: a folder (new, or one that "
                           "an earlier run of faces detect wrote, to resume)")
    if os.path.abspath(root) == os.path.abspath(manifest.root):
        raise NeopainError(f"out={str(root)!r} is the manifest's own folder, whose manifest.csv "
                           "would be replaced; choose another folder")
    settings = _Settings(detector=detector, options=dict(detector_options or {}),
                         margin=float(margin), size=size, landmarks=landmarks, align=align)
    start = time.perf_counter()
    jobs = _jobs(manifest)
    new: dict[str, dict[str, Any]] = {}
    with create_detector(detector, **settings.options) as built:  # bad names, options fail here
        if align and not built.has_keypoints:
            raise NeopainError(f"align=True needs eye keypoints, which detector {detector!r} "
                               "does not give; valid: a detector with keypoints "
                               "(`neopain faces list`)")
        key = settings.key()
        root.mkdir(parents=True, exist_ok=True)
        earlier = load_records(root, key)
        records: list[dict[str, Any] | None] = [
            earlier[job.source] if is_done(earlier.get(job.source), source=job.source,
                                        prior_cells=job.prior_cells, crop=job.crop,
                                        root=root) else None
            for job in jobs]
        todo = [job for job, record in zip(jobs, records) if record is None]
        skipped = len(jobs) - len(todo)
        if not earlier:
            (root / RECORDS).unlink(missing_ok=True)
        _write_atomic(root / SETTINGS, (json.dumps(key, indent=2) + "\n").encode())
        logger.info("faces detect: %d images, %d done before, detector %s", len(jobs), skipped,
                    detector)
        if on_progress:
            on_progress(skipped, len(jobs))
        outcomes = _outcomes(todo, settings=settings, root=root, detector=built,
                             workers=min(workers, max(len(todo), 1)))
        with (root / RECORDS).open("a", encoding="utf-8") as log, closing(outcomes):
            for done, record in enumerate(outcomes, start=skipped + 1):
                log.write(json.dumps(record) + "\n")
                log.flush()
                new[record["image"]] = record
                if on_progress:
                    on_progress(done, len(jobs))
    records = [record or new[job.source] for job, record in zip(jobs, records)]
    _write_atomic(root / RECORDS, "".join(json.dumps(r) + "\n" for r in records).encode())
    kept = [i for i, r in enumerate(records)
            if r["status"] == "face" or (keep_missing and r["status"] == "no_face")]
    extra = [c for c in ("original_image", "original_face_box", "face_score")
             if c not in manifest.table.columns]
    table = pd.DataFrame([_manifest_row(manifest.table.iloc[i].to_dict(), records[i],
                                        manifest=manifest, root=root) for i in kept],
                         columns=[*manifest.table.columns, *extra])
    missing = [MissingFace(job.line, job.image, r["status"], r["reason"])
               for job, r in zip(jobs, records) if r["status"] != "face"]
    report = pd.DataFrame([[str(m.line), m.image, m.status, m.reason] for m in missing],
                          columns=list(REPORT_COLUMNS), dtype=str)
    statuses = Counter(record["status"] for record in records)
    times = [r["detect_ms"] for r in new.values() if "detect_ms" in r]
    return DetectResult(
        root=root, manifest=save_manifest(table, root / "manifest.csv"),
        report=write_table(report, root / "no_face.csv"), images=len(jobs),
        faces=statuses["face"], no_face=statuses["no_face"], unreadable=statuses["unreadable"],
        skipped=skipped, rows=len(kept), seconds=time.perf_counter() - start,
        detect_ms=statistics.median(times) if times else None,
        no_landmarks=sum(r["status"] == "face" and landmarks and not r["landmarks"]
                         for r in records), missing=missing)
