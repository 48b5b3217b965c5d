"""``faces detect``'s work per image: the jobs, the worker that detects, crops and writes one
image, and the runner that feeds jobs to it here or in worker processes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from neopain.data.images import ImageReadError, read_image
from neopain.data.manifest import (
    Manifest,
    format_box,
    format_keypoints,
    parse_box,
    parse_keypoints,
    sha256_file,
)
from neopain.data.outputs import atomic_output, output_stems
from neopain.data.parallel import (
    LOCAL, Backend, WorkerDiedError, keep_worker_state, ordered_map, worker_state,
)
from neopain.errors import NeopainError
from neopain.faces.base import Face, FaceDetector, choose_face, create_detector, detector_class
from neopain.faces.crop import crop_face
from neopain.faces.landmarks import FaceMesh, keypoints_from_landmarks, save_landmarks
from neopain.faces.resume import stamp

JPEG_QUALITY = 95


@dataclass(frozen=True)
class DetectSettings:
    """The settings of a ``faces detect`` run (what a resumed run must share)."""

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
        files = {name: sha256_file(path) for name, path in
                 detector_class(self.detector).files_read(self.options).items()}
        return {"detector": self.detector, "options": options, "option_files": files,
                "margin": self.margin, "size": self.size, "landmarks": self.landmarks,
                "align": self.align}


@dataclass(frozen=True)
class DetectJob:
    """One manifest row to do: its image, its prior face and where its outputs go."""

    line: int
    image: str
    source: str
    prior: Face | None
    prior_cells: tuple[str, str]
    crop: str
    landmarks: str


def detect_jobs(manifest: Manifest) -> list[DetectJob]:
    """One job per manifest row, in order."""
    table = manifest.table
    stems = output_stems(list(table["image"]), list(table["subject"]))
    jobs = []
    for i, stem in enumerate(stems):
        box_cell, points_cell = table["face_box"].iat[i], table["keypoints"].iat[i]
        box = parse_box(box_cell)
        prior = None if box is None else Face(box, 1.0, parse_keypoints(points_cell))
        jobs.append(DetectJob(line=i + 2, image=table["image"].iat[i],
                              source=os.path.abspath(manifest.image_path(i)), prior=prior,
                              prior_cells=(box_cell, points_cell), crop=f"crops/{stem}.jpg",
                              landmarks=f"landmarks/{stem}.npy"))
    return jobs


def _crop_box(matrix: np.ndarray, box: tuple[float, float, float, float]) -> list[float]:
    """The box's corners through the crop's affine map; their bounding box (crop pixels)."""
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]], dtype=float)
    moved = corners @ np.asarray(matrix, float)[:, :2].T + np.asarray(matrix, float)[:, 2]
    return [*moved.min(axis=0).tolist(), *moved.max(axis=0).tolist()]


class DetectWorker:
    """Processes jobs with one detector (and face mesh); ``close`` releases both.

    ``open`` builds them from the settings; the constructor only stores what it is given.

    Args:
        settings: the run's settings.
        out: the folder crops and landmarks are written under.
        detector: the face detector (closed by ``close``).
        mesh: the face mesh run on each crop (closed by ``close``); None: no landmarks.
    """

    def __init__(self, settings: DetectSettings, *, out: Path, detector: FaceDetector,
                 mesh: FaceMesh | None = None) -> None:
        self.settings = settings
        self.out = out
        self.detector = detector
        self.mesh = mesh

    @classmethod
    def open(cls, settings: DetectSettings, *, out: Path,
             detector: FaceDetector | None = None) -> DetectWorker:
        """A worker with ``detector`` (None: the one ``settings`` names, built here) and, when
        ``settings.landmarks``, a face mesh.

        Raises:
            DetectorError: a detector that cannot be built.
        """
        detector = detector or create_detector(settings.detector, **settings.options)
        return cls(settings, out=out, detector=detector,
                   mesh=FaceMesh(video=False) if settings.landmarks else None)

    def close(self) -> None:
        """Release the face mesh and the detector."""
        with ExitStack() as resources:
            resources.callback(self.detector.close)
            if self.mesh is not None:
                resources.callback(self.mesh.close)

    def __call__(self, job: DetectJob) -> dict[str, Any]:
        """The job's record (``faces.jsonl``), its crop and landmarks written."""
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
            return {**record, "status": "no_face", "reason": self._no_face_reason()}
        return {**record, **self._crop(job, image, face)}

    def _no_face_reason(self) -> str:
        if self.settings.detector == "manifest":
            return "the manifest has no face_box on this row"
        return (f"no face scored at or above the detector's threshold "
                f"{self.detector.threshold_:g}")

    def _crop(self, job: DetectJob, image: np.ndarray, face: Face) -> dict[str, Any]:
        """Crop ``face``, find its landmarks, write both; the record's fields for them."""
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
        with atomic_output(self.out / job.crop) as partial:
            partial.write_bytes(data.tobytes())
        return {"status": "face", "reason": "", "score": float(face.score),
                "box": format_box(face.box), "crop_box": format_box(_crop_box(crop.matrix,
                                                                               face.box)),
                "keypoints": format_keypoints(keypoints), "landmarks": landmarks}


def _open_process_worker(settings: DetectSettings, out: Path) -> DetectWorker:
    """One detector per worker process or actor (detectors hold native graphs), kept as long
    as it lives (``parallel.keep_worker_state``)."""
    return DetectWorker.open(settings, out=out)


def _run_in_process_worker(job: DetectJob) -> dict[str, Any]:
    return worker_state()(job)


def detect_records(jobs: list[DetectJob], *, settings: DetectSettings, root: Path, workers: int,
                   detector: FaceDetector, backend: Backend = LOCAL) -> Iterator[dict[str, Any]]:
    """Records of ``jobs`` in order: here with ``detector`` (``workers=1``), or in ``workers``
    processes (or the Ray actors of ``backend``) that each build their own (``detector`` is
    closed first). Close the iterator when you stop before its end.

    Raises:
        NeopainError: a detector failing on an image; a worker process that died.
    """
    if workers == 1 and not backend.is_ray:
        with closing(DetectWorker.open(settings, out=root, detector=detector)) as worker:
            yield from ordered_map(worker, jobs, workers=1)
        return
    detector.close()
    try:
        # spawn, not fork: MediaPipe and ONNX Runtime start native threads that fork does not
        # copy; absolute: a Ray actor does not run in this folder
        yield from ordered_map(_run_in_process_worker, jobs, workers=workers,
                               initializer=keep_worker_state,
                               initargs=(_open_process_worker, settings, root.absolute()),
                               start_method="spawn", backend=backend)
    except WorkerDiedError:
        if backend.is_ray:
            raise  # it says what was lost: an actor or a node
        raise NeopainError("a worker process died (out of memory?); run again to resume, with "
                           "fewer workers") from None
