"""Detector comparison: per detector, the share of images with no face and the time per image.

``benchmark_detectors`` runs every detector (and optionally the face mesh) on the same images,
one image at a time, each detector in turn, so that a video is decoded once and all detectors
see the same frames under the same machine load. Images come from any iterable of
``(name, image)`` or ``(name, image, prior)``; ``manifest_images`` and ``video_frames`` (or
``images_from_path``, which picks by file type) read them from a manifest or a video.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from neopain.data.images import ImageReadError, read_image
from neopain.data.manifest import Manifest, load_manifest, parse_box, parse_keypoints
from neopain.data.video import VideoReadError, decode_frames, open_video
from neopain.errors import NeopainError
from neopain.faces.base import (
    Face,
    FaceDetector,
    create_detector,
    detector_class,
    list_detectors,
    open_detector_or_problem,
)
from neopain.faces.landmarks import FaceMesh

logger = logging.getLogger(__name__)

MESH_ROW = "face mesh"
"""Name of the face mesh's row (``include_mesh=True``); in video mode ``"face mesh (video)"``."""


class BenchmarkImage(NamedTuple):
    """One image to time: a name for reports, the BGR uint8 pixels, and the manifest's face
    (used only by the ``manifest`` detector)."""

    name: str
    image: np.ndarray
    prior: Face | None = None


@dataclass(frozen=True)
class DetectorFigures:
    """One detector's figures over a benchmark.

    ``images``: images seen; ``no_face``: images where it reported no face (at ``threshold``,
    its default unless set); ``median_ms`` / ``p95_ms``: time per call in milliseconds (every
    repeat is one call); ``images_per_s``: calls per second of detector time (1000 / mean ms).
    """

    detector: str
    images: int
    no_face: int
    no_face_share: float
    median_ms: float
    p95_ms: float
    images_per_s: float
    threshold: float | None = None

    def to_dict(self) -> dict[str, object]:
        """The figures as JSON-ready builtins, times rounded to microseconds."""
        out = asdict(self)
        for key in ("median_ms", "p95_ms"):
            out[key] = round(out[key], 3)
        out["no_face_share"] = round(out["no_face_share"], 4)
        out["images_per_s"] = round(out["images_per_s"], 2)
        return out


class _Timed:
    """Something timed image by image: a detector or the face mesh, with its samples."""

    def __init__(self, name: str, find: Callable[[BenchmarkImage], bool],
                 threshold: float | None) -> None:
        self.name = name
        self.find = find
        self.threshold = threshold
        self.samples_ns: list[int] = []
        self.images = 0
        self.no_face = 0

    def run(self, item: BenchmarkImage, *, repeats: int) -> None:
        found = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            found.append(self.find(item))
            self.samples_ns.append(time.perf_counter_ns() - start)
        self.images += 1
        self.no_face += not found[0]

    def figures(self) -> DetectorFigures:
        ms = np.asarray(self.samples_ns, dtype=float) / 1e6
        return DetectorFigures(
            detector=self.name,
            images=self.images,
            no_face=self.no_face,
            no_face_share=self.no_face / self.images,
            median_ms=float(np.median(ms)),
            p95_ms=float(np.percentile(ms, 95)),
            images_per_s=float(1000.0 / ms.mean()) if ms.mean() > 0 else math.inf,
            threshold=self.threshold,
        )


def _as_item(item: BenchmarkImage | tuple, index: int) -> BenchmarkImage:
    if not isinstance(item, BenchmarkImage):
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise NeopainError(f"benchmark image {index} is {type(item).__name__}; valid: a "
                               "(name, image) or (name, image, prior) tuple")
        item = BenchmarkImage(*item)
    image = item.image
    if (not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3
            or image.dtype != np.uint8 or image.size == 0):
        what = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image)
        raise NeopainError(f"benchmark image {item.name!r} is {what}; valid: a BGR uint8 "
                           "H×W×3 array (read images with neopain.data.images.read_image)")
    return item


def _detector_finder(detector: FaceDetector) -> Callable[[BenchmarkImage], bool]:
    return lambda item: bool(detector.detect(item.image, prior=item.prior))


def _mesh_finder(mesh: FaceMesh) -> Callable[[BenchmarkImage], bool]:
    return lambda item: mesh.landmarks(item.image) is not None


def _check_arguments(detectors: Sequence[str | FaceDetector], *, include_mesh: bool,
                     repeats: int, warmup: int) -> None:
    if isinstance(detectors, str):
        raise NeopainError(f"detectors={detectors!r} must be a list of names, e.g. "
                           f"[{detectors!r}]")
    if not detectors and not include_mesh:
        raise NeopainError(f"detectors=[] names nothing to time; valid: {list_detectors()} "
                           "(or include_mesh=True)")
    names = [d if isinstance(d, str) else d.name for d in detectors]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise NeopainError(f"detectors lists {', '.join(repeated)} more than once; name each "
                           "detector once")
    if repeats < 1:
        raise NeopainError(f"repeats={repeats} must be at least 1")
    if warmup < 0:
        raise NeopainError(f"warmup={warmup} must be 0 or more")


def benchmark_detectors(
    images: Iterable[BenchmarkImage | tuple],
    *,
    detectors: Sequence[str | FaceDetector],
    include_mesh: bool = False,
    mesh_video: bool = False,
    detector_options: dict[str, dict[str, object]] | None = None,
    repeats: int = 1,
    warmup: int = 3,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[DetectorFigures]:
    """Time detectors on the same images; one ``DetectorFigures`` per detector, in order.

    Args:
        images: ``(name, image)`` or ``(name, image, prior)`` items, BGR uint8 H×W×3; read
            once, so a generator (e.g. ``video_frames``) works.
        detectors: registered names (built with ``detector_options[name]``, closed at the
            end) or detectors already built (used as given, left open).
        include_mesh: add a ``"face mesh"`` row timing ``FaceMesh.landmarks``.
        mesh_video: time the mesh in video (tracking) mode (row ``"face mesh (video)"``);
            right for video frames in order, wrong for unrelated images.
        detector_options: options per detector name, e.g. ``{"onnx": {"model": "yunet.onnx"}}``.
        repeats: calls per image; each call is one time sample, the first decides "no face".
        warmup: untimed calls on the first image before timing starts (loads models, fills
            caches).
        on_progress: called as ``on_progress(done, total)`` after each image; ``total`` is
            ``len(images)`` where known (never less than ``done``), else ``done``.

    Raises:
        NeopainError: no detector, a name given twice, bad ``repeats``/``warmup``, an item
            that is not a BGR image, or no images at all.
        DetectorError: an unknown detector name or bad options.

    Example::

        figures = benchmark_detectors(video_frames("ward.mp4", limit=300),
                                      detectors=["mediapipe-short", "opencv-haar"])
        print([f.to_dict() for f in figures])
    """
    _check_arguments(detectors, include_mesh=include_mesh, repeats=repeats, warmup=warmup)
    options = detector_options or {}
    try:
        total = len(images)  # type: ignore[arg-type]
    except TypeError:
        total = 0
    with ExitStack() as stack:
        timed = []
        for detector in detectors:
            if isinstance(detector, str):
                detector = stack.enter_context(create_detector(detector,
                                                               **options.get(detector, {})))
            timed.append(_Timed(detector.name or type(detector).__name__,
                                _detector_finder(detector), detector.threshold_))
        if include_mesh:
            mesh = stack.enter_context(FaceMesh(video=mesh_video))
            name = f"{MESH_ROW} (video)" if mesh_video else MESH_ROW
            timed.append(_Timed(name, _mesh_finder(mesh), mesh.min_confidence))
        done = 0
        for index, raw in enumerate(images):
            item = _as_item(raw, index)
            if done == 0:
                for entry in timed:
                    for _ in range(warmup):
                        entry.find(item)
            for entry in timed:
                entry.run(item, repeats=repeats)
            done += 1
            if on_progress is not None:
                on_progress(done, max(total, done))
    if done == 0:
        raise NeopainError("no images to benchmark: the source gave none (all unreadable, or "
                           "an empty manifest or video)")
    return [entry.figures() for entry in timed]


MODEL_FILE_VARIABLES = {"onnx": "NEOPAIN_YUNET_MODEL", "retinaface": "NEOPAIN_RETINAFACE_MODEL",
                        "yolo-face": "NEOPAIN_YOLO_FACE_MODEL",
                        "opencv-ssd": "NEOPAIN_OPENCV_SSD_MODEL"}
"""The environment variables that name a model file for the detectors that run one, read by
``benchmarks/bench_faces.py`` and the detector tests (the CLI takes ``--model NAME=PATH``)."""


def runnable_detectors(
    stack: ExitStack, *, detector_options: Mapping[str, Mapping[str, object]] | None = None,
) -> tuple[list[FaceDetector], dict[str, str]]:
    """The detectors that can run here, built and entered into ``stack`` (closed with it, and
    ready for ``benchmark_detectors``), and why each other one cannot.

    Every registered detector that looks at pixels is tried (``manifest``, which reports the
    manifest's own boxes, is not a detector to compare). One that runs the user's model file
    runs only when ``detector_options[name]`` gives ``model``; one whose package is not
    installed, or whose file is unusable, is left out with the reason.

    Returns:
        (the open detectors, {name: why it cannot}), both in registry order.

    Example::

        with ExitStack() as stack:
            detectors, left_out = runnable_detectors(stack)
            figures = benchmark_detectors(frames, detectors=detectors)
    """
    options = detector_options or {}
    runnable, left_out = [], {}
    for name in list_detectors():
        if not detector_class(name).reads_pixels:
            continue
        detector, problem = open_detector_or_problem(name, **options.get(name, {}))
        if detector is None:
            left_out[name] = problem
        else:
            runnable.append(stack.enter_context(detector))
    return runnable, left_out


class ManifestImages:
    """The images of a manifest's rows, read with ``read_image``; unreadable ones are skipped.

    Args:
        manifest: a loaded ``Manifest`` or the path of a manifest CSV.
        limit: read at most this many rows (the first ones); None reads all.

    Each item's name is the row's ``image`` cell and its prior the row's ``face_box`` and
    ``keypoints`` (score 1), for the ``manifest`` detector. After iterating, ``skipped_`` lists
    ``(image, reason)`` for every row whose file could not be read.
    """

    def __init__(self, manifest: Manifest | str | os.PathLike[str], *,
                 limit: int | None = None) -> None:
        if limit is not None and limit < 1:
            raise NeopainError(f"limit={limit} must be at least 1 (or None for every row)")
        self.manifest = manifest
        self.limit = limit
        self.skipped_: list[tuple[str, str]] = []
        self._loaded: Manifest | None = None

    def _manifest(self) -> Manifest:
        if self._loaded is None:
            manifest = self.manifest
            self._loaded = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        return self._loaded

    def __len__(self) -> int:
        rows = len(self._manifest())
        return rows if self.limit is None else min(rows, self.limit)

    def __iter__(self) -> Iterator[BenchmarkImage]:
        manifest = self._manifest()
        self.skipped_ = []
        table = manifest.table
        for i in range(len(self)):
            name = str(table["image"].iat[i])
            try:
                image = read_image(manifest.image_path(i))
            except ImageReadError as error:
                logger.warning("skipped %s: %s", name, error.reason)
                self.skipped_.append((name, error.reason))
                continue
            box = parse_box(table["face_box"].iat[i])
            prior = None if box is None else Face(box, 1.0,
                                                  parse_keypoints(table["keypoints"].iat[i]))
            yield BenchmarkImage(name, image, prior)


class VideoFrames:
    """The frames of a video in order, every ``step``-th, at most ``limit`` of them.

    Names are ``"<file name>#<frame index>"``. ``len`` is the container's frame count (an
    estimate for some codecs), capped by ``limit``.

    Raises (on iterating):
        VideoReadError: the video cannot be opened or decoded; the message names the file.
    """

    def __init__(self, path: str | os.PathLike[str], *, step: int = 1,
                 limit: int | None = None) -> None:
        if step < 1:
            raise NeopainError(f"step={step} must be at least 1 (1 keeps every frame)")
        if limit is not None and limit < 1:
            raise NeopainError(f"limit={limit} must be at least 1 (or None for every frame)")
        self.path = Path(path)
        self.step = step
        self.limit = limit

    def __len__(self) -> int:
        try:
            with open_video(self.path) as capture:
                count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        except VideoReadError as error:
            raise VideoReadError(f"video {self.path}: {error}") from None
        kept = -(-count // self.step)
        return kept if self.limit is None else min(kept, self.limit)

    def __iter__(self) -> Iterator[BenchmarkImage]:
        kept = 0
        try:
            with open_video(self.path) as capture:
                for frame in decode_frames(capture):
                    if frame.index % self.step:
                        continue
                    if self.limit is not None and kept >= self.limit:
                        return
                    kept += 1
                    yield BenchmarkImage(f"{self.path.name}#{frame.index}", frame.image)
        except VideoReadError as error:
            raise VideoReadError(f"video {self.path}: {error}") from None


def manifest_images(manifest: Manifest | str | os.PathLike[str], *,
                    limit: int | None = None) -> ManifestImages:
    """A manifest's images as benchmark items (see ``ManifestImages``)."""
    return ManifestImages(manifest, limit=limit)


def video_frames(path: str | os.PathLike[str], *, step: int = 1,
                 limit: int | None = None) -> VideoFrames:
    """A video's frames as benchmark items (see ``VideoFrames``)."""
    return VideoFrames(path, step=step, limit=limit)


def images_from_path(path: str | os.PathLike[str], *,
                     limit: int | None = None) -> ManifestImages | VideoFrames:
    """Benchmark items from a manifest (``.csv``) or else a video file.

    Raises:
        NeopainError: the path does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise NeopainError(f"{path} not found; give a manifest CSV or a video file")
    if path.suffix.lower() == ".csv":
        return manifest_images(path, limit=limit)
    return video_frames(path, limit=limit)
