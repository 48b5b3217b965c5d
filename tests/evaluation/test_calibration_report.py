"""Calibration in `neopain evaluate`: the reliability diagram draws exactly the bins the ECE is
computed on, report.html embeds it (with alt text) whether or not the run is calibrated, the
conformal coverage and referrals reported are `set_summary` of the prediction_set column, and
`compare` ranks a lower ECE as better (it used to rank every metric as higher-is-better)."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from neopain.data.tables import TableError
from neopain.errors import NeopainError
from neopain.evaluation.calibration import set_summary
from neopain.evaluation.calibration_report import reliability_curve
from neopain.evaluation.figures import draw_reliability
from neopain.evaluation.report import compare, evaluate_run, write_report
from neopain.models.calibrator import Calibrator, logit_of
from neopain.runs import load_run
from neopain.runs.metrics import (
    CALIBRATION_BINS,
    binary_metrics,
    calibration_bins,
    calibration_errors,
)

from evaluation.test_report import write_run


def calibrate_folds(run: Path, *, t: float = 3.0, alpha: float = 0.1, quantile: float = 0.35,
                    alphas: dict[int, float] | None = None) -> Path:
    """Add the columns `neopain calibrate` adds, by temperature ``t``, and calibrator.json."""
    for folder in sorted(run.glob("fold_*")):
        fold = int(folder.name.split("_")[1])
        fold_alpha = (alphas or {}).get(fold, alpha)
        calibrator = Calibrator(method="temperature", params={"t": t}, alpha=fold_alpha,
                                quantile=quantile)
        table = pd.read_csv(folder / "predictions.csv", dtype=str, keep_default_na=False)
        prob = calibrator.probability(logit_of(table["prob_pain"].astype(float)))
        table["prob_pain_calibrated"] = [f"{p:.6f}" for p in prob]
        table["pred_calibrated"] = np.where(prob >= 0.5, "pain", "nopain")
        table["prediction_set"] = calibrator.prediction_sets(prob)
        table.to_csv(folder / "predictions.csv", index=False)
        (folder / "calibrator.json").write_text(json.dumps(calibrator.to_dict()))
    return run


def test_reliability_curve_and_diagram_are_the_bins_of_calibration_bins():
    rng = np.random.default_rng(7)
    prob = np.concatenate([rng.beta(0.6, 0.6, 300), [0.0, 1.0, 1 / 15]])  # edges included
    y = (rng.random(len(prob)) < prob ** 2).astype(int)  # miscalibrated on purpose
    curve = reliability_curve(y, prob)

    parts = calibration_bins(prob, bins=CALIBRATION_BINS, strategy="width")
    assert curve.counts.tolist() == [len(i) for i in parts]
    assert curve.mean_prob == pytest.approx([prob[i].mean() for i in parts])
    assert curve.pain_share == pytest.approx([y[i].mean() for i in parts])
    assert curve.counts.sum() == len(prob)
    assert curve.ece == pytest.approx(calibration_errors(y, prob)["ece"])
    assert curve.index[-1] == CALIBRATION_BINS - 1  # P = 1 is in the last bin
    assert all(curve.index[k] / 15 <= curve.mean_prob[k] <= (curve.index[k] + 1) / 15
               for k in range(len(curve.index)))

    calibrated = reliability_curve(y, np.clip(prob ** 2 + 0.01, 0, 1))
    fig = Figure()
    ax_points, ax_counts = fig.subplots(2, 1)
    draw_reliability(ax_points, ax_counts, {"raw": curve, "calibrated": calibrated})
    drawn = [line for line in ax_points.lines if line.get_label().startswith(("raw", "calib"))]
    for line, expected in zip(drawn, (curve, calibrated)):
        assert np.asarray(line.get_xdata()) == pytest.approx(expected.mean_prob)
        assert np.asarray(line.get_ydata()) == pytest.approx(expected.pain_share)
        assert f"ECE {expected.ece:.3f}" in line.get_label()
    bars = ax_counts.containers
    assert [bar.get_height() for bar in bars[0]] == curve.counts.tolist()
    assert [bar.get_height() for bar in bars[1]] == calibrated.counts.tolist()
    assert [bar.get_x() for bar in bars[0]] == pytest.approx(curve.index / 15)
    diagonal = ax_points.lines[0]
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))


def _reliability_image(html: str) -> dict[str, str]:
    parser = _Images()
    parser.feed(html)
    found = [img for img in parser.images if img.get("alt", "").startswith("Reliability")]
    assert len(found) == 1, [img.get("alt") for img in parser.images]
    assert all(img.get("alt") for img in parser.images)  # every picture has alt text
    return found[0]


@pytest.mark.parametrize("calibrated", [False, True])
def test_report_html_embeds_the_reliability_diagram_with_alt_text(tmp_path, calibrated):
    run = write_run(tmp_path / "run", folds=3, images=40)
    if calibrated:
        calibrate_folds(run)
    written = write_report(load_run(run))
    html = written["html"].read_text()
    image = _reliability_image(html)
    assert base64.b64decode(image["src"].split(",", 1)[1]) == written["reliability"].read_bytes()
    raw_ece = evaluate_run(load_run(run)).summary["ece"].pooled
    assert f"raw ECE {raw_ece:.3f}" in image["alt"]
    assert ("calibrated ECE" in image["alt"]) == calibrated
    assert ('id="calibrated"' in html) == calibrated
    markdown = written["markdown"].read_text()
    for name in ("reliability", "probabilities", "precision_recall"):
        assert f"(figures/{name}.png)" in markdown


def test_calibrated_metrics_are_those_of_the_calibrated_column(tmp_path):
    run = calibrate_folds(write_run(tmp_path / "run", folds=4, images=30), t=2.5)
    evaluation = evaluate_run(load_run(run))
    calibration = evaluation.calibration
    assert calibration is not None and calibration.methods == ["temperature"]
    for folder in sorted(run.glob("fold_*")):
        fold = int(folder.name.split("_")[1])
        table = pd.read_csv(folder / "predictions.csv")
        y = (table["label"] == "pain").to_numpy(int)
        expected = binary_metrics(y, table["prob_pain_calibrated"].to_numpy())
        assert calibration.per_fold.loc[fold].to_dict() == pytest.approx(expected, nan_ok=True)
        # temperature keeps a fold's ranking and, at 0.5, its decisions
        for name in ("accuracy", "auc"):
            assert calibration.per_fold.loc[fold, name] == pytest.approx(
                evaluation.per_fold.loc[fold, name])
    assert calibration.summary["ece"].mean != pytest.approx(evaluation.summary["ece"].mean)
    summary = json.loads(json.dumps(evaluation.to_dict()))
    assert summary["calibrated"]["metrics"]["nll"]["pooled"] == pytest.approx(
        calibration.summary["nll"].pooled)
    uncalibrated = evaluate_run(load_run(write_run(tmp_path / "raw")))
    assert uncalibrated.calibration is None and uncalibrated.to_dict()["calibrated"] is None


def test_reported_coverage_and_referral_are_set_summary_of_the_columns(tmp_path):
    run = calibrate_folds(write_run(tmp_path / "run", folds=4, images=50), alpha=0.2,
                          quantile=0.3)
    evaluation = evaluate_run(load_run(run))
    sets = evaluation.calibration.sets
    ys, all_sets = [], []
    for folder in sorted(run.glob("fold_*")):
        fold = int(folder.name.split("_")[1])
        table = pd.read_csv(folder / "predictions.csv", dtype=str)
        y = (table["label"] == "pain").to_numpy(int)
        expected = set_summary(y, table["prediction_set"].tolist())
        assert sets[fold].coverage == pytest.approx(expected["coverage"])
        assert sets[fold].referral == pytest.approx(expected["referral"])
        assert sets[fold].decided_accuracy == pytest.approx(expected["decided_accuracy"])
        assert sets[fold].target == pytest.approx(0.8) and sets[fold].images == len(y)
        ys.append(y)
        all_sets += table["prediction_set"].tolist()
    # the fixture holds both labels alone and referred sets (a quantile below 0.5: empty ones)
    assert {"pain", "nopain", "none"} <= set(all_sets)
    pooled = set_summary(np.concatenate(ys), all_sets)
    assert evaluation.calibration.pooled_sets.coverage == pytest.approx(pooled["coverage"])
    assert evaluation.calibration.pooled_sets.referral == pytest.approx(pooled["referral"])
    html = write_report(load_run(run))["html"].read_text()
    row = re.search(r'<tr class="pooled"><td>pooled</td>(.*?)</tr>', html).group(1)
    assert f"{100 * pooled['coverage']:.1f}%" in row and f"{100 * pooled['referral']:.1f}%" in row
    assert "80.0%" in row  # the target, 1 - alpha

    mixed = calibrate_folds(write_run(tmp_path / "mixed", folds=3), alphas={0: 0.1, 1: 0.05})
    evaluation = evaluate_run(load_run(mixed))
    assert math.isnan(evaluation.calibration.pooled_sets.alpha)
    assert any("different alpha" in note for note in evaluation.notes)


def test_a_run_calibrated_in_some_folds_only_is_reported_raw_with_a_note(tmp_path):
    run = calibrate_folds(write_run(tmp_path / "run", folds=3))
    table = pd.read_csv(run / "fold_1" / "predictions.csv", dtype=str)
    table.drop(columns=["prob_pain_calibrated", "pred_calibrated", "prediction_set"]).to_csv(
        run / "fold_1" / "predictions.csv", index=False)
    evaluation = evaluate_run(load_run(run))
    assert evaluation.calibration is None
    assert any(note.startswith("fold_1: no prob_pain_calibrated") for note in evaluation.notes)


def test_a_calibrated_probability_outside_0_1_is_refused_naming_line_and_column(tmp_path):
    run = calibrate_folds(write_run(tmp_path / "run", folds=2))
    path = run / "fold_0" / "predictions.csv"
    table = pd.read_csv(path, dtype=str)
    table.loc[2, "prob_pain_calibrated"] = "1.7"
    table.to_csv(path, index=False)
    with pytest.raises(TableError, match=r"line 4, column 'prob_pain_calibrated': '1.7'"):
        evaluate_run(load_run(run))


def set_probabilities(run: Path, make) -> Path:
    """Replace each fold's labels and P(pain) by ``make(rng, n) -> (y, prob)``."""
    for fold, folder in enumerate(sorted(run.glob("fold_*"))):
        table = pd.read_csv(folder / "predictions.csv", dtype=str)
        y, prob = make(np.random.default_rng(fold), len(table))
        table["label"] = np.where(y == 1, "pain", "nopain")
        table["prob_pain"] = [f"{p:.6f}" for p in prob]
        table["pred"] = np.where(prob >= 0.5, "pain", "nopain")
        table.to_csv(folder / "predictions.csv", index=False)
        (folder / "metrics.json").unlink()
    return run


def honest(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """P(pain) that means what it says."""
    prob = rng.uniform(0, 1, n)
    return (rng.random(n) < prob).astype(int), prob


def sharp(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The same decisions as ``honest``, said with near certainty."""
    y, prob = honest(rng, n)
    return y, np.where(prob >= 0.5, 0.99, 0.01)


def test_compare_ranks_the_lower_ece_as_better(tmp_path):
    runs = [load_run(set_probabilities(write_run(tmp_path / name, folds=6, images=200), make))
            for name, make in (("honest", honest), ("sharp", sharp))]
    result = compare(runs, metrics=["ece", "nll", "brier", "accuracy"])
    for metric in ("ece", "nll", "brier"):
        assert result[metric].lower_is_better
        assert result[metric].best == "honest"
        pair = result[metric].pairs[0]
        assert pair.difference < 0 and pair.significant and pair.better == "honest"
    assert not result["accuracy"].lower_is_better and result["accuracy"].best is None  # a tie
    assert result["accuracy"].pairs[0].better is None


def test_compare_calibrated_uses_the_calibrated_probabilities(tmp_path):
    kept = set_probabilities(write_run(tmp_path / "kept", folds=5, images=150), honest)
    sharpened = Path(shutil.copytree(kept, tmp_path / "sharpened"))
    calibrate_folds(kept, t=1.0)  # honest stays honest
    calibrate_folds(sharpened, t=0.2)  # "calibrated" into overconfidence
    runs = [load_run(kept), load_run(sharpened)]
    raw = compare(runs, metrics=["ece"])
    assert raw["ece"].best is None  # the same raw P(pain): a tie
    calibrated = compare(runs, metrics=["ece"], calibrated=True)
    assert calibrated["ece"].best == "kept" and calibrated["ece"].pairs[0].better == "kept"
    plain = load_run(write_run(tmp_path / "plain", folds=5))
    with pytest.raises(NeopainError, match=r"plain is not calibrated .*neopain calibrate"):
        compare([runs[0], plain], calibrated=True)


def test_a_bad_calibrator_json_is_named_and_a_missing_one_leaves_alpha_unknown(tmp_path):
    run = calibrate_folds(write_run(tmp_path / "run", folds=3))
    (run / "fold_1" / "calibrator.json").write_text('{"method": "temperature", "params": {}}')
    with pytest.raises(NeopainError, match=r"fold_1/calibrator.json: calibrator temperature"):
        evaluate_run(load_run(run))
    (run / "fold_1" / "calibrator.json").unlink()
    evaluation = evaluate_run(load_run(run))
    assert math.isnan(evaluation.calibration.sets[1].alpha)
    assert math.isnan(evaluation.calibration.pooled_sets.alpha)  # no common target
    assert "fold 1: no calibrator.json; the calibration method and alpha are unknown" in \
        evaluation.notes
    html = write_report(load_run(run))["html"].read_text()
    assert "n/a" in re.search(r'<tr class="pooled">(.*?)</tr>', html).group(1)
