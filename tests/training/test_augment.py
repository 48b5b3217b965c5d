"""Augmentation: keypoints move exactly with the image (flips re-order them), stay inside, and
offline copies are made from training subjects only, reproducibly."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from neopain.training.augment import (
    FLIP_ORDER,
    Augmenter,
    AugmentSpec,
    augment_fold,
    points_inside,
)
from neopain.models.preprocess import resize_sample
from neopain.data.images import read_image
from neopain.data.folds import Fold, FoldPlan, make_folds
from neopain.data.manifest import (
    Manifest,
    format_box,
    format_keypoints,
    load_manifest,
    parse_box,
    parse_keypoints,
    save_manifest,
)
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.errors import NeopainError

SIGMA = 1.5
PEAK = 200  # below 255 / 1.1 so that the brightest draw does not flatten the dots' tops


def blob_image(points: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """One channel per keypoint holding a Gaussian dot centred on it (sub-pixel exact)."""
    image = np.zeros((height, width, len(points)), np.uint8)
    for channel, (x, y) in enumerate(points):
        x0, y0 = max(int(x) - 8, 0), max(int(y) - 8, 0)
        yy, xx = np.mgrid[y0 : min(int(y) + 9, height), x0 : min(int(x) + 9, width)]
        dot = PEAK * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * SIGMA**2))
        image[y0 : y0 + dot.shape[0], x0 : x0 + dot.shape[1], channel] = np.round(dot)
    return image


def find_dot(channel: np.ndarray) -> np.ndarray:
    """Sub-pixel (x, y) of a dot: centroid of its pixels above 30% of its peak.

    The top of the dot only, so that a dot cut by the image border is pulled inwards far less
    than a whole-dot centroid would be; a centroid, not a peak, so interpolation cannot bias it.
    """
    values = channel.astype(float)
    weights = np.clip(values - 0.3 * values.max(), 0, None)
    yy, xx = np.mgrid[0 : channel.shape[0], 0 : channel.shape[1]]
    return np.array([(weights * xx).sum(), (weights * yy).sum()]) / weights.sum()


def face_keypoints(rng: np.random.Generator, *, height: int, width: int) -> np.ndarray:
    """Five face keypoints (image-left eye first) placed at random in the image."""
    size = rng.uniform(0.25, 0.4) * min(height, width)
    cx = rng.uniform(0.35, 0.65) * width
    cy = rng.uniform(0.35, 0.65) * height
    layout = np.array([[-0.5, -0.4], [0.5, -0.4], [0.0, 0.0], [-0.35, 0.45], [0.35, 0.45]])
    return np.array([cx, cy]) + layout * size + rng.uniform(-1, 1, (5, 2))


# --- the acceptance property -------------------------------------------------------------------


@pytest.mark.parametrize("flip", [0.5, 1.0, 0.0], ids=["flip-random", "flip-always", "no-flip"])
@pytest.mark.parametrize("shape, size", [
    ((120, 160), None), ((96, 72), None), ((300, 400), None), ((150, 200), (224, 224)),
], ids=["160x120", "72x96", "400x300", "200x150-to-224"])
def test_dots_land_within_2px_of_the_transformed_keypoints(shape, size, flip):
    """Guards the acceptance criterion: image and keypoints get the same transform, flips
    included, and a flip re-orders the keypoints so that index 0 is the image-left eye."""
    height, width = shape
    augmenter = Augmenter(AugmentSpec(flip=flip, size=size))
    errors, flips = [], 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        points = face_keypoints(rng, height=height, width=width)
        sample = augmenter(blob_image(points, height=height, width=width), points,
                           rng=np.random.default_rng([seed, 1]))
        assert not sample.fallback
        out_height, out_width = sample.image.shape[:2]
        order = FLIP_ORDER if sample.flipped else range(5)
        for dot, index in enumerate(order):  # dot k was drawn at keypoint k before the flip
            x, y = sample.keypoints[index]
            border = min(x + 0.5, y + 0.5, out_width - 0.5 - x, out_height - 0.5 - y)
            error = np.abs(find_dot(sample.image[:, :, dot]) - sample.keypoints[index]).max()
            errors.append((error, border))
        flips += sample.flipped
        if sample.flipped:  # the physical right eye is now image-left, so it is index 0
            assert sample.keypoints[0, 0] < sample.keypoints[1, 0]
            assert sample.keypoints[3, 0] < sample.keypoints[4, 0]
    errors = np.array(errors)
    assert errors[:, 0].max() < 2.0, f"a dot landed {errors[:, 0].max():.2f} px from its keypoint"
    interior = errors[errors[:, 1] > 8, 0]  # dots the border does not cut: measured exactly
    assert len(interior) > 400 and interior.max() < 0.25
    assert flips == {0.0: 0, 1.0: 100}.get(flip, flips) and (flip != 0.5 or 25 < flips < 75)


def test_every_sample_keeps_the_keypoints_inside_by_redrawing():
    """Wide shifts and zooms push keypoints out often; the redraw must catch every one."""
    spec = AugmentSpec(shift=0.5, zoom=(1.5, 2.5), max_attempts=200)
    augmenter = Augmenter(spec, seed=3)
    attempts = []
    for seed in range(200):
        points = face_keypoints(np.random.default_rng(seed), height=120, width=160)
        sample = augmenter(np.zeros((120, 160, 3), np.uint8), points)
        assert points_inside(sample.keypoints, width=160, height=120)
        attempts.append(sample.attempts)
    assert max(attempts) > 1, "no draw was ever rejected: the redraw was not exercised"


def test_no_draw_fits_then_the_copy_is_a_counted_brightness_only_fallback():
    points = np.array([[1.0, 1.0], [158.0, 1.0], [80.0, 60.0], [1.0, 118.0], [158.0, 118.0]])
    image = np.full((120, 160, 3), 100, np.uint8)
    sample = Augmenter(AugmentSpec(zoom=(2.0, 3.0), max_attempts=5, size=(60, 80)))(
        image, points, (0, 0, 159, 119), rng=np.random.default_rng(0))
    assert sample.fallback and not sample.flipped and sample.attempts == 5
    np.testing.assert_allclose(sample.keypoints, (points + 0.5) / 2 - 0.5)
    assert 50 <= sample.image.min() and sample.image.max() <= 110
    assert sample.image.std() < 1  # no geometric change: the flat image stays flat


def test_an_image_without_keypoints_takes_the_first_draw():
    sample = Augmenter(AugmentSpec(shift=0.8), seed=0)(np.zeros((40, 50, 3), np.uint8))
    assert sample.keypoints is None and sample.box is None and sample.attempts == 1


def test_the_face_box_moves_as_the_box_around_its_moved_corners():
    height, width = 160, 200
    box = (60.0, 40.0, 140.0, 120.0)
    image = np.zeros((height, width, 3), np.uint8)
    image[40:121, 60:141] = 255
    points = face_keypoints(np.random.default_rng(0), height=height, width=width) * 0.3 + [70, 55]
    for seed in range(30):
        sample = Augmenter(AugmentSpec(shift=0.05, fill_mode="constant"))(
            image, points, box, rng=np.random.default_rng(seed))
        ys, xs = np.nonzero(sample.image[:, :, 0] > 60)
        drawn = (xs.min(), ys.min(), xs.max(), ys.max())
        assert np.abs(np.subtract(drawn, sample.box)).max() < 2.0, (seed, drawn, sample.box)


def test_brightness_multiplies_pixel_values_like_keras():
    still = dict(rotate=0, shear=0, shift=0, zoom=(1, 1), flip=0)
    image = np.full((10, 10, 3), 200, np.uint8)
    half = Augmenter(AugmentSpec(**still, brightness=(0.5, 0.5)), seed=0)(image)
    assert np.all(half.image == 100)
    spec = AugmentSpec(**still)
    factors = [Augmenter(spec, seed=s)(image).image.mean() / 200 for s in range(300)]
    assert 0.5 <= min(factors) < 0.55 and 1.05 < max(factors) <= 1.1


def test_the_same_rng_gives_the_same_sample_and_another_differs():
    points = face_keypoints(np.random.default_rng(0), height=120, width=160)
    image = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    augmenter = Augmenter(AugmentSpec())
    a, b, c = (augmenter(image, points, rng=np.random.default_rng(s)) for s in (5, 5, 6))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.keypoints, b.keypoints)
    assert not np.array_equal(a.image, c.image)
    runs = [[Augmenter(seed=9)(image, points).keypoints for _ in range(3)] for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_resize_maps_pixel_centres_exactly():
    """Guards the reason resize_sample exists: A.Resize's x * s misplaces upscaled points."""
    point = np.array([[21.3, 17.6]])
    image = blob_image(point, height=48, width=64)[:, :, :1]
    resized, moved = resize_sample(image, point, size=(224, 224))
    assert np.abs(find_dot(resized[:, :, 0]) - moved[0]).max() < 0.4


@pytest.mark.parametrize("field, value, message", [
    ("rotate", -1, "rotate=-1 must be a number in [0, 180]"),
    ("shift", 1.5, "shift=1.5 must be a number in [0, 0.9]"),
    ("zoom", (1.5, 0.7), "zoom=(1.5, 0.7) must be (low, high) with 0 < low <= high"),
    ("brightness", (0, 1), "brightness=(0, 1) must be (low, high)"),
    ("flip", 2, "flip=2 must be a number in [0, 1]"),
    ("size", (0, 10), "size=(0, 10) must be (height, width)"),
    ("fill_mode", "reflect", "fill_mode='reflect' is not valid; valid: nearest, constant"),
    ("max_attempts", 0, "max_attempts=0 must be a whole number >= 1"),
])
def test_bad_spec_fields_are_named_with_what_is_valid(field, value, message):
    with pytest.raises(NeopainError, match=None) as caught:
        AugmentSpec(**{field: value})
    assert message in str(caught.value)


def test_keypoints_outside_the_image_are_refused():
    points = np.array([[10.0, 10], [30, 10], [20, 20], [12, 30], [70, 30]])
    with pytest.raises(NeopainError, match="keypoints lie outside the 64x48 image"):
        Augmenter(seed=0)(np.zeros((48, 64, 3), np.uint8), points)


# --- offline: augment_fold ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A small synthetic cohort, its manifest and a real 3-fold plan with validation subjects."""
    root = tmp_path_factory.mktemp("cohort")
    result = generate_cohort(root, CohortSpec(subjects=6, seed=4, images_per_subject=(2, 3)))
    manifest = load_manifest(result.manifest, check_files=True)
    plan = make_folds(manifest, protocol="lsso", k=3, val_share=0.25, balance_by=None)
    assert all(fold.val and fold.test for fold in plan.folds)
    return manifest, plan


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_augment_fold_copies_only_training_images_into_a_valid_manifest(cohort, tmp_path):
    manifest, plan = cohort
    fold = plan.folds[1]
    result = augment_fold(manifest, plan, fold=1, out=tmp_path / "aug", n=3, seed=0)
    augmented = load_manifest(result.manifest, check_files=True)
    table = augmented.table
    train_rows = manifest.table[manifest.table["subject"].isin(fold.train)]
    assert set(table["subject"]) <= set(fold.train)
    assert not set(table["subject"]) & (set(fold.test) | set(fold.val))
    assert len(table) == result.images == 3 * len(train_rows)
    assert result.skipped == len(manifest) - len(train_rows)
    originals = [Path(tmp_path / "aug" / p).resolve() for p in table["augmented_from"]]
    expected = [manifest.image_path(i).resolve() for i in train_rows.index]
    assert sorted(map(str, originals)) == sorted(str(p) for p in expected for _ in range(3))
    assert set(table["fold"]) == {"1"} and set(table["copy"]) == {"1", "2", "3"}
    assert list(table["image"][:3]) == [
        f"images/{table['subject'].iat[0]}/{Path(train_rows['image'].iat[0]).stem}_aug0{c}.jpg"
        for c in (1, 2, 3)]
    label_of = {manifest.image_path(i).resolve(): manifest.table["label"].iat[i]
                for i in range(len(manifest))}
    for i in range(len(table)):
        image = read_image(augmented.image_path(i))
        height, width = image.shape[:2]
        assert points_inside(parse_keypoints(table["keypoints"].iat[i]), width=width,
                             height=height)
        assert parse_box(table["face_box"].iat[i]) is not None
        assert label_of[originals[i]] == table["label"].iat[i]


def test_no_fold_ever_augments_a_test_or_validation_subject(cohort, tmp_path):
    manifest, plan = cohort
    for fold in plan.folds:
        result = augment_fold(manifest, plan, fold=fold.index, out=tmp_path / str(fold.index), n=1)
        subjects = set(load_manifest(result.manifest).table["subject"])
        assert subjects == set(fold.train), fold.index


def test_same_seed_same_bytes_for_any_worker_count_and_another_seed_differs(cohort, tmp_path):
    manifest, plan = cohort
    digests = [tree_digest(augment_fold(manifest, plan, fold=0, out=tmp_path / name, n=2,
                                        seed=seed, workers=workers).root)
               for name, seed, workers in (("a", 7, 1), ("b", 7, 2), ("c", 8, 1))]
    assert digests[0] == digests[1]
    assert digests[0]["manifest.csv"] != digests[2]["manifest.csv"]
    assert digests[0].keys() == digests[2].keys()


def test_a_copy_does_not_depend_on_row_order(cohort, tmp_path):
    manifest, plan = cohort
    reversed_rows = Manifest(manifest.table.iloc[::-1].reset_index(drop=True), manifest.root)
    a = tree_digest(augment_fold(manifest, plan, fold=2, out=tmp_path / "a", n=2).root)
    b = tree_digest(augment_fold(reversed_rows, plan, fold=2, out=tmp_path / "b", n=2).root)
    a.pop("manifest.csv"), b.pop("manifest.csv")
    assert a == b


def test_bad_fold_out_and_counts_are_refused_with_what_is_valid(cohort, tmp_path):
    manifest, plan = cohort
    with pytest.raises(NeopainError, match=r"fold=3 is out of range; valid: 0 to 2"):
        augment_fold(manifest, plan, fold=3, out=tmp_path / "x")
    with pytest.raises(NeopainError, match=r"n=0 must be a whole number >= 1"):
        augment_fold(manifest, plan, fold=0, out=tmp_path / "x", n=0)
    with pytest.raises(NeopainError, match="the manifest's own folder"):
        augment_fold(manifest, plan, fold=0, out=manifest.root, overwrite=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("keep me")
    with pytest.raises(NeopainError, match=r"is not empty; .*--overwrite"):
        augment_fold(manifest, plan, fold=0, out=tmp_path / "full", n=1)
    assert augment_fold(manifest, plan, fold=0, out=tmp_path / "full", n=1, overwrite=True).images
    leaky = FoldPlan("lsso", 0, 1, "", (Fold(0, ["S001", "S002"], ["S002"], ["S003"]),), {})
    with pytest.raises(NeopainError, match=r"fold 0 lists subjects both in train and .*S002"):
        augment_fold(manifest, leaky, fold=0, out=tmp_path / "y")


def write_manifest(root: Path, rows: list[dict]) -> Manifest:
    save_manifest(__import__("pandas").DataFrame(rows), root / "manifest.csv")
    return load_manifest(root / "manifest.csv")


def test_bad_keypoints_are_named_and_an_unreadable_image_is_skipped_with_its_reason(tmp_path):
    """An unreadable training image used to stop the whole fold's augmentation: it is skipped
    and listed with its manifest line and reason; the other images are augmented."""
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((40, 50, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"not an image")
    inside = format_keypoints([[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]])
    outside = format_keypoints([[10, 10], [30, 10], [20, 20], [12, 30], [90, 30]])
    plan = FoldPlan("lsso", 0, 2, "", (Fold(0, ["s1"], [], ["s2"]),), {})
    rows = [{"image": "a.png", "subject": "s1", "label": "pain", "keypoints": outside},
            {"image": "b.png", "subject": "s2", "label": "nopain", "keypoints": inside}]
    with pytest.raises(NeopainError, match=r"manifest line 2, image 'a.png', column 'keypoints'"):
        augment_fold(write_manifest(tmp_path, rows), plan, fold=0, out=tmp_path / "o1", n=1)
    rows[0]["keypoints"], rows[1]["subject"] = inside, "s1"
    result = augment_fold(write_manifest(tmp_path, rows), plan, fold=0, out=tmp_path / "o2", n=2)
    assert result.unreadable == ("manifest line 3, image 'b.png': cannot read image: not an "
                                 "image file of a format read here (valid: JPEG, PNG, BMP, "
                                 "TIFF, WEBP, GIF)",)
    written = load_manifest(result.manifest)
    assert result.images == 2 and set(written.table["augmented_from"]) == {"../a.png"}
    rows.pop(0)
    with pytest.raises(NeopainError, match=r"none of the 1 training images of fold 0 can be "
                                           r"read; the first: manifest line 2, image 'b.png'"):
        augment_fold(write_manifest(tmp_path, rows), plan, fold=0, out=tmp_path / "o3", n=1)


def test_same_stem_in_two_folders_of_one_subject_gets_two_names(tmp_path):
    for folder in ("day1", "day2"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "face.png"), np.zeros((30, 30, 3), np.uint8))
    rows = [{"image": f"{d}/face.png", "subject": "baby 1/x", "label": "pain",
             "face_box": format_box((5, 5, 25, 25))} for d in ("day1", "day2")]
    plan = FoldPlan("lsso", 0, 2, "", (Fold(0, ["baby 1/x"], [], []),), {})
    result = augment_fold(write_manifest(tmp_path, rows), plan, fold=0, out=tmp_path / "o", n=2)
    table = load_manifest(result.manifest, check_files=True).table
    assert table["image"].nunique() == 4
    assert all(p.startswith("images/baby_1_x/face_") for p in table["image"])
    assert json.loads(table["face_box"].iat[0])


def test_albumentations_is_imported_on_first_use_without_its_pypi_check():
    """Importing neopain must stay fast and offline: albumentations imports torch and, by
    default, asks PyPI for updates when imported."""
    code = ("import os, sys; import neopain.cli.app;"
            "from neopain.training.augment import Augmenter;"
            "assert 'albumentations' not in sys.modules;"
            "import numpy as np; Augmenter(seed=0)(np.zeros((8, 8, 3), np.uint8));"
            "assert os.environ['NO_ALBUMENTATIONS_UPDATE'] == '1'")
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
