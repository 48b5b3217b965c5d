"""``neopain explain run | compare | sanity`` through the Typer app: the files written are the
ones promised (heatmaps, overlays, explanations.csv, region shares per predicted class), an
exported ONNX model is explained through occlusion, compare ranks the cohort's personas
(physicians first against the ground truth), and bad input exits 1 naming what is wrong."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli_invoke import invoke
from neopain.cli.app import app as neopain_app
from neopain.data.manifest import load_manifest
from neopain.faces.regions import REGIONS
from neopain.training import TrainConfig, run_cv


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(neopain_app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained(cohort6, tmp_path_factory):
    """The 6-subject cohort (``.cohort``) and a 1-epoch N-CNN on its fold 0 (``.fold``; test
    subjects: 2), trained into a folder of this module (``.root``)."""
    root = tmp_path_factory.mktemp("explain_cli")
    run_cv(TrainConfig(model="ncnn", manifest=cohort6 / "manifest.csv",
                       folds=cohort6 / "folds.json", out=root / "run", fold=0, epochs=1,
                       batch_size=8, device="cpu"))
    return SimpleNamespace(cohort=cohort6, fold=root / "run" / "fold_0", root=root)


def test_run_writes_heatmaps_overlays_and_region_shares(trained, tmp_path):
    out = tmp_path / "explained"
    code, output = run("explain", "run", str(trained.fold), "--out", str(out),
                       "--method", "gradcam", "--method", "ig", "--target", "both",
                       "--limit", "2")
    assert code == 0, output
    table = pd.read_csv(out / "explanations.csv", dtype=str, keep_default_na=False)
    assert table["image"].nunique() == 2
    assert set(table["method"]) == {"gradcam", "ig"}
    for _, group in table.groupby(["image", "method"]):
        label, pred = group["label"].iat[0], group["pred"].iat[0]
        assert set(group["target"]) == {label, pred}  # both: the true and the predicted class
    for row in table.itertuples():
        heat = np.load(out / row.heatmap)
        assert heat.shape == (120, 120) and heat.min() >= 0
        assert (out / row.overlay).is_file()
        shares = np.array([float(getattr(row, name) or "nan") for name in (*REGIONS, "outside")])
        assert shares.sum() == pytest.approx(1.0, abs=1e-4) or np.isnan(shares).all()
    assert (out / "regions.csv").is_file() and (out / "regions.png").is_file()
    assert "what drives the decisions" in output and "nasolabial" in output


def test_run_explains_an_onnx_model_on_a_folder_of_faces(trained, tmp_path):
    from neopain.export.onnx import export_fold

    onnx, _ = export_fold(trained.fold, tmp_path / "model.onnx")
    faces = tmp_path / "faces"
    faces.mkdir()
    rng = np.random.default_rng(0)
    import cv2

    for i in range(2):
        cv2.imwrite(str(faces / f"face{i}.png"), rng.integers(0, 255, (90, 80, 3), np.uint8))
    out = tmp_path / "onnx_out"
    code, output = run("explain", "run", str(onnx), "--images", str(faces), "--out", str(out),
                       "--method", "occlusion")
    assert code == 0, output
    table = pd.read_csv(out / "explanations.csv")
    assert list(table["image"]) == ["face0.png", "face1.png"]
    assert "no keypoints known" in output
    code, output = run("explain", "run", str(onnx), "--images", str(faces), "--out", str(out),
                       "--method", "gradcam")
    assert code == 1 and "needs a torch model" in output


def test_compare_ranks_personas_against_masks_and_against_the_model(trained, tmp_path):
    perception = str(trained.cohort / "perception.csv")
    code, output = run("explain", "compare", "--perception", perception, "--masks",
                       str(trained.cohort / "manifest.csv"), "--out", str(tmp_path / "m"))
    assert code == 0, output
    assert "1. physician" in output and "4. lay" in output
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["ranking"] == ["physician", "health_professional", "parent", "lay"]
    assert (tmp_path / "m" / "report.html").is_file()
    out = tmp_path / "explained"
    assert run("explain", "run", str(trained.fold), "--out", str(out))[0] == 0
    code, output = run("explain", "compare", "--perception", perception,
                       "--attributions", str(out))
    assert code == 0, output
    assert "per persona and class" in output
    assert "images of the perception table have nothing to compare with" in output
    agreement = pd.read_csv(out / "agreement" / "agreement.csv")
    assert set(agreement["persona"]) == {"physician", "health_professional", "parent", "lay"}


def test_sanity_prints_the_cascade_and_exits_by_the_verdict(trained):
    code, output = run("explain", "sanity", str(trained.fold), "--method",
                       "gradcam", "--images", "2")
    assert "cascading weight randomization" in output and "centre.conv1" in output
    verdict = re.search(r"(pass|FAIL) gradcam: mean Spearman", output)
    assert verdict is not None, output
    assert code == (0 if verdict.group(1) == "pass" else 1)


@pytest.mark.parametrize("args, message", [
    (["run", "{root}/run/fold_9", "--out", "{root}/x"], "model.pt: file not found"),
    (["run", "{fold}", "--out", "{root}/x", "--method", "shap"],
     "--method 'shap' is not valid; valid: gradcam, ig, occlusion, rise, lime"),
    (["run", "{fold}", "--out", "{root}/x", "--target", "truth"],
     "target='truth' is not valid; valid: predicted, true, both"),
    (["compare", "--perception", "{cohort}/perception.csv"],
     "give exactly one of --attributions DIR and --masks MANIFEST"),
    (["compare", "--perception", "{cohort}/manifest.csv", "--masks", "{cohort}/manifest.csv"],
     "manifest.csv: 5 problems"),
    (["sanity", "{fold}", "--method", "occlusion"],
     "method 'occlusion' cannot be checked; valid: gradcam, ig"),
])
def test_bad_input_exits_1_with_a_message(trained, args, message):
    code, output = run("explain", *[a.format(root=trained.root, fold=trained.fold,
                                             cohort=trained.cohort) for a in args])
    assert code == 1
    assert message in " ".join(output.split()), output


def test_benchmark_scores_each_method_into_a_table_a_csv_and_a_plot(trained, tmp_path):
    out = tmp_path / "bench"
    code, output = run("explain", "benchmark", str(trained.fold), "--out", str(out),
                       "--method", "gradcam", "--method", "saliency", "--method", "rise",
                       "--rise-masks", "40", "--limit", "3", "--perturbations", "2",
                       "--steps", "5")
    assert code == 0, output
    assert "explanation methods on 3 test images" in output and "infidelity" in output
    table = pd.read_csv(out / "benchmark.csv")
    assert list(table["method"]) == ["gradcam", "saliency", "rise"]
    assert table[["seconds_per_image", "infidelity", "sensitivity_max", "deletion",
                  "insertion"]].notna().all().all()
    assert set(pd.read_csv(out / "curves.csv")["curve"]) == {"deletion", "insertion"}
    assert (out / "benchmark.png").stat().st_size > 10_000


def test_an_onnx_model_is_explained_by_rise_and_refused_gradient_methods_by_name(trained,
                                                                                   tmp_path):
    from neopain.export.onnx import export_fold

    onnx, _ = export_fold(trained.fold, tmp_path / "model.onnx")
    out = tmp_path / "rise"
    code, output = run("explain", "run", str(onnx), "--manifest",
                       str(trained.cohort / "manifest.csv"), "--limit", "1", "--out", str(out),
                       "--method", "rise", "--rise-masks", "20", "--no-overlays")
    assert code == 0, output
    assert set(pd.read_csv(out / "explanations.csv")["method"]) == {"rise"}
    code, output = run("explain", "run", str(onnx), "--manifest",
                       str(trained.cohort / "manifest.csv"), "--out", str(out),
                       "--method", "deeplift")
    assert code == 1
    assert "--method 'deeplift' needs a torch model" in output
    assert "an .onnx model can use: occlusion, rise, lime" in output


def test_benchmark_says_why_there_is_no_localization_once_and_truly(trained, tmp_path):
    """Bug guarded: a crop manifest (mask column of the originals) got its own note and then
    also "the manifest has no mask column", which it has."""
    table = pd.read_csv(trained.cohort / "manifest.csv", dtype=str, keep_default_na=False)
    for column in ("image", "mask"):
        table[column] = [str(trained.cohort / cell) if cell else "" for cell in table[column]]
    table["original_image"] = table["image"]
    crops = tmp_path / "crops.csv"
    table.to_csv(crops, index=False)
    without = tmp_path / "without_masks.csv"
    table.drop(columns=["mask", "original_image"]).to_csv(without, index=False)
    for manifest, note in ((crops, "do not lie on the crops"), (without, "no mask column")):
        code, output = run("explain", "benchmark", str(trained.fold), "--out",
                           str(tmp_path / manifest.stem), "--manifest", str(manifest),
                           "--method", "gradcam", "--limit", "1", "--perturbations", "2",
                           "--steps", "2")
        assert code == 0, output
        flat = " ".join(output.split())
        assert flat.count("note: ") == 1 and note in flat, output


def test_benchmark_refuses_an_unknown_method_by_name(trained, tmp_path):
    code, output = run("explain", "benchmark", str(trained.fold), "--out", str(tmp_path),
                       "--method", "shap", "--limit", "1")
    assert code == 1
    assert "--method 'shap' is not valid; valid: gradcam, ig, occlusion, rise" in output


def test_compare_refuses_masks_without_any_action_and_a_perception_table_without_rows(
        cohort6, tmp_path):
    """Bug guarded: all-empty masks left no reference and a header-only perception table no
    row, and compare ended in a StopIteration or IndexError traceback."""
    manifest = tmp_path / "manifest.csv"
    table = pd.read_csv(cohort6 / "manifest.csv", dtype=str, keep_default_na=False)
    table["image"] = [str(cohort6 / image) for image in table["image"]]
    table["mask"] = ""
    table.to_csv(manifest, index=False)
    assert len(load_manifest(manifest).table) == len(table)
    perception = cohort6 / "perception.csv"
    code, output = invoke("explain", "compare", "--perception", str(perception),
                          "--masks", str(manifest), "--out", str(tmp_path / "a"))
    assert code == 1
    assert f"no row of {manifest} has an action in its mask" in output
    header = tmp_path / "perception.csv"
    header.write_text(perception.read_text().splitlines()[0] + "\n")
    code, output = invoke("explain", "compare", "--perception", str(header),
                          "--masks", str(cohort6 / "manifest.csv"), "--out", str(tmp_path / "b"))
    assert code == 1
    assert f"perception table {header} has no rows" in output
