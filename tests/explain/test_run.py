"""Explaining a set of images: inputs are preprocessed exactly as training's FaceDataset does,
face-mesh landmarks land on the same input pixels as the keypoints, and the explanations table
matches the files written."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from neopain.training.dataset import FaceDataset
from neopain.data.manifest import format_box, format_keypoints, load_manifest, save_manifest
from neopain.errors import NeopainError
from neopain.explain import GradCam
from neopain.explain.run import explain_images, folder_items, manifest_items
from neopain.models.preprocess import preprocess_crop
from neopain.faces.landmarks import save_landmarks
from neopain.models.ncnn import NCNN_CFG


@pytest.fixture
def manifest(tmp_path):
    """Two images with face boxes, keypoints and 468 landmarks whose first 5 are the keypoints."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (height, width) in enumerate(((90, 130), (200, 150))):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(0, 255, (height, width, 3),
                                                            np.uint8))
        box = [10.4, 12.7, width - 20.2, height - 5.5]
        points = rng.uniform([box[0], box[1]], [box[2], box[3]], (468, 2))
        save_landmarks(np.c_[points, np.zeros(468)], tmp_path / f"{i}.npy")
        rows.append({"image": f"{i}.png", "subject": f"S{i}", "label": "pain",
                     "face_box": format_box(box), "keypoints": format_keypoints(points[:5]),
                     "landmarks": f"{i}.npy"})
    save_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")
    return load_manifest(tmp_path / "manifest.csv")


def test_inputs_and_points_are_the_whole_pixel_face_crop_resized(manifest):
    # expected values made by hand here (crop in whole pixels, the runtime's preprocessing,
    # pixel-centre point mapping), not by the FaceDataset that manifest_items uses
    items = list(manifest_items(manifest, NCNN_CFG))
    assert len(items) == len(manifest)
    for row, item in enumerate(items):
        box = manifest.boxes()[row]
        x1, y1, x2, y2 = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])),
                          int(np.ceil(box[3])))
        crop = cv2.imread(str(manifest.image_path(row)))[y1:y2, x1:x2]
        height, width = NCNN_CFG.input_size
        points = ((manifest.keypoints()[row] - [x1, y1] + 0.5)
                  * [width / (x2 - x1), height / (y2 - y1)] - 0.5)
        assert np.array_equal(item.image, preprocess_crop(crop, NCNN_CFG))
        assert np.allclose(item.keypoints, points, atol=1e-4)
        # the manifest rounds keypoints to 0.01 px; the landmarks file keeps full precision
        assert np.allclose(item.landmarks[:5], points, atol=0.02)
    whole = cv2.imread(str(manifest.image_path(0)))
    uncropped = FaceDataset(manifest, size=NCNN_CFG.input_size, mean=NCNN_CFG.mean,
                            std=NCNN_CFG.std)[0]["image"].numpy()
    assert np.allclose(preprocess_crop(whole, NCNN_CFG), uncropped, atol=1e-6)


def test_each_image_is_decoded_once_and_placed_on_its_whole_size(manifest, monkeypatch):
    # guards the second decode manifest_items did only to learn the image's size
    import neopain.explain.run
    import neopain.training.dataset
    from neopain.data.images import read_image

    decoded = []

    def counting_read(path, **kwargs):
        decoded.append(str(path))
        return read_image(path, **kwargs)

    for module in (neopain.training.dataset, neopain.explain.run):
        monkeypatch.setattr(module, "read_image", counting_read)
    for crop in (True, False):
        decoded.clear()
        items = list(manifest_items(manifest, NCNN_CFG, crop_to_face=crop))
        assert sorted(decoded) == sorted(str(manifest.image_path(r)) for r in range(len(manifest)))
        for row, item in enumerate(items):
            height, width = cv2.imread(str(manifest.image_path(row))).shape[:2]
            assert item.placement.size == (width, height)
            x1, y1, x2, y2 = manifest.boxes()[row]
            whole_pixels = (np.floor(x1), np.floor(y1), np.ceil(x2), np.ceil(y2))
            assert item.placement.box == (whole_pixels if crop else (0, 0, width, height))


def test_the_table_lists_every_file_written(manifest, random_ncnn, tmp_path):
    with GradCam(random_ncnn, layer="centre.conv2") as explainer:
        table = explain_images(manifest_items(manifest, NCNN_CFG), {"gradcam": explainer},
                               cfg=NCNN_CFG, out=tmp_path / "out", target="both")
    for image, group in table.groupby("image"):  # both: the true class and the predicted one
        assert set(group["target"]) == {"pain", group["pred"].iat[0]}, image
    saved = pd.read_csv(tmp_path / "out" / "explanations.csv", keep_default_na=False)
    assert len(saved) == len(table)
    for row in saved.itertuples():
        assert np.load(tmp_path / "out" / row.heatmap).shape == (120, 120)
        overlay = cv2.imread(str(tmp_path / "out" / row.overlay))
        assert overlay.shape[0] >= 240
        regions = np.load(tmp_path / "out" / row.regions)
        assert regions.shape == (120, 120) and regions.dtype == np.int8


def test_a_folder_without_images_and_unknown_targets_are_refused(tmp_path, random_ncnn):
    with pytest.raises(NeopainError, match="no images"):
        list(folder_items(tmp_path, NCNN_CFG))
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((50, 40, 3), np.uint8))
    items = list(folder_items(tmp_path, NCNN_CFG))
    with GradCam(random_ncnn) as explainer:
        with pytest.raises(NeopainError, match="target='true' needs the true class"):
            explain_images(items, {"gradcam": explainer}, cfg=NCNN_CFG, out=tmp_path / "o",
                           target="true")
        with pytest.raises(NeopainError, match="target='mine' is not valid"):
            explain_images(items, {"gradcam": explainer}, cfg=NCNN_CFG, out=tmp_path / "o",
                           target="mine")


def test_a_folder_name_too_long_for_the_file_system_is_no_folder(tmp_path):
    """``Path.is_dir`` raised ``OSError: File name too long`` for a 300-character --images."""
    with pytest.raises(NeopainError, match="not a folder"):
        list(folder_items(tmp_path / ("a" * 300), NCNN_CFG))
