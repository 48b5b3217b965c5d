"""FaceDataset: the right rows and label indices, exact normalization, and online augmentation
that is applied, reproducible with a seed and the same for any DataLoader worker count."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from neopain.training.augment import Augmenter, AugmentSpec
from neopain.training.dataset import IMAGENET_MEAN, IMAGENET_STD, LABEL_INDEX, FaceDataset
from neopain.data.manifest import format_box, format_keypoints, load_manifest, save_manifest
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.errors import NeopainError

KEYPOINTS = np.array([[20.0, 24], [44, 24], [32, 34], [24, 46], [40, 46]])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    result = generate_cohort(root, CohortSpec(subjects=4, seed=2, images_per_subject=(2, 3)))
    return load_manifest(result.manifest, check_files=True)


def write_images(root: Path, rows: list[dict], *, seed: int = 0):
    """Random PNG images (lossless, so pixels are known exactly) and their manifest."""
    rng = np.random.default_rng(seed)
    images = []
    for row in rows:
        image = rng.integers(0, 256, (row.pop("height", 64), row.pop("width", 64), 3), np.uint8)
        cv2.imwrite(str(root / row["image"]), image)
        images.append(image)
    save_manifest(pd.DataFrame(rows), root / "manifest.csv")
    return load_manifest(root / "manifest.csv", check_files=True), images


def test_a_dataloader_yields_every_selected_row_with_its_label_index(cohort):
    train = cohort.subjects[:3]
    data = FaceDataset(cohort, subjects=train, transform=Augmenter(AugmentSpec()), seed=0,
                       size=(96, 80), keypoints=True)
    batches = list(DataLoader(data, batch_size=4, num_workers=0))
    index = torch.cat([b["index"] for b in batches]).numpy()
    labels = torch.cat([b["label"] for b in batches]).numpy()
    table = cohort.table
    assert sorted(index) == [i for i in range(len(cohort)) if table["subject"].iat[i] in train]
    assert list(labels) == [LABEL_INDEX[table["label"].iat[i]] for i in index]
    assert {0, 1} == set(labels) and LABEL_INDEX == {"nopain": 0, "pain": 1}
    first = batches[0]
    assert first["image"].dtype == torch.float32 and first["image"].shape[1:] == (3, 96, 80)
    assert first["label"].dtype == torch.int64 and first["keypoints"].shape[1:] == (5, 2)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_normalization_is_exactly_pixel_over_255_minus_mean_over_std(tmp_path, order):
    manifest, images = write_images(tmp_path, [{"image": "a.png", "subject": "s", "label": "pain"}])
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    item = FaceDataset(manifest, size=(64, 64), mean=mean, std=std, channel_order=order)[0]
    pixels = images[0][:, :, ::-1] if order == "RGB" else images[0]  # cv2 wrote BGR
    expected = (pixels.astype(np.float64) / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(item["image"].numpy(), expected.transpose(2, 0, 1), atol=1e-5)
    default = FaceDataset(manifest, size=(64, 64))[0]["image"].numpy()
    rgb = (images[0][:, :, ::-1] / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(default, rgb.transpose(2, 0, 1), atol=1e-5)


def test_resize_and_face_crop_move_the_keypoints_with_the_pixels(tmp_path):
    rows = [{"image": "a.png", "subject": "s", "label": "nopain", "width": 80, "height": 72,
             "face_box": format_box((8, 12, 56, 60)), "keypoints": format_keypoints(KEYPOINTS)}]
    manifest, images = write_images(tmp_path, rows)
    whole = FaceDataset(manifest, size=(144, 160), keypoints=True)[0]
    np.testing.assert_allclose(whole["keypoints"].numpy(), (KEYPOINTS + 0.5) * 2 - 0.5, atol=1e-4)
    crop = FaceDataset(manifest, size=(48, 48), crop_to_face=True, keypoints=True,
                       channel_order="BGR", mean=(0, 0, 0), std=(1, 1, 1))[0]
    np.testing.assert_allclose(crop["keypoints"].numpy(), KEYPOINTS - [8, 12], atol=1e-4)
    np.testing.assert_allclose(crop["image"].numpy() * 255,
                               images[0][12:60, 8:56].transpose(2, 0, 1), atol=1e-3)


def test_the_transform_is_applied_and_reproducible_with_a_seed(cohort):
    def items(data, epoch=0):
        data.set_epoch(epoch)
        return torch.stack([data[i]["image"] for i in range(len(data))])

    plain = items(FaceDataset(cohort, size=(64, 64)))
    augmented = dict(transform=Augmenter(AugmentSpec()), size=(64, 64))
    first = items(FaceDataset(cohort, seed=3, **augmented))
    again = items(FaceDataset(cohort, seed=3, **augmented))
    assert torch.equal(first, again)
    assert not torch.equal(first, plain)
    assert not torch.equal(first, items(FaceDataset(cohort, seed=3, **augmented), epoch=1))
    assert not torch.equal(first, items(FaceDataset(cohort, seed=4, **augmented)))
    torch.manual_seed(0)
    unseeded = items(FaceDataset(cohort, **augmented))
    torch.manual_seed(0)
    assert torch.equal(unseeded, items(FaceDataset(cohort, **augmented)))


def test_the_same_seed_gives_the_same_batches_for_any_worker_count(cohort):
    data = FaceDataset(cohort, transform=Augmenter(AugmentSpec()), seed=1, size=(32, 32),
                       keypoints=True)

    def run(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(data, batch_size=3, num_workers=workers)
        return [torch.cat([b["image"].flatten(1), b["keypoints"].flatten(1)], 1) for b in loader]

    for one, two in zip(run(0), run(2), strict=True):
        assert torch.equal(one, two)


@pytest.mark.parametrize("crop", [False, True], ids=["whole", "face-crop"])
def test_online_keypoints_stay_inside_the_output(cohort, crop):
    data = FaceDataset(cohort, transform=Augmenter(AugmentSpec(shift=0.4)), seed=0,
                       size=(50, 70), keypoints=True, crop_to_face=crop)
    points = torch.stack([data[i]["keypoints"] for i in range(len(data))])
    assert not torch.isnan(points).any()
    assert (points >= -0.5).all() and (points[..., 0] <= 69.5).all()
    assert (points[..., 1] <= 49.5).all()


def test_bad_arguments_are_named_with_what_is_valid(cohort, tmp_path):
    cases = [
        (dict(subjects=["nobody"]), "subjects nobody are not in the manifest"),
        (dict(rows=[0, 99]), "rows has 99; valid: 0 to"),
        (dict(rows=[0], subjects=["S001"]), "give rows or subjects, not both"),
        (dict(mean=(0.5, 0.5)), "mean=(0.5, 0.5) must be 3 finite numbers"),
        (dict(std=(1, 0, 1)), "std=(1, 0, 1) must be 3 finite positive numbers"),
        (dict(channel_order="RBG"), "channel_order='RBG' is not valid; valid: RGB, BGR"),
        (dict(size=(224,)), "size=(224,) must be (height, width)"),
    ]
    for kwargs, message in cases:
        with pytest.raises(NeopainError) as caught:
            FaceDataset(cohort, **kwargs)
        assert message in str(caught.value), kwargs
    manifest, _ = write_images(tmp_path, [
        {"image": "a.png", "subject": "s", "label": "pain", "face_box": format_box((1, 1, 9, 9))},
        {"image": "b.png", "subject": "s", "label": "pain"}])
    with pytest.raises(NeopainError, match="manifest line 3, column 'face_box': is empty"):
        FaceDataset(manifest, crop_to_face=True)


def test_an_unreadable_image_names_its_manifest_line(tmp_path):
    manifest, _ = write_images(tmp_path, [{"image": "a.png", "subject": "s", "label": "pain"}])
    (tmp_path / "a.png").write_bytes(b"broken")
    with pytest.raises(NeopainError, match="manifest line 2, image .*a.png: cannot read image: "
                                           "not an image file"):
        FaceDataset(manifest)[0]
