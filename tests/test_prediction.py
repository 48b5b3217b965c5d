"""``load_predictor``: a model name or file that cannot run is a clear error, never a traceback;
a run's calibrator shows any predictor's output calibrated (``CalibratedPredictor``)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from neopain import prediction
from neopain.errors import NeopainError
from neopain.faces.base import Face, FaceDetector
from neopain.faces.crop import CropRule
from neopain.models.calibrator import Calibrator, logit_of, read_calibrator, sigmoid
from neopain.monitor.pipeline import Assessor
from neopain.prediction import (
    CalibratedPredictor,
    Prediction,
    Predictor,
    load_predictor,
)


@pytest.mark.parametrize("model, says", [
    ("vgg16_nb", "valid: nfcs or an exported .onnx file"),
    ("missing.onnx", "file not found"),
])
def test_models_that_cannot_run_are_named(tmp_path, model, says):
    with pytest.raises(NeopainError, match=says):
        load_predictor(tmp_path / model if model.endswith(".onnx") else model)


def test_a_file_that_is_not_an_onnx_model_is_a_clear_error(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really")
    with pytest.raises(NeopainError, match="model.onnx"):
        load_predictor(path)


class EchoKind(Predictor):
    """A third kind of model, as a package would add one: named ``echo``, P(pain) from the
    crop's brightness."""

    kind = "echo"
    summary = "a test kind"
    crop = CropRule.whole_image()

    def __init__(self, spec: str, batch_size: int) -> None:
        self.spec, self.batch_size = spec, batch_size

    @classmethod
    def open(cls, spec, *, options):
        return cls(spec, options.batch_size)

    def predict_crops(self, crops):
        return [Prediction(float(c.mean()) / 255, "nopain", 0.5, self.kind) for c in crops]


@pytest.fixture
def with_echo(monkeypatch):
    """The installed kinds plus ``echo``, as if a package declared its entry point."""
    installed = prediction._registered()
    echo = SimpleNamespace(name="echo", load=lambda: EchoKind)
    monkeypatch.setattr(prediction, "_registered", lambda: [*installed, echo])
    prediction._entry_points.cache_clear()
    yield
    prediction._entry_points.cache_clear()


def test_a_kind_registered_as_an_entry_point_runs_without_any_other_change(with_echo, tmp_path):
    # the bug guarded: a third kind of model had to be added by name in six places
    assert "echo" in prediction.model_choices()
    named = load_predictor("echo", batch_size=3)
    assert isinstance(named, EchoKind) and named.batch_size == 3
    with pytest.raises(NeopainError, match="valid: nfcs or echo or an exported .onnx file"):
        load_predictor(tmp_path / "m.echo")
    assert named.evidence([np.zeros((4, 4, 3), np.uint8)]) == [None]  # the hook's default
    image = np.full((60, 80, 3), 51, np.uint8)
    with Assessor(named, detector=WholeImage()) as assessor:
        result = assessor.step(image, time_s=0.0)
    assert result.prediction.prob_pain == pytest.approx(0.2) and result.crop is image
    assert load_predictor(None).kind == prediction.default_kind() == "nfcs"


TRAINING_STACK = ("sklearn", "pandas", "matplotlib", "torch", "neopain.export.torch_runtime")


@pytest.mark.parametrize(("model", "heavy"), [
    ("nfcs", (*TRAINING_STACK, "neopain.export.runtime")),
    ("model.onnx", TRAINING_STACK),
])
def test_a_kind_asked_for_by_name_imports_no_other_kind(tmp_path, model, heavy):
    # the bug guarded: `--model nfcs` imported every kind, and with the run kind the training
    # stack; a bed agent then took 0.4 s more to exit, and missed "stops within a second of
    # its revocation" under load. An .onnx file (not a model here: refused by its kind)
    # must not import the run kind either.
    code = ("import sys; from neopain.errors import NeopainError; "
            "from neopain.prediction import load_predictor\n"
            f"try: load_predictor({model!r}, threads=1).close()\n"
            "except NeopainError: pass\n"
            f"print([name for name in {heavy!r} if name in sys.modules])")
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True, cwd=tmp_path)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_installed_kinds_are_read_once_however_many_models_are_opened(monkeypatch,
                                                                          tmp_path):
    # the bug guarded: every load_predictor scanned all installed packages' metadata once or
    # twice (10 to 30 ms each), on the agent's start and on each Ray actor's
    scans, read = [], prediction.entry_points

    def counted(group):
        scans.append(group)
        return read(group=group)

    monkeypatch.setattr(prediction, "entry_points", counted)
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    prediction._registered.cache_clear()
    try:
        for model in ("nfcs", tmp_path / "model.onnx", "nfcs"):
            try:
                load_predictor(model, threads=1).close()
            except NeopainError:  # the .onnx is refused by its kind, after the lookup
                pass
    finally:
        monkeypatch.undo()
        prediction._registered.cache_clear()
    assert scans == [prediction.ENTRY_POINT_GROUP]


@pytest.mark.parametrize("threads", [0, -1, True, 1.5])
def test_bad_threads_are_refused_by_kinds_that_do_not_use_them_too(threads):
    # the bug guarded: `neopain agent --model nfcs --threads 0` ran as if it were unset
    with pytest.raises(NeopainError, match=rf"threads={threads!r} must be a whole number"):
        load_predictor("nfcs", threads=threads)


def test_installed_kinds_must_name_exactly_one_default(monkeypatch):
    class Second(EchoKind):
        default = True

    installed = prediction._registered()
    second = SimpleNamespace(name="second", load=lambda: Second)
    monkeypatch.setattr(prediction, "_registered", lambda: [*installed, second])
    prediction._entry_points.cache_clear()
    try:
        # the default is asked for when no model is named (a named kind needs no default)
        with pytest.raises(NeopainError, match="2 defaults; exactly one"):
            load_predictor(None)
        with pytest.raises(NeopainError, match="2 defaults; exactly one"):
            prediction.model_choices()
        assert isinstance(load_predictor("second"), Second)  # named: no default needed
    finally:
        prediction._entry_points.cache_clear()


class WholeImage(FaceDetector):
    """A detector that finds one face covering the whole image."""

    name = "whole"

    def _detect(self, image, *, prior):
        height, width = image.shape[:2]
        return [Face((0.0, 0.0, float(width), float(height)), 1.0)]


class Scores(Predictor):
    """A rule-based kind: a score of crop brightness, unassessable for black crops; counts
    the calls made on it."""

    name = "scores"
    crop = CropRule.whole_image()

    def __init__(self) -> None:
        self.closed = 0

    def predict_crops(self, crops):
        return [Prediction(float(c.mean()) / 255, "nopain", 0.5, self.name,
                           assessable=bool(c.any()), reason="" if c.any() else "dark")
                for c in crops]

    def close(self):
        self.closed += 1


def test_a_calibrated_view_maps_the_logit_of_any_predictors_output():
    # guards: a calibrator applied to P instead of its logit, sets that are not the
    # calibrator's, and an unassessable face given a calibrated number
    calibrator = Calibrator(method="platt", params={"a": 2.0, "b": -0.5}, alpha=0.1,
                            quantile=0.3)
    inner = Scores()
    crops = [np.full((4, 4, 3), v, np.uint8) for v in (20, 0, 128, 240, 150)]
    with CalibratedPredictor(inner, calibrator, where="cal.json") as view:
        assert view.crop == inner.crop and "calibrated (platt, cal.json)" in view.name
        predictions = view.predict_crops(crops)
    assert inner.closed == 1
    raw = np.array([c.mean() / 255 for c in crops])
    assert not predictions[1].assessable and predictions[1].prob_raw is None
    assert predictions[1].prob_kind == "score"
    usable = [p for p in predictions if p.assessable]
    expected = sigmoid(2.0 * logit_of(raw[[0, 2, 3, 4]]) - 0.5)
    assert np.allclose([p.prob_pain for p in usable], expected, atol=1e-12)
    assert np.allclose([p.prob_raw for p in usable], raw[[0, 2, 3, 4]])
    assert [p.prediction_set for p in usable] == calibrator.prediction_sets(expected)
    assert {p.prediction_set for p in usable} >= {"pain", "nopain", "none"}  # quantile < 0.5
    assert [p.label for p in usable] == ["pain" if p >= 0.5 else "nopain" for p in expected]
    assert all(p.prob_kind == "calibrated" and p.calibrated for p in usable)


def test_prob_kind_says_what_prob_pain_is():
    assert Prediction(0.7, "pain", 0.5, "m").prob_kind == "score"
    assert Prediction(0.7, "pain", 0.5, "m", probabilistic=True).prob_kind == "uncalibrated"
    assert Prediction(0.7, "pain", 0.5, "m", prob_raw=0.9).prob_kind == "calibrated"
    assert set(prediction.PROB_KINDS) == {"calibrated", "uncalibrated", "score"}


@pytest.mark.parametrize("content, says", [
    ("{not json", "not valid JSON (Expecting property name enclosed in double quotes, line 1"),
    ("[1, 2]", "must be a mapping with method and params, got list"),
    ('{"method": "temperature", "params": {"t": 1.0}, "alpha": 0.0, "quantile": 0.2}',
     "calibrator: alpha=0.0 must be between 0 and 1"),
    ('{"method": "isotonic", "params": {"x": [0, 1], "y": [1, 0]}}', "non-decreasing"),
    ('{"method": "sigmoid", "params": {}}', "method='sigmoid'; valid: temperature"),
    ("\0", "holds a NUL byte"),
])
def test_a_bad_calibrator_file_is_named_with_its_field(tmp_path, content, says):
    path = tmp_path / "calibrator.json"
    path.write_text(content)
    with pytest.raises(NeopainError) as error:
        read_calibrator(path)
    assert str(error.value).startswith(str(path)) and says in str(error.value)


def test_a_band_the_thresholds_label_contradicts_refers_the_face():
    # guards: a threshold below 0.5 labelling pain a face whose band says no pain, shown as
    # a confident "pain" while its own set excludes it
    calibrator = Calibrator(method="temperature", params={"t": 1.0}, alpha=0.1, quantile=0.55)
    raw = np.array([0.40, 0.20, 0.80, 0.50])  # sets: nopain, nopain, pain, both
    sets = calibrator.prediction_sets(calibrator.probability(logit_of(raw)))
    labels = ["pain" if p >= 0.3 else "nopain" for p in raw]  # threshold 0.3
    shown = [Prediction(float(p), label, 0.3, "m", prob_raw=float(p), prediction_set=s)
             for p, label, s in zip(raw, labels, sets)]
    assert sets == ["nopain", "nopain", "pain", "pain|nopain"]
    assert [p.uncertain for p in shown] == [True, False, False, True]
    assert not Prediction(0.4, "pain", 0.3, "m").uncertain  # no band: never referred


def test_a_kind_this_installation_cannot_import_is_left_out_and_named(monkeypatch):
    """A bed device installs no training stack: the ``run`` kind's module cannot be imported
    there. The other kinds still load, and asking for that one says why it cannot."""

    def missing():
        raise ModuleNotFoundError("No module named 'pandas'")

    installed = prediction._registered()
    kept = [point for point in installed if point.name != "run"]
    monkeypatch.setattr(prediction, "_registered",
                        lambda: [*kept, SimpleNamespace(name="run", load=missing)])
    prediction._entry_points.cache_clear()
    try:
        assert "run" not in prediction.predictor_kinds() and "nfcs" in prediction.predictor_kinds()
        with pytest.raises(NeopainError, match=r"cannot load the run kind .*pandas"):
            prediction.load_predictor("run")
    finally:
        prediction._entry_points.cache_clear()
