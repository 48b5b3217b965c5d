"""``load_predictor``: a model name or file that cannot run is a clear error, never a traceback."""

from __future__ import annotations

import pytest

from neopain.errors import NeopainError
from neopain.prediction import load_predictor


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
