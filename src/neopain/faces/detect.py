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
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neopain.data.manifest import Manifest, save_manifest
from neopain.data.outputs import write_text_atomic
from neopain.data.parallel import LOCAL, Backend
from neopain.data.tables import write_table
from neopain.errors import NeopainError
from neopain.faces.base import FaceDetector, create_detector
from neopain.faces.detect_output import MissingFace, crops_table, missing_faces, report_table
from neopain.faces.detect_worker import DetectJob, DetectSettings, detect_jobs, detect_records
from neopain.faces.resume import RECORDS, SETTINGS, is_done, load_records

logger = logging.getLogger(__name__)

ProgressHook = Callable[[int, int], None]

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


def _check(manifest: Manifest, *, out: str | os.PathLike[str], margin: float,
           size: int | None, workers: int) -> Path:
    """``out`` as a Path, after checking it and the other arguments."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and 0 <= margin <= 2):
        raise NeopainError(f"margin={margin} is not valid; valid: a share of the face box "
                           "from 0 to 2 (0.25 adds a quarter of the box on each side)")
    if size is not None and not (isinstance(size, int) and 16 <= size <= 4096):
        raise NeopainError(f"size={size} is not valid; valid: a crop side from 16 to 4096 "
                           "pixels, or None to keep the crop's own size")
    if not (isinstance(workers, int) and workers >= 1):
        raise NeopainError(f"workers={workers} is not valid; valid: a whole number >= 1")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise NeopainError(f"out={str(root)!r} is a file; valid: a folder (new, or one that "
                           "an earlier run of faces detect wrote, to resume)")
    if os.path.abspath(root) == os.path.abspath(manifest.root):
        raise NeopainError(f"out={str(root)!r} is the manifest's own folder, whose manifest.csv "
                           "would be replaced; choose another folder")
    return root


def _check_align(detector: FaceDetector, *, name: str, align: bool) -> None:
    if align and not detector.has_keypoints:
        raise NeopainError(f"align=True needs eye keypoints, which detector {name!r} "
                           "does not give; valid: a detector with keypoints "
                           "(`neopain faces list`)")


def _resume(jobs: list[DetectJob], *, root: Path,
            key: dict[str, Any]) -> list[dict[str, Any] | None]:
    """Each job's record from an earlier run with the same settings into ``root`` (None: still
    to do). Starts this run's files: ``faces.json`` written, a ``faces.jsonl`` of other
    settings removed."""
    root.mkdir(parents=True, exist_ok=True)
    earlier = load_records(root, key)
    records = [earlier[job.source] if is_done(earlier.get(job.source), source=job.source,
                                              prior_cells=job.prior_cells, crop=job.crop,
                                              root=root) else None
               for job in jobs]
    if not earlier:
        (root / RECORDS).unlink(missing_ok=True)
    write_text_atomic(root / SETTINGS, json.dumps(key, indent=2) + "\n")
    return records


def _detect_todo(todo: list[DetectJob], *, settings: DetectSettings, root: Path,
                 detector: FaceDetector, workers: int, backend: Backend, skipped: int,
                 total: int, on_progress: ProgressHook | None) -> dict[str, dict[str, Any]]:
    """Records of the jobs still to do, by image, each appended to ``faces.jsonl`` as it
    finishes (``skipped`` of ``total`` rows were done before)."""
    new: dict[str, dict[str, Any]] = {}
    records = detect_records(todo, settings=settings, root=root, detector=detector,
                             workers=min(workers, max(len(todo), 1)), backend=backend)
    with (root / RECORDS).open("a", encoding="utf-8") as log, closing(records):
        for done, record in enumerate(records, start=skipped + 1):
            log.write(json.dumps(record) + "\n")
            log.flush()
            new[record["image"]] = record
            if on_progress:
                on_progress(done, total)
    return new


def _result(manifest: Manifest, jobs: list[DetectJob], records: list[dict[str, Any]], *,
            root: Path, keep_missing: bool, landmarks: bool, skipped: int, times: list[float],
            start: float) -> DetectResult:
    """Write faces.jsonl whole, manifest.csv and no_face.csv; what was found."""
    write_text_atomic(root / RECORDS, "".join(json.dumps(r) + "\n" for r in records))
    table = crops_table(manifest, records=records, root=root, keep_missing=keep_missing)
    missing = missing_faces(jobs, records=records)
    statuses = Counter(record["status"] for record in records)
    return DetectResult(
        root=root, manifest=save_manifest(table, root / "manifest.csv"),
        report=write_table(report_table(missing), root / "no_face.csv"), images=len(jobs),
        faces=statuses["face"], no_face=statuses["no_face"], unreadable=statuses["unreadable"],
        skipped=skipped, rows=len(table), seconds=time.perf_counter() - start,
        detect_ms=statistics.median(times) if times else None,
        no_landmarks=sum(r["status"] == "face" and landmarks and not r["landmarks"]
                         for r in records), missing=missing)


def detect_faces(manifest: Manifest, *, detector: str, out: str | os.PathLike[str],
                 margin: float = 0.25, size: int | None = 224, landmarks: bool = False,
                 keep_missing: bool = False, align: bool = False, workers: int = 1,
                 on_progress: ProgressHook | None = None,
                 detector_options: Mapping[str, Any] | None = None,
                 backend: Backend = LOCAL) -> DetectResult:
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
        backend: where the images are detected: this machine's ``workers`` processes, or a Ray
            cluster's actors (``parallel.Backend``); the files written are the same.

    Raises:
        NeopainError: bad arguments, a detector that cannot be built (``DetectorError``), or
            a detector failing on an image (naming its manifest line).
    """
    root = _check(manifest, out=out, margin=margin, size=size, workers=workers)
    settings = DetectSettings(detector=detector, options=dict(detector_options or {}),
                              margin=float(margin), size=size, landmarks=landmarks, align=align)
    start = time.perf_counter()
    jobs = detect_jobs(manifest)
    with create_detector(detector, **settings.options) as built:  # bad names, options fail here
        _check_align(built, name=detector, align=align)
        records = _resume(jobs, root=root, key=settings.key())
        todo = [job for job, record in zip(jobs, records) if record is None]
        skipped = len(jobs) - len(todo)
        logger.info("faces detect: %d images, %d done before, detector %s", len(jobs), skipped,
                    detector)
        if on_progress:
            on_progress(skipped, len(jobs))
        new = _detect_todo(todo, settings=settings, root=root, detector=built, workers=workers,
                           backend=backend, skipped=skipped, total=len(jobs),
                           on_progress=on_progress)
    records = [record or new[job.source] for job, record in zip(jobs, records)]
    return _result(manifest, jobs, records, root=root, keep_missing=keep_missing,
                   landmarks=landmarks, skipped=skipped,
                   times=[r["detect_ms"] for r in new.values() if "detect_ms" in r], start=start)
