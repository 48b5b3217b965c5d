"""Human perception: the metrics mean what they say (identical maps agree fully, disjoint ones
not at all), the perception table is read in the published layout with errors naming line and
column, and on the synthetic cohort the personas rank in the order of their fidelity to the
ground truth (physicians first, lay people last)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neopain.data.synthetic import PERSONAS, CohortSpec, generate_cohort
from neopain.data.tables import TableError
from neopain.errors import NeopainError
from neopain.explain.compare import mask_references
from neopain.explain.perception import (
    AGREEMENT_METRICS, agreement, compare_perception, into_frame, load_perception,
    overlap_score, summarize_agreement, top_mask,
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
