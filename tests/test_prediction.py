"""``load_predictor``: a model name or file that cannot run is a clear error, never a traceback."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from neopain import prediction
from neopain.errors import NeopainError
from neopain.faces.base import Face, FaceDetector
from neopain.faces.crop import CropRule
from neopain.monitor.pipeline import Assessor
from neopain.prediction import Prediction, Predictor, load_predictor


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
    installed = list(prediction.entry_points(group=prediction.ENTRY_POINT_GROUP))
    echo = SimpleNamespace(name="echo", load=lambda: EchoKind)
    monkeypatch.setattr(prediction, "entry_points", lambda group: [*installed, echo])
    prediction.predictor_kinds.cache_clear()
    yield
    prediction.predictor_kinds.cache_clear()


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


def test_installed_kinds_must_name_exactly_one_default(monkeypatch):
    class Second(EchoKind):
        default = True

    installed = list(prediction.entry_points(group=prediction.ENTRY_POINT_GROUP))
    second = SimpleNamespace(name="second", load=lambda: Second)
    monkeypatch.setattr(prediction, "entry_points", lambda group: [*installed, second])
    prediction.predictor_kinds.cache_clear()
    try:
        with pytest.raises(NeopainError, match="2 defaults; exactly one"):
            load_predictor("second")
    finally:
        prediction.predictor_kinds.cache_clear()


class WholeImage(FaceDetector):
    """A detector that finds one face covering the whole image."""

    name = "whole"

    def _detect(self, image, *, prior):
        height, width = image.shape[:2]
        return [Face((0.0, 0.0, float(width), float(height)), 1.0)]
