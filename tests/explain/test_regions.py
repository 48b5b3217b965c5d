"""Facial regions: on the synthetic cohort each NFCS action's ground-truth mask falls in the
region named after it (from the 5 keypoints, and from the face mesh), the layout turns and
scales with the face, and shares are shares (add up to 1, aggregate per class)."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from neopain.data.manifest import load_manifest
from neopain.data.synthetic import ACTIONS, CohortSpec, generate_cohort
from neopain.errors import NeopainError
from neopain.explain import OUTSIDE, REGIONS, region_map, region_shares
from neopain.explain.localization import read_action_mask
from neopain.faces.regions import BROWS, FACE_OVAL, LIPS_OUTER, regions_by_class

EXPECTED = {"brow_bulge": "brows", "eye_squeeze": "eyes", "nasolabial_furrow": "nasolabial",
            "open_lips": "mouth", "vertical_mouth_stretch": "mouth",
            "horizontal_mouth_stretch": "mouth"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("regions")
    generate_cohort(root, CohortSpec(subjects=4, seed=5, images_per_subject=(8, 8),
                                     pain_share=0.9))
    return load_manifest(root / "manifest.csv")


def action_shares(cohort, *, landmarks: bool) -> dict[str, float]:
    """For each action, the share of its mask pixels (over the cohort) in its region."""
    inside = dict.fromkeys(ACTIONS, 0)
    total = dict.fromkeys(ACTIONS, 0)
    keypoints = cohort.keypoints()
    mesh = None
    if landmarks:
        from neopain.faces.landmarks import FaceMesh

        mesh = FaceMesh()
    try:
        for row in range(len(cohort)):
            bits = cv2.imread(str(cohort.root / cohort.table["mask"].iat[row]),
                              cv2.IMREAD_UNCHANGED)
            points = None
            if mesh is not None:
                points = mesh.landmarks(cv2.imread(str(cohort.image_path(row))))
                if points is None:
                    continue
            labels = region_map(bits.shape, keypoints=keypoints[row], landmarks=points)
            for bit, action in enumerate(ACTIONS):
                pixels = (bits >> bit) & 1 > 0
                inside[action] += int((labels[pixels] == REGIONS.index(EXPECTED[action])).sum())
                total[action] += int(pixels.sum())
    finally:
        if mesh is not None:
            mesh.close()
    assert all(total.values()), total
    return {action: inside[action] / total[action] for action in ACTIONS}


def test_each_action_mask_lies_in_its_region_from_keypoints(cohort):
    shares = action_shares(cohort, landmarks=False)
    assert all(share >= 0.7 for share in shares.values()), shares


def test_each_action_mask_lies_in_its_region_from_the_face_mesh(cohort):
    shares = action_shares(cohort, landmarks=True)
    assert all(share >= 0.55 for share in shares.values()), shares


def test_contours_are_mediapipes():
    from mediapipe.python.solutions import face_mesh_connections as connections

    def points(edges) -> set[int]:
        return {i for edge in edges for i in edge}

    assert set(FACE_OVAL) == points(connections.FACEMESH_FACE_OVAL)
    assert set(BROWS) == points(connections.FACEMESH_LEFT_EYEBROW
                                | connections.FACEMESH_RIGHT_EYEBROW)
    outer = points(connections.FACEMESH_LIPS) - {13, 14, 78, 80, 81, 82, 87, 88, 95, 178, 191,
                                                  308, 310, 311, 312, 317, 318, 324, 402, 415}
    assert set(LIPS_OUTER) == outer


def test_the_layout_turns_and_scales_with_the_face():
    keypoints = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 68.0], [46.0, 90.0],
                          [74.0, 90.0]])
    labels = region_map((160, 120), keypoints=keypoints)
    turn = cv2.getRotationMatrix2D((60.0, 70.0), 25.0, 0.7)
    moved = keypoints @ turn[:, :2].T + turn[:, 2]
    expected = cv2.warpAffine(labels.astype(np.float32) + 1, turn, (120, 160),
                              flags=cv2.INTER_NEAREST) - 1
    turned = region_map((160, 120), keypoints=moved)
    inside = expected >= 0
    assert (turned[inside] == expected[inside]).mean() > 0.95
    assert set(np.unique(labels)) == set(range(-1, len(REGIONS)))  # every region is drawn


def test_shares_add_up_and_aggregate_per_class():
    keypoints = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 68.0], [46.0, 90.0],
                          [74.0, 90.0]])
    labels = region_map((160, 120), keypoints=keypoints)
    heat = np.zeros((160, 120))
    heat[labels == REGIONS.index("mouth")] = 1.0
    heat[0, 0] = 1.0  # outside the face
    shares = region_shares(heat, labels)
    assert set(shares) == {*REGIONS, OUTSIDE}
    assert shares["mouth"] == pytest.approx(1 - shares[OUTSIDE]) and shares[OUTSIDE] > 0
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(np.isnan(v) for v in region_shares(np.zeros((160, 120)), labels).values())
    rows = pd.DataFrame([{"method": "ig", "pred": pred, **region_shares(h, labels)}
                         for pred, h in (("pain", heat), ("pain", heat),
                                         ("nopain", np.ones((160, 120))))])
    table = regions_by_class(rows)
    assert table.loc[("ig", "pain"), "images"] == 2
    assert table.loc[("ig", "pain"), "mouth"] == pytest.approx(shares["mouth"])


def test_bad_points_are_refused():
    with pytest.raises(NeopainError, match="need keypoints or landmarks"):
        region_map((10, 10))
    with pytest.raises(NeopainError, match="keypoints have shape"):
        region_map((10, 10), keypoints=np.full((5, 2), np.nan))
    with pytest.raises(NeopainError, match="eye keypoints coincide"):
        region_map((10, 10), keypoints=np.ones((5, 2)))
    with pytest.raises(NeopainError, match="differs from the region map"):
        region_shares(np.ones((4, 4)), np.zeros((5, 5), np.int8))


def test_read_action_mask_takes_the_action_bits_only(tmp_path):
    bits = np.array([[0, 1 << 7, 1, (1 << 7) | (1 << 5)]], np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), bits)
    assert read_action_mask(tmp_path / "m.png").tolist() == [[False, False, True, True]]
    with pytest.raises(NeopainError, match=r"none.png cannot be read \(file not found\)"):
        read_action_mask(tmp_path / "none.png")
    cv2.imwrite(str(tmp_path / "colour.png"), np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(NeopainError, match="has mode RGB; valid: an 8-bit single-channel"):
        read_action_mask(tmp_path / "colour.png")
