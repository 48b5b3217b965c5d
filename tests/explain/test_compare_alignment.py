"""Issue 24, point 1: ``explain compare`` cuts human perception heatmaps where the model's input
lies on the ORIGINAL image, for original manifests and ``faces detect`` crop manifests alike.

The bug it guards: with a model trained on a crop manifest (the documented workflow), the
perception heatmaps, drawn on the original images, were matched by file name (the crops keep
it) and cut with the crop-pixel face box; physicians' Pearson fell from 0.52 to 0.02 on this
cohort, silently. The geometry is checked against ``crop_face``'s own affine matrix, not
against the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.data.folds import make_folds, save_folds
from neopain.data.manifest import format_box, load_manifest, parse_box, save_manifest, sha256_file
from neopain.data.synthetic import CohortSpec, generate_cohort
from neopain.errors import NeopainError
from neopain.explain import GradCam
from neopain.explain.alignment import PlacementError, input_placement
from neopain.explain.compare import attribution_references, mask_references
from neopain.explain.perception import (
    Reference, compare_perception, load_perception,
)
from neopain.explain.run import explain_images, manifest_items
from neopain.faces.crop import crop_face, pixel_box
from neopain.faces.detect import detect_faces
from neopain.runs import load_fold, select_rows
from neopain.training import TrainConfig, run_cv

from cli_invoke import invoke


@pytest.fixture(scope="module")
def crops_run(tmp_path_factory):
    """A cohort, its ``faces detect`` crop manifest, an N-CNN trained on the crops, and the
    Grad-CAM explanations of the held-out images through either manifest."""
    root = tmp_path_factory.mktemp("alignment")
    cohort = root / "cohort"
    generate_cohort(cohort, CohortSpec(subjects=4, seed=7, images_per_subject=(8, 8),
                                       pain_share=0.7))
    detect_faces(load_manifest(cohort / "manifest.csv"), detector="manifest", out=root / "crops")
    crops = root / "crops" / "manifest.csv"
    save_folds(make_folds(load_manifest(crops), protocol="holdout", k=1, test_share=0.5,
                          val_share=0, seed=1, manifest_sha256=sha256_file(crops)),
               root / "folds.json")
    run_cv(TrainConfig(model="ncnn", manifest=crops, folds=root / "folds.json", out=root / "run",
                       fold=0, epochs=6, batch_size=16, lr=0.004, lr_schedule="onecycle",
                       flip=0.5, early_stopping=0, device="cpu", seed=1))
    fold = load_fold(root / "run" / "fold_0")
    for name, path in (("original", cohort / "manifest.csv"), ("crops", crops)):
        manifest = load_manifest(path)
        with GradCam(fold.model) as gradcam:
            explain_images(manifest_items(manifest, fold.model.cfg,
                                          rows=select_rows(manifest,
                                                           subjects=fold.test_subjects)),
                           {"gradcam": gradcam}, cfg=fold.model.cfg, out=root / name,
                           overlays=False)
    return root


def physicians(agreement: pd.DataFrame) -> pd.Series:
    return agreement[agreement["persona"] == "physician"].set_index("image")["pearson"]


def test_a_model_on_crops_agrees_with_perception_as_through_the_originals(crops_run):
    perception = load_perception(crops_run / "cohort" / "perception.csv")
    original, _ = attribution_references(crops_run / "original")
    crops, _ = attribution_references(crops_run / "crops")
    through_originals = physicians(compare_perception(perception, original))
    through_crops = physicians(compare_perception(perception, crops))
    assert len(through_crops) == len(through_originals) == len(original) >= 12
    assert through_originals.mean() > 0.3, through_originals.mean()
    assert abs(through_crops.mean() - through_originals.mean()) < 0.05
    per_image = dict(zip(through_originals.index.str.split("/").str[-1], through_originals))
    for image, pearson in through_crops.items():  # the crops keep the original file names
        assert abs(pearson - per_image[image.split("/")[-1]]) < 0.1, image
    # the control: cut with the crop-pixel box, as before, the agreement is gone
    table = pd.read_csv(crops_run / "crops" / "explanations.csv", dtype=str,
                        keep_default_na=False)
    misplaced = {row.image: Reference(np.load(crops_run / "crops" / row.heatmap), row.pred,
                                      crop_box=parse_box(row.crop_box))
                 for row in table.itertuples()}
    assert physicians(compare_perception(perception, misplaced)).mean() < 0.15


def test_a_crop_manifest_without_original_face_box_is_refused_by_name(crops_run, tmp_path):
    manifest = load_manifest(crops_run / "crops" / "manifest.csv")
    broken = crops_run / "crops" / "no_original_box.csv"  # the crops' folder: paths still hold
    save_manifest(manifest.table.drop(columns=["original_face_box"]), broken)
    fold = load_fold(crops_run / "run" / "fold_0")
    with GradCam(fold.model) as gradcam:
        explain_images(manifest_items(load_manifest(broken), fold.model.cfg, rows=[0, 1]),
                       {"gradcam": gradcam}, cfg=fold.model.cfg, out=tmp_path, overlays=False)
    with pytest.raises(NeopainError, match=r"2 of 2 images cannot be placed .* no column "
                                           r"'original_face_box'"):
        attribution_references(tmp_path)
    result = CliRunner().invoke(neopain_app, [
        "explain", "compare", "--perception", str(crops_run / "cohort" / "perception.csv"),
        "--attributions", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no column 'original_face_box'" in " ".join(result.output.split()), result.output
    table = pd.read_csv(tmp_path / "explanations.csv", dtype=str, keep_default_na=False)
    table.drop(columns=["original_box"]).to_csv(tmp_path / "explanations.csv", index=False)
    with pytest.raises(NeopainError, match="column 'original_box': column missing"):
        attribution_references(tmp_path)


@pytest.fixture
def one_crop(tmp_path):
    """An original image, a ``faces detect``-style crop of it (margin 0.25, 224 px, reaching
    past the image's left edge) in a crop manifest, and the crop's affine matrix."""
    original = np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "original.png"), original)
    face = (10.0, 60.0, 130.0, 200.0)
    crop = crop_face(original, face, margin=0.25, size=(224, 224))
    cv2.imwrite(str(tmp_path / "crop.png"), crop.image)
    corners = np.reshape(face, (2, 2)) @ crop.matrix[:, :2].T + crop.matrix[:, 2]
    save_manifest(pd.DataFrame([{"image": "crop.png", "subject": "S1", "label": "pain",
                                 "face_box": format_box(corners.ravel()),
                                 "original_image": "original.png",
                                 "original_face_box": format_box(face)}]),
                  tmp_path / "manifest.csv")
    return load_manifest(tmp_path / "manifest.csv"), crop


def test_the_input_is_placed_through_the_crops_own_affine_map(one_crop):
    manifest, crop = one_crop
    input_box = pixel_box(manifest.boxes()[0], image_shape=crop.image.shape)
    placed = input_placement(manifest, 0, input_box=input_box, image_shape=crop.image.shape)
    back = cv2.invertAffineTransform(crop.matrix)
    expected = np.reshape(input_box, (2, 2)) @ back[:, :2].T + back[:, 2]
    assert np.allclose(placed.box, expected.ravel(), atol=0.05), (placed.box, expected)
    assert placed.size == (400, 300) and placed.image.name == "original.png"


def test_the_crops_settings_are_read_once_per_manifest_not_per_row(one_crop, monkeypatch):
    """Bug guarded: every row's placement read the faces detect settings file again."""
    import neopain.explain.alignment
    from neopain.models.ncnn import NCNN_CFG

    manifest, crop = one_crop
    (manifest.root / "faces.json").write_text(json.dumps({"align": False}))
    rows = pd.concat([manifest.table] * 3, ignore_index=True)
    for i in (1, 2):  # each image appears once in a manifest
        rows.loc[i, "image"] = f"crop{i}.png"
        cv2.imwrite(str(manifest.root / f"crop{i}.png"), crop.image)
    save_manifest(rows, manifest.root / "manifest.csv")
    manifest = load_manifest(manifest.root / "manifest.csv")
    reads = []
    read = neopain.explain.alignment.read_regular_text
    monkeypatch.setattr(neopain.explain.alignment, "read_regular_text",
                        lambda path, **kwargs: reads.append(path) or read(path, **kwargs))
    items = list(manifest_items(manifest, NCNN_CFG))
    assert len(items) == 3 and len(reads) == 1
    input_box = pixel_box(manifest.boxes()[0], image_shape=crop.image.shape)
    expected = input_placement(manifest, 0, input_box=input_box, image_shape=crop.image.shape)
    assert all(item.placement == expected for item in items)


def test_rotated_or_stretched_crops_are_refused(one_crop):
    manifest, crop = one_crop
    input_box = pixel_box(manifest.boxes()[0], image_shape=crop.image.shape)
    (manifest.root / "faces.json").write_text(json.dumps({"align": True}))
    with pytest.raises(PlacementError, match=r"rotated \(`faces detect --align`\)"):
        input_placement(manifest, 0, input_box=input_box, image_shape=crop.image.shape)
    (manifest.root / "faces.json").unlink()
    manifest.table.loc[0, "original_face_box"] = format_box((10.0, 60.0, 130.0, 260.0))
    with pytest.raises(PlacementError, match="not the same face scaled evenly"):
        input_placement(manifest, 0, input_box=input_box, image_shape=crop.image.shape)


def test_a_crop_manifest_keeps_its_masks_reachable_and_never_lays_them_on_the_crops(crops_run):
    """faces detect copied the mask cell verbatim, a path relative to the cohort that no longer
    led to the file; and a crop manifest's masks, drawn on the original images, were cut as if
    they lay on the crops."""
    original = load_manifest(crops_run / "cohort" / "manifest.csv")
    crops = load_manifest(crops_run / "crops" / "manifest.csv")
    by_image = dict(zip(original.table["image"], original.table["mask"]))
    for image, mask in zip(crops.table["original_image"], crops.table["mask"]):
        if mask:
            assert (crops.root / mask).resolve() == \
                (original.root / by_image[Path(image).relative_to("../cohort").as_posix()]
                 ).resolve()
    with pytest.raises(NeopainError, match="crop manifest of neopain faces detect"):
        mask_references(crops_run / "crops" / "manifest.csv")
    code, output = invoke("explain", "benchmark", str(crops_run / "run" / "fold_0"),
                          "--method", "gradcam", "--limit", "2", "--out",
                          str(crops_run / "bench"))
    assert code == 0, output
    assert "no localization" in output and "crop manifest" in output, output
