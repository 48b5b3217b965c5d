"""Shared fixtures of the explanation tests.

A toy model whose evidence is known: red blobs mean pain, blue blobs mean no pain.

A 1×1 convolution detects red (channel 0) and blue (channel 1); the class scores are their
spatial means. With one sigmoid output the logit is ``mean(red) - mean(blue)``. The test image
has a red blob on the left and a blue blob on the right, so a correct explanation of ``pain``
lies on the left and one of ``nopain`` on the right, for either output layout.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neopain.models.cfg import ModelCfg

SIZE = 32
CFG = ModelCfg(name="toy", input_size=(SIZE, SIZE), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
               cam_layer="detect")


class ColourModel(nn.Module):
    """Red → pain, blue → no pain; ``single_output``: one logit (red − blue)."""

    def __init__(self, *, single_output: bool = False) -> None:
        super().__init__()
        self.single_output = single_output
        self.detect = nn.Conv2d(3, 2, 1)
        with torch.no_grad():  # RGB input: red = R - G - B, blue = B - R - G (before ReLU)
            self.detect.weight.copy_(torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]])
                                     .view(2, 3, 1, 1))
            self.detect.bias.fill_(-0.5)  # grey background (0 after normalizing) gives 0
        self.act = nn.ReLU()
        self.cfg = CFG

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = self.act(self.detect(x)).mean(dim=(2, 3))  # (N, 2): red, blue
        if self.single_output:
            return (evidence[:, 0] - evidence[:, 1])[:, None]
        return torch.stack([evidence[:, 1], evidence[:, 0]], dim=1)  # (nopain, pain)


def blob_image() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A normalized RGB image (3, 32, 32) on grey, and the red and blue blobs' masks."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    red = (xs - 7) ** 2 + (ys - 16) ** 2 <= 16
    blue = (xs - 24) ** 2 + (ys - 16) ** 2 <= 16
    rgb = np.full((SIZE, SIZE, 3), 0.5, np.float32)
    rgb[red] = (1.0, 0.0, 0.0)
    rgb[blue] = (0.0, 0.0, 1.0)
    image = ((rgb - 0.5) / 0.5).transpose(2, 0, 1)
    return np.ascontiguousarray(image), red, blue


@pytest.fixture
def colour_model() -> type[ColourModel]:
    """The toy model's class: ``colour_model(single_output=...)``."""
    return ColourModel


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return blob_image()


@pytest.fixture(scope="module")
def random_ncnn():
    """An untrained N-CNN with fixed weights (seed 0), in eval mode."""
    from neopain.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model("ncnn")
    return model.eval()


@pytest.fixture(scope="module")
def face_batch(tmp_path_factory) -> np.ndarray:
    """Four synthetic faces preprocessed for the N-CNN (cropped to the face, 120×120)."""
    from neopain.training.dataset import FaceDataset
    from neopain.data.manifest import load_manifest
    from neopain.data.synthetic import CohortSpec, generate_cohort

    root = tmp_path_factory.mktemp("faces")
    generate_cohort(root, CohortSpec(subjects=2, seed=3, images_per_subject=(2, 2)))
    manifest = load_manifest(root / "manifest.csv")
    data = FaceDataset(manifest, size=(120, 120), mean=(0.5,) * 3, std=(0.5,) * 3,
                       crop_to_face=True)
    return np.stack([data[i]["image"].numpy() for i in range(len(data))])
