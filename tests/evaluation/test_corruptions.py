"""Corruptions are deterministic given a seed, graded by severity, and refuse bad input."""

from __future__ import annotations

import numpy as np
import pytest

from face_manifest import astronaut_face
from neopain.errors import NeopainError
from neopain.evaluation.corruptions import CORRUPTIONS, GREY, SEVERITIES, corrupt
from neopain.faces.regions import REGIONS, region_map

RANDOM = ("noise", "patches", "rotation", "translation")
"""Corruptions with a random part (values, positions, sign or direction)."""


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return np.ascontiguousarray(astronaut_face()[::2, ::2])  # 240×240, face about 100 px


@pytest.fixture(scope="module")
def regions(crop) -> np.ndarray:
    keypoints = np.array([[84.0, 100], [150, 100], [118, 140], [93, 170], [145, 170]])
    return region_map(crop.shape[:2], keypoints=keypoints)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_the_same_seed_gives_the_same_picture_and_severity_grades_the_change(name, crop,
                                                                            regions):
    change = []
    for severity in SEVERITIES:
        once = corrupt(crop, name, severity=severity, seed=7, regions=regions)
        again = corrupt(crop, name, severity=severity, seed=7, regions=regions)
        assert once.shape == crop.shape and once.dtype == np.uint8
        assert np.array_equal(once, again), f"{name} at {severity} is not reproducible"
        change.append(np.abs(once.astype(int) - crop).mean())
    assert change[0] > 0, f"{name} at severity 1 leaves the crop as it was"
    assert all(b > a for a, b in zip(change, change[1:])), (name, change)


@pytest.mark.parametrize("name", RANDOM)
def test_another_seed_gives_another_picture(name, crop):
    pictures = {corrupt(crop, name, severity=3, seed=seed).tobytes() for seed in range(4)}
    assert len(pictures) > 1


@pytest.mark.parametrize("region", REGIONS)
def test_a_region_occlusion_covers_that_region_and_nothing_else(region, crop, regions):
    inside = regions == REGIONS.index(region)
    assert inside.any()
    covered = corrupt(crop, f"occlude_{region}", severity=5, seed=0, regions=regions)
    changed = (covered != crop).any(axis=2)
    assert not changed[~inside].any()
    assert (covered[inside] == GREY).all()


def test_downscaling_a_face_already_that_coarse_leaves_it_as_it_is():
    small = np.ascontiguousarray(astronaut_face()[::40, ::40])  # 12×12 pixels
    assert np.array_equal(corrupt(small, "downscale", severity=5, seed=0), small)


def test_a_translation_shifts_by_the_same_length_in_every_direction_on_a_non_square_crop():
    """Bug: the shift was a share of the width along x and of the height along y, so on a
    100×200 crop a vertical shift was half as long as a horizontal one."""
    crop = np.zeros((100, 200, 3), np.uint8)
    crop[48:53, 98:103] = 255
    lengths, directions = [], []
    for seed in range(24):
        moved = corrupt(crop, "translation", severity=3, seed=seed)  # 15 % of 200 px
        ys, xs = np.nonzero(moved[..., 0] > 127)
        shift = np.array([xs.mean() - 100, ys.mean() - 50])
        lengths.append(np.hypot(*shift))
        directions.append(abs(shift[0]) > abs(shift[1]))
    assert any(directions) and not all(directions)  # mostly along x and mostly along y
    assert np.allclose(lengths, 30, atol=1), np.round(lengths, 1)


@pytest.mark.parametrize("name, severity, regions, expected", [
    ("fog", 1, None, "corruption 'fog' is not valid; valid: brightness, downscale, blur"),
    ("blur", 0, None, "severity=0 is not valid; valid: 1, 2, 3, 4, 5 (0 is the clean"),
    ("blur", 6, None, "severity=6 is not valid"),
    ("occlude_mouth", 2, None, "needs the face's regions over the crop"),
    ("occlude_mouth", 2, np.zeros((3, 3), np.int8), "needs the face's regions over the crop"),
])
def test_bad_requests_are_refused_by_name(crop, name, severity, regions, expected):
    with pytest.raises(NeopainError, match=expected.replace("(", r"\(")):
        corrupt(crop, name, severity=severity, seed=0, regions=regions)


def test_a_higher_severity_strengthens_the_same_random_draw():
    """With one seed, a severity keeps the draw of the one below and only strengthens it: a
    severity's black squares are those below plus more, a rotation or shift keeps its
    direction. Guards against drawing the positions or direction anew at each severity, which
    would mix the luck of the draw into the severity curve."""
    flat = np.full((120, 160, 3), 200, np.uint8)
    for seed in range(6):
        black = [(corrupt(flat, "patches", severity=s, seed=seed) == 0).all(axis=2)
                 for s in SEVERITIES]
        for lower, higher in zip(black, black[1:]):
            assert not (lower & ~higher).any(), f"seed {seed}: a square moved"
    bar = np.zeros((120, 160, 3), np.uint8)
    bar[20:100, 90:96] = 255  # upright, right of the centre
    for seed in range(6):
        tilts, shifts = [], []
        for severity in SEVERITIES:
            ys, xs = np.nonzero(corrupt(bar, "rotation", severity=severity, seed=seed)[..., 0]
                                > 127)
            tilts.append(xs[ys < ys.mean()].mean() - xs[ys >= ys.mean()].mean())
            ys, xs = np.nonzero(corrupt(bar, "translation", severity=severity,
                                        seed=seed)[..., 0] > 127)
            shifts.append(np.array([xs.mean() - 92.5, ys.mean() - 59.5]))
        assert len(set(np.sign(tilts))) == 1, (seed, np.round(tilts, 1))
        cosines = [a @ b / np.hypot(*a) / np.hypot(*b) for a, b in zip(shifts, shifts[1:])]
        assert min(cosines) > 0.9, (seed, np.round(shifts, 1))
