"""Human perception: the metrics mean what they say (identical maps agree fully, disjoint ones
not at all), the perception table is read in the published layout with errors naming line and
column, and on the synthetic cohort the personas rank in the order of their fidelity to the
ground truth (physicians first, lay people last)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neopain.cli.app import app as neopain_app
from neopain.data.manifest import load_manifest, save_manifest
from neopain.data.synthetic import PERSONAS, CohortSpec, generate_cohort
from neopain.data.tables import TableError
from neopain.errors import NeopainError
from neopain.explain.compare import mask_references
from neopain.explain.alignment import Placement
from neopain.explain.perception import (
    AGREEMENT_METRICS, Reference, agreement, compare_perception, into_frame, into_placement,
    load_perception, match_references, overlap_score, read_heatmap, summarize_agreement, top_mask,
)
from neopain.explain.report import write_perception_report


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("perception")
    generate_cohort(root, CohortSpec(subjects=3, seed=7, images_per_subject=(8, 8),
                                     pain_share=0.7))
    return root


def blob(centre: tuple[int, int], shape=(40, 50)) -> np.ndarray:
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    return np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / 30.0)


def test_identical_maps_agree_fully_and_disjoint_maps_not_at_all():
    a = blob((12, 20))
    same = agreement(a, a * 3.0, top_k=0.1)
    for metric in ("pearson", "spearman", "ssim", "iou", "overlap"):
        assert same[metric] == pytest.approx(1.0), metric
    apart = np.zeros_like(a)
    apart[:, 40:] = 1.0
    a[:, 30:] = 0.0
    far = agreement(a, apart, top_k=0.1)
    assert far["overlap"] == 0.0 and far["iou"] == 0.0 and far["pearson"] < 0
    assert overlap_score(a, apart) == overlap_score(apart, a)
    assert np.isnan(overlap_score(np.zeros((3, 3)), a[:3, :3]))
    assert top_mask(np.arange(100.0).reshape(10, 10), 0.1).sum() == 10
    with pytest.raises(NeopainError, match=r"shapes \(40, 50\) and \(4, 5\) cannot be compared"):
        agreement(a, a[:4, :5])


def test_into_frame_crops_like_face_dataset_then_resizes():
    whole = np.zeros((100, 200), np.float32)
    whole[30:50, 60:100] = 1.0
    moved = into_frame(whole, shape=(20, 40), crop_box=(60.2, 30.0, 99.5, 49.9))
    assert moved.shape == (20, 40) and moved.min() > 0.99


def test_into_placement_scales_to_the_heatmap_and_pads_past_the_image():
    whole = np.zeros((100, 200), np.float32)
    whole[30:50, 60:100] = 1.0
    whole[30:50, :20] = 1.0
    halved = Placement(Path("x.jpg"), (400, 200), (120.0, 60.0, 200.0, 100.0))  # 2× the map
    assert into_placement(whole, halved, shape=(20, 40), name="h").min() > 0.99
    past_left = Placement(Path("x.jpg"), (200, 100), (-20.0, 30.0, 20.0, 50.0))
    cut = into_placement(whole, past_left, shape=(20, 40), name="h")
    assert cut[:, :20].max() == 0.0 and cut[:, 20:].min() > 0.99  # black where it was padded
    with pytest.raises(NeopainError, match=r"heatmap h is 200×100 pixels but its image x.jpg "
                                           r"is 100×100"):
        into_placement(whole, Placement(Path("x.jpg"), (100, 100), (0.0, 0.0, 9.0, 9.0)),
                       shape=(9, 9), name="h")


def test_personas_rank_by_their_fidelity_to_the_ground_truth(cohort, tmp_path):
    references, left_out = mask_references(cohort / "manifest.csv")
    assert references and left_out >= 0
    table = load_perception(cohort / "perception.csv")
    result = compare_perception(table, references)
    assert len(result) == 4 * len(references)
    summary = summarize_agreement(result)
    assert list(summary.index) == [p.name for p in PERSONAS]
    assert list(summary["rank"]) == [1, 2, 3, 4]
    for metric in ("pearson", "overlap", "region_spearman"):  # each metric alone agrees
        means = summary[f"{metric}_mean"].to_numpy()
        assert (np.diff(means) < 0).all(), (metric, means)
    written = write_perception_report(result, tmp_path, reference="the masks")
    summary_json = json.loads(written["summary"].read_text())
    assert summary_json["ranking"][0] == "physician"
    html = written["html"].read_text()
    assert "data:image/png;base64," in html and "physician" in html
    assert set(AGREEMENT_METRICS) <= set(result.columns)


def test_the_perception_table_errors_name_line_and_column(tmp_path):
    path = tmp_path / "perception.csv"
    path.write_text("file_name,persona,new_percep_file_name\na.jpg,lay,h.png\n")
    with pytest.raises(TableError) as error:
        load_perception(path)
    message = str(error.value)
    assert "column 'heatmap_file_name': column missing" in message
    assert "column 'new_file_name': column missing" in message
    path.write_text("file_name,heatmap_file_name,persona,new_percep_file_name,new_file_name\n"
                    "a.jpg,a.png,lay,p/a.png,img/a.jpg\n"
                    "a.jpg,a.png,,p/b.png,img/a.jpg\n"
                    "a.jpg,a.png,lay,p/c.png,img/a.jpg\n")
    with pytest.raises(TableError) as error:
        load_perception(path)
    message = str(error.value)
    assert "line 3, column 'persona': is empty" in message
    assert "line 4, column 'persona': 'lay' repeats line 2" in message


def published_layout(cohort, tmp_path, *, bare: bool):
    """The cohort as the UNIFESP perception dataset ships it: a dataset root with ``Images/``
    and ``Heatmaps/`` (file names that repeat across subjects, or ``bare`` flat names), its
    table at the root (elsewhere, when ``bare``), and a manifest in another folder naming the
    same images. Returns (table, root, manifest)."""
    root, work = tmp_path / "unifesp", tmp_path / "work"
    work.mkdir()
    published = pd.read_csv(cohort / "perception.csv", dtype=str, keep_default_na=False)
    manifest = load_manifest(cohort / "manifest.csv").table.copy()
    names = {}
    for image in dict.fromkeys(published["new_file_name"]):
        subject, stem = image.split("/")[-2], image.split("/")[-1].split("_")[-1]
        names[image] = f"{subject}_img_{stem}" if bare else f"Images/{subject}/img_{stem}"
        target = root / ("Images" if bare else "") / names[image]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cohort / image, target)
    rows = []
    for row in published.itertuples(index=False):
        image = names[row.new_file_name]
        heatmap = (f"{row.persona}_{image.removesuffix('.jpg')}.png" if bare
                   else f"Heatmaps/{row.persona}/{image.split('/', 1)[1]}"
                   .replace(".jpg", ".png"))
        target = root / ("Heatmaps" if bare else "") / heatmap
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cohort / row.new_percep_file_name, target)
        rows.append({"file_name": Path(image).name, "heatmap_file_name": Path(heatmap).name,
                     "persona": row.persona, "new_percep_file_name": heatmap,
                     "new_file_name": image})
    table = (tmp_path / "tables" if bare else root) / "perception.csv"
    table.parent.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(table, index=False)
    manifest["image"] = [f"../unifesp/{'Images/' if bare else ''}{names.get(i, i)}"
                         for i in manifest["image"]]
    manifest["mask"] = [str(cohort / m) if m else "" for m in manifest["mask"]]
    manifest = manifest[manifest["image"].str.startswith("../unifesp/")]
    save_manifest(manifest, work / "manifest.csv")
    return table, root, work / "manifest.csv"


@pytest.mark.parametrize("bare", [False, True], ids=["table at the root", "bare file names"])
def test_the_unifesp_perception_dataset_is_compared_in_its_published_layout(cohort, tmp_path,
                                                                          bare):
    """Issue 24: the published layout was refused ("no image ... has a heatmap"): its file
    names repeat across subjects and its paths start at the dataset root, not at the
    manifest's folder."""
    references, _ = mask_references(cohort / "manifest.csv")
    expected = summarize_agreement(compare_perception(load_perception(
        cohort / "perception.csv"), references))["pearson_mean"]
    table, root, manifest = published_layout(cohort, tmp_path, bare=bare)
    out = tmp_path / "agreement"
    result = CliRunner().invoke(neopain_app, [
        "explain", "compare", "--perception", str(table), "--root", str(root), "--masks",
        str(manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "nothing to compare with" not in result.output
    summary = json.loads((out / "summary.json").read_text())
    for persona, pearson in expected.items():
        assert summary["personas"][persona]["pearson_mean"] == pytest.approx(pearson)


def test_a_missing_perception_file_names_the_line_and_the_paths_tried(cohort, tmp_path):
    table, root, _ = published_layout(cohort, tmp_path, bare=True)
    with pytest.raises(TableError) as error:
        load_perception(table)  # no --root: the table's folder holds neither Images/ nor files
    message = str(error.value)
    heatmap = pd.read_csv(table)["new_percep_file_name"].iat[0]
    assert (f"line 2, column 'new_percep_file_name': {heatmap!r} file not found; tried "
            f"{table.parent / heatmap}, {table.parent / 'Heatmaps' / heatmap}") in message
    assert len(load_perception(table, root=root)) == len(pd.read_csv(table))


def test_a_reference_is_not_matched_to_images_of_other_subjects_sharing_its_file_name():
    """Bug guarded: UNIFESP file names repeat across subjects and ``explain run`` explains only
    test subjects, so the heatmaps of infants ID1 and ID2 were both compared with ID3's."""
    placement = Placement(image=Path("/data/orig/ID3/img_1.jpg"), size=(50, 40),
                          box=(0, 0, 50, 40))
    references = {"ID3/img_1.jpg": Reference(np.zeros((40, 50)), "pain", placement=placement)}
    others = pd.DataFrame({"image_path": ["/u/Images/ID1/img_1.jpg", "/u/Images/ID2/img_1.jpg",
                                          "/u/Images/ID1/img_1.jpg"]})
    assert match_references(others, references) == [None, None, None]
    own = pd.DataFrame({"image_path": ["/u/Images/ID1/img_1.jpg", "/u/Images/ID3/img_1.jpg",
                                       "/u/Images/ID2/img_1.jpg", "/u/Images/ID3/img_1.jpg"]})
    assert match_references(own, references) == [None, "ID3/img_1.jpg", None, "ID3/img_1.jpg"]
    alone = pd.DataFrame({"image_path": ["/u/Images/ID1/img_1.jpg"] * 2})
    assert match_references(alone, references) == ["ID3/img_1.jpg"] * 2


def test_a_box_far_past_its_image_and_an_empty_or_nan_heatmap_are_refused_by_name(tmp_path):
    """Bug guarded: an edited original_box of [0, 0, 1e5, 1e5] made np.pad allocate tens of GB,
    and a (0, 40) heatmap raised a ZeroDivisionError."""
    whole = np.ones((100, 200), np.float32)
    huge = Placement(Path("x.jpg"), (200, 100), (0.0, 0.0, 1e5, 1e5))
    with pytest.raises(NeopainError, match=r"heatmap h: the model's input .* reaches far past "
                                           r"its image x.jpg \(200×100\); valid: .* at most 4×"):
        into_placement(whole, huge, shape=(20, 40), name="h")
    padded = Placement(Path("x.jpg"), (200, 100), (-50.0, -20.0, 250.0, 120.0))
    assert into_placement(whole, padded, shape=(20, 40), name="h").max() > 0.99
    for name, array in [("empty", np.zeros((0, 40), np.float32)),
                        ("nan", np.full((4, 4), np.nan, np.float32))]:
        np.save(tmp_path / f"{name}.npy", array)
        with pytest.raises(NeopainError, match=f"heatmap {tmp_path / name}.npy (has shape|holds "
                                               "NaN)"):
            read_heatmap(tmp_path / f"{name}.npy")
