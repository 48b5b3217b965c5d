"""Dense landmarks: the face mesh finds the astronaut's face where the detector does, derives
the 5 manifest keypoints in manifest order, tracks a moving face in video mode, sees no face in
coffee.png, and saves/loads its points safely."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import skimage.data
from hostile_paths import REASONS, hostile

from neopain.faces.base import KEYPOINT_NAMES, create_detector
from neopain.faces.landmarks import (
    LEFT_EYE_CONTOUR,
    RIGHT_EYE_CONTOUR,
    FaceMesh,
    LandmarkError,
    keypoints_from_landmarks,
    load_landmarks,
    save_landmarks,
)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def astronaut_points(astronaut: np.ndarray) -> np.ndarray:
    with FaceMesh() as mesh:
        points = mesh.landmarks(astronaut)
    assert points is not None
    return points


@pytest.fixture(scope="module")
def astronaut_face(astronaut: np.ndarray):
    with create_detector("mediapipe-short") as detector:
        faces = detector.detect(astronaut)
    assert faces, "mediapipe-short must find the astronaut's face"
    return faces[0]


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]),
                          borderMode=cv2.BORDER_REPLICATE)


def test_eye_contours_are_mediapipes():
    # guards against a typo in the hand-copied index lists (the eye centres would drift)
    from mediapipe.python.solutions.face_mesh_connections import (
        FACEMESH_LEFT_EYE,
        FACEMESH_RIGHT_EYE,
    )

    assert set(RIGHT_EYE_CONTOUR) == {i for edge in FACEMESH_RIGHT_EYE for i in edge}
    assert set(LEFT_EYE_CONTOUR) == {i for edge in FACEMESH_LEFT_EYE for i in edge}


def test_landmarks_lie_on_the_detected_face(astronaut_points, astronaut_face, astronaut):
    assert astronaut_points.shape == (468, 3) and astronaut_points.dtype == np.float32
    x1, y1, x2, y2 = astronaut_face.box
    # the mesh reaches the forehead, above BlazeFace's box: allow the crop's default margin
    margin_x, margin_y = 0.25 * (x2 - x1), 0.25 * (y2 - y1)
    x, y = astronaut_points[:, 0], astronaut_points[:, 1]
    assert ((x >= x1 - margin_x) & (x <= x2 + margin_x)).all()
    assert ((y >= y1 - margin_y) & (y <= y2 + margin_y)).all()
    # in pixels, not fractions: the mesh spans most of the box
    assert x.max() - x.min() > 0.7 * (x2 - x1)
    inside = (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2)
    assert inside.mean() > 0.9


def test_keypoints_in_manifest_order_and_near_the_detectors(astronaut_points, astronaut_face):
    keypoints = keypoints_from_landmarks(astronaut_points)
    assert keypoints.shape == (len(KEYPOINT_NAMES), 2)
    left_eye, right_eye, nose, mouth_left, mouth_right = keypoints
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]  # image-left first
    assert left_eye[0] < nose[0] < right_eye[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    eye_distance = np.linalg.norm(right_eye - left_eye)
    detected = astronaut_face.keypoints
    for i in (0, 1, 2):  # eyes and nose are detected by BlazeFace; its mouth corners are guesses
        assert np.linalg.norm(keypoints[i] - detected[i]) < 0.2 * eye_distance, KEYPOINT_NAMES[i]
    x1, y1, x2, y2 = astronaut_face.box
    assert ((keypoints >= [x1, y1]) & (keypoints <= [x2, y2])).all()


def test_keypoints_follow_a_mirrored_and_a_rolled_face(astronaut, astronaut_points):
    keypoints = keypoints_from_landmarks(astronaut_points)
    width = astronaut.shape[1]
    with FaceMesh() as mesh:
        mirrored = keypoints_from_landmarks(mesh.landmarks(cv2.flip(astronaut, 1)))
        rotation = cv2.getRotationMatrix2D((256, 256), 60, 1.0)
        rolled = keypoints_from_landmarks(mesh.landmarks(cv2.warpAffine(astronaut, rotation,
                                                                        (512, 512))))
    # a mirror swaps the pairs: the image-left eye is still index 0
    expected = (width - 1 - keypoints[:, 0])[[1, 0, 2, 4, 3]]
    assert np.abs(mirrored[:, 0] - expected).max() < 4
    # a roll moves every point with the face, in the same order
    expected = keypoints @ rotation[:, :2].T + rotation[:, 2]
    assert np.linalg.norm(rolled - expected, axis=1).max() < 4


def test_refined_mesh_adds_the_irises(astronaut, astronaut_points):
    with FaceMesh(refine=True) as mesh:
        assert mesh.n_landmarks == 478
        points = mesh.landmarks(astronaut)
    assert points.shape == (478, 3)
    keypoints = keypoints_from_landmarks(points)
    # iris centres 468 (subject's right: image-left) and 473 sit in the eye centres
    assert np.linalg.norm(points[468, :2] - keypoints[0]) < 4
    assert np.linalg.norm(points[473, :2] - keypoints[1]) < 4
    np.testing.assert_allclose(keypoints, keypoints_from_landmarks(astronaut_points), atol=4)


@pytest.mark.parametrize("video", [False, True])
def test_no_face_in_coffee(coffee, video):
    with FaceMesh(video=video) as mesh:
        assert mesh.landmarks(coffee) is None
        assert mesh.landmarks(coffee) is None


def test_video_mode_tracks_a_moving_face(astronaut, astronaut_points):
    shifts = [(3.0 * i, -2.0 * i) for i in range(12)]
    with FaceMesh(video=True) as mesh:
        tracked = [mesh.landmarks(shifted(astronaut, dx, dy)) for dx, dy in shifts]
    assert all(points is not None for points in tracked)
    for (dx, dy), points in zip(shifts, tracked):
        moved = points[:, :2] - astronaut_points[:, :2]
        # the mesh follows the shift: median error within 2 px, every point within 8 px
        assert np.abs(np.median(moved, axis=0) - [dx, dy]).max() < 2, (dx, dy)
        assert np.abs(moved - [dx, dy]).max() < 8, (dx, dy)


def test_video_mode_finds_the_face_again_after_losing_it(astronaut, coffee):
    with FaceMesh(video=True) as mesh:
        assert mesh.landmarks(astronaut) is not None
        assert mesh.landmarks(coffee) is None
        assert mesh.landmarks(shifted(astronaut, 20, 0)) is not None


def test_save_and_load_round_trip(tmp_path, astronaut_points):
    path = save_landmarks(astronaut_points, tmp_path / "a" / "b" / "face.npy")
    assert path == tmp_path / "a" / "b" / "face.npy"
    loaded = load_landmarks(path)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, astronaut_points)
    assert sorted(p.name for p in path.parent.iterdir()) == ["face.npy"]  # no temporary left
    save_landmarks(astronaut_points[:, :3] + 1, path)  # overwrites
    np.testing.assert_array_equal(load_landmarks(path), astronaut_points + 1)


def test_save_rejects_what_is_not_landmarks(tmp_path, astronaut_points):
    with pytest.raises(LandmarkError, match=r"must end in \.npy"):
        save_landmarks(astronaut_points, tmp_path / "face.csv")
    with pytest.raises(LandmarkError, match=r"shape \(5, 2\)"):
        save_landmarks(np.zeros((5, 2)), tmp_path / "face.npy")
    bad = astronaut_points.copy()
    bad[3, 0] = np.nan
    with pytest.raises(LandmarkError, match="NaN"):
        save_landmarks(bad, tmp_path / "face.npy")
    assert not list(tmp_path.iterdir())


def test_load_names_the_file_and_the_problem(tmp_path):
    missing = tmp_path / "missing.npy"
    with pytest.raises(LandmarkError, match="missing.npy not found"):
        load_landmarks(missing)
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(LandmarkError, match="corrupt.npy is not a readable"):
        load_landmarks(corrupt)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((10, 3)))
    with pytest.raises(LandmarkError, match=r"wrong.npy has shape \(10, 3\)"):
        load_landmarks(wrong)
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(LandmarkError, match="pickled.npy"):
        load_landmarks(pickled)


def test_keypoints_reject_bad_shapes():
    with pytest.raises(LandmarkError, match=r"shape \(468,\)"):
        keypoints_from_landmarks(np.zeros(468))
    assert keypoints_from_landmarks(np.zeros((478, 2))).shape == (5, 2)


def test_bad_arguments_and_images_raise_clear_errors(astronaut):
    with pytest.raises(LandmarkError, match=r"min_confidence=1.5 must lie in \[0, 1\]"):
        FaceMesh(min_confidence=1.5)
    with FaceMesh() as mesh:
        for image in (astronaut[:, :, 0], astronaut.astype(np.uint16),
                      np.zeros((0, 0, 3), np.uint8), [[0, 0, 0]]):
            with pytest.raises(LandmarkError, match="expected a BGR uint8"):
                mesh.landmarks(image)


def test_close_frees_the_graph_and_is_safe_twice(astronaut):
    mesh = FaceMesh()
    assert mesh._graph is None  # built lazily: constructing is cheap
    with mesh:
        assert mesh.landmarks(astronaut) is not None
        assert mesh._graph is not None
    assert mesh._graph is None
    mesh.close()
    with pytest.raises(LandmarkError, match="closed"):
        mesh.landmarks(astronaut)


def test_points_are_in_pixels_of_a_wide_frame(astronaut):
    # the same rolled face in a 640×360 frame and centred in a 640×640 one: x and y must scale
    # by their own side (a square photo alone cannot tell width from height)
    rotation = cv2.getRotationMatrix2D((256, 256), 30, 1.0)
    face = cv2.resize(cv2.warpAffine(astronaut, rotation, (512, 512)), (360, 360),
                      interpolation=cv2.INTER_AREA)
    wide = np.zeros((360, 640, 3), np.uint8)
    wide[:, 140:500] = face
    square = cv2.copyMakeBorder(wide, 140, 140, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    with FaceMesh() as mesh:
        in_wide = mesh.landmarks(wide)
        in_square = mesh.landmarks(square)
    assert np.abs(in_wide[:, :2] - (in_square[:, :2] - [0, 140])).max() < 0.5


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "huge"])
def test_load_refuses_a_landmarks_file_that_is_no_small_regular_file(tmp_path, kind):
    """Landmarks were loaded with np.load: a FIFO hung, /dev/zero was read without end."""
    path = tmp_path / "points.npy"
    if kind == "huge":
        np.save(path, np.zeros((2**18, 3)))
        says = "is larger than 1,048,576 bytes"
    else:
        says = REASONS[kind]
        hostile(path, kind)
    with pytest.raises(LandmarkError, match=re.escape(f"landmarks file {path} {says}")):
        load_landmarks(path)
