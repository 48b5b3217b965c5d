"""``detect_faces`` over a manifest: crops that hold the face and its keypoints, a valid manifest
of the crops that keeps the original box, unreadable and faceless images reported while the rest
is done, a resumed run that does only the remainder, and the same output for 1 or 2 workers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from neopain.data.importers.folder import import_folder
from neopain.data.manifest import load_manifest
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.errors import NeopainError
from neopain.faces.base import DetectorError, iou
from neopain.faces.detect import detect_faces
from neopain.faces.landmarks import load_landmarks

SIZE = 128


def write_photos(root: Path) -> Path:
    """Real-face photos (astronaut, shifted, scaled, flipped), a faceless one (coffee) and a
    corrupt JPEG in a ``<label>/<subject>/`` tree; returns the imported manifest's path."""
    face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    shifted = np.full((600, 700, 3), 200, np.uint8)
    shifted[60:572, 150:662] = face
    photos = {
        "pain/S01/astronaut.jpg": face,
        "nopain/S01/flipped.jpg": face[:, ::-1],
        "pain/S02/shifted.jpg": shifted,
        "nopain/S02/small.jpg": cv2.resize(face, (256, 256), interpolation=cv2.INTER_AREA),
        "nopain/S03/coffee.png": cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR),
    }
    for name, image in photos.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / name), np.ascontiguousarray(image))
    data = (root / "pain/S01/astronaut.jpg").read_bytes()
    (root / "pain/S03").mkdir(parents=True)
    (root / "pain/S03/corrupt.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    return import_folder(root, out=root / "manifest.csv").manifest


# where the face of each photo is, from the astronaut's own box (x1, y1, x2, y2)
PLACED = {
    "astronaut": lambda b: b,
    "flipped": lambda b: (512 - b[2], b[1], 512 - b[0], b[3]),
    "shifted": lambda b: (b[0] + 150, b[1] + 60, b[2] + 150, b[3] + 60),
    "small": lambda b: tuple(v / 2 for v in b),
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    spec = CohortSpec(subjects=3, seed=5, images_per_subject=(2, 3))
    return generate_cohort(root, spec).manifest


@pytest.fixture(scope="module")
def mediapipe_run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("mp") / "faces"
    return detect_faces(load_manifest(photos), detector="mediapipe-short", out=out, size=SIZE,
                        landmarks=True, workers=1)


def _inside(points: np.ndarray, box) -> bool:
    x1, y1, x2, y2 = box
    return bool(((points[:, 0] >= x1) & (points[:, 0] <= x2)
                 & (points[:, 1] >= y1) & (points[:, 1] <= y2)).all())


def test_manifest_detector_crops_every_image_and_the_crops_hold_the_keypoints(cohort, tmp_path):
    source = load_manifest(cohort)
    result = detect_faces(source, detector="manifest", out=tmp_path / "faces", size=SIZE)
    crops = load_manifest(result.manifest, check_files=True)
    assert (result.images, result.faces, result.rows, result.no_face) == (len(source),) * 3 + (0,)
    table, original = crops.table, source.table
    assert list(table["subject"]) == list(original["subject"])
    assert list(table["label"]) == list(original["label"])
    assert list(table["original_face_box"]) == list(original["face_box"])
    boxes, points = crops.boxes(), crops.keypoints()
    for i in range(len(crops)):
        assert table["image"].iat[i].startswith("crops/")
        assert cv2.imread(str(crops.image_path(i))).shape == (SIZE, SIZE, 3)
        assert _inside(points[i], (0, 0, SIZE, SIZE)) and _inside(points[i], boxes[i])
        assert os.path.samefile(crops.root / table["original_image"].iat[i],
                                source.image_path(i))
        # the crop box is the original box, scaled and shifted (a square crop keeps its shape)
        ox1, oy1, ox2, oy2 = source.boxes()[i]
        x1, y1, x2, y2 = boxes[i]
        assert (x2 - x1) / (y2 - y1) == pytest.approx((ox2 - ox1) / (oy2 - oy1), rel=0.02)
    assert result.report.read_text() == "line,image,status,reason\n"


def test_real_faces_are_found_and_cropped_coffee_and_a_corrupt_file_reported(mediapipe_run):
    result = mediapipe_run
    assert (result.images, result.faces, result.no_face, result.unreadable) == (6, 4, 1, 1)
    crops = load_manifest(result.manifest, check_files=True)
    names = [Path(p).stem for p in crops.table["original_image"]]
    assert sorted(names) == sorted(PLACED)
    found = dict(zip(names, crops.table["original_face_box"].map(json.loads)))
    for name, place in PLACED.items():
        assert iou(tuple(found[name]), place(found["astronaut"])) >= 0.7, name
    boxes, points = crops.boxes(), crops.keypoints()
    for i in range(len(crops)):
        assert _inside(points[i], boxes[i])
        mesh = load_landmarks(crops.root / crops.table["landmarks"].iat[i])
        assert mesh.shape == (468, 3) and _inside(mesh, (0, 0, SIZE, SIZE))
    report = result.report.read_text().splitlines()
    assert report[0] == "line,image,status,reason"
    by_image = {m.image.split("/")[-1]: m for m in result.missing}
    assert by_image.keys() == {"coffee.png", "corrupt.jpg"}
    assert by_image["coffee.png"].status == "no_face"
    assert by_image["corrupt.jpg"].status == "unreadable"
    assert "truncated" in by_image["corrupt.jpg"].reason or by_image["corrupt.jpg"].reason


def test_keep_missing_keeps_the_faceless_image_with_an_empty_box_but_not_unreadable_ones(
        photos, mediapipe_run, tmp_path):
    result = detect_faces(load_manifest(photos), detector="mediapipe-short",
                          out=tmp_path / "faces", size=SIZE, keep_missing=True)
    crops = load_manifest(result.manifest, check_files=True)
    assert len(crops) == 5
    coffee = crops.table[crops.table["image"].str.endswith("coffee.png")]
    assert len(coffee) == 1 and coffee["face_box"].iat[0] == ""
    assert os.path.samefile(crops.root / coffee["image"].iat[0],
                            photos.parent / "nopain/S03/coffee.png")
    assert not crops.table["image"].str.contains("corrupt").any()


def test_a_resumed_run_does_only_the_remainder_and_writes_the_same_manifest(cohort, tmp_path):
    source = load_manifest(cohort)
    whole = detect_faces(source, detector="manifest", out=tmp_path / "whole", size=SIZE)

    class Stop(Exception):
        pass

    def stop_after_three(done: int, total: int) -> None:
        if done == 3:
            raise Stop

    out = tmp_path / "resumed"
    with pytest.raises(Stop):
        detect_faces(source, detector="manifest", out=out, size=SIZE,
                     on_progress=stop_after_three)
    assert not (out / "manifest.csv").exists()
    first = sorted(out.glob("crops/*/*.jpg"))
    assert len(first) == 3
    stamps = {path: path.stat().st_mtime_ns for path in first}
    calls: list[tuple[int, int]] = []
    resumed = detect_faces(source, detector="manifest", out=out, size=SIZE,
                           on_progress=lambda done, total: calls.append((done, total)))
    assert (resumed.skipped, resumed.processed) == (3, len(source) - 3)
    assert calls[0] == (3, len(source)) and calls[-1] == (len(source), len(source))
    assert {path: path.stat().st_mtime_ns for path in first} == stamps  # not written again
    assert resumed.manifest.read_bytes() == whole.manifest.read_bytes()
    assert (out / "faces.jsonl").read_text().count("\n") == len(source)

    again = detect_faces(source, detector="manifest", out=out, size=SIZE)
    assert again.processed == 0 and again.manifest.read_bytes() == whole.manifest.read_bytes()
    changed = source.image_path(0)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    assert detect_faces(source, detector="manifest", out=out, size=SIZE).processed == 1
    other = detect_faces(source, detector="manifest", out=out, size=SIZE, margin=0.5)
    assert other.processed == len(source)  # other settings: every crop is redone


def test_one_or_two_workers_write_the_same_files(photos, mediapipe_run, tmp_path):
    two = detect_faces(load_manifest(photos), detector="mediapipe-short", out=tmp_path / "two",
                       size=SIZE, landmarks=True, workers=2)
    one = mediapipe_run

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.suffix in (".csv", ".jpg", ".npy")}

    assert files(two.root).keys() == files(one.root).keys()
    assert files(two.root) == files(one.root)
    assert (two.faces, two.no_face, two.unreadable) == (one.faces, one.no_face, one.unreadable)


def test_bad_arguments_are_refused_naming_the_value(cohort, tmp_path):
    source = load_manifest(cohort)
    with pytest.raises(DetectorError, match="unknown detector 'blazeface'; valid: .*manifest"):
        detect_faces(source, detector="blazeface", out=tmp_path / "a")
    with pytest.raises(NeopainError, match="margin=-0.1 is not valid"):
        detect_faces(source, detector="manifest", out=tmp_path / "a", margin=-0.1)
    with pytest.raises(NeopainError, match="size=8 is not valid"):
        detect_faces(source, detector="manifest", out=tmp_path / "a", size=8)
    with pytest.raises(NeopainError, match="is the manifest's own folder"):
        detect_faces(source, detector="manifest", out=cohort.parent)
    assert not (tmp_path / "a").exists()


def test_rows_without_a_box_are_no_face_for_the_manifest_detector(cohort, tmp_path):
    source = load_manifest(cohort)
    table = source.table.copy()
    table.loc[1, ["face_box", "keypoints"]] = ""
    edited = type(source)(table=table, root=source.root)
    result = detect_faces(edited, detector="manifest", out=tmp_path / "faces", size=SIZE)
    assert result.no_face == 1 and result.rows == len(source) - 1
    assert result.missing[0].line == 3
    assert "no face_box" in result.missing[0].reason


def test_align_levels_the_eyes_and_needs_a_detector_with_keypoints(photos, tmp_path):
    source = load_manifest(photos)
    plain = load_manifest(detect_faces(source, detector="mediapipe-short", out=tmp_path / "a",
                                       size=SIZE).manifest).keypoints()
    aligned = load_manifest(detect_faces(source, detector="mediapipe-short", out=tmp_path / "b",
                                         size=SIZE, align=True).manifest).keypoints()
    tilt = np.abs(plain[:, 0, 1] - plain[:, 1, 1])  # eye heights differ: the head is tilted
    assert tilt.max() > 4 and np.abs(aligned[:, 0, 1] - aligned[:, 1, 1]).max() < 1
    with pytest.raises(NeopainError, match="align=True needs eye keypoints.*'opencv-haar'"):
        detect_faces(source, detector="opencv-haar", out=tmp_path / "c", align=True)


def test_a_detect_worker_stores_its_arguments_and_releases_what_open_built(tmp_path,
                                                                           monkeypatch):
    """STYLE rule 2: DetectWorker's constructor built a detector and a face mesh (a MediaPipe
    graph each), so a worker could not be made without them; ``open`` builds them now, and
    ``close`` frees both, over and over (STYLE rule 9)."""
    from contextlib import closing

    from neopain.faces import detect_worker

    made = []

    class Resource:
        def __init__(self, *args, **options) -> None:
            self.closed = False
            made.append(self)

        def close(self) -> None:
            self.closed = True

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.close()

    monkeypatch.setattr(detect_worker, "create_detector", lambda name, **options: Resource())
    monkeypatch.setattr(detect_worker, "FaceMesh", Resource)
    settings = detect_worker.DetectSettings(detector="manifest", options={}, margin=0.25,
                                            size=64, landmarks=True, align=False)
    given = Resource()
    made.clear()
    worker = detect_worker.DetectWorker(settings, out=tmp_path, detector=given)
    assert made == [] and worker.detector is given and worker.mesh is None
    for _ in range(20):
        with closing(detect_worker.DetectWorker.open(settings, out=tmp_path)) as worker:
            assert {worker.detector, worker.mesh} <= set(made)
    assert len(made) == 40 and all(resource.closed for resource in made)
