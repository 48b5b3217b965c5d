"""Occlusion explains an exported ONNX model through a plain function images -> P(pain), and
gives the same heatmaps as for the torch model it was exported from (the bug guarded: a
function's P(pain) read as P(no pain) would explain the wrong class)."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime
import pytest
import torch

from neopain.errors import NeopainError
from neopain.explain import Occlusion


class Probabilities(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


@pytest.fixture(scope="module")
def onnx_prob_pain(random_ncnn, tmp_path_factory):
    """P(pain) of the N-CNN exported to ONNX (softmax inside), run by ONNX Runtime."""
    path = tmp_path_factory.mktemp("onnx") / "ncnn.onnx"
    with warnings.catch_warnings():  # torch calls its TorchScript exporter deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(Probabilities(random_ncnn), torch.zeros(1, 3, 120, 120), str(path),
                          input_names=["image"], output_names=["probs"],
                          dynamic_axes={"image": {0: "n"}, "probs": {0: "n"}}, dynamo=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def prob_pain(images: np.ndarray) -> np.ndarray:
        return session.run(None, {"image": images})[0][:, 1]

    return prob_pain


def test_an_onnx_model_gets_the_heatmaps_of_its_torch_model(random_ncnn, onnx_prob_pain,
                                                           face_batch):
    images = face_batch[:2]
    with Occlusion(random_ncnn, window=30, stride=15) as torch_occlusion:
        expected = torch_occlusion.explain(images, target=["pain", "nopain"])
        p_torch = torch_occlusion.predict(images)
    with Occlusion(onnx_prob_pain, window=30, stride=15) as onnx_occlusion:
        heat = onnx_occlusion.explain(images, target=["pain", "nopain"])
        p_onnx = onnx_occlusion.predict(images)
    assert np.allclose(p_onnx, p_torch, atol=1e-5)
    assert heat.shape == (2, 120, 120)
    assert expected.max() > 0
    assert np.allclose(heat, expected, atol=1e-4 * expected.max() + 1e-6)


def test_a_function_with_the_wrong_output_count_is_refused(face_batch):
    with Occlusion(lambda images: np.zeros(len(images) + 1), window=60, stride=60) as bad:
        with pytest.raises(NeopainError, match="returned 3 values for 2 images"):
            bad.explain(face_batch[:2], target="pain")


def test_options_are_checked(random_ncnn, face_batch):
    with pytest.raises(NeopainError, match="window=0 is not valid"):
        Occlusion(random_ncnn, window=0)
    with pytest.raises(NeopainError, match="baseline='grey' is not valid; valid: blur, black"):
        Occlusion(random_ncnn, baseline="grey")
    with Occlusion(random_ncnn, window=200) as too_big:
        with pytest.raises(NeopainError, match=r"window=200 is larger than the images "
                                               r"\(120×120\); valid: at most 120"):
            too_big.explain(face_batch[:1], target="pain")
