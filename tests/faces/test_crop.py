"""Crops: keypoints move exactly with the pixels (within 1 px) whether the crop shrinks,
enlarges, rotates or pads; alignment levels the eyes; padding fills what lies outside."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from neopain.faces.crop import crop_face, eye_angle, square_box

SIGMA = 3.0
# a tilted face: eyes 40 px apart at -20°, nose and mouth corners below
KEYPOINTS = np.array([[150.3, 120.7], [187.9, 107.0], [175.2, 140.4], [165.8, 165.1],
                      [195.5, 154.6]])
BOX = (130.0, 80.0, 230.0, 200.0)


def dot_image(point: np.ndarray, *, height: int = 300, width: int = 320) -> np.ndarray:
    """One channel with a Gaussian dot centred on ``point`` (sub-pixel exact).

    Pixel (i, j) has its centre at (j + 0.5, i + 0.5), as crop.py documents."""
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    dot = 250 * np.exp(-((xx - point[0]) ** 2 + (yy - point[1]) ** 2) / (2 * SIGMA**2))
    return np.round(dot).astype(np.uint8)


def find_dot(channel: np.ndarray) -> np.ndarray:
    """(x, y) centroid of the pixels above 30% of the dot's peak (the dot's top only)."""
    values = channel.astype(float)
    values[values < 0.3 * values.max()] = 0
    yy, xx = np.mgrid[0 : values.shape[0], 0 : values.shape[1]] + 0.5
    return np.array([(xx * values).sum(), (yy * values).sum()]) / values.sum()


CASES = {
    "native": dict(size=None, align=False),
    "shrink": dict(size=(64, 64), align=False),
    "enlarge": dict(size=(400, 400), align=False),
    "shrink-aligned": dict(size=(96, 96), align=True),
    "enlarge-aligned-not-square": dict(size=(300, 240), align=True),
    "enlarge-4x-aligned": dict(size=(600, 600), align=True),
}
# measured errors are at most 0.11 px; a half-pixel convention slip gives 0.6 to 1.7 px
TOLERANCE_PX = 0.25


@pytest.mark.parametrize("case", sorted(CASES))
def test_keypoints_move_with_the_pixels(case: str):
    options = CASES[case]
    for k, point in enumerate(KEYPOINTS):
        crop = crop_face(dot_image(point), BOX, keypoints=KEYPOINTS, margin=0.25, **options)
        found = find_dot(crop.image)
        assert np.linalg.norm(found - crop.keypoints[k]) < TOLERANCE_PX, (case, k, found)


def test_keypoints_move_with_the_pixels_where_the_crop_is_padded():
    box = (-30.0, 200.0, 60.0, 290.0)  # off the left and bottom edges: the crop pads
    points = np.array([[5.0, 230.0], [40.0, 240.0], [20.0, 260.0], [8.0, 280.0], [30.0, 285.0]])
    for k, point in enumerate(points):
        crop = crop_face(dot_image(point), box, keypoints=points, size=(120, 120), align=True)
        assert np.linalg.norm(find_dot(crop.image) - crop.keypoints[k]) < TOLERANCE_PX


@pytest.mark.parametrize("size", [None, (64, 64), (200, 200)])
def test_aligned_eyes_are_level_and_keep_their_order(size):
    image = np.zeros((300, 320, 3), np.uint8)
    assert abs(eye_angle(KEYPOINTS)) > 15  # the face really is tilted
    crop = crop_face(image, BOX, keypoints=KEYPOINTS, size=size, align=True)
    (lx, ly), (rx, ry) = crop.keypoints[:2]
    assert lx < rx
    assert abs(ly - ry) < 1e-6
    unaligned = crop_face(image, BOX, keypoints=KEYPOINTS, size=size)
    assert abs(unaligned.keypoints[0, 1] - unaligned.keypoints[1, 1]) > 2


def test_crop_keeps_distances_in_proportion():
    crop = crop_face(np.zeros((300, 320, 3), np.uint8), BOX, keypoints=KEYPOINTS, size=(128, 128),
                     align=True)
    side = crop.square[2] - crop.square[0]
    before = np.linalg.norm(KEYPOINTS[1] - KEYPOINTS[0])
    after = np.linalg.norm(crop.keypoints[1] - crop.keypoints[0])
    assert math.isclose(after, before * 128 / side, rel_tol=0.01)


def test_square_box_is_centred_with_margin_on_the_longer_side():
    square = square_box((10, 20, 50, 100), margin=0.25, image_shape=(200, 200, 3))
    assert square == pytest.approx((-30.0, 0.0, 90.0, 120.0))  # side 80 · 1.5, centre (30, 60)


def test_square_edges_map_to_crop_edges():
    image = np.zeros((300, 320, 3), np.uint8)
    crop = crop_face(image, BOX, size=(50, 50))
    x1, y1, x2, y2 = crop.square
    corners = np.array([[x1, y1], [x2, y2]]) @ crop.matrix[:, :2].T + crop.matrix[:, 2]
    np.testing.assert_allclose(corners, [[0, 0], [50, 50]], atol=1e-9)
    assert crop.image.shape == (50, 50, 3)


def test_native_size_crop_copies_pixels_unchanged():
    image = np.random.default_rng(0).integers(0, 256, (300, 320, 3), dtype=np.uint8)
    crop = crop_face(image, (100, 100, 140, 140), margin=0.0)
    assert crop.image.shape == (40, 40, 3)
    np.testing.assert_array_equal(crop.image, image[100:140, 100:140])


@pytest.mark.parametrize("padding", ["constant", "replicate"])
def test_padding_fills_outside_the_image(padding: str):
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_face(image, (0, 0, 40, 40), margin=0.5, padding=padding)  # square -20..60
    assert crop.image.shape == (80, 80, 3)
    outside = crop.image[:15, :15]
    inside = crop.image[30:, 30:]
    assert (inside == 200).all()
    assert (outside == (0 if padding == "constant" else 200)).all()


def test_grayscale_image_is_cropped():
    image = np.zeros((50, 60), np.uint8)
    assert crop_face(image, (10, 10, 30, 30), size=(16, 16)).image.shape == (16, 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(box=(10, 10, 5, 30)), "x2 > x1"),
        (dict(box=(10, 10, float("nan"), 30)), "finite"),
        (dict(box=(500, 10, 600, 30)), "outside"),
        (dict(margin=-0.1), "margin=-0.1"),
        (dict(size=(0, 10)), "size=(0, 10)"),
        (dict(size=(10.5, 10)), "two positive integers"),
        (dict(align=True), "align=True needs keypoints"),
        (dict(padding="mirror"), "valid: constant, replicate"),
        (dict(keypoints=np.zeros((5, 3))), "expected (N, 2)"),
    ],
)
def test_bad_arguments_name_parameter_and_valid_values(kwargs, message):
    arguments = dict(box=(10, 10, 40, 40)) | kwargs
    box = arguments.pop("box")
    with pytest.raises(ValueError, match=re.escape(message)):
        crop_face(np.zeros((100, 100, 3), np.uint8), box, **arguments)


@pytest.mark.parametrize("size", [None, (64, 64), (300, 240)])
@pytest.mark.parametrize("align", [False, True])
def test_box_centre_lands_on_crop_centre(size, align):
    # guards: the rotation's own translation was added to the centring one, pushing aligned
    # faces off-centre (keypoints and pixels still agreed, so only this caught it)
    image = np.zeros((300, 320, 3), np.uint8)
    crop = crop_face(image, BOX, keypoints=KEYPOINTS, size=size, align=align)
    centre = np.array([(BOX[0] + BOX[2]) / 2, (BOX[1] + BOX[3]) / 2])
    height, width = crop.image.shape[:2]
    mapped = crop.matrix[:, :2] @ centre + crop.matrix[:, 2]
    np.testing.assert_allclose(mapped, [width / 2, height / 2], atol=1e-6)
